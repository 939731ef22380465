from __future__ import annotations

import threading
import warnings

import dask
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
from brainarr._core.blas import one_blas_thread
from brainarr.exceptions import ChunkingError, DimensionError, GridMismatchError
from brainarr.metrics._kernels import (
    degree_block,
    degree_upper,
    leading_eigenvector,
    zero_constant_rows,
    zscore_rows,
)
from brainarr.testing import ShuffledThreadPool, blas_threads, make_bold, raise_if_dask_computes

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

    def test_graph_without_edges_gives_the_constant_vector(self, bold, values, mask, mask_np):
        # every vector is an eigenvector of a graph without edges: power iteration from the
        # constant vector stays there, and so does the result
        out = bm.eigenvector_centrality(bold, mask, threshold=0.999).values
        valid = mask_np & (np.ptp(values, axis=-1) > 0)
        np.testing.assert_allclose(out[valid], 1 / np.sqrt(valid.sum()), rtol=1e-6)  # float32 maps
        assert np.all(out[~valid] == 0)

    @pytest.mark.parametrize("seed", [0, 1, 2])
    @pytest.mark.parametrize(("threshold", "binary"), [(0.0, False), (0.3, False), (0.3, True), (0.6, True)])
    def test_kernel_matches_dense_eigh(self, seed, threshold, binary):
        rng = np.random.default_rng(seed)
        # two groups of correlated series plus noise: close leading eigenvalues
        x = rng.standard_normal((240, 50))
        x[:120] += 0.8 * rng.standard_normal(50)
        x[120:] += 0.75 * rng.standard_normal(50)
        x[5] = 2.0  # a constant series: left out, centrality 0
        z = zscore_rows(x)
        out = leading_eigenvector(z, threshold=threshold, binary=binary, block_size=37, max_iter=500, tol=1e-10)
        r = np.corrcoef(np.delete(x, 5, axis=0))
        np.fill_diagonal(r, 0)
        _, vecs = np.linalg.eigh(np.where(r > threshold, 1.0 if binary else r, 0.0))
        ref = np.insert(np.abs(vecs[:, -1]), 5, 0.0)
        np.testing.assert_allclose(out[:, 0], ref, atol=1e-6)
        assert out[5, 0] == 0 and np.all(out >= 0)

    def test_not_converged_returns_the_best_estimate(self):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((200, 40)) + 0.5 * rng.standard_normal(40)
        z = zscore_rows(x)
        r = np.corrcoef(x)
        np.fill_diagonal(r, 0)
        ref = np.abs(np.linalg.eigh(np.where(r > 0.2, r, 0.0))[1][:, -1])
        errors = []
        for max_iter in (3, 6):
            with pytest.warns(RuntimeWarning, match=f"did not converge in {max_iter} iterations"):
                out = leading_eigenvector(z, threshold=0.2, binary=False, block_size=64, max_iter=max_iter, tol=1e-12)
            np.testing.assert_allclose(np.linalg.norm(out), 1.0, rtol=1e-12)
            errors.append(np.abs(out[:, 0] - ref).max())
        assert errors[1] < errors[0] < 0.1

    def test_not_converged_warns(self, bold, mask):
        out = bm.eigenvector_centrality(bold, mask, threshold=0.2, max_iter=1)
        with pytest.warns(RuntimeWarning, match="did not converge in 1 iterations"):
            out.compute()


# --------------------------------------------------------------------------- reproducibility


