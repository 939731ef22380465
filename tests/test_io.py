"""NIfTI reading/writing, discovery of fMRIPrep and DPABI inputs, confound tables."""

from __future__ import annotations

import gzip
import shutil
import tracemalloc
from pathlib import Path

import dask
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import brainarr as ba
from brainarr import io as bio
from brainarr.exceptions import DimensionError, MissingMetadataError, ObliqueAffineWarning
from brainarr.testing import make_affine, make_bold, raise_if_dask_computes

#: A 16 x 16 x 8 voxel crop of a real run, kept in the repository (see its PROVENANCE.md).
REAL_CROP = Path(__file__).resolve().parent / "data" / "rapidtide"
#: The uncropped original: beside a development checkout only, outside the repository.
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "rapidtide-rest"
#: Voxel start of the crop in the original 64 x 64 x 29 grid (scripts/crop_real_test_data.py).
CROP_START = (23, 20, 9)
#: The original run's sform (float32 in its header): rows x, y, z.
REAL_SFORM = [
    [3.4889767169952393, 0.19811972975730896, 0.22161617875099182, -117.40269470214844],
    [-0.19600909948349, 3.4942398071289062, -0.04929844290018082, -83.7258529663086],
    [-0.19652806222438812, 0.03222113102674484, 3.9835362434387207, -16.794361114501953],
]


def _shifted(affine, start):
    """``affine`` composed with a shift of the voxel indices by ``start``."""
    shift = np.eye(4)
    shift[:3, 3] = start
    return np.asarray(affine, dtype=np.float64) @ shift


def _write(path, data, affine=None, tr=2.0, time_unit="sec", dtype=None):
    affine = make_affine(3.0) if affine is None else affine
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype or np.asarray(data).dtype), affine)
    if np.ndim(data) == 4:
        img.header.set_zooms((*img.header.get_zooms()[:3], tr))
        img.header.set_xyzt_units("mm", time_unit)
    nib.save(img, path)
    return path


