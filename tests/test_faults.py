"""Fault tolerance: a worker process dies mid-computation; an ingest process is killed mid-write."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import dask
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from brainarr import io as bio
from brainarr.cohort import open_cohort
from brainarr.metrics import alff, degree_centrality, reho
from brainarr.testing import killable_cluster, make_affine, sigkill_when

pytestmark = pytest.mark.slow

SHAPE = (9, 8, 7, 40)


def _cohort(n_subjects: int = 3) -> xr.Dataset:
    rng = np.random.default_rng(11)
    data = rng.standard_normal((n_subjects, *SHAPE)).astype(np.float32)
    # a shared slow signal so that correlations (and degree centrality) are not trivial
    data += (
        0.8
        * np.sin(np.arange(SHAPE[3]) / 3.0)[None, None, None, None, :]
        * rng.uniform(0, 1, SHAPE[:3]).astype(np.float32)[None, ..., None]
    )
    affine = make_affine(3.0)
    coords = {
        "subject": [f"sub-{i + 1:02d}" for i in range(n_subjects)],
        "time": np.arange(SHAPE[3]) * 2.0,
    }
    bold = xr.DataArray(
        data,
        dims=("subject", "x", "y", "z", "time"),
        coords=coords,
        name="bold",
        attrs={"affine": affine.tolist(), "tr": 2.0, "units": "arbitrary"},
    )
    mask = xr.DataArray(np.ones(SHAPE[:3], bool), dims=("x", "y", "z"))
    mask[0, :, :] = False
    mask[:, -1, 2:] = False
    return xr.Dataset({"bold": bold, "mask": mask}, attrs={"affine": affine.tolist(), "tr": 2.0})


def _metrics(bold: xr.DataArray, mask: xr.DataArray) -> xr.Dataset:
    return xr.Dataset(
        {
            "alff": alff(bold, mask=mask)["alff"],
            "reho": reho(bold, mask),
            "dc": degree_centrality(bold, mask, threshold=0.2)["dc_weighted"],
        }
    )


@pytest.mark.timeout(120)
def test_worker_killed_mid_computation_result_unchanged():

    cohort = _cohort()
    mask = cohort["mask"]
    expected = _metrics(cohort["bold"].chunk({"subject": 1, "x": 5, "y": 4}), mask)
    with dask.config.set(scheduler="synchronous"):
        expected = expected.compute()

    def slow(block):  # defined locally so that it is pickled by value to the workers
        import time as _time

        _time.sleep(0.4)
        return block

    bold = cohort["bold"].chunk({"subject": 1, "x": 5, "y": 4})
    bold = bold.copy(data=bold.data.map_blocks(slow, dtype=bold.dtype))
    graph = _metrics(bold, mask)

    with killable_cluster(allowed_failures=10) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 2
        future = client.compute(graph)
        # wait until the first worker is busy with our tasks, then kill it hard
        victim_addr, victim_pid = sorted(pids.items())[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            processing = client.processing()
            if processing.get(victim_addr):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the computation never reached the worker")
        time.sleep(0.5)
        assert not future.done()
        os.kill(victim_pid, signal.SIGKILL)
        result = future.result(timeout=90)
        # the nanny restarted the killed process: a different pid serves now
        client.wait_for_workers(2, timeout=30)
        assert victim_pid not in client.run(os.getpid).values()
    for name in ("alff", "reho", "dc"):
        np.testing.assert_allclose(result[name].values, expected[name].values, rtol=1e-6, atol=1e-7)
        assert np.isfinite(result[name].values).all()
    assert float(np.abs(expected["dc"]).sum()) > 0


# ---------------------------------------------------------------------------- killed ingest


_INGEST_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from brainarr import io as bio

    original = bio._NiftiChunkReader.__getitem__

    def slow(self, key):
        time.sleep(0.15)
        return original(self, key)

    bio._NiftiChunkReader.__getitem__ = slow
    sources = json.loads(sys.argv[1])
    bio.ingest(sources, sys.argv[2], chunks={"x": 5, "y": 4})
    """
)


def _checksums(ds: xr.Dataset) -> dict[str, str]:
    return {
        str(s): hashlib.sha256(np.ascontiguousarray(ds["bold"].sel(subject=s).values).tobytes()).hexdigest()
        for s in ds["subject"].values
    }


