"""From raw data: the spatial chain against the simulator's truth, and raw ingest into a cohort store."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

import brainarr as ba
from brainarr.datasets import simulate_raw, study_grid, tissue_probability
from brainarr.exceptions import GridMismatchError, InputFileError, MissingMetadataError, ObliqueAffineWarning
from brainarr.raw import _ingest
from brainarr.testing import killable_cluster

pytestmark = pytest.mark.filterwarnings("ignore::brainarr.exceptions.ObliqueAffineWarning")

#: Fast settings of the chain for a 6 mm grid (the ingest test runs it for every subject).
FAST = {"normalise_options": {"voxel_size": 4.0}, "coregister_options": {"sep": (6.0, 4.0)}}
GRID = study_grid(6.0)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two subjects (the second moves 3.8 mm at once), 24 volumes, T1 at 3 mm, and the truth."""
    root = tmp_path_factory.mktemp("raw") / "bids"
    return simulate_raw(root, n_patients=1, n_controls=1, n_volumes=24, t1_voxel_size=3.0, seed=3, n_movers=1)


@pytest.fixture(scope="module")
def chain(raw):
    """The spatial chain of each subject, with its inputs."""
    table = ba.raw.find_bids_raw(raw["root"])
    out = {}
    for subject, row in table.iterrows():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ObliqueAffineWarning)
            bold = ba.io.load_nifti(row["bold"]).load()
            t1 = ba.io.load_nifti(row["t1"]).load()
        out[subject] = ba.spatial.preprocess(bold, t1, slice_timing=row["slice_times"], grid=GRID, **FAST)
    return out


def _grid_mm(grid: xr.DataArray) -> np.ndarray:
    return np.stack(np.meshgrid(*(grid[d].values for d in "xyz"), indexing="ij"), -1)


@pytest.mark.parametrize("subject", ["sub-001", "sub-002"])
def test_motion_recovered_in_spm_convention(raw, chain, subject):
    truth = raw["subjects"][subject]["motion"]
    estimated = chain[subject]["motion"].values
    err = estimated - truth
    err[:, 3:] = np.degrees(err[:, 3:])
    # the slow drift and the 3.8 mm / 3.5 degree jump of sub-002, through slice timing and oblique axes
    assert np.sqrt((err**2).mean(axis=0)).max() < 0.15, err
    assert np.abs(err).max() < 0.5, err
    assert list(chain[subject]["motion"]["confound"].values) == list(ba.preprocess.MOTION_PARAMS)
    np.testing.assert_array_equal(estimated[0], 0.0)


def test_exclusion_decision(raw, chain):
    qc = {s: ba.preprocess.motion_qc(c["motion"]).compute() for s, c in chain.items()}
    excluded = sorted(s for s, q in qc.items() if bool(q["excluded"]))
    assert excluded == raw["excluded"] == ["sub-002"]


@pytest.mark.parametrize("subject", ["sub-001", "sub-002"])
def test_grid_voxels_map_to_the_true_anatomy(raw, chain, subject):
    """Coregistration o normalisation against the simulator's warp, over the brain."""
    out = chain[subject]
    truth = raw["subjects"][subject]["warp"].inverse(_grid_mm(GRID))  # scanner mm of each grid voxel
    c = out["coregistration"].values
    ours = out["deformation"].values.astype(float) @ c[:3, :3].T + c[:3, 3]
    brain = (tissue_probability(GRID, "gm").values + tissue_probability(GRID, "wm").values) > 0.5
    error = np.linalg.norm(ours - truth, axis=-1)[brain]
    assert error.mean() < 1.5, error.mean()
    assert np.percentile(error, 95) < 3.0


def test_tissue_maps_match_the_template(chain):
    for out in chain.values():
        for tissue, least in (("gm", 0.8), ("wm", 0.85)):
            ours = out[tissue].values > 0.5
            ref = tissue_probability(GRID, tissue).values > 0.5
            dice = 2 * (ours & ref).sum() / (ours.sum() + ref.sum())
            assert dice > least, (tissue, dice)
        total = out["gm"] + out["wm"] + out["csf"]
        assert float(total.max()) <= 1.0 + 1e-5 and float(out["gm"].min()) >= 0