class TestLoadNifti:
    def test_dims_coords_attrs(self, tmp_path, rng):
        data = rng.standard_normal((7, 8, 9, 40)).astype(np.float32)
        path = _write(tmp_path / "b.nii", data)
        bold = bio.load_nifti(path)
        assert bold.dims == ("x", "y", "z", "time")
        assert bold.name == "bold"
        assert bold.attrs["tr"] == 2.0
        assert np.allclose(bold.attrs["affine"], make_affine(3.0))
        assert bold.attrs["source"] == str(path)
        # SPM-style flipped x: 90, 87, ...; y and z ascending from the box corner
        np.testing.assert_allclose(bold.x.values, 90 - 3 * np.arange(7))
        np.testing.assert_allclose(bold.y.values, -126 + 3 * np.arange(8))
        np.testing.assert_allclose(bold.z.values, -72 + 3 * np.arange(9))
        np.testing.assert_allclose(bold.time.values, 2.0 * np.arange(40))
        assert bold.x.attrs["units"] == "mm" and bold.time.attrs["units"] == "s"
        np.testing.assert_array_equal(bold.values, data)

    def test_3d_map(self, tmp_path, rng):
        data = rng.standard_normal((7, 8, 9)).astype(np.float32)
        m = bio.load_nifti(_write(tmp_path / "alff_map.nii.gz", data))
        assert m.dims == ("x", "y", "z") and m.name == "alff_map" and "tr" not in m.attrs
        np.testing.assert_array_equal(m.values, data)

    def test_lazy_reads_nothing_until_computed(self, tmp_path, rng, monkeypatch):
        path = _write(tmp_path / "b.nii", rng.standard_normal((7, 8, 9, 40)).astype(np.float32))
        calls = []
        original = bio._NiftiChunkReader.__getitem__

        def counting(self, key):
            calls.append(key)
            return original(self, key)

        monkeypatch.setattr(bio._NiftiChunkReader, "__getitem__", counting)
        with raise_if_dask_computes():
            bold = bio.load_nifti(path, chunks={"x": 3, "y": 5})
            derived = (bold - bold.mean("time")).std("time")
        assert calls == []
        assert dask.is_dask_collection(derived.data)
        assert bold.chunks == ((3, 3, 1), (5, 3), (9,), (40,))
        derived.compute()
        assert len(calls) == 6  # one read per chunk

    def test_chunk_read_touches_only_its_chunk(self, tmp_path, rng):
        shape = (40, 48, 36, 60)  # 16.6 MB float32
        path = _write(tmp_path / "big.nii", rng.standard_normal(shape).astype(np.float32))
        bold = bio.load_nifti(path, chunks={"x": 10, "y": 12, "z": 9})
        block = bold.data.blocks[1, 2, 3, 0]
        tracemalloc.start()
        values = block.compute(scheduler="sync")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        whole = np.prod(shape) * 4
        assert values.shape == (10, 12, 9, 60)
        assert peak < whole / 8, f"reading one chunk allocated {peak / 1e6:.1f} MB of {whole / 1e6:.1f} MB"

    def test_gzip_chunk_memory_bounded_and_equal(self, tmp_path, rng):
        shape = (40, 48, 36, 60)
        data = rng.standard_normal(shape).astype(np.float32)
        path = _write(tmp_path / "big.nii.gz", data)
        bold = bio.load_nifti(path, chunks={"x": 10, "y": 12, "z": 9})
        tracemalloc.start()
        values = bold.data.blocks[3, 3, 3, 0].compute(scheduler="sync")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        np.testing.assert_array_equal(values, data[30:40, 36:48, 27:36])
        # the stream is decompressed up to the chunk's last byte, but never held whole
        assert peak < np.prod(shape) * 4 / 2

    def test_tr_units_and_override(self, tmp_path, rng):
        data = rng.standard_normal((7, 8, 9, 5)).astype(np.float32)
        ms = bio.load_nifti(_write(tmp_path / "ms.nii", data, tr=2000.0, time_unit="msec"))
        assert ms.attrs["tr"] == pytest.approx(2.0)
        override = bio.load_nifti(_write(tmp_path / "o.nii", data, tr=2.0), tr=1.5)
        assert override.attrs["tr"] == 1.5
        np.testing.assert_allclose(override.time.values, 1.5 * np.arange(5))

    def test_missing_tr_is_an_error(self, tmp_path, rng):
        path = _write(tmp_path / "nort.nii", rng.standard_normal((7, 8, 9, 5)).astype(np.float32), tr=0.0)
        with pytest.raises(MissingMetadataError, match=r"nort\.nii.*repetition time.*tr="):
            bio.load_nifti(path)
        assert bio.load_nifti(path, tr=2.0).attrs["tr"] == 2.0

    def test_oblique_affine_real_data(self):
        """A real scanner run (int16, oblique): the in-repository crop of tests/data/rapidtide."""
        path = REAL_CROP / "sub-RAPIDTIDETEST_crop.nii.gz"
        img = nib.load(path)
        with pytest.warns(ObliqueAffineWarning, match="oblique"):
            bold = bio.load_nifti(path)
        assert bold.shape == (16, 16, 8, 260)
        assert bold.attrs["tr"] == pytest.approx(1.5)
        # the crop's affine is the original's shifted by the crop offset: same world coordinates
        expected = _shifted(np.vstack([REAL_SFORM, [0, 0, 0, 1]]), CROP_START)
        np.testing.assert_allclose(img.affine, expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(bold.attrs["affine"], img.affine)
        np.testing.assert_array_equal(bold.x.values, np.arange(16))
        ts = bold.isel(x=8, y=9, z=4).values
        np.testing.assert_array_equal(ts, np.asarray(img.dataobj[8, 9, 4, :], np.float32))
        assert img.get_data_dtype() == np.int16 and ts.std() > 0
        with pytest.warns(ObliqueAffineWarning, match="oblique"):
            mask = bio.load_nifti(REAL_CROP / "sub-RAPIDTIDETEST_crop_brainmask.nii.gz")
        assert mask.shape == (16, 16, 8) and np.all(mask.values == 1)

    @pytest.mark.skipif(
        not (REAL / "sub-RAPIDTIDETEST.nii.gz").exists(),
        reason="the uncropped original (../shared/data/real/rapidtide-rest, outside the repository) is not here",
    )
    def test_real_crop_matches_original(self):
        """The in-repository crop is the box of the original run and mask, header and world coordinates kept."""
        box = tuple(slice(a, a + n) for a, n in zip(CROP_START, (16, 16, 8), strict=True))
        for name in ("sub-RAPIDTIDETEST", "sub-RAPIDTIDETEST_brainmask"):
            orig = nib.load(REAL / f"{name}.nii.gz")
            crop = nib.load(REAL_CROP / f"{name.replace('RAPIDTIDETEST', 'RAPIDTIDETEST_crop')}.nii.gz")
            np.testing.assert_array_equal(np.asanyarray(crop.dataobj), np.asanyarray(orig.dataobj)[box])
            assert crop.get_data_dtype() == orig.get_data_dtype()
            assert crop.header.get_zooms() == orig.header.get_zooms()
            assert crop.header.get_xyzt_units() == orig.header.get_xyzt_units()
            for form in ("qform", "sform"):
                affine, code = getattr(orig, f"get_{form}")(coded=True)
                crop_affine, crop_code = getattr(crop, f"get_{form}")(coded=True)
                assert crop_code == code == 1
                np.testing.assert_allclose(crop_affine, _shifted(affine, CROP_START), rtol=0, atol=1e-5)
        np.testing.assert_allclose(nib.load(REAL / "sub-RAPIDTIDETEST.nii.gz").affine[:3], REAL_SFORM, rtol=0, atol=0)
        with pytest.warns(ObliqueAffineWarning):
            full = bio.load_nifti(REAL / "sub-RAPIDTIDETEST.nii.gz")
        with pytest.warns(ObliqueAffineWarning):
            cropped = bio.load_nifti(REAL_CROP / "sub-RAPIDTIDETEST_crop.nii.gz")
        np.testing.assert_array_equal(cropped.values, full.isel(x=box[0], y=box[1], z=box[2]).values)
        assert cropped.attrs["tr"] == full.attrs["tr"]

    def test_sel_nearest_mni(self, tmp_path, rng):
        grid = ba.datasets.study_grid()
        data = rng.standard_normal((*grid.shape, 3)).astype(np.float32)
        bold = bio.load_nifti(_write(tmp_path / "s.nii", data, affine=np.array(grid.attrs["affine"])))
        point = bold.sel(x=-57, y=-12, z=30, method="nearest")
        assert (float(point.x), float(point.y), float(point.z)) == (-57.0, -12.0, 30.0)
        np.testing.assert_array_equal(point.values, data[49, 38, 34])


class TestToNifti:
    @pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
    def test_round_trip_4d(self, tmp_path, suffix):
        bold = make_bold(shape=(7, 8, 9, 12), tr=0.8)
        path = bio.to_nifti(bold, tmp_path / f"b{suffix}")
        back = bio.load_nifti(path)
        xr.testing.assert_identical(back.drop_attrs(), bold.drop_attrs())
        assert back.attrs["tr"] == pytest.approx(0.8)
        np.testing.assert_array_equal(back.attrs["affine"], bold.attrs["affine"])
        assert nib.load(path).header.get_xyzt_units() == ("mm", "sec")

    def test_round_trip_3d_bool_and_transposed(self, tmp_path, rng):
        mask = make_bold(values=rng.random((7, 8, 9)) > 0.5)
        back = bio.load_nifti(bio.to_nifti(mask.transpose("z", "x", "y"), tmp_path / "m.nii"))
        np.testing.assert_array_equal(back.values.astype(bool), mask.values)

    def test_atomic_write_leaves_no_temporary(self, tmp_path):
        bio.to_nifti(make_bold(shape=(7, 8, 9, 3)), tmp_path / "a.nii.gz")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]

    def test_refuses_extra_dims(self, tmp_path):
        cohort = xr.concat([make_bold(shape=(7, 8, 9, 3))] * 2, "subject")
        with pytest.raises(DimensionError, match="subject"):
            bio.to_nifti(cohort, tmp_path / "c.nii")


