"""Group statistics: GLM / two-sample t-test, smoothness, GRF and permutation inference, tables."""

from brainarr.stats._design import check_groups, group_design
from brainarr.stats.clusters import cluster_table, table_to_csv, table_to_markdown
from brainarr.stats.demographics import demographics, demographics_to_markdown
from brainarr.stats.glm import glm, t_to_z, ttest2
from brainarr.stats.grf import cluster_size_threshold, grf, grf_cluster_p
from brainarr.stats.permutation import permutation, tfce
from brainarr.stats.roi import roi_ttest2
from brainarr.stats.smoothness import small_dof_factor, smoothness

__all__ = [
    "check_groups",
    "cluster_size_threshold",
    "cluster_table",
    "demographics",
    "demographics_to_markdown",
    "glm",
    "grf",
    "grf_cluster_p",
    "group_design",
    "permutation",
    "roi_ttest2",
    "small_dof_factor",
    "smoothness",
    "t_to_z",
    "table_to_csv",
    "table_to_markdown",
    "tfce",
    "ttest2",
]
