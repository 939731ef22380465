"""Cohort stores: ingest, resume after interruption, validation, Zarr round trips."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import brainarr as ba
from brainarr import io as bio
from brainarr.cohort import FORMAT_VERSION, summary
from brainarr.exceptions import (
    DataValidationError,
    GridMismatchError,
    MissingMetadataError,
    StoreError,
)
from brainarr.testing import make_affine, raise_if_dask_computes

SHAPE = (7, 8, 9, 20)


def _nifti(path, data, affine=None, tr=2.0):
    img = nib.Nifti1Image(data.astype(np.float32), make_affine(3.0) if affine is None else affine)
    img.header.set_zooms((*img.header.get_zooms()[:3], tr))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return path


@pytest.fixture
def subjects(tmp_path, rng):
    """Three subjects' NIfTI files and their data."""
    files, data = {}, {}
    for i in range(3):
        sid = f"sub-{i + 1:02d}"
        data[sid] = rng.standard_normal(SHAPE).astype(np.float32)
        files[sid] = _nifti(tmp_path / f"{sid}_bold.nii", data[sid])
    return files, data


@pytest.fixture
def phenotypes():
    return pd.DataFrame(
        {"group": ["patient", "control", "patient"], "age": [61.0, 45.5, 70.0], "sex": ["M", "F", "F"]},
        index=["sub-01", "sub-02", "sub-03"],
    )


def _checksum(cohort: xr.Dataset) -> str:
    digest = hashlib.sha256()
    for name in sorted(cohort.data_vars):
        digest.update(np.ascontiguousarray(cohort[name].values).tobytes())
    digest.update(",".join(map(str, cohort.subject.values)).encode())
    return digest.hexdigest()


