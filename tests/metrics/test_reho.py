from __future__ import annotations

import itertools

import dask
import numpy as np
import pytest
import scipy.stats
import xarray as xr

import brainarr.metrics as bm
from brainarr.exceptions import ChunkingError, DimensionError, GridMismatchError
from brainarr.metrics._kernels import kendall_w_block, neighbour_offsets, rank_time
from brainarr.testing import make_bold, raise_if_dask_computes

CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 2, "y": 3, "z": 1},
    {"x": 7, "y": 8, "z": 9},
]


def in_neighbourhood(d, neighbourhood):
    n_nonzero = sum(v != 0 for v in d)
    return {27: True, 19: n_nonzero <= 2, 7: n_nonzero <= 1}[neighbourhood]


def reference_reho(values, mask, neighbourhood=27, edge="truncate"):
    """Per-voxel loop: scipy ranks, explicit neighbour list, KCC formula without tie correction."""
    ranks = scipy.stats.rankdata(values, axis=-1)  # average ranks for ties
    nt = values.shape[-1]
    shape = values.shape[:3]
    out = np.zeros(shape)
    for idx in np.ndindex(*shape):
        if not mask[idx]:
            continue
        if edge == "zero" and any(i == 0 or i == n - 1 for i, n in zip(idx, shape, strict=True)):
            continue
        series = []
        for d in itertools.product((-1, 0, 1), repeat=3):
            if not in_neighbourhood(d, neighbourhood):
                continue
            nb = tuple(i + o for i, o in zip(idx, d, strict=True))
            if all(0 <= i < n for i, n in zip(nb, shape, strict=True)) and mask[nb]:
                series.append(ranks[nb])
        r = np.sum(series, axis=0)
        k = len(series)
        out[idx] = 12 * np.sum((r - r.mean()) ** 2) / (k**2 * (nt**3 - nt))
    return out


