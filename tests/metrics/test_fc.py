from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

import brainarr.datasets as bd
import brainarr.metrics as bm
from brainarr.exceptions import ChunkingError, DimensionError, GridMismatchError
from brainarr.metrics._kernels import FISHER_CLIP
from brainarr.testing import make_affine, make_bold, raise_if_dask_computes

CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 2, "y": 8, "z": 1},
]


@pytest.fixture
def seeds(bold):
    grid = bold.isel(time=0, drop=True)
    a = xr.zeros_like(grid, dtype=bool)
    a[1:3, 2:5, 3:6] = True  # overlaps the tied block, the constant voxel is not in it
    b = xr.zeros_like(grid, dtype=bool)
    b[5, 6, 7] = True  # one voxel: r = 1 with itself
    c = xr.zeros_like(grid, dtype=bool)
    c[2:5, 2:5, 2:5] = True  # contains the constant voxel (3, 3, 3) and part of the mask hole
    out = xr.concat([a, b, c], dim="seed").assign_coords(seed=["block", "single", "cube"])
    out.attrs["affine"] = bold.attrs["affine"]
    return out


def reference_fc(values, seed_masks, mask):
    """np.corrcoef per voxel against the mean of the seed voxels inside the mask."""
    nx, ny, nz, _ = values.shape
    out = np.zeros((len(seed_masks), nx, ny, nz))
    for s, sm in enumerate(seed_masks):
        sel = sm & mask if mask is not None else sm
        series = values[sel].astype(np.float64).mean(axis=0)
        for idx in np.ndindex(nx, ny, nz):
            if mask is not None and not mask[idx]:
                continue
            x = values[idx].astype(np.float64)
            if np.ptp(x) == 0:
                continue
            out[(s, *idx)] = np.corrcoef(x, series)[0, 1]
    return out


