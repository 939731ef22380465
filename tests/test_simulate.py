"""Tests for brainarr.datasets.simulate_cohort (the embedded simulated cohort)."""

from __future__ import annotations

import tracemalloc

import dask
import numpy as np
import pytest
from scipy import stats

import brainarr.datasets as bd
from brainarr.exceptions import ChunkingError
from brainarr.testing import assert_lazy, raise_if_dask_computes

simulate_cohort = bd.simulate_cohort

SMALL = {"voxel_size": 6.0, "n_volumes": 24, "shape": (13, 11, 9)}


# ----------------------------------------------------------------------------------------------
# independent analysis helpers (plain numpy), RESTplus-like preprocessing
# ----------------------------------------------------------------------------------------------


def _friston24(mp):
    diff = np.vstack([np.zeros((1, mp.shape[1])), np.diff(mp, axis=0)])
    return np.hstack([mp, diff, mp**2, diff**2])


def _preprocess(y, motion, wm, csf, tr, band=(0.01, 0.08)):
    """Regress Friston-24 + WM + CSF means + linear trend, then ideal band-pass by FFT."""
    n = y.shape[1]
    nuisance = [_friston24(motion), y[wm].mean(0), y[csf].mean(0)]
    design = np.column_stack([np.ones(n), np.arange(n), *nuisance])
    design = design - design.mean(axis=0) * np.r_[0, np.ones(design.shape[1] - 1)]
    resid = y - (design @ (np.linalg.pinv(design) @ y.T)).T
    freqs = np.fft.rfftfreq(n, tr)
    keep = (freqs >= band[0]) & (freqs <= band[1])
    filtered = np.fft.irfft(np.fft.rfft(resid, axis=1) * keep, n=n, axis=1)
    return resid, filtered, keep


def _unit(x):
    x = x - x.mean(axis=-1, keepdims=True)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def _region_measures(cohort, planted):
    """Per subject: region mALFF, neighbour-correlation (ReHo proxy), seed FC (z), normalised DC."""
    shape = cohort.mask.shape
    mask = cohort.mask.values.ravel()
    wm = cohort.wm_mask.values.ravel()
    csf = cohort.csf_mask.values.ravel()
    voxel = abs(cohort.attrs["affine"][0][0])
    atlas = bd.aal(bd.study_grid(voxel)).sel(x=cohort.x, y=cohort.y, z=cohort.z).values.ravel()
    lookup = {name: label for label, name in bd.aal_labels()["name"].items()}
    region = {name: np.flatnonzero((atlas == lookup[name]) & mask) for name in lookup}
    gm = np.flatnonzero(mask)
    strides = (shape[1] * shape[2], shape[2], 1)
    rows = []
    brain = np.flatnonzero(mask | wm | csf)
    for s in range(cohort.sizes["subject"]):
        y = np.zeros((mask.size, cohort.sizes["time"]))
        y[brain] = cohort.bold[s].values.reshape(mask.size, -1)[brain]
        resid, filt, keep = np.zeros_like(y), np.zeros_like(y), None
        motion = cohort.confounds[s].values.astype(float)
        resid[brain], filt[brain], keep = _preprocess(y[brain], motion, wm[brain], csf[brain], cohort.attrs["tr"])
        amp = np.abs(np.fft.rfft(resid, axis=1))[:, keep].mean(axis=1)
        unit = _unit(filt)
        dc = np.zeros(y.shape[0])
        if any(eff["metric"] == "dc" for eff in planted):  # binary degree, r > 0.25, self excluded
            dc_gm = ((unit[gm] @ unit[gm].T) > 0.25).sum(axis=1) - 1
            dc[gm] = dc_gm
        row = {}
        for eff in planted:
            name, metric = eff["region"], eff["metric"]
            vox = region[name]
            if metric == "alff":
                value = amp[vox].mean() / amp[gm].mean()
            elif metric == "reho":
                pairs = []
                for stride in strides:
                    for sign in (1, -1):
                        nb = vox + sign * stride
                        ok = (nb >= 0) & (nb < mask.size)
                        ok[ok] &= mask[nb[ok]]
                        pairs.append((unit[vox[ok]] * unit[nb[ok]]).sum(axis=1))
                value = np.concatenate(pairs).mean()
            elif metric == "fc":
                seed = _unit(filt[region[eff["seed"]]].mean(axis=0))
                value = np.arctanh(np.clip(unit[vox] @ seed, -0.999, 0.999)).mean()
            else:
                value = dc[vox].mean() / dc_gm.mean()
            row[metric, name, eff["seed"]] = value
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------


