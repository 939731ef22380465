"""Shared numpydoc text: one home for each parameter description used by several functions.

A docstring names a shared entry with a line holding only ``%(key)s``; :func:`fill_doc`
replaces that line with the entry, indented like the placeholder (the approach of nilearn's
and MNE's ``fill_doc``). Other ``%`` characters of the docstring are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DOCS", "docfiller", "fill_doc"]

F = TypeVar("F", bound=Callable)

#: Shared parameter descriptions, without indentation.
DOCS: dict[str, str] = {
    "title": "title : str, optional\n    Figure title.",
    "figure": "figure : matplotlib.figure.Figure, optional\n    Draw into this (empty) figure instead of a new one.",
    "path": "path : str or path-like, optional\n    Also save the figure there (see :func:`save_figure`).",
    "dpi": "dpi : float, default 150\n    Resolution when saving a raster format (dots per inch).",
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<key>\w+)\)s[ \t]*$", re.MULTILINE)


def docfiller(entries: dict[str, str]) -> Callable[[F], F]:
    """A decorator replacing each ``%(key)s`` line of a docstring by ``entries[key]``, indented alike.

    Raises
    ------
    KeyError
        For a placeholder with no entry (found when the decorated module is imported).
    """

    def decorate(func: F) -> F:
        doc = func.__doc__
        if doc:

            def expand(match: re.Match) -> str:
                indent, key = match["indent"], match["key"]
                if key not in entries:
                    raise KeyError(f"{func.__qualname__}: no shared docstring entry {key!r}")
                return "\n".join(indent + line for line in entries[key].splitlines())

            func.__doc__ = _PLACEHOLDER.sub(expand, doc)
        return func

    return decorate


#: Fill the entries of :data:`DOCS` (the entries shared across the package).
fill_doc = docfiller(DOCS)
