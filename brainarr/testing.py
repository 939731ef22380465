"""Public test helpers: laziness checks and synthetic BOLD builders.

Downstream projects can reuse these in their own tests.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from brainarr._core.dims import SPATIAL, SUBJECT, TIME
from brainarr._core.grid import spatial_coords

__all__ = [
    "BadInput",
    "CountingScheduler",
    "ShuffledThreadPool",
    "assert_lazy",
    "blas_threads",
    "check_bad_input",
    "dice",
    "epi_like",
    "killable_cluster",
    "make_affine",
    "make_bold",
    "make_maps",
    "raise_if_dask_computes",
    "sample_linear",
    "sigkill_when",
    "snapshot",
    "voxel_centres",
]


class CountingScheduler:
    """A dask scheduler that counts computes and raises past ``max_computes``.

    Parameters
    ----------
    max_computes : int, default 0
        Number of computes allowed before a :class:`RuntimeError`.
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        """Run the graph synchronously, counting the call."""
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"Too many computes. Total: {self.total_computes} > max: {self.max_computes}.")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Context manager in which any dask compute beyond ``max_computes`` raises.

    Examples
    --------
    >>> import dask.array as da
    >>> from brainarr.testing import raise_if_dask_computes
    >>> with raise_if_dask_computes():
    ...     y = da.ones(4) + 1  # building a graph is fine
    """
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


def assert_lazy(obj: xr.DataArray | xr.Dataset) -> None:
    """Assert that ``obj`` (or every data variable of it) is backed by dask."""
    variables = obj.data_vars.values() if isinstance(obj, xr.Dataset) else [obj]
    for var in variables:
        if not dask.is_dask_collection(var.data):
            raise AssertionError(f"{var.name!r} is not lazy (backed by {type(var.data).__name__})")


def make_affine(
    voxel_size: float | tuple[float, float, float] = 3.0, origin=(-90.0, -126.0, -72.0), flip_x: bool = True
) -> np.ndarray:
    """An MNI-like axis-aligned affine (x flipped by default, as SPM/RESTplus write it)."""
    vs = np.broadcast_to(np.asarray(voxel_size, float), (3,)).copy()
    affine = np.eye(4)
    affine[:3, :3] = np.diag(vs)
    affine[:3, 3] = origin
    if flip_x:
        affine[0, 0] = -vs[0]
        affine[0, 3] = -origin[0]
    return affine


def make_bold(
    values: np.ndarray | None = None,
    *,
    shape: tuple[int, int, int, int] = (7, 8, 9, 40),
    tr: float = 2.0,
    affine: np.ndarray | None = None,
    chunks: dict | None = None,
    seed: int = 0,
    name: str = "bold",
) -> xr.DataArray:
    """Build a small labelled BOLD DataArray ``(x, y, z, time)`` for tests.

    Parameters
    ----------
    values : ndarray, optional
        4-D data; random normal float32 of ``shape`` when omitted.
    shape : tuple of int
        Shape when ``values`` is omitted; all sizes different by default, so axis mix-ups fail.
    tr : float
        Repetition time in s.
    affine : array (4, 4), optional
        Defaults to :func:`make_affine` with 3 mm voxels.
    chunks : dict, optional
        If given, the result is dask-backed with these chunks.
    seed : int
        Random seed.
    name : str
        Name of the DataArray.

    Returns
    -------
    xarray.DataArray
        With coords ``x, y, z`` (mm), ``time`` (s) and attrs ``affine``, ``tr``, ``units``, ``source``.
    """
    if values is None:
        values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    values = np.asarray(values)
    affine = make_affine() if affine is None else np.asarray(affine, float)
    coords = spatial_coords(affine, values.shape[:3])
    if values.ndim == 4:
        coords[TIME] = xr.Variable(TIME, np.arange(values.shape[3]) * tr, {"units": "s", "long_name": "time"})
        dims = (*SPATIAL, TIME)
    else:
        dims = SPATIAL
    da = xr.DataArray(values, dims=dims, coords=coords, name=name)
    da.attrs.update({"affine": affine.tolist(), "units": "arbitrary", "source": "synthetic"})
    if values.ndim == 4:
        da.attrs["tr"] = float(tr)
    if chunks is not None:
        da = da.chunk(chunks)
    return da


def make_maps(
    values: np.ndarray,
    *,
    affine: np.ndarray | list | None = None,
    chunks: dict | None = None,
    name: str = "alff",
    **subject_coords,
) -> xr.DataArray:
    """Build subject maps ``(subject, x, y, z)`` for tests, as read from a cohort store.

    Parameters
    ----------
    values : ndarray (n, x, y, z)
        One map per subject.
    affine : array (4, 4), optional
        Defaults to :func:`make_affine` with 3 mm voxels.
    chunks : dict, optional
        If given, the data (not the coordinates) are dask-backed with these chunks.
    name : str
        Name of the DataArray.
    **subject_coords
        Subject coordinates (``group=[...]``, ``age=[...]``, ...), one value per subject.

    Returns
    -------
    xarray.DataArray
        Subjects ``sub-00``, ``sub-01``, ...; coords ``x, y, z`` (mm); attrs ``affine``,
        ``source``, ``units``.
    """
    values = np.asarray(values)
    affine = make_affine() if affine is None else np.asarray(affine, float)
    coords = spatial_coords(affine, values.shape[1:4])
    coords[SUBJECT] = [f"sub-{i:02d}" for i in range(values.shape[0])]
    coords.update({key: (SUBJECT, np.asarray(v)) for key, v in subject_coords.items()})
    maps = xr.DataArray(values, dims=(SUBJECT, *SPATIAL), coords=coords, name=name)
    maps.attrs.update({"affine": affine.tolist(), "source": "synthetic", "units": "1"})
    if chunks is not None:
        maps = maps.copy(data=maps.chunk(chunks).data)
    return maps


@contextlib.contextmanager
def killable_cluster(n_workers: int = 2, *, allowed_failures: int = 10) -> Iterator[Any]:
    """A client of a local cluster of single-threaded worker processes whose workers may be killed.

    The nannies restart a killed worker; ``allowed_failures`` is how many worker deaths a task
    survives (``distributed.scheduler.allowed-failures``).
    """
    import distributed

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}),
        distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def sigkill_when(proc, condition, *, timeout: float, what: str = "the process"):
    """Poll ``condition()`` until it returns a truthy value, then kill ``proc`` with SIGKILL.

    For tests that interrupt a writer at a chosen moment and check what it left behind.

    Parameters
    ----------
    proc : subprocess.Popen
        The process to kill.
    condition : callable
        Called every 10 ms while ``proc`` runs; a truthy return value is the moment to kill.
    timeout : float
        Seconds to wait for that moment.
    what : str
        Name of the moment for the failure message.

    Returns
    -------
    object
        The truthy value ``condition`` returned.

    Raises
    ------
    AssertionError
        If the moment did not come (the process ended first or ``timeout`` passed), with the
        process's exit status and the end of its standard error; or if the kill did not end it.
    """
    import os
    import signal
    import time

    try:
        deadline = time.monotonic() + timeout
        caught = None
        while time.monotonic() < deadline and proc.poll() is None:
            caught = condition()
            if caught:
                break
            time.sleep(0.01)
        if not caught:
            err = proc.communicate(timeout=30)[1] if proc.poll() is not None else b""
            tail = err.decode(errors="replace")[-2000:] if err else ""
            raise AssertionError(f"never caught {what} (exit status {proc.poll()}): {tail}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != -signal.SIGKILL:
        raise AssertionError(f"{what}: the process ended with {proc.returncode}, not by SIGKILL")
    return caught


@dataclasses.dataclass
class BadInput:
    """A bad input of a catalogue test: ``call(tmp)`` must raise ``error`` naming ``names``.

    Attributes
    ----------
    call : callable
        Takes the test's temporary folder; the call that must fail.
    error : exception type
        The exception expected.
    names : tuple of str
        Regular expressions that must all be found in the message (the file, subject or key,
        the problem and what to do).
    store : callable, optional
        Takes the temporary folder, returns a path that the call must leave byte for byte as
        it was (or absent, when it did not exist).
    setup : callable, optional
        Takes the temporary folder; run before ``store`` is taken and the call is made.
    """

    call: Callable[[Path], object]
    error: type[BaseException]
    names: tuple[str, ...]
    store: Callable[[Path], Path] | None = None
    setup: Callable[[Path], object] | None = None


def snapshot(path: Path) -> dict[str, str] | bytes | None:
    """What is at ``path``: a file's bytes, a folder's ``{relative path: sha256}``, or None."""
    import hashlib

    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    if not path.exists():
        return None
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def check_bad_input(case: BadInput, tmp: Path) -> BaseException:
    """Run a :class:`BadInput` in folder ``tmp``; assert its error, message and untouched store.

    Returns
    -------
    BaseException
        The exception raised, for further checks.
    """
    import re

    import pytest

    if case.setup is not None:
        case.setup(tmp)
    store = case.store(tmp) if case.store is not None else None
    before = snapshot(store) if store is not None else None
    with pytest.raises(case.error) as info:
        case.call(tmp)
    message = str(info.value)
    for pattern in case.names:
        assert re.search(pattern, message), f"{pattern!r} not in message: {message}"
    if store is not None:
        assert snapshot(store) == before, f"{store} changed"
    return info.value


class ShuffledThreadPool(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that starts each task after a random delay, so tasks finish in another order.

    For reproducibility tests: a threaded compute with this pool
    (``dask.compute(x, scheduler="threads", pool=pool)``) must give the same bits as a
    synchronous one.

    Parameters
    ----------
    max_workers : int
        Threads.
    seed : int
        Seed of the delays (up to 2 ms per task).
    """

    def __init__(self, max_workers: int, seed: int) -> None:
        """Create the pool (see the class docstring)."""
        super().__init__(max_workers)
        self._delays = np.random.default_rng(seed)

    def submit(self, fn, /, *args, **kwargs):
        """Submit ``fn`` to start after a random delay."""
        delay = float(self._delays.random()) * 2e-3
        return super().submit(_after, delay, fn, *args, **kwargs)


