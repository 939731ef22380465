"""A cohort store never damages what brainarr did not write, and one writer at a time changes it.

Root causes of data loss found in a hostile trial, each tested here:

1. ingest removed whatever was at the store path when its first subject failed (an input file
   taken for the store, a project folder, a Zarr v2 store);
2. two writers on one store interleaved their commits and left a store that never opened again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
import zarr

from brainarr import cli, pipeline
from brainarr import io as bio
from brainarr._core import commits
from brainarr.cohort import LOCK_NODE, StoreLock, open_cohort, repair
from brainarr.config import StudyConfig
from brainarr.datasets import simulate_cohort
from brainarr.exceptions import DataValidationError, StoreError, StoreLockedError
from brainarr.testing import make_affine, snapshot

SHAPE = (7, 8, 9, 24)


def _nifti(path: Path, *, seed: int = 0, nan: bool = False) -> Path:
    data = (100 + np.random.default_rng(seed).standard_normal(SHAPE)).astype(np.float32)
    if nan:
        data[1, 2, 3, 4] = np.nan
    img = nib.Nifti1Image(data, make_affine(3.0))
    img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return path


def _files(folder: Path, n: int = 3, **kwargs) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {f"sub-{i:02d}": _nifti(folder / f"sub-{i:02d}_bold.nii.gz", seed=i, **kwargs) for i in range(1, n + 1)}


def _assert_cohort_equal(got: xr.Dataset, want: xr.Dataset) -> None:
    assert [str(s) for s in got["subject"].values] == [str(s) for s in want["subject"].values]
    np.testing.assert_array_equal(got["bold"].values, want["bold"].values)


# ----------------------------------------------------------------------------- 1. foreign paths


def test_forgotten_store_argument_never_touches_the_inputs(tmp_path, capsys):
    files = _files(tmp_path / "in")
    before = {p: p.read_bytes() for p in files.values()}
    status = cli.main(["ingest", *map(str, files.values())])  # STORE forgotten: the last input is taken
    assert status == 1
    err = capsys.readouterr().err
    assert "sub-03_bold.nii.gz is a file, not a cohort store" in err
    assert "did you forget the STORE argument" in err
    assert {p: p.read_bytes() for p in files.values()} == before


def test_project_folder_with_files_is_refused_before_reading(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.md").write_text("my analysis plan")
    (project / "scripts").mkdir()
    (project / "scripts" / "run.sh").write_text("echo hi")
    before = snapshot(project)
    files = _files(tmp_path / "in", nan=True)  # the first subject would fail
    with pytest.raises(StoreError, match=r"project is a folder that is not empty.*notes\.md, scripts") as info:
        bio.ingest(files, project)
    assert "never writes into it" in str(info.value)
    assert snapshot(project) == before
    with pytest.raises(StoreError, match="not empty"):  # a valid ingest is refused too
        bio.ingest(_files(tmp_path / "ok"), project)
    assert snapshot(project) == before


def test_zarr_v2_store_is_never_overwritten(tmp_path):
    store = tmp_path / "old.zarr"
    zarr.open_group(str(store), mode="w", zarr_format=2).create_array("a", shape=(3,), dtype="f4")
    before = snapshot(store)
    with pytest.raises(StoreError, match=r"old\.zarr is a Zarr v2 store \(.*\.zgroup found\)"):
        bio.ingest(_files(tmp_path / "in"), store)
    assert snapshot(store) == before


def test_foreign_zarr_v3_group_is_never_overwritten(tmp_path):
    store = tmp_path / "other.zarr"
    zarr.open_group(str(store), mode="w", zarr_format=3).attrs["owner"] = "another tool"
    before = snapshot(store)
    with pytest.raises(StoreError, match=r"not a brainarr cohort store.*never overwrites"):
        bio.ingest(_files(tmp_path / "in"), store)
    assert snapshot(store) == before


def test_empty_folder_is_used_and_kept_when_the_first_subject_fails(tmp_path):
    store = tmp_path / "empty.zarr"
    store.mkdir()
    with pytest.raises(DataValidationError, match="sub-01"):
        bio.ingest(_files(tmp_path / "bad", nan=True), store)
    assert store.is_dir() and not any(store.iterdir())  # the user's folder stays, empty
    cohort = bio.ingest(_files(tmp_path / "in"), store)
    assert cohort.sizes["subject"] == 3


def test_new_store_is_removed_entirely_when_the_first_subject_fails(tmp_path):
    store = tmp_path / "new.zarr"
    with pytest.raises(DataValidationError, match="sub-01"):
        bio.ingest(_files(tmp_path / "bad", nan=True), store)
    assert not store.exists()


def test_failed_append_keeps_every_committed_byte(tmp_path):
    store = tmp_path / "study.zarr"
    bio.ingest(_files(tmp_path / "in", 2), store)
    before = snapshot(store)
    bad = {"sub-09": _nifti(tmp_path / "sub-09_bold.nii.gz", nan=True)}
    with pytest.raises(DataValidationError, match="sub-09"):
        bio.ingest(bad, store)
    assert snapshot(store) == before


# ----------------------------------------------------------------------------- 2. one writer at a time


def test_ingest_into_a_locked_store_fails_cleanly_and_writes_nothing(tmp_path):
    store = tmp_path / "study.zarr"
    bio.ingest(_files(tmp_path / "in", 2), store)
    before = snapshot(store)
    with StoreLock(store, command="run"):
        with pytest.raises(StoreLockedError) as info:
            bio.ingest(_files(tmp_path / "more", 3), store)
        message = str(info.value)
        for part in (r"study\.zarr is locked by another writer", "brainarr run", f"pid {os.getpid()}", "--unlock"):
            assert re.search(part, message), message
        assert {k: v for k, v in snapshot(store).items() if not k.startswith(LOCK_NODE)} == before
    assert snapshot(store) == before  # the lock is gone with its holder
    assert open_cohort(store).sizes["subject"] == 2


def test_lock_is_exclusive_between_threads_of_one_process():
    url = "memory://lock-threads.zarr"
    wins, losses = [], []
    barrier = threading.Barrier(8)

    def take():
        lock = StoreLock(url, command="thread")
        barrier.wait()
        try:
            lock.acquire()
        except StoreLockedError:
            losses.append(1)
            return
        wins.append(lock)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    wins[0].release()
    with StoreLock(url):  # free again
        pass


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_lock(store: Path, **holder) -> None:
    node = store / LOCK_NODE
    node.mkdir(parents=True)
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {"brainarr_lock": holder}}
    (node / "zarr.json").write_text(json.dumps(doc))


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    import socket

    store = tmp_path / "study.zarr"
    bio.ingest(_files(tmp_path / "in", 1), store)
    _plant_lock(store, command="ingest", host=socket.gethostname(), pid=_dead_pid(), started="yesterday")
    with caplog.at_level("WARNING", logger="brainarr"):
        cohort = bio.ingest(_files(tmp_path / "in", 3), store)
    assert cohort.sizes["subject"] == 3
    assert "stale lock" in caplog.text and "no longer runs" in caplog.text
    assert not (store / LOCK_NODE).exists()


def test_lock_of_another_host_needs_repair_unlock(tmp_path, capsys):
    store = tmp_path / "study.zarr"
    bio.ingest(_files(tmp_path / "in", 1), store)
    _plant_lock(store, command="run", host="node-17", pid=4242, started="2026-12-01T10:00:00+00:00")
    with pytest.raises(StoreLockedError, match=r"brainarr run \(pid 4242 on node-17, since 2026-12-01"):
        bio.ingest(_files(tmp_path / "in", 2), store)
    assert cli.main(["repair", str(store)]) == 1
    assert "locked by another writer" in capsys.readouterr().err
    assert cli.main(["repair", str(store), "--unlock"]) == 0
    out = capsys.readouterr().out
    assert "removed the lock of brainarr run (pid 4242 on node-17)" in out
    assert "1 committed subject(s), consistent" in out
    assert bio.ingest(_files(tmp_path / "in", 2), store).sizes["subject"] == 2


_INGEST_SCRIPT = textwrap.dedent(
    """
    import sys
    from brainarr import io
    from brainarr.exceptions import StoreLockedError
    files = {p.rsplit("/", 1)[-1].split("_")[0]: p for p in sys.argv[2:]}
    try:
        io.ingest(files, sys.argv[1])
    except StoreLockedError as err:
        print("LOCKED", err)
        sys.exit(3)
    """
)


def test_two_concurrent_ingests_leave_a_correct_store(tmp_path):
    files = _files(tmp_path / "in", 6)
    reference = bio.ingest(files, tmp_path / "reference.zarr")
    store = tmp_path / "study.zarr"
    outcomes = []
    for attempt in range(3):  # the race is real: run it a few times
        target = tmp_path / f"race-{attempt}.zarr" if attempt else store
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _INGEST_SCRIPT, str(target), *map(str, files.values())],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=120), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
        for code, out, err in results:
            assert code in (0, 3), err
            if code == 3:
                assert "is locked by another writer: brainarr ingest" in out
        assert any(code == 0 for code, _, _ in results)
        outcomes.append(sorted(code for code, _, _ in results))
        _assert_cohort_equal(open_cohort(target), reference)
        assert not (target / LOCK_NODE).exists()
        # running it again is a no-op that finds everything committed
        _assert_cohort_equal(bio.ingest(files, target), reference)


# ----------------------------------------------------------------------------- repair


def _two_writer_damage(store: Path, files: dict[str, Path]) -> None:
    """What two interleaved writers left before the lock existed: rows of one, commits of the other."""
    bio.ingest(dict(list(files.items())[:2]), store)
    state = dict(zarr.open_group(str(store), mode="r").attrs["brainarr"])
    extra = bio._subject_dataset("sub-03", bio.load_nifti(files["sub-03"]), None, None)
    extra.attrs = {}
    extra.to_zarr(store, append_dim="subject", consolidated=False, zarr_format=3)
    group = zarr.open_group(str(store), mode="r+")
    commits.record_subject(group, state, "sub-04")  # committed by the other writer


def test_repair_returns_a_damaged_store_to_its_last_consistent_subject(tmp_path, capsys):
    files = _files(tmp_path / "in", 4)
    reference = bio.ingest(files, tmp_path / "reference.zarr")
    store = tmp_path / "study.zarr"
    _two_writer_damage(store, files)
    with pytest.raises(StoreError, match=r"do not match the committed list.*brainarr repair"):
        open_cohort(store)
    assert cli.main(["repair", str(store)]) == 0
    out = capsys.readouterr().out
    assert "rolled back 1 subject(s): sub-04; ingest them again" in out
    assert "2 committed subject(s), consistent" in out
    _assert_cohort_equal(open_cohort(store), reference.isel(subject=slice(0, 2)))
    _assert_cohort_equal(bio.ingest(files, store), reference)


def test_ingest_repairs_a_damaged_store_by_itself(tmp_path):
    files = _files(tmp_path / "in", 4)
    reference = bio.ingest(files, tmp_path / "reference.zarr")
    store = tmp_path / "study.zarr"
    _two_writer_damage(store, files)
    _assert_cohort_equal(bio.ingest(files, store), reference)


def test_repair_of_a_consistent_store_changes_nothing(tmp_path):
    store = tmp_path / "study.zarr"
    bio.ingest(_files(tmp_path / "in", 2), store)
    before = snapshot(store)
    assert repair(store) == {"subjects": ["sub-01", "sub-02"], "dropped": [], "trimmed": {}, "unlocked": None}
    assert snapshot(store) == before


def test_repair_needs_a_store(tmp_path):
    with pytest.raises(StoreError, match=r"no cohort store at .*nothing\.zarr"):
        repair(tmp_path / "nothing.zarr")


# ----------------------------------------------------------------------------- concurrent runs


def _small_study(tmp_path: Path) -> tuple[Path, Path]:
    sim = simulate_cohort(3, 3, voxel_size=6.0, n_volumes=40, seed=3, shape=(12, 14, 10))
    store = tmp_path / "study.zarr"
    bio.ingest(sim, store)
    cfg = StudyConfig()
    cfg = dataclasses.replace(
        cfg,
        preprocess=dataclasses.replace(cfg.preprocess, discard=2),
        metrics=dataclasses.replace(cfg.metrics, families=("alff",)),
        output=dataclasses.replace(cfg.output, figures=False, nifti=False),
    )
    config = tmp_path / "study.toml"
    config.write_text(cfg.to_toml())
    return store, config


def test_run_on_a_locked_store_fails_before_writing(tmp_path):
    store, config = _small_study(tmp_path)
    before = snapshot(store)
    with StoreLock(store, command="ingest"):
        with pytest.raises(StoreLockedError, match="locked by another writer: brainarr ingest"):
            pipeline.run(config, store, output=tmp_path / "out", progress=False)
        assert {k: v for k, v in snapshot(store).items() if not k.startswith(LOCK_NODE)} == before
    assert snapshot(store) == before


_RUN_SCRIPT = textwrap.dedent(
    """
    import sys
    from brainarr import pipeline
    from brainarr.exceptions import StoreLockedError
    try:
        pipeline.run(sys.argv[1], sys.argv[2], output=sys.argv[3], progress=False)
    except StoreLockedError as err:
        print("LOCKED", err)
        sys.exit(3)
    """
)


@pytest.mark.slow
def test_two_concurrent_runs_leave_the_maps_of_one_run(tmp_path):
    store, config = _small_study(tmp_path)
    import shutil

    reference = tmp_path / "reference.zarr"
    shutil.copytree(store, reference)
    pipeline.run(config, reference, output=tmp_path / "out-ref", progress=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN_SCRIPT, str(config), str(store), str(tmp_path / f"out-{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    results = [(p.wait(timeout=300), p.stdout.read().decode(), p.stderr.read().decode()) for p in procs]
    for code, out, err in results:
        assert code in (0, 3), err[-3000:]
        if code == 3:
            assert "is locked by another writer: brainarr run" in out
    assert any(code == 0 for code, _, _ in results)
    got, want = open_cohort(store), open_cohort(reference)
    for name in pipeline.FAMILY_VARIABLES["alff"]:
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    assert pipeline.derived_state(store) == pipeline.derived_state(reference)
    assert not (store / LOCK_NODE).exists()
