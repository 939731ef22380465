"""Tests for the shared docstring entries (brainarr._core.docs)."""

from __future__ import annotations

import inspect

import pytest

import brainarr.plotting as bp
from brainarr._core.docs import DOCS, fill_doc


def test_placeholder_replaced_with_its_indentation():
    @fill_doc
    def f():
        """Do it.

        Parameters
        ----------
        %(dpi)s
        width : float
            In %, of the page (a literal percent sign stays).
        """

    doc = f.__doc__
    assert "%(dpi)s" not in doc
    assert "        dpi : float, default 150\n            Resolution when saving" in doc
    assert "In %, of the page" in doc


def test_unknown_key_raises_at_decoration():
    def g():
        """%(no_such_entry)s"""

    with pytest.raises(KeyError, match="no_such_entry"):
        fill_doc(g)


@pytest.mark.parametrize("func", [bp.montage, bp.glass_brain, bp.carpet, bp.motion])
def test_plotting_docstrings_filled(func):
    doc = inspect.getdoc(func)
    assert "%(" not in doc
    for key in ("title", "figure", "path", "dpi"):
        first_line = DOCS[key].splitlines()[0]
        assert first_line in doc, (func.__name__, key)


def test_module_entries_and_kernel_docstrings():
    from brainarr._core.docs import docfiller
    from brainarr.metrics import _kernels

    fill = docfiller({"alpha": "alpha : float\n    Weight."})

    @fill
    def h():
        """Parameters
        ----------
        %(alpha)s
        """

    assert "\n        alpha : float\n            Weight.\n" in h.__doc__
    for func in (_kernels.degree_block, _kernels.degree_upper):
        doc = func.__doc__
        assert "%(" not in doc
        assert "z_all : numpy.ndarray (N, time), float32" in doc
        assert "Threshold and sum ``|r|`` instead of ``r``." in doc