def test_bold_on_grid_is_lazy_and_carries_the_signal(raw, chain):
    out = chain["sub-001"]
    assert out["bold"].chunks is not None  # resampling is lazy
    assert out["bold"].sizes == {"x": 31, "y": 37, "z": 31, "time": 24}
    assert out.attrs["tr"] == 2.0 and np.allclose(out.attrs["affine"], GRID.attrs["affine"])
    # the MNI-space cohort the raw data were made from: the grid series follow its fluctuations
    cohort = ba.datasets.simulate_cohort(n_patients=1, n_controls=1, n_volumes=24, voxel_size=6.0, seed=3, n_movers=1)
    truth = cohort["bold"].isel(subject=0).values
    ours = out["bold"].values
    gm = tissue_probability(GRID, "gm").values > 0.6
    a = truth[gm] - truth[gm].mean(-1, keepdims=True)
    b = ours[gm] - ours[gm].mean(-1, keepdims=True)
    r = (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-12)
    assert np.median(r) > 0.6, np.median(r)


def test_resampling_is_one_step_through_the_stored_transforms(chain, raw):
    """The stored transforms re-derive the output: voxel v of volume t is sampled at M_t^-1 C phi(m)."""
    out = chain["sub-001"]
    row = ba.raw.find_bids_raw(raw["root"]).loc["sub-001"]
    bold = ba.io.load_nifti(row["bold"]).load()
    timed = ba.preprocess.slice_timing(bold.chunk(time=-1), np.asarray(row["slice_times"])).compute()
    c = out["coregistration"].values
    points = out["deformation"].values.astype(float) @ c[:3, :3].T + c[:3, 3]
    affine = np.asarray(bold.attrs["affine"])
    transforms = affine @ np.linalg.inv(out["realign_matrices"].values)
    again = ba.spatial.resample(timed, affine=GRID.attrs["affine"], shape=(31, 37, 31), points=points,
                                transform=transforms, order=4)  # fmt: skip
    np.testing.assert_allclose(again.values, out["bold"].values, rtol=1e-5, atol=1e-3)


# --------------------------------------------------------------------------- raw ingest


