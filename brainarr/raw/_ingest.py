"""Ingest raw scanner data: the spatial chain per subject as one task, appended to a cohort store."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from brainarr._core.chunks import spatial_chunks
from brainarr._core.confounds import MOTION_PARAMS, MOTION_UNITS, time_coord
from brainarr._core.dims import CONFOUND, SPATIAL, SUBJECT, TIME
from brainarr._core.grid import spatial_coords
from brainarr._core.validation import get_affine
from brainarr.exceptions import (
    BrainarrError,
    DataValidationError,
    GridMismatchError,
    InputFileError,
    MissingMetadataError,
    ObliqueAffineWarning,
)
from brainarr.preprocess._motion import QC_VARIABLES
from brainarr.raw._discover import RAW_COLUMNS, find_bids_raw, find_dpabi_raw

__all__ = ["QC_NAMES", "TISSUES", "ingest"]

logger = logging.getLogger("brainarr")

#: Per-subject tissue probability maps written by :func:`ingest` (``(subject, x, y, z)``).
TISSUES = ("gm", "wm", "csf")

#: Motion QC values :func:`ingest` records per subject (coordinates on ``subject``).
QC_NAMES = QC_VARIABLES

PathLike = str | os.PathLike


def _table(sources: Any, *, task: str, session: str | None, run: int | str | None) -> pd.DataFrame:
    """The raw-data table of ``sources``: a BIDS raw dataset, a DPABI folder or a table."""
    if isinstance(sources, pd.DataFrame):
        missing = [c for c in ("bold", "t1") if c not in sources.columns]
        if missing:
            raise ValueError(f"raw ingest: the sources table lacks column(s) {missing}; expected {list(RAW_COLUMNS)}")
        table = sources.copy()
        table.attrs = dict(sources.attrs)
        for column, default in (("tr", None), ("slice_times", None), ("slice_axis", "z")):
            if column not in table.columns:
                table[column] = default
        return table
    root = Path(sources)
    if not root.exists():
        raise FileNotFoundError(f"raw ingest: {root} does not exist")
    if (root / "FunRaw").is_dir():
        return find_dpabi_raw(root)
    return find_bids_raw(root, task=task, session=session, run=run)


def _header_shape(subject: str, path: Path, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in nib.load(str(path)).shape)
    except Exception as err:  # nibabel raises several types for unreadable files
        raise InputFileError(f"subject {subject!r}: cannot read the {what} {path}: {err}") from err


def _check_cohort(table: pd.DataFrame) -> tuple[int, float]:
    """Every subject's run has the same number of volumes and TR: checked on headers, before any work."""
    n_time: dict[str, int] = {}
    trs: dict[str, float] = {}
    for subject, row in table.iterrows():
        shape = _header_shape(str(subject), Path(row["bold"]), "BOLD")
        if len(shape) != 4 or shape[3] < 2:
            raise GridMismatchError(
                f"subject {subject!r}: {row['bold']} has shape {shape}; raw BOLD must be 4-D with at least 2 volumes"
            )
        t1_shape = _header_shape(str(subject), Path(row["t1"]), "T1")
        if len(t1_shape) != 3 and not (len(t1_shape) == 4 and t1_shape[3] == 1):
            raise GridMismatchError(f"subject {subject!r}: the T1 {row['t1']} has shape {t1_shape}; it must be 3-D")
        n_time[str(subject)] = shape[3]
        if row.get("tr") is not None and not pd.isna(row["tr"]):
            trs[str(subject)] = float(row["tr"])
    first = next(iter(n_time))
    for subject, n in n_time.items():
        if n != n_time[first]:
            raise GridMismatchError(
                f"subject {subject!r}: {n} volumes, but subject {first!r} has {n_time[first]}; a cohort needs the "
                "same number of volumes for every subject (drop the extra volumes, or ingest separate cohorts)"
            )
    if not trs:
        raise MissingMetadataError("raw ingest: no subject has a repetition time (sidecar RepetitionTime or header)")
    ref = next(iter(trs))
    for subject, tr in trs.items():
        if abs(tr - trs[ref]) > 1e-3:
            raise GridMismatchError(
                f"subject {subject!r}: TR {tr:g} s differs from subject {ref!r}'s {trs[ref]:g} s; a cohort has one TR"
            )
    missing_tr = sorted(set(n_time) - set(trs))
    if missing_tr:
        raise MissingMetadataError(f"raw ingest: subject(s) {missing_tr} have no repetition time")
    return n_time[first], trs[ref]


