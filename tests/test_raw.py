"""Tests of brainarr.raw: BIDS raw, DPABI FunRaw/T1Raw and DICOM discovery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainarr.exceptions import DataValidationError, DimensionError, InputFileError, MissingMetadataError
from brainarr.raw import dicom_to_nifti, find_bids_raw, find_dpabi_raw, slice_timing_from
from brainarr.testing import BadInput, check_bad_input

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
SHAPE = (5, 6, 7)  # all sizes different: slices along z are 7


def _nifti(path: Path, shape=(*SHAPE, 10), tr: float | None = 2.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(len(str(path))).normal(100, 5, shape).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([-3.0, 3.0, 3.0, 1.0]))
    img.header.set_xyzt_units(xyz="mm", t="sec")
    if tr is not None and len(shape) == 4:
        img.header.set_zooms((3.0, 3.0, 3.0, tr))
    nib.save(img, path)
    return path


def _json(path: Path, **values) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    return path


def _bids(root: Path, subjects=("sub-01", "sub-02"), *, participants: bool = True) -> Path:
    for sid in subjects:
        _nifti(root / sid / "func" / f"{sid}_task-rest_bold.nii.gz")
        _nifti(root / sid / "anat" / f"{sid}_T1w.nii.gz", shape=(8, 9, 10))
    times = [0.0, 1.0, 0.2, 1.2, 0.4, 1.4, 0.6]
    _json(root / "task-rest_bold.json", RepetitionTime=2.0, SliceTiming=times, TaskName="rest")
    if participants:
        rows = "".join(f"{sid}\t{'patient' if i % 2 else 'control'}\t{40 + i}\n" for i, sid in enumerate(subjects))
        (root / "participants.tsv").write_text("participant_id\tgroup\tage\n" + rows)
    return root


class TestSliceTimingFrom:
    def test_named_orders_against_loops(self):
        n, tr = 7, 2.1
        dt = tr / n
        acquired = {"ascending": range(n), "descending": range(n - 1, -1, -1)}
        acquired["interleaved"] = [*range(0, n, 2), *range(1, n, 2)]
        acquired["interleaved_siemens"] = acquired["interleaved"]  # odd n: the same
        for name, order in acquired.items():
            expected = np.empty(n)
            for rank, index in enumerate(order):
                expected[index] = rank * dt
            np.testing.assert_allclose(slice_timing_from(name, n, tr), expected, rtol=0, atol=1e-12)
        # even n, Siemens: 1, 3, 5, ... first
        expected = np.empty(6)
        for rank, index in enumerate([1, 3, 5, 0, 2, 4]):
            expected[index] = rank * 2.0 / 6
        np.testing.assert_allclose(slice_timing_from("interleaved_siemens", 6, 2.0), expected, atol=1e-12)

    def test_sidecar_mapping_path_and_list(self, tmp_path):
        times = [0.0, 0.5, 1.0, 1.5]
        path = _json(tmp_path / "s.json", SliceTiming=times)
        for source in ({"SliceTiming": times}, path, str(path), times, np.array(times)):
            np.testing.assert_array_equal(slice_timing_from(source, 4, 2.0), times)

    def test_bad(self, tmp_path):
        with pytest.raises(DataValidationError, match="3 values but the image has 4 slices"):
            slice_timing_from([0, 0.5, 1.0], 4, 2.0)
        with pytest.raises(DataValidationError, match=r"outside \[0, TR = 2\) s.*ms"):
            slice_timing_from([0, 500, 1000, 1500], 4, 2.0)
        with pytest.raises(MissingMetadataError, match="no SliceTiming"):
            slice_timing_from({"RepetitionTime": 2.0}, 4, 2.0)
        with pytest.raises(ValueError, match="order must be"):
            slice_timing_from("spiral", 4, 2.0)


class TestFindBidsRaw:
    def test_table(self, tmp_path):
        root = _bids(tmp_path)
        table = find_bids_raw(root)
        assert list(table.index) == ["sub-01", "sub-02"]
        assert list(table.columns) == ["bold", "t1", "tr", "slice_times", "slice_axis", "json"]
        row = table.loc["sub-02"]
        assert row["bold"] == root / "sub-02" / "func" / "sub-02_task-rest_bold.nii.gz"
        assert row["t1"] == root / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
        assert row["tr"] == 2.0
        assert row["slice_times"] == [0.0, 1.0, 0.2, 1.2, 0.4, 1.4, 0.6]
        assert row["slice_axis"] == "z"
        assert row["json"] == (root / "task-rest_bold.json",)
        participants = table.attrs["participants"]
        assert list(participants.index) == ["sub-01", "sub-02"]
        assert participants.loc["sub-02", "group"] == "patient"
        assert participants.loc["sub-02", "age"] == 41

    def test_inheritance_file_level_wins(self, tmp_path):
        root = _bids(tmp_path, participants=False)
        func = root / "sub-01" / "func"
        times = [1.5, 1.25, 1.0, 0.75, 0.5, 0.25, 0.0]
        specific = _json(func / "sub-01_task-rest_bold.json", SliceTiming=times)
        _json(root / "sub-01" / "sub-01_task-rest_bold.json", SliceEncodingDirection="k")
        _json(root / "task-other_bold.json", RepetitionTime=9.0)  # another task: does not apply
        table = find_bids_raw(root)
        assert table.attrs["participants"] is None
        assert table.loc["sub-01", "slice_times"] == times
        assert table.loc["sub-01", "json"] == (
            root / "task-rest_bold.json",
            root / "sub-01" / "sub-01_task-rest_bold.json",
            specific,
        )
        assert table.loc["sub-01", "tr"] == 2.0  # inherited from the top
        assert table.loc["sub-02", "slice_times"][1] == 1.0

    def test_slice_axis_from_encoding_direction(self, tmp_path):
        root = _bids(tmp_path, subjects=("sub-01",))
        _json(root / "task-rest_bold.json", RepetitionTime=2.0, SliceEncodingDirection="j-", SliceTiming=[0, 0.5] * 3)
        row = find_bids_raw(root).loc["sub-01"]
        assert row["slice_axis"] == "y"
        assert len(row["slice_times"]) == SHAPE[1]

    def test_header_tr_without_sidecar(self, tmp_path):
        root = tmp_path
        _nifti(root / "sub-a" / "func" / "sub-a_task-rest_bold.nii", tr=2.5)
        _nifti(root / "sub-a" / "anat" / "sub-a_T1w.nii", shape=(8, 9, 10))
        row = find_bids_raw(root).loc["sub-a"]
        assert row["tr"] == 2.5
        assert row["slice_times"] is None

    def test_sessions_and_runs(self, tmp_path):
        root = tmp_path
        for ses in ("1", "2"):
            for run in ("1", "2"):
                _nifti(root / "sub-01" / f"ses-{ses}" / "func" / f"sub-01_ses-{ses}_task-rest_run-{run}_bold.nii.gz")
            _nifti(root / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T1w.nii.gz", shape=(8, 9, 10))
        table = find_bids_raw(root, session="ses-2", run=1)
        assert table.loc["sub-01", "bold"].name == "sub-01_ses-2_task-rest_run-1_bold.nii.gz"
        assert table.loc["sub-01", "t1"].name == "sub-01_ses-2_T1w.nii.gz"


def _bad_bids_cases() -> dict[str, BadInput]:
    def no_t1(tmp):
        root = _bids(tmp)
        (root / "sub-02" / "anat" / "sub-02_T1w.nii.gz").unlink()
        return find_bids_raw(root)

    def no_bold(tmp):
        root = _bids(tmp)
        (root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz").unlink()
        return find_bids_raw(root)

    def wrong_task(tmp):
        return find_bids_raw(_bids(tmp), task="motor")

    def bold_3d(tmp):
        root = _bids(tmp)
        _nifti(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz", shape=SHAPE)
        return find_bids_raw(root)

    def tr_mismatch(tmp):
        root = _bids(tmp)
        _json(root / "sub-02" / "func" / "sub-02_task-rest_bold.json", RepetitionTime=2.5)
        return find_bids_raw(root)

    def tr_just_within(tmp):  # 0.5 ms off: accepted; then the length error of another subject fires
        root = _bids(tmp)
        _json(root / "sub-01" / "func" / "sub-01_task-rest_bold.json", RepetitionTime=2.0005)
        _json(root / "sub-02" / "func" / "sub-02_task-rest_bold.json", SliceTiming=[0.0, 1.0])
        return find_bids_raw(root)

    def slice_count(tmp):
        root = _bids(tmp)
        _json(root / "task-rest_bold.json", RepetitionTime=2.0, SliceTiming=[0.0, 0.5, 1.0, 1.5])
        return find_bids_raw(root)

    def slice_range(tmp):
        root = _bids(tmp)
        _json(root / "sub-01" / "func" / "sub-01_task-rest_bold.json", SliceTiming=[0, 250, 500, 750, 1000, 1250, 1500])
        return find_bids_raw(root)

    def slice_equal_tr(tmp):
        root = _bids(tmp)
        _json(root / "task-rest_bold.json", RepetitionTime=2.0, SliceTiming=[0, 0.3, 0.6, 0.9, 1.2, 1.5, 2.0])
        return find_bids_raw(root)

    def two_runs(tmp):
        root = _bids(tmp)
        func = root / "sub-01" / "func"
        (func / "sub-01_task-rest_bold.nii.gz").rename(func / "sub-01_task-rest_run-1_bold.nii.gz")
        _nifti(func / "sub-01_task-rest_run-2_bold.nii.gz")
        return find_bids_raw(root)

    def malformed(tmp):
        root = _bids(tmp)
        (root / "sub-02" / "func" / "sub-02_task-rest_bold.json").write_text('{"RepetitionTime": 2.0,}')
        return find_bids_raw(root)

    def empty(tmp):
        (tmp / "bids").mkdir()
        return find_bids_raw(tmp / "bids")

    def no_subjects(tmp):
        (tmp / "bids").mkdir()
        (tmp / "bids" / "README").write_text("nothing")
        return find_bids_raw(tmp / "bids")

    def listed_missing(tmp):
        root = _bids(tmp)
        shutil.rmtree(root / "sub-02")
        return find_bids_raw(root)

    def no_tr(tmp):
        root = _bids(tmp)
        _json(root / "task-rest_bold.json", TaskName="rest")
        _nifti(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz", tr=None)
        img = nib.load(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
        img.header.set_zooms((3.0, 3.0, 3.0, 0.0))
        nib.save(img, root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
        return find_bids_raw(root)

    def bad_tr_value(tmp):
        root = _bids(tmp)
        _json(root / "task-rest_bold.json", RepetitionTime="2s")
        return find_bids_raw(root)

    def two_t1(tmp):
        root = _bids(tmp)
        _nifti(root / "sub-01" / "anat" / "sub-01_run-2_T1w.nii.gz", shape=(8, 9, 10))
        return find_bids_raw(root)

    return {
        "no_t1": BadInput(no_t1, InputFileError, ("sub-02", "no T1-weighted image", "anat")),
        "no_bold": BadInput(no_bold, InputFileError, ("sub-01", "no BOLD run of task 'rest'", "func")),
        "wrong_task": BadInput(wrong_task, InputFileError, ("sub-01", "task 'motor'")),
        "bold_3d": BadInput(
            bold_3d, DimensionError, ("sub-01", r"sub-01_task-rest_bold\.nii\.gz", r"\(5, 6, 7\)", "4-D")
        ),
        "tr_mismatch": BadInput(
            tr_mismatch, DataValidationError, ("sub-02", "RepetitionTime 2.5 s", r"sub-02_task-rest_bold\.json", "2 s")
        ),
        "tr_tolerance": BadInput(tr_just_within, DataValidationError, ("sub-02", "2 values but the image has 7")),
        "slice_count": BadInput(slice_count, DataValidationError, ("sub-01", "4 values but the image has 7 slices")),
        "slice_range": BadInput(slice_range, DataValidationError, ("sub-01", r"outside \[0, TR = 2\)", "ms")),
        "slice_equal_tr": BadInput(slice_equal_tr, DataValidationError, ("sub-01", r"0\.\.2 s outside")),
        "two_runs": BadInput(
            two_runs, InputFileError, ("sub-01", "2 files", "run-1_bold", "run-2_bold", r"run=\.\.\.")
        ),
        "malformed": BadInput(
            malformed, InputFileError, ("sub-02", r"sub-02_task-rest_bold\.json", "malformed JSON", "line 1")
        ),
        "empty": BadInput(empty, InputFileError, ("bids", "empty")),
        "no_subjects": BadInput(no_subjects, InputFileError, ("bids", "no sub-\\* folder")),
        "listed_missing": BadInput(listed_missing, InputFileError, ("participants.tsv", "sub-02", "without a folder")),
        "no_tr": BadInput(no_tr, MissingMetadataError, ("sub-01", "no repetition time", "RepetitionTime")),
        "bad_tr_value": BadInput(bad_tr_value, DataValidationError, ("sub-01", "'2s'", "positive number of seconds")),
        "two_t1": BadInput(two_t1, InputFileError, ("sub-01", "2 files", "T1-weighted")),
    }


BAD_BIDS = _bad_bids_cases()


@pytest.mark.parametrize("name", sorted(BAD_BIDS))
def test_bad_bids_inputs(name, tmp_path):
    check_bad_input(BAD_BIDS[name], tmp_path)


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------


def _write_series(folder: Path, *, series_number=1, n_slices=4, n_volumes=3, skip=()):
    """A small synthetic 2-D MR DICOM series (8 x 8 pixels, ``n_slices`` x ``n_volumes`` files)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    instance = 0
    for t in range(n_volumes):
        for s in range(n_slices):
            instance += 1
            if instance in skip:
                continue
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.Manufacturer, ds.PatientName, ds.PatientID = "MR", "GE", "Test", "01"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.SeriesNumber, ds.SeriesDescription, ds.ProtocolName = series_number, "rest", "rest"
            ds.InstanceNumber, ds.AcquisitionNumber = instance, t + 1
            ds.AcquisitionTime = f"{120000 + 2 * t:06d}.000000"
            ds.ImagePositionPatient = [-12.0, -12.0, 3.0 * s]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.SliceThickness = [3.0, 3.0], 3.0
            ds.RepetitionTime, ds.EchoTime = 2000.0, 30.0
            ds.Rows = ds.Columns = 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) + 100 * s + 7 * t
            ds.PixelData = pixels.tobytes()
            ds.save_as(folder / f"s{series_number}_{instance:04d}.dcm", enforce_file_format=True)
    assert pydicom


