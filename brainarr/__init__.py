"""brainarr: lazy, labelled, scalable resting-state fMRI on xarray, Dask and Zarr."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brainarr")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from brainarr import accessor, datasets, io, metrics, plotting, preprocess, report, stats, testing
from brainarr._core.chunks import rechunk_for_metrics
from brainarr._core.options import set_options
from brainarr.cohort import open_cohort

__all__ = [
    "__version__",
    "accessor",
    "datasets",
    "io",
    "metrics",
    "open_cohort",
    "plotting",
    "preprocess",
    "rechunk_for_metrics",
    "report",
    "set_options",
    "stats",
    "testing",
]