class TestPlanted:
    def test_regions_exist_and_list_complete(self):
        names = set(bd.aal_labels()["name"])
        cohort = simulate_cohort(2, 2, **SMALL)
        planted = cohort.attrs["planted"]
        assert {p["metric"] for p in planted} == {"alff", "reho", "fc", "dc"}
        expected = {
            ("alff", "Postcentral_L", "decrease"),
            ("alff", "Postcentral_R", "decrease"),
            ("reho", "Postcentral_L", "decrease"),
            ("reho", "Postcentral_R", "decrease"),
            ("alff", "Cerebelum_9_R", "increase"),
            ("fc", "Cerebelum_Crus1_L", "increase"),
            ("fc", "Thalamus_L", "increase"),
            ("dc", "Cerebelum_Crus1_L", "increase"),
            ("dc", "Precentral_L", "decrease"),
        }
        assert {(p["metric"], p["region"], p["direction"]) for p in planted} == expected
        for p in planted:
            assert set(p) == {"region", "metric", "seed", "direction", "effect", "implied"}
            assert p["region"] in names
            assert p["effect"] > 0
            if p["metric"] == "fc":
                assert p["seed"] in names
            else:
                assert p["seed"] is None
        for net in bd_networks():
            assert set(net) <= names

    def test_implied_consequences(self):
        from brainarr._simulate import NETWORKS

        names = set(bd.aal_labels()["name"])
        planted = simulate_cohort(1, 1, **SMALL).attrs["planted"]
        sensorimotor = set(NETWORKS["sensorimotor"])
        for p in planted:
            keys = [(q["region"], q["metric"], q["seed"], q["direction"]) for q in p["implied"]]
            assert len(keys) == len(set(keys)), p
            assert (p["region"], p["metric"], p["seed"], p["direction"]) not in keys
            for region, metric, seed, direction in keys:
                if region == "*":  # mean normalisation: the rest of the brain moves the other way
                    assert (metric, seed, direction) == (p["metric"], None, "increase"), p
                    assert p["metric"] in {"alff", "reho"} and p["direction"] == "decrease"
                    continue
                assert region in names and metric in {"alff", "reho", "fc", "dc"}
                assert direction in {"increase", "decrease"}
                assert seed in names if metric == "fc" else seed is None
        by_key = {(p["metric"], p["region"]): p for p in planted}
        # an amplitude decrease lowers the region's ReHo and DC and its FC with its network's seeds
        alff = {
            (q["region"], q["metric"], q["seed"], q["direction"]) for q in by_key["alff", "Postcentral_L"]["implied"]
        }
        assert {("Postcentral_L", "reho", None, "decrease"), ("Postcentral_L", "dc", None, "decrease")} <= alff
        assert ("Postcentral_L", "fc", "Precentral_R", "decrease") in alff
        # the two large postcentral decreases outweigh the cerebellar increase in the brain mean
        assert ("*", "alff", None, "increase") in alff
        cerebellum = by_key["alff", "Cerebelum_9_R"]["implied"]
        assert all(q["region"] != "*" for q in cerebellum)
        reho = by_key["reho", "Postcentral_R"]["implied"]
        assert {"region": "*", "metric": "reho", "seed": None, "direction": "increase"} in reho
        # the cerebellar hub raises the DC of every sensorimotor region and its FC with every seed
        hub = {
            (q["region"], q["metric"], q["seed"], q["direction"]) for q in by_key["dc", "Cerebelum_Crus1_L"]["implied"]
        }
        assert {(r, "dc", None, "increase") for r in sensorimotor} <= hub
        assert {("Cerebelum_Crus1_L", "fc", r, "increase") for r in sensorimotor} <= hub
        # a coupling change lowers ReHo at the region's borders with its network's neighbours
        border = {q["region"] for q in by_key["fc", "Cerebelum_Crus1_L"]["implied"] if q["metric"] == "reho"}
        assert {"Cerebelum_Crus1_L", "Cerebelum_Crus2_L"} <= border
        assert "Cerebelum_9_L" not in border  # no shared border
        decoupled = by_key["dc", "Precentral_L"]["implied"]
        assert all(q["direction"] == "decrease" for q in decoupled if q["metric"] == "reho")
        # a region's softened signal reaches into its neighbours, and so do its changes
        spill = {(q["region"], q["metric"], q["direction"]) for q in by_key["alff", "Postcentral_L"]["implied"]}
        assert {("Parietal_Sup_L", "alff", "decrease"), ("Parietal_Sup_L", "dc", "decrease")} <= spill
        assert ("Frontal_Sup_L", "alff", "decrease") not in spill  # not a neighbour of postcentral cortex
        # nothing implies an FC change with a sensorimotor seed of the cerebellar regions that
        # neither carry a planted coupling nor border one (Crus2_L borders Crus1_L)
        for p in planted:
            for q in p["implied"]:
                if q["metric"] == "fc" and q["seed"] in sensorimotor:
                    assert q["region"] not in {"Cerebelum_Crus2_R", "Cerebelum_9_R"}

    @pytest.mark.slow
    def test_nuisance_signals_carry_no_network_signal(self):
        # With no effect, a sensorimotor seed is uncorrelated with the cerebellar and visual
        # networks after WM/CSF regression; network signal leaking into the WM/CSF masks made
        # the regression induce z(FC) of about +0.12 (cerebellum) and -0.11 (calcarine).
        cohort = simulate_cohort(0, 3, voxel_size=6.0, n_volumes=230, effect_size=0.0, seed=2)
        gm = cohort.mask.values
        assert not (gm & cohort.wm_mask.values).any() and not (gm & cohort.csf_mask.values).any()
        planted = [
            {"metric": "fc", "region": r, "seed": "Postcentral_L"}
            for r in ("Cerebelum_Crus1_R", "Cerebelum_Crus2_R", "Cerebelum_9_R", "Calcarine_L", "Precentral_L")
        ]
        rows = _region_measures(cohort, planted)
        mean = {p["region"]: np.mean([row["fc", p["region"], p["seed"]] for row in rows]) for p in planted}
        assert mean["Precentral_L"] > 0.4  # same network: strongly correlated
        cerebellum = [mean[r] for r in ("Cerebelum_Crus1_R", "Cerebelum_Crus2_R", "Cerebelum_9_R")]
        assert abs(np.mean(cerebellum)) < 0.05, cerebellum
        assert max(abs(v) for v in cerebellum) < 0.1, cerebellum
        assert -0.05 < mean["Calcarine_L"] < 0.1, mean["Calcarine_L"]

    def test_effect_scales(self):
        one = simulate_cohort(1, 1, **SMALL).attrs["planted"]
        two = simulate_cohort(1, 1, effect_size=2.0, **SMALL).attrs["planted"]
        assert [2 * p["effect"] for p in one] == pytest.approx([p["effect"] for p in two])
        assert simulate_cohort(1, 1, effect_size=0.0, **SMALL).attrs["planted"] == []

    @pytest.mark.slow
    def test_effects_measurable(self):
        cohort = simulate_cohort(8, 8, voxel_size=6.0, n_volumes=230, effect_size=1.5, seed=3)
        planted = cohort.attrs["planted"]
        rows = _region_measures(cohort, planted)
        patient = cohort.group.values == "patient"
        for eff in planted:
            key = (eff["metric"], eff["region"], eff["seed"])
            values = np.array([row[key] for row in rows])
            t = stats.ttest_ind(values[patient], values[~patient]).statistic
            sign = 1 if eff["direction"] == "increase" else -1
            # the hub (DC increase) trades neighbours of its own network for sensorimotor ones,
            # so it is the weakest effect at 8 vs 8
            bound = 1.5 if key == ("dc", "Cerebelum_Crus1_L", None) else 2.5
            assert sign * t > bound, (key, t)

    @pytest.mark.slow
    def test_no_effect_without_planting(self):
        cohort = simulate_cohort(6, 6, voxel_size=6.0, n_volumes=100, effect_size=0.0, seed=5)
        planted = [dict(p, effect=1.0) for p in simulate_cohort(1, 1, **SMALL).attrs["planted"]]
        extra = [
            {"metric": "fc", "region": r, "seed": "Postcentral_L"}
            for r in ("Cerebelum_Crus2_R", "Cerebelum_9_R", "Supp_Motor_Area_R")
        ]
        extra += [{"metric": "dc", "region": r, "seed": None} for r in ("Supp_Motor_Area_R", "Cerebelum_Crus1_R")]
        rows = _region_measures(cohort, [p for p in planted if p["metric"] in ("alff", "fc", "dc")] + extra)
        patient = cohort.group.values == "patient"
        for key in rows[0]:
            values = np.array([row[key] for row in rows])
            assert abs(stats.ttest_ind(values[patient], values[~patient]).statistic) < 3.5, key