class TestDicomToNifti:
    def test_siemens_mosaic(self, tmp_path):
        src = tmp_path / "dicom"
        src.mkdir()
        for name in ("0.dcm", "1.dcm"):
            shutil.copy(NIBABEL_DATA / name, src / name)
        files = dicom_to_nifti(src, tmp_path / "out")
        image, sidecar = files[:2]
        assert image.name.endswith(".nii.gz") and sidecar.suffix == ".json"
        img = nib.load(image)
        assert img.shape == (36, 36, 48, 2)
        meta = json.loads(sidecar.read_text())
        assert meta["RepetitionTime"] == pytest.approx(6.6)
        times = slice_timing_from(meta, img.shape[2], meta["RepetitionTime"])
        assert times.shape == (48,)
        # independent reference: the mosaic's pixels read with pydicom hold every voxel of volume 0
        import pydicom

        mosaic = pydicom.dcmread(NIBABEL_DATA / "0.dcm").pixel_array
        values, counts = np.unique(np.asarray(img.dataobj)[..., 0], return_counts=True)
        ref_values, ref_counts = np.unique(mosaic, return_counts=True)
        assert np.isin(values, ref_values).all()
        assert (counts <= ref_counts[np.searchsorted(ref_values, values)]).all()

    def test_synthetic_series(self, tmp_path):
        _write_series(tmp_path / "ok")
        image, sidecar = dicom_to_nifti(tmp_path / "ok", tmp_path / "out")[:2]
        img = nib.load(image)
        assert img.shape == (8, 8, 4, 3)
        assert json.loads(sidecar.read_text())["RepetitionTime"] == 2.0
        data = np.asarray(img.dataobj)
        # every slice s of volume t holds 0..63 + 100 s + 7 t (in some in-plane orientation)
        for t in range(3):
            for s in range(4):
                assert sorted(data[:, :, s, t].ravel()) == list(range(100 * s + 7 * t, 100 * s + 7 * t + 64))

    def test_never_overwrites_and_leaves_nothing_when_refused(self, tmp_path):
        from brainarr.testing import snapshot

        _write_series(tmp_path / "ok")
        out = tmp_path / "out"
        first = dicom_to_nifti(tmp_path / "ok", out)
        first[0].write_bytes(b"the user's edited image")
        before = snapshot(out)
        with pytest.raises(InputFileError, match="already exist"):
            dicom_to_nifti(tmp_path / "ok", out)
        assert snapshot(out) == before  # nothing replaced, no temporary folder left
        _write_series(tmp_path / "gap", skip=(6,))
        with pytest.raises(InputFileError, match="incomplete"):
            dicom_to_nifti(tmp_path / "gap", out)
        assert snapshot(out) == before