class TestBadFiles:
    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"nope\.nii"):
            bio.load_nifti(tmp_path / "nope.nii")

    def test_not_nifti(self, tmp_path):
        path = tmp_path / "fake.nii"
        path.write_text("hello")
        with pytest.raises(OSError, match=r"fake\.nii.*not a readable NIfTI"):
            bio.load_nifti(path)

    def test_truncated_nii(self, tmp_path, rng):
        path = _write(tmp_path / "t.nii", rng.standard_normal((7, 8, 9, 20)).astype(np.float32))
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        with pytest.raises(OSError, match=r"t\.nii is truncated"):
            bio.load_nifti(path)

    def test_truncated_nii_gz(self, tmp_path, rng):
        path = _write(tmp_path / "t.nii.gz", rng.standard_normal((7, 8, 9, 20)).astype(np.float32))
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        with pytest.raises(OSError, match=r"t\.nii\.gz"):
            bio.load_nifti(path).values  # noqa: B018 - the read itself must fail with the name

    def test_wrong_ndim(self, tmp_path, rng):
        path = tmp_path / "five.nii"
        nib.save(nib.Nifti1Image(rng.standard_normal((4, 5, 6, 3, 2)).astype(np.float32), np.eye(4)), path)
        with pytest.raises(DimensionError, match=r"five\.nii has 5 dimensions"):
            bio.load_nifti(path)
        flat = tmp_path / "flat.nii"
        nib.save(nib.Nifti1Image(rng.standard_normal((4, 5)).astype(np.float32), np.eye(4)), flat)
        with pytest.raises(DimensionError, match=r"flat\.nii has 2 dimensions"):
            bio.load_nifti(flat)


