"""The study pipeline end to end: outputs, resumability, crash safety, group analysis."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from scipy import ndimage

from brainarr import io, pipeline
from brainarr.cohort import open_cohort
from brainarr.config import StudyConfig
from brainarr.datasets import simulate_cohort
from brainarr.study import _subjects as subject_stage

pytestmark = pytest.mark.slow

SHAPE = (18, 22, 16)


def _config(*, families=("alff",), figures=False, **metrics) -> StudyConfig:
    cfg = StudyConfig()
    return dataclasses.replace(
        cfg,
        preprocess=dataclasses.replace(cfg.preprocess, discard=4),
        metrics=dataclasses.replace(cfg.metrics, families=tuple(families), **metrics),
        output=dataclasses.replace(cfg.output, figures=figures),
    )


@pytest.fixture(scope="module")
def raw_store(tmp_path_factory):
    """A tiny simulated cohort (6 + 6, 6 mm, cropped, strong effects, one mover), not processed.

    The crop keeps the right postcentral gyrus whole (the left one is cut at x = -48 mm).
    """
    path = tmp_path_factory.mktemp("cohort") / "raw.zarr"
    sim = simulate_cohort(6, 6, voxel_size=6.0, n_volumes=60, seed=3, effect_size=4.5, shape=SHAPE, n_movers=1)
    io.ingest(sim, str(path))
    return path


@pytest.fixture
def store(raw_store, tmp_path):
    path = tmp_path / "study.zarr"
    shutil.copytree(raw_store, path)
    return path


@pytest.fixture(scope="module")
def full_run(raw_store, tmp_path_factory):
    """Every family, figures on: the whole study once."""
    base = tmp_path_factory.mktemp("full")
    path = base / "study.zarr"
    shutil.copytree(raw_store, path)
    result = pipeline.run(_config(families=("alff", "reho", "fc", "dc"), figures=True), path, progress=False)
    return path, result


def test_outputs_written(full_run):
    path, result = full_run
    out = result.output
    assert out == path.parent / "brainarr-results"
    html = (out / "report.html").read_text()
    for section in ("Parameters", "Table 1", "Head motion", "malff", "smreho", "zfc_Postcentral_L", "dc_binary_sm"):
        assert section in html
    assert "data:image/png;base64" in html
    for variant in ("malff", "zalff", "smreho", "zfc_Precentral_R", "dc_weighted_sz"):
        img = nib.load(out / "maps" / f"{variant}_t.nii.gz")
        assert img.shape == SHAPE
        assert (out / "tables" / f"{variant}_clusters.csv").read_text().strip()
        assert (out / "tables" / f"{variant}_clusters.md").exists()
        assert (out / "figures" / f"{variant}_montage.png").stat().st_size > 1000
    assert (out / "tables" / "table1.csv").exists()
    assert "subject" in (out / "log.txt").read_text()
    assert set(result.timings) >= {"motion_qc", "subjects", "group", "report", "total"}


def test_store_has_committed_derived_maps(full_run):
    path, _ = full_run
    cohort = open_cohort(path)
    subjects = [str(s) for s in cohort.subject.values]
    state = pipeline.derived_state(path)
    for names in pipeline.FAMILY_VARIABLES.values():
        for name in names:
            assert state[name]["subjects"] == subjects, name
            assert name in cohort, name
            assert cohort[name].dims[0] == "subject"
            assert not bool(np.isnan(cohort[name].values).any()), name
    assert cohort["zfc"].dims == ("subject", "seed", "x", "y", "z")
    assert list(cohort["seed"].values) == list(StudyConfig().metrics.seeds)
    assert cohort["malff"].data.chunks[0] == (1,) * len(subjects)
    assert "mask_threshold" in cohort["malff"].attrs["params"]


def test_maps_equal_direct_metric_calls(full_run):
    """Independent path: preprocess and metrics called by hand on one subject."""
    from brainarr import metrics
    from brainarr.preprocess import clean, friston24, tissue_signals

    path, _ = full_run
    cohort = open_cohort(path)
    i = 4
    bold = cohort["bold"].isel(subject=i).load()
    motion = cohort["confounds"].isel(subject=i).load()
    mask = cohort["mask"].load()
    tissue = tissue_signals(bold, wm=cohort["wm_mask"].load(), csf=cohort["csf_mask"].load())
    conf = np.concatenate([friston24(motion).values, tissue.values], axis=1)
    raw = clean(bold, conf, discard=4, detrend=1, filter=None, low=None, high=None, mask=mask)
    a = metrics.alff(raw, (0.01, 0.08), mask=mask)
    expected = metrics.normalize(a["alff"], mask, method="z")
    np.testing.assert_allclose(cohort["zalff"].isel(subject=i).values, expected.values, rtol=1e-4, atol=1e-5)
    filt = clean(bold, conf, discard=4, detrend=1, low=0.01, high=0.08, filter="ideal", mask=mask)
    fc = metrics.seed_fc(filt, ["Postcentral_L"], mask=mask)["zfc"].squeeze(drop=True)
    got = cohort["zfc"].isel(subject=i).sel(seed="Postcentral_L")
    np.testing.assert_allclose(got.values, fc.transpose("x", "y", "z").values, rtol=1e-4, atol=1e-5)


def test_mover_excluded_and_effect_recovered(full_run):
    path, result = full_run
    movers = open_cohort(path).attrs["movers"]
    motion = result.tables["motion"]
    assert motion.loc[motion["excluded"], "subject"].tolist() == list(movers)
    # Table 1 counts only the included subjects
    t1 = result.tables["table1"]
    counts = t1.loc[[r for r in t1.index if str(r).startswith("sex")], ["patient", "control"]]
    n = sum(int(str(v).split()[0]) for v in counts.values.ravel())
    assert n == 11
    table = result.tables["malff"]
    hits = table[(table["region"] == "Postcentral_R") & (table["peak_t"] < 0)]
    assert len(hits) >= 1
    effects, _ = pipeline.recovery(result.tables, open_cohort(path).attrs["planted"])
    row = effects[(effects.metric == "alff") & (effects.region == "Postcentral_R")]
    assert bool(row["recovered"].iloc[0])


def test_rerun_recomputes_nothing_and_changed_parameter_only_its_maps(store, tmp_path, monkeypatch):
    cfg = _config(families=("alff", "reho"))
    first = pipeline.run(cfg, store, progress=False, output=tmp_path / "a")
    assert all(len(v) == 12 for v in first.computed.values())
    calls = []
    real = subject_stage.compute_subject

    def counting(ctx, index, subject, names, scheduler=None):
        calls.extend(names)
        return real(ctx, index, subject, names, scheduler)

    monkeypatch.setattr(subject_stage, "compute_subject", counting)
    again = pipeline.run(cfg, store, progress=False, output=tmp_path / "a")
    assert calls == []
    assert all(v == [] for v in again.computed.values())
    before = open_cohort(store)["alff"].load()
    changed = pipeline.run(_config(families=("alff", "reho"), reho_neighbourhood=7), store, progress=False)
    assert {k for k, v in changed.computed.items() if v} == {"reho", "smreho"}
    assert set(calls) == {"reho", "smreho"} and len(calls) == 2 * 12
    after = open_cohort(store)
    xr.testing.assert_identical(before, after["alff"].load())
    assert 'reho_neighbourhood": 7' in after["reho"].attrs["params"]


def test_interruption_keeps_committed_maps_and_resume_matches(store, raw_store, tmp_path, monkeypatch):
    reference = tmp_path / "ref.zarr"
    shutil.copytree(raw_store, reference)
    cfg = _config()
    pipeline.run(cfg, reference, progress=False, output=tmp_path / "ref")

    real = subject_stage.compute_subject

    def crashing(ctx, index, subject, names, scheduler=None):
        record = real(ctx, index, subject, names, scheduler)
        if index == 5:  # the rows are written, the commit never happens
            raise KeyboardInterrupt("simulated crash")
        return record

    monkeypatch.setattr(subject_stage, "compute_subject", crashing)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, store, progress=False, output=tmp_path / "crash")
    state = pipeline.derived_state(store)
    assert all(len(state[name]["subjects"]) == 5 for name in pipeline.FAMILY_VARIABLES["alff"])
    partial = open_cohort(store)
    for name in pipeline.FAMILY_VARIABLES["alff"]:  # written, not committed: hidden
        assert np.isfinite(zarr.open_group(str(store), mode="r")[name][5]).any()
        assert np.isnan(partial[name].isel(subject=slice(5, None)).values).all()
    committed = partial["alff"].isel(subject=slice(0, 5)).load()
    monkeypatch.setattr(subject_stage, "compute_subject", real)
    resumed = pipeline.run(cfg, store, progress=False, output=tmp_path / "crash")
    for name in pipeline.FAMILY_VARIABLES["alff"]:
        assert resumed.computed[name] == [str(s) for s in partial.subject.values[5:]]
    final = open_cohort(store)
    xr.testing.assert_identical(final["alff"].isel(subject=slice(0, 5)).load(), committed)
    expected = open_cohort(reference)
    for name in pipeline.FAMILY_VARIABLES["alff"]:
        xr.testing.assert_identical(final[name].load(), expected[name].load())


def test_report_rebuilds_from_stored_maps(full_run, tmp_path, monkeypatch):
    path, _ = full_run
    monkeypatch.setattr(subject_stage, "compute_subject", lambda *a, **k: pytest.fail("recomputed a subject map"))
    result = pipeline.report(path, config=_config(), output=tmp_path / "r")
    assert result.report.exists()
    assert set(result.tables) == {"table1", "motion", "malff", "zalff"}
    reference = full_run[1].tables["malff"]
    assert result.tables["malff"].equals(reference)


def test_report_defaults_to_the_config_of_the_last_run(full_run, tmp_path, monkeypatch):
    path, _ = full_run
    monkeypatch.setattr(subject_stage, "compute_subject", lambda *a, **k: pytest.fail("recomputed a subject map"))
    result = pipeline.report(path, output=tmp_path / "r")
    assert result.tables["malff"].equals(full_run[1].tables["malff"])
    assert pipeline._stored_config(str(path), None).preprocess == _config().preprocess
    html = result.report.read_text()
    discard = _config().preprocess.discard
    assert re.search(rf"preprocess\.discard(</code>)?</td><td[^>]*>{discard}</td>", html)
    assert discard != StudyConfig().preprocess.discard  # the stored config, not the defaults


def test_report_needs_stored_maps(store, tmp_path):
    with pytest.raises(ValueError, match="no derived maps"):
        pipeline.report(store, config=_config(), output=tmp_path / "r")


def test_config_path_keeps_movers_and_bad_store(store, tmp_path):
    toml = tmp_path / "study.toml"
    toml.write_text(
        '[metrics]\nfamilies = ["alff", "reho"]\n[preprocess]\ndiscard = 4\n[output]\nfigures = false\n'
        "[group]\nexclude_movers = false\n[group.permutation]\nenabled = true\nn_perm = 200\n"
        'stat = "cluster_size"\nfamilies = ["alff"]\n'
    )
    result = pipeline.run(toml, store, progress=False, output=tmp_path / "o")
    assert "zalff" in result.tables
    t1 = result.tables["table1"]
    counts = t1.loc[[r for r in t1.index if str(r).startswith("sex")], ["patient", "control"]]
    assert sum(int(str(v).split()[0]) for v in counts.values.ravel()) == 12
    perm = result.tables["permutation"]
    assert perm["map"].tolist() == ["malff", "zalff"]
    assert (perm["min p_fwe"] >= 1 / 200).all()
    assert nib.load(result.paths["malff_perm_p_fwe"]).shape == SHAPE
    # permutation clusters: the voxels of FWE p below ALFF's cluster p (0.01), labelled by sign
    assert set(result.permutation_tables) == {"malff", "zalff"}
    assert "smreho" in result.tables and "smreho_perm_p_fwe" not in result.paths  # GRF only
    n_clusters = 0
    for variant, table in result.permutation_tables.items():
        p_fwe = np.asarray(nib.load(result.paths[f"{variant}_perm_p_fwe"]).dataobj)
        t = np.asarray(nib.load(result.paths[f"{variant}_perm_t"]).dataobj)
        sizes = []
        for sign in (1, -1):
            labels, _ = ndimage.label((p_fwe < 0.01) & (sign * t > 0), structure=np.ones((3, 3, 3)))
            sizes += sorted(np.bincount(labels.ravel())[1:].tolist(), reverse=True)
        assert table["size"].tolist() == sizes, variant
        assert (table["p"] < 0.01).all() and (table["p"] >= 1 / 200).all()
        assert perm.set_index("map").loc[variant, "clusters"] == len(table)
        n_clusters += len(table)
    assert n_clusters > 0  # the planted ALFF effects survive
    assert result.paths["malff_permutation_csv"].exists()
    assert "Permutation inference" in result.report.read_text()
    assert "malff: clusters (permutation)" in result.report.read_text()
    from brainarr.exceptions import StoreError

    with pytest.raises(StoreError, match="no cohort store"):
        pipeline.run(toml, tmp_path / "missing.zarr", progress=False, output=tmp_path / "o")


def test_distributed_client_gives_the_same_maps(full_run, store, tmp_path):
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        result = pipeline.run(_config(), store, client=client, progress=False, output=tmp_path / "d")
    assert len(result.computed["malff"]) == 12
    expected = open_cohort(full_run[0])
    got = open_cohort(store)
    for name in pipeline.FAMILY_VARIABLES["alff"]:
        xr.testing.assert_allclose(got[name].load(), expected[name].load(), rtol=1e-6, atol=1e-7)


def test_subjects_appended_later_are_the_only_ones_computed(tmp_path):
    store = str(tmp_path / "growing.zarr")
    sim = simulate_cohort(4, 4, voxel_size=6.0, n_volumes=40, seed=5, shape=(12, 14, 12))
    io.ingest(sim.isel(subject=slice(0, 6)), store)
    pipeline.run(_config(), store, progress=False, output=tmp_path / "o")
    first = open_cohort(store)["zalff"].load()
    io.ingest(sim, store)  # two more subjects
    grown = open_cohort(store)
    assert grown.sizes["subject"] == 8
    assert "zalff" not in grown or bool(grown["zalff"].isel(subject=slice(6, 8)).isnull().all())
    result = pipeline.run(_config(), store, progress=False, output=tmp_path / "o")
    assert result.computed["zalff"] == ["sub-007", "sub-008"]
    final = open_cohort(store)["zalff"].load()
    xr.testing.assert_identical(final.isel(subject=slice(0, 6)), first)
    assert not bool(final.isnull().any())


def _clusters(*rows):
    columns = ["region", "size", "peak_t", "x", "y", "z", "regions", "peak_kind"]
    return pd.DataFrame([dict(zip(columns, r, strict=True)) for r in rows], columns=columns)


def test_recovery_separates_recovered_implied_and_false():
    planted = [
        {
            "region": "Cerebelum_Crus1_L",
            "metric": "dc",
            "seed": None,
            "direction": "increase",
            "implied": [
                {"region": "Supp_Motor_Area_R", "metric": "dc", "seed": None, "direction": "increase"},
                {"region": "Cerebelum_Crus1_L", "metric": "fc", "seed": "Precentral_R", "direction": "increase"},
            ],
        },
        {"region": "Precentral_L", "metric": "dc", "seed": None, "direction": "decrease"},  # no implied list
    ]
    tables = {
        "dc_binary_sm": _clusters(
            ("Cerebelum_Crus1_L", 30, 4.0, -48, -78, -30, "Cerebelum_Crus1_L (30)", "main"),  # recovered
            ("Supp_Motor_Area_R", 20, 3.1, 6, 0, 48, "Supp_Motor_Area_R (20)", "main"),  # implied
            ("Supp_Motor_Area_L", 9, 3.0, -6, 0, 48, "Supp_Motor_Area_L (5); Supp_Motor_Area_R (4)", "main"),  # covers
            ("Supp_Motor_Area_R", 20, 3.0, 6, 6, 48, "Supp_Motor_Area_R (20)", "sub"),  # not a main peak
            ("Supp_Motor_Area_R", 12, -3.2, 6, 0, 60, "Supp_Motor_Area_R (12)", "main"),  # wrong sign: false
            ("Precentral_L", 25, -3.5, -42, -24, 66, "Precentral_L (25)", "main"),  # recovered
        ),
        "dc_weighted_sm": _clusters(),
        "zfc_Precentral_R": _clusters(
            ("Cerebelum_Crus1_L", 40, 5.0, -48, -54, -30, "Cerebelum_Crus1_L (40)", "main"),  # implied
            ("Cerebelum_9_R", 15, -4.0, 12, -48, -54, "Cerebelum_9_R (15)", "main"),  # false
        ),
        "zfc_Postcentral_L": _clusters(
            ("Supp_Motor_Area_R", 10, 3.3, 6, 0, 48, "Supp_Motor_Area_R (10)", "main"),  # DC consequence only: false
        ),
        "motion": pd.DataFrame({"subject": ["sub-001"]}),
    }
    effects, implied, false = pipeline.recovery(tables, planted, implied=True)
    assert effects["recovered"].tolist() == [True, True]
    assert effects["variants"].tolist() == ["dc_binary_sm", "dc_binary_sm"]
    assert effects["implied"].tolist() == [3, 0]
    assert sorted(zip(implied["variant"], implied["region"], implied["size"], strict=True)) == [
        ("dc_binary_sm", "Supp_Motor_Area_L", 9),
        ("dc_binary_sm", "Supp_Motor_Area_R", 20),
        ("zfc_Precentral_R", "Cerebelum_Crus1_L", 40),
    ]
    assert set(implied["implied_by"]) == {"dc Cerebelum_Crus1_L increase"}
    assert sorted(zip(false["variant"], false["region"], false["peak_t"], strict=True)) == [
        ("dc_binary_sm", "Supp_Motor_Area_R", -3.2),
        ("zfc_Postcentral_L", "Supp_Motor_Area_R", 3.3),
        ("zfc_Precentral_R", "Cerebelum_9_R", -4.0),
    ]
    # the legacy two-value form returns the same false clusters
    effects2, false2 = pipeline.recovery(tables, planted)
    pd.testing.assert_frame_equal(false2, false)
    pd.testing.assert_frame_equal(effects2, effects)
    # without implied lists, the consequences are false clusters
    bare = [{k: v for k, v in p.items() if k != "implied"} for p in planted]
    _, false3 = pipeline.recovery(tables, bare)
    assert len(false3) == 6
    assert (false3["related"] == "").sum() == 5  # the Crus1_L FC cluster lies in a planted DC region


def test_recovery_anywhere_consequence():
    """A consequence with region "*" (mean normalisation) matches its sign in any region."""
    planted = [
        {
            "region": "Postcentral_L",
            "metric": "alff",
            "seed": None,
            "direction": "decrease",
            "implied": [{"region": "*", "metric": "alff", "seed": None, "direction": "increase"}],
        }
    ]
    tables = {
        "malff": _clusters(
            ("Postcentral_L", 40, -5.0, -42, -30, 54, "Postcentral_L (40)", "main"),  # recovered
            ("Temporal_Mid_R", 5, 3.4, 60, -30, -6, "Temporal_Mid_R (5)", "main"),  # implied: anywhere, up
            ("Amygdala_R", 4, -3.3, 24, 0, -18, "Amygdala_R (4)", "main"),  # wrong sign: false
        ),
        "zfc_Postcentral_L": _clusters(
            ("Temporal_Mid_R", 7, 3.6, 60, -30, -6, "Temporal_Mid_R (7)", "main"),  # other metric: false
        ),
    }
    effects, implied, false = pipeline.recovery(tables, planted, implied=True)
    assert effects["recovered"].tolist() == [True]
    assert implied[["variant", "region"]].values.tolist() == [["malff", "Temporal_Mid_R"]]
    assert sorted(zip(false["variant"], false["region"], strict=True)) == [
        ("malff", "Amygdala_R"),
        ("zfc_Postcentral_L", "Temporal_Mid_R"),
    ]


def _as_format_1(path) -> dict:
    """Rewrite a store's commit records the way brainarr's format 1 kept them (lists in the attribute)."""
    group = zarr.open_group(str(path), mode="r+")
    derived = pipeline.derived_state(path)
    state = dict(group.attrs["brainarr"])
    subjects = [str(s) for s in open_cohort(path)["subject"].values]
    state.pop("n_subjects")
    state.update(format=1, subjects=subjects, derived=derived)
    del group["_commits"]
    group.attrs["brainarr"] = state
    return derived


def test_format_1_store_is_read_and_upgraded_by_the_next_run(store, tmp_path):
    cfg = _config()
    pipeline.run(cfg, store, progress=False, output=tmp_path / "a")
    expected = open_cohort(store)
    derived = _as_format_1(store)
    assert all(len(r["subjects"]) == 12 for r in derived.values())
    xr.testing.assert_identical(open_cohort(store), expected)  # read as it is
    assert pipeline.derived_state(store) == derived
    again = pipeline.run(cfg, store, progress=False, output=tmp_path / "a")
    assert all(v == [] for v in again.computed.values())  # the upgrade kept every commit
    state = dict(zarr.open_group(str(store), mode="r").attrs["brainarr"])
    assert state["format"] == 2 and state["n_subjects"] == 12 and "subjects" not in state
    assert all(set(r) == {"params"} for r in state["derived"].values())
    assert pipeline.derived_state(store) == derived
    xr.testing.assert_identical(open_cohort(store), expected)


def test_group_attribute_does_not_grow_with_the_cohort(tmp_path):
    """The root group's JSON: the same size for 6 and 14 subjects (commit records are arrays)."""
    sizes = {}
    for n in (3, 7):
        path = tmp_path / f"n{n}.zarr"
        io.ingest(simulate_cohort(n, n, voxel_size=6.0, n_volumes=50, seed=1, shape=(8, 9, 8)), str(path))
        pipeline.run(_config(), path, progress=False, output=tmp_path / f"out{n}")
        sizes[n] = len(json.dumps(zarr.open_group(str(path), mode="r").attrs["brainarr"], sort_keys=True))
    assert abs(sizes[7] - sizes[3]) <= 2  # only the digits of n_subjects