def _bad_dicom_cases() -> dict[str, BadInput]:
    def not_dicom(tmp):
        (tmp / "notes").mkdir()
        (tmp / "notes" / "a.txt").write_text("not an image")
        return dicom_to_nifti(tmp / "notes", tmp / "out")

    def missing_slice(tmp):
        _write_series(tmp / "series", skip=(6,))
        return dicom_to_nifti(tmp / "series", tmp / "out")

    def two_series(tmp):
        _write_series(tmp / "series", series_number=1)
        _write_series(tmp / "series", series_number=2)
        return dicom_to_nifti(tmp / "series", tmp / "out")

    def empty(tmp):
        (tmp / "series").mkdir()
        return dicom_to_nifti(tmp / "series", tmp / "out")

    return {
        "not_dicom": BadInput(not_dicom, InputFileError, ("notes", "no DICOM")),
        "missing_slice": BadInput(missing_slice, InputFileError, ("series", "incomplete", "[Mm]issing images")),
        "two_series": BadInput(two_series, InputFileError, ("series", "2 DICOM series", "own folder")),
        "empty": BadInput(empty, InputFileError, ("series", "empty")),
    }


BAD_DICOM = _bad_dicom_cases()


@pytest.mark.parametrize("name", sorted(BAD_DICOM))
def test_bad_dicom_inputs(name, tmp_path):
    check_bad_input(BAD_DICOM[name], tmp_path)


