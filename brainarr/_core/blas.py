"""One BLAS thread inside Dask tasks that do matrix products (private).

Dask already runs one task per core; if each task's products also start a BLAS thread
pool, the threads oversubscribe the cores and small products (a few hundred rows times a
cache-sized tile) slow down by up to ten times. One thread per product is also what makes
results reproducible: OpenBLAS (numpy's wheels) splits a product between its threads in a
way that changes the rounding of GEMV, and of GEMM with more than a few hundred terms per
entry, with the number of threads. :func:`one_blas_thread` limits the BLAS pools to one
thread while at least one such block runs, from any thread, and restores them when the
last one ends (the limit is process-wide, so concurrent blocks share one reference count).
It uses ``threadpoolctl`` and does nothing without it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["one_blas_thread"]

_BLAS_LOCK = threading.Lock()
_BLAS_STATE: dict = {"depth": 0, "limiter": None, "controller": None}


def _blas_controller():
    if _BLAS_STATE["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency
            _BLAS_STATE["controller"] = False
        else:
            _BLAS_STATE["controller"] = ThreadpoolController()
    return _BLAS_STATE["controller"]


def _release_openblas() -> None:
    """Let the next thread that sets OpenBLAS's (process-wide) thread count do so.

    threadpoolctl >= 3.8 lets only one "controlling" thread change the limits of a pthreads
    OpenBLAS and silently ignores the calls of every other thread, so a limit set from a
    Dask worker thread would do nothing.
    """
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # pragma: no cover - threadpoolctl < 3
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with BLAS limited to one thread, from any thread (reference-counted).

    The matrix products of the metric and preprocessing kernels run inside it (see the
    module docstring). The limit is process-wide (OpenBLAS and MKL have one thread count per
    process): it is set when the first such block starts and restored when the last one
    ends, whichever threads they run in. Does nothing without ``threadpoolctl``.
    """
    with _BLAS_LOCK:
        if _BLAS_STATE["depth"] == 0:
            controller = _blas_controller()
            if controller:
                _release_openblas()
                _BLAS_STATE["limiter"] = controller.limit(limits=1, user_api="blas")
                _release_openblas()
        _BLAS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0 and _BLAS_STATE["limiter"] is not None:
                _release_openblas()
                _BLAS_STATE["limiter"].restore_original_limits()
                _release_openblas()
                _BLAS_STATE["limiter"] = None