class TestIngest:
    def test_local_round_trip(self, tmp_path, subjects, phenotypes):
        files, data = subjects
        cohort = bio.ingest(files, tmp_path / "study.zarr", phenotypes=phenotypes)
        assert cohort.bold.dims == ("subject", "x", "y", "z", "time")
        assert list(cohort.subject.values) == list(files)
        for i, sid in enumerate(files):
            np.testing.assert_array_equal(cohort.bold.isel(subject=i).values, data[sid])
        assert list(cohort.group.values) == ["patient", "control", "patient"]
        np.testing.assert_allclose(cohort.age.values, [61.0, 45.5, 70.0])
        assert cohort.attrs["tr"] == 2.0
        np.testing.assert_allclose(cohort.bold.attrs["affine"], make_affine(3.0))
        # one subject per chunk, time whole
        assert cohort.bold.chunksizes["subject"] == (1, 1, 1)
        assert cohort.bold.chunksizes["time"] == (20,)
        reopened = ba.open_cohort(tmp_path / "study.zarr")
        xr.testing.assert_identical(reopened, cohort)

    def test_memory_store(self, subjects, phenotypes):
        files, data = subjects
        url = "memory://brainarr-test/study.zarr"
        cohort = bio.ingest(files, url, phenotypes=phenotypes)
        np.testing.assert_array_equal(cohort.bold.sel(subject="sub-02").values, data["sub-02"])
        assert list(ba.open_cohort(url).sex.values) == ["M", "F", "F"]

    def test_open_is_lazy(self, tmp_path, subjects):
        bio.ingest(subjects[0], tmp_path / "s.zarr")
        with raise_if_dask_computes():
            cohort = ba.open_cohort(tmp_path / "s.zarr")
            mean = cohort.bold.mean("time")
        assert mean.chunks is not None

    def test_rerun_skips_finished_subjects(self, tmp_path, subjects, monkeypatch):
        files, _ = subjects
        store = tmp_path / "s.zarr"
        bio.ingest(dict(list(files.items())[:2]), store)
        reads = []
        original = bio._NiftiChunkReader.__getitem__

        def spy(self, key):
            reads.append(self.path)
            return original(self, key)

        monkeypatch.setattr(bio._NiftiChunkReader, "__getitem__", spy)
        cohort = bio.ingest(files, store)
        assert list(cohort.subject.values) == ["sub-01", "sub-02", "sub-03"]
        assert {p.rsplit("/", 1)[-1] for p in reads} == {"sub-03_bold.nii"}

    def test_interrupted_write_is_invisible_and_resumes(self, tmp_path, subjects, monkeypatch):
        files, _ = subjects
        reference = bio.ingest(files, tmp_path / "reference.zarr")
        store = tmp_path / "s.zarr"
        original = bio._NiftiChunkReader.__getitem__
        state = {"n": 0}

        def crash_in_second_subject(self, key):
            if "sub-02" in self.path:
                state["n"] += 1
                if state["n"] == 3:  # after some chunks of sub-02 were written
                    raise KeyboardInterrupt("simulated crash")
            return original(self, key)

        monkeypatch.setattr(bio._NiftiChunkReader, "__getitem__", crash_in_second_subject)
        with pytest.raises(KeyboardInterrupt):
            bio.ingest(files, store, chunks={"x": 2})
        # the rows of sub-02 were allocated but never committed: readers see sub-01 only
        group = zarr.open_group(str(store), mode="r")
        assert group["bold"].shape[0] == 1  # rolled back on the way out
        visible = ba.open_cohort(store)
        assert list(visible.subject.values) == ["sub-01"]
        monkeypatch.setattr(bio._NiftiChunkReader, "__getitem__", original)
        resumed = bio.ingest(files, store, chunks={"x": 2})
        assert _checksum(resumed) == _checksum(reference)

    def test_hard_crash_rows_are_trimmed_on_resume(self, tmp_path, subjects):
        """A process killed mid-write (no rollback) leaves uncommitted rows that readers ignore."""
        files, _ = subjects
        store = tmp_path / "s.zarr"
        reference = bio.ingest(files, tmp_path / "reference.zarr")
        bio.ingest({"sub-01": files["sub-01"]}, store)
        # emulate the state a SIGKILL leaves: arrays grown, garbage written, no commit
        group = zarr.open_group(str(store), mode="r+")
        bold = group["bold"]
        bold.resize((2, *bold.shape[1:]))
        bold[1] = np.full(bold.shape[1:], 7.0, np.float32)
        subject = group["subject"]
        subject.resize((2,))
        assert list(ba.open_cohort(store).subject.values) == ["sub-01"]
        resumed = bio.ingest(files, store)
        assert _checksum(resumed) == _checksum(reference)

    def test_summary(self, tmp_path, subjects, phenotypes):
        cohort = bio.ingest(subjects[0], tmp_path / "s.zarr", phenotypes=phenotypes)
        text = summary(cohort)
        assert "subjects: 3 (1 control, 2 patient)" in text
        assert "grid: 7 x 8 x 9 voxels of 3 x 3 x 3 mm" in text
        assert "20 at TR 2 s" in text