def _slice_timing_of(row: pd.Series, slice_timing: Any) -> Any:
    """Slice times (s) or an order name for one subject, or None (no correction)."""
    if slice_timing is None:
        return None
    if isinstance(slice_timing, str) and slice_timing == "auto":
        times = row.get("slice_times")
        return None if times is None or (np.ndim(times) == 0 and pd.isna(times)) else list(times)
    return slice_timing


def _grid_like(affine: np.ndarray, shape: tuple[int, int, int]) -> xr.DataArray:
    affine = np.asarray(affine, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ObliqueAffineWarning)
        coords = spatial_coords(affine, shape)
    grid = xr.DataArray(np.zeros(shape, np.float32), dims=SPATIAL, coords=coords, name="grid")
    grid.attrs["affine"] = affine.tolist()
    return grid


def _chain(
    subject: str,
    bold_path: str,
    t1_path: str,
    tr: float,
    slice_timing: Any,
    slice_axis: str,
    grid_affine: np.ndarray,
    grid_shape: tuple[int, int, int],
    options: Mapping[str, Any],
    limits: tuple[float, float],
) -> dict[str, np.ndarray]:
    """One subject's spatial chain, run by a worker: its files in, numpy arrays on the grid out."""
    from brainarr.io import load_nifti
    from brainarr.preprocess import motion_qc
    from brainarr.spatial import preprocess

    # the task's own work runs on a local thread pool: inside a distributed worker, the default
    # would send the inner graphs back to the cluster from a task that holds a worker thread
    try:
        with dask.config.set(scheduler="threads"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ObliqueAffineWarning)
            bold = load_nifti(bold_path, tr=tr).load()
            t1 = load_nifti(t1_path)
            if t1.ndim == 4:
                t1 = t1.isel({TIME: 0}, drop=True)
            t1 = t1.load()
            out = preprocess(
                bold, t1, slice_timing=slice_timing, slice_axis=slice_axis,
                grid=_grid_like(grid_affine, grid_shape), **options,
            )  # fmt: skip
            values = out[["bold", "motion", *TISSUES]].compute()
            qc = motion_qc(values["motion"], max_translation=limits[0], max_rotation=limits[1]).compute()
    except (BrainarrError, OSError, ValueError) as err:
        if f"subject {subject!r}" in str(err):
            raise
        raise type(err)(f"subject {subject!r} ({bold_path}, {t1_path}): {err}") from err
    bold_values = np.asarray(values["bold"].values, np.float32)
    if not np.all(np.isfinite(bold_values)):
        raise DataValidationError(f"subject {subject!r}: the preprocessed BOLD of {bold_path} holds NaN or Inf")
    return {
        "bold": bold_values,
        "motion": np.asarray(values["motion"].values, np.float32),
        **{t: np.asarray(values[t].values, np.float32) for t in TISSUES},
        **{k: np.asarray([qc[k].values]) for k in QC_NAMES},
    }