def _friston24_lagged(motion):
    """DPABI's Friston-24 (parameters, one-back shifts, squares of both) and a constant."""
    lagged = np.vstack([np.zeros((1, motion.shape[1])), motion[:-1]])
    return np.hstack([motion, lagged, motion**2, lagged**2, np.ones((len(motion), 1))])


@pytest.mark.parametrize("patient", [False, True])
def test_signals_exactly_uncorrelated(patient):
    """A subject's regional signals couple only as generated, and motion regression removes none of them."""
    from brainarr._simulate import _N_DENSE, NETWORKS, _hubs, _region_names, _subject_design

    names = _region_names()
    network = {r: net for net, members in NETWORKS.items() for r in members}
    hubs = {r for net in NETWORKS for r in _hubs(net)} | {"Precentral_L"}  # planted couplings vary
    coef, motion = _subject_design(7, 3, patient, False, 230, 2.0, 1.0)
    x = coef[_N_DENSE:].astype(np.float64)
    r = np.corrcoef(x)
    for i, a in enumerate(names):
        for j, b in enumerate(names[:i]):
            if a in hubs or b in hubs:
                continue
            expected = 0.85**2 if network[a] == network[b] else 0.0
            assert r[i, j] == pytest.approx(expected, abs=1e-4), (a, b)
    # ordinary least squares on the Friston-24 regressors explains none of any signal
    design = _friston24_lagged(motion.astype(np.float64))
    fitted = design @ np.linalg.lstsq(design, x.T, rcond=None)[0]
    centred = x.T - x.T.mean(axis=0)
    r2 = ((fitted - x.T.mean(axis=0)) ** 2).sum(axis=0) / (centred**2).sum(axis=0)
    assert r2.max() < 1e-6
    # every signal stays in the 0.01-0.08 Hz band
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(230, 2.0)
    outside = (freqs < 0.0075) | (freqs > 0.096)
    assert power[:, outside].sum() < 1e-8 * power.sum()


