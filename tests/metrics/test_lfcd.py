"""Local functional connectivity density against known clusters and a breadth-first reference."""

from __future__ import annotations

import itertools
from collections import deque

import dask
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
from brainarr.metrics._kernels import lfcd_block
from brainarr.testing import make_bold, raise_if_dask_computes

CHUNKINGS = [
    ({"x": 3, "y": 5, "z": 4}, 37),
    ({"x": (1, 4, 3), "y": (2, 1, 5), "z": (5, 1)}, 1),
    ({"x": 2, "y": 8, "z": 1}, None),
    ({"x": 8, "y": 8, "z": 6}, 1000),
]


def reference_lfcd(values, mask, threshold=0.6, connectivity=6):
    """Breadth-first region growing from every seed, r with the seed from np.corrcoef (float64)."""
    order = {6: 1, 18: 2, 26: 3}[connectivity]
    offsets = [d for d in itertools.product((-1, 0, 1), repeat=3) if 0 < np.count_nonzero(d) <= order]
    x = values.astype(np.float64)
    xc = x - x.mean(axis=-1, keepdims=True)
    norm = np.sqrt((xc * xc).sum(axis=-1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(norm > 0, xc / norm, 0.0)
    binary, weighted = np.zeros(mask.shape), np.zeros(mask.shape)
    for seed in zip(*np.nonzero(mask), strict=True):
        seen, todo = {seed}, deque([seed])
        while todo:
            voxel = todo.popleft()
            for d in offsets:
                v = tuple(int(a + b) for a, b in zip(voxel, d, strict=True))
                if v in seen or not all(0 <= c < s for c, s in zip(v, mask.shape, strict=True)) or not mask[v]:
                    continue
                seen.add(v)
                r = float(z[seed] @ z[v])
                if r > threshold:
                    binary[seed] += 1
                    weighted[seed] += r
                    todo.append(v)
    return binary, weighted


def planted(rng, n_time=120):
    """Clusters with known LFCD (see ``expected_binary``) in independent noise."""
    shape = (8, 8, 6)
    values = rng.standard_normal((*shape, n_time))
    signals = rng.standard_normal((3, n_time))
    # A: a 3 x 3 x 3 cube at the array corner, cut in two 3 x 3 slabs by the mask (x = 1 out)
    values[0:3, 0:3, 0:3] = signals[0] + 0.2 * values[0:3, 0:3, 0:3]
    # B: two 2 x 2 x 2 cubes touching only at a corner, (5, 1, 1) - (6, 2, 2)
    values[4:6, 0:2, 0:2] = signals[1] + 0.2 * values[4:6, 0:2, 0:2]
    values[6:8, 2:4, 2:4] = signals[1] + 0.2 * values[6:8, 2:4, 2:4]
    # C: two 2 x 2 x 2 cubes sharing an edge, (1, 5, z) - (2, 6, z); a constant voxel in the first
    values[0:2, 4:6, 3:5] = signals[2] + 0.2 * values[0:2, 4:6, 3:5]
    values[2:4, 6:8, 3:5] = signals[2] + 0.2 * values[2:4, 6:8, 3:5]
    values[0, 4, 3] = 7.0
    # D: a bar along z whose series turn by 25 degrees per voxel: r(i, j) = cos(25 (i - j))
    a, b = np.linalg.qr(rng.standard_normal((n_time, 2)))[0].T
    a, b = a - a.mean(), b - b.mean()
    b -= a * (a @ b) / (a @ a)
    for i in range(6):
        theta = np.deg2rad(25 * i)
        values[5, 6, i] = np.cos(theta) * a / np.linalg.norm(a) + np.sin(theta) * b / np.linalg.norm(b)
    values[7, 7, 5] = -3.0  # constant voxel at the array corner
    mask = np.ones(shape, bool)
    mask[1, 0:3, 0:3] = False
    mask[4, 5, 0] = False  # a hole in the noise
    return values.astype(np.float32), mask


def expected_binary(connectivity):
    out = {}
    for v in itertools.product((0, 2), range(3), range(3)):
        out[v] = 8
    corner = 15 if connectivity == 26 else 7
    for v in itertools.product(range(4, 6), range(0, 2), range(0, 2)):
        out[v] = corner
    for v in itertools.product(range(6, 8), range(2, 4), range(2, 4)):
        out[v] = corner
    c1 = [v for v in itertools.product(range(0, 2), range(4, 6), range(3, 5)) if v != (0, 4, 3)]
    c2 = list(itertools.product(range(2, 4), range(6, 8), range(3, 5)))
    for v in c1:
        out[v] = 14 if connectivity > 6 else 6
    for v in c2:
        out[v] = 14 if connectivity > 6 else 7
    out[(0, 4, 3)] = 0
    for i, n in enumerate((2, 3, 4, 4, 3, 2)):
        out[(5, 6, i)] = n
    out[(7, 7, 5)] = 0
    return out


def as_mask(mask_np, bold):
    return xr.DataArray(mask_np, dims=("x", "y", "z"), coords={d: bold[d] for d in ("x", "y", "z")})


@pytest.fixture
def planted_data(rng):
    values, mask_np = planted(rng)
    bold = make_bold(values)
    return values, mask_np, bold, as_mask(mask_np, bold)


class TestKnownClusters:
    @pytest.mark.parametrize("connectivity", [6, 18, 26])
    def test_planted(self, planted_data, connectivity):
        values, mask_np, bold, mask = planted_data
        out = bm.lfcd(bold.chunk({"x": 3, "y": 5}), mask, connectivity=connectivity, block_size=50).compute()
        got = out.lfcd_binary.values
        for voxel, n in expected_binary(connectivity).items():
            assert got[voxel] == n, (voxel, got[voxel], n)
        known = np.zeros(mask_np.shape, bool)
        known[tuple(np.array(list(expected_binary(connectivity))).T)] = True
        assert np.all(got[~known] == 0)  # the noise joins nothing at r > 0.6
        assert np.all(got[~mask_np] == 0)
        # the bar: r with the seed (not with the neighbour it is reached from)
        cos = np.cos(np.deg2rad(25 * np.arange(3)))
        np.testing.assert_allclose(out.lfcd_weighted.values[5, 6, 0], cos[1] + cos[2], rtol=1e-5)
        np.testing.assert_allclose(out.lfcd_weighted.values[5, 6, 2], 2 * (cos[1] + cos[2]), rtol=1e-5)
        ref_b, ref_w = reference_lfcd(values, mask_np, 0.6, connectivity)
        np.testing.assert_array_equal(got, ref_b)
        np.testing.assert_allclose(out.lfcd_weighted.values, ref_w, rtol=1e-5, atol=1e-6)

    def test_threshold_zero_grows_further(self, planted_data):
        values, mask_np, bold, mask = planted_data
        out = bm.lfcd(bold, mask, threshold=0.0).compute()
        ref_b, ref_w = reference_lfcd(values, mask_np, 0.0, 6)
        np.testing.assert_array_equal(out.lfcd_binary.values, ref_b)
        np.testing.assert_allclose(out.lfcd_weighted.values, ref_w, rtol=1e-5, atol=1e-5)
        assert ref_b.max() > 27


class TestReference:
    @pytest.mark.parametrize(("threshold", "connectivity"), [(0.3, 6), (0.45, 18), (0.5, 26)])
    def test_hard_values(self, bold, values, mask, mask_np, threshold, connectivity):
        out = bm.lfcd(bold.chunk({"y": 3}), mask, threshold=threshold, connectivity=connectivity).compute()
        ref_b, ref_w = reference_lfcd(values, mask_np, threshold, connectivity)
        np.testing.assert_array_equal(out.lfcd_binary.values, ref_b)
        np.testing.assert_allclose(out.lfcd_weighted.values, ref_w, rtol=1e-5, atol=1e-5)
        assert out.lfcd_binary.values[3, 3, 3] == 0 and out.lfcd_binary.values[0, 0, 0] == 0  # constant
        assert 0 < ref_b.max() < mask_np.sum() - 1

    def test_kernel_any_batch_and_frontier(self, rng):
        x = np.cumsum(rng.standard_normal((6, 5, 4, 30)), axis=0).reshape(-1, 30)
        xc = x - x.mean(axis=1, keepdims=True)
        z = (xc / np.linalg.norm(xc, axis=1, keepdims=True)).astype(np.float32)
        lookup = np.full((8, 7, 6), -1)
        lookup[1:-1, 1:-1, 1:-1] = np.arange(120).reshape(6, 5, 4)
        position = np.flatnonzero(lookup.ravel() >= 0)
        deltas = np.array([42, -42, 6, -6, 1, -1])
        args = (z, lookup.ravel(), position, deltas, 0.4)
        full = lfcd_block(np.arange(120), *args)
        parts = np.concatenate(
            [lfcd_block(np.arange(s, min(s + 7, 120)), *args, batch=3, frontier=2) for s in range(0, 120, 7)]
        )
        np.testing.assert_array_equal(parts, full)
        assert full[:, 0].max() > 2


class TestLazyAndChunks:
    def test_lazy(self, bold, mask):
        chunked = bold.chunk({"x": 3, "y": 5, "z": 4})
        with raise_if_dask_computes():
            out = bm.lfcd(chunked, mask, threshold=0.3)
        assert dask.is_dask_collection(out.lfcd_binary.data) and dask.is_dask_collection(out.lfcd_weighted.data)
        assert out.lfcd_binary.chunks == ((3, 3, 1), (5, 3), (4, 4, 1))

    @pytest.mark.parametrize(("chunks", "block_size"), CHUNKINGS)
    def test_chunk_invariance_bit_identical(self, planted_data, chunks, block_size):
        _, _, bold, mask = planted_data
        expected = bm.lfcd(bold, mask, threshold=0.2, connectivity=18)
        actual = bm.lfcd(bold.chunk(chunks), mask, threshold=0.2, connectivity=18, block_size=block_size)
        actual = actual.compute(scheduler="threads")
        xr.testing.assert_identical(actual.lfcd_binary.drop_attrs(), expected.lfcd_binary.drop_attrs())
        xr.testing.assert_identical(actual.lfcd_weighted.drop_attrs(), expected.lfcd_weighted.drop_attrs())

    def test_cohort(self, cohort, mask):
        with raise_if_dask_computes():
            out = bm.lfcd(cohort.chunk({"subject": 2, "x": 4}), mask, threshold=0.3)
        assert out.lfcd_binary.dims == ("subject", "x", "y", "z")
        computed = out.compute()
        for i in range(3):
            one = bm.lfcd(cohort.isel(subject=i), mask, threshold=0.3)
            np.testing.assert_array_equal(computed.lfcd_binary.values[i], one.lfcd_binary.values)
            np.testing.assert_array_equal(computed.lfcd_weighted.values[i], one.lfcd_weighted.values)


class TestMetadataAndErrors:
    def test_metadata(self, bold, mask):
        out = bm.lfcd(bold, mask, threshold=0.5, connectivity=26)
        assert set(out.data_vars) == {"lfcd_binary", "lfcd_weighted"}
        for obj in (out.lfcd_binary, out.lfcd_weighted):
            assert obj.attrs["threshold"] == 0.5 and obj.attrs["connectivity"] == 26
            assert obj.attrs["affine"] == bold.attrs["affine"] and obj.dtype == np.float32
            assert "brainarr.metrics.lfcd.lfcd(" in obj.attrs["history"]
            assert "Tomasi" in obj.attrs["references"]

    def test_errors(self, bold, mask):
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\)"):
            bm.lfcd(bold, mask, threshold=1.0)
        with pytest.raises(ValueError, match="connectivity must be 6, 18 or 26"):
            bm.lfcd(bold, mask, connectivity=8)
        with pytest.raises(ValueError, match="block_size"):
            bm.lfcd(bold, mask, block_size=0)
        with pytest.raises(ValueError, match="mask has no voxel"):
            bm.lfcd(bold, mask & False)
