"""NIfTI <-> DataArray, fMRIPrep and RESTplus/DPABI inputs, and ingestion into a Zarr cohort store.

Reading is lazy: :func:`load_nifti` returns a dask-backed DataArray whose chunks are read from
the file only when computed. For an uncompressed ``.nii`` each chunk reads just its own bytes
through nibabel's memory-mapped array proxy. A ``.nii.gz`` cannot be read at random offsets:
each chunk decompresses the gzip stream from the start up to the last byte it needs (memory
stays bounded by the chunk, but the CPU cost of a chunk is up to one full decompression), so
for repeated work on gzipped inputs :func:`ingest` them once into a Zarr store.
"""

from __future__ import annotations

import csv
import io as _io
import logging
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
from brainarr._core.slices import header_time_unit as _time_unit
from brainarr._core.slices import header_tr as _tr_from_header
from brainarr._core.validation import MISSING_MARKERS, describe, get_affine
from brainarr.exceptions import (
    BrainarrError,
    DataValidationError,
    DimensionError,
    GridMismatchError,
    InputFileError,
    MissingMetadataError,
)

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

logger = logging.getLogger("brainarr")

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
# attrs key of a subject Dataset built by ingest: the NIfTI file to verify before appending
# (dropped by CohortWriter.append, which replaces the Dataset's attrs with the store state)
_VERIFY_FILE = "_brainarr_verify_file"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
# dims, variables and QC coordinates of a cohort: a phenotype column may not take these names
_RESERVED_NAMES = frozenset(
    {
        "subject", "x", "y", "z", "time", "confound", "seed", "units",
        "bold", "confounds", "mask",
        "mean_fd", "max_translation", "max_rotation", "excluded",
    }
)  # fmt: skip


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
            with np.errstate(all="ignore"):  # scaling overflow gives Inf, refused by the finite checks
                block = np.asarray(proxy[key], dtype=self.dtype)
        except (BrainarrError, Warning, MemoryError):
            raise
        except Exception as err:  # nibabel, gzip and zlib raise many types; name the file
            raise InputFileError(
                f"cannot read voxel data from {self.path} (truncated or corrupt file?): {err}; "
                "copy or download the file again"
            ) from err
        return block


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(_NIFTI_SUFFIXES)


def _check_complete(path: Path, header: nib.Nifti1Header, shape: tuple[int, ...]) -> None:
    """Raise if the file is shorter than its header says (a truncated download or copy)."""
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    if path.name.endswith(".gz"):
        size = path.stat().st_size
        if size < 18:
            raise InputFileError(f"{path} is truncated: {size} bytes is not a gzip stream; copy the file again")
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", fh.read(4))
        # ISIZE is the uncompressed length modulo 2**32 (RFC 1952); a truncated stream ends
        # in compressed bytes instead, which almost never match. Zero padding or several gzip
        # members also end otherwise: then the stream is decompressed once to decide.
        if isize != expected % 2**32 and isize < expected % 2**32:
            total = _verify_gzip(path)
            if total < expected:
                raise InputFileError(
                    f"{path} looks truncated: it decompresses to {total} bytes, the header needs {expected}; "
                    "copy the file again"
                )
    else:
        size = path.stat().st_size
        if size < expected:
            raise InputFileError(
                f"{path} is truncated: {size} bytes on disk, the header needs {expected} "
                f"(shape {shape}, {header.get_data_dtype()}); copy the file again"
            )


#: Longest plausible repetition time (s) of a header read at ingest; longer ones are refused.
_MAX_TR = 30.0