def test_short_run_signals_stay_in_band():
    """A run too short for the band to hold every signal keeps them in band, private ones correlated."""
    from brainarr._simulate import _N_DENSE, NETWORKS, _subject_design

    n = 60
    coef, _ = _subject_design(7, 3, False, False, n, 2.0, 1.0)
    x = coef[_N_DENSE:].astype(np.float64)
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(n, 2.0)
    assert power[:, (freqs < 0.0075) | (freqs > 0.096)].sum() < 1e-8 * power.sum()
    # Cuneus_L and Precuneus_L: different networks, related only through their private signals
    names = [r for members in NETWORKS.values() for r in members]
    r = np.corrcoef(x)[names.index("Cuneus_L"), names.index("Precuneus_L")]
    assert 1e-3 < abs(r) < 0.9


def _within_region_share(cohort, regions):
    """Per region: share of the voxels' between-subject variance of log in-band amplitude that
    is not the region's mean deviation (0: every subject deviates uniformly over the region)."""
    atlas = bd.aal(bd.study_grid(3.0)).sel(x=cohort.x, y=cohort.y, z=cohort.z).values
    lookup = {name: label for label, name in bd.aal_labels()["name"].items()}
    n = cohort.sizes["time"]
    freqs = np.fft.rfftfreq(n, cohort.attrs["tr"])
    band = (freqs >= 0.01) & (freqs <= 0.08)
    bold = cohort.bold.values.astype(float)
    out = []
    for region in regions:
        vox = (atlas == lookup[region]) & cohort.mask.values
        y = bold[:, vox, :]
        y = y - y.mean(axis=-1, keepdims=True)
        log_amp = np.log(np.abs(np.fft.rfft(y, axis=-1))[..., band].mean(axis=-1))  # (subject, voxel)
        dev = log_amp - log_amp.mean(axis=0)
        within = dev - dev.mean(axis=1, keepdims=True)
        out.append(within.var() / dev.var())
    return np.array(out)


