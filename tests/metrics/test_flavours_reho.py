"""ReHo with AFNI 3dReHo's ranks and tie correction (``ties="afni"``) against a per-voxel reference.

The reference follows 3dReHo's code path voxel by voxel: GSL's heapsort index
(sort/sortind_source.c), CalcRanksForReHo's tie loop over the sorted values converted to int,
FindVoxHood's spheres (radius 1.9 / 1.7 / 1.1 voxels, truncated at the array border, in-mask
voxels only) and ReHoIt's W = (12 sum R^2 - 3 K^2 T (T + 1)^2) / (K^2 T (T^2 - 1) - K sum T_v)
(src/ptaylor/rsfc.c).
"""

from __future__ import annotations

import itertools

import dask
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
from brainarr.metrics._flavours import afni_rank_time
from brainarr.testing import make_bold, raise_if_dask_computes

CHUNKINGS = [
    {"x": 3, "y": 5, "z": 4},
    {"x": (1, 4, 2), "y": (2, 1, 5), "z": (6, 3)},
    {"x": 2, "y": 3, "z": 1},
]

RADIUS = {27: 1.9, 19: 1.7, 7: 1.1}


def gsl_heapsort_index(data):
    """GSL gsl_sort_index: heapsort with children 2k, 2k + 1; a sift stops on >=."""
    n = len(data)
    p = list(range(n))

    def downheap(last, k):
        moving = p[k]
        while k <= last // 2:
            j = 2 * k
            if j < last and data[p[j]] < data[p[j + 1]]:
                j += 1
            if data[moving] >= data[p[j]]:
                break
            p[k] = p[j]
            k = j
        p[k] = moving

    last = n - 1
    for k in range(last // 2, -1, -1):
        downheap(last, k)
    while last > 0:
        p[0], p[last] = p[last], p[0]
        last -= 1
        downheap(last, 0)
    return p


def afni_ranks(series):
    """CalcRanksForReHo: ranks and the tie term sum(t^3 - t) of one series."""
    data = [float(v) for v in series]
    nt = len(data)
    perm = gsl_heapsort_index(data)
    ranks = np.zeros(nt)
    as_int = [int(data[perm[m]]) for m in range(nt)]  # C float -> int: truncation toward 0
    for m in range(nt):
        ranks[perm[m]] = m + 1
    n_tie, start, length = 0, -1, 0
    for m in range(1, nt):
        if as_int[m] == as_int[m - 1] and length == 0:
            start, length = m - 1, 2
        elif as_int[m] == as_int[m - 1] and length > 0:
            length += 1
        elif as_int[m] != as_int[m - 1] and length > 0:
            rank = start + 0.5 * (length - 1)
            n_tie += length * (length * length - 1)
            for mm in range(length):
                ranks[perm[start + mm]] = rank + 1
            start, length = -1, 0
    return ranks, n_tie


def sphere(neighbourhood):
    r = RADIUS[neighbourhood]
    return [d for d in itertools.product((-1, 0, 1), repeat=3) if sum((v / r) ** 2 for v in d) <= 1]


def reference_afni_reho(values, mask, neighbourhood=27):
    shape = values.shape[:3]
    nt = values.shape[-1]
    ranks = np.zeros(values.shape)
    ties = np.zeros(shape)
    for idx in np.ndindex(*shape):
        if mask[idx]:
            ranks[idx], ties[idx] = afni_ranks(values[idx])
    out = np.zeros(shape)
    offsets = sphere(neighbourhood)
    assert len(offsets) == neighbourhood
    for idx in np.ndindex(*shape):
        if not mask[idx]:
            continue
        hood = []
        for d in offsets:
            nb = tuple(i + o for i, o in zip(idx, d, strict=True))
            if all(0 <= i < n for i, n in zip(nb, shape, strict=True)) and mask[nb]:
                hood.append(nb)
        k = len(hood)
        big_r = np.sum([(np.sum([ranks[nb][t] for nb in hood])) ** 2 for t in range(nt)])
        t_fac = sum(ties[nb] for nb in hood)
        out[idx] = (12 * big_r - k * k * nt * 3 * (nt + 1) ** 2) / (k * k * nt * (nt * nt - 1) - k * t_fac)
    return out


@pytest.fixture(params=[1.0, 40.0], ids=["unit-scale", "x40"])
def scaled(request, values):
    """The hard values (ties, constants) as given, and scaled so that fewer integer parts tie."""
    return (values * np.float32(request.param)).astype(np.float32)


class TestAfniRanks:
    def test_rank_kernel(self, rng):
        rows = np.round(rng.standard_normal((30, 17)) * 2).astype(np.float32)
        rows[0] = 3.0  # constant: one run that 3dReHo never closes
        rows[1] = np.arange(17) * 0.1  # all integer parts 0 or 1: two runs, the second trailing
        rows[2] = -np.arange(17) * 0.3  # negative values truncate toward 0
        ranks, aux = afni_rank_time(rows)
        for r in range(rows.shape[0]):
            ref_ranks, ref_tie = afni_ranks(rows[r])
            np.testing.assert_array_equal(ranks[r], ref_ranks)
            assert aux[r, 0] == ref_tie and aux[r, 1] == 1.0
        assert sorted(ranks[0]) == list(range(1, 18)) and aux[0, 0] == 0
        mask = np.zeros(30, bool)
        mask[5:9] = True
        masked, aux = afni_rank_time(rows, mask)
        assert np.all(masked[~mask] == 0) and np.all(aux[~mask] == 0)
        np.testing.assert_array_equal(masked[mask], ranks[mask])


class TestReference:
    @pytest.mark.parametrize("neighbourhood", [27, 19, 7])
    def test_reference(self, bold, scaled, mask, mask_np, neighbourhood):
        out = bm.reho(bold.copy(data=scaled), mask, neighbourhood=neighbourhood, ties="afni")
        ref = reference_afni_reho(scaled, mask_np, neighbourhood)
        np.testing.assert_allclose(out.values, ref, rtol=1e-5, atol=1e-6)
        assert out.dtype == np.float32 and np.all(out.values[~mask_np] == 0)
        assert np.all(np.isfinite(out.values))

    def test_edge_zero(self, bold, mask, mask_np, values):
        out = bm.reho(bold, mask, ties="afni", edge="zero").values
        ref = reference_afni_reho(values, mask_np)
        inner = np.zeros(mask_np.shape, bool)
        inner[1:-1, 1:-1, 1:-1] = True
        np.testing.assert_allclose(out[inner], ref[inner], rtol=1e-5, atol=1e-6)
        assert np.all(out[~inner] == 0)

    def test_without_ties_equals_dpabi(self, rng, mask):
        # integer parts all distinct within each series: no tie run, so no correction
        nt = 40
        values = np.argsort(rng.random((7, 8, 9, nt)), axis=-1).astype(np.float32) * 3 + 0.5
        bold = make_bold(values)
        afni = bm.reho(bold, mask, ties="afni")
        dpabi = bm.reho(bold, mask)
        np.testing.assert_allclose(afni.values, dpabi.values, rtol=1e-6)


class TestLazy:
    def test_lazy_and_chunks(self, bold, mask):
        expected = bm.reho(bold, mask, ties="afni")
        for chunks in CHUNKINGS:
            with raise_if_dask_computes():
                lazy = bm.reho(bold.chunk(chunks), mask, ties="afni")
            assert dask.is_dask_collection(lazy.data)
            assert lazy.chunks == bold.chunk(chunks).isel(time=0).chunks
            xr.testing.assert_allclose(lazy.compute(), expected, rtol=1e-6, atol=1e-7)

    def test_cohort(self, cohort, mask):
        chunked = cohort.chunk({"subject": 1, "x": 4, "y": 3})
        with raise_if_dask_computes():
            out = bm.reho(chunked, mask, ties="afni")
        assert out.dims == ("subject", "x", "y", "z")
        computed = out.compute()
        for i in range(3):
            single = bm.reho(cohort.isel(subject=i), mask, ties="afni")
            np.testing.assert_allclose(computed.values[i], single.values, rtol=1e-6)


class TestMetadata:
    def test_attrs(self, bold, mask):
        out = bm.reho(bold, mask, ties="afni")
        assert out.attrs["ties"] == "afni" and out.attrs["units"] == "1"
        assert "3dReHo" in out.attrs["description"] and "Gibbons" in out.attrs["references"]
        assert "ties='afni'" in out.attrs["history"]
        assert bm.reho(bold, mask).attrs["ties"] == "dpabi"

    def test_bad_ties(self, bold, mask):
        with pytest.raises(ValueError, match="ties must be 'dpabi' or 'afni'"):
            bm.reho(bold, mask, ties="kendall")


def test_gsl_heapsort_matches_scalar():
    from brainarr.metrics._flavours import gsl_sort_index

    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 16, 41):
        rows = rng.integers(0, 4, size=(25, n)).astype(float)
        rows[0] = 1.0  # all equal
        got = gsl_sort_index(rows)
        for i in range(rows.shape[0]):
            assert got[i].tolist() == gsl_heapsort_index(rows[i].tolist())
