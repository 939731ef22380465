"""Tests of brainarr.metrics.roi_timeseries and roi_connectivity against plain numpy loops."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
from brainarr.exceptions import ChunkingError, DimensionError, GridMismatchError
from brainarr.metrics._kernels import FISHER_CLIP
from brainarr.metrics.roi import roi_correlation_kernel
from brainarr.testing import make_bold, raise_if_dask_computes

CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 7, "y": 8, "z": 9, "time": 13},
]

#: Labels of the test atlas: not contiguous, none of them 0.
LABELS = [3, 17, 250, 4, 9, 11]
NAMES = ["Three", "Seventeen", "TwoFifty", "Four", "Nine", "Eleven"]


def _atlas_values(shape=(7, 8, 9)) -> np.ndarray:
    """Labels with the hard cases: a one-voxel ROI, a ROI outside the mask, a constant ROI."""
    a = np.zeros(shape, np.int16)
    a[0:3, 0:4, :] = 3
    a[3:7, 0:4, 0:5] = 17
    a[3:7, 4:8, 0:5] = 250  # partly outside the mask (mask hole at 4:6, 4:6, 4:6)
    a[0:3, 4:8, 5:9] = 4
    a[6, 7, 8] = 9  # one voxel
    a[5, 5, 5] = 11  # one voxel, in the mask's hole: no voxel inside the mask
    a[3, 3, 3] = 0
    return a


@pytest.fixture
def atlas(bold):
    a = xr.DataArray(_atlas_values(), dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")})
    a.name = "atlas"
    a.attrs.update(
        {
            "affine": bold.attrs["affine"],
            "flag_values": LABELS,
            "flag_meanings": " ".join(NAMES),
            "source": "test atlas",
        }
    )
    return a


@pytest.fixture
def const_values(values):
    """``values`` with ROI 4 constant over time (each voxel its own constant)."""
    out = values.copy()
    roi = _atlas_values() == 4
    out[roi] = np.arange(roi.sum(), dtype=np.float32)[:, None]
    return out


def _reference_series(values, atlas_np, mask_np, labels):
    """ROI means with a plain loop over labels and voxels (NaN for a ROI without voxel)."""
    nt = values.shape[-1]
    out = np.full((nt, len(labels)), np.nan)
    for k, lab in enumerate(labels):
        acc, n = np.zeros(nt), 0
        for idx in np.ndindex(*atlas_np.shape):
            if atlas_np[idx] == lab and (mask_np is None or mask_np[idx]):
                acc += values[idx].astype(np.float64)
                n += 1
        if n:
            out[:, k] = acc / n
    return out


def _reference_corr(series, fisher):
    """Pearson r / Fisher z between the columns with explicit loops (NaN for constant ones)."""
    n = series.shape[1]
    out = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            a, b = series[:, i], series[:, j]
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.ptp(a) == 0 or np.ptp(b) == 0:
                continue
            da, db = a - a.mean(), b - b.mean()
            r = float(np.sum(da * db) / np.sqrt(np.sum(da * da) * np.sum(db * db)))
            if i == j:
                out[i, j] = 0.0 if fisher else 1.0
            else:
                out[i, j] = np.arctanh(np.clip(r, -1 + FISHER_CLIP, 1 - FISHER_CLIP)) if fisher else r
    return out


def _dask_atlas(atlas, chunks):
    return atlas.copy(data=dsa.from_array(atlas.values, chunks=tuple(chunks.get(d, -1) for d in ("x", "y", "z"))))


class TestRoiTimeseries:
    def test_reference(self, bold, values, atlas, mask, mask_np):
        out = bm.roi_timeseries(bold, atlas, mask=mask)
        assert out.dims == ("time", "roi")
        assert out["roi"].values.tolist() == LABELS
        assert out["region"].values.tolist() == NAMES
        expected = _reference_series(values, atlas.values, mask_np, LABELS)
        np.testing.assert_allclose(out.values, expected, rtol=1e-12, atol=1e-12)
        counts = [int(((atlas.values == lab) & mask_np).sum()) for lab in LABELS]
        assert out["n_voxels"].values.tolist() == counts
        # the hard cases are really there
        assert counts[LABELS.index(9)] == 1
        assert counts[LABELS.index(11)] == 0 and np.isnan(out.sel(roi=11)).all()
        assert ((atlas.values == 250) & ~mask_np).any() and counts[LABELS.index(250)] > 0

    def test_no_mask(self, bold, values, atlas):
        out = bm.roi_timeseries(bold, atlas)
        expected = _reference_series(values, atlas.values, None, LABELS)
        np.testing.assert_allclose(out.values, expected, rtol=1e-12, atol=1e-12)
        assert out.sel(roi=11)["n_voxels"].item() == 1

    def test_same_mean_as_seed_fc(self, bold, atlas, mask):
        seeds = xr.concat([atlas == lab for lab in (3, 250, 9)], dim="seed").assign_coords(seed=["a", "b", "c"])
        seed = bm.seed_fc(bold, seeds, mask=mask)["seed_series"]
        roi = bm.roi_timeseries(bold, atlas, labels=[3, 250, 9], mask=mask)
        np.testing.assert_allclose(roi.values, seed.values.T, rtol=1e-13, atol=1e-13)

    def test_labels_order_and_names(self, bold, atlas, mask):
        full = bm.roi_timeseries(bold, atlas, mask=mask)
        out = bm.roi_timeseries(bold, atlas, labels=[250, 3, 9], mask=mask)
        assert out["roi"].values.tolist() == [250, 3, 9]
        assert out["region"].values.tolist() == ["TwoFifty", "Three", "Nine"]
        xr.testing.assert_allclose(out.drop_vars("n_voxels"), full.sel(roi=[250, 3, 9]).drop_vars("n_voxels"))
        named = bm.roi_timeseries(bold, atlas.assign_attrs(flag_values=None), labels={17: "A", 4: "B"})
        assert named["region"].values.tolist() == ["A", "B"]

    def test_atlas_without_names(self, bold, values, atlas):
        plain = atlas.copy()
        plain.attrs = {"affine": atlas.attrs["affine"]}
        out = bm.roi_timeseries(bold, plain)
        assert out["roi"].values.tolist() == sorted(LABELS)
        assert "region" not in out.coords
        np.testing.assert_allclose(out.values, _reference_series(values, atlas.values, None, sorted(LABELS)))

    def test_subject_dim(self, cohort, atlas, mask, mask_np):
        out = bm.roi_timeseries(cohort, atlas, mask=mask)
        assert out.dims == ("subject", "time", "roi")
        assert out["subject"].values.tolist() == ["s1", "s2", "s3"]
        for s in range(3):
            expected = _reference_series(cohort.values[s], atlas.values, mask_np, LABELS)
            np.testing.assert_allclose(out.values[s], expected, rtol=1e-12, atol=1e-12)

    def test_subject_last(self, cohort, atlas):
        moved = cohort.transpose("x", "y", "z", "time", "subject")
        out = bm.roi_timeseries(moved, atlas)
        assert out.dims == ("subject", "time", "roi")
        np.testing.assert_allclose(out.values, bm.roi_timeseries(cohort, atlas).values, rtol=1e-12)

    def test_lazy(self, bold, atlas, mask):
        chunks = {"x": 3, "y": 5, "z": 4}
        dbold = bold.chunk(chunks)
        dmask = mask.chunk(chunks)
        with raise_if_dask_computes():
            out = bm.roi_timeseries(dbold, _dask_atlas(atlas, chunks), mask=dmask)
        assert dask.is_dask_collection(out.data)
        assert dask.is_dask_collection(out["n_voxels"].data)
        assert out.chunks == ((bold.sizes["time"],), (len(LABELS),))

    @pytest.mark.parametrize("chunks", CHUNKINGS)
    @pytest.mark.parametrize("lazy_atlas", [False, True])
    def test_chunk_invariance(self, bold, atlas, mask, chunks, lazy_atlas):
        expected = bm.roi_timeseries(bold, atlas, mask=mask)
        a = _dask_atlas(atlas, chunks) if lazy_atlas else atlas
        out = bm.roi_timeseries(bold.chunk(chunks), a, mask=mask)
        assert out.chunks == ((bold.sizes["time"],), (len(LABELS),))
        xr.testing.assert_allclose(out.compute(), expected, rtol=1e-12, atol=1e-12)

    def test_metadata(self, bold, atlas):
        out = bm.roi_timeseries(bold, atlas)
        assert out.name == "roi_signals"
        assert out.attrs["units"] == "arbitrary"
        assert out.attrs["tr"] == 2.0
        assert out.attrs["atlas"] == "test atlas"
        assert "brainarr.metrics.roi.roi_timeseries(" in out.attrs["history"]
        assert out["time"].identical(bold["time"])

    def test_aal(self):
        from brainarr import datasets

        grid = datasets.study_grid(9.0)
        atlas = datasets.aal(like=grid)
        bold = make_bold(np.random.default_rng(0).standard_normal((*grid.shape, 5)), affine=grid.attrs["affine"])
        out = bm.roi_timeseries(bold, atlas)
        table = datasets.aal_labels()
        assert out.sizes["roi"] == 116
        assert out["region"].values.tolist() == table["name"].tolist()
        k = int(table.index[table["name"] == "Precuneus_L"][0])
        voxels = atlas.values == k
        np.testing.assert_allclose(out.sel(roi=k).values, bold.values[voxels].mean(axis=0), rtol=1e-12)

    @pytest.mark.parametrize(
        ("labels", "match"),
        [
            ([3, 0], "background"),
            ([3, 3], "more than once"),
            ([3, 5], "not regions"),
            ([3.5], "integers"),
            (["a"], "integers"),
            ([], "empty"),
        ],
    )
    def test_bad_labels(self, bold, atlas, labels, match):
        with pytest.raises(ValueError, match=match):
            bm.roi_timeseries(bold, atlas, labels=labels)

    def test_bad_inputs(self, bold, atlas):
        with pytest.raises(ValueError, match="method"):
            bm.roi_timeseries(bold, atlas, method="median")
        with pytest.raises(TypeError, match="integer labels"):
            bm.roi_timeseries(bold, atlas > 0)
        with pytest.raises(DimensionError):
            bm.roi_timeseries(bold.isel(time=0), atlas)
        with pytest.raises(DimensionError):
            bm.roi_timeseries(bold, atlas.values)
        with pytest.raises(GridMismatchError):
            bm.roi_timeseries(bold, atlas.isel(x=slice(1, None)))


class TestRoiConnectivity:
    def test_kernel_vs_corrcoef(self, rng):
        x = rng.standard_normal((2, 50, 6)) + rng.standard_normal((2, 50, 1))
        r = roi_correlation_kernel(x, fisher=False)
        for s in range(2):
            np.testing.assert_allclose(r[s], np.corrcoef(x[s], rowvar=False), rtol=1e-12, atol=1e-14)
        assert np.array_equal(r, np.swapaxes(r, -1, -2))

    def test_reference(self, const_values, atlas, mask):
        bold = make_bold(const_values)
        ts = bm.roi_timeseries(bold, atlas, mask=mask)
        for fisher in (True, False):
            out = bm.roi_connectivity(ts, fisher=fisher)
            assert out.dims == ("roi_i", "roi_j")
            np.testing.assert_allclose(out.values, _reference_corr(ts.values, fisher), rtol=1e-10, atol=1e-12)
            assert np.array_equal(out.values, out.values.T, equal_nan=True)
            # constant ROI 4 and empty ROI 11: NaN rows and columns, diagonal included
            for lab in (4, 11):
                assert np.isnan(out.sel(roi_i=lab)).all() and np.isnan(out.sel(roi_j=lab)).all()
            ok = [lab for lab in LABELS if lab not in (4, 11)]
            diag = np.diag(out.sel(roi_i=ok, roi_j=ok).values)
            assert np.all(diag == (0.0 if fisher else 1.0))
            assert out["region_i"].values.tolist() == NAMES
            assert out["region_j"].values.tolist() == NAMES
            assert out["roi_i"].values.tolist() == LABELS
        assert out.name == "roi_fc"

    def test_identical_series_clipped(self, rng):
        x = rng.standard_normal((30, 3))
        x[:, 2] = 2 * x[:, 0] + 1  # r = 1 exactly
        ts = xr.DataArray(x, dims=("time", "roi"), coords={"roi": [1, 2, 3]})
        z = bm.roi_connectivity(ts)
        assert np.all(np.isfinite(z.values))
        np.testing.assert_allclose(z.sel(roi_i=1, roi_j=3), np.arctanh(1 - FISHER_CLIP), rtol=1e-6)
        assert z.name == "roi_zfc" and z.attrs["fisher_clip"] == FISHER_CLIP

    def test_subject_dim_and_coords(self, cohort, atlas, mask):
        cohort = cohort.assign_coords(group=("subject", ["a", "b", "a"]))
        ts = bm.roi_timeseries(cohort, atlas, mask=mask)
        out = bm.roi_connectivity(ts)
        assert out.dims == ("subject", "roi_i", "roi_j")
        assert out["group"].values.tolist() == ["a", "b", "a"]
        for s in range(3):
            np.testing.assert_allclose(out.values[s], _reference_corr(ts.values[s], True), rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("chunks", CHUNKINGS)
    def test_lazy_and_chunk_invariance(self, cohort, atlas, mask, chunks):
        expected = bm.roi_connectivity(bm.roi_timeseries(cohort, atlas, mask=mask))
        with raise_if_dask_computes():
            ts = bm.roi_timeseries(cohort.chunk({"subject": 1, **chunks}), atlas, mask=mask)
            out = bm.roi_connectivity(ts)
        assert dask.is_dask_collection(out.data)
        assert out.chunks == ((1, 1, 1), (len(LABELS),), (len(LABELS),))
        xr.testing.assert_allclose(out.compute(), expected, rtol=1e-10, atol=1e-12)
        assert "roi_connectivity" in out.attrs["history"].splitlines()[-1]
        assert "roi_timeseries" in out.attrs["history"].splitlines()[-2]

    def test_chunked_time_refused(self, bold, atlas):
        ts = bm.roi_timeseries(bold, atlas).chunk(time=10)
        with pytest.raises(ChunkingError, match=r"\.chunk\(time=-1, roi=-1\)"):
            bm.roi_connectivity(ts)

    def test_bad_inputs(self, bold, atlas):
        ts = bm.roi_timeseries(bold, atlas)
        with pytest.raises(DimensionError):
            bm.roi_connectivity(ts.rename(roi="region_dim"))
        with pytest.raises(ValueError, match="time points"):
            bm.roi_connectivity(ts.isel(time=slice(0, 2)))
