"""Tests of brainarr.plotting: montages, glass brains, QC plots and the NIfTI image helper."""

from __future__ import annotations

import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.colors import to_rgba
from scipy import ndimage, signal

from brainarr import datasets, plotting, stats
from brainarr.exceptions import DimensionError, MissingMetadataError
from brainarr.io import to_nifti, to_nifti_image
from brainarr.testing import make_bold, make_maps

# --------------------------------------------------------------------------- inputs

POS_CENTRE = (42.0, -18.0, 54.0)  # right postcentral
NEG_CENTRE = (-45.0, -15.0, 30.0)  # left postcentral


def _grid():
    return datasets.study_grid(6.0)


def _sphere(grid, centre, radius):
    x, y, z = np.meshgrid(grid.x.values, grid.y.values, grid.z.values, indexing="ij")
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2


def _t_map(pos=True, neg=True, value=5.0):
    """A thresholded t map on the 6 mm study grid: blobs of +value / -value, zero elsewhere."""
    grid = _grid()
    t = np.zeros(grid.shape, np.float32)
    if pos:
        t[_sphere(grid, POS_CENTRE, 13)] = value
    if neg:
        t[_sphere(grid, NEG_CENTRE, 13)] = -value
    return grid.copy(data=t).rename("t")


@pytest.fixture(scope="module")
def grf_result():
    """GRF result of a synthetic two-group study with a planted increase and decrease."""
    grid = _grid()
    gm = datasets.gm_mask(like=grid, threshold=0.2)
    rng = np.random.default_rng(7)
    n = 16
    group = np.array(["patient"] * 8 + ["control"] * 8)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, *grid.shape)), (0, 1, 1, 1)) * 3
    effect = 2.0 * _sphere(grid, POS_CENTRE, 13) - 2.0 * _sphere(grid, NEG_CENTRE, 13)
    values = noise + (group == "patient")[:, None, None, None] * effect
    maps = make_maps(values, affine=grid.attrs["affine"], group=group)
    res = stats.ttest2(maps, covariates=(), groups=("patient", "control"), mask=gm)
    return stats.grf(res, mask=gm, voxel_p=0.01, cluster_p=0.05, fwhm=8.0)


def _pixels(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba(), dtype=float) / 255.0


def _warm(rgba):
    r, b = rgba[..., 0], rgba[..., 2]
    return (r > 0.7) & (b < 0.35) & (r - b > 0.5)


def _cold(rgba):
    r, b = rgba[..., 0], rgba[..., 2]
    return (b > 0.7) & (r < 0.35) & (b - r > 0.5)


def _cut_axes(fig):
    # nilearn adds a frame axes with one (filler) image; cut axes hold background + overlay
    return [ax for ax in fig.axes if len(ax.images) >= 2]


def _pixel_at(fig, rgba, ax, x_mm, y_mm):
    px, py = ax.transData.transform((x_mm, y_mm))
    height = rgba.shape[0]
    return rgba[round(height - py), round(px)]


def _texts(fig):
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]


# --------------------------------------------------------------------------- to_nifti_image


class TestToNiftiImage:
    def test_matches_file_written_by_io(self, tmp_path):
        t = _t_map()
        img = to_nifti_image(t)
        ref = nib.load(to_nifti(t, tmp_path / "t.nii.gz"))
        np.testing.assert_array_equal(np.asarray(img.dataobj), np.asarray(ref.dataobj))
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
        # an independent look-up: the voxel at a world position holds the map's value there
        ijk = np.rint(np.linalg.solve(img.affine, [*POS_CENTRE, 1.0])[:3]).astype(int)
        assert np.asarray(img.dataobj)[tuple(ijk)] == float(t.sel(x=42, y=-18, z=54, method="nearest"))

    def test_dim_order_and_dask(self):
        t = _t_map()
        a = to_nifti_image(t)
        b = to_nifti_image(t.transpose("z", "x", "y").chunk({"x": 7, "y": 11, "z": 5}))
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))

    def test_4d_carries_tr_and_bool_becomes_uint8(self):
        bold = make_bold(shape=(7, 8, 9, 12), tr=2.5)
        img = to_nifti_image(bold)
        assert img.shape == (7, 8, 9, 12)
        assert img.header.get_zooms()[3] == pytest.approx(2.5)
        mask = to_nifti_image(bold.isel(time=0) > 0)
        assert np.asarray(mask.dataobj).dtype == np.uint8

    def test_errors(self):
        t = _t_map()
        with pytest.raises(DimensionError, match="subject"):
            to_nifti_image(t.expand_dims(subject=["s1"]))
        bare = t.copy()
        bare.attrs = {}
        with pytest.raises(MissingMetadataError, match="affine"):
            to_nifti_image(bare)
        with pytest.raises(TypeError, match="DataArray"):
            to_nifti_image(np.zeros((2, 2, 2)))