def _raw_state(store) -> tuple[int, int] | None:
    """(committed subjects, rows of the stored bold) read straight from the Zarr metadata."""
    try:
        with open(store / "zarr.json") as fh:
            committed = int(json.load(fh)["attributes"]["brainarr"]["n_subjects"])
        with open(store / "bold" / "zarr.json") as fh:
            rows = json.load(fh)["shape"][0]
    except (OSError, ValueError, KeyError):
        return None  # not there yet, or caught mid-write
    return committed, rows


@pytest.mark.timeout(120)
def test_killed_ingest_process_leaves_committed_subjects_and_resumes(tmp_path):
    rng = np.random.default_rng(3)
    sources = {}
    for i in range(5):
        path = tmp_path / f"sub-{i + 1:02d}_bold.nii"
        img = nib.Nifti1Image((50 + rng.standard_normal(SHAPE)).astype(np.float32), make_affine(3.0))
        img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, path)
        sources[f"sub-{i + 1:02d}"] = str(path)
    reference = bio.ingest(sources, tmp_path / "reference.zarr", chunks={"x": 5, "y": 4})
    expected = _checksums(reference)

    store = tmp_path / "study.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-c", _INGEST_SCRIPT, json.dumps(sources), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def half_written():  # a subject after the first has its rows on disk but is not committed
        state = _raw_state(store)
        return state is not None and state[0] >= 1 and state[1] > state[0]

    sigkill_when(proc, half_written, timeout=60, what="the ingest mid-write")

    committed, _ = _raw_state(store)
    assert 1 <= committed < len(sources)
    interrupted = open_cohort(store)
    ids = [str(s) for s in interrupted["subject"].values]
    assert ids == list(sources)[:committed]
    assert _checksums(interrupted) == {s: expected[s] for s in ids}

    resumed = bio.ingest(sources, store, chunks={"x": 5, "y": 4})
    assert [str(s) for s in resumed["subject"].values] == list(sources)
    assert _checksums(resumed) == expected
    assert _raw_state(store) == (len(sources), len(sources))
    xr.testing.assert_equal(resumed.drop_vars("bold"), reference.drop_vars("bold"))


def test_store_left_by_a_crash_mid_append_opens_with_committed_subjects(tmp_path):
    """A crash can leave ``bold`` resized but not the ``subject`` coordinate; readers cope."""
    import zarr

    rng = np.random.default_rng(4)
    sources = {}
    for i in range(2):
        path = tmp_path / f"sub-{i + 1:02d}_bold.nii"
        nib.save(nib.Nifti1Image((rng.standard_normal((5, 6, 7, 12)) + 9).astype(np.float32), make_affine(3.0)), path)
        sources[f"sub-{i + 1:02d}"] = str(path)
    phenotypes = pd.DataFrame({"group": ["a", "b"], "age": [31.0, 45.0]}, index=list(sources))
    expected = bio.ingest(sources, tmp_path / "study.zarr", phenotypes=phenotypes, tr=2.0)
    group = zarr.open_group(str(tmp_path / "study.zarr"), mode="r+")
    for name in ("bold", "age"):  # some arrays grown by a third subject, the rest not yet
        shape = list(group[name].shape)
        shape[0] += 1
        group[name].resize(tuple(shape))
    reopened = open_cohort(tmp_path / "study.zarr")
    assert reopened.sizes["subject"] == 2
    assert set(reopened.coords) >= {"group", "age"}
    xr.testing.assert_identical(reopened.drop_attrs(), expected.drop_attrs())
    # and a resumed ingest trims the extra rows before appending
    sources["sub-03"] = str(tmp_path / "sub-03_bold.nii")
    nib.save(
        nib.Nifti1Image((rng.standard_normal((5, 6, 7, 12)) + 9).astype(np.float32), make_affine(3.0)),
        sources["sub-03"],
    )
    phenotypes.loc["sub-03"] = ["a", 50.0]
    resumed = bio.ingest(sources, tmp_path / "study.zarr", phenotypes=phenotypes, tr=2.0)
    assert list(resumed["subject"].values) == list(sources)
    assert list(resumed["age"].values) == [31.0, 45.0, 50.0]
    np.testing.assert_array_equal(resumed["bold"].isel(subject=slice(0, 2)).values, expected["bold"].values)