@pytest.mark.slow
def test_subject_deviations_vary_within_regions(monkeypatch):
    """Individual topography: a subject's network amplitude is not uniform over a region."""
    import brainarr._simulate as sim

    kwargs = {"voxel_size": 3.0, "n_volumes": 128, "shape": (21, 21, 15), "seed": 2, "effect_size": 0.0}
    regions = ("Thalamus_L", "Thalamus_R")
    with_topography = _within_region_share(simulate_cohort(10, 10, **kwargs), regions)
    monkeypatch.setattr(sim, "_TOPOGRAPHY_SD", 0.0)
    uniform = _within_region_share(simulate_cohort(10, 10, **kwargs), regions)
    # without the topography only the noise varies within a region; with it, the part of a
    # subject's deviation shared by the whole region is at most half of what it was
    assert ((1 - with_topography) < 0.5 * (1 - uniform)).all(), (with_topography, uniform)


def bd_networks():
    from brainarr._simulate import NETWORKS

    return NETWORKS.values()


class TestStructure:
    def test_dims_dtypes_coords_attrs(self):
        cohort = simulate_cohort(2, 3, voxel_size=6.0, n_volumes=20, tr=2.5, seed=4)
        bold = cohort.bold
        assert bold.dims == ("subject", "x", "y", "z", "time")
        assert bold.shape == (5, 31, 37, 31, 20)
        assert bold.dtype == np.float32
        assert bold.chunks[0] == (1,) * 5
        assert bold.chunks[-1] == (20,)
        assert bold.attrs["tr"] == 2.5
        assert bold.attrs["units"] == "arbitrary"
        assert bold.attrs["source"] == "brainarr.datasets.simulate_cohort(seed=4)"
        np.testing.assert_allclose(bold.attrs["affine"], bd.study_grid(6.0).attrs["affine"])
        assert cohort.attrs["affine"] == bold.attrs["affine"]
        assert cohort.attrs["tr"] == 2.5
        np.testing.assert_allclose(cohort.time.values, np.arange(20) * 2.5)
        np.testing.assert_allclose(cohort.x.values, bd.study_grid(6.0).x.values)
        assert cohort.confounds.dims == ("subject", "time", "confound")
        assert cohort.confounds.dtype == np.float32
        assert list(cohort.confound.values) == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
        assert list(cohort.subject.values) == [f"sub-00{i}" for i in range(1, 6)]
        assert list(cohort.group.values) == ["patient"] * 2 + ["control"] * 3
        for var in ("mask", "wm_mask", "csf_mask"):
            assert cohort[var].dims == ("x", "y", "z")
            assert cohort[var].dtype == bool
        grid = bd.study_grid(6.0)
        np.testing.assert_array_equal(cohort.mask.values, bd.gm_mask(like=grid).values)
        np.testing.assert_array_equal(cohort.wm_mask.values, bd.tissue_probability(grid, "wm").values > 0.9)
        np.testing.assert_array_equal(cohort.csf_mask.values, bd.tissue_probability(grid, "csf").values > 0.9)
        assert "brainarr.datasets.simulate_cohort(" in cohort.attrs["history"]
        assert "n_patients=2" in cohort.attrs["history"]
        assert bold.attrs["history"] == cohort.attrs["history"]

    @pytest.mark.slow
    def test_default_chunks_follow_spatial_chunks(self):
        from brainarr._core.chunks import spatial_chunks

        cohort = simulate_cohort(1, 0, voxel_size=3.0, n_volumes=230)
        expected = spatial_chunks((61, 73, 61), bytes_per_voxel=230 * 4)
        assert cohort.bold.shape == (1, 61, 73, 61, 230)
        assert [c[0] for c in cohort.bold.chunks[1:4]] == [expected[d] for d in ("x", "y", "z")]
        assert cohort.mask.chunks == cohort.bold.chunks[1:4]

    def test_lazy(self):
        with raise_if_dask_computes():
            cohort = simulate_cohort(3, 2, voxel_size=6.0, n_volumes=30)
            sub = cohort.bold.isel(subject=1, x=slice(3, 9)).mean("time")
        assert_lazy(cohort)
        assert dask.is_dask_collection(sub.data)

    def test_tissue_contrast(self):
        cohort = simulate_cohort(1, 1, voxel_size=6.0, n_volumes=24, seed=2)
        mean = cohort.bold.mean("time").values
        grid = bd.study_grid(6.0)
        gm = bd.tissue_probability(grid, "gm").values
        wm = bd.tissue_probability(grid, "wm").values
        csf = bd.tissue_probability(grid, "csf").values
        for s in range(2):
            m = mean[s]
            pure_gm, pure_wm, pure_csf = m[gm > 0.7].mean(), m[wm > 0.9].mean(), m[csf > 0.7].mean()
            assert 650 < pure_gm < 900
            assert 520 < pure_wm < 680
            assert pure_csf > 850
            assert abs(m[(gm + wm + csf) < 1e-3]).mean() < 5

    def test_noise_is_spatially_smooth(self):
        cohort = simulate_cohort(0, 1, voxel_size=3.0, n_volumes=40, shape=(20, 22, 18), seed=1)
        y = cohort.bold[0].values.astype(float)
        y = y - y.mean(axis=-1, keepdims=True)
        inside = cohort.mask.values
        a, b = y[:-1][inside[:-1] & inside[1:]], y[1:][inside[:-1] & inside[1:]]
        r_near = np.mean(np.sum(_unit(a) * _unit(b), axis=-1))
        a, b = y[:-4][inside[:-4] & inside[4:]], y[4:][inside[:-4] & inside[4:]]
        r_far = np.mean(np.sum(_unit(a) * _unit(b), axis=-1))
        assert r_near > 0.3
        assert r_near > r_far + 0.15


