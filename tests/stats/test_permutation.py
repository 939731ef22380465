from __future__ import annotations

import importlib
import itertools
from collections import deque

import dask
import numpy as np
import pytest
from scipy import ndimage, stats

import brainarr.stats as bs
from brainarr.testing import raise_if_dask_computes

SHAPE = (6, 7, 5)


def _tfce_loop(img, e=0.5, h=2.0, dh=0.1):
    """TFCE by flood fill (26-neighbours) at each height, positive part only."""
    out = np.zeros(img.shape)
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]
    k = 1
    while k * dh <= img.max() + 1e-12:
        thr = k * dh
        above = img >= thr - 1e-9 * dh
        seen = np.zeros(img.shape, bool)
        for start in zip(*np.nonzero(above), strict=True):
            if seen[start]:
                continue
            comp, queue = [], deque([start])
            seen[start] = True
            while queue:
                v = queue.popleft()
                comp.append(v)
                for o in offsets:
                    w = tuple(np.add(v, o))
                    if all(0 <= w[i] < img.shape[i] for i in range(3)) and above[w] and not seen[w]:
                        seen[w] = True
                        queue.append(w)
            for v in comp:
                out[v] += len(comp) ** e * thr**h * dh
        k += 1
    return out


def _t_of(y, x):
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    r = y - x @ beta
    c = np.zeros(x.shape[1])
    c[0] = 1
    var = c @ np.linalg.inv(x.T @ x) @ c
    return beta[0] / np.sqrt((r**2).sum(0) / (x.shape[0] - x.shape[1]) * var)


@pytest.fixture
def null_cohort(rng, maps_factory):
    vals = rng.standard_normal((12, *SHAPE)) + 10
    return maps_factory(vals, seed=4)


@pytest.fixture(params=["graph", "direct"])
def tfce_method(request, monkeypatch):
    """Run a TFCE test with the incremental graph method and with labelling at every height."""
    module = importlib.import_module("brainarr.stats.permutation")
    monkeypatch.setattr(module, "_GRAPH_MIN_VOXELS", 0 if request.param == "graph" else 10**9)
    return request.param


class TestTfce:
    def test_against_flood_fill(self, rng, tfce_method):
        img = ndimage.gaussian_filter(rng.standard_normal((7, 6, 5)), 1.0) * 8
        img[0, 0, 0] = 2.05  # isolated tie with its neighbour heights
        ours = bs.tfce(img, two_sided=False)
        np.testing.assert_allclose(ours, _tfce_loop(img), rtol=1e-12, atol=1e-12)
        both = bs.tfce(img)
        np.testing.assert_allclose(both, _tfce_loop(img) - _tfce_loop(-img), rtol=1e-12, atol=1e-12)

    @pytest.mark.parametrize("connectivity", [6, 18, 26])
    def test_against_label_per_height(self, rng, connectivity, tfce_method):
        """Plateaus at exact heights, ties, an empty border and merging clusters, any connectivity."""
        img = ndimage.gaussian_filter(rng.standard_normal((13, 11, 9)), 1.2) * 9
        img[np.abs(img - 0.6) < 0.15] = 0.6  # plateaus exactly at a height
        img[np.abs(img + 0.3) < 0.1] = -0.3
        img[:, :, 0] = 0.0
        img[4, 4, 4] = img.max() + 0.35  # a single peak above a plateau
        structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])

        def direct(a, dh=0.1):
            out = np.zeros(a.shape)
            k = 1
            while k * dh <= a.max() + 1e-12:
                lab, _ = ndimage.label(a >= k * dh - 1e-9 * dh, structure=structure)
                size = np.bincount(lab.ravel())
                out += np.where(lab > 0, size[lab] ** 0.5 * (k * dh) ** 2 * dh, 0.0)
                k += 1
            return out

        ours = bs.tfce(img, connectivity=connectivity)
        np.testing.assert_allclose(ours, direct(img) - direct(-img), rtol=1e-12, atol=1e-12)

    def test_known_image(self, tfce_method):
        img = np.zeros((5, 5, 5))
        img[1:3, 1:3, 1] = 0.3  # 4 voxels, heights 0.1, 0.2, 0.3
        expected = sum(4**0.5 * h**2 * 0.1 for h in (0.1, 0.2, 0.3))
        np.testing.assert_allclose(bs.tfce(img)[1, 1, 1], expected, rtol=1e-9)
        assert bs.tfce(img)[0, 0, 0] == 0