def _subject_dataset(
    subject: str,
    row: pd.Series,
    *,
    grid: xr.DataArray,
    n_time: int,
    tr: float,
    slice_timing: Any,
    options: Mapping[str, Any],
    limits: tuple[float, float],
    chunks: Mapping[str, int],
) -> xr.Dataset:
    """One subject as a lazy Dataset whose variables all come from one delayed chain task."""
    affine = np.asarray(get_affine(grid, func="raw ingest"), float)
    shape = tuple(int(grid.sizes[d]) for d in SPATIAL)
    args = (
        subject, str(row["bold"]), str(row["t1"]), tr, _slice_timing_of(row, slice_timing),
        str(row.get("slice_axis") or "z"), affine, shape, dict(options), limits,
    )  # fmt: skip
    # named after the subject, so that a dashboard shows whose chain runs
    task = dask.delayed(_chain, pure=True)(*args, dask_key_name=f"spatial-chain-{subject}-{tokenize(*args)}")
    coords = {d: grid[d] for d in SPATIAL}
    bold = da.from_delayed(task["bold"], (*shape, n_time), dtype=np.float32)
    bold = bold.rechunk((chunks["x"], chunks["y"], chunks["z"], n_time))[None]
    motion = da.from_delayed(task["motion"], (n_time, len(MOTION_PARAMS)), dtype=np.float32)[None]
    data_vars: dict[str, Any] = {
        "bold": xr.DataArray(bold, dims=(SUBJECT, *SPATIAL, TIME), coords=coords, attrs={"units": "arbitrary"}),
        "confounds": xr.DataArray(
            motion,
            dims=(SUBJECT, TIME, CONFOUND),
            coords={CONFOUND: list(MOTION_PARAMS), "units": (CONFOUND, list(MOTION_UNITS))},
            attrs={"long_name": "realignment parameters (SPM rp_*.txt convention)"},
        ),
    }
    for tissue in TISSUES:
        data_vars[tissue] = xr.DataArray(
            da.from_delayed(task[tissue], shape, dtype=np.float32).rechunk(tuple(chunks[d] for d in SPATIAL))[None],
            dims=(SUBJECT, *SPATIAL),
            coords=coords,
            attrs={"long_name": f"{tissue.upper()} probability of the subject's own T1", "units": "1"},
        )
    ds = xr.Dataset(data_vars).assign_coords({TIME: time_coord(n_time, tr)})
    qc_dtypes = {"excluded": bool}
    qc = {
        k: (SUBJECT, da.from_delayed(task[k], (1,), dtype=qc_dtypes.get(k, np.float64))) for k in QC_NAMES
    }  # fmt: skip
    ds = ds.assign_coords({SUBJECT: np.array([subject], dtype=object), **qc})
    ds["bold"].attrs["source"] = str(row["bold"])
    return ds