class TestConfoundTables:
    def test_fmriprep_tsv(self, tmp_path, rng):
        table = pd.DataFrame(rng.standard_normal((10, 3)), columns=["trans_x", "trans_x_derivative1", "csf"])
        table.loc[0, "trans_x_derivative1"] = np.nan
        path = tmp_path / "sub-01_task-rest_desc-confounds_timeseries.tsv"
        table.to_csv(path, sep="\t", index=False, na_rep="n/a")
        conf = bio.read_confounds(path, columns=["trans_x", "trans_x_derivative1", "csf"])
        assert conf.dims == ("time", "confound")
        assert list(conf.confound.values) == ["trans_x", "trans_x_derivative1", "csf"]
        assert conf.values[0, 1] == 0.0
        np.testing.assert_allclose(conf.values[1:], table.to_numpy()[1:])

    def test_nan_in_tsv_names_column(self, tmp_path):
        path = tmp_path / "c.tsv"
        pd.DataFrame({"a": [1.0, 2.0], "csf": [1.0, np.nan]}).to_csv(path, sep="\t", index=False, na_rep="n/a")
        with pytest.raises(ValueError, match=r"c\.tsv.*'csf'.*missing"):
            bio.read_confounds(path, columns=["a", "csf"])

    def test_spm_rp(self, tmp_path, rng):
        values = rng.standard_normal((12, 6))
        path = tmp_path / "rp_sub01.txt"
        np.savetxt(path, values)
        conf = bio.read_confounds(path)
        assert list(conf.confound.values) == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
        np.testing.assert_allclose(conf.values, values)


