"""Degree centrality at a sparsity (3dDegreeCentrality -sparsity) against brute-force references."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
import brainarr.metrics.centrality as centrality
from brainarr.metrics._kernels import SPARSITY_BINS, degree_histogram, target_edges, zscore_rows
from brainarr.testing import make_bold, raise_if_dask_computes

CHUNKINGS = [
    ({"x": 3, "y": 5, "z": 4}, 37),
    ({"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)}, 1),
    ({"x": 2, "y": 8, "z": 1}, None),
    ({"x": 7, "y": 8, "z": 9}, 1000),
]


def upper_pairs(values, mask, absolute=False):
    """Every unique pair (i < j) of in-mask voxels and its r (float64, np.corrcoef; constant -> 0)."""
    x = values[mask].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.nan_to_num(np.corrcoef(x))
    ii, jj = np.triu_indices(x.shape[0], 1)
    rij = r[ii, jj]
    return ii, jj, (np.abs(rij) if absolute else rij)


def reference_sparsity(values, mask, sparsity, absolute=False):
    """Brute force: sort all N (N - 1) / 2 pairs, keep r >= the k-th largest (and r > 0)."""
    ii, jj, r = upper_pairs(values, mask, absolute)
    n = int(mask.sum())
    k = int(n * (n - 1) // 2 * sparsity / 100)
    positive = np.sort(r[r > 0])[::-1]
    r_k = positive[min(k, positive.size) - 1]
    keep = (r >= r_k) & (r > 0)
    b = np.bincount(ii[keep], minlength=n) + np.bincount(jj[keep], minlength=n)
    w = np.bincount(ii[keep], r[keep], minlength=n) + np.bincount(jj[keep], r[keep], minlength=n)
    out_b, out_w = np.zeros(mask.shape), np.zeros(mask.shape)
    out_b[mask], out_w[mask] = b, w
    gap = (positive[k - 1] - positive[k]) if k < positive.size else np.inf
    return out_b, out_w, k, r_k, gap


def n_edges(ds):
    return float(ds.dc_binary.sum()) / 2


class TestKernels:
    @pytest.mark.parametrize(("block", "tile", "absolute"), [(7, 3, False), (40, 512, True), (1, 1, False)])
    def test_histogram_counts_each_pair_once(self, rng, block, tile, absolute):
        x = rng.standard_normal((40, 25)) + 0.5 * rng.standard_normal(25)
        x[11] = 2.0
        z = zscore_rows(x)
        hist = sum(degree_histogram(z[s : s + block], s, z, absolute, tile=tile)[0] for s in range(0, 40, block))
        g = (z @ z.T)[np.triu_indices(40, 1)]  # same float32 values, bin by bin
        g = np.abs(g) if absolute else g
        expected = np.bincount(np.clip(np.ceil(g * np.float32(SPARSITY_BINS)), 0, SPARSITY_BINS + 1).astype(int))
        # bins >= 1 hold each positive pair once (bin 0: r <= 0 and the blocks' own pairs j <= i)
        assert hist[1:].sum() == np.count_nonzero(g > 0) > 0
        # another product shape may round a pair across a bin edge (width 2**-18): a shift of one
        shift = np.cumsum(hist[1 : expected.size]) - np.cumsum(expected[1:])
        assert np.abs(shift).max() <= 2

    def test_target_edges(self):
        assert target_edges(100, 1.0) == 49  # floor(4950 * 0.01), AFNI's (int) cast
        assert target_edges(53_600, 5.0) == int(53_600 * 53_599 // 2 * 0.05)
        assert target_edges(2, 100) == 1


class TestSparsity:
    @pytest.mark.parametrize("sparsity", [0.5, 3.0, 20.0])
    def test_reference(self, bold, values, mask, mask_np, sparsity):
        out = bm.degree_centrality(bold, mask, sparsity=sparsity)
        ref_b, ref_w, k, r_k, gap = reference_sparsity(values, mask_np, sparsity)
        assert gap > 1e-6  # the k-th and (k+1)-th r are apart: float32 (error < 3e-7) cannot swap them
        np.testing.assert_array_equal(out.dc_binary.values, ref_b)
        np.testing.assert_allclose(out.dc_weighted.values, ref_w, rtol=1e-5, atol=1e-5)
        assert n_edges(out) == k
        smallest_kept = np.nextafter(np.float32(out.dc_threshold), np.float32(2))  # the k-th largest, float32
        assert abs(float(smallest_kept) - r_k) < 1e-6
        assert out.dc_binary.values[3, 3, 3] == 0 and out.dc_binary.values[0, 0, 0] == 0  # constant voxels
        assert np.all(out.dc_binary.values[~mask_np] == 0)

    def test_absolute(self, bold, values, mask, mask_np):
        out = bm.degree_centrality(bold.chunk({"y": 3}), mask, sparsity=2.0, absolute=True).compute()
        ref_b, ref_w, _, _, gap = reference_sparsity(values, mask_np, 2.0, absolute=True)
        assert gap > 1e-6
        np.testing.assert_array_equal(out.dc_binary.values, ref_b)
        np.testing.assert_allclose(out.dc_weighted.values, ref_w, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("sparsity", [0.01, 0.1, 1.0, 7.5, 33.3])
    def test_within_one_edge(self, bold, mask, mask_np, sparsity):
        n = int(mask_np.sum())
        n_pairs = n * (n - 1) // 2
        out = bm.degree_centrality(bold.chunk({"x": 4}), mask, sparsity=sparsity, block_size=50).compute()
        assert abs(n_edges(out) - round(sparsity / 100 * n_pairs)) <= 1
        assert out.attrs["target_edges"] == out.dc_binary.attrs["target_edges"] == int(n_pairs * sparsity / 100)

    def test_same_graph_as_its_threshold(self, bold, mask):
        out = bm.degree_centrality(bold, mask, sparsity=4.0).compute()
        again = bm.degree_centrality(bold, mask, threshold=float(out.dc_threshold)).compute()
        xr.testing.assert_equal(again.dc_binary, out.dc_binary)
        xr.testing.assert_allclose(again.dc_weighted, out.dc_weighted, rtol=1e-5)

    def test_ties_are_all_kept(self, rng):
        """Six copies of one series: their 15 pairs tie at r = 1; asking for 10 keeps all 15."""
        values = rng.standard_normal((5, 6, 4, 30)).astype(np.float32)
        values[1, 2, :] = values[2, 2, 0] = values[0, 0, 0]  # six identical voxels
        bold = make_bold(values)
        mask_np = np.ones(values.shape[:3], bool)
        mask = xr.DataArray(mask_np, dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")})
        n_pairs = 120 * 119 // 2
        sparsity = 100 * 10.5 / n_pairs  # k = 10
        out = bm.degree_centrality(bold.chunk({"x": 2}), mask, sparsity=sparsity, block_size=7).compute()
        ref_b, _, k, _, _ = reference_sparsity(values, mask_np, sparsity)
        assert k == 10 and n_edges(out) == 15
        np.testing.assert_array_equal(out.dc_binary.values, ref_b)
        assert out.dc_binary.values[0, 0, 0] == 5 and np.count_nonzero(out.dc_binary.values) == 6

    @pytest.mark.parametrize(("chunks", "block_size"), CHUNKINGS)
    def test_chunk_invariance(self, bold, mask, chunks, block_size):
        expected = bm.degree_centrality(bold, mask, sparsity=5.0)
        actual = bm.degree_centrality(bold.chunk(chunks), mask, sparsity=5.0, block_size=block_size).compute()
        xr.testing.assert_equal(actual.dc_binary, expected.dc_binary)
        # another product shape may round r in its last float32 bit
        xr.testing.assert_allclose(actual.dc_threshold, expected.dc_threshold, rtol=1e-6)
        xr.testing.assert_allclose(actual.dc_weighted, expected.dc_weighted, rtol=1e-5, atol=1e-5)

    def test_large_band_fallback(self, bold, mask, monkeypatch):
        """A band over the collection limit goes through the sub-histogram and a third pass."""
        expected = bm.degree_centrality(bold.chunk({"x": 3}), mask, sparsity=5.0, block_size=40).compute()
        monkeypatch.setattr(centrality, "SPARSITY_BAND_LIMIT", 0)
        actual = bm.degree_centrality(bold.chunk({"x": 3}), mask, sparsity=5.0, block_size=40).compute()
        xr.testing.assert_equal(actual.dc_binary, expected.dc_binary)
        xr.testing.assert_equal(actual.dc_threshold, expected.dc_threshold)
        xr.testing.assert_allclose(actual.dc_weighted, expected.dc_weighted, rtol=1e-5)

    def test_lazy(self, bold, mask):
        chunked = bold.chunk({"x": 3, "y": 5, "z": 4})
        with raise_if_dask_computes():
            out = bm.degree_centrality(chunked, mask, sparsity=2.0, block_size=50)
        for var in ("dc_binary", "dc_weighted", "dc_threshold"):
            assert dask.is_dask_collection(out[var].data)
        assert out.dc_binary.chunks == ((3, 3, 1), (5, 3), (4, 4, 1))
        assert out.dc_threshold.shape == ()

    def test_cohort(self, cohort, mask, mask_np):
        with raise_if_dask_computes():
            out = bm.degree_centrality(cohort.chunk({"subject": 2, "x": 4}), mask, sparsity=3.0)
        assert out.dc_threshold.dims == ("subject",)
        computed = out.compute()
        for i in range(3):
            ref_b, _, k, _, _ = reference_sparsity(cohort.values[i], mask_np, 3.0)
            np.testing.assert_array_equal(computed.dc_binary.values[i], ref_b)
            assert computed.dc_binary.values[i].sum() == 2 * k

    def test_all_positive_pairs(self, bold, mask, mask_np, values):
        """More edges asked than positive pairs: all of them, with a warning (AFNI warns too)."""
        with pytest.warns(RuntimeWarning, match="only"):
            out = bm.degree_centrality(bold, mask, sparsity=100.0).compute()
        _, _, r = upper_pairs(values, mask_np)
        assert n_edges(out) == np.count_nonzero(r > 0)
        assert float(out.dc_threshold) == 0.0

    def test_default_unchanged(self, bold, mask):
        out = bm.degree_centrality(bold, mask)
        assert set(out.data_vars) == {"dc_binary", "dc_weighted"}
        assert out.dc_binary.attrs["threshold"] == 0.25

    def test_metadata(self, bold, mask):
        out = bm.degree_centrality(bold, mask, sparsity=2.5)
        assert set(out.data_vars) == {"dc_binary", "dc_weighted", "dc_threshold"}
        for obj in (out.dc_binary, out.dc_weighted, out.dc_threshold):
            assert obj.attrs["sparsity"] == 2.5 and "threshold" not in obj.attrs
            assert "sparsity=2.5" in obj.attrs["history"]
        assert out.attrs["sparsity"] == 2.5

    def test_errors(self, bold, mask):
        with pytest.raises(ValueError, match="not both"):
            bm.degree_centrality(bold, mask, threshold=0.3, sparsity=1.0)
        for bad in (0, -1, 101):
            with pytest.raises(ValueError, match=r"percent of the pairs in \(0, 100\]"):
                bm.degree_centrality(bold, mask, sparsity=bad)
        with pytest.raises(ValueError, match="keeps no edge"):
            bm.degree_centrality(bold, mask, sparsity=1e-6)