def test_ingest_writes_bold_motion_tissues_and_qc(raw, chain, tmp_path, monkeypatch):
    calls = []
    original = _ingest._chain
    monkeypatch.setattr(_ingest, "_chain", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    store = tmp_path / "study.zarr"
    cohort = ba.raw.ingest(raw["root"], store, grid=GRID, preprocess_options=FAST)
    assert calls == ["sub-001", "sub-002"]  # one chain task per subject, whatever it writes
    assert list(cohort.subject.values) == ["sub-001", "sub-002"]
    assert cohort["bold"].sizes == {"subject": 2, "x": 31, "y": 37, "z": 31, "time": 24}
    for i, subject in enumerate(["sub-001", "sub-002"]):
        np.testing.assert_allclose(cohort["bold"].isel(subject=i).values, chain[subject]["bold"].values, rtol=1e-6)
        np.testing.assert_allclose(
            cohort["confounds"].isel(subject=i).values, chain[subject]["motion"].values, rtol=1e-5, atol=1e-6
        )
        for tissue in ("gm", "wm", "csf"):
            np.testing.assert_allclose(cohort[tissue].isel(subject=i).values, chain[subject][tissue].values)
    assert list(cohort["excluded"].values) == [False, True]
    assert cohort["max_translation"].values[1] > 3.0
    assert list(cohort["group"].values) == list(raw["participants"].loc[["sub-001", "sub-002"], "group"])
    # re-running preprocesses nothing: both subjects are committed
    calls.clear()
    ba.raw.ingest(raw["root"], store, grid=GRID, preprocess_options=FAST)
    assert calls == []


def test_ingest_rolls_back_a_subject_whose_chain_fails(raw, tmp_path, monkeypatch):
    original = _ingest._chain
    monkeypatch.setattr(  # sub-001's chain was tested above: only sub-002's runs here
        _ingest, "_chain", lambda *a, **k: original(*a, **k) if a[0] == "sub-002" else _fake_chain(*a)
    )
    root = tmp_path / "bids"
    shutil.copytree(raw["root"], root)
    t1 = root / "sub-002" / "anat" / "sub-002_T1w.nii.gz"
    img = ba.io.load_nifti(t1).load()
    blank = img * 0 + 1.0  # readable, the right shape, but no anatomy: coregistration cannot work
    ba.io.to_nifti(blank.assign_attrs(img.attrs), t1)
    store = tmp_path / "study.zarr"
    with pytest.raises(Exception, match="sub-002") as info:
        ba.raw.ingest(root, store, grid=GRID, preprocess_options=FAST)
    assert "sub-002_T1w" in str(info.value) or "sub-002" in str(info.value)
    cohort = ba.open_cohort(store)
    assert list(cohort.subject.values) == ["sub-001"]  # the committed subject stays, sub-002 is rolled back


def _fake_chain(subject, bold_path, t1_path, tr, slice_timing, slice_axis, grid_affine, grid_shape, *_):
    n = ba.io.load_nifti(bold_path).sizes["time"]
    zeros = np.zeros(grid_shape, np.float32)
    return {
        "bold": np.ones((*grid_shape, n), np.float32),
        "motion": np.zeros((n, 6), np.float32),
        **dict.fromkeys(_ingest.TISSUES, zeros),
        **{k: np.asarray([False]) if k == "excluded" else np.asarray([0.0]) for k in _ingest.QC_NAMES},
    }


def test_ingest_refuses_cohorts_it_cannot_store_before_any_work(raw, tmp_path, monkeypatch):
    monkeypatch.setattr(_ingest, "_chain", lambda *a, **k: pytest.fail("no subject may be preprocessed"))
    table = ba.raw.find_bids_raw(raw["root"])
    shorter = tmp_path / "short.nii.gz"
    img = ba.io.load_nifti(table.loc["sub-002", "bold"])
    ba.io.to_nifti(img.isel(time=slice(0, 20)), shorter)
    bad = table.copy()
    bad.loc["sub-002", "bold"] = shorter
    with pytest.raises(GridMismatchError, match=r"sub-002.*20 volumes"):
        ba.raw.ingest(bad, tmp_path / "a.zarr", grid=GRID)
    bad = table.copy()
    bad.loc["sub-002", "tr"] = 2.5
    with pytest.raises(GridMismatchError, match=r"sub-002.*TR 2\.5"):
        ba.raw.ingest(bad, tmp_path / "b.zarr", grid=GRID)
    pheno = raw["participants"].drop(index="sub-002")
    with pytest.raises(MissingMetadataError, match="sub-002"):
        ba.raw.ingest(table, tmp_path / "c.zarr", phenotypes=pheno, grid=GRID)
    assert not any((tmp_path / n).exists() for n in ("a.zarr", "b.zarr", "c.zarr"))


def test_io_ingest_points_raw_data_to_raw_ingest(raw, tmp_path):
    with pytest.raises(InputFileError, match=r"raw scanner data.*brainarr.raw.ingest"):
        ba.io.ingest(raw["root"], tmp_path / "x.zarr")


def test_subject_masks_use_the_subjects_own_tissue_maps():
    from brainarr import pipeline
    from brainarr.config import StudyConfig

    grid = study_grid(6.0)
    shape = grid.shape
    rng = np.random.default_rng(0)
    wm = rng.random((2, *shape)).astype(np.float32)
    cohort = xr.Dataset(
        {"wm": (("subject", "x", "y", "z"), wm), "csf": (("subject", "x", "y", "z"), 1 - wm)},
        coords={"subject": ["a", "b"], **{d: grid[d] for d in "xyz"}},
        attrs={"affine": grid.attrs["affine"]},
    )
    template = {k: (tissue_probability(grid, k) > 0.9).assign_attrs(affine=grid.attrs["affine"]) for k in ("wm", "csf")}
    masks = {"gm": template["wm"], **template}
    config = StudyConfig()
    own = pipeline.subject_masks(cohort, masks, 1, config)
    np.testing.assert_array_equal(own["wm"].values, wm[1] > config.preprocess.tissue_threshold)
    np.testing.assert_array_equal(own["csf"].values, (1 - wm[1]) > config.preprocess.tissue_threshold)
    assert own["gm"] is masks["gm"]
    # a cohort without its own maps keeps the templates
    assert pipeline.subject_masks(cohort.drop_vars(["wm", "csf"]), masks, 0, config)["wm"] is masks["wm"]


@pytest.mark.slow
def test_worker_killed_mid_subject_recomputes_it(raw, chain, tmp_path):
    """A worker killed while it preprocesses a subject: the scheduler reruns the task elsewhere."""
    import os
    import signal
    import threading
    import time

    table = ba.raw.find_bids_raw(raw["root"]).loc[["sub-001"]]
    table.attrs = {"participants": raw["participants"]}
    store = tmp_path / "study.zarr"
    with killable_cluster(allowed_failures=5) as client:
        pids = client.run(os.getpid)
        outcome: dict = {}
        worker = threading.Thread(
            target=lambda: outcome.update(cohort=ba.raw.ingest(table, store, grid=GRID, preprocess_options=FAST).load())
        )
        worker.start()
        deadline = time.monotonic() + 120
        victim = None
        while time.monotonic() < deadline and victim is None:
            for address, keys in client.processing().items():
                if any("spatial-chain" in str(k) for k in keys):
                    victim = address
            time.sleep(0.05)
        assert victim is not None, "the chain task never started"
        time.sleep(2.0)  # well inside the chain (it takes several seconds)
        os.kill(pids[victim], signal.SIGKILL)
        worker.join(timeout=300)
        assert not worker.is_alive()
    cohort = outcome["cohort"]
    assert list(cohort.subject.values) == ["sub-001"]
    expected = chain["sub-001"]
    np.testing.assert_allclose(cohort["bold"].isel(subject=0).values, expected["bold"].values, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(cohort["confounds"].isel(subject=0).values, expected["motion"].values, atol=1e-5)
    np.testing.assert_allclose(cohort["gm"].isel(subject=0).values, expected["gm"].values, atol=1e-4)


# --------------------------------------------------------------------------- bad raw inputs, store unchanged


def _bad_copy(raw, tmp, change):
    root = tmp / "bids"
    if not root.exists():
        shutil.copytree(raw["root"], root)
        change(root)
    return root


def _edit_image(path, edit):
    import nibabel as nib

    img = nib.load(path)
    data, affine = edit(np.asarray(img.dataobj), img.affine.copy())
    header = img.header.copy()
    header.set_data_dtype(data.dtype)
    out = nib.Nifti1Image(data, affine, header)
    nib.save(out, path)


def _bad_raw_cases(raw):
    from brainarr.exceptions import DataValidationError, DimensionError

    sub = "sub-002"

    def t1(root):
        return root / sub / "anat" / f"{sub}_T1w.nii.gz"

    def bold(root):
        return root / sub / "func" / f"{sub}_task-rest_bold.nii.gz"

    def sidecar(root):
        return root / sub / "func" / f"{sub}_task-rest_bold.json"

    def set_sidecar(key, value):
        def change(root):
            import json

            meta = json.loads(sidecar(root).read_text())
            meta[key] = value
            sidecar(root).write_text(json.dumps(meta))

        return change

    def slab_t1(root):  # a T1 of another field of view: the top fifth of the head only
        def top(d, a):
            start = d.shape[2] * 4 // 5
            a = a.copy()
            a[:3, 3] += a[:3, 2] * start
            return np.ascontiguousarray(d[:, :, start:]), a

        _edit_image(t1(root), top)

    def nan_bold(root):
        nan = np.arange(64)[:, None, None, None] < 3
        _edit_image(bold(root), lambda d, a: (np.where(nan, np.nan, d).astype(np.float32), a))

    def truncate_bold(root):
        data = bold(root).read_bytes()
        bold(root).write_bytes(data[: len(data) // 2])

    cases = {
        "no_t1": (lambda root: t1(root).unlink(), InputFileError, (sub, "T1")),
        "bold_3d": (lambda root: _edit_image(bold(root), lambda d, a: (d[..., 0], a)), DimensionError, (sub, "bold")),
        "sidecar_tr": (set_sidecar("RepetitionTime", 2.5), DataValidationError, (sub, "RepetitionTime", r"\.json")),
        "slice_times": (set_sidecar("SliceTiming", [0.0, 1.0]), DataValidationError, (sub, "SliceTiming|slice")),
        "fewer_volumes": (
            lambda root: _edit_image(bold(root), lambda d, a: (d[..., :20], a)),
            GridMismatchError,
            (sub, "20 volumes"),
        ),
        "t1_4d": (
            lambda root: _edit_image(t1(root), lambda d, a: (np.stack([d, d], -1), a)),
            DimensionError,
            (sub, "T1w", "3-D"),
        ),
        "no_phenotype_row": (
            lambda root: (root / "participants.tsv").write_text(
                "\n".join(line for line in (root / "participants.tsv").read_text().splitlines() if sub not in line)
            ),
            MissingMetadataError,
            (sub,),
        ),
        "t1_slab": (slab_t1, DataValidationError, (sub, "T1w", "covers only")),
        "nan_bold": (nan_bold, DataValidationError, (sub, "bold", "NaN")),
        "truncated_bold": (truncate_bold, OSError, (sub, "bold")),
    }
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "no_t1", "bold_3d", "sidecar_tr", "slice_times", "fewer_volumes", "t1_4d", "no_phenotype_row",
        "t1_slab", "nan_bold", "truncated_bold",
    ],
)  # fmt: skip
def test_bad_raw_inputs_name_subject_and_file_and_leave_the_store(raw, tmp_path, monkeypatch, case):
    from brainarr.testing import BadInput, check_bad_input

    change, error, names = _bad_raw_cases(raw)[case]
    original = _ingest._chain
    monkeypatch.setattr(_ingest, "_chain", lambda *a, **k: original(*a, **k) if a[0] == "sub-002" else _fake_chain(*a))
    store = tmp_path / "study.zarr"
    first = ba.raw.find_bids_raw(raw["root"]).loc[["sub-001"]]
    ba.raw.ingest(first, store, phenotypes=raw["participants"], grid=GRID, preprocess_options=FAST)  # committed

    def call(tmp):
        return ba.raw.ingest(_bad_copy(raw, tmp, change), store, grid=GRID, preprocess_options=FAST)

    check_bad_input(BadInput(call, error, names, store=lambda tmp: store), tmp_path)
    assert list(ba.open_cohort(store).subject.values) == ["sub-001"]


def test_coarsen_averages_blocks_and_keeps_world_positions(rng):
    from brainarr.spatial import _preprocess

    affine = np.array([[0.9, 0.1, 0, -80], [-0.1, 0.95, 0.05, -100], [0, -0.05, 1.1, -60], [0, 0, 0, 1]])
    data = rng.random((9, 8, 7)).astype(np.float32)
    img = xr.DataArray(data, dims=("x", "y", "z"), attrs={"affine": affine.tolist(), "source": "t1.nii"})
    out = _preprocess.coarsen(img, 2.0)
    assert out.shape == (4, 4, 3)
    for i, j, k in [(0, 0, 0), (3, 2, 1), (1, 3, 2)]:
        block = data[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 2 * k : 2 * k + 2]
        assert out.values[i, j, k] == pytest.approx(block.mean(), rel=1e-6)
        centres = [
            affine @ [a, b, c, 1] for a in (2 * i, 2 * i + 1) for b in (2 * j, 2 * j + 1) for c in (2 * k, 2 * k + 1)
        ]
        np.testing.assert_allclose(np.asarray(out.attrs["affine"]) @ [i, j, k, 1], np.mean(centres, axis=0), atol=1e-12)
    assert out.attrs["source"] == "t1.nii"
    assert _preprocess.coarsen(img, 1.2) is img  # factors of 1: unchanged