def _fmriprep_tree(root: Path, rng, n_subjects=3, n_time=20):
    rows = []
    for i in range(1, n_subjects + 1):
        sub = f"sub-{i:02d}"
        func = root / sub / "func"
        func.mkdir(parents=True)
        data = rng.standard_normal((7, 8, 9, n_time)).astype(np.float32)
        _write(func / f"{sub}_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", data)
        # a native-space run that must be ignored
        _write(func / f"{sub}_task-rest_space-T1w_desc-preproc_bold.nii.gz", data[:, :, :, :2])
        names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "white_matter", "csf", "a_comp_cor_00"]
        conf = pd.DataFrame(rng.standard_normal((n_time, len(names))), columns=names)
        conf.to_csv(func / f"{sub}_task-rest_desc-confounds_timeseries.tsv", sep="\t", index=False)
        rows.append({"participant_id": sub, "age": 30 + i, "sex": "MF"[i % 2], "group": "patient"})
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)


class TestDiscovery:
    def test_find_fmriprep(self, tmp_path, rng):
        _fmriprep_tree(tmp_path, rng)
        table = bio.find_fmriprep(tmp_path)
        assert list(table.index) == ["sub-01", "sub-02", "sub-03"]
        assert all("space-MNI152" in Path(p).name for p in table["bold"])
        assert all(Path(p).name.endswith("confounds_timeseries.tsv") for p in table["confounds"])

    def test_ingest_fmriprep_folder(self, tmp_path, rng):
        _fmriprep_tree(tmp_path / "deriv", rng)
        cohort = bio.ingest(tmp_path / "deriv", tmp_path / "c.zarr")
        assert list(cohort.subject.values) == ["sub-01", "sub-02", "sub-03"]
        assert list(cohort.age.values) == [31, 32, 33]
        expected = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "white_matter", "csf"]
        assert list(cohort.confound.values) == expected  # the default columns
        assert cohort.confounds.shape == (3, 20, 8)

    def test_find_dpabi(self, tmp_path, rng):
        # FunImgARCWF is band-pass filtered and FunImgAR not normalised: the default is FunImgARCW
        for stage in ("FunImgAR", "FunImgARCW", "FunImgARCWF"):
            for sub in ("Sub001", "Sub002"):
                folder = tmp_path / stage / sub
                folder.mkdir(parents=True)
                _write(folder / "Filtered_4DVolume.nii", rng.standard_normal((7, 8, 9, 15)).astype(np.float32))
        for sub in ("Sub001", "Sub002"):
            (tmp_path / "RealignParameter" / sub).mkdir(parents=True)
            np.savetxt(tmp_path / "RealignParameter" / sub / f"rp_{sub}.txt", rng.standard_normal((15, 6)) * 0.1)
        table = bio.find_dpabi(tmp_path)
        assert list(table.index) == ["Sub001", "Sub002"]
        assert all(Path(p).parent.parent.name == "FunImgARCW" for p in table["bold"])
        cohort = bio.ingest(tmp_path, tmp_path / "d.zarr")
        assert cohort.bold.shape == (2, 7, 8, 9, 15)
        assert list(cohort.confound.values)[:3] == ["trans_x", "trans_y", "trans_z"]

    def test_dpabi_several_images_in_a_subject_folder(self, tmp_path, rng):
        folder = tmp_path / "FunImgARCW" / "Sub001"
        folder.mkdir(parents=True)
        for name in ("a.nii", "b.nii"):
            _write(folder / name, rng.standard_normal((7, 8, 9, 4)).astype(np.float32))
        with pytest.raises(ValueError, match=r"Sub001 holds 2 NIfTI files"):
            bio.find_dpabi(tmp_path)

    def test_gzip_is_what_it_says(self, tmp_path, rng):
        path = _write(tmp_path / "x.nii.gz", rng.standard_normal((7, 8, 9, 4)).astype(np.float32))
        with gzip.open(path) as fh:
            assert fh.read(4)  # the file really is gzip-compressed
        shutil.copy(path, tmp_path / "y.nii.gz")
        np.testing.assert_array_equal(bio.load_nifti(tmp_path / "y.nii.gz").values, bio.load_nifti(path).values)