def _choose_tr(path: Path, header: nib.Nifti1Header, tr: float | None, *, header_first: bool) -> float:
    """The TR of a 4-D image: ``tr`` overrides (``load_nifti``) or fills in a missing header TR (``ingest``)."""
    if tr is not None:
        try:
            given = float(tr)
        except (TypeError, ValueError) as err:
            raise MissingMetadataError(f"{path}: tr={tr!r} is not a number of seconds") from err
        if not np.isfinite(given) or given <= 0:
            raise MissingMetadataError(f"{path}: tr={tr!r} must be a positive number of seconds")
    header_tr = _tr_from_header(header)
    if header_first and tr is None and header_tr is not None and header_tr > _MAX_TR:
        raise MissingMetadataError(
            f"{path}: the header's repetition time is {header_tr:g} s, longer than any resting-state protocol "
            f"(> {_MAX_TR:g} s): is it in ms but labelled as s? Fix the header's pixdim[4] and time unit "
            "(img.header.set_xyzt_units(t='sec') with the TR in s)"
        )
    if tr is None:
        if header_tr is None:
            raise MissingMetadataError(
                f"{path} has no repetition time in its header (pixdim[4] = {header['pixdim'][4]}); "
                "pass tr=... in seconds"
            )
        return header_tr
    if not header_first or header_tr is None or _time_unit(header) == "unknown":
        return given
    if not np.isclose(header_tr, given, rtol=1e-4, atol=0.0):
        raise MissingMetadataError(
            f"{path}: the header's repetition time is {header_tr:g} s but tr={given:g} was given; tr= only "
            "fills in headers that lack a TR. Drop tr= to use the header's value, or, if the header is wrong, "
            "fix it (e.g. with nibabel: img = nib.load(path); img.header.set_zooms((*img.header.get_zooms()[:3], "
            f"{given:g})); nib.save(img, path))"
        )
    return header_tr


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
        Repetition time in seconds. This low-level reader takes it over the header's value
        (an explicit override); it is required when the header has none. (:func:`ingest`
        differs: its ``tr`` only fills in headers that lack a TR.)
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
    InputFileError
        (an :class:`OSError`) If the file is not a NIfTI image, is truncated, has an unusable
        header (NaN/Inf or singular affine, an empty dimension, a complex or RGB data type), or
        if a chunk cannot be read when computed.
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
    Only the gzip trailer's size is checked here, not its CRC: :func:`ingest` verifies the
    whole stream before writing.

    Examples
    --------
    >>> import brainarr as ba
    >>> bold = ba.io.load_nifti("sub-01_bold.nii.gz")  # doctest: +SKIP
    >>> bold.sel(x=-57, y=-12, z=30, method="nearest")  # doctest: +SKIP
    """
    return _open_nifti(path, chunks=chunks, tr=tr, dtype=dtype, name=name, header_tr_first=False)


def _open_nifti(
    path: PathLike,
    *,
    chunks: str | Mapping[str, int],
    tr: float | None,
    dtype: Any,
    name: str | None,
    header_tr_first: bool,
) -> xr.DataArray:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIfTI file not found: {path}")
    if not _is_nifti(path):
        raise InputFileError(f"{path} is not a NIfTI file (expected a .nii or .nii.gz name)")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder, not a NIfTI file")
    try:
        img = nib.load(path)
        header = img.header
        full_shape = tuple(int(s) for s in img.shape)
        data_dtype = np.dtype(header.get_data_dtype())
    except (BrainarrError, Warning, MemoryError):
        raise
    except Exception as err:  # nibabel raises many types for a bad header
        raise InputFileError(f"{path} is not a readable NIfTI image: {err}") from err
    shape = full_shape
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (3, 4):
        raise DimensionError(f"{path} has {len(shape)} dimensions {shape}; expected a 3-D map or 4-D BOLD")
    if min(shape) < 1:
        raise InputFileError(f"{path}: the header gives an empty dimension (shape {shape}); the file is corrupt")
    if data_dtype.kind not in "biuf" or data_dtype.itemsize == 0:
        raise InputFileError(
            f"{path}: data type {data_dtype} is not supported (brainarr reads real-valued images); "
            "convert the image to float32"
        )
    try:
        _check_complete(path, header, full_shape)
        with np.errstate(all="ignore"):
            affine = np.asarray(img.affine, float)
    except (BrainarrError, Warning, MemoryError):
        raise
    except Exception as err:
        raise InputFileError(f"{path}: cannot interpret the NIfTI header: {err}") from err
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or np.abs(affine).max() > 1e6:
        raise InputFileError(
            f"{path}: the header's affine (sform/qform) has NaN, Inf or implausibly large (> 1e6 mm) entries; "
            "fix the header (e.g. with nibabel's img.set_sform) or take the image from its source again"
        )
    with np.errstate(all="ignore"):
        singular = not np.isfinite(np.linalg.cond(affine[:3, :3])) or np.linalg.cond(affine[:3, :3]) > 1e8
    if singular:
        raise InputFileError(
            f"{path}: the header's affine (sform/qform) is singular (a zero voxel size?): "
            f"{affine[:3, :3].tolist()}; fix the header or take the image from its source again"
        )
    coords = spatial_coords(affine, shape[:3], source=str(path))
    attrs: dict[str, Any] = {
        "affine": affine.tolist(),
        "units": "arbitrary",
        "source": str(path),
    }
    dims: tuple[str, ...] = SPATIAL
    if len(shape) == 4:
        dims = (*SPATIAL, TIME)
        tr_value = _choose_tr(path, header, tr, header_first=header_tr_first)
        with np.errstate(all="ignore"):
            times = np.arange(shape[3]) * tr_value
        if not np.all(np.isfinite(times)):
            raise MissingMetadataError(f"{path}: repetition time {tr_value:g} s is implausible; pass tr=... in seconds")
        attrs["tr"] = tr_value
        coords[TIME] = xr.Variable(TIME, times, {"units": "s", "long_name": "time"})

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


def _verify_gzip(path: Path, *, block: int = 1 << 20, out: int = 1 << 22) -> int:
    """Decompress every member of a gzip file in bounded memory; raise unless each CRC-32 and ISIZE match.

    Returns the total uncompressed size.

    zlib checks each member's trailer itself (``wbits=31``). Zero padding after a member is
    allowed, as :mod:`gzip` allows it; the output is discarded ``out`` bytes at a time.
    """
    decomp = zlib.decompressobj(31)
    members = 0
    total = 0
    try:
        with open(path, "rb") as fh:
            pending = b""
            while True:
                if not pending:
                    pending = fh.read(block)
                    if not pending:
                        break
                if decomp.eof:  # a member ended: zero padding or the next member follows
                    pending = pending.lstrip(b"\0")
                    if not pending:
                        continue
                    decomp = zlib.decompressobj(31)
                    members += 1
                total += len(decomp.decompress(pending, out))
                pending = decomp.unused_data if decomp.eof else decomp.unconsumed_tail
    except zlib.error as err:
        text = str(err)
        if "incorrect data check" in text:
            problem = "corrupt: CRC check failed (the decompressed data do not match the gzip checksum)"
        elif "incorrect length check" in text:
            problem = "corrupt: the gzip length check (ISIZE) failed"
        elif members:
            problem = f"corrupt: unexpected data after the end of the gzip stream ({text})"
        else:
            problem = f"corrupt: not a valid gzip stream ({text})"
        raise InputFileError(
            f"{path} is {problem}; the file was damaged on disk or in transfer: copy or download it again"
        ) from err
    except OSError as err:
        raise InputFileError(f"{path} cannot be read: {err}") from err
    if not decomp.eof:
        raise InputFileError(
            f"{path} is truncated or corrupt: the gzip stream ends before its end marker; copy or download it again"
        )
    return total


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
        motion = read_spm_motion(path, tr=tr)
        if columns is not None:
            unknown = [c for c in columns if c not in MOTION_PARAMS]
            if unknown:
                raise MissingMetadataError(
                    f"read_confounds: {path} is an SPM realignment file with columns {list(MOTION_PARAMS)}; "
                    f"it has no {unknown}"
                )
            return motion.sel({CONFOUND: list(columns)})
        return motion
    return read_confounds_tsv(path, columns, tr=tr)


def _read_text(path: Path, what: str) -> str:
    """The text of a table file; :class:`InputFileError` naming it if it is binary, not UTF-8 or empty."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder, not a {what}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputFileError(f"{path}: cannot read the {what}: {err}") from err
    if b"\0" in raw:
        raise InputFileError(f"{path} holds binary data (NUL bytes), not a text {what}; is it the right file?")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputFileError(
            f"{path} is not UTF-8 text (byte {err.start} is {raw[err.start : err.start + 1]!r}): binary data, "
            f"or another encoding; save the {what} as UTF-8 text"
        ) from err
    if not text.strip():
        raise InputFileError(f"{path} is empty; expected a {what} with a header row")
    return text


_SEPARATORS = {"\t": "tab", ",": "comma", ";": "semicolon"}


