"""Subject-level resting-state metrics: ALFF/fALFF, ReHo, seed FC, centrality, normalisation.

Every function takes BOLD (or a metric map) as an xarray DataArray, optionally with a leading
``subject`` dim, builds a lazy Dask graph and returns labelled maps ``(..., x, y, z)`` with the
spatial chunks of the input.
"""

from brainarr.metrics.alff import alff
from brainarr.metrics.centrality import default_block_size, degree_centrality, eigenvector_centrality
from brainarr.metrics.fc import seed_fc
from brainarr.metrics.lfcd import lfcd
from brainarr.metrics.normalize import normalize
from brainarr.metrics.reho import reho
from brainarr.metrics.roi import roi_connectivity, roi_timeseries
from brainarr.metrics.study import alff_variants, dc_variants, smooth_normalize, smreho, study_metrics

__all__ = [
    "alff",
    "alff_variants",
    "dc_variants",
    "default_block_size",
    "degree_centrality",
    "eigenvector_centrality",
    "lfcd",
    "normalize",
    "reho",
    "roi_connectivity",
    "roi_timeseries",
    "seed_fc",
    "smooth_normalize",
    "smreho",
    "study_metrics",
]
