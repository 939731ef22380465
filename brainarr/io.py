"""NIfTI <-> DataArray, fMRIPrep and RESTplus/DPABI inputs, and ingestion into a Zarr cohort store.

Reading is lazy: :func:`load_nifti` returns a dask-backed DataArray whose chunks are read from
the file only when computed. For an uncompressed ``.nii`` each chunk reads just its own bytes
through nibabel's memory-mapped array proxy. A ``.nii.gz`` cannot be read at random offsets:
each chunk decompresses the gzip stream from the start up to the last byte it needs (memory
stays bounded by the chunk, but the CPU cost of a chunk is up to one full decompression), so
for repeated work on gzipped inputs :func:`ingest` them once into a Zarr store.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from brainarr._core.chunks import spatial_chunks
from brainarr._core.confounds import DEFAULT_TSV_COLUMNS, MOTION_PARAMS, MOTION_UNITS, confound_units, time_coord
from brainarr._core.dims import CONFOUND, SPATIAL, SUBJECT, TIME
from brainarr._core.grid import is_axis_aligned, spatial_coords
from brainarr._core.validation import describe, get_affine
from brainarr.exceptions import DataValidationError, DimensionError, MissingMetadataError

__all__ = [
    "find_dpabi",
    "find_fmriprep",
    "ingest",
    "load_nifti",
    "read_confounds",
    "read_confounds_tsv",
    "read_phenotypes",
    "read_spm_motion",
    "to_nifti",
    "to_nifti_image",
]

PathLike = str | os.PathLike

_TIME_UNIT_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6, "unknown": 1.0}
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


class _NiftiChunkReader:
    """Array-like over a NIfTI file for :func:`dask.array.from_array`.

    Each ``__getitem__`` opens the file (memory-mapped when uncompressed), slices the array
    proxy and casts; the object holds only the path, so it pickles to remote workers.
    """

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        try:
            img = nib.load(self.path, mmap="r")
            proxy = img.dataobj
            if len(proxy.shape) > self.ndim:  # trailing singleton dims squeezed on load
                key = tuple(key) + (0,) * (len(proxy.shape) - self.ndim)
            block = np.asarray(proxy[key], dtype=self.dtype)
        except (OSError, EOFError, ValueError, zlib.error) as err:
            raise OSError(f"cannot read voxel data from {self.path} (truncated or corrupt file?): {err}") from err
        return block


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(_NIFTI_SUFFIXES)


def _check_complete(path: Path, header: nib.Nifti1Header, shape: tuple[int, ...]) -> None:
    """Raise if the file is shorter than its header says (a truncated download or copy)."""
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    if path.name.endswith(".gz"):
        size = path.stat().st_size
        if size < 18:
            raise OSError(f"{path} is truncated: {size} bytes is not a gzip stream")
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", fh.read(4))
        # ISIZE is the uncompressed length modulo 2**32 (RFC 1952); a truncated stream ends
        # in compressed bytes instead, which almost never match.
        if isize != expected % 2**32 and isize < expected % 2**32:
            raise OSError(
                f"{path} looks truncated: the gzip trailer says {isize} uncompressed bytes, the header needs {expected}"
            )
    else:
        size = path.stat().st_size
        if size < expected:
            raise OSError(
                f"{path} is truncated: {size} bytes on disk, the header needs {expected} "
                f"(shape {shape}, {header.get_data_dtype()})"
            )


def _tr_from_header(header: nib.Nifti1Header) -> float | None:
    zooms = header.get_zooms()
    if len(zooms) < 4:
        return None
    _, time_unit = header.get_xyzt_units()
    # pixdim is float32 on disk: take its shortest decimal form (0.8, not 0.800000011920929)
    stored = float(np.format_float_positional(np.float32(zooms[3]), unique=True))
    tr = stored * _TIME_UNIT_SECONDS.get(time_unit, 1.0)
    return tr if np.isfinite(tr) and tr > 0 else None


def load_nifti(
    path: PathLike,
    *,
    chunks: str | Mapping[str, int] = "auto",
    tr: float | None = None,
    dtype: Any = np.float32,
    name: str | None = None,
) -> xr.DataArray:
    """Open a NIfTI image as a lazy labelled DataArray.

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file, 3-D (a map or mask) or 4-D (BOLD).
    chunks : "auto" or mapping, default "auto"
        Dask chunks by dim name. ``"auto"`` keeps ``time`` in one chunk and splits space into
        blocks of about the ``chunk_mib`` option (64 MiB); a mapping may give some dims only.
    tr : float, optional
        Repetition time in seconds; overrides the header. Required when the header has none.
    dtype : numpy dtype, default float32
        Dtype of the returned data (scaling by ``scl_slope``/``scl_inter`` is applied).
    name : str, optional
        Name of the DataArray; ``"bold"`` for 4-D and the file stem for 3-D by default.

    Returns
    -------
    xarray.DataArray
        Dims ``(x, y, z, time)`` or ``(x, y, z)``, dask-backed. Spatial coordinates are the
        MNI millimetres of voxel centres (voxel indices for an oblique affine, with an
        :class:`~brainarr.exceptions.ObliqueAffineWarning`), ``time`` in seconds from the first
        volume. ``attrs``: ``affine`` (4 x 4 list), ``tr`` (s, 4-D only), ``units``, ``source``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    OSError
        If the file is not a NIfTI image or is truncated.
    DimensionError
        If the image is not 3-D or 4-D.
    MissingMetadataError
        If a 4-D image has no usable TR in its header and ``tr`` is not given.

    Notes
    -----
    Nothing is read until the result is computed. An uncompressed ``.nii`` is memory-mapped,
    so computing one chunk reads only that chunk. A ``.nii.gz`` chunk decompresses the stream
    up to its last byte (bounded memory, up to one decompression of CPU per chunk). The TR
    respects the header's time unit (``xyzt_units``: s, ms or us; "unknown" is taken as s).

    Examples
    --------
    >>> import brainarr as ba
    >>> bold = ba.io.load_nifti("sub-01_bold.nii.gz")  # doctest: +SKIP
    >>> bold.sel(x=-57, y=-12, z=30, method="nearest")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    if not _is_nifti(path):
        raise OSError(f"{path} is not a NIfTI file (expected a .nii or .nii.gz name)")
    try:
        img = nib.load(path)
    except Exception as err:
        raise OSError(f"{path} is not a readable NIfTI image: {err}") from err
    header = img.header
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 4 and shape[3] == 1:
        pass  # one volume stays 4-D
    if len(shape) not in (3, 4):
        raise DimensionError(f"{path} has {len(shape)} dimensions {shape}; expected a 3-D map or 4-D BOLD")
    _check_complete(path, header, tuple(int(s) for s in img.shape))

    affine = np.asarray(img.affine, float)
    coords = spatial_coords(affine, shape[:3], source=str(path))
    attrs: dict[str, Any] = {
        "affine": affine.tolist(),
        "units": "arbitrary",
        "source": str(path),
    }
    dims: tuple[str, ...] = SPATIAL
    if len(shape) == 4:
        dims = (*SPATIAL, TIME)
        tr_value = float(tr) if tr is not None else _tr_from_header(header)
        if tr_value is None or not np.isfinite(tr_value) or tr_value <= 0:
            raise MissingMetadataError(
                f"{path} has no repetition time in its header (pixdim[4] = {header.get_zooms()[3]}); "
                "pass tr=... in seconds"
            )
        attrs["tr"] = tr_value
        coords[TIME] = xr.Variable(TIME, np.arange(shape[3]) * tr_value, {"units": "s", "long_name": "time"})

    dtype = np.dtype(dtype)
    resolved = _resolve_chunks(shape, dims, chunks, dtype)
    reader = _NiftiChunkReader(str(path), shape, dtype)
    stat = path.stat()
    token = tokenize(str(path.resolve()), stat.st_mtime_ns, stat.st_size, dtype.str, resolved)
    data = da.from_array(
        reader,
        chunks=resolved,
        name=f"load_nifti-{token}",
        lock=False,
        asarray=False,
        fancy=False,
        meta=np.empty((0,) * len(shape), dtype),
    )
    if name is None:
        name = "bold" if len(shape) == 4 else re.sub(r"\.nii(\.gz)?$", "", path.name)
    return xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=attrs)