def _blas_thread_counts() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture(scope="module")
def long_bold():
    """~1,700 voxels x 500 volumes: tiles big enough for OpenBLAS to thread, and T above the
    length (about 450 terms here) from which its GEMM rounds differently with other thread
    counts, so a kernel that does not hold BLAS at one thread fails the tests below."""
    rng = np.random.default_rng(7)
    shape = (12, 13, 14, 500)
    values = rng.standard_normal(shape) + 0.7 * rng.standard_normal(shape[-1])
    values[2, 3, 4] = 1.0  # a constant voxel
    bold = make_bold(values.astype(np.float32), chunks={"x": 5, "y": 7})
    mask_np = rng.random(shape[:3]) > 0.2
    mask_np[2, 3, 4] = True
    mask = xr.DataArray(mask_np, dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")}, name="mask")
    return bold, mask


class TestReproducibility:
    """Identical inputs give bit-identical maps, whatever the scheduler, order and BLAS threads."""

    def test_one_blas_thread_from_any_thread(self):
        if not _blas_thread_counts():
            pytest.skip("no BLAS library that threadpoolctl controls")
        seen = []

        def task():
            with one_blas_thread():
                seen.append(_blas_thread_counts())
                with one_blas_thread():  # nested and concurrent blocks share one limit
                    seen.append(_blas_thread_counts())

        # the main thread holds threadpoolctl's control: a worker thread must still get 1
        with blas_threads(3):
            before = _blas_thread_counts()
            workers = [threading.Thread(target=task) for _ in range(3)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            after = _blas_thread_counts()
        assert before == after and set(before) == {3}
        assert all(set(s) == {1} for s in seen) and len(seen) == 6

    @pytest.mark.parametrize(("threshold", "absolute"), [(0.25, False), (0.1, True)])
    def test_degree_centrality_bit_identical(self, long_bold, threshold, absolute):
        bold, mask = long_bold

        def run(**compute):
            out = bm.degree_centrality(bold, mask, threshold=threshold, absolute=absolute, block_size=300)
            return out.compute(**compute)

        expected = run(scheduler="sync")
        assert expected.dc_binary.values.max() > 0
        runs = [run(scheduler="threads", num_workers=4) for _ in range(5)]
        for seed in range(3):  # tasks started in shuffled order, at random times
            with ShuffledThreadPool(3, seed) as pool:
                runs.append(run(scheduler="threads", pool=pool))
        for n_threads in (1, 4):  # the BLAS default seen by anything not held at one thread
            with blas_threads(n_threads):
                runs.append(run(scheduler="threads", num_workers=2))
        for out in runs:
            np.testing.assert_array_equal(out.dc_binary.values, expected.dc_binary.values)
            np.testing.assert_array_equal(out.dc_weighted.values, expected.dc_weighted.values)

    def test_degree_upper_ignores_blas_default(self, long_bold):
        bold, mask = long_bold
        z = zscore_rows(bold.values[mask.values])
        outs = []
        for n_threads in (1, 2, 4):
            with blas_threads(n_threads):
                outs.append(sum(degree_upper(z[s : s + 600], s, z, 0.25, False)[0] for s in range(0, len(z), 600)))
                assert set(_blas_thread_counts()) <= {n_threads}  # restored afterwards
        for out in outs[1:]:
            np.testing.assert_array_equal(out, outs[0])

    def test_distributed_bit_identical(self, long_bold):
        import distributed

        bold, mask = long_bold
        expected = bm.degree_centrality(bold, mask, block_size=300).compute(scheduler="threads")
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster),
        ):
            runs = [bm.degree_centrality(bold, mask, block_size=300).compute() for _ in range(2)]
        for out in runs:
            np.testing.assert_array_equal(out.dc_binary.values, expected.dc_binary.values)
            np.testing.assert_array_equal(out.dc_weighted.values, expected.dc_weighted.values)

    @pytest.mark.parametrize("threshold", [None, 0.1])
    def test_eigenvector_centrality(self, long_bold, threshold):
        """Bit-identical for a fixed BLAS thread count; within 1e-6 across thread counts (docstring)."""
        bold, mask = long_bold
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 30 iterations may not converge
            ec = bm.eigenvector_centrality(bold, mask, threshold=threshold, max_iter=30)
            first = ec.compute(scheduler="threads").values
            for _ in range(3):
                np.testing.assert_array_equal(ec.compute(scheduler="threads").values, first)
            for n_threads in (1, 4):
                with blas_threads(n_threads):
                    np.testing.assert_allclose(ec.compute(scheduler="threads").values, first, rtol=0, atol=1e-6)