def ingest(
    sources: PathLike | pd.DataFrame,
    store: str | os.PathLike,
    phenotypes: pd.DataFrame | PathLike | None = None,
    *,
    grid: xr.DataArray | None = None,
    slice_timing: Literal["auto"] | str | Sequence[float] | None = "auto",
    task: str = "rest",
    session: str | None = None,
    run: int | str | None = None,
    max_translation: float = 3.0,
    max_rotation: float = 3.0,
    chunks: Mapping[str, int] | None = None,
    preprocess_options: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Preprocess raw subjects (native EPI + T1) onto the study grid and append them to a cohort store.

    Each subject's whole spatial chain (:func:`brainarr.spatial.preprocess`: slice timing,
    realignment, coregistration, normalisation, segmentation, one resampling) runs as one Dask
    task on the active scheduler (a ``distributed`` client if one is active), reading its files
    there; its outputs are written by the same graph. Subjects are committed one by one with the
    guarantees of :func:`brainarr.io.ingest`: an interrupted ingest leaves the last consistent
    cohort, and running the same call again preprocesses only the subjects not yet committed.

    Parameters
    ----------
    sources : path or DataFrame
        A BIDS raw dataset (``sub-*/anat/*_T1w.nii[.gz]``, ``sub-*/func/*_task-<task>_bold.nii[.gz]``
        with JSON sidecars and ``participants.tsv``; :func:`find_bids_raw`), a DPABI working
        folder with ``FunRaw/`` and ``T1Raw/`` (:func:`find_dpabi_raw`; DICOM converted), or a
        table with the columns of :data:`RAW_COLUMNS` indexed by subject.
    store : str or path-like
        The cohort store (a path or an fsspec URL).
    phenotypes : DataFrame or path, optional
        Phenotype table (:func:`brainarr.io.read_phenotypes`); default the dataset's
        ``participants.tsv``. Every subject needs a row.
    grid : xarray.DataArray (x, y, z), optional
        Output grid in MNI mm (``attrs["affine"]``); default the 3 mm study grid
        (:func:`brainarr.datasets.study_grid`, 61 x 73 x 61).
    slice_timing : "auto", str, sequence of float or None, default "auto"
        ``"auto"`` corrects with each subject's sidecar ``SliceTiming`` (no correction where a
        subject has none); an order name (``"interleaved"``...) or slice times in s apply to
        every subject; None skips the correction.
    task, session, run : str, optional
        BIDS entities selecting the run (:func:`find_bids_raw`).
    max_translation, max_rotation : float, default 3.0
        Motion limits (mm, degrees) of the recorded ``excluded`` flag; :func:`brainarr.pipeline.run`
        re-derives the QC with its own ``[preprocess]`` limits.
    chunks : mapping, optional
        Spatial chunks of the stored BOLD (default about 64 MiB blocks; time is one chunk).
    preprocess_options : mapping, optional
        Further keyword arguments of :func:`brainarr.spatial.preprocess` (``order``,
        ``realign_options``, ``coregister_options``, ``normalise_options``).
    storage_options : mapping, optional
        fsspec options of a remote store.
    progress : bool, default False
        A progress bar per subject.

    Returns
    -------
    xarray.Dataset
        The cohort (:func:`brainarr.open_cohort`): ``bold`` (subject, x, y, z, time) on the grid,
        ``confounds`` (subject, time, confound) the six realignment parameters (SPM ``rp_*.txt``
        convention), ``gm``, ``wm``, ``csf`` (subject, x, y, z) each subject's tissue
        probabilities, phenotypes and the QC values :data:`QC_NAMES` as coordinates on
        ``subject``.

    Raises
    ------
    FileNotFoundError, InputFileError, DimensionError, MissingMetadataError, DataValidationError
        For bad inputs, from discovery (:func:`find_bids_raw`): each names the subject and file.
    GridMismatchError
        If subjects' runs differ in number of volumes or TR (checked on the headers before any
        work).

    Nothing is written when one of these is raised before the first subject; a subject that
    fails while it is preprocessed is rolled back (the subjects committed before it stay).
    """
    from brainarr.datasets import study_grid
    from brainarr.io import ingest as ingest_cohort
    from brainarr.io import read_phenotypes

    table = _table(sources, task=task, session=session, run=run)
    if not len(table):
        raise InputFileError(f"raw ingest: no subject found in {sources}")
    if phenotypes is None:
        phenotypes = table.attrs.get("participants")
    pheno = read_phenotypes(phenotypes, subjects=[str(s) for s in table.index]) if phenotypes is not None else None
    n_time, tr = _check_cohort(table)
    grid = study_grid(3.0) if grid is None else grid
    shape = tuple(int(grid.sizes[d]) for d in SPATIAL)
    chunks = dict(chunks) if chunks else spatial_chunks(shape, bytes_per_voxel=4 * n_time)
    subjects = [
        _subject_dataset(
            str(subject), row, grid=grid, n_time=n_time, tr=tr, slice_timing=slice_timing,
            options=preprocess_options or {}, limits=(max_translation, max_rotation), chunks=chunks,
        )
        for subject, row in table.iterrows()
    ]  # fmt: skip
    cohort = xr.concat(subjects, dim=SUBJECT, coords="minimal", compat="override", join="override")
    if pheno is not None:
        for column in pheno.columns:
            values = pheno.loc[[str(s) for s in table.index], column]
            if pd.api.types.is_numeric_dtype(pheno[column].dtype):
                arr = np.asarray(values, dtype=float)
            else:
                arr = np.array(["n/a" if pd.isna(v) else str(v) for v in values], dtype=object)
            cohort = cohort.assign_coords({str(column): (SUBJECT, arr)})
    cohort.attrs.update(
        {
            "tr": tr,
            "affine": np.asarray(get_affine(grid, func="raw ingest")).tolist(),
            "source": f"raw data preprocessed by brainarr.spatial.preprocess from {table.attrs.get('root', sources)}",
        }
    )
    logger.info("raw ingest: %d subjects, %d volumes, TR %g s -> %s", len(table), n_time, tr, store)
    return ingest_cohort(cohort, store, storage_options=storage_options, progress=progress)
