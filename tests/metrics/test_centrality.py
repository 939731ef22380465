from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
from brainarr.exceptions import ChunkingError, DimensionError, GridMismatchError
from brainarr.metrics._kernels import degree_block, degree_upper, zero_constant_rows, zscore_rows
from brainarr.testing import raise_if_dask_computes

CHUNKINGS = [
    ({"x": 3, "y": 5, "z": 4}, 37),
    ({"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)}, 1),
    ({"x": 2, "y": 8, "z": 1}, None),
    ({"x": 7, "y": 8, "z": 9}, 1000),
]


def reference_dc(values, mask, threshold=0.25, absolute=False):
    """Full N x N matrix with np.corrcoef (float64); constant voxels -> r = 0 and degree 0."""
    x = values[mask].astype(np.float64)
    constant = np.ptp(x, axis=1) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(x)
    r = np.nan_to_num(r)
    np.fill_diagonal(r, 0.0)
    if absolute:
        r = np.abs(r)
    edges = r > threshold
    np.fill_diagonal(edges, False)
    binary = edges.sum(axis=1).astype(float)
    weighted = np.where(edges, r, 0).sum(axis=1)
    binary[constant] = 0
    weighted[constant] = 0
    out_b = np.zeros(mask.shape)
    out_w = np.zeros(mask.shape)
    out_b[mask] = binary
    out_w[mask] = weighted
    return out_b, out_w


class TestKernels:
    def test_zscore_rows(self, rng):
        x = rng.standard_normal((5, 20))
        x[2] = 3.0
        z = zscore_rows(x)
        expected = np.corrcoef(np.delete(x, 2, axis=0))
        np.testing.assert_allclose(np.delete(np.delete(z @ z.T, 2, 0), 2, 1), expected, atol=1e-6)
        assert np.all(z[2] == 0)

    def test_degree_block_excludes_self(self, rng):
        z = zscore_rows(rng.standard_normal((6, 30)) + rng.standard_normal(30))
        out = degree_block(z[2:4], np.array([2, 3]), z, -1.0, False)
        # with a threshold of -1 every other voxel is an edge: degree N - 1
        np.testing.assert_array_equal(out[:, 0], [5, 5])

    @pytest.mark.parametrize(("threshold", "absolute"), [(0.2, False), (0.15, True), (-0.3, False), (0.0, False)])
    @pytest.mark.parametrize(("block", "tile"), [(7, 3), (13, 512), (40, 5), (1, 1)])
    def test_degree_upper_sums_to_dense_degrees(self, rng, threshold, absolute, block, tile):
        x = rng.standard_normal((40, 25)) + 0.5 * rng.standard_normal(25)
        x[11] = 2.0  # constant voxel: r = 0 with everything
        z = zscore_rows(x)
        total = sum(
            degree_upper(z[s : s + block], s, z, threshold, absolute, tile=tile)[0] for s in range(0, 40, block)
        )
        total = zero_constant_rows(total, z)
        # independent reference: dense float64 correlations, r = 0 for the constant voxel
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.nan_to_num(np.corrcoef(x))
        r = np.abs(r) if absolute else r
        edges = r > threshold
        np.fill_diagonal(edges, False)
        ref_b = edges.sum(axis=1).astype(float)
        ref_w = np.where(edges, r, 0.0).sum(axis=1)
        ref_b[11] = ref_w[11] = 0.0
        np.testing.assert_array_equal(total[:, 0], ref_b)
        np.testing.assert_allclose(total[:, 1], ref_w, rtol=1e-5, atol=1e-5)
        if threshold < 0:  # the others count the constant voxel as an edge of weight 0
            assert total[0, 0] >= 1 and ref_b.max() > 0


class TestDegreeCentrality:
    def test_reference(self, bold, values, mask, mask_np):
        out = bm.degree_centrality(bold, mask)
        ref_b, ref_w = reference_dc(values, mask_np)
        np.testing.assert_array_equal(out.dc_binary.values, ref_b)
        np.testing.assert_allclose(out.dc_weighted.values, ref_w, rtol=1e-5, atol=1e-5)
        assert out.dc_binary.values[3, 3, 3] == 0  # constant voxel: 0 (DPABI: -1)
        assert np.all(out.dc_binary.values[~mask_np] == 0)
        assert out.dc_binary.values.max() > 0
        assert out.dc_binary.dtype == np.float32

    @pytest.mark.parametrize(("threshold", "absolute"), [(0.1, True), (0.4, False), (0.0, False)])
    def test_reference_options(self, bold, values, mask, mask_np, threshold, absolute):
        out = bm.degree_centrality(bold.chunk({"x": 4}), mask, threshold=threshold, absolute=absolute).compute()
        ref_b, ref_w = reference_dc(values, mask_np, threshold, absolute)
        np.testing.assert_array_equal(out.dc_binary.values, ref_b)
        np.testing.assert_allclose(out.dc_weighted.values, ref_w, rtol=1e-5, atol=1e-5)

    def test_lazy_and_chunks(self, bold, mask):
        chunked = bold.chunk({"x": 3, "y": 5, "z": 4})
        with raise_if_dask_computes():
            out = bm.degree_centrality(chunked, mask, block_size=50)
        assert dask.is_dask_collection(out.dc_binary.data) and dask.is_dask_collection(out.dc_weighted.data)
        assert out.dc_binary.chunks == ((3, 3, 1), (5, 3), (4, 4, 1))
        assert out.dc_weighted.chunks == out.dc_binary.chunks

    @pytest.mark.parametrize(("chunks", "block_size"), CHUNKINGS)
    def test_chunk_and_block_invariance(self, bold, mask, chunks, block_size):
        expected = bm.degree_centrality(bold, mask)
        actual = bm.degree_centrality(bold.chunk(chunks), mask, block_size=block_size).compute()
        xr.testing.assert_equal(actual.dc_binary, expected.dc_binary)
        xr.testing.assert_allclose(actual.dc_weighted, expected.dc_weighted, rtol=1e-5, atol=1e-5)

    def test_cohort(self, cohort, mask, mask_np):
        chunked = cohort.chunk({"subject": 2, "x": 4})
        with raise_if_dask_computes():
            out = bm.degree_centrality(chunked, mask)
        assert out.dc_binary.dims == ("subject", "x", "y", "z")
        assert out.dc_binary.chunks == ((1, 1, 1), (4, 3), (8,), (9,))
        computed = out.compute()
        for i in range(3):
            ref_b, ref_w = reference_dc(cohort.values[i], mask_np)
            np.testing.assert_array_equal(computed.dc_binary.values[i], ref_b)
            np.testing.assert_allclose(computed.dc_weighted.values[i], ref_w, rtol=1e-5, atol=1e-5)

    @pytest.mark.slow
    def test_distributed(self, cohort, mask, mask_np):
        import distributed

        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster),
        ):
            out = bm.degree_centrality(cohort.chunk({"subject": 1, "x": 3}), mask, block_size=40).compute()
            fc = bm.seed_fc(cohort.chunk({"subject": 1, "x": 3}), mask.expand_dims(seed=["m"]), mask=mask).compute()
        for i in range(3):
            ref_b, _ = reference_dc(cohort.values[i], mask_np)
            np.testing.assert_array_equal(out.dc_binary.values[i], ref_b)
        assert np.all(np.isfinite(fc.zfc.values))

    def test_default_block_size(self):
        assert bm.default_block_size(53_600) == 313
        assert bm.default_block_size(10) == 10
        assert bm.default_block_size(10**9) == 1
        assert bm.default_block_size(1000, target_mib=1) == 262

    def test_metadata(self, bold, mask):
        out = bm.degree_centrality(bold, mask, threshold=0.3)
        assert set(out.data_vars) == {"dc_binary", "dc_weighted"}
        assert out.dc_binary.attrs["units"] == "1" and out.dc_binary.attrs["threshold"] == 0.3
        assert "binary" in out.dc_binary.attrs["long_name"] and "weighted" in out.dc_weighted.attrs["long_name"]
        for obj in (out, out.dc_binary, out.dc_weighted):
            assert obj.attrs["affine"] == bold.attrs["affine"] and obj.attrs["tr"] == 2.0
            assert "brainarr.metrics.centrality.degree_centrality(" in obj.attrs["history"]
            assert "threshold=0.3" in obj.attrs["history"]
        xr.testing.assert_equal(out.z, bold.z)


