"""Global options, set through :func:`set_options` only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["OPTIONS", "set_options"]

OPTIONS: dict[str, Any] = {
    "chunk_mib": 64.0,
    "data_validation": "raise",
}

_VALIDATORS: dict[str, Callable[[Any], bool]] = {
    "chunk_mib": lambda v: isinstance(v, (int, float)) and v > 0,
    "data_validation": lambda v: v in ("raise", "warn", "log"),
}

_DESCRIPTIONS = {
    "chunk_mib": "a positive number (MiB of one spatial chunk of BOLD)",
    "data_validation": "one of 'raise', 'warn', 'log'",
}


class set_options:
    """Set brainarr options globally or within a ``with`` block.

    Parameters
    ----------
    chunk_mib : float, default 64
        Target size in MiB of one spatial chunk of a BOLD array (time is one chunk).
    data_validation : {"raise", "warn", "log"}, default "raise"
        What data-quality checks (NaN values, constant voxels in a mask) do when they fail.

    Examples
    --------
    >>> import brainarr as ba
    >>> with ba.set_options(chunk_mib=16):
    ...     ba.set_options.current()["chunk_mib"]
    16
    """

    def __init__(self, **kwargs: Any) -> None:
        self._old: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key not in OPTIONS:
                raise ValueError(f"unknown brainarr option {key!r}; valid options are {sorted(OPTIONS)}")
            if not _VALIDATORS[key](value):
                raise ValueError(f"option {key!r} must be {_DESCRIPTIONS[key]}, got {value!r}")
            self._old[key] = OPTIONS[key]
        OPTIONS.update(kwargs)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, *exc: object) -> None:
        OPTIONS.update(self._old)

    @staticmethod
    def current() -> dict[str, Any]:
        """Return a copy of the current options."""
        return dict(OPTIONS)