class TestKernels:
    def test_offsets(self):
        for n in (7, 19, 27):
            offs = neighbour_offsets(n)
            assert len(set(offs)) == n and (0, 0, 0) in offs
        with pytest.raises(ValueError, match="7, 19 or 27"):
            neighbour_offsets(26)

    def test_rank_ties(self):
        x = np.array([[3.0, 1.0, 3.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
        np.testing.assert_array_equal(rank_time(x), [[3.5, 1, 3.5, 2], [2.5, 2.5, 2.5, 2.5]])

    @pytest.mark.parametrize("shape", [(40, 23), (3, 4, 5, 12), (6, 1)])
    def test_rank_matches_scipy_with_many_ties(self, rng, shape):
        ties = rng.integers(0, 4, shape).astype(np.float32)  # many runs of equal values
        smooth = rng.standard_normal(shape)
        for x in (ties, smooth):
            expected = scipy.stats.rankdata(x, axis=-1, method="average")
            np.testing.assert_array_equal(rank_time(x), expected)
        mask = rng.random(shape[:-1]) < 0.5
        masked = rank_time(ties, mask)
        np.testing.assert_array_equal(masked[mask], scipy.stats.rankdata(ties[mask], axis=-1))
        assert np.all(masked[~mask] == 0)

    def test_identical_series_give_one(self):
        # K copies of the same tie-free series: perfect concordance, W = 1
        series = np.random.default_rng(0).permutation(10) + 1.0
        ranks = np.zeros((3, 3, 3, 10))
        ranks[:] = series
        padded = np.pad(ranks, [(1, 1)] * 3 + [(0, 0)])
        w = kendall_w_block(padded, 27)
        np.testing.assert_allclose(w[..., 0], 1.0, rtol=1e-6)


class TestReho:
    @pytest.mark.parametrize("neighbourhood", [7, 19, 27])
    def test_reference(self, bold, values, mask, mask_np, neighbourhood):
        out = bm.reho(bold, mask, neighbourhood=neighbourhood)
        ref = reference_reho(values, mask_np, neighbourhood)
        np.testing.assert_allclose(out.values, ref, rtol=1e-5, atol=1e-6)
        assert out.dtype == np.float32
        assert np.all(out.values[~mask_np] == 0)
        # every in-mask voxel gets a positive W
        assert np.all((out.values > 0) == mask_np)

    def test_isolated_voxel(self, rng):
        values = rng.standard_normal((5, 6, 7, 30)).astype(np.float32)
        mask = np.zeros((5, 6, 7), bool)
        mask[2, 3, 4] = True
        bold = make_bold(values)
        out = bm.reho(bold, bold.isel(time=0, drop=True).copy(data=mask))
        assert out.values[2, 3, 4] == pytest.approx(1.0, rel=1e-6)
        assert np.count_nonzero(out.values) == 1

    def test_edge_zero(self, bold, values, mask, mask_np):
        out = bm.reho(bold.chunk({"x": 3, "y": 5, "z": 4}), mask, edge="zero").compute()
        ref = reference_reho(values, mask_np, 27, edge="zero")
        np.testing.assert_allclose(out.values, ref, rtol=1e-5, atol=1e-6)
        assert np.all(out.values[0] == 0) and np.all(out.values[:, :, -1] == 0)

    def test_lazy_and_chunks(self, bold, mask):
        chunked = bold.chunk({"x": 3, "y": 5, "z": 4})
        with raise_if_dask_computes():
            out = bm.reho(chunked, mask)
        assert dask.is_dask_collection(out.data)
        assert out.chunks == ((3, 3, 1), (5, 3), (4, 4, 1))

    @pytest.mark.parametrize("chunks", CHUNKINGS)
    def test_chunk_invariance(self, bold, values, mask, mask_np, chunks):
        # chunk boundaries split neighbourhoods (chunks of 1 voxel included)
        actual = bm.reho(bold.chunk(chunks), mask).compute()
        np.testing.assert_allclose(actual.values, reference_reho(values, mask_np), rtol=1e-5, atol=1e-6)
        xr.testing.assert_allclose(actual, bm.reho(bold, mask), rtol=1e-6, atol=1e-7)

    def test_dask_mask(self, bold, mask):
        expected = bm.reho(bold, mask)
        with raise_if_dask_computes():
            out = bm.reho(bold.chunk({"x": 4}), mask.chunk({"x": 4}))
        xr.testing.assert_allclose(out.compute(), expected)

    def test_cohort(self, cohort, mask, mask_np):
        chunked = cohort.chunk({"subject": 1, "x": 4, "z": 5})
        with raise_if_dask_computes():
            out = bm.reho(chunked, mask)
        assert out.dims == ("subject", "x", "y", "z")
        assert out.chunks == ((1, 1, 1), (4, 3), (8,), (5, 4))
        computed = out.compute()
        for i in range(3):
            ref = reference_reho(cohort.values[i], mask_np)
            np.testing.assert_allclose(computed.values[i], ref, rtol=1e-5, atol=1e-6)

    def test_metadata(self, bold, mask):
        out = bm.reho(bold, mask, neighbourhood=19)
        assert out.name == "reho"
        assert out.attrs["units"] == "1"
        assert "Kendall" in out.attrs["long_name"]
        assert out.attrs["neighbourhood"] == 19
        assert out.attrs["affine"] == bold.attrs["affine"] and out.attrs["tr"] == 2.0
        assert "brainarr.metrics.reho.reho(" in out.attrs["history"]
        assert "neighbourhood=19" in out.attrs["history"]
        assert "Zang" in out.attrs["references"]
        xr.testing.assert_equal(out.x, bold.x)


class TestRehoErrors:
    def test_neighbourhood(self, bold, mask):
        with pytest.raises(ValueError, match="neighbourhood must be 7, 19 or 27, got 26"):
            bm.reho(bold, mask, neighbourhood=26)

    def test_edge(self, bold, mask):
        with pytest.raises(ValueError, match="edge"):
            bm.reho(bold, mask, edge="reflect")

    def test_time_chunked(self, bold, mask):
        with pytest.raises(ChunkingError, match="time"):
            bm.reho(bold.chunk(time=7), mask)

    def test_mask_required(self, bold):
        with pytest.raises(DimensionError, match="mask"):
            bm.reho(bold, None)

    def test_mask_grid(self, bold, mask):
        shifted = mask.assign_coords(y=mask.y + 3.0)
        with pytest.raises(GridMismatchError, match="y coordinates differ by up to 3"):
            bm.reho(bold, shifted)
