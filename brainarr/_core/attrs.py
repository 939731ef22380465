"""Metadata helpers: provenance history, carried attributes, declared output metadata."""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import xarray as xr

__all__ = ["CARRIED_ATTRS", "carry_attrs", "history_entry", "record_history", "set_metadata"]

#: Attributes that describe the acquisition and travel from inputs to derived maps.
CARRIED_ATTRS = ("affine", "tr", "source")

F = TypeVar("F", bound=Callable[..., Any])
XrObj = TypeVar("XrObj", xr.DataArray, xr.Dataset)


def _version() -> str:
    from brainarr._core.version import __version__

    return __version__


def _short_repr(value: Any) -> str:
    if isinstance(value, (xr.DataArray, xr.Dataset)):
        name = getattr(value, "name", None)
        return f"<{type(value).__name__} {name!r}>" if name else f"<{type(value).__name__}>"
    if isinstance(value, np.ndarray):
        return f"<ndarray shape={value.shape}>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def history_entry(func_name: str, params: Mapping[str, Any]) -> str:
    """Format one provenance line.

    Parameters
    ----------
    func_name : str
        Fully qualified name of the public function, e.g. ``"brainarr.metrics.alff"``.
    params : mapping
        Its arguments; data arguments are summarised, never printed in full.

    Returns
    -------
    str
        ``"<ISO timestamp> brainarr.mod.func(a=1, ...) [brainarr <version>]"``.
    """
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    args = ", ".join(f"{k}={_short_repr(v)}" for k, v in params.items())
    return f"{stamp} {func_name}({args}) [brainarr {_version()}]"


def _append_history(obj: XrObj, entry: str, previous: str | None) -> XrObj:
    lines = [line for line in (previous or "").splitlines() if line]
    lines.append(entry)
    obj.attrs["history"] = "\n".join(lines)
    return obj


def record_history(func: F) -> F:
    """Decorate a public function so that its output records the call in ``attrs["history"]``.

    The first argument's history (if it is an xarray object) is extended with one line
    naming the function and its non-data arguments (see :func:`history_entry`).
    For a Dataset output, every data variable gets the same history as the Dataset.
    """
    signature = inspect.signature(func)
    qualname = _public_module(func.__module__) + "." + func.__name__

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        out = func(*args, **kwargs)
        first = next(iter(bound.arguments.values()), None)
        previous = first.attrs.get("history") if isinstance(first, (xr.DataArray, xr.Dataset)) else None
        params = dict(list(bound.arguments.items())[1:])
        entry = history_entry(qualname, params)
        if isinstance(out, (xr.DataArray, xr.Dataset)):
            _append_history(out, entry, previous)
            if isinstance(out, xr.Dataset):
                for var in out.data_vars.values():
                    _append_history(var, entry, var.attrs.get("history", previous))
        return out

    return wrapper  # type: ignore[return-value]


def _public_module(module: str) -> str:
    parts = [p for p in module.split(".") if not p.startswith("_")]
    return ".".join(parts)


def carry_attrs(source: xr.DataArray | xr.Dataset, target: XrObj, keys: tuple[str, ...] = CARRIED_ATTRS) -> XrObj:
    """Copy acquisition attributes (``affine``, ``tr``, ``source``) from ``source`` to ``target``.

    Only keys present on ``source`` are copied. For a Dataset target, each data variable
    gets them too. The target is modified in place and returned.
    """
    carried = {k: source.attrs[k] for k in keys if k in source.attrs}
    target.attrs.update(carried)
    if isinstance(target, xr.Dataset):
        for var in target.data_vars.values():
            var.attrs.update(carried)
    return target


def set_metadata(
    da: xr.DataArray,
    *,
    name: str,
    long_name: str,
    units: str,
    description: str | None = None,
    references: str | None = None,
    **extra: Any,
) -> xr.DataArray:
    """Name a DataArray and declare its CF-style metadata.

    Parameters
    ----------
    da : xarray.DataArray
        The output map or series.
    name, long_name, units : str
        Variable name (RESTplus/DPABI style, e.g. ``"alff"``), human-readable name and
        units (``"1"`` for dimensionless).
    description, references : str, optional
        Free text, usually templated with the parameters, and the citations.
    **extra
        Further attributes (parameters of the computation).

    Returns
    -------
    xarray.DataArray
        ``da`` renamed, with the attributes set.
    """
    da = da.rename(name)
    da.attrs.update({"long_name": long_name, "units": units})
    if description is not None:
        da.attrs["description"] = description
    if references is not None:
        da.attrs["references"] = references
    da.attrs.update(extra)
    return da
