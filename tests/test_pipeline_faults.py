"""The study is interrupted while it writes subject maps (its process or a worker killed), then resumed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

from brainarr import io, pipeline
from brainarr.cohort import open_cohort
from brainarr.config import StudyConfig
from brainarr.datasets import simulate_cohort
from brainarr.testing import killable_cluster, sigkill_when

pytestmark = pytest.mark.slow

SHAPE = (18, 22, 16)
FAMILIES = ("alff", "fc", "dc")  # dc: its sums are bit-reproducible too
NAMES = [n for f in FAMILIES for n in pipeline.FAMILY_VARIABLES[f]]

# The pipeline in a child process, slowed down between a subject's rows being written (by its
# task) and their commit (by the run, in batches), so that the parent can kill it in exactly
# that state: some subjects committed, one subject's rows on disk but not committed.
_RUN_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time
    from brainarr import pipeline
    from brainarr.study import _subjects

    marks = pathlib.Path(sys.argv[4])
    real_compute, real_flush = _subjects.compute_subject, _subjects._Committer.flush

    def slow_compute(ctx, index, subject, names, scheduler=None):
        record = real_compute(ctx, index, subject, names, scheduler)
        (marks / str(index)).touch()  # tell the parent: the rows are on disk
        time.sleep(0.5)  # ... and not yet committed
        return record

    def flush(self):
        rows = [index for batch in self.pending.values() for index, _ in batch]
        real_flush(self)
        for index in rows:  # committed: the window is closed
            (marks / str(index)).unlink()

    _subjects.compute_subject = slow_compute
    _subjects._Committer.flush = flush
    pipeline.run(sys.argv[1], sys.argv[2], output=sys.argv[3], progress=False)
    """
)


def _config_file(tmp_path: Path) -> Path:
    cfg = StudyConfig()
    cfg = dataclasses.replace(
        cfg,
        preprocess=dataclasses.replace(cfg.preprocess, discard=4),
        metrics=dataclasses.replace(cfg.metrics, families=FAMILIES),
        output=dataclasses.replace(cfg.output, figures=False),
    )
    path = tmp_path / "study.toml"
    path.write_text(cfg.to_toml())
    return path


def _row_digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float32).tobytes()).hexdigest()


def _derived_records(store: Path) -> dict[str, list[str]] | None:
    """Committed subjects per derived map, read from the store's commit records."""
    try:
        return {name: rec["subjects"] for name, rec in pipeline.derived_state(store).items()}
    except Exception:  # not written yet, or caught while being written
        return None


def _written_uncommitted(marks: Path, records: dict[str, list[str]]) -> list[tuple[str, int]]:
    """(map, row) pairs whose row is on disk and not yet committed.

    The child creates the marker after writing a subject's rows and removes it after their
    commit, so with ``records`` read *before* the markers a marker seen is a row still
    uncommitted.
    """
    return [
        (name, row)
        for name, subjects in records.items()
        for row in range(len(subjects), len(subjects) + 8)  # subjects are committed in store order
        if (marks / str(row)).exists()
    ]


