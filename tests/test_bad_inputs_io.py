"""Catalogue of hostile inputs to :mod:`brainarr.io`: masks, phenotype tables, TR, corrupt files.

Each row: the input, the call, the exception expected and what its message must name (the
file, subject or column, the problem and what to do). Calls that write a store must leave it
byte for byte as it was or, when the call would have created it, absent: every check runs
before the first subject is appended. Positive controls at the end show that the valid
neighbours of these inputs ingest with the right stored values.
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from brainarr import io as bio
from brainarr.exceptions import (
    DataValidationError,
    DimensionError,
    GridMismatchError,
    InputFileError,
    MissingMetadataError,
)
from brainarr.testing import BadInput, check_bad_input, make_affine

SHAPE = (7, 8, 9, 24)


# ----------------------------------------------------------------------------- builders


def _data(shape=SHAPE, seed=0) -> np.ndarray:
    return (100 + np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _nifti(path: Path, data=None, *, affine=None, tr=2.0, unit="sec", seed=0) -> str:
    data = _data(seed=seed) if data is None else np.asarray(data)
    img = nib.Nifti1Image(data, make_affine(3.0) if affine is None else affine)
    if data.ndim == 4:
        img.header.set_zooms((3.0, 3.0, 3.0, tr))
        img.header.set_xyzt_units("mm", unit)
    else:
        img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return str(path)


def _gz_bad_crc(tmp: Path, name: str = "sub-03_bold.nii.gz") -> str:
    """A .nii.gz of the right length whose data were damaged (one voxel 3.4e38) after compression's CRC."""
    raw = Path(_nifti(tmp / "clean.nii")).read_bytes()
    damaged = bytearray(raw)
    middle = 352 + (len(raw) - 352) // 2 // 4 * 4
    damaged[middle : middle + 4] = b"\xff\xff\x7f\x7f"  # the largest float32: finite, absurd
    gz = bytearray(gzip.compress(bytes(damaged)))
    gz[-8:-4] = struct.pack("<I", zlib.crc32(raw))  # the original checksum: only the CRC tells
    out = tmp / name
    out.write_bytes(bytes(gz))
    return str(out)


def _gz_trailing_junk(tmp: Path) -> str:
    raw = Path(_nifti(tmp / "clean.nii")).read_bytes()
    out = tmp / "sub-03_bold.nii.gz"
    out.write_bytes(gzip.compress(raw) + b"JUNK" * 8)
    return str(out)


def _nan_sform(path: str) -> str:
    raw = bytearray(Path(path).read_bytes())
    raw[280:284] = struct.pack("<f", np.nan)  # srow_x[0]; sform_code stays 2 (aligned)
    Path(path).write_bytes(bytes(raw))
    return path