class TestDeterminism:
    def test_same_seed_identical_other_seed_differs(self):
        a = simulate_cohort(1, 1, **SMALL).bold.values
        b = simulate_cohort(1, 1, **SMALL).bold.values
        c = simulate_cohort(1, 1, seed=1, **SMALL).bold.values
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
        assert not np.allclose(a[0], a[1])

    @pytest.mark.parametrize(
        "chunks",
        [{"x": 4, "y": 5, "z": 2}, {"x": (1, 12), "y": (7, 1, 3), "z": 9}, {"x": 13, "y": 11, "z": (8, 1)}],
    )
    def test_chunk_independent(self, chunks):
        ref = simulate_cohort(1, 1, **SMALL)
        other = simulate_cohort(1, 1, chunks=chunks, **SMALL)
        assert other.bold.chunks[1:4] != ref.bold.chunks[1:4]
        np.testing.assert_array_equal(other.bold.values, ref.bold.values)
        np.testing.assert_array_equal(other.confounds.values, ref.confounds.values)

    def test_crop_equals_full_grid_values(self):
        full = simulate_cohort(1, 0, voxel_size=6.0, n_volumes=16, seed=7)
        crop = simulate_cohort(1, 0, voxel_size=6.0, n_volumes=16, seed=7, shape=(5, 6, 7))
        sub = full.bold.sel(x=crop.x, y=crop.y, z=crop.z)
        np.testing.assert_array_equal(crop.bold.values, sub.values)
        affine = np.asarray(crop.attrs["affine"])
        np.testing.assert_allclose(affine[:3, 3], [crop.x[0], crop.y[0], crop.z[0]])


