"""Single-threaded BLAS inside Dask tasks that do many small matrix products (private).

Dask already runs one task per core; if each task's products also start a BLAS thread
pool, the threads oversubscribe the cores and small products (a few hundred rows times a
cache-sized tile) slow down by up to ten times. :func:`single_threaded_blas` limits the
BLAS pools to one thread while at least one such task runs, and restores them when the
last one ends (the limit is process-wide, so concurrent tasks share one reference count).
It uses ``threadpoolctl`` when it is installed (it comes with scikit-learn, a dependency
of nilearn) and does nothing otherwise.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["single_threaded_blas"]

_LOCK = threading.Lock()
_STATE: dict = {"depth": 0, "limiter": None, "controller": None}


def _controller():
    if _STATE["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - optional
            _STATE["controller"] = False
        else:
            _STATE["controller"] = ThreadpoolController()
    return _STATE["controller"]


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with BLAS limited to one thread (shared by concurrent callers)."""
    with _LOCK:
        if _STATE["depth"] == 0:
            controller = _controller()
            if controller:
                _STATE["limiter"] = controller.limit(limits=1, user_api="blas")
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0 and _STATE["limiter"] is not None:
                _STATE["limiter"].restore_original_limits()
                _STATE["limiter"] = None