class TestDegreeCentralityErrors:
    def test_threshold(self, bold, mask):
        with pytest.raises(ValueError, match=r"threshold must be in \[-1, 1\), got 1.5"):
            bm.degree_centrality(bold, mask, threshold=1.5)

    def test_block_size(self, bold, mask):
        with pytest.raises(ValueError, match="block_size"):
            bm.degree_centrality(bold, mask, block_size=0)

    def test_empty_mask(self, bold, mask):
        with pytest.raises(ValueError, match="mask has no voxel"):
            bm.degree_centrality(bold, mask & False)

    def test_time_chunked(self, bold, mask):
        with pytest.raises(ChunkingError, match="time"):
            bm.degree_centrality(bold.chunk(time=20), mask)

    def test_grid(self, bold, mask):
        with pytest.raises(GridMismatchError):
            bm.degree_centrality(bold, mask.isel(y=slice(0, 5)))

    def test_two_leading_dims(self, cohort, mask):
        with pytest.raises(DimensionError, match="at most one leading dim"):
            bm.degree_centrality(cohort.expand_dims(run=[1]), mask)


def reference_ec(values, mask, threshold=None, binary=False):
    """Leading eigenvector of the full matrix with numpy.linalg.eigh (constant voxels left out)."""
    x = values[mask].astype(np.float64)
    valid = np.ptp(x, axis=1) > 0
    r = np.corrcoef(x[valid])
    if threshold is None:
        m = (r + 1) / 2
    else:
        np.fill_diagonal(r, 0)
        m = np.where(r > threshold, 1.0 if binary else r, 0.0)
    _, vecs = np.linalg.eigh(m)
    v = np.abs(vecs[:, -1])
    full = np.zeros(x.shape[0])
    full[valid] = v
    out = np.zeros(mask.shape)
    out[mask] = full
    return out