# --------------------------------------------------------------------------- montage


class TestStudyCmap:
    def test_colours(self):
        thr, vmax = 3.0, 6.0
        cmap = plotting.study_cmap(thr, vmax)

        def at(v):
            return np.asarray(cmap((v + vmax) / (2 * vmax)))

        np.testing.assert_allclose(at(vmax), [1, 1, 0, 1], atol=0.01)  # yellow
        np.testing.assert_allclose(at(thr + 0.02), [1, 0, 0, 1], atol=0.02)  # red at threshold
        np.testing.assert_allclose(at(-vmax), [0, 1, 1, 1], atol=0.01)  # cyan
        np.testing.assert_allclose(at(-thr - 0.02), [0, 0, 1, 1], atol=0.02)  # blue at threshold
        assert at(0.0)[3] == 0.0  # transparent below threshold
        with pytest.raises(ValueError, match="vmax"):
            plotting.study_cmap(1.0, 0.0)


class TestMontage:
    CUTS = (45, 50, 55)

    @pytest.mark.parametrize("cmap", ["study", "cold_hot"])
    def test_increase_warm_decrease_cold(self, cmap):
        # cold_hot ends in white at +-vmax: keep the blob values in its coloured range
        vmax = 8.0 if cmap == "cold_hot" else None
        pos = plotting.montage(_t_map(neg=False), cuts=self.CUTS, colorbar=False, cmap=cmap, vmax=vmax)
        rgba = _pixels(pos)
        assert _warm(rgba).sum() > 50
        assert _cold(rgba).sum() == 0
        neg = plotting.montage(_t_map(pos=False), cuts=(25, 30, 35), colorbar=False, cmap=cmap, vmax=vmax)
        rgba = _pixels(neg)
        assert _cold(rgba).sum() > 50
        assert _warm(rgba).sum() == 0

    def test_blob_drawn_at_its_mni_position(self):
        # the grid's x axis is flipped (x from +90 to -90); the right-hemisphere blob must be
        # drawn at x = +42 mm of each axial cut and nothing at the mirror position
        fig = plotting.montage(_t_map(neg=False), cuts=self.CUTS, colorbar=False)
        rgba = _pixels(fig)
        axes = _cut_axes(fig)
        assert len(axes) == len(self.CUTS)
        for ax in axes:
            assert _warm(_pixel_at(fig, rgba, ax, 42.0, -18.0))
            assert not _warm(_pixel_at(fig, rgba, ax, -42.0, -18.0))
        texts = _texts(fig)
        for c in self.CUTS:
            assert f"z={c}" in texts

    def test_threshold_hides_weak_voxels(self):
        grid = _grid()
        t = np.zeros(grid.shape, np.float32)
        t[_sphere(grid, POS_CENTRE, 10)] = 5.0
        t[_sphere(grid, (-42.0, -18.0, 54.0), 10)] = 2.0
        fig = plotting.montage(grid.copy(data=t), threshold=3.0, cuts=(50, 55), colorbar=False)
        rgba = _pixels(fig)
        for ax in _cut_axes(fig):
            assert _warm(_pixel_at(fig, rgba, ax, 42.0, -18.0))
            assert not _warm(_pixel_at(fig, rgba, ax, -42.0, -18.0))

    def test_grf_dataset_and_colorbar(self, grf_result):
        g = grf_result
        assert (g["cluster"] > 0).any() and (g["cluster"] < 0).any()
        fig = plotting.montage(g, cuts=(30, 50), title="ALFF")
        texts = _texts(fig)
        thr = g.attrs["t_threshold"]
        vmax = float(np.abs(g["t"]).max())
        assert f"{thr:.2f}" in texts and f"-{thr:.2f}" in texts
        assert f"{vmax:.2f}" in texts
        assert "ALFF" in texts
        rgba = _pixels(fig)
        assert _warm(rgba).sum() > 0 and _cold(rgba).sum() > 0

    def test_dask_backed_same_picture(self):
        t = _t_map()
        a = _pixels(plotting.montage(t, cuts=(30, 50), vmax=6.0))
        b = _pixels(plotting.montage(t.chunk({"x": 7, "y": 20, "z": 4}), cuts=(30, 50), vmax=6.0))
        np.testing.assert_array_equal(a, b)

    def test_empty_map_says_so(self):
        fig = plotting.montage(_t_map(pos=False, neg=False), cuts=(0, 20))
        assert "no surviving cluster" in _texts(fig)
        rgba = _pixels(fig)
        assert _warm(rgba).sum() == 0 and _cold(rgba).sum() == 0
        # voxels all below an explicit threshold: also "empty", with the threshold named
        weak = _t_map(value=2.0)
        fig = plotting.montage(weak, threshold=3.1, cuts=(30, 50), title="ReHo")
        assert "no surviving cluster (|t| > 3.1)" in _texts(fig)
        rgba = _pixels(fig)
        assert _warm(rgba).sum() == 0 and _cold(rgba).sum() == 0

    @pytest.mark.slow
    def test_default_cuts_are_the_study_slices(self, tmp_path):
        assert tuple(range(-70, 96, 5)) == plotting.STUDY_CUTS
        assert plotting.STUDY_CUTS[0] == -70 and plotting.STUDY_CUTS[-1] == 95
        fig = plotting.montage(_t_map(), path=tmp_path / "m.png")
        texts = _texts(fig)
        assert all(f"z={c}" in texts for c in plotting.STUDY_CUTS)
        assert len(_cut_axes(fig)) == len(plotting.STUDY_CUTS)
        assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_given_figure_and_background(self):
        import matplotlib.pyplot as plt

        grid = _grid()
        bg = datasets.gm_mask(like=grid).astype(np.float32)
        fig = plt.figure(figsize=(6, 3))
        out = plotting.montage(_t_map(neg=False), cuts=(50,), bg_img=bg, figure=fig, colorbar=False)
        assert out is fig
        rgba = _pixels(fig)
        (ax,) = _cut_axes(fig)
        assert _warm(_pixel_at(fig, rgba, ax, 42.0, -18.0))

    def test_save_formats(self, tmp_path):
        fig = plotting.montage(_t_map(), cuts=(50,), path=tmp_path / "a" / "m.svg")
        assert b"<svg" in (tmp_path / "a" / "m.svg").read_bytes()[:2000]
        out = plotting.save_figure(fig, tmp_path / "m.png", dpi=50)
        assert out.read_bytes()[:4] == b"\x89PNG"
        assert not list(tmp_path.glob(".*tmp"))
        with pytest.raises(ValueError, match="unsupported figure format"):
            plotting.save_figure(fig, tmp_path / "m.bmp")

    def test_bad_inputs(self):
        t = _t_map()
        with pytest.raises(DimensionError, match=r"t_map.*time.*3-D map"):
            plotting.montage(t.expand_dims(time=[0.0, 2.0], axis=-1))
        bare = t.copy()
        bare.attrs = {}
        with pytest.raises(MissingMetadataError, match="affine"):
            plotting.montage(bare)
        with pytest.raises(ValueError, match="'t' variable"):
            plotting.montage(xr.Dataset({"beta": t}))
        with pytest.raises(TypeError, match="t_map"):
            plotting.montage(np.zeros((3, 3, 3)))
        with pytest.raises(ValueError, match="vmax"):
            plotting.montage(t, threshold=6.0, vmax=5.0, cuts=(0,))
        with pytest.raises(ValueError, match="cuts"):
            plotting.montage(t, cuts=())

    def test_missing_matplotlib_hint(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(ImportError, match=r"needs matplotlib.*pip install matplotlib"):
            plotting.montage(_t_map())


# --------------------------------------------------------------------------- glass brain


def _node_views(fig):
    """(offsets, facecolors, sizes) of the marker collection of every view."""
    return [
        (np.asarray(coll.get_offsets()), coll.get_facecolors(), coll.get_sizes())
        for ax in fig.axes
        for coll in ax.collections
        if len(coll.get_offsets()) and coll.get_sizes().size
    ]


class TestGlassBrain:
    def test_node_colours_are_the_study_colours(self):
        seed = np.array(to_rgba(plotting.SEED_COLOR))
        dec = np.array(to_rgba(plotting.DECREASE_COLOR))
        inc = np.array(to_rgba(plotting.INCREASE_COLOR))
        assert seed[2] > 0.5 and seed[:3].sum() < 0.7  # dark blue
        assert dec[2] > dec[0] and dec[:3].mean() > 0.7  # light blue
        assert inc[0] > 0.9 and 0.35 < inc[1] < 0.75 and inc[2] < 0.2  # orange

    def test_table_nodes_positions_colours_sizes(self):
        table = pd.DataFrame(
            {
                "x": [30.0, -20.0, -50.0],
                "y": [-40.0, 10.0, -60.0],
                "z": [50.0, 20.0, -30.0],
                "size": [100, 50, 10],
                "peak_t": [4.2, -3.9, 3.1],
            }
        )
        seed = (-40.0, -20.0, 55.0)
        fig = plotting.glass_brain(seed, table, max_node_size=200.0)
        views = _node_views(fig)
        assert len(views) == 3
        counts = sorted(len(v[0]) for v in views)
        # l shows x <= 0 nodes (seed + 2), r shows x >= 0 nodes (1), z shows all four
        assert counts == [1, 3, 4]
        offsets, colours, sizes = next(v for v in views if len(v[0]) == 4)
        expected_xy = np.array([seed[:2], *table[["x", "y"]].to_numpy()])
        np.testing.assert_allclose(offsets, expected_xy)
        expected_colours = [
            plotting.SEED_COLOR,
            plotting.INCREASE_COLOR,
            plotting.DECREASE_COLOR,
            plotting.INCREASE_COLOR,
        ]
        np.testing.assert_allclose(colours, [to_rgba(c) for c in expected_colours])
        # marker area proportional to cluster size (smallest clamped to a fifth of the largest)
        np.testing.assert_allclose(sizes[1:], [200.0, 100.0, 40.0])

    def test_grf_result_and_seed_mask(self, grf_result):
        g = grf_result
        grid = _grid()
        seed = datasets.regions(datasets.aal(like=grid), ["Postcentral_L"])
        assert seed.sizes["seed"] == 1
        fig = plotting.glass_brain(seed, g, title="FC")
        # expected nodes computed here: seed centroid and the peak of each labelled cluster
        mask = np.asarray(seed.isel(seed=0).transpose("x", "y", "z").values)
        xx, yy, _ = np.meshgrid(grid.x.values, grid.y.values, grid.z.values, indexing="ij")
        centroid = [xx[mask].mean(), yy[mask].mean()]
        labels = np.asarray(g["cluster"].values)
        t = np.asarray(g["t"].values)
        ids = [i for i in np.unique(labels) if i != 0]
        size = {i: int((labels == i).sum()) for i in ids}
        order = sorted([i for i in ids if i > 0], key=lambda i: -size[i]) + sorted(
            [i for i in ids if i < 0], key=lambda i: -size[i]
        )
        peaks = []
        for i in order:
            vals = np.where(labels == i, t * np.sign(i), -np.inf)
            k = np.unravel_index(np.argmax(vals), vals.shape)
            peaks.append([xx[k], yy[k]])
        offsets, colours, _ = max(_node_views(fig), key=lambda v: len(v[0]))
        np.testing.assert_allclose(offsets, [centroid, *peaks], atol=1e-6)
        expected = [plotting.SEED_COLOR] + [
            plotting.INCREASE_COLOR if i > 0 else plotting.DECREASE_COLOR for i in order
        ]
        np.testing.assert_allclose(colours, [to_rgba(c) for c in expected])
        assert "FC" in _texts(fig)

    def test_no_cluster(self):
        empty = pd.DataFrame({"x": [], "y": [], "z": [], "size": [], "peak_t": []})
        fig = plotting.glass_brain((10.0, 0.0, 40.0), empty, title="FC")
        assert any("no surviving cluster" in s for s in _texts(fig))
        offsets, colours, _ = max(_node_views(fig), key=lambda v: len(v[0]))
        assert len(offsets) == 1
        np.testing.assert_allclose(colours[0], to_rgba(plotting.SEED_COLOR))

    def test_bad_inputs(self):
        grid = _grid()
        table = pd.DataFrame({"x": [1.0], "y": [2.0], "z": [3.0], "size": [5], "peak_t": [3.0]})
        with pytest.raises(ValueError, match="views"):
            plotting.glass_brain((0, 0, 0), table, views=("q",))
        seeds = datasets.regions(datasets.aal(like=grid), ["Postcentral_L", "Postcentral_R"])
        with pytest.raises(DimensionError, match="2 seeds"):
            plotting.glass_brain(seeds, table)
        with pytest.raises(ValueError, match="empty"):
            plotting.glass_brain(grid.astype(bool), table)
        with pytest.raises(ValueError, match=r"lacks columns \['peak_t'\]"):
            plotting.glass_brain((0, 0, 0), table.drop(columns="peak_t"))
        with pytest.raises(TypeError, match="cluster table"):
            plotting.glass_brain((0, 0, 0), [1, 2, 3])
        with pytest.raises(TypeError, match="seed"):
            plotting.glass_brain((0, 0), table)


# --------------------------------------------------------------------------- QC


class TestCarpet:
    def test_reference_detrended_zscored_rows(self):
        bold = make_bold(shape=(7, 8, 9, 40), seed=3)
        mask = xr.ones_like(bold.isel(time=0, drop=True), dtype=bool)
        mask[0] = False
        fig = plotting.carpet(bold, mask, title="sub-01")
        image = np.asarray(fig.axes[0].images[0].get_array())
        data = bold.values[mask.values]  # voxels in C order of (x, y, z)
        data = signal.detrend(data, axis=1)
        expected = data / data.std(axis=1, ddof=1, keepdims=True)
        np.testing.assert_allclose(image, expected, atol=1e-5)

    def test_default_mask_drops_constant_voxels(self):
        values = np.random.default_rng(4).standard_normal((7, 8, 9, 30)).astype(np.float32)
        values[2, 3, 4] = 5.0
        values[6, 7, 8] = 0.0
        fig = plotting.carpet(make_bold(values))
        image = np.asarray(fig.axes[0].images[0].get_array())
        assert image.shape == (7 * 8 * 9 - 2, 30)

    def test_bad_input(self):
        with pytest.raises(DimensionError, match=r"\(x, y, z, time\)"):
            plotting.carpet(_t_map())
        with pytest.raises(ValueError, match="constant series"):
            plotting.carpet(make_bold(np.ones((7, 8, 9, 10), np.float32)))


class TestMotion:
    def test_reference_fd_and_parameters(self):
        rng = np.random.default_rng(1)
        n = 30
        trans = np.cumsum(rng.normal(0, 0.05, (n, 3)), axis=0)
        rot = np.cumsum(rng.normal(0, 0.001, (n, 3)), axis=0)
        names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "csf"]
        values = np.column_stack([trans, rot, rng.normal(size=n)])
        conf = xr.DataArray(
            values,
            dims=("time", "confound"),
            coords={"time": ("time", np.arange(n) * 2.0, {"units": "s"}), "confound": names},
        )
        fig = plotting.motion(conf, fd_threshold=0.2)
        axes = fig.axes
        assert len(axes) == 3
        fd = np.r_[0.0, np.abs(np.diff(trans, axis=0)).sum(1) + 50 * np.abs(np.diff(rot, axis=0)).sum(1)]
        np.testing.assert_allclose(axes[2].lines[0].get_ydata(), fd, rtol=1e-10)
        np.testing.assert_allclose(axes[2].lines[0].get_xdata(), np.arange(n) * 2.0)
        np.testing.assert_allclose(axes[0].lines[1].get_ydata(), trans[:, 1])
        np.testing.assert_allclose(axes[1].lines[2].get_ydata(), np.degrees(rot[:, 2]))
        assert axes[2].get_xlabel() == "time (s)"
        assert f"mean FD {fd[1:].mean():.3f} mm" in axes[0].get_title(loc="left")

    def test_bad_input(self):
        conf = xr.DataArray(np.zeros((2, 10, 6)), dims=("subject", "time", "confound"))
        with pytest.raises(DimensionError, match="one subject"):
            plotting.motion(conf)