def _resolve_chunks(
    shape: tuple[int, ...], dims: tuple[str, ...], chunks: str | Mapping[str, int], dtype: np.dtype
) -> tuple[int, ...]:
    n_time = shape[3] if len(shape) == 4 else 1
    auto = spatial_chunks(shape[:3], bytes_per_voxel=n_time * dtype.itemsize)
    auto[TIME] = n_time
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks must be 'auto' or a mapping of dim to size, got {chunks!r}")
        chosen = auto
    else:
        unknown = set(chunks) - set(dims)
        if unknown:
            raise ValueError(f"chunks names unknown dims {sorted(unknown)}; dims are {dims}")
        chosen = {
            **auto,
            **{k: (shape[dims.index(k)] if v in (-1, None) else int(v)) for k, v in chunks.items()},
        }
    return tuple(int(chosen[d]) for d in dims)


def to_nifti_image(img: xr.DataArray, *, dtype: Any = None) -> nib.Nifti1Image:
    """An in-memory NIfTI image of a 3-D map or 4-D series, with its affine (and TR).

    Parameters
    ----------
    img : xarray.DataArray
        Dims ``(x, y, z)`` or ``(x, y, z, time)`` in any order (transposed to NIfTI order);
        ``attrs["affine"]`` gives the voxel-to-MNI matrix, ``attrs["tr"]`` the TR of a series.
    dtype : numpy dtype, optional
        Data dtype of the image; default the data's (bool becomes uint8, float16 float32).

    Returns
    -------
    nibabel.Nifti1Image
        sform/qform set to the affine (code 4, MNI, when axis-aligned; 1 otherwise); for a
        series, ``pixdim[4]`` is the TR in seconds.

    Notes
    -----
    Triggers computation.
    """
    func = "brainarr.io.to_nifti_image"
    if not isinstance(img, xr.DataArray):
        raise TypeError(f"{func}: expected an xarray.DataArray, got {type(img).__name__}")
    extra = [d for d in img.dims if d not in (*SPATIAL, TIME)]
    if extra or any(d not in img.dims for d in SPATIAL):
        raise DimensionError(
            f"{func}: {describe(img)} has dims {img.dims}; expected (x, y, z) or (x, y, z, time)"
            + (f"; select or reduce {extra} first (e.g. img.sel(subject=...))" if extra else "")
        )
    affine = get_affine(img, func=func)
    order = (*SPATIAL, TIME) if TIME in img.dims else SPATIAL
    data = np.asarray(img.transpose(*order).values)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype == np.float16:
        data = data.astype(np.float32)
    if dtype is not None:
        data = data.astype(dtype)
    nii = nib.Nifti1Image(data, affine)
    code = 4 if is_axis_aligned(affine) else 1
    nii.header.set_sform(affine, code=code)
    nii.header.set_qform(affine, code=code)
    if TIME in img.dims:
        nii.header.set_zooms((*nii.header.get_zooms()[:3], float(img.attrs.get("tr", 0.0))))
        nii.header.set_xyzt_units(xyz="mm", t="sec")
    else:
        nii.header.set_xyzt_units(xyz="mm")
    return nii