class TestRefusals:
    """Each bad input raises naming the subject/file and leaves the store unchanged."""

    @pytest.fixture
    def store(self, tmp_path, subjects):
        files, _ = subjects
        path = tmp_path / "s.zarr"
        bio.ingest({"sub-01": files["sub-01"]}, path)
        return path

    def _unchanged(self, store, before):
        assert _checksum(ba.open_cohort(store)) == before
        assert zarr.open_group(str(store), mode="r")["bold"].shape[0] == 1

    @pytest.mark.parametrize(
        ("kwargs", "pattern"),
        [
            ({"shape": (7, 8, 10, 20)}, r"sub-09.*grid \(7, 8, 10\) differs from the cohort's \(7, 8, 9\)"),
            ({"shape": (7, 8, 9, 21)}, r"sub-09.*21 volumes, the cohort has 20"),
            ({"tr": 2.5}, r"sub-09.*TR 2.5 s differs from the cohort's 2 s"),
            ({"affine": make_affine(2.0)}, r"sub-09.*affine differs"),
        ],
    )
    def test_mismatch(self, tmp_path, store, rng, kwargs, pattern):
        before = _checksum(ba.open_cohort(store))
        shape = kwargs.pop("shape", SHAPE)
        bad = _nifti(tmp_path / "sub-09_bold.nii", rng.standard_normal(shape), **kwargs)
        with pytest.raises(GridMismatchError, match=pattern):
            bio.ingest({"sub-09": bad}, store)
        self._unchanged(store, before)

    def test_mismatch_is_checked_before_any_write(self, tmp_path, store, subjects, rng):
        files, _ = subjects
        before = _checksum(ba.open_cohort(store))
        bad = _nifti(tmp_path / "sub-09_bold.nii", rng.standard_normal((7, 8, 9, 19)))
        with pytest.raises(GridMismatchError, match="sub-09"):
            bio.ingest({"sub-02": files["sub-02"], "sub-09": bad}, store)
        self._unchanged(store, before)  # sub-02 was valid but nothing was written

    def test_nan_bold_rolls_back(self, tmp_path, store, rng):
        before = _checksum(ba.open_cohort(store))
        data = rng.standard_normal(SHAPE)
        data[3, 4, 5, 6] = np.nan
        bad = _nifti(tmp_path / "sub-07_bold.nii", data)
        with pytest.raises(DataValidationError, match=r"sub-07.*1 NaN/Inf"):
            bio.ingest({"sub-07": bad}, store)
        self._unchanged(store, before)

    def test_nan_first_subject_leaves_no_store(self, tmp_path, rng):
        data = rng.standard_normal(SHAPE)
        data[0, 0, 0, 0] = np.inf
        bad = _nifti(tmp_path / "sub-07_bold.nii", data)
        with pytest.raises(DataValidationError, match="sub-07"):
            bio.ingest({"sub-07": bad}, tmp_path / "new.zarr")
        assert not (tmp_path / "new.zarr").exists()

    def test_missing_phenotype_row(self, tmp_path, subjects, phenotypes):
        with pytest.raises(MissingMetadataError, match=r"no row for subject\(s\) \['sub-03'\]"):
            bio.ingest(subjects[0], tmp_path / "s.zarr", phenotypes=phenotypes.drop("sub-03"))
        assert not (tmp_path / "s.zarr").exists()

    def test_duplicate_subject_ids(self, tmp_path, subjects):
        files, _ = subjects
        with pytest.raises(ValueError, match=r"more than once.*sub-01"):
            bio.ingest([files["sub-01"], files["sub-01"]], tmp_path / "s.zarr")

    def test_duplicate_phenotype_rows(self, phenotypes):
        with pytest.raises(ValueError, match=r"more than once.*sub-01"):
            bio.read_phenotypes(pd.concat([phenotypes, phenotypes.iloc[:1]]))

    def test_confounds_wrong_length(self, tmp_path, subjects, rng):
        files, _ = subjects
        conf = pd.DataFrame(rng.standard_normal((19, 2)), columns=["wm", "csf"])
        with pytest.raises(ValueError, match=r"sub-01.*19 rows.*20 volumes"):
            bio.ingest({"sub-01": files["sub-01"]}, tmp_path / "s.zarr", confounds={"sub-01": conf})

    def test_confounds_nan(self, tmp_path, subjects, rng):
        files, _ = subjects
        conf = pd.DataFrame(rng.standard_normal((20, 2)), columns=["wm", "csf"])
        conf.iloc[4, 1] = np.nan
        with pytest.raises(ValueError, match=r"sub-01.*NaN"):
            bio.ingest({"sub-01": files["sub-01"]}, tmp_path / "s.zarr", confounds={"sub-01": conf})

    def test_not_a_brainarr_store(self, tmp_path):
        zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=3)
        with pytest.raises(StoreError, match=r"other\.zarr.*not a brainarr cohort store"):
            ba.open_cohort(tmp_path / "other.zarr")

    def test_store_from_a_newer_version(self, store):
        group = zarr.open_group(str(store), mode="r+")
        group.attrs["brainarr"] = {**group.attrs["brainarr"], "format": FORMAT_VERSION + 1}
        with pytest.raises(StoreError, match="newer brainarr"):
            ba.open_cohort(store)

    def test_no_store(self, tmp_path):
        with pytest.raises(StoreError, match=r"no cohort store at .*absent\.zarr"):
            ba.open_cohort(tmp_path / "absent.zarr")

    def test_mask_on_another_grid(self, tmp_path, subjects):
        mask = xr.DataArray(np.ones((5, 5, 5), bool), dims=("x", "y", "z"), name="mask")
        with pytest.raises(GridMismatchError, match=r"mask: grid \(5, 5, 5\)"):
            bio.ingest(subjects[0], tmp_path / "s.zarr", mask=mask)
        assert not (tmp_path / "s.zarr").exists()