def _write(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def _subject_bold(tmp: Path) -> xr.DataArray:
    return bio.load_nifti(_nifti(tmp / "sub-01_bold.nii"))


def _mask_like(bold: xr.DataArray, values, *, affine=True) -> xr.DataArray:
    mask = xr.DataArray(
        np.asarray(values), dims=("x", "y", "z"), coords={d: bold[d].values for d in ("x", "y", "z")}, name="brain"
    )
    if affine:
        mask.attrs["affine"] = bold.attrs["affine"]
    return mask


def _ingest_with_mask(tmp: Path, values=None, mask=None):
    bold = _subject_bold(tmp)
    if mask is None:
        mask = _mask_like(bold, values)
    return bio.ingest({"sub-01": bold.attrs["source"]}, tmp / "new.zarr", mask=mask)


def _mask_file(tmp: Path, values, *, affine=None, name="gm_prob.nii") -> xr.DataArray:
    return bio.load_nifti(_nifti(tmp / name, np.asarray(values), affine=affine))


def _participants(rows: list[dict], sep="\t") -> str:
    return pd.DataFrame(rows).to_csv(sep=sep, index=False)


def _pheno(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame(columns, index=[f"sub-{i + 1:02d}" for i in range(n)])


def _store_with_pheno(tmp: Path, *, mask: bool = False) -> Path:
    """A one-subject store, sub-01, with phenotypes {group: text, age: number} (and a mask)."""
    store = tmp / "study.zarr"
    bold = _subject_bold(tmp)
    kwargs = {"mask": _mask_like(bold, np.ones(SHAPE[:3], bool))} if mask else {}
    bio.ingest(
        {"sub-01": bold.attrs["source"]},
        store,
        phenotypes=pd.DataFrame({"group": ["patient"], "age": [61.0]}, index=["sub-01"]),
        **kwargs,
    )
    return store


def _append(tmp: Path, phenotypes=None, *, name="sub-02_bold.nii", data=None, **kwargs):
    path = tmp / name if name.endswith(".nii") else Path(name)
    return bio.ingest(
        {"sub-02": str(path) if path.exists() else _nifti(path, data, seed=2)},
        tmp / "study.zarr",
        phenotypes=phenotypes,
        **kwargs,
    )


def _dpabi(tmp: Path, stages: tuple[str, ...]) -> Path:
    for stage in stages:
        folder = tmp / "work" / stage / "Sub001"
        folder.mkdir(parents=True)
        _nifti(folder / "4DVolume.nii")
    return tmp / "work"


def _ages_63(bad: str) -> str:
    rows = [{"participant_id": f"sub-{i:02d}", "group": "pc"[i % 2], "age": 20 + i} for i in range(1, 64)]
    rows[16]["age"] = bad  # sub-17
    return _participants(rows)


def _new(t: Path) -> Path:
    return t / "new.zarr"


def _study(t: Path) -> Path:
    return t / "study.zarr"


GOOD_TSV = "trans_x\tcsf\n0.1\t5.0\n0.2\t5.1\n"

# ----------------------------------------------------------------------------- the table

CASES: dict[str, BadInput] = {
    # --- 1. masks given at ingest
    "mask-probability-map": BadInput(
        lambda t: _ingest_with_mask(
            t, mask=_mask_file(t, np.random.default_rng(0).uniform(0.01, 0.99, SHAPE[:3]).astype(np.float32))
        ),
        DataValidationError,
        (r"gm_prob\.nii", "between 0 and 1", "looks like a probability map", r"threshold it, e\.g\. mask > 0\.5"),
        store=_new,
    ),
    "mask-half-voxel-off-affine": BadInput(
        lambda t: _ingest_with_mask(
            t, mask=_mask_file(t, np.ones(SHAPE[:3], np.uint8), affine=make_affine(3.0, origin=(-90, -124.5, -72)))
        ),
        GridMismatchError,
        (r"gm_prob\.nii", "affine differs", "sub-01", r"1\.5 mm", "resample"),
        store=_new,
    ),
    "mask-half-voxel-off-coords": BadInput(
        lambda t: _ingest_with_mask(
            t,
            mask=_mask_like(_subject_bold(t), np.ones(SHAPE[:3], bool), affine=False).pipe(
                lambda m: m.assign_coords(y=m.y + 1.5)
            ),
        ),
        GridMismatchError,
        ("brain", "y coordinates differ", r"1\.5 mm", "resample"),
        store=_new,
    ),
    "mask-with-nan": BadInput(
        lambda t: _ingest_with_mask(t, np.where(np.arange(np.prod(SHAPE[:3])).reshape(SHAPE[:3]) == 5, np.nan, 1.0)),
        DataValidationError,
        ("brain", "1 NaN/Inf voxels", "only 0 and 1", "fillna"),
        store=_new,
    ),
    "mask-empty": BadInput(
        lambda t: _ingest_with_mask(t, np.zeros(SHAPE[:3], np.uint8)),
        DataValidationError,
        ("brain", "empty", "no voxel set"),
        store=_new,
    ),
    "mask-atlas-labels": BadInput(
        lambda t: _ingest_with_mask(t, np.arange(np.prod(SHAPE[:3])).reshape(SHAPE[:3]) % 4),
        DataValidationError,
        ("brain", "other than 0 and 1", "e.g. 2, 3", r"mask > 0"),
        store=_new,
    ),
    "mask-other-shape": BadInput(
        lambda t: _ingest_with_mask(t, mask=_mask_file(t, np.ones((7, 8, 10), np.uint8))),
        GridMismatchError,
        (r"grid \(7, 8, 10\)", r"\(7, 8, 9\)", "sub-01", "resample"),
        store=_new,
    ),
    "mask-4d": BadInput(
        lambda t: _ingest_with_mask(t, mask=_subject_bold(t) > 0),
        DimensionError,
        ("mask", "dims", r"expected \(x, y, z\)"),
        store=_new,
    ),
    "mask-without-grid": BadInput(
        lambda t: _ingest_with_mask(t, mask=xr.DataArray(np.ones(SHAPE[:3], bool), dims=("x", "y", "z"), name="m")),
        MissingMetadataError,
        (r"no attrs\['affine'\]", "no x/y/z coordinates", "load_nifti"),
        store=_new,
    ),
    "mask-on-append-to-store-without-mask": BadInput(
        lambda t: _append(
            t,
            _pheno(group=["patient", "control"], age=[61.0, 45.0]),
            mask=_mask_like(_subject_bold(t), np.ones(SHAPE[:3], bool)),
        ),
        MissingMetadataError,
        (r"study\.zarr", "has no 'mask'", "first subject only", "new store"),
        store=_study,
        setup=_store_with_pheno,
    ),
    "mask-on-append-differs": BadInput(
        lambda t: _append(
            t,
            _pheno(group=["patient", "control"], age=[61.0, 45.0]),
            mask=_mask_like(_subject_bold(t), np.arange(np.prod(SHAPE[:3])).reshape(SHAPE[:3]) % 2 == 0),
        ),
        DataValidationError,
        (r"study\.zarr", "'mask' given differs", "drop mask="),
        store=_study,
        setup=lambda t: _store_with_pheno(t, mask=True),
    ),
    # --- 2. phenotype tables
    "pheno-age-typo-4o": BadInput(
        lambda t: bio.ingest(
            {"sub-01": _nifti(t / "sub-01_bold.nii")}, _new(t), phenotypes=_write(t, "participants.tsv", _ages_63("4o"))
        ),
        DataValidationError,
        (r"participants\.tsv", "column 'age'", "62 of 63", "sub-17", "'4o'", "fix the value or leave it empty / n/a"),
        store=_new,
    ),
    "pheno-age-unknown": BadInput(
        lambda t: bio.read_phenotypes(_write(t, "participants.tsv", _ages_63("unknown"))),
        DataValidationError,
        (r"participants\.tsv", "'age'", "sub-17", "'unknown'", "n/a for missing"),
    ),
    "pheno-age-text-in-dataframe": BadInput(
        lambda t: bio.ingest(
            {"sub-01": _nifti(t / "sub-01_bold.nii")},
            _new(t),
            phenotypes=_pheno(age=[61.0, "unknown", 45.0, 50.0]),
        ),
        DataValidationError,
        ("phenotype DataFrame", "'age'", "sub-02", "'unknown'", "n/a for missing"),
        store=_new,
    ),
    "pheno-column-named-subject": BadInput(
        lambda t: bio.ingest(
            {"sub-01": _nifti(t / "sub-01_bold.nii")},
            _new(t),
            phenotypes=_write(t, "participants.tsv", "participant_id\tsubject\tage\nsub-01\tP1\t30\n"),
        ),
        DataValidationError,
        (r"participants\.tsv", "column 'subject'", "reserved", "rename the column"),
        store=_new,
    ),
    "pheno-column-named-mean-fd": BadInput(
        lambda t: bio.read_phenotypes(_pheno(group=["a"], mean_fd=[0.1])),
        DataValidationError,
        ("column 'mean_fd'", "reserved", "QC", "mean_fd_label"),
    ),
    "pheno-column-named-bold": BadInput(
        lambda t: bio.read_phenotypes(_pheno(bold=["a"])),
        DataValidationError,
        ("column 'bold'", "reserved"),
    ),
    "pheno-duplicate-columns": BadInput(
        lambda t: bio.read_phenotypes(_write(t, "participants.tsv", "participant_id\tage\tage \nsub-01\t30\t31\n")),
        DataValidationError,
        (r"participants\.tsv", r"\['age'\]", "more than once", "distinct name"),
    ),
    "pheno-duplicate-dataframe-columns": BadInput(
        lambda t: bio.read_phenotypes(pd.DataFrame([[1, 2]], columns=["age", "age"], index=["sub-01"])),
        DataValidationError,
        (r"\['age'\]", "more than once"),
    ),
    "pheno-duplicate-ids-after-strip": BadInput(
        lambda t: bio.read_phenotypes(pd.DataFrame({"age": [30, 31]}, index=["sub-01", "sub-01 "])),
        DataValidationError,
        ("sub-01", "more than once", "one row per subject"),
    ),
    "pheno-ragged-row": BadInput(
        lambda t: bio.read_phenotypes(
            _write(t, "participants.tsv", "participant_id\tgroup\tage\nsub-01\tpatient\t30\nsub-02\t31\n")
        ),
        InputFileError,
        (r"participants\.tsv", "line 3 has 2 fields", "header .* has 3", "ragged row"),
    ),
    "pheno-wrong-delimiter": BadInput(
        lambda t: bio.ingest(
            {"sub-01": _nifti(t / "sub-01_bold.nii")},
            _new(t),
            phenotypes=_write(t, "participants.tsv", "participant_id,group,age\nsub-01,patient,30\n"),
        ),
        InputFileError,
        (r"participants\.tsv", "does not look tab-separated", r"2 comma\(s\)", r"\.csv name"),
        store=_new,
    ),
    "pheno-semicolon-csv": BadInput(
        lambda t: bio.read_phenotypes(_write(t, "participants.csv", "participant_id;group\nsub-01;patient\n")),
        InputFileError,
        (r"participants\.csv", "comma-separated", "semicolon"),
    ),
    "pheno-binary-junk": BadInput(
        lambda t: bio.read_phenotypes(_write(t, "participants.tsv", bytes(range(256)) * 4)),
        InputFileError,
        (r"participants\.tsv", "binary data", "right file"),
    ),
    "pheno-not-utf8": BadInput(
        lambda t: bio.read_phenotypes(
            _write(t, "participants.csv", "participant_id,name\nsub-01,M\u00fcller\n".encode("latin-1"))
        ),
        InputFileError,
        (r"participants\.csv", "not UTF-8", "save the phenotype table as UTF-8"),
    ),
    "pheno-empty-file": BadInput(
        lambda t: bio.read_phenotypes(_write(t, "participants.tsv", "")),
        InputFileError,
        (r"participants\.tsv", "is empty", "header row"),
    ),
    "pheno-header-only": BadInput(
        lambda t: bio.read_phenotypes(_write(t, "participants.tsv", "participant_id\tage\n")),
        InputFileError,
        (r"participants\.tsv", "no subject rows"),
    ),
    "pheno-missing-id": BadInput(
        lambda t: bio.read_phenotypes(_write(t, "participants.tsv", "participant_id\tage\nsub-01\t3\nn/a\t4\n")),
        DataValidationError,
        (r"participants\.tsv", r"row\(s\) \[2\]", "no subject id"),
    ),
    "pheno-infinite-age": BadInput(
        lambda t: bio.read_phenotypes(_pheno(age=[30.0, np.inf])),
        DataValidationError,
        ("'age'", "infinite", "sub-02"),
    ),
    "pheno-column-name-with-slash": BadInput(
        lambda t: bio.read_phenotypes(_pheno(**{"age/years": [30.0]})),
        DataValidationError,
        ("'age/years'", "Zarr", "rename"),
    ),
    # --- 3. phenotype schema on append (the store has {group: text, age: number})
    "append-new-phenotype-column": BadInput(
        lambda t: _append(t, _pheno(group=["patient", "control"], age=[61.0, 45.0], site=["A", "B"])),
        MissingMetadataError,
        (r"study\.zarr", "sub-02", r"new column\(s\) \['site'\] not in the store", "new store", "nothing was written"),
        store=_study,
        setup=_store_with_pheno,
    ),
    "append-missing-phenotype-column": BadInput(
        lambda t: _append(t, _pheno(group=["patient", "control"])),
        MissingMetadataError,
        (r"study\.zarr", "sub-02", r"missing column\(s\) \['age'\]", "exactly these columns"),
        store=_study,
        setup=_store_with_pheno,
    ),
    "append-column-number-to-text": BadInput(
        lambda t: _append(t, _pheno(group=["patient", "control"], age=["old", "young"])),
        MissingMetadataError,
        (r"study\.zarr", "sub-02", "column 'age' is text here but number in the store"),
        store=_study,
        setup=_store_with_pheno,
    ),
    "append-without-phenotypes": BadInput(
        lambda t: _append(t, None),
        MissingMetadataError,
        (r"study\.zarr", "sub-02", r"missing column\(s\) \['age', 'group'\]"),
        store=_study,
        setup=_store_with_pheno,
    ),
    # --- 4. TR precedence at ingest
    "tr-conflicts-with-header": BadInput(
        lambda t: bio.ingest({"sub-04": _nifti(t / "sub-04_bold.nii", tr=2.0)}, _new(t), tr=2.5),
        MissingMetadataError,
        ("sub-04", r"sub-04_bold\.nii", "header's repetition time is 2 s", r"tr=2\.5", "Drop tr=", "set_zooms"),
        store=_new,
    ),
    "tr-conflicts-with-msec-header": BadInput(
        lambda t: bio.ingest([_nifti(t / "sub-04_bold.nii", tr=2000.0, unit="msec")], _new(t), tr=3),
        MissingMetadataError,
        ("sub-04", "is 2 s", "tr=3 was given"),
        store=_new,
    ),
    "tr-in-ms-labelled-as-s": BadInput(
        lambda t: bio.ingest([_nifti(t / "sub-04_bold.nii", tr=2000.0, unit="sec")], _new(t)),
        MissingMetadataError,
        ("sub-04", r"sub-04_bold\.nii", "repetition time is 2000 s", "in ms but labelled as s", "set_xyzt_units"),
        store=_new,
    ),
    "tr-given-negative": BadInput(
        lambda t: bio.ingest([_nifti(t / "sub-04_bold.nii", tr=0.0)], _new(t), tr=-2),
        MissingMetadataError,
        ("sub-04", r"tr=-2", "positive"),
        store=_new,
    ),
    # --- 5. corrupt .nii.gz (length intact)
    "nii-gz-crc-mismatch": BadInput(
        lambda t: bio.ingest([_gz_bad_crc(t)], _new(t)),
        InputFileError,
        ("sub-03", r"sub-03_bold\.nii\.gz", "corrupt: CRC check failed", "copy or download it again"),
        store=_new,
    ),
    "nii-gz-crc-mismatch-second-subject": BadInput(
        lambda t: bio.ingest({"sub-01": _nifti(t / "sub-01_bold.nii"), "sub-03": _gz_bad_crc(t)}, _new(t)),
        InputFileError,
        ("sub-03", "CRC check failed"),
        store=_new,
    ),
    "append-nii-gz-crc-mismatch": BadInput(
        lambda t: bio.ingest(
            {"sub-03": _gz_bad_crc(t)}, _study(t), phenotypes=_pheno(group=["a", "b", "c"], age=[1.0, 2.0, 3.0])
        ),
        InputFileError,
        ("sub-03", r"sub-03_bold\.nii\.gz", "CRC check failed"),
        store=_study,
        setup=_store_with_pheno,
    ),
    "nii-gz-trailing-junk": BadInput(
        lambda t: bio.ingest([_gz_trailing_junk(t)], _new(t)),
        InputFileError,
        ("sub-03", r"sub-03_bold\.nii\.gz", "after the end of the gzip stream"),
        store=_new,
    ),
    "load-nifti-not-nifti": BadInput(
        lambda t: bio.load_nifti(_write(t, "fake.nii", "hello")),
        InputFileError,
        (r"fake\.nii", "not a readable NIfTI"),
    ),
    "load-nifti-nan-affine": BadInput(
        lambda t: bio.load_nifti(_nan_sform(_nifti(t / "nanaff.nii"))),
        InputFileError,
        (r"nanaff\.nii", "affine", "NaN"),
    ),
    # --- 7. constant BOLD
    "bold-all-zero": BadInput(
        lambda t: bio.ingest([_nifti(t / "sub-05_bold.nii", np.zeros(SHAPE, np.float32))], _new(t)),
        DataValidationError,
        ("sub-05", r"sub-05_bold\.nii", "constant", "every voxel of every volume is 0", "drop the subject"),
        store=_new,
    ),
    "bold-all-zero-second-subject": BadInput(
        lambda t: bio.ingest(
            {"sub-01": _nifti(t / "sub-01_bold.nii"), "sub-05": _nifti(t / "z.nii.gz", np.zeros(SHAPE, np.int16))},
            _new(t),
        ),
        DataValidationError,
        ("sub-05", r"z\.nii\.gz", "constant"),
        store=_new,
    ),
    "append-bold-constant": BadInput(
        lambda t: _append(t, _pheno(group=["a", "b"], age=[1.0, 2.0]), data=np.full(SHAPE, 7.0, np.float32)),
        DataValidationError,
        ("sub-02", "constant", "is 7"),
        store=_study,
        setup=_store_with_pheno,
    ),
    # --- 6. DPABI stage choice
    "dpabi-only-filtered-or-smoothed": BadInput(
        lambda t: bio.ingest(_dpabi(t, ("FunImgARCWF", "FunImgARCWSF")), _new(t)),
        DataValidationError,
        (
            r"FunImgARCWF \(band-pass filtered\)",
            r"FunImgARCWSF \(band-pass filtered, smoothed\)",
            "ALFF needs the unfiltered signal",
            "functional=",
        ),
        store=_new,
    ),
    "dpabi-native-space-only": BadInput(
        lambda t: bio.find_dpabi(_dpabi(t, ("FunImgAR", "FunImgARC"))),
        DataValidationError,
        (r"FunImgAR \(not normalised to MNI \(no W\)\)", "FunImgARC ", "functional="),
    ),
    # --- 8. malformed confound tables
    "confounds-tsv-ragged": BadInput(
        lambda t: bio.read_confounds_tsv(_write(t, "c.tsv", "trans_x\tcsf\n0.1\t5\n0.2\n"), ["trans_x", "csf"]),
        InputFileError,
        (r"c\.tsv", "line 3 has 1 fields", "ragged"),
    ),
    "confounds-tsv-text-in-column": BadInput(
        lambda t: bio.read_confounds_tsv(_write(t, "c.tsv", GOOD_TSV + "0.3\tabc\n"), ["trans_x", "csf"]),
        DataValidationError,
        (r"c\.tsv", "column 'csf'", "not finite numbers", r"row 2 \(line 4\) 'abc'", "n/a marks a missing"),
    ),
    "confounds-tsv-empty": BadInput(
        lambda t: bio.read_confounds(_write(t, "c.tsv", "\n\n")),
        InputFileError,
        (r"c\.tsv", "is empty"),
    ),
    "confounds-tsv-binary": BadInput(
        lambda t: bio.read_confounds(_write(t, "c.tsv", b"\x1f\x8b\x08\x00" + bytes(64))),
        InputFileError,
        (r"c\.tsv", "binary data"),
    ),
    "confounds-tsv-comma-separated": BadInput(
        lambda t: bio.read_confounds_tsv(_write(t, "c.tsv", "trans_x,csf\n0.1,5\n"), ["csf"]),
        InputFileError,
        (r"c\.tsv", "does not look tab-separated", "comma"),
    ),
    "rp-ragged": BadInput(
        lambda t: bio.read_confounds(_write(t, "rp_s1.txt", "0 0 0 0 0 0\n0 0 0 0 0\n")),
        InputFileError,
        (r"rp_s1\.txt", "line 2 has 5 values", "ragged"),
    ),
    "rp-header-line": BadInput(
        lambda t: bio.read_spm_motion(_write(t, "rp_s1.txt", "tx ty tz rx ry rz\n0 0 0 0 0 0\n")),
        DataValidationError,
        (r"rp_s1\.txt", "line 1 holds 'tx', not a number", "no header"),
    ),
    "rp-comma-separated": BadInput(
        lambda t: bio.read_spm_motion(_write(t, "rp_s1.txt", "0,0,0,0,0,0\n0,0,0,0,0,0\n")),
        DataValidationError,
        (r"rp_s1\.txt", "not a number", "no commas"),
    ),
    "rp-binary": BadInput(
        lambda t: bio.read_spm_motion(_write(t, "rp_s1.txt", bytes(range(256)))),
        InputFileError,
        (r"rp_s1\.txt", "binary data"),
    ),
    "ingest-rp-malformed": BadInput(
        lambda t: bio.ingest(
            {"sub-06": _nifti(t / "sub-06_bold.nii")},
            _new(t),
            confounds={"sub-06": _write(t, "rp_sub-06.txt", "0 0 0 0 0 0\n" * 23 + "0 0 0\n")},
        ),
        InputFileError,
        ("sub-06", r"rp_sub-06\.txt", "line 24 has 3 values", "ragged"),
        store=_new,
    ),
    "ingest-confounds-dataframe-text": BadInput(
        lambda t: bio.ingest(
            {"sub-06": _nifti(t / "sub-06_bold.nii")},
            _new(t),
            confounds={"sub-06": pd.DataFrame({"wm": ["a"] * 24})},
        ),
        DataValidationError,
        ("sub-06", "not numbers", "float"),
        store=_new,
    ),
}


def test_catalogue_is_large_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(case_id, tmp_path):
    check_bad_input(CASES[case_id], tmp_path)


def test_input_file_errors_are_oserrors(tmp_path):
    err = check_bad_input(CASES["nii-gz-crc-mismatch"], tmp_path)
    assert isinstance(err, OSError)


# ----------------------------------------------------------------------------- positive controls


def test_bool_mask_is_stored(tmp_path):
    bold = _subject_bold(tmp_path)
    values = np.zeros(SHAPE[:3], bool)
    values[2:5, 3:6, 1:8] = True
    cohort = bio.ingest({"sub-01": bold.attrs["source"]}, tmp_path / "s.zarr", mask=_mask_like(bold, values))
    assert cohort["mask"].dtype == bool
    np.testing.assert_array_equal(cohort["mask"].transpose("x", "y", "z").values, values)


def test_uint8_mask_file_is_stored_as_bool(tmp_path):
    values = np.zeros(SHAPE[:3], np.uint8)
    values[1:6, 2:7, 3:5] = 1
    mask = _mask_file(tmp_path, values, name="brainmask.nii.gz")
    cohort = bio.ingest([_nifti(tmp_path / "sub-01_bold.nii")], tmp_path / "s.zarr", mask=mask)
    assert cohort["mask"].dtype == bool
    np.testing.assert_array_equal(cohort["mask"].values, values.astype(bool))
    # appending with the same mask is fine; the stored one is kept
    again = bio.ingest({"sub-02": _nifti(tmp_path / "sub-02_bold.nii", seed=2)}, tmp_path / "s.zarr", mask=mask)
    assert list(again.subject.values) == ["sub-01", "sub-02"]


def test_numeric_age_with_missing_markers(tmp_path):
    rows = "participant_id\tage\tgroup\nsub-01\t61\tpatient\nsub-02\tn/a \tcontrol\nsub-03\t45.5\tcontrol\n"
    files = {f"sub-0{i}": _nifti(tmp_path / f"sub-0{i}_bold.nii", seed=i) for i in (1, 2, 3)}
    cohort = bio.ingest(files, tmp_path / "s.zarr", phenotypes=_write(tmp_path, "participants.tsv", rows))
    assert cohort["age"].dtype == np.float64
    np.testing.assert_array_equal(cohort["age"].values, [61.0, np.nan, 45.5])


def test_labels_and_ids_are_stripped(tmp_path):
    rows = "participant_id\t group \nsub-01\tpatient \n sub-02\t control\n"
    files = {f"sub-0{i}": _nifti(tmp_path / f"sub-0{i}_bold.nii", seed=i) for i in (1, 2)}
    cohort = bio.ingest(files, tmp_path / "s.zarr", phenotypes=_write(tmp_path, "participants.tsv", rows))
    assert list(cohort["group"].values) == ["patient", "control"]
    table = bio.read_phenotypes(pd.DataFrame({"group": [" control", "patient\t"]}, index=[" a", "b "]))
    assert list(table.index) == ["a", "b"] and list(table["group"]) == ["control", "patient"]


def test_missing_text_value_stays_text_and_appends(tmp_path):
    pheno = pd.DataFrame({"group": ["patient", None, "control"], "age": [30, 40, 50]}, index=["s1", "s2", "s3"])
    bio.ingest(
        {"s1": _nifti(tmp_path / "s1.nii"), "s2": _nifti(tmp_path / "s2.nii", seed=2)}, tmp_path / "s.zarr", pheno
    )
    cohort = bio.ingest({"s3": _nifti(tmp_path / "s3.nii", seed=3)}, tmp_path / "s.zarr", pheno)
    assert list(cohort["group"].values) == ["patient", "n/a", "control"]
    np.testing.assert_array_equal(cohort["age"].values, [30.0, 40.0, 50.0])


def test_tr_fills_in_missing_header_tr_only(tmp_path):
    filled = bio.ingest([_nifti(tmp_path / "sub-01_bold.nii", tr=0.0)], tmp_path / "a.zarr", tr=1.5)
    assert filled.attrs["tr"] == 1.5
    same = bio.ingest([_nifti(tmp_path / "sub-02_bold.nii", tr=2.0)], tmp_path / "b.zarr", tr=2.0)
    assert same.attrs["tr"] == 2.0
    # a header without a time unit ("unknown", nibabel's default pixdim[4] = 1) takes tr=
    img = nib.Nifti1Image(_data(), make_affine(3.0))
    nib.save(img, tmp_path / "sub-03_bold.nii")
    unitless = bio.ingest([str(tmp_path / "sub-03_bold.nii")], tmp_path / "c.zarr", tr=2.5)
    assert unitless.attrs["tr"] == 2.5
    # load_nifti, the low-level reader, still takes tr= over the header
    assert bio.load_nifti(tmp_path / "sub-02_bold.nii", tr=2.5).attrs["tr"] == 2.5


def test_dpabi_default_stage_rule(tmp_path, caplog):
    root = _dpabi(tmp_path / "a", ("FunImgAR", "FunImgARCW", "FunImgARCWF", "FunImgARCWS", "FunImgARCWFsym"))
    with caplog.at_level(logging.INFO, logger="brainarr"):
        table = bio.find_dpabi(root)
    assert Path(table["bold"].iloc[0]).parts[-3] == "FunImgARCW"
    assert "reading stage FunImgARCW" in caplog.text
    # a stage without covariate regression (brainarr regresses itself) is preferred
    root = _dpabi(tmp_path / "b", ("FunImgARW", "FunImgARCW", "FunImgARCWSF"))
    assert Path(bio.find_dpabi(root)["bold"].iloc[0]).parts[-3] == "FunImgARW"
    # an explicit choice is taken as given
    assert Path(bio.find_dpabi(root, functional="FunImgARCWSF")["bold"].iloc[0]).parts[-3] == "FunImgARCWSF"


def test_valid_gzip_variants_pass_the_crc_check(tmp_path):
    raw = Path(_nifti(tmp_path / "clean.nii")).read_bytes()
    cut = len(raw) // 3
    path = tmp_path / "sub-01_bold.nii.gz"
    path.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]) + bytes(16))  # two members, padding
    cohort = bio.ingest([str(path)], tmp_path / "s.zarr")
    np.testing.assert_array_equal(cohort["bold"].isel(subject=0).values, _data())


def test_corrupt_gzip_loads_but_is_not_ingested(tmp_path):
    """The damage is invisible to load_nifti (length intact, values finite): only the CRC tells."""
    path = _gz_bad_crc(tmp_path)
    assert np.isfinite(bio.load_nifti(path).values).all()
    with pytest.raises(InputFileError, match="CRC check failed"):
        bio._verify_gzip(Path(path))