# ----------------------------------------------------------------------------------------------
# DPABI raw
# ----------------------------------------------------------------------------------------------


class TestFindDpabiRaw:
    def test_nifti_and_dicom(self, tmp_path):
        root = tmp_path / "work"
        _nifti(root / "FunRaw" / "s01" / "rest.nii", tr=2.0)
        _nifti(root / "T1Raw" / "s01" / "t1.nii", shape=(8, 9, 10))
        _write_series(root / "FunRaw" / "s02")
        _nifti(root / "T1Raw" / "s02" / "t1.nii.gz", shape=(8, 9, 10))
        table = find_dpabi_raw(root)
        assert list(table.index) == ["s01", "s02"]
        assert table.loc["s01", "tr"] == 2.0 and table.loc["s01", "slice_times"] is None
        converted = table.loc["s02", "bold"]
        assert converted.parent == root / "FunImg" / "s02"
        assert nib.load(converted).shape == (8, 8, 4, 3)
        assert table.loc["s02", "tr"] == 2.0
        assert table.loc["s02", "json"] == (converted.with_name(converted.name.replace(".nii.gz", ".json")),)
        # a second call reuses the conversion
        mtime = converted.stat().st_mtime_ns
        assert find_dpabi_raw(root).loc["s02", "bold"].stat().st_mtime_ns == mtime