class TestSeedFc:
    def test_reference(self, bold, values, seeds, mask, mask_np):
        out = bm.seed_fc(bold, seeds, mask=mask)
        ref = reference_fc(values, seeds.values, mask_np)
        np.testing.assert_allclose(out.fc.values, ref, rtol=1e-5, atol=1e-6)
        clipped = np.clip(ref, -1 + FISHER_CLIP, 1 - FISHER_CLIP)
        np.testing.assert_allclose(out.zfc.values, np.arctanh(clipped), rtol=1e-5, atol=1e-5)
        assert out.fc.dims == ("seed", "x", "y", "z")
        # hard cases: constant voxel -> 0, the one-voxel seed has r = 1 and a finite z
        assert np.all(out.fc.values[:, 3, 3, 3] == 0)
        assert out.fc.values[1, 5, 6, 7] == pytest.approx(1.0, abs=1e-6) or not mask_np[5, 6, 7]
        assert np.all(np.isfinite(out.zfc.values))
        assert np.all(out.fc.values[:, ~mask_np] == 0)
        expected_series = values[seeds.values[2] & mask_np].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(out.seed_series.values[2], expected_series, rtol=1e-10)
        assert out.seed_n_voxels.values.tolist() == [int((s & mask_np).sum()) for s in seeds.values]

    def test_no_mask_and_self_correlation(self, bold, values, seeds):
        out = bm.seed_fc(bold, seeds)
        ref = reference_fc(values, seeds.values, None)
        np.testing.assert_allclose(out.fc.values, ref, rtol=1e-5, atol=1e-6)
        assert out.fc.values[1, 5, 6, 7] == pytest.approx(1.0, abs=1e-6)
        assert out.zfc.values[1, 5, 6, 7] == pytest.approx(np.arctanh(1 - FISHER_CLIP), rel=1e-4)

    def test_single_mask_without_seed_dim(self, bold, values, seeds):
        one = seeds.isel(seed=0, drop=True).rename("left")
        out = bm.seed_fc(bold, one)
        assert out.seed.values.tolist() == ["left"]
        np.testing.assert_allclose(out.fc.values[0], reference_fc(values, seeds.values[:1], None)[0], atol=1e-6)

    def test_aal_names(self, rng):
        affine = make_affine(3.0, origin=(38.0, -30.0, 40.0))  # x from -38 to -56 mm: left central region
        values = rng.standard_normal((7, 8, 9, 30)).astype(np.float32)
        bold = make_bold(values, affine=affine)
        out = bm.seed_fc(bold, ["Precentral_L", "Postcentral_L"])
        atlas = bd.aal(like=bold.isel(time=0, drop=True)).values
        labels = bd.aal_labels()
        masks = [atlas == labels.index[labels["name"] == n][0] for n in ("Precentral_L", "Postcentral_L")]
        assert all(m.sum() > 0 for m in masks)
        np.testing.assert_allclose(out.fc.values, reference_fc(values, masks, None), rtol=1e-5, atol=1e-6)
        assert out.seed.values.tolist() == ["Precentral_L", "Postcentral_L"]

    def test_spheres(self, bold, values):
        centre = (float(bold.x[3]), float(bold.y[4]), float(bold.z[4]))
        sph = bd.spheres(bold.isel(time=0, drop=True), [centre], radius=4.0, names=["s"])
        out = bm.seed_fc(bold.chunk({"x": 3}), sph).compute()
        np.testing.assert_allclose(out.fc.values, reference_fc(values, sph.values, None), rtol=1e-5, atol=1e-6)

    def test_lazy_and_chunks(self, bold, seeds, mask):
        chunked = bold.chunk({"x": 3, "y": 5, "z": 4})
        with raise_if_dask_computes():
            out = bm.seed_fc(chunked, seeds, mask=mask)
        for var in out.data_vars.values():
            assert dask.is_dask_collection(var.data)
        assert out.fc.chunks == ((3,), (3, 3, 1), (5, 3), (4, 4, 1))
        assert out.zfc.chunks == out.fc.chunks

    @pytest.mark.parametrize("chunks", CHUNKINGS)
    def test_chunk_invariance(self, bold, seeds, mask, chunks):
        expected = bm.seed_fc(bold, seeds, mask=mask)
        actual = bm.seed_fc(bold.chunk(chunks), seeds, mask=mask).compute()
        xr.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)

    def test_cohort(self, cohort, seeds, mask, mask_np):
        chunked = cohort.chunk({"subject": 1, "x": 4})
        with raise_if_dask_computes():
            out = bm.seed_fc(chunked, seeds, mask=mask)
        assert out.fc.dims == ("seed", "subject", "x", "y", "z")
        assert out.seed_series.dims == ("seed", "subject", "time")
        assert out.fc.chunks == ((3,), (1, 1, 1), (4, 3), (8,), (9,))
        computed = out.compute()
        for i in range(3):
            ref = reference_fc(cohort.values[i], seeds.values, mask_np)
            np.testing.assert_allclose(computed.fc.values[:, i], ref, rtol=1e-5, atol=1e-6)

    def test_metadata(self, bold, seeds):
        out = bm.seed_fc(bold, seeds)
        assert out.fc.attrs["units"] == "1" and out.zfc.attrs["units"] == "1"
        assert "Pearson" in out.fc.attrs["long_name"] and "Fisher" in out.zfc.attrs["long_name"]
        assert out.seed_series.attrs["units"] == "arbitrary"
        for obj in (out, out.fc, out.zfc):
            assert obj.attrs["affine"] == bold.attrs["affine"] and obj.attrs["tr"] == 2.0
            assert "brainarr.metrics.fc.seed_fc(" in obj.attrs["history"]
        assert "Biswal" in out.fc.attrs["references"]


class TestSeedFcErrors:
    def test_unknown_region(self, bold):
        with pytest.raises(KeyError, match="Precentral_X"):
            bm.seed_fc(bold, ["Precentral_X"])

    def test_empty_seed(self, bold, seeds, mask):
        empty = seeds.copy(data=np.zeros(seeds.shape, bool))
        with pytest.raises(ValueError, match=r"seed\(s\) \['block', 'single', 'cube'\] have no voxel"):
            bm.seed_fc(bold, empty, mask=mask)

    def test_seed_not_bool(self, bold, seeds):
        with pytest.raises(TypeError, match=r"seeds.*boolean"):
            bm.seed_fc(bold, seeds.astype(int))

    def test_seed_grid(self, bold, seeds):
        with pytest.raises(GridMismatchError, match="seeds"):
            bm.seed_fc(bold, seeds.isel(x=slice(1, None)))

    def test_seed_type(self, bold):
        with pytest.raises(DimensionError, match="seeds must be"):
            bm.seed_fc(bold, np.ones((7, 8, 9), bool))

    def test_time_chunked(self, bold, seeds):
        with pytest.raises(ChunkingError, match="time"):
            bm.seed_fc(bold.chunk(time=20), seeds)