@pytest.mark.timeout(180)
def test_killed_pipeline_process_keeps_committed_maps_and_resumes(tmp_path):
    raw = tmp_path / "raw.zarr"
    sim = simulate_cohort(4, 4, voxel_size=6.0, n_volumes=60, seed=5, effect_size=3.0, shape=SHAPE)
    io.ingest(sim, str(raw))
    config = _config_file(tmp_path)

    reference = tmp_path / "reference.zarr"
    shutil.copytree(raw, reference)
    expected_run = pipeline.run(config, reference, output=tmp_path / "out-reference", progress=False)
    expected = open_cohort(reference)
    subjects = [str(s) for s in expected["subject"].values]
    digests = {name: [_row_digest(expected[name].isel(subject=i).values) for i in range(8)] for name in NAMES}
    for name in NAMES:  # the maps are real: finite in the mask, not all equal
        assert np.isfinite(expected[name].values).any()
        assert len(set(digests[name])) == len(subjects)

    store = tmp_path / "study.zarr"
    shutil.copytree(raw, store)
    out = tmp_path / "out"
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN_SCRIPT, str(config), str(store), str(out), str(marks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def mid_write():  # every map started, one with two committed subjects, a row written but not committed
        records = _derived_records(store)
        if records is None or set(records) != set(NAMES):
            return None
        pending = _written_uncommitted(marks, records)
        return pending if max(len(v) for v in records.values()) >= 2 and pending else None

    sigkill_when(proc, mid_write, timeout=90, what="the pipeline mid-write")

    # the store as the kill left it
    records = _derived_records(store)
    assert records is not None and set(records) == set(NAMES)
    assert all(records[name] == subjects[: len(records[name])] for name in NAMES)
    assert any(0 < len(v) < len(subjects) for v in records.values())  # the run was not finished
    pending = _written_uncommitted(marks, records)
    assert pending, "the kill was expected while a row was written but not committed"
    raw_group = zarr.open_group(str(store), mode="r")
    interrupted = open_cohort(store)
    assert [str(s) for s in interrupted["subject"].values] == subjects
    for name in NAMES:
        done = len(records[name])
        values = interrupted[name].values
        for i in range(len(subjects)):
            if i < done:  # committed: the uninterrupted run's map, bit for bit
                assert _row_digest(values[i]) == digests[name][i], (name, subjects[i])
            else:  # not committed (written or not): hidden
                assert np.isnan(values[i]).all(), (name, subjects[i])
    for name, row in pending:  # the hidden row really is on disk
        assert np.isfinite(raw_group[name][row]).any()

    # resume: only the uncommitted subjects are computed, and everything ends as uninterrupted
    resumed = pipeline.run(config, store, output=out, progress=False)
    for name in NAMES:
        assert resumed.computed[name] == subjects[len(records[name]) :], name
    final = open_cohort(store)
    assert pipeline.derived_state(store).keys() == pipeline.derived_state(reference).keys()
    for name in NAMES:
        assert pipeline.derived_state(store)[name]["subjects"] == subjects
        got = [_row_digest(final[name].isel(subject=i).values) for i in range(len(subjects))]
        assert got == digests[name], name
    t_maps = sorted(k for k in expected_run.paths if k.endswith("_t") or k.endswith("_t_grf"))
    assert len(t_maps) == 2 * (2 + len(StudyConfig().metrics.seeds) + 4)  # malff, zalff, zfc per seed, 4 DC
    for key in t_maps:
        want = np.asarray(nib.load(expected_run.paths[key]).dataobj)
        got = np.asarray(nib.load(resumed.paths[key]).dataobj)
        np.testing.assert_array_equal(got, want, err_msg=key)
    for key in ("malff", "zalff", "table1"):
        assert resumed.tables[key].equals(expected_run.tables[key]), key


def _slow_subject_tasks(seconds: float) -> None:  # run on each worker: slow its subject tasks down
    from brainarr.study import _subjects

    real = _subjects.compute_subject

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    _subjects.compute_subject = slow


@pytest.mark.timeout(240)
def test_worker_killed_with_several_subjects_in_flight_leaves_an_uninterrupted_store(tmp_path):

    raw = tmp_path / "raw.zarr"
    io.ingest(simulate_cohort(4, 4, voxel_size=6.0, n_volumes=60, seed=5, effect_size=3.0, shape=SHAPE), str(raw))
    config = _config_file(tmp_path)
    reference = tmp_path / "reference.zarr"
    shutil.copytree(raw, reference)
    pipeline.run(config, reference, output=tmp_path / "out-reference", progress=False)
    store = tmp_path / "study.zarr"
    shutil.copytree(raw, store)

    with killable_cluster(allowed_failures=10) as client:
        client.run(_slow_subject_tasks, 1.0)
        pids = client.run(os.getpid)
        outcome = {}
        runner = threading.Thread(
            target=lambda: outcome.update(result=pipeline.run(config, store, client=client, progress=False))
        )
        runner.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both workers busy with a subject each
            busy = [a for a, keys in client.processing().items() if any("brainarr-subject" in str(k) for k in keys)]
            if len(busy) == 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the subject stage never had two subjects in flight")
        time.sleep(0.3)
        os.kill(pids[busy[0]], signal.SIGKILL)
        runner.join(timeout=180)
        assert not runner.is_alive() and "result" in outcome
    assert pipeline.derived_state(store) == pipeline.derived_state(reference)
    got, expected = open_cohort(store), open_cohort(reference)
    for name in NAMES:
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
    assert sorted(outcome["result"].computed["alff"]) == [str(s) for s in expected["subject"].values]