class TestEigenvectorCentrality:
    @pytest.mark.parametrize(("threshold", "binary"), [(None, False), (0.2, False), (0.2, True)])
    def test_reference(self, bold, values, mask, mask_np, threshold, binary):
        out = bm.eigenvector_centrality(bold, mask, threshold=threshold, binary=binary)
        ref = reference_ec(values, mask_np, threshold, binary)
        np.testing.assert_allclose(out.values, ref, atol=2e-5)
        assert out.values[3, 3, 3] == 0 and np.all(out.values[~mask_np] == 0)
        np.testing.assert_allclose(np.linalg.norm(out.values), 1.0, rtol=1e-5)

    def test_lazy_chunks_and_cohort(self, cohort, mask, mask_np):
        chunked = cohort.chunk({"subject": 1, "x": 3, "y": 5})
        with raise_if_dask_computes():
            out = bm.eigenvector_centrality(chunked, mask, threshold=0.1, block_size=29)
        assert dask.is_dask_collection(out.data)
        assert out.chunks == ((1, 1, 1), (3, 3, 1), (5, 3), (9,))
        computed = out.values
        for i in range(3):
            ref = reference_ec(cohort.values[i], mask_np, 0.1)
            np.testing.assert_allclose(computed[i], ref, atol=1e-4)

    def test_metadata(self, bold, mask):
        out = bm.eigenvector_centrality(bold, mask)
        assert out.name == "ec" and out.attrs["units"] == "1"
        assert "Wink" in out.attrs["references"] and out.attrs["threshold"] == "none"
        assert out.attrs["affine"] == bold.attrs["affine"]
        assert "brainarr.metrics.centrality.eigenvector_centrality(" in out.attrs["history"]

    def test_errors(self, bold, mask):
        with pytest.raises(ValueError, match=r"threshold must be None or in \[0, 1\)"):
            bm.eigenvector_centrality(bold, mask, threshold=-0.2)
        with pytest.raises(ValueError, match="max_iter"):
            bm.eigenvector_centrality(bold, mask, max_iter=0)

    def test_not_converged_warns(self, bold, mask):
        out = bm.eigenvector_centrality(bold, mask, threshold=0.2, max_iter=1)
        with pytest.warns(RuntimeWarning, match="did not converge in 1 iterations"):
            out.compute()
