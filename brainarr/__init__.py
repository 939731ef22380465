"""brainarr: lazy, labelled, scalable resting-state fMRI on xarray, Dask and Zarr."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brainarr")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from brainarr import datasets, io, stats
from brainarr._core.chunks import rechunk_for_metrics
from brainarr._core.options import set_options
from brainarr.cohort import open_cohort

__all__ = ["__version__", "datasets", "io", "open_cohort", "rechunk_for_metrics", "set_options", "stats"]
