"""brainarr: lazy, labelled, scalable resting-state fMRI on xarray, Dask and Zarr."""

from brainarr import accessor, config, datasets, io, metrics, pipeline, plotting, preprocess, report, stats, testing
from brainarr._core.chunks import rechunk_for_metrics
from brainarr._core.options import set_options
from brainarr._core.version import __version__
from brainarr.cohort import open_cohort

__all__ = [
    "__version__",
    "accessor",
    "config",
    "datasets",
    "io",
    "metrics",
    "open_cohort",
    "pipeline",
    "plotting",
    "preprocess",
    "rechunk_for_metrics",
    "report",
    "set_options",
    "stats",
    "testing",
]