class TestPhenotypes:
    def test_table1(self):
        cohort = simulate_cohort(31, 32, voxel_size=6.0, n_volumes=20)
        g = cohort.group.values
        age, vas, sex = cohort.age.values, cohort.vas.values, cohort.sex.values
        pat, con = g == "patient", g == "control"
        assert pat.sum() == 31 and con.sum() == 32
        np.testing.assert_allclose([age[pat].mean(), age[pat].std(ddof=1)], [64.52, 16.40], atol=0.01)
        np.testing.assert_allclose([age[con].mean(), age[con].std(ddof=1)], [47.69, 13.45], atol=0.01)
        np.testing.assert_allclose([vas[pat].mean(), vas[pat].std(ddof=1)], [5.26, 1.90], atol=0.01)
        np.testing.assert_allclose([vas[con].mean(), vas[con].std(ddof=1)], [1.06, 2.58], atol=0.01)
        assert (sex[pat] == "M").sum() == 15 and (sex[con] == "M").sum() == 9
        assert set(sex) == {"M", "F"}
        assert age.min() >= 18 and age.max() <= 90
        assert vas.min() >= 0 and vas.max() <= 10
        assert (vas[con] == 0).sum() > 10  # most controls have no pain
        assert cohort.age.attrs["units"] == "years"

    def test_motion_within_limits_and_movers(self):
        cohort = simulate_cohort(5, 5, voxel_size=6.0, n_volumes=120, n_movers=1, seed=2)
        motion = cohort.confounds.values
        trans = np.abs(motion[..., :3]).max(axis=(1, 2))
        rot = np.degrees(np.abs(motion[..., 3:]).max(axis=(1, 2)))
        moved = (trans > 3) | (rot > 3)
        assert moved.sum() == 1
        assert list(cohort.subject.values[moved]) == cohort.attrs["movers"]
        assert np.all(trans[~moved] < 1.5) and np.all(rot[~moved] < 1.0)
        assert np.all(trans[~moved] > 0.01)  # they do move a little
        np.testing.assert_array_equal(motion[:, 0], 0)  # realigned to the first volume


@pytest.mark.slow
def test_one_chunk_touches_only_that_chunk():
    cohort = simulate_cohort(1, 1, voxel_size=3.0, n_volumes=230, chunks={"x": 16, "y": 16, "z": 16})
    subject_bytes = 61 * 73 * 61 * 230 * 4
    chunk_bytes = 16**3 * 230 * 4
    block = cohort.bold[1, :16, :16, :16]
    with dask.config.set(scheduler="synchronous"):
        tracemalloc.start()
        values = block.values
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert values.shape == (16, 16, 16, 230)
    # the chunk, its smoothing halo (3 voxels each side, large for so small a chunk), temporaries
    assert peak < 8 * chunk_bytes
    assert peak < subject_bytes / 8
    # default chunks (about 64 MiB): the output and about one chunk of working memory
    cohort = simulate_cohort(1, 1, voxel_size=3.0, n_volumes=230)
    cx, cy, cz = (c[0] for c in cohort.bold.chunks[1:4])
    with dask.config.set(scheduler="synchronous"):
        tracemalloc.start()
        block = cohort.bold[0, :cx, :cy, :cz].values
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert block.shape == (cx, cy, cz, 230)
    assert peak < 3 * cx * cy * cz * 230 * 4


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"n_patients": -1}, "n_patients"),
            ({"n_controls": 1.5}, "n_controls"),
            ({"n_patients": 0, "n_controls": 0}, "at least one subject"),
            ({"n_movers": 9}, "n_movers"),
            ({"n_volumes": 3}, "n_volumes"),
            ({"tr": 0}, "tr must be positive"),
            ({"seed": -2}, "seed"),
            ({"shape": (100, 5, 5)}, "shape"),
            ({"shape": (5, 5)}, "shape"),
            ({"voxel_size": -3.0}, "voxel_size"),
            ({"noise_fwhm": 0}, "noise_fwhm"),
        ],
    )
    def test_bad_arguments(self, kwargs, match):
        args = {"n_patients": 2, "n_controls": 2, "voxel_size": 6.0, "n_volumes": 20, **kwargs}
        with pytest.raises(ValueError, match=match):
            simulate_cohort(**args)

    @pytest.mark.parametrize("chunks", [{"time": 10}, {"subject": 2}, {"t": 3}, [4, 4, 4]])
    def test_bad_chunks(self, chunks):
        with pytest.raises(ChunkingError, match="chunk"):
            simulate_cohort(1, 1, voxel_size=6.0, n_volumes=20, chunks=chunks)