def _after(delay: float, fn, *args, **kwargs):
    import time

    time.sleep(delay)
    return fn(*args, **kwargs)


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with BLAS at ``n`` threads, set from this thread whichever thread held the control.

    threadpoolctl >= 3.8 ignores the limits set by every thread but a "controlling" one; this
    releases that control before and after.
    """
    from threadpoolctl import OpenBLASController, threadpool_limits

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
    with threadpool_limits(n, user_api="blas"):
        yield
    if clear is not None:
        clear(force=True)


# ---------------------------------------------------------------------------- spatial references


def voxel_centres(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World mm ``(N, 3)`` of a grid's voxel centres, in C order (a reference for tests)."""
    idx = np.indices(tuple(shape)).reshape(3, -1)
    affine = np.asarray(affine, float)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).T


def sample_linear(volume: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear values of ``volume`` (voxel-to-world ``affine``) at world points ``(N, 3)``; 0 outside.

    Plain :func:`scipy.ndimage.map_coordinates`, independent of :mod:`brainarr.spatial`, so
    that tests of the spatial steps compare against it.
    """
    from scipy import ndimage

    vox = np.linalg.solve(np.asarray(affine, float), np.c_[points, np.ones(len(points))].T)[:3]
    return ndimage.map_coordinates(volume, vox, order=1, cval=0.0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap ``2 |a & b| / (|a| + |b|)`` of two boolean maps."""
    return float(2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b)))


def epi_like(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """An EPI-like image (CSF bright, WM dark) made from the MNI152 tissue maps; and its affine.

    Oblique (tilted 0.2, 0.05, -0.1 rad), 57 x 67 x 55 voxels of 3.4 x 3.4 x 3.2 mm, with 2%
    Gaussian noise: a moving image for multimodal registration tests against the MNI T1.
    """
    from brainarr._core.rigid import rigid_matrix
    from brainarr.spatial._templates import tissue_priors

    priors = tissue_priors(2.0)
    src = (0.55 * priors.gm + 0.3 * priors.wm + 1.0 * priors.csf + 0.05 * priors.background).values
    src = src * (priors.background.values < 0.95)
    tilt = rigid_matrix([0.0, 0.0, 0.0, 0.2, 0.05, -0.1])
    grid = tilt @ np.diag([3.4, 3.4, 3.2, 1.0])
    grid[:3, 3] = tilt[:3, :3] @ np.array([-95.0, -125.0, -62.0])
    shape = (57, 67, 55)
    values = sample_linear(src, np.asarray(priors.attrs["affine"]), voxel_centres(grid, shape)).reshape(shape)
    values += 0.02 * np.random.default_rng(seed).standard_normal(shape)
    return values, grid