class TestPermutation:
    def test_observed_t_matches_ttest2(self, null_cohort):
        out = bs.permutation(null_cohort, n_perm=20, stat="voxel").compute()
        ref = bs.ttest2(null_cohort).compute()
        np.testing.assert_allclose(out.t.values, ref.t.values, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(out.stat.values, ref.t.values, rtol=1e-9, atol=1e-10)

    @pytest.mark.slow
    @pytest.mark.parametrize("stat", ["voxel", "cluster_size", "cluster_mass", "tfce"])
    def test_freedman_lane_reference(self, null_cohort, stat):
        n_perm = 15
        out = bs.permutation(null_cohort, n_perm=n_perm, stat=stat, seed=7, voxel_p=0.2).compute()
        y = null_cohort.values.reshape(12, -1)
        x = np.column_stack(
            [
                (null_cohort.group.values == "control").astype(float),
                np.ones(12),
                null_cohort.age.values,
                (null_cohort.sex.values == "M").astype(float),
            ]
        )
        z = x[:, 1:]
        hz = z @ np.linalg.pinv(z)
        rng = np.random.default_rng(7)
        perms = [np.arange(12)] + [rng.permutation(12) for _ in range(n_perm - 1)]
        thr = stats.t.isf(0.1, 8)
        null = []
        for perm in perms:
            ystar = (y - hz @ y)[perm] + hz @ y
            t = _t_of(ystar, x).reshape(SHAPE)
            if stat == "voxel":
                null.append(np.abs(t).max())
            elif stat == "tfce":
                null.append(max(_tfce_loop(t).max(), _tfce_loop(-t).max()))
            else:
                best = 0.0
                for part in (t, -t):
                    lab, n = ndimage.label(part >= thr, structure=np.ones((3, 3, 3)))
                    for i in range(1, n + 1):
                        v = part[lab == i]
                        best = max(best, v.size if stat == "cluster_size" else v.sum())
                null.append(best)
        np.testing.assert_allclose(out.null_max.values, null, rtol=1e-8)
        s = np.abs(out.stat.values)
        p_ref = np.array([(np.asarray(null) >= v - 1e-9).mean() if v > 0 else 1.0 for v in s.ravel()])
        np.testing.assert_allclose(out.p_fwe.values.ravel(), p_ref)

    def test_reproducible_and_batch_independent(self, null_cohort):
        a = bs.permutation(null_cohort, n_perm=40, stat="tfce", seed=3, batch_size=7).compute()
        b = bs.permutation(null_cohort, n_perm=40, stat="tfce", seed=3, batch_size=40).compute()
        c = bs.permutation(null_cohort, n_perm=40, stat="tfce", seed=4, batch_size=7).compute()
        np.testing.assert_array_equal(a.null_max.values, b.null_max.values)
        np.testing.assert_array_equal(a.p_fwe.values, b.p_fwe.values)
        assert not np.array_equal(a.null_max.values, c.null_max.values)
        assert a.null_max.values[0] == c.null_max.values[0]  # the observed labelling comes first

    @pytest.mark.parametrize("chunks", [{"subject": 1, "x": 2, "y": 3}, {"subject": 5, "z": 2}, {"subject": 1}])
    def test_lazy_chunk_invariant(self, null_cohort, chunks):
        ref = bs.permutation(null_cohort, n_perm=30, stat="cluster_mass", voxel_p=0.2).compute()
        lazy = null_cohort.copy(data=null_cohort.chunk(chunks).data)
        with raise_if_dask_computes():
            out = bs.permutation(lazy, n_perm=30, stat="cluster_mass", voxel_p=0.2, batch_size=4)
        assert all(dask.is_dask_collection(v.data) for v in out.data_vars.values())
        got = out.compute()
        for name in ("t", "stat", "p_fwe", "null_max"):
            np.testing.assert_allclose(got[name].values, ref[name].values, rtol=1e-10, atol=1e-12)

    def test_tails_and_effect(self, rng, maps_factory):
        vals = rng.standard_normal((16, *SHAPE)) + 10
        vals[:8, 1:4, 1:4, 1:3] += 2.5  # patients higher
        maps = maps_factory(vals)
        kw = {"groups": ("patient", "control"), "n_perm": 100, "stat": "voxel", "covariates": ()}
        both = bs.permutation(maps, **kw).compute()
        pos = bs.permutation(maps, tail="positive", **kw).compute()
        neg = bs.permutation(maps, tail="negative", **kw).compute()
        peak = np.unravel_index(np.argmax(both.t.values), SHAPE)
        assert 1 <= peak[0] < 4 and 1 <= peak[1] < 4 and 1 <= peak[2] < 3
        assert both.p_fwe.values[peak] <= 0.05 and pos.p_fwe.values[peak] <= both.p_fwe.values[peak]
        assert neg.p_fwe.values[peak] == 1.0
        assert np.all(neg.p_fwe.values[both.t.values > 0] == 1.0)
        assert both.p_fwe.values.min() >= 1 / 100

    def test_metadata_and_errors(self, null_cohort):
        out = bs.permutation(null_cohort, n_perm=10, stat="voxel")
        assert out.null_max.dims == ("permutation",) and out.p_fwe.dims == ("x", "y", "z")
        assert out.attrs["method"] == "Freedman-Lane" and out.attrs["n_perm"] == 10
        assert "brainarr.stats.permutation.permutation" in out.attrs["history"]
        assert out.attrs["affine"] == null_cohort.attrs["affine"]
        with pytest.raises(ValueError, match="stat must be"):
            bs.permutation(null_cohort, stat="fdr")
        with pytest.raises(ValueError, match="n_perm"):
            bs.permutation(null_cohort, n_perm=0)
        with pytest.raises(ValueError, match="batch_size"):
            bs.permutation(null_cohort, n_perm=10, batch_size=0)


@pytest.mark.slow
def test_family_wise_error_rate(maps_factory):
    """Under the null, P(any voxel p_FWE <= 0.05) lies in the binomial 95% interval of 0.05."""
    n_sim, alpha = 200, 0.05
    rng = np.random.default_rng(99)
    hits = 0
    with dask.config.set(scheduler="synchronous"):
        for sim in range(n_sim):
            vals = rng.standard_normal((12, 6, 6, 6))
            vals = ndimage.gaussian_filter(vals, (0, 0.8, 0.8, 0.8)) + 5
            maps = maps_factory(vals, seed=sim)
            out = bs.permutation(maps, n_perm=100, stat="voxel", seed=sim, batch_size=100).compute()
            hits += bool(out.p_fwe.values.min() <= alpha)
    lo, hi = stats.binom.interval(0.95, n_sim, alpha)
    assert lo <= hits <= hi, (hits, lo, hi)