def to_nifti(img: xr.DataArray, path: PathLike, *, dtype: Any = None) -> Path:
    """Write a 3-D map or 4-D series to a NIfTI file with its affine and TR.

    Parameters
    ----------
    img : xarray.DataArray
        Dims ``(x, y, z)`` or ``(x, y, z, time)`` (any order; transposed to NIfTI order).
        The affine comes from ``attrs["affine"]``.
    path : str or path-like
        Output ``.nii`` or ``.nii.gz``; parent folders are created.
    dtype : numpy dtype, optional
        On-disk dtype; default the data's (bool is written as uint8).

    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    Triggers computation. The file is written to a temporary name and renamed, so a crash
    never leaves a half-written image under ``path``. Round trip with :func:`load_nifti`
    (same dtype) is exact in values, affine, coordinates and TR.
    """
    path = Path(path)
    if not _is_nifti(path):
        raise ValueError(f"{path}: output name must end in .nii or .nii.gz")
    nii = to_nifti_image(img, dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        nib.save(nii, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------- tables


def read_confounds(path: PathLike, *, columns: Sequence[str] | None = None, tr: float | None = None) -> xr.DataArray:
    """Read a confounds file: an fMRIPrep TSV or an SPM ``rp_*.txt`` (chosen by the name).

    Parameters
    ----------
    path : str or path-like
        ``*_desc-confounds_timeseries.tsv`` (:func:`read_confounds_tsv`) or a 6-column
        realignment file, ``rp_*.txt`` or any ``.txt`` (:func:`read_spm_motion`).
    columns : sequence of str, optional
        Columns of a TSV to keep (default: the six motion parameters, ``white_matter``, ``csf``).
    tr : float, optional
        Repetition time in s for the ``time`` coordinate.

    Returns
    -------
    xarray.DataArray (time, confound), float64
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"confounds file not found: {path}")
    if path.name.startswith("rp_") or path.suffix == ".txt":
        if columns is not None:
            return read_spm_motion(path, tr=tr).sel({CONFOUND: list(columns)})
        return read_spm_motion(path, tr=tr)
    return read_confounds_tsv(path, columns, tr=tr)


def read_confounds_tsv(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    *,
    tr: float | None = None,
) -> xr.DataArray:
    """Read confound regressors from an fMRIPrep ``*_desc-confounds_timeseries.tsv``.

    Parameters
    ----------
    path : str or path-like
        Tab-separated file with a header row (``n/a`` marks missing values).
    columns : sequence of str, optional
        Columns to read; default ``trans_x, trans_y, trans_z, rot_x, rot_y, rot_z,
        white_matter, csf``.
    tr : float, optional
        Repetition time in s; if given the ``time`` coordinate is in s, else the volume index.

    Returns
    -------
    xarray.DataArray (time, confound), float64
        With coordinate ``confound`` (column names) and ``units`` along it (mm, rad, ...),
        attrs ``source`` (the path).

    Raises
    ------
    MissingMetadataError
        If a requested column is not in the file (the message lists the file's columns).
    DataValidationError
        If a column has missing values other than the first row of a derivative column
        (``*_derivative1*``), which fMRIPrep leaves empty and is set to 0 here.
    """
    path = os.fspath(path)
    table = pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", "NaN", "nan", ""])
    columns = list(DEFAULT_TSV_COLUMNS if columns is None else columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise MissingMetadataError(
            f"read_confounds_tsv: {path} has no column(s) {missing}; available: {list(table.columns)}"
        )
    data = table[columns].to_numpy(dtype=np.float64, copy=True)
    for j, c in enumerate(columns):
        if "derivative" in c and data.shape[0] and np.isnan(data[0, j]):
            data[0, j] = 0.0
    bad = np.isnan(data)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, j])
        raise DataValidationError(
            f"read_confounds_tsv: {path} column {columns[j]!r} has missing values in rows "
            f"{rows[:10].tolist()}; only the first row of derivative columns may be n/a"
        )
    out = xr.DataArray(
        data,
        dims=(TIME, CONFOUND),
        coords={
            TIME: time_coord(data.shape[0], tr),
            CONFOUND: columns,
            "units": (CONFOUND, confound_units(columns)),
        },
        name="confounds",
        attrs={"source": path, "long_name": "confound regressors"},
    )
    if tr is not None:
        out.attrs["tr"] = float(tr)
    return out


def read_spm_motion(path: str | os.PathLike, *, tr: float | None = None) -> xr.DataArray:
    """Read SPM realignment parameters (``rp_*.txt``).

    Parameters
    ----------
    path : str or path-like
        Whitespace-separated text file, one row per volume, 6 columns: translations x, y, z
        in mm, then rotations (pitch, roll, yaw about x, y, z) in radians.
    tr : float, optional
        Repetition time in s; if given the ``time`` coordinate is in s, else the volume index.

    Returns
    -------
    xarray.DataArray (time, confound), float64
        Confounds ``trans_x, trans_y, trans_z, rot_x, rot_y, rot_z`` with a ``units``
        coordinate (``mm``, ``rad``), attrs ``source``.
    """
    path = os.fspath(path)
    data = np.loadtxt(path, ndmin=2, dtype=np.float64)
    if data.shape[1] != 6:
        raise DimensionError(
            f"read_spm_motion: {path} has {data.shape[1]} columns; SPM rp_*.txt files have 6 "
            "(3 translations in mm, 3 rotations in rad)"
        )
    if not np.all(np.isfinite(data)):
        row = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise DataValidationError(f"read_spm_motion: {path} has non-finite values in row {row}")
    return xr.DataArray(
        data,
        dims=(TIME, CONFOUND),
        coords={
            TIME: time_coord(data.shape[0], tr),
            CONFOUND: list(MOTION_PARAMS),
            "units": (CONFOUND, list(MOTION_UNITS)),
        },
        name="motion",
        attrs={"source": path, "long_name": "head motion (rigid-body realignment parameters)"}
        | ({"tr": float(tr)} if tr is not None else {}),
    )


def read_phenotypes(phenotypes: pd.DataFrame | PathLike) -> pd.DataFrame:
    """Read a phenotype table indexed by subject id.

    Parameters
    ----------
    phenotypes : DataFrame or path
        A DataFrame indexed by subject id, or a BIDS ``participants.tsv`` / a CSV whose
        ``participant_id`` (or first) column holds the ids.

    Returns
    -------
    pandas.DataFrame
        Indexed by subject id (str).
    """
    if isinstance(phenotypes, pd.DataFrame):
        table = phenotypes.copy()
    else:
        path = Path(phenotypes)
        if not path.exists():
            raise FileNotFoundError(f"phenotype table not found: {path}")
        sep = "\t" if path.suffix in (".tsv", ".txt") else ","
        table = pd.read_csv(path, sep=sep, na_values=["n/a"])
        key = "participant_id" if "participant_id" in table.columns else table.columns[0]
        table = table.set_index(key)
    table.index = table.index.map(str)
    duplicated = table.index[table.index.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"phenotype table lists subjects more than once: {duplicated}")
    return table


# --------------------------------------------------------------------------- discovery


def find_fmriprep(root: PathLike, *, space: str = "MNI152", task: str | None = None) -> pd.DataFrame:
    """Find preprocessed BOLD runs in an fMRIPrep derivatives folder.

    Parameters
    ----------
    root : path
        The derivatives folder (holding ``sub-*/[ses-*/]func/``).
    space : str, default "MNI152"
        Prefix of the ``space-`` entity to accept (``MNI152NLin2009cAsym``, ``MNI152NLin6Asym``...).
    task : str, optional
        Keep only this task (``task-<task>``).

    Returns
    -------
    pandas.DataFrame
        Indexed by subject id (``sub-XX``, with ``_ses-YY``/``_run-N`` appended when a subject
        has several runs), columns ``bold`` and ``confounds`` (path or None).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"fMRIPrep folder not found: {root}")
    pattern = re.compile(
        r"^(sub-[^_]+)(?:_(ses-[^_]+))?_task-([^_]+)(?:_.*)?_space-([^_]+)(?:_.*)?_desc-preproc_bold\.nii(\.gz)?$"
    )
    rows = []
    for bold in sorted(root.glob("sub-*/**/func/*_desc-preproc_bold.nii*")):
        match = pattern.match(bold.name)
        if not match or not match.group(4).startswith(space):
            continue
        if task is not None and match.group(3) != task:
            continue
        prefix = bold.name.split("_space-")[0]
        confounds = bold.parent / f"{prefix}_desc-confounds_timeseries.tsv"
        rows.append(
            {
                "participant": match.group(1),
                "entities": prefix,
                "bold": bold,
                "confounds": confounds if confounds.exists() else None,
            }
        )
    if not rows:
        raise FileNotFoundError(
            f"no '*_space-{space}*_desc-preproc_bold.nii[.gz]' files under {root}/sub-*/[ses-*/]func/"
        )
    table = pd.DataFrame(rows)
    several = table["participant"].duplicated(keep=False)
    ids = table["participant"].where(~several, table["entities"].str.replace(r"_task-[^_]+", "", regex=True))
    return table.assign(subject=ids).set_index("subject")[["bold", "confounds"]]


def find_dpabi(root: PathLike, *, functional: str | None = None) -> pd.DataFrame:
    """Find subjects in a RESTplus/DPABI working folder (one folder per subject).

    Parameters
    ----------
    root : path
        Either a DPABI working directory (holding ``FunImg*`` stage folders and
        ``RealignParameter/``) or directly a stage folder whose sub-folders are subjects.
    functional : str, optional
        Stage folder to read (``FunImgARCWF``, ``FunImgARCW``...); default the one with the
        longest name (the most processed stage).

    Returns
    -------
    pandas.DataFrame
        Indexed by subject folder name, columns ``bold`` (the subject's 4-D NIfTI) and
        ``confounds`` (its ``rp_*.txt`` or None).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DPABI folder not found: {root}")
    stages = sorted(p for p in root.glob("FunImg*") if p.is_dir())
    if functional is not None:
        stage = root / functional
        if not stage.is_dir():
            raise FileNotFoundError(f"{stage} does not exist; stages found: {[p.name for p in stages]}")
    elif stages:
        stage = max(stages, key=lambda p: len(p.name))
    else:
        stage = root
    rows = []
    for folder in sorted(p for p in stage.iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if _is_nifti(p))
        if not images:
            continue
        if len(images) > 1:
            raise ValueError(f"{folder} holds {len(images)} NIfTI files; expected one 4-D image per subject folder")
        rp = sorted((stage.parent / "RealignParameter" / folder.name).glob("rp_*.txt"))
        rows.append({"subject": folder.name, "bold": images[0], "confounds": rp[0] if rp else None})
    if not rows:
        raise FileNotFoundError(f"no subject folders with a NIfTI image under {stage}")
    return pd.DataFrame(rows).set_index("subject")


def _sources_table(sources: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Normalise the ``sources`` argument of :func:`ingest` to a table of bold/confounds paths."""
    participants = None
    if isinstance(sources, pd.DataFrame):
        table = sources
    elif isinstance(sources, Mapping):
        table = pd.DataFrame({"bold": pd.Series(dict(sources), dtype=object)})
    elif isinstance(sources, (str, os.PathLike)) and Path(sources).is_dir():
        root = Path(sources)
        if any(root.glob("sub-*/**/func/*_desc-preproc_bold.nii*")):
            table = find_fmriprep(root)
            tsv = root / "participants.tsv"
            participants = read_phenotypes(tsv) if tsv.exists() else None
        else:
            table = find_dpabi(root)
    elif isinstance(sources, (str, os.PathLike)):
        table = pd.DataFrame({"bold": [Path(sources)]}, index=[_subject_from_name(Path(sources))])
    elif isinstance(sources, Iterable):
        paths = [Path(p) for p in sources]
        table = pd.DataFrame({"bold": paths}, index=[_subject_from_name(p) for p in paths], dtype=object)
    else:
        raise TypeError(f"sources must be a mapping, a folder, a file or a list of files, got {type(sources).__name__}")
    table.index = table.index.map(str)
    duplicated = table.index[table.index.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"subject ids appear more than once in the sources: {duplicated}")
    if "confounds" not in table.columns:
        table = table.assign(confounds=None)
    return table, participants


def _subject_from_name(path: Path) -> str:
    match = re.search(r"(sub-[A-Za-z0-9]+)", path.name)
    return match.group(1) if match else re.sub(r"\.nii(\.gz)?$", "", path.name)


def ingest(
    sources: Any,
    store: str | os.PathLike,
    phenotypes: pd.DataFrame | PathLike | None = None,
    *,
    confounds: Mapping[str, Any] | None = None,
    confound_columns: Sequence[str] | None = None,
    mask: xr.DataArray | None = None,
    tr: float | None = None,
    chunks: str | Mapping[str, int] = "auto",
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Ingest subjects' BOLD (and confounds, phenotypes) into a Zarr cohort store.

    Subjects are appended one by one along ``subject``. A subject becomes visible to
    :func:`brainarr.open_cohort` only once all its data are written, so an interrupted ingest
    leaves the store as it was after the last complete subject; running the same call again
    skips the subjects already there and finishes the rest.

    Parameters
    ----------
    sources : mapping, folder, file or list of files
        ``{"sub-01": "sub-01_bold.nii.gz", ...}``; a DataFrame with ``bold`` (and optionally
        ``confounds``) columns indexed by subject; an fMRIPrep derivatives folder (BOLD in
        ``space-MNI152*``, confounds TSVs and ``participants.tsv`` are found); a RESTplus/DPABI
        working folder (one folder per subject, ``RealignParameter/`` for motion); or files.
    store : str or path-like
        Zarr store: local path or any fsspec URL (``memory://``, ``s3://``, ``gs://``).
    phenotypes : DataFrame or path, optional
        Table indexed by subject id (e.g. ``participants.tsv``); each column becomes a
        coordinate on ``subject`` (``group``, ``age``, ``sex``...). Every ingested subject must
        have a row.
    confounds : mapping, optional
        Per-subject confounds (path, DataFrame or DataArray ``(time, confound)``), overriding
        those found with the sources.
    confound_columns : sequence of str, optional
        Columns to keep from confound tables (default all; all subjects must share them).
    mask : xarray.DataArray (x, y, z), optional
        A group mask stored as ``mask`` with the cohort (on the same grid).
    tr : float, optional
        Repetition time (s) for images whose header lacks it.
    chunks : "auto" or mapping
        Spatial chunks of the stored BOLD (time is always one chunk).
    storage_options : mapping, optional
        Passed to fsspec for remote stores (credentials, endpoint).
    progress : bool, default False
        Show a progress bar per subject.

    Returns
    -------
    xarray.Dataset
        The cohort, opened lazily from the store (:func:`brainarr.open_cohort`).

    Raises
    ------
    GridMismatchError
        If a subject's grid, affine, TR or number of volumes differs from the cohort's; the
        message names the subject and the difference. Nothing is written in that case.
    MissingMetadataError
        If a subject has no phenotype row.
    DataValidationError
        If a subject's BOLD contains NaN or Inf (the subject is rolled back).
    """
    from brainarr import cohort as _cohort

    if isinstance(sources, xr.Dataset):
        return _ingest_dataset(sources, store, storage_options=storage_options, progress=progress)

    table, participants = _sources_table(sources)
    if phenotypes is None and participants is not None:
        phenotypes = participants
    pheno = read_phenotypes(phenotypes) if phenotypes is not None else None
    if pheno is not None:
        missing = [s for s in table.index if s not in pheno.index]
        if missing:
            raise MissingMetadataError(
                f"phenotypes have no row for subject(s) {missing}; add them to the table or drop them from sources"
            )

    images = {}
    for subject, row in table.iterrows():
        try:
            images[subject] = load_nifti(row["bold"], chunks=chunks, tr=tr)
        except (OSError, DimensionError, MissingMetadataError) as err:
            raise type(err)(f"subject {subject!r}: {err}") from err
        if images[subject].ndim != 4:
            raise DimensionError(f"subject {subject!r}: {row['bold']} is 3-D; ingest needs 4-D BOLD")

    confound_arrays: dict[Hashable, xr.DataArray | None] = {}
    for subject, row in table.iterrows():
        given = (confounds or {}).get(subject, row["confounds"])
        if given is not None and not isinstance(given, (xr.DataArray, pd.DataFrame)) and pd.isna(given):
            given = None
        confound_arrays[subject] = (
            None if given is None else _as_confounds(given, subject, images[subject], confound_columns)
        )
    with_conf = {s for s, c in confound_arrays.items() if c is not None}
    if with_conf and len(with_conf) != len(table):
        lacking = sorted(set(table.index) - with_conf)
        raise MissingMetadataError(f"confounds are given for some subjects but not for {lacking}")

    static = {"mask": mask} if mask is not None else {}
    subjects = {s: _subject_dataset(s, images[s], confound_arrays[s], pheno) for s in table.index}
    _write_subjects(subjects, store, static=static, storage_options=storage_options, progress=progress)
    return _cohort.open_cohort(store, storage_options=storage_options)


def _ingest_dataset(
    cohort: xr.Dataset, store, *, storage_options: Mapping[str, Any] | None, progress: bool
) -> xr.Dataset:
    """Write a cohort Dataset (e.g. a simulated one) subject by subject."""
    from brainarr import cohort as _cohort

    if SUBJECT not in cohort.dims or "bold" not in cohort:
        raise DimensionError("a cohort Dataset to ingest needs a 'bold' variable with a 'subject' dim")
    ids = [str(s) for s in cohort[SUBJECT].values]
    duplicated = sorted({s for s in ids if ids.count(s) > 1})
    if duplicated:
        raise ValueError(f"subject ids appear more than once in the cohort: {duplicated}")
    static = {name: var for name, var in cohort.data_vars.items() if SUBJECT not in var.dims}
    per_subject = cohort.drop_vars(list(static))
    subjects = {}
    for i, subject in enumerate(ids):
        ds = per_subject.isel({SUBJECT: slice(i, i + 1)})
        ds = ds.assign_coords({SUBJECT: np.array([subject], dtype=object)})
        ds["bold"].attrs.setdefault("source", cohort.attrs.get("source", ""))
        ds.attrs = {
            "tr": cohort["bold"].attrs.get("tr", cohort.attrs.get("tr")),
            "affine": cohort["bold"].attrs.get("affine", cohort.attrs.get("affine")),
        }
        subjects[subject] = ds
    extra = {k: v for k, v in cohort.attrs.items() if k not in ("tr", "affine")}
    _write_subjects(subjects, store, static=static, attrs=extra, storage_options=storage_options, progress=progress)
    return _cohort.open_cohort(store, storage_options=storage_options)


def _write_subjects(
    subjects: Mapping[str, xr.Dataset],
    store,
    *,
    static: Mapping[str, xr.DataArray],
    attrs: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None,
    progress: bool,
) -> None:
    """Take the store's lock, validate every pending subject against the cohort, append them."""
    from brainarr import cohort as _cohort

    writer = _cohort.CohortWriter(store, storage_options=storage_options)
    with writer.locked("ingest"):
        _append_pending(writer, subjects, static=static, attrs=attrs, progress=progress)


def _append_pending(
    writer,
    subjects: Mapping[str, xr.Dataset],
    *,
    static: Mapping[str, xr.DataArray],
    attrs: Mapping[str, Any] | None,
    progress: bool,
) -> None:
    """Under the store's lock: check the subjects not yet committed, then append them one by one."""
    import contextlib

    from brainarr import cohort as _cohort

    reference = writer.reference_dataset()
    pending = [s for s in subjects if s not in writer.completed]
    if not pending:
        return
    first = reference if reference is not None else subjects[pending[0]]
    for subject in pending:
        candidate = subjects[subject]
        bold = (
            candidate["bold"]
            .isel({SUBJECT: 0})
            .assign_attrs({**candidate["bold"].attrs, "tr": candidate.attrs["tr"], "affine": candidate.attrs["affine"]})
        )
        reference_bold = first["bold"].assign_attrs(
            {**first["bold"].attrs, "tr": first.attrs["tr"], "affine": first.attrs["affine"]}
        )
        _cohort.check_compatible(reference_bold, bold, subject)
        if ("confounds" in first) != ("confounds" in candidate):
            raise MissingMetadataError(
                f"subject {subject!r}: confounds are {'missing' if 'confounds' in first else 'present'}, "
                "unlike the rest of the cohort"
            )
        if "confounds" in first:
            ref_names = [str(c) for c in first["confounds"][CONFOUND].values]
            names = [str(c) for c in candidate["confounds"][CONFOUND].values]
            if names != ref_names:
                raise MissingMetadataError(
                    f"subject {subject!r}: confound columns {names} differ from the cohort's {ref_names}"
                )
    if progress:
        from dask.diagnostics import ProgressBar

        bar: Any = ProgressBar()
    for subject in pending:
        with bar if progress else contextlib.nullcontext():
            try:
                writer.append(subjects[subject], static=static, attrs=attrs)
            except OSError as err:  # a file that fails when read: name the subject too
                if f"subject {subject!r}" in str(err):
                    raise
                raise type(err)(f"subject {subject!r}: {err}") from err


def _as_confounds(value: Any, subject: str, bold: xr.DataArray, columns: Sequence[str] | None) -> xr.DataArray:
    if isinstance(value, xr.DataArray):
        arr = value
    elif isinstance(value, pd.DataFrame):
        arr = xr.DataArray(
            value.to_numpy(float),
            dims=(TIME, CONFOUND),
            coords={CONFOUND: np.array(list(value.columns), dtype=object)},
        )
    else:
        arr = read_confounds(value, columns=columns)
    if columns is not None and isinstance(value, (xr.DataArray, pd.DataFrame)):
        arr = arr.sel({CONFOUND: list(columns)})
    if arr.sizes[TIME] != bold.sizes[TIME]:
        raise ValueError(
            f"subject {subject!r}: confounds have {arr.sizes[TIME]} rows but the BOLD "
            f"({bold.attrs.get('source')}) has {bold.sizes[TIME]} volumes"
        )
    if not np.all(np.isfinite(np.asarray(arr.values, float))):
        raise ValueError(f"subject {subject!r}: confounds contain NaN or Inf values")
    return arr.astype(np.float32).assign_coords({TIME: bold[TIME].values})


def _subject_dataset(
    subject: str, bold: xr.DataArray, confounds: xr.DataArray | None, pheno: pd.DataFrame | None
) -> xr.Dataset:
    data_vars: dict[str, xr.DataArray] = {"bold": bold.expand_dims({SUBJECT: [subject]})}
    if confounds is not None:
        data_vars["confounds"] = confounds.expand_dims({SUBJECT: [subject]})
    ds = xr.Dataset(data_vars)
    ds = ds.assign_coords({SUBJECT: np.array([subject], dtype=object)})
    if pheno is not None:
        row = pheno.loc[subject]
        for column, value in row.items():
            if isinstance(value, str) or (value is not None and not isinstance(value, (int, float, np.number, bool))):
                arr = np.array([str(value)], dtype=object)
            else:
                arr = np.array([value], dtype=float)
            ds = ds.assign_coords({str(column): (SUBJECT, arr)})
    ds.attrs.update({k: bold.attrs[k] for k in ("affine", "tr")})
    ds["bold"].attrs.pop("affine", None)
    ds["bold"].attrs.pop("tr", None)
    ds["bold"].attrs.update({"source": bold.attrs.get("source", ""), "units": bold.attrs.get("units", "arbitrary")})
    return ds