def _read_table(path: Path, *, sep: str, what: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header (stripped names), rows of cells and their line numbers of a delimited text table.

    Raises :class:`InputFileError` naming the file for binary or empty files, a wrong
    delimiter (a one-column header holding another separator) and ragged rows.
    """
    text = _read_text(path, what)
    rows: list[list[str]] = []
    lines: list[int] = []
    reader = csv.reader(_io.StringIO(text, newline=""), delimiter=sep)
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            rows.append(fields)
            lines.append(reader.line_num)
    except csv.Error as err:
        raise InputFileError(f"{path}: malformed {what} near line {reader.line_num}: {err}") from err
    header = [h.strip() for h in rows[0]]
    if len(header) == 1:
        for other, label in _SEPARATORS.items():
            if other != sep and header[0].count(other) >= 1:
                raise InputFileError(
                    f"{path} does not look {_SEPARATORS[sep]}-separated: its header is one column "
                    f"{header[0][:80]!r} holding {header[0].count(other)} {label}(s); save the {what} "
                    f"{_SEPARATORS[sep]}-separated"
                    + (" (or give it a .csv name if it is comma-separated)" if sep == "\t" else "")
                    + (" (or give it a .tsv name if it is tab-separated)" if sep == "," else "")
                )
    for fields, line in zip(rows[1:], lines[1:], strict=True):
        if len(fields) != len(header):
            raise InputFileError(
                f"{path}: line {line} has {len(fields)} fields but the header (line {lines[0]}) has "
                f"{len(header)}: a ragged row (a {_SEPARATORS.get(sep, repr(sep))} missing or too many); "
                "fix that line (leave a cell empty or write n/a for a missing value)"
            )
    return header, rows[1:], lines[1:]


def _parse_numbers(cells: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Floats of text cells (NaN for missing markers) and a mask of the cells that are not finite numbers."""
    s = pd.Series(list(cells), dtype=object).map(lambda c: str(c).strip())
    missing = s.map(lambda c: c.lower() in MISSING_MARKERS).to_numpy(dtype=bool)
    numeric = s.map(lambda c: re.fullmatch(_NUMBER, c) is not None).to_numpy(dtype=bool)
    values = np.full(len(s), np.nan)
    if numeric.any():
        values[numeric] = np.asarray(s[numeric].tolist(), dtype=np.float64)
    bad = ~(missing | numeric) | np.isinf(values)
    return values, bad


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
    InputFileError
        (an :class:`OSError`) If the file is empty, binary, not UTF-8, not tab-separated, has
        ragged rows or no data rows, or names a requested column twice.
    MissingMetadataError
        If a requested column is not in the file (the message lists the file's columns).
    DataValidationError
        If a requested column holds text or an infinite value, or has missing values other
        than the first row of a derivative column (``*_derivative1*``), which fMRIPrep leaves
        empty and is set to 0 here.
    """
    path = os.fspath(path)
    header, rows, lines = _read_table(Path(path), sep="\t", what="confounds table")
    if not rows:
        raise InputFileError(f"read_confounds_tsv: {path} has a header but no rows (one row per volume expected)")
    columns = list(DEFAULT_TSV_COLUMNS if columns is None else columns)
    missing = [c for c in columns if c not in header]
    if missing:
        raise MissingMetadataError(f"read_confounds_tsv: {path} has no column(s) {missing}; available: {header}")
    twice = sorted({c for c in columns if header.count(c) > 1})
    if twice:
        raise InputFileError(f"read_confounds_tsv: {path} has column(s) {twice} more than once in its header")
    data = np.empty((len(rows), len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        k = header.index(c)
        cells = [r[k] for r in rows]
        data[:, j], bad = _parse_numbers(cells)
        if bad.any():
            where = np.flatnonzero(bad)[:5]
            found = ", ".join(f"row {i} (line {lines[i]}) {_short(cells[i].strip())}" for i in where)
            raise DataValidationError(
                f"read_confounds_tsv: {path} column {c!r} holds {int(bad.sum())} value(s) that are not finite "
                f"numbers: {found}; fix them (n/a marks a missing value)"
            )
    for j, c in enumerate(columns):
        if "derivative" in c and data.shape[0] and np.isnan(data[0, j]):
            data[0, j] = 0.0
    bad = np.isnan(data)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        rows_bad = np.flatnonzero(bad[:, j])
        raise DataValidationError(
            f"read_confounds_tsv: {path} column {columns[j]!r} has missing values in rows "
            f"{rows_bad[:10].tolist()}; only the first row of derivative columns may be n/a"
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
        in mm, then rotations (pitch, roll, yaw about x, y, z) in radians. ``#`` starts a
        comment; blank lines are skipped.
    tr : float, optional
        Repetition time in s; if given the ``time`` coordinate is in s, else the volume index.

    Returns
    -------
    xarray.DataArray (time, confound), float64
        Confounds ``trans_x, trans_y, trans_z, rot_x, rot_y, rot_z`` with a ``units``
        coordinate (``mm``, ``rad``), attrs ``source``.

    Raises
    ------
    InputFileError
        (an :class:`OSError`) If the file is empty, binary, not UTF-8 or has ragged rows.
    DimensionError
        If the rows do not have 6 values.
    DataValidationError
        If a value is not a number (a header line, a comma-separated file) or is not finite.
    """
    path = os.fspath(path)
    text = _read_text(Path(path), "realignment parameter file")
    numbered = []
    for lineno, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if content:
            numbered.append((lineno, content.split()))
    if not numbered:
        raise InputFileError(f"read_spm_motion: {path} holds no values (only comments or blank lines)")
    first_line, first = numbered[0]
    for lineno, fields in numbered:
        if len(fields) != len(first):
            raise InputFileError(
                f"read_spm_motion: {path}: line {lineno} has {len(fields)} values but line {first_line} has "
                f"{len(first)}: a ragged row; each line holds the 6 realignment parameters of one volume"
            )
    cells = [c for _, fields in numbered for c in fields]
    values, bad = _parse_numbers(cells)
    bad &= ~np.isinf(values)  # Inf is a number: reported as non-finite below
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        lineno = numbered[i // len(first)][0]
        raise DataValidationError(
            f"read_spm_motion: {path}: line {lineno} holds {_short(cells[i])}, not a number; SPM rp_*.txt files "
            "hold only whitespace-separated numbers (no header, no commas): fix or remove that line"
        )
    data = values.reshape(len(numbered), len(first))
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


def read_phenotypes(phenotypes: pd.DataFrame | PathLike, *, subjects: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a phenotype table indexed by subject id.

    Parameters
    ----------
    phenotypes : DataFrame or path
        A DataFrame indexed by subject id, or a BIDS ``participants.tsv`` (``.tsv``/``.txt``:
        tab-separated) / a CSV (any other name: comma-separated) whose ``participant_id`` (or
        first) column holds the ids.
    subjects : sequence of str, optional
        Subjects that must each have a row (a :class:`MissingMetadataError` names those that
        do not).

    Returns
    -------
    pandas.DataFrame
        Indexed by subject id (str). Each column is either numeric (missing values NaN) or
        text (str, missing values NaN).

    Raises
    ------
    InputFileError
        (an :class:`OSError`) If the file is empty, binary, not UTF-8, has the wrong delimiter,
        ragged rows or no subject rows.
    DataValidationError
        If a column holds mostly numbers but some other text (``"4o"``, ``"unknown"``: the
        message names the column, subjects and values), an infinite number, a name used twice,
        no name (while holding values), a name a cohort reserves (``subject``, ``x``, ``y``,
        ``z``, ``time``, ``confound``, ``seed``, ``units``,
        ``bold``, ``confounds``, ``mask``, ``mean_fd``, ``max_translation``,
        ``max_rotation``, ``excluded``) or a name Zarr cannot store (with ``/``, or starting
        with ``.`` or ``__``); or if a subject id is missing or listed twice.

    Notes
    -----
    Leading and trailing whitespace is stripped from subject ids, column names and text
    cells: ``" control"`` is ``"control"`` (otherwise the subject would silently drop out of
    every group comparison). Cells that are empty or a missing marker (``n/a``, BIDS's, and
    ``NA``, ``NaN``, ``null``, ``None``, any case) are missing (NaN). A column of a file whose
    values are all numbers or missing is numeric; one that is mostly numbers with some text
    is refused (fix the value, or leave it empty / ``n/a`` when it is missing); otherwise it
    is text. A DataFrame's numeric columns stay numeric and its text columns text (numbers
    in them count as in a file). A file's unnamed columns without any value (a trailing
    separator) are dropped.
    """
    if isinstance(phenotypes, pd.DataFrame):
        source = "the phenotype DataFrame"
        names = [str(c).strip() for c in phenotypes.columns]
        columns = [phenotypes.iloc[:, j] for j in range(phenotypes.shape[1])]
        ids = list(phenotypes.index)
        from_file = False
        index_name = phenotypes.index.name
    elif isinstance(phenotypes, (str, os.PathLike)):
        path = Path(phenotypes)
        if not path.exists():
            raise FileNotFoundError(f"phenotype table not found: {path}")
        source = str(path)
        sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
        header, rows, _ = _read_table(path, sep=sep, what="phenotype table")
        if not rows:
            raise InputFileError(f"{path} has a header but no subject rows; add one row per subject")
        keep = [j for j, h in enumerate(header) if h or any(r[j].strip() for r in rows)]
        header = [header[j] for j in keep]
        rows = [[r[j] for j in keep] for r in rows]
        if "" in header:
            raise DataValidationError(
                f"{source}: column {header.index('') + 1} holds values but has no name in the header; name it"
            )
        _check_unique_names(header, source)
        index_name = "participant_id" if "participant_id" in header else header[0]
        k = header.index(index_name)
        ids = [r[k] for r in rows]
        names = [h for j, h in enumerate(header) if j != k]
        columns = [pd.Series([r[j] for r in rows], dtype=object) for j in range(len(header)) if j != k]
        from_file = True
    else:
        raise TypeError(f"phenotypes must be a DataFrame or a path, got {type(phenotypes).__name__}")
    _check_unique_names(names, source)
    for name in names:
        _check_column_name(name, source)
    ids = _phenotype_ids(ids, source)
    data = {
        name: _phenotype_column(name, column, ids, source, from_file)
        for name, column in zip(names, columns, strict=True)
    }
    table = pd.DataFrame(data, index=pd.Index(ids, dtype=object, name=index_name))
    missing = [str(s) for s in (subjects or []) if str(s) not in table.index]
    if missing:
        raise MissingMetadataError(
            f"phenotypes have no row for subject(s) {missing} in {source}; add rows for them or drop the subjects"
        )
    return table


def _check_unique_names(names: Sequence[str], source: str) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataValidationError(
            f"{source}: phenotype column name(s) {twice} appear more than once (after stripping spaces); "
            "give each column a distinct name"
        )


def _check_column_name(name: str, source: str) -> None:
    if name in _RESERVED_NAMES:
        raise DataValidationError(
            f"{source}: phenotype column {name!r} has a name reserved for the cohort's own dims, variables "
            f"and QC coordinates ({', '.join(sorted(_RESERVED_NAMES))}); rename the column (e.g. to "
            f"'{name}_label')"
        )
    if not name or "/" in name or name.startswith((".", "__")) or name == "zarr.json":
        raise DataValidationError(
            f"{source}: phenotype column {name!r} cannot be stored as a Zarr array name (no '/', no leading "
            "'.' or '__'); rename the column"
        )


def _phenotype_ids(ids: Sequence[Any], source: str) -> list[str]:
    subjects = [str(i).strip() for i in ids]
    blank = [n for n, s in enumerate(subjects, 1) if s.lower() in MISSING_MARKERS]
    if blank:
        raise DataValidationError(
            f"{source}: data row(s) {blank[:10]} have no subject id (empty or n/a); give every row its subject id"
        )
    duplicated = sorted({s for s in subjects if subjects.count(s) > 1})
    if duplicated:
        raise DataValidationError(
            f"phenotype table {source} lists subjects more than once: {duplicated}; keep one row per subject"
        )
    return subjects


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: float | int) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except OverflowError:
        return False


def _phenotype_column(name: str, column: pd.Series, subjects: list[str], source: str, from_file: bool) -> pd.Series:
    """One phenotype column as numbers (NaN missing) or stripped text (NaN missing); see read_phenotypes."""
    index = pd.Index(subjects, dtype=object)
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if pd.api.types.is_bool_dtype(column.dtype):
        return pd.Series(column.to_numpy(), index=index)
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_complex_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            found = ", ".join(f"subject {subjects[i]!r}: {values[i]}" for i in infinite[:10])
            raise DataValidationError(
                f"{source}: phenotype column {name!r} holds infinite values ({found}); fix the value or leave it "
                "empty / n/a for missing"
            )
        return pd.Series(column.to_numpy(), index=index)
    kinds, parsed = [], []
    for value in column.tolist():
        if value is None or value is pd.NA or value is pd.NaT:
            kinds.append("missing")
            parsed.append(np.nan)
        elif isinstance(value, (bool, np.bool_)):
            kinds.append("text")
            parsed.append(str(value))
        elif isinstance(value, (int, float, np.integer, np.floating)):
            if isinstance(value, (float, np.floating)) and np.isnan(value):
                kinds.append("missing")
                parsed.append(np.nan)
            else:
                value = value.item() if isinstance(value, np.generic) else value
                finite = _finite(value)
                kinds.append("number" if finite else "infinite")
                parsed.append(value if isinstance(value, float) or abs(value) < 2**62 or not finite else float(value))
        else:
            text = str(value).strip()
            if text.lower() in MISSING_MARKERS:
                kinds.append("missing")
                parsed.append(np.nan)
            elif re.fullmatch(_NUMBER, text):
                number: float | int = float(text)  # a decimal too large for a float is inf
                if re.fullmatch(r"[+-]?\d+", text) and abs(int(text)) < 2**62:
                    number = int(text)
                kinds.append("numeric text" if _finite(number) else "infinite")
                parsed.append((number, text))
            else:
                kinds.append("text")
                parsed.append(text)
    n_text = kinds.count("text")
    n_num = kinds.count("number") + kinds.count("numeric text") + kinds.count("infinite")
    numeric = n_text == 0 and (from_file or "number" in kinds or n_num == 0)
    if (n_text and n_num > n_text) or (numeric and "infinite" in kinds):
        bad = [i for i, k in enumerate(kinds) if k in ("text", "infinite")]
        shown = ", ".join(
            f"subject {subjects[i]!r}: {_short(parsed[i][1] if isinstance(parsed[i], tuple) else parsed[i])}"
            for i in bad[:10]
        ) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise DataValidationError(
            f"{source}: phenotype column {name!r} holds numbers ({n_num} of {n_num + n_text} values) but "
            f"{len(bad)} value(s) are not finite numbers: {shown}; fix the value or leave it empty / n/a for "
            "missing (missing markers: '', n/a, NA, NaN, null, None)"
        )
    if numeric:
        numbers = [p[0] if isinstance(p, tuple) else p for p in parsed]
        integral = bool(numbers) and all(isinstance(x, int) for x in numbers)
        return pd.Series(np.asarray(numbers, dtype=np.int64 if integral else np.float64), index=index)
    texts = [
        np.nan if k == "missing" else (p[1] if isinstance(p, tuple) else str(p))
        for k, p in zip(kinds, parsed, strict=True)
    ]
    return pd.Series(texts, index=index, dtype=object)


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
    # Our own pattern, not nilearn.interfaces.bids.parse_bids_filename: nilearn returns its
    # entities layout only from 0.13 (we support 0.10.3), accepts any entity order, turns a
    # malformed part into a None entity or a truncated label ("task-rest-x" -> "rest"), and
    # takes about 4 times as long (5.6 vs 1.5 us a name, benchmarks/helpers.py).
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


# DPABI/DPARSF stage letters after "FunImg", in processing order (e.g. FunImgARCWSF)
_DPABI_STEPS = {
    "A": "slice timing",
    "R": "realigned",
    "C": "nuisance covariates regressed",
    "W": "normalised (warped) to MNI",
    "S": "smoothed",
    "D": "detrended",
    "F": "band-pass filtered",
}


def _dpabi_stage(name: str) -> tuple[str | None, str]:
    """``(steps, why unsuitable or "")`` of a stage folder name; steps None when not a DPABI name."""
    match = re.fullmatch(r"FunImg([A-Za-z]*)", name)
    if match is None:
        return None, "not a DPABI stage name"
    steps = match.group(1).replace("global", "C")  # FunImgARglobalCW: covariates incl. the global signal
    unknown = sorted(set(steps) - set(_DPABI_STEPS))
    if unknown:
        return None, f"unrecognised step letters {''.join(unknown)!r}"
    problems = []
    if "F" in steps:
        problems.append("band-pass filtered")
    if "S" in steps:
        problems.append("smoothed")
    if "W" not in steps:
        problems.append("not normalised to MNI (no W)")
    return steps, ", ".join(problems)


def find_dpabi(root: PathLike, *, functional: str | None = None) -> pd.DataFrame:
    """Find subjects in a RESTplus/DPABI working folder (one folder per subject).

    Parameters
    ----------
    root : path
        Either a DPABI working directory (holding ``FunImg*`` stage folders and
        ``RealignParameter/``) or directly a stage folder whose sub-folders are subjects.
    functional : str, optional
        Stage folder to read (``FunImgARCW``, ``FunImgARW``...), taken as given. By default
        the stage is chosen by the rule below.

    Returns
    -------
    pandas.DataFrame
        Indexed by subject folder name, columns ``bold`` (the subject's 4-D NIfTI) and
        ``confounds`` (its ``rp_*.txt`` or None).

    Raises
    ------
    FileNotFoundError
        If ``root`` or ``functional`` does not exist, or no subject folder holds an image.
    DataValidationError
        If ``FunImg*`` stages exist but none is suitable by the rule below (the message lists
        each stage and why); pass ``functional=`` to read one anyway.

    Notes
    -----
    DPABI names a stage by the steps applied after ``FunImg``: ``A`` slice timing, ``R``
    realignment, ``C`` nuisance covariates regressed (``global`` when the global signal is
    among them), ``W`` normalisation to MNI, ``S`` smoothing, ``D`` detrending, ``F``
    band-pass filtering. brainarr does its own nuisance regression, filtering and smoothing,
    and ALFF/fALFF need the unfiltered signal (DPABI computes them from ``FunImgARCW``, ReHo
    from ``FunImgARCWF``), so by default the stage read is one that is normalised (``W``),
    not smoothed (no ``S``) and not band-pass filtered (no ``F``): a stage without ``C`` is
    preferred (``FunImgARW`` over ``FunImgARCW``; regressing again covariates that DPABI
    already removed only projects onto the same space), then the one with the most steps.
    The folder chosen is logged (``brainarr`` logger, INFO). Stages with other letters
    (``FunImgARCWFsym``) are never chosen by default.
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
        judged = {p: _dpabi_stage(p.name) for p in stages}
        suitable = [p for p, (steps, why) in judged.items() if steps is not None and not why]
        if not suitable:
            listed = "; ".join(f"{p.name} ({why})" for p, (_, why) in judged.items())
            raise DataValidationError(
                f"{root}: no DPABI stage folder brainarr can read by default: {listed}. brainarr needs BOLD "
                "normalised to MNI (W) but neither smoothed (S) nor band-pass filtered (F): it filters and "
                "smooths itself, and ALFF needs the unfiltered signal. Run DPABI up to normalisation (e.g. "
                f"FunImgARCW), or pass functional='{stages[-1].name}' to read a stage anyway"
            )
        stage = max(suitable, key=lambda p: ("C" not in (judged[p][0] or ""), len(judged[p][0] or ""), p.name))
        logger.info(
            "find_dpabi: reading stage %s (%s); other stages: %s",
            stage.name,
            ", ".join(_DPABI_STEPS[c] for c in dict.fromkeys(judged[stage][0] or "")),
            [p.name for p in stages if p != stage],
        )
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
        elif ((root / "FunRaw").is_dir() and not any(root.glob("FunImg*W*"))) or (
            any(root.glob("sub-*/**/func/*_bold.nii*")) and any(root.glob("sub-*/**/anat/*_T1w.nii*"))
        ):
            raise InputFileError(
                f"{root} holds raw scanner data (native EPI and T1 images, not normalised): preprocess and ingest "
                "it with brainarr.raw.ingest (command line: brainarr ingest --raw)"
            )
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
    skips the subjects already there and finishes the rest. Every check below is made for
    all the subjects to write before the first one is appended.

    Parameters
    ----------
    sources : mapping, folder, file or list of files
        ``{"sub-01": "sub-01_bold.nii.gz", ...}``; a DataFrame with ``bold`` (and optionally
        ``confounds``) columns indexed by subject; an fMRIPrep derivatives folder (BOLD in
        ``space-MNI152*``, confounds TSVs and ``participants.tsv`` are found); a RESTplus/DPABI
        working folder (one folder per subject, ``RealignParameter/`` for motion; the stage
        is chosen as :func:`find_dpabi` says); or files.
    store : str or path-like
        Zarr store: local path or any fsspec URL (``memory://``, ``s3://``, ``gs://``).
    phenotypes : DataFrame or path, optional
        Table indexed by subject id (e.g. ``participants.tsv``), read by
        :func:`read_phenotypes` (whitespace stripped, ``n/a`` missing, mixed number/text
        columns refused); each column becomes a coordinate on ``subject`` (``group``,
        ``age``, ``sex``...). Every ingested subject must have a row. Numeric columns are
        stored as float64 (missing: NaN), text columns as strings (missing: ``"n/a"``). The
        columns of a store are fixed by its first ingest: appending subjects with other
        columns is refused.
    confounds : mapping, optional
        Per-subject confounds (path, DataFrame or DataArray ``(time, confound)``), overriding
        those found with the sources.
    confound_columns : sequence of str, optional
        Columns to keep from confound tables (default all; all subjects must share them).
    mask : xarray.DataArray (x, y, z), optional
        A group mask stored as ``mask`` (bool) with the cohort. It must be boolean or hold
        only 0 and 1 (no NaN), set at least one voxel, and be on the BOLD's grid: same shape,
        same affine (``attrs["affine"]``, within 1e-4) and same coordinates where it has them
        (e.g. :func:`load_nifti` of a mask file). It is written with the first subject; when
        appending to a store, it must equal the stored mask.
    tr : float, optional
        Repetition time (s) for images whose header lacks one (``pixdim[4]`` zero, NaN, or
        with time unit "unknown"). Unlike :func:`load_nifti`'s ``tr``, it never overrides a
        valid header TR: a header TR that differs is an error.
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
        If a subject's grid, affine, TR or number of volumes differs from the cohort's, or the
        mask is on another grid; the message names the subject and the difference.
    MissingMetadataError
        If a subject has no phenotype row, a header TR differs from ``tr``, or the phenotype
        columns differ from those of the store appended to.
    DataValidationError
        If the mask is not 0/1, or a phenotype table is malformed (:func:`read_phenotypes`),
        or a subject's BOLD is constant (all zero, say), or contains NaN or Inf (found while
        writing: the subject is rolled back).
    InputFileError
        (an :class:`OSError`) If an input file is unreadable, truncated or corrupt: every
        ``.nii.gz`` to write is decompressed once in full first and its gzip CRC-32 and
        length checked (about the cost of one more read of the file).

    Nothing is written when one of these is raised before writing.
    """
    from brainarr import cohort as _cohort

    if isinstance(sources, xr.Dataset):
        return _ingest_dataset(sources, store, storage_options=storage_options, progress=progress)

    table, participants = _sources_table(sources)
    if phenotypes is None and participants is not None:
        phenotypes = participants
    pheno = read_phenotypes(phenotypes, subjects=list(table.index)) if phenotypes is not None else None

    images = {}
    for subject, row in table.iterrows():
        try:
            images[subject] = _open_nifti(
                row["bold"], chunks=chunks, tr=tr, dtype=np.float32, name=None, header_tr_first=True
            )
        except (OSError, DimensionError, MissingMetadataError) as err:
            raise type(err)(f"subject {subject!r}: {err}") from err
        if images[subject].ndim != 4:
            raise DimensionError(f"subject {subject!r}: {row['bold']} is 3-D; ingest needs 4-D BOLD")

    confound_arrays: dict[Hashable, xr.DataArray | None] = {}
    for subject, row in table.iterrows():
        given = (confounds or {}).get(subject, row["confounds"])
        if given is not None and not isinstance(given, (xr.DataArray, pd.DataFrame)) and pd.isna(given):
            given = None
        try:
            confound_arrays[subject] = (
                None if given is None else _as_confounds(given, subject, images[subject], confound_columns)
            )
        except (BrainarrError, OSError) as err:
            if f"subject {subject!r}" in str(err):
                raise
            raise type(err)(f"subject {subject!r}: {err}") from err
    with_conf = {s for s, c in confound_arrays.items() if c is not None}
    if with_conf and len(with_conf) != len(table):
        lacking = sorted(set(table.index) - with_conf)
        raise MissingMetadataError(f"confounds are given for some subjects but not for {lacking}")

    static = {}
    if mask is not None and len(table):
        static["mask"] = _checked_mask(mask, images[table.index[0]], table.index[0])
    subjects = {s: _subject_dataset(s, images[s], confound_arrays[s], pheno) for s in table.index}
    for s, ds in subjects.items():
        ds.attrs[_VERIFY_FILE] = str(table.loc[s, "bold"])
    _write_subjects(subjects, store, static=static, storage_options=storage_options, progress=progress)
    return _cohort.open_cohort(store, storage_options=storage_options)


def _checked_mask(mask: Any, bold: xr.DataArray, subject: str) -> xr.DataArray:
    """The ``mask=`` of :func:`ingest` as bool on the grid of ``bold``, or an error naming the problem."""
    from brainarr import cohort as _cohort

    if not isinstance(mask, xr.DataArray):
        raise TypeError(f"ingest: mask must be an xarray.DataArray (x, y, z), got {type(mask).__name__}")
    label = f"mask {describe(mask)}"
    if set(mask.dims) != set(SPATIAL) or mask.ndim != 3:
        raise DimensionError(
            f"ingest: {label} has dims {mask.dims}; expected (x, y, z) (select one volume or seed first)"
        )
    try:
        _cohort.check_compatible_mask(mask, bold, subject)
    except GridMismatchError as err:
        raise GridMismatchError(f"{err}; resample the mask onto the BOLD grid (nearest neighbour)") from err
    where = f"the BOLD of subject {subject!r} ({bold.attrs.get('source', '')})"
    if "affine" in mask.attrs:
        try:
            affine = np.asarray(mask.attrs["affine"], dtype=float)
        except (TypeError, ValueError) as err:
            raise MissingMetadataError(f"ingest: {label}: attrs['affine'] is not a 4 x 4 matrix") from err
        reference = np.asarray(bold.attrs["affine"], float)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise MissingMetadataError(f"ingest: {label}: attrs['affine'] must be a finite 4 x 4 matrix")
        if not np.allclose(affine, reference, atol=1e-4):
            raise GridMismatchError(
                f"ingest: {label}: affine differs from {where} (max difference "
                f"{np.abs(affine - reference).max():.4g} mm): the mask is on another grid although it has the "
                "same shape; resample it onto the BOLD grid (nearest neighbour)"
            )
    for dim in SPATIAL:
        if dim in mask.coords:
            ours = np.asarray(mask[dim].values, dtype=float)
            theirs = np.asarray(bold[dim].values, dtype=float)
            if not np.allclose(ours, theirs, atol=1e-4):
                raise GridMismatchError(
                    f"ingest: {label}: {dim} coordinates differ from {where} by up to "
                    f"{float(np.nanmax(np.abs(ours - theirs))):g} mm; resample the mask onto the BOLD grid "
                    "(nearest neighbour)"
                )
    if "affine" not in mask.attrs and not all(d in mask.coords for d in SPATIAL):
        raise MissingMetadataError(
            f"ingest: {label} has no attrs['affine'] and no x/y/z coordinates, so its grid cannot be checked "
            "against the BOLD; load it with brainarr.io.load_nifti or give it attrs['affine']"
        )
    values = np.asarray(mask.transpose(*SPATIAL).values)
    if values.dtype != bool:
        if values.dtype.kind not in "iuf":
            raise DataValidationError(
                f"ingest: {label} has dtype {values.dtype}; a mask must be boolean or hold 0 and 1"
            )
        with np.errstate(all="ignore"):
            n_nan = int(np.count_nonzero(~np.isfinite(values)))
        if n_nan:
            raise DataValidationError(
                f"ingest: {label} has {n_nan} NaN/Inf voxels (resampled off the grid?); a mask holds only 0 and 1 "
                "(or True/False): fix it, e.g. mask.fillna(0) > 0.5, after resampling it onto the BOLD grid"
            )
        other = np.unique(values[(values != 0) & (values != 1)])
        if other.size:
            examples = ", ".join(f"{v:g}" for v in other[:5])
            if other.min() > 0 and other.max() < 1:
                raise DataValidationError(
                    f"ingest: {label} has values between 0 and 1 (e.g. {examples}): it looks like a probability "
                    "map; threshold it, e.g. mask > 0.5"
                )
            raise DataValidationError(
                f"ingest: {label} has values other than 0 and 1 (e.g. {examples}); a mask must be boolean or 0/1: "
                "binarise it, e.g. mask > 0 (or select a label of an atlas: atlas == k)"
            )
        values = values == 1
    if not values.any():
        raise DataValidationError(f"ingest: {label} is empty (no voxel set); pass a mask with the brain in it")
    out = xr.DataArray(
        values,
        dims=SPATIAL,
        coords={d: bold[d] for d in SPATIAL},
        name=mask.name,
        attrs={k: v for k, v in mask.attrs.items() if k in ("long_name", "units")},
    )
    return out


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
    _check_phenotype_schema(writer.store, first, subjects, pending, fresh=reference is None)
    if reference is not None:
        _check_static_matches(writer.store, reference, static)
    for subject in pending:  # reads files: last, once every cheaper check passed
        _check_subject_file(subject, subjects[subject])
    if progress:
        from dask.diagnostics import ProgressBar

        bar: Any = ProgressBar()
    for subject in pending:
        with bar if progress else contextlib.nullcontext():
            try:
                writer.append(subjects[subject], static=static, attrs=attrs)
            except (OSError, DataValidationError) as err:  # a file that fails when read: name subject and file
                source = str(subjects[subject].attrs.get(_VERIFY_FILE) or "")
                message = str(err) if f"subject {subject!r}" in str(err) else f"subject {subject!r}: {err}"
                if source and source not in message:
                    message = f"{message} (file {source})"
                if message == str(err):
                    raise
                raise type(err)(message) from err


def _phenotype_kinds(ds: xr.Dataset) -> dict[str, str]:
    """Phenotype coordinates (on ``subject`` only) of a cohort or subject Dataset: name -> "number"/"text"."""
    return {
        str(name): ("number" if coord.dtype.kind in "biuf" else "text")
        for name, coord in ds.coords.items()
        if coord.dims == (SUBJECT,) and name != SUBJECT
    }


def _check_phenotype_schema(store: Any, first: xr.Dataset, subjects: Mapping[str, xr.Dataset], pending, *, fresh):
    """Refuse subjects whose phenotype columns (names, number/text) differ from the store's (or the first's)."""
    expected = _phenotype_kinds(first)
    differing: dict[tuple[str, ...], list[str]] = {}
    for subject in pending:
        kinds = _phenotype_kinds(subjects[subject])
        if kinds == expected:
            continue
        problems = []
        new = sorted(set(kinds) - set(expected))
        gone = sorted(set(expected) - set(kinds))
        if new:
            problems.append(f"new column(s) {new} not in the {'first subject' if fresh else 'store'}")
        if gone:
            problems.append(f"missing column(s) {gone}")
        problems.extend(
            f"column {name!r} is {kinds[name]} here but {expected[name]} in the {'first subject' if fresh else 'store'}"
            for name in sorted(set(kinds) & set(expected))
            if kinds[name] != expected[name]
        )
        differing.setdefault(tuple(problems), []).append(subject)
    if differing:
        problems, names = next(iter(differing.items()))
        raise MissingMetadataError(
            f"{store}: the phenotype columns of subject(s) {names} differ from the store's "
            f"{sorted(expected)}: {'; '.join(problems)}. A store keeps the columns of its first ingest: give "
            "the new subjects exactly these columns (n/a for unknown values), or ingest every subject into a "
            "new store; nothing was written"
        )


def _check_static_matches(store: Any, reference: xr.Dataset, static: Mapping[str, xr.DataArray]) -> None:
    """On append, a static variable (the mask) given must equal the stored one: it is not written again."""
    for name, var in static.items():
        if name not in reference:
            raise MissingMetadataError(
                f"{store}: the store has no {name!r}; it is written with the first subject only, so it cannot be "
                f"added when appending: pass it to the analysis instead, or ingest every subject into a new store "
                f"with {name}=..."
            )
        stored = reference[name]
        same = False
        if set(stored.dims) == set(var.dims) and stored.sizes == var.sizes:
            ours = np.asarray(var.transpose(*stored.dims).values)
            theirs = np.asarray(stored.values)
            with np.errstate(all="ignore"):
                nan_ok = ours.dtype.kind == "f" and theirs.dtype.kind == "f"
                same = ours.shape == theirs.shape and bool(np.array_equal(ours, theirs, equal_nan=nan_ok))
        if not same:
            raise DataValidationError(
                f"{store}: the {name!r} given differs from the one stored with the cohort; a store keeps the "
                f"{name} of its first ingest: drop {name}= when appending, or ingest every subject into a new store"
            )


def _check_subject_file(subject: str, ds: xr.Dataset) -> None:
    """Before appending: verify a ``.nii.gz`` stream in full and refuse a constant BOLD."""
    path = ds.attrs.get(_VERIFY_FILE)
    try:
        if path is not None and str(path).endswith(".gz"):
            _verify_gzip(Path(path))
        _check_not_constant(subject, ds["bold"], path)
    except (InputFileError, DataValidationError) as err:
        if f"subject {subject!r}" in str(err):
            raise
        raise type(err)(f"subject {subject!r}: {err}") from err


def _check_not_constant(subject: str, bold: xr.DataArray, path: str | None) -> None:
    """Raise if the BOLD has one value everywhere (an all-zero image, a failed preprocessing step).

    Reads the first volume only (from the file, or from memory); only when that volume is
    constant is the whole series read to decide. Lazy (dask) Dataset sources are not checked.
    """
    if path is not None:
        try:
            img = nib.load(path)
            key = (slice(None),) * 3 + (0,) * (len(img.shape) - 3)
            with np.errstate(all="ignore"):
                first = np.asarray(img.dataobj[key], dtype=np.float64)
        except (BrainarrError, Warning, MemoryError):
            raise
        except Exception as err:  # the reader's own errors, whatever nibabel raises
            raise InputFileError(f"{path}: cannot read the first volume (truncated or corrupt file?): {err}") from err
    elif not isinstance(bold.data, da.Array):
        first = np.asarray(bold.isel({TIME: 0}).values, dtype=np.float64)
    else:
        return
    if first.size == 0 or not np.all(np.isfinite(first)) or first.min() != first.max():
        return
    with np.errstate(all="ignore"):
        lo, hi = (float(v) for v in da.compute(bold.data.min(), bold.data.max()))
    if np.isfinite(lo) and lo == hi:
        where = f"subject {subject!r}" + (f" ({path})" if path else "")
        raise DataValidationError(
            f"{where}: the BOLD is constant: every voxel of every volume is {lo:g} (an empty or failed "
            "preprocessing output?); check the file and re-run its preprocessing, or drop the subject"
        )


def _as_confounds(value: Any, subject: str, bold: xr.DataArray, columns: Sequence[str] | None) -> xr.DataArray:
    if isinstance(value, xr.DataArray):
        arr = value
    elif isinstance(value, pd.DataFrame):
        try:
            numbers = value.to_numpy(float)
        except (TypeError, ValueError) as err:
            raise DataValidationError(
                f"subject {subject!r}: the confounds DataFrame holds values that are not numbers ({err}); "
                "convert every column to float"
            ) from err
        arr = xr.DataArray(
            numbers,
            dims=(TIME, CONFOUND),
            coords={CONFOUND: np.array(list(value.columns), dtype=object)},
        )
    else:
        arr = read_confounds(value, columns=columns)
    if columns is not None and isinstance(value, (xr.DataArray, pd.DataFrame)):
        unknown = [c for c in columns if c not in list(arr[CONFOUND].values)]
        if unknown:
            raise MissingMetadataError(
                f"subject {subject!r}: confounds have no column(s) {unknown}; available: {list(arr[CONFOUND].values)}"
            )
        arr = arr.sel({CONFOUND: list(columns)})
    if arr.sizes[TIME] != bold.sizes[TIME]:
        raise GridMismatchError(
            f"subject {subject!r}: confounds have {arr.sizes[TIME]} rows but the BOLD "
            f"({bold.attrs.get('source')}) has {bold.sizes[TIME]} volumes"
        )
    if not np.all(np.isfinite(np.asarray(arr.values, float))):
        raise DataValidationError(f"subject {subject!r}: confounds contain NaN or Inf values")
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
        # the kind of a coordinate is its column's, never its value's: a missing text value
        # stays text ("n/a"), so every subject of a store has the same coordinate types
        for column in pheno.columns:
            value = pheno.at[subject, column]
            if pd.api.types.is_numeric_dtype(pheno[column].dtype):
                arr = np.array([float(value) if not pd.isna(value) else np.nan], dtype=float)
            else:
                arr = np.array(["n/a" if pd.isna(value) else str(value)], dtype=object)
            ds = ds.assign_coords({str(column): (SUBJECT, arr)})
    ds.attrs.update({k: bold.attrs[k] for k in ("affine", "tr")})
    ds["bold"].attrs.pop("affine", None)
    ds["bold"].attrs.pop("tr", None)
    ds["bold"].attrs.update({"source": bold.attrs.get("source", ""), "units": bold.attrs.get("units", "arbitrary")})
    return ds