def test_subject_read_whole_or_chunk_by_chunk_gives_the_same_bits(tmp_path, monkeypatch):
    """A subject small enough is computed on numpy arrays, a large one on its stored chunks.

    The same bits but for degree centrality's last float32 bits (tissue signals are means in
    double precision: in float32 their rounding followed the chunking and the regression
    amplified it to 6e-4 relative in ALFF).
    """
    sim = simulate_cohort(
        3, 3, voxel_size=6.0, n_volumes=60, seed=4, effect_size=3.0, shape=SHAPE, chunks={"x": 7, "y": 9}
    )
    paths = {}
    for limit in (0, 2**40):
        paths[limit] = tmp_path / f"limit{limit}.zarr"
        io.ingest(sim, str(paths[limit]))
        monkeypatch.setattr(subject_stage, "IN_MEMORY_BYTES", limit)
        pipeline.run(_config(families=("alff", "reho", "fc", "dc")), paths[limit], progress=False,
                     output=tmp_path / f"out{limit}")  # fmt: skip
    chunked, whole = open_cohort(paths[0]), open_cohort(paths[2**40])
    assert chunked["bold"].data.numblocks[1:3] == (3, 3)
    for family, names in pipeline.FAMILY_VARIABLES.items():
        for name in names:
            if family == "dc":  # sums of thousands of float32 correlations, tiled as the chunks are
                np.testing.assert_allclose(chunked[name].values, whole[name].values, rtol=2e-6, atol=1e-5, err_msg=name)
            else:
                np.testing.assert_array_equal(chunked[name].values, whole[name].values, err_msg=name)
