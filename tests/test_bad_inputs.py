"""Catalogue of malformed or inconsistent inputs across the public API.

Each row: the input, the call, the exception expected and what its message must name (the
file, subject or variable, and the problem). Calls that write a store must leave it exactly as
it was (byte for byte) or, when the call would have created it, absent.

The store-writing refusals of :func:`brainarr.io.ingest` for mapping sources are in
``test_cohort.py``; the reader's own refusals (``load_nifti``) are in ``test_io.py``. This
file covers the other public paths (Dataset sources, appends to existing stores, metrics,
preprocessing, atlases, statistics) and the data-quality semantics of the metrics.

Data-quality semantics (documented by these tests):

* NaN/Inf in BOLD given to a metric: :class:`DataValidationError` naming the metric and the
  array with the default ``data_validation="raise"``, raised when the chunk is read (lazily
  for dask input); ``"warn"`` warns and lets NaN propagate to the affected voxels.
* A constant voxel inside the mask is not an error: ALFF, fALFF and degree centrality are 0
  there (the z-scored series is 0), and its neighbours' ReHo stays finite.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import brainarr as ba
from brainarr import datasets, metrics, preprocess, stats
from brainarr import io as bio
from brainarr.exceptions import (
    ChunkingError,
    DataValidationError,
    DimensionError,
    GridMismatchError,
    MissingMetadataError,
    StoreError,
)
from brainarr.testing import BadInput, check_bad_input, make_affine, make_bold

SHAPE = (7, 8, 9, 24)


# ----------------------------------------------------------------------------- builders


def _nifti(path: Path, shape=SHAPE, *, affine=None, tr=2.0, nan_at=None, seed=0) -> str:
    data = (100 + np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)
    if nan_at is not None:
        data[nan_at] = np.nan
    img = nib.Nifti1Image(data, make_affine(3.0) if affine is None else affine)
    if len(shape) >= 4:
        img.header.set_zooms((3.0, 3.0, 3.0, tr, *(1.0,) * (len(shape) - 4)))
        img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return str(path)


def _truncate(path: str, keep: float = 0.6) -> str:
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: int(len(raw) * keep)])
    return path


def _gz_truncated(tmp: Path) -> str:
    plain = _nifti(tmp / "full.nii")
    out = tmp / "sub-02_bold.nii.gz"
    out.write_bytes(gzip.compress(Path(plain).read_bytes())[:-900])
    return str(out)


def _store_with_one_subject(tmp: Path) -> Path:
    store = tmp / "study.zarr"
    bio.ingest({"sub-01": _nifti(tmp / "sub-01_bold.nii")}, store)
    return store


def _bold(values=None, **kwargs) -> xr.DataArray:
    return make_bold(values, shape=SHAPE, **kwargs)


def _mask(bold: xr.DataArray) -> xr.DataArray:
    m = xr.ones_like(bold.isel(time=0), dtype=bool).drop_vars("time", errors="ignore")
    m.name = "brain_mask"
    m.attrs = {"affine": bold.attrs["affine"]}
    return m


def _with_nan(bold: xr.DataArray, where=(2, 3, 4, 5), value=np.nan) -> xr.DataArray:
    data = bold.values.copy()
    data[where] = value
    return bold.copy(data=data)


def _cohort_dataset(n=2, *, ids=None) -> xr.Dataset:
    bolds = [_bold(seed=i) for i in range(n)]
    cohort = xr.concat(bolds, dim="subject").assign_coords(subject=ids or [f"sub-{i:02d}" for i in range(n)])
    return xr.Dataset({"bold": cohort}, attrs={"tr": 2.0, "affine": bolds[0].attrs["affine"]})


def _maps(n=8) -> xr.DataArray:
    rng = np.random.default_rng(1)
    return xr.DataArray(
        rng.standard_normal((n, 5, 6, 7)) + 5,
        dims=("subject", "x", "y", "z"),
        coords={
            "subject": [f"s{i}" for i in range(n)],
            "group": ("subject", np.array(["a", "b"] * (n // 2), dtype=object)),
            "age": ("subject", rng.uniform(20, 40, n)),
        },
        attrs={"affine": make_affine(3.0).tolist()},
    )


# ----------------------------------------------------------------------------- the table


def _ingest_new(tmp: Path, sources, **kwargs):
    return bio.ingest(sources, tmp / "new.zarr", **kwargs)


CASES: dict[str, BadInput] = {
    # --- NIfTI inputs through ingest (DataFrame and list sources; mapping sources: test_cohort)
    "ingest-5d-image": BadInput(
        lambda t: _ingest_new(t, pd.DataFrame({"bold": [_nifti(t / "f.nii", (*SHAPE[:3], 24, 2))]}, index=["sub-09"])),
        DimensionError,
        ("sub-09", r"f\.nii", "5 dimensions"),
        store=lambda t: t / "new.zarr",
    ),
    "ingest-3d-image": BadInput(
        lambda t: _ingest_new(t, [_nifti(t / "sub-03_T1w.nii", SHAPE[:3])]),
        DimensionError,
        ("sub-03", r"sub-03_T1w\.nii", "is 3-D", "4-D BOLD"),
        store=lambda t: t / "new.zarr",
    ),
    "ingest-missing-tr": BadInput(
        lambda t: _ingest_new(t, [_nifti(t / "sub-04_bold.nii", tr=0.0)]),
        MissingMetadataError,
        ("sub-04", r"sub-04_bold\.nii", "no repetition time", "tr="),
        store=lambda t: t / "new.zarr",
    ),
    "ingest-truncated-nii": BadInput(
        lambda t: _ingest_new(t, [_truncate(_nifti(t / "sub-05_bold.nii"))]),
        OSError,
        ("sub-05", r"sub-05_bold\.nii", "truncated"),
        store=lambda t: t / "new.zarr",
    ),
    "ingest-truncated-nii-gz": BadInput(
        lambda t: _ingest_new(t, [_gz_truncated(t)]),
        OSError,
        ("sub-02", r"sub-02_bold\.nii\.gz", "truncated or corrupt"),
        store=lambda t: t / "new.zarr",
    ),
    "append-grid-differs": BadInput(
        lambda t: bio.ingest(
            {"sub-01": str(t / "sub-01_bold.nii"), "sub-02": _nifti(t / "b.nii", (7, 8, 10, 24))}, t / "study.zarr"
        ),
        GridMismatchError,
        ("sub-02", r"b\.nii", r"grid \(7, 8, 10\)", r"\(7, 8, 9\)"),
        store=lambda t: t / "study.zarr",
        setup=_store_with_one_subject,
    ),
    "append-affine-differs": BadInput(
        lambda t: bio.ingest(
            {"sub-02": _nifti(t / "c.nii", affine=make_affine(3.0, origin=(-90.0, -126.0, -60.0)))},
            t / "study.zarr",
        ),
        GridMismatchError,
        ("sub-02", r"c\.nii", "affine differs", "12 mm", "resample"),
        store=lambda t: t / "study.zarr",
        setup=_store_with_one_subject,
    ),
    "append-nan-bold": BadInput(
        lambda t: bio.ingest({"sub-02": _nifti(t / "d.nii", nan_at=(1, 2, 3, 4))}, t / "study.zarr"),
        DataValidationError,
        ("sub-02", "NaN/Inf"),
        store=lambda t: t / "study.zarr",
        setup=_store_with_one_subject,
    ),
    "append-to-newer-store": BadInput(
        lambda t: bio.ingest({"sub-02": _nifti(t / "e.nii")}, t / "study.zarr"),
        StoreError,
        (r"study\.zarr", "newer brainarr", "format 99"),
        store=lambda t: t / "study.zarr",
        setup=lambda t: _mark_newer(_store_with_one_subject(t)),
    ),
    "store-under-a-file": BadInput(
        # running as root, permissions do not stop writes: a path below a regular file cannot be created
        lambda t: bio.ingest({"sub-01": _nifti(t / "f.nii")}, t / "notes.txt" / "study.zarr"),
        StoreError,
        (r"cannot create the cohort store", r"notes\.txt/study\.zarr", "Not a directory"),
        store=lambda t: t / "notes.txt",
        setup=lambda t: (t / "notes.txt").write_text("not a folder"),
    ),
    "ingest-dataset-duplicate-ids": BadInput(
        lambda t: bio.ingest(_cohort_dataset(3, ids=["sub-01", "sub-02", "sub-01"]), t / "new.zarr"),
        ValueError,
        ("sub-01", "more than once"),
        store=lambda t: t / "new.zarr",
    ),
    "ingest-folder-phenotype-missing": BadInput(
        lambda t: bio.ingest(
            [_nifti(t / "sub-07_bold.nii"), _nifti(t / "sub-08_bold.nii", seed=1)],
            t / "new.zarr",
            phenotypes=pd.DataFrame({"age": [30.0]}, index=pd.Index(["sub-07"], name="participant_id")),
        ),
        MissingMetadataError,
        ("sub-08", "phenotypes have no row"),
        store=lambda t: t / "new.zarr",
    ),
    "ingest-confounds-wrong-length": BadInput(
        lambda t: _ingest_new(
            t,
            [_nifti(t / "sub-06_bold.nii")],
            confounds={"sub-06": pd.DataFrame(np.zeros((23, 2)), columns=["a", "b"])},
        ),
        ValueError,
        ("sub-06", "23 rows", "24 volumes", r"sub-06_bold\.nii"),
        store=lambda t: t / "new.zarr",
    ),
    # --- metrics
    "alff-nan-bold": BadInput(
        lambda t: metrics.alff(_with_nan(_bold())),
        DataValidationError,
        (r"brainarr\.metrics\.alff", "synthetic", "1 NaN/Inf"),
    ),
    "reho-inf-bold-lazy": BadInput(
        lambda t: metrics.reho(_with_nan(_bold(), value=np.inf).chunk({"x": 3}), _mask(_bold())).compute(),
        DataValidationError,
        (r"brainarr\.metrics\.reho", "NaN/Inf"),
    ),
    "dc-nan-bold-subject-dim": BadInput(
        lambda t: metrics.degree_centrality(
            _cohort_dataset()["bold"].pipe(
                lambda b: b.copy(data=np.where(b.values == b.values[1, 0, 0, 0, 0], np.nan, b.values))
            ),
            _mask(_bold()),
        )["dc_binary"].compute(),
        DataValidationError,
        (r"brainarr\.metrics\.degree_centrality", "NaN/Inf"),
    ),
    "alff-wrong-ndim": BadInput(
        lambda t: metrics.alff(_bold().isel(time=0)),
        DimensionError,
        (r"brainarr\.metrics\.alff", r"\('x', 'y', 'z'\)", "missing", "time"),
    ),
    "alff-zero-tr": BadInput(
        lambda t: metrics.alff(_bold().assign_attrs(tr=0.0)),
        MissingMetadataError,
        (r"brainarr\.metrics\.alff", "synthetic", "must be positive", "0.0"),
    ),
    "bandpass-missing-tr": BadInput(
        lambda t: preprocess.bandpass(_bold().drop_attrs(), 0.01, 0.08),
        MissingMetadataError,
        ("bandpass", "no repetition time", "tr="),
    ),
    "alff-band-above-nyquist": BadInput(
        lambda t: metrics.alff(_bold(), band=(0.01, 0.3)),
        ValueError,
        (r"brainarr\.metrics\.alff", "0.3 Hz", "Nyquist", "0.25 Hz", "TR = 2 s"),
    ),
    "reho-mask-other-grid": BadInput(
        lambda t: metrics.reho(_bold(), _mask(make_bold(shape=(7, 8, 10, 24)))),
        GridMismatchError,
        (r"brainarr\.metrics\.reho", "mask", "z has 9 vs 10 voxels"),
    ),
    "alff-empty-mask": BadInput(
        lambda t: metrics.alff(_bold(), mask=_mask(_bold()) & False),
        ValueError,
        (r"brainarr\.metrics\.alff", "mask has no voxel", "brain_mask"),
    ),
    "reho-time-split": BadInput(
        lambda t: metrics.reho(_bold().chunk(time=10), _mask(_bold())),
        ChunkingError,
        (r"brainarr\.metrics\.reho", "3 chunks along 'time'", r"\.chunk\(time=-1\)", "rechunk_for_metrics"),
    ),
    "seed-fc-unknown-region": BadInput(
        lambda t: metrics.seed_fc(make_bold(shape=(61, 73, 61, 4)), ["Precentral_L", "Precentrall_R"]),
        KeyError,
        ("Precentrall_R", "not in atlas", "did you mean", "Precentral_R"),
    ),
    "seed-fc-empty-seed": BadInput(
        lambda t: metrics.seed_fc(_bold(), xr.zeros_like(_mask(_bold())).expand_dims(seed=["PCC"])),
        ValueError,
        (r"brainarr\.metrics\.seed_fc", "PCC", "no voxel"),
    ),
    "spheres-outside-grid": BadInput(
        lambda t: datasets.spheres(_bold(), [(0.0, -110.0, -60.0), (500.0, 0.0, 0.0)], 4.0),
        ValueError,
        ("500_0_0", "4.0 mm", "no voxel"),
    ),
    # --- preprocessing
    "regress-confounds-wrong-length": BadInput(
        lambda t: preprocess.regress(_bold(), pd.DataFrame(np.zeros((20, 2)), columns=["wm", "csf"])),
        GridMismatchError,
        ("regress", "20 time points", "24 volumes", "discard"),
    ),
    "regress-nan-confounds": BadInput(
        lambda t: preprocess.regress(_bold(), pd.DataFrame({"wm": np.arange(24.0), "csf": [np.nan] + [1.0] * 23})),
        DataValidationError,
        ("'csf'", "NaN", "first bad time index 0"),
    ),
    "smooth-fwhm-zero": BadInput(
        lambda t: preprocess.smooth(_bold(), (6.0, 0.0, 6.0)),
        ValueError,
        ("smooth", "fwhm must be > 0", r"\(6.0, 0.0, 6.0\)"),
    ),
    "smooth-fwhm-negative": BadInput(
        lambda t: preprocess.smooth(_bold(), -4.0),
        ValueError,
        ("smooth", "fwhm must be > 0", "-4.0"),
    ),
    # --- statistics
    "ttest2-missing-covariate": BadInput(
        lambda t: stats.ttest2(_maps(), covariates=("age", "sex")),
        MissingMetadataError,
        (r"brainarr\.stats\.ttest2", "no subject coordinate 'sex'", "available", "age"),
    ),
    "grf-fwhm-zero": BadInput(
        lambda t: stats.grf(
            stats.ttest2(_maps(), covariates=("age",)),
            mask=xr.ones_like(_maps().isel(subject=0, drop=True), dtype=bool),
            fwhm=0.0,
        ),
        ValueError,
        (r"brainarr\.stats\.grf", "fwhm must be positive", "0.0"),
    ),
    "grf-empty-mask": BadInput(
        lambda t: stats.grf(
            stats.ttest2(_maps(), covariates=("age",)),
            mask=xr.zeros_like(_maps().isel(subject=0, drop=True), dtype=bool),
            fwhm=6.0,
        ),
        ValueError,
        (r"brainarr\.stats\.grf", "mask", "empty"),
    ),
}


def _mark_newer(store: Path) -> Path:
    meta = store / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["brainarr"]["format"] = 99
    meta.write_text(json.dumps(doc))
    return store


def test_catalogue_is_large_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input(case_id, tmp_path):
    check_bad_input(CASES[case_id], tmp_path)


def test_nan_bold_warn_mode_propagates_nan_to_the_voxel_only():
    bold = _with_nan(_bold(), where=(2, 3, 4, 5))
    with ba.set_options(data_validation="warn"), pytest.warns(UserWarning, match="1 NaN/Inf"):
        out = metrics.alff(bold).compute()
    nan = np.isnan(out["alff"].values)
    assert nan[2, 3, 4] and nan.sum() == 1


def test_constant_voxel_in_mask_gives_zero_not_nan():
    data = _bold().values.copy()
    data[3, 4, 5, :] = 7.5  # constant series inside the mask
    bold = _bold(data)
    mask = _mask(bold)
    a = metrics.alff(bold, mask=mask).compute()
    dc = metrics.degree_centrality(bold, mask, threshold=0.1).compute()
    r = metrics.reho(bold, mask).compute()
    assert a["alff"].values[3, 4, 5] == 0 and a["falff"].values[3, 4, 5] == 0
    assert dc["dc_binary"].values[3, 4, 5] == 0 and dc["dc_weighted"].values[3, 4, 5] == 0
    for result in (a["alff"], a["falff"], dc["dc_weighted"], r):
        assert np.isfinite(result.values).all()
    # the constant voxel takes part in its neighbours' ReHo without breaking it
    assert 0 < r.values[3, 4, 4] <= 1