def _bad_dpabi_cases() -> dict[str, BadInput]:
    def setup(tmp):
        _nifti(tmp / "FunRaw" / "s01" / "rest.nii")
        _nifti(tmp / "T1Raw" / "s01" / "t1.nii", shape=(8, 9, 10))

    def no_t1(tmp):
        _nifti(tmp / "FunRaw" / "s02" / "rest.nii")
        return find_dpabi_raw(tmp)

    def no_bold(tmp):
        _nifti(tmp / "T1Raw" / "s03" / "t1.nii", shape=(8, 9, 10))
        return find_dpabi_raw(tmp)

    def two_images(tmp):
        _nifti(tmp / "FunRaw" / "s01" / "rest2.nii")
        return find_dpabi_raw(tmp)

    def no_funraw(tmp):
        shutil.rmtree(tmp / "FunRaw")
        return find_dpabi_raw(tmp)

    def empty_subject(tmp):
        (tmp / "FunRaw" / "s01" / "rest.nii").unlink()
        (tmp / "FunRaw" / "s01" / "notes.txt").write_text("x")
        return find_dpabi_raw(tmp)

    def junk(tmp):
        (tmp / "FunRaw" / "s01" / "rest.nii").unlink()
        (tmp / "FunRaw" / "s01" / "scan.raw").write_bytes(b"\0" * 300)
        return find_dpabi_raw(tmp)

    return {
        "no_t1": BadInput(no_t1, InputFileError, ("s02", "no T1", "T1Raw"), setup=setup),
        "no_bold": BadInput(no_bold, InputFileError, ("s03", "no BOLD folder"), setup=setup),
        "two_images": BadInput(two_images, InputFileError, ("s01", "2 images", "rest2.nii"), setup=setup),
        "no_funraw": BadInput(no_funraw, InputFileError, ("no FunRaw",), setup=setup),
        "empty_subject": BadInput(empty_subject, InputFileError, ("s01", "no functional image"), setup=setup),
        "junk": BadInput(junk, InputFileError, ("s01", "neither NIfTI", "scan.raw"), setup=setup),
    }


BAD_DPABI = _bad_dpabi_cases()


@pytest.mark.parametrize("name", sorted(BAD_DPABI))
def test_bad_dpabi_inputs(name, tmp_path):
    check_bad_input(BAD_DPABI[name], tmp_path)


def test_dpabi_analyze_pair(tmp_path):
    root = tmp_path / "work"
    (root / "FunRaw" / "s01").mkdir(parents=True)
    data = np.random.default_rng(0).normal(100, 5, (*SHAPE, 6)).astype(np.float32)
    img = nib.AnalyzeImage(data, np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_zooms((3.0, 3.0, 3.0, 2.5))
    nib.save(img, root / "FunRaw" / "s01" / "rest.img")
    _nifti(root / "T1Raw" / "s01" / "t1.nii", shape=(8, 9, 10))
    row = find_dpabi_raw(root).loc["s01"]
    assert row["bold"].name == "rest.img"
    assert row["tr"] == 2.5
