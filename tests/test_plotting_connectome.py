"""Tests of brainarr.plotting.connectome: ROI edges on a glass brain at the ROI centroids."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from brainarr import datasets, plotting
from brainarr.exceptions import DimensionError
from brainarr.plotting import _roi_centroids

LABELS = [1, 2, 3, 4]


@pytest.fixture(scope="module")
def atlas():
    """Four box ROIs (labels 1-4) on the 6 mm study grid, one of them in two pieces."""
    grid = datasets.study_grid(6.0)
    a = np.zeros(grid.shape, np.int16)
    a[5:9, 10:14, 10:14] = 1
    a[20:24, 10:14, 10:14] = 2
    a[5:9, 18:22, 16:20] = 3
    a[20:24, 18:22, 16:20] = 4
    a[12, 5, 5] = 4  # a second, one-voxel piece
    out = grid.copy(data=a).rename("atlas")
    out.attrs["flag_values"] = LABELS
    out.attrs["flag_meanings"] = "A B C D"
    return out


def _matrix(values=None):
    z = np.array(
        [[0.0, 0.8, -0.5, 0.1], [0.8, 0.0, 0.2, np.nan], [-0.5, 0.2, 0.0, 0.3], [0.1, np.nan, 0.3, 0.0]]
        if values is None
        else values
    )
    coords = {
        "roi_i": LABELS,
        "roi_j": LABELS,
        "region_i": ("roi_i", list("ABCD")),
        "region_j": ("roi_j", list("ABCD")),
    }
    return xr.DataArray(z, dims=("roi_i", "roi_j"), coords=coords, name="roi_zfc")


def _result():
    t = _matrix([[0, 4.0, -3.5, 0.5], [4.0, 0, 1, 0], [-3.5, 1, 0, 0], [0.5, 0, 0, 0]])
    sig = xr.zeros_like(t, dtype=bool)
    sig[0, 1] = sig[1, 0] = sig[0, 2] = sig[2, 0] = True
    return xr.Dataset({"t": t, "significant": sig})


def _edge_count(fig):
    """Number of edges nilearn drew in a one-view figure (one Line2D per edge)."""
    return max(len(ax.lines) for ax in fig.axes)


def test_centroids_against_loop(atlas):
    affine = np.asarray(atlas.attrs["affine"])
    got = _roi_centroids(atlas, LABELS, func="test")
    for k, lab in enumerate(LABELS):
        vox = np.argwhere(atlas.values == lab)
        np.testing.assert_allclose(got[k], nib.affines.apply_affine(affine, vox).mean(axis=0), atol=1e-9)


def test_result_writes_png(atlas, tmp_path):
    path = tmp_path / "out" / "connectome.png"
    fig = plotting.connectome(_result(), atlas, title="patient - control", path=path)
    assert isinstance(fig, Figure)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert any(t.get_text() == "patient - control" for t in fig.texts)


def test_matrix_with_threshold(atlas, tmp_path):
    fig = plotting.connectome(_matrix(), atlas, threshold=0.25, views=("z",), path=tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 0
    assert _edge_count(fig) == 3  # |z| > 0.25: 0.8, -0.5 and 0.3 (NaN and the diagonal never)
    assert _edge_count(plotting.connectome(_matrix(), atlas, views=("z",))) == 5


def test_result_draws_significant_edges_only(atlas):
    assert _edge_count(plotting.connectome(_result(), atlas, views=("z",))) == 2


def test_no_edge(atlas):
    res = _result()
    res["significant"][:] = False
    fig = plotting.connectome(res, atlas, title="t")
    assert any("no edge to draw" in t.get_text() for t in fig.texts)


def test_bad_inputs(atlas):
    stacked = xr.concat([_matrix(), _matrix()], dim="subject")
    with pytest.raises(DimensionError, match="select one subject"):
        plotting.connectome(stacked, atlas)
    with pytest.raises(ValueError, match=r"labels \[9\] have no voxel"):
        plotting.connectome(_matrix().assign_coords(roi_i=[1, 2, 3, 9], roi_j=[1, 2, 3, 9]), atlas)
    with pytest.raises(TypeError, match="roi_ttest2 Dataset"):
        plotting.connectome(np.eye(4), atlas)
    with pytest.raises(ValueError, match="lacks"):
        plotting.connectome(xr.Dataset({"t": _matrix()}), atlas)
    with pytest.raises(ValueError, match="views"):
        plotting.connectome(_matrix(), atlas, views=("q",))
