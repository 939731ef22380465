"""Discovery of raw scanner inputs: BIDS raw datasets, DPABI ``FunRaw``/``T1Raw`` folders, DICOM.

Raw data are the images as the scanner wrote them: a native-space 4-D EPI series per subject
and a T1-weighted anatomical image, before realignment, slice-timing correction,
coregistration or normalisation. The functions here find them and read the acquisition
metadata that preprocessing needs (repetition time, slice acquisition times, slice axis) and
check them against the image headers; they read headers and sidecars only, never voxel data.

- :func:`find_bids_raw`: a BIDS raw dataset (``sub-*/[ses-*/]func|anat``, JSON sidecars with
  the inheritance principle, ``participants.tsv``).
- :func:`find_dpabi_raw`: a DPABI/DPARSF working folder with ``FunRaw/<subject>/`` and
  ``T1Raw/<subject>/`` (NIfTI, Analyze or DICOM; DICOM is converted as DPABI does, into
  ``FunImg``/``T1Img``).
- :func:`dicom_to_nifti`: one DICOM series to NIfTI plus a BIDS sidecar with ``dcm2niix``.
- :func:`slice_timing_from`: slice acquisition times from a sidecar, a list or an order name.

All tables have the same columns (see :func:`find_bids_raw`), so the preprocessing chain and
:func:`brainarr.io.ingest` take either.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from brainarr._core import slices
from brainarr.exceptions import DataValidationError, DimensionError, InputFileError, MissingMetadataError
from brainarr.io import read_phenotypes

__all__ = ["RAW_COLUMNS", "dicom_to_nifti", "find_bids_raw", "find_dpabi_raw", "slice_timing_from"]

logger = logging.getLogger("brainarr")

#: Columns of the tables returned by :func:`find_bids_raw` and :func:`find_dpabi_raw`.
RAW_COLUMNS = ("bold", "t1", "tr", "slice_times", "slice_axis", "json")

#: Largest disagreement (s) allowed between a sidecar's RepetitionTime and the NIfTI header's TR.
TR_TOLERANCE = 1e-3

_NIFTI = (".nii", ".nii.gz")
_ANALYZE = (".img",)
_AXES = {"i": "x", "j": "y", "k": "z"}
# files of a subject folder that are not images (DICOMDIR indexes, notes, sidecars, Analyze headers)
_NOT_IMAGES = (".json", ".txt", ".tsv", ".hdr", ".mat", ".bval", ".bvec", ".md", ".csv")
_DICOM_TIMEOUT = 600  # s for one dcm2niix run

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------
# Slice timing
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path, subject: str | None = None) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`InputFileError` naming the file when malformed."""
    who = f"subject {subject}: " if subject else ""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(f"{who}sidecar {path} is not UTF-8 text: {err}; write it again as UTF-8 JSON") from err
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(
            f"{who}sidecar {path} is malformed JSON (line {err.lineno}, column {err.colno}: {err.msg}); fix the file"
        ) from err
    if not isinstance(value, dict):
        raise InputFileError(f"{who}sidecar {path} holds a JSON {type(value).__name__}, not an object; fix the file")
    return value


def slice_timing_from(
    sidecar_or_order: Mapping[str, Any] | PathLike | Sequence[float] | np.ndarray,
    n_slices: int,
    tr: float,
) -> np.ndarray:
    r"""Slice acquisition times (s) from a BIDS sidecar, a list of times or a named order.

    Parameters
    ----------
    sidecar_or_order : mapping, path, sequence of float or str
        A BIDS sidecar (a mapping, or the path of a ``.json`` file) with ``SliceTiming``; the
        ``SliceTiming`` list itself (s, one per slice, from the start of the volume); or an
        order name: ``"ascending"``, ``"descending"``, ``"interleaved"`` or
        ``"interleaved_siemens"``, with the slices equally spaced over the TR, as in
        :func:`brainarr.preprocess.slice_timing`.
    n_slices : int
        Number of slices (the image's size along the slice axis).
    tr : float
        Repetition time (s).

    Returns
    -------
    numpy.ndarray (n_slices,), float64, units s
        Acquisition time of each slice, indexed like the image's slice axis.

    Raises
    ------
    MissingMetadataError
        If a sidecar has no ``SliceTiming``.
    DataValidationError
        If the number of times is not ``n_slices``, or a time is not finite or outside
        ``[0, tr)``.
    ValueError
        If an order name is unknown, or ``n_slices``/``tr`` are not positive.

    Notes
    -----
    For a named order, slice :math:`i` is acquired at :math:`\mathrm{rank}(i)\,TR/n`. BIDS
    ``SliceTiming`` is in seconds; values in milliseconds (all above ``tr``) are refused
    rather than guessed.

    Examples
    --------
    >>> from brainarr.raw import slice_timing_from
    >>> slice_timing_from("interleaved", 5, 2.0)
    array([0. , 1.2, 0.4, 1.6, 0.8])
    """
    if int(n_slices) != n_slices or n_slices < 1:
        raise ValueError(f"n_slices must be a positive integer, got {n_slices!r}")
    if not (np.isfinite(tr) and tr > 0):
        raise ValueError(f"tr must be a positive number of seconds, got {tr!r}")
    n_slices, tr = int(n_slices), float(tr)
    source = "the slice times"
    if isinstance(sidecar_or_order, str) and not sidecar_or_order.endswith(".json"):
        return slices.slice_times(sidecar_or_order, n_slices, tr)
    if isinstance(sidecar_or_order, (str, os.PathLike)):
        source = str(sidecar_or_order)
        sidecar_or_order = _read_json(Path(sidecar_or_order))
    if isinstance(sidecar_or_order, Mapping):
        if "SliceTiming" not in sidecar_or_order:
            raise MissingMetadataError(
                f"{source if source != 'the slice times' else 'the sidecar'} has no SliceTiming; give the slice "
                "order by name (e.g. 'interleaved') or the times in s"
            )
        source = f"SliceTiming of {source}" if source != "the slice times" else "SliceTiming"
        sidecar_or_order = sidecar_or_order["SliceTiming"]
    return _check_slice_times(sidecar_or_order, n_slices, tr, source)


def _check_slice_times(values: Any, n_slices: int, tr: float, source: str) -> np.ndarray:
    try:
        times = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataValidationError(f"{source}: {values!r} is not a list of numbers (s)") from err
    if times.ndim != 1 or times.size != n_slices:
        raise DataValidationError(
            f"{source} has {times.size} values but the image has {n_slices} slices; the sidecar belongs to "
            "another image or the slice axis is wrong (set SliceEncodingDirection)"
        )
    if not np.all(np.isfinite(times)) or times.min() < 0 or times.max() >= tr:
        raise DataValidationError(
            f"{source} has values {times.min():g}..{times.max():g} s outside [0, TR = {tr:g}) s "
            "(in ms rather than s? BIDS SliceTiming is in seconds); fix the sidecar"
        )
    return times


# ----------------------------------------------------------------------------------------------
# BIDS raw
# ----------------------------------------------------------------------------------------------


def _entities(path: Path) -> dict[str, str]:
    """BIDS entities (``sub``, ``ses``, ``task``, ``run``...) and ``suffix`` of a file name."""
    from nilearn.interfaces.bids import parse_bids_filename

    parsed = parse_bids_filename(str(path))
    entities = dict(parsed["entities"]) if "entities" in parsed else {k: v for k, v in parsed.items() if "_" not in k}
    entities["suffix"] = parsed.get("suffix", parsed.get("file_type", ""))
    return entities


def _image_name(path: Path, extensions: tuple[str, ...] = _NIFTI) -> bool:
    return path.is_file() and path.name.endswith(extensions)


def _stem(path: Path) -> str:
    return re.sub(r"\.(nii(\.gz)?|img|hdr|json)$", "", path.name)


def _sidecars(root: Path, image: Path, entities: Mapping[str, str]) -> list[Path]:
    """JSON sidecars applying to ``image`` under the BIDS inheritance principle, least specific first.

    A sidecar applies when it lies in the image's folder or a parent folder up to ``root``,
    has the same suffix and all its entities are entities of the image. Deeper folders, then
    more entities, are more specific (their values win when the sidecars are merged).
    """
    found = []
    folder = image.parent
    depth = len(folder.relative_to(root).parts)
    while True:
        for candidate in folder.glob(f"*_{entities['suffix']}.json"):
            ent = _entities(candidate)
            keys = [k for k in ent if k != "suffix"]
            if ent["suffix"] == entities["suffix"] and all(entities.get(k) == ent[k] for k in keys):
                found.append((depth, len(keys), candidate))
        if folder == root:
            break
        folder, depth = folder.parent, depth - 1
    return [p for _, _, p in sorted(found)]


def _bids_runs(subject_dir: Path, datatype: str, pattern: str) -> list[Path]:
    return sorted(
        p
        for p in (*subject_dir.glob(f"{datatype}/{pattern}"), *subject_dir.glob(f"ses-*/{datatype}/{pattern}"))
        if _image_name(p)
    )


def _select(files: list[Path], **wanted: str | None) -> list[Path]:
    out = []
    for path in files:
        ent = _entities(path)
        if all(value is None or ent.get(key) == str(value) for key, value in wanted.items()):
            out.append(path)
    return out


def _strip_prefix(value: Any, prefix: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text[len(prefix) + 1 :] if text.startswith(f"{prefix}-") else text


def find_bids_raw(
    root: PathLike,
    *,
    task: str = "rest",
    session: str | None = None,
    run: int | str | None = None,
) -> pd.DataFrame:
    """Find each subject's raw BOLD run and T1-weighted image in a BIDS dataset.

    Parameters
    ----------
    root : path
        The BIDS dataset (holding ``sub-*/`` and optionally ``participants.tsv``).
    task : str, default "rest"
        Task label of the BOLD runs (``task-<task>``).
    session : str, optional
        Session label (``ses-<session>``, with or without the ``ses-`` prefix); required
        when subjects have several sessions holding the task.
    run : int or str, optional
        Run index (``run-<run>``); required when a subject has several runs of the task.

    Returns
    -------
    pandas.DataFrame
        Indexed by subject id (``sub-XX``, as in ``participants.tsv``), one row per subject,
        columns:

        - ``bold``: :class:`~pathlib.Path` of ``sub-*/[ses-*/]func/*_task-<task>_bold.nii[.gz]``;
        - ``t1``: :class:`~pathlib.Path` of ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``;
        - ``tr``: repetition time (float, s), the sidecar's ``RepetitionTime`` (checked
          against the header) or the header's;
        - ``slice_times``: list of float (s), one per slice along ``slice_axis``, or None
          when no sidecar gives ``SliceTiming``;
        - ``slice_axis``: ``"x"``, ``"y"`` or ``"z"`` (from ``SliceEncodingDirection``,
          ``"z"`` by default);
        - ``json``: tuple of the sidecar paths merged, least specific first.

        ``attrs["participants"]`` holds ``participants.tsv`` read by
        :func:`brainarr.io.read_phenotypes` (indexed by ``participant_id``), or None when the
        dataset has none; ``attrs["root"]`` the dataset folder.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    InputFileError
        If the dataset holds no subject folder; a subject has no BOLD run of the task, no T1w
        image, several BOLD runs or T1w images where one is expected (the message lists them
        and the ``session=``/``run=`` to pass); a sidecar is malformed JSON; or a subject
        listed in ``participants.tsv`` has no folder.
    DimensionError
        If a BOLD image is not 4-D (or a T1w image not 3-D).
    MissingMetadataError
        If neither the sidecar nor the header gives a repetition time.
    DataValidationError
        If the sidecar's ``RepetitionTime`` and the header's TR differ by more than 1 ms, or
        ``SliceTiming`` has the wrong length or values outside ``[0, TR)``.

    Notes
    -----
    Sidecars follow the BIDS inheritance principle: a JSON file applies to every image below
    its folder whose entities include its own (``task-rest_bold.json`` at the top applies to
    all subjects); the values of the more specific file win. Only headers and sidecars are
    read. A header TR with an unknown time unit is taken as seconds.

    References
    ----------
    Gorgolewski KJ, Auer T, Calhoun VD, et al. The brain imaging data structure, a format for
    organizing and describing outputs of neuroimaging experiments. Sci Data 2016;3:160044.

    Examples
    --------
    >>> from brainarr.raw import find_bids_raw
    >>> table = find_bids_raw("bids/")  # doctest: +SKIP
    >>> table.loc["sub-01", "tr"]  # doctest: +SKIP
    2.0
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BIDS folder not found: {root}")
    session = _strip_prefix(session, "ses")
    run = _strip_prefix(run, "run")
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        content = "it is empty" if not any(root.iterdir()) else "it has no sub-* folder"
        raise InputFileError(
            f"{root} is not a BIDS raw dataset: {content}; expected sub-<label>/[ses-<label>/]func/ and anat/ folders"
        )
    tsv = root / "participants.tsv"
    participants = read_phenotypes(tsv) if tsv.exists() else None
    if participants is not None:
        missing = sorted(set(participants.index) - {p.name for p in subjects})
        if missing:
            raise InputFileError(
                f"{tsv} lists subject(s) {missing} without a folder under {root}; add their data or remove their rows"
            )
    rows = {}
    for folder in subjects:
        sid = folder.name
        bolds = _bids_runs(folder, "func", f"*_task-{task}_*bold.nii*")
        bold = _one(
            _select(bolds, task=task, ses=session, run=run),
            sid,
            f"BOLD run of task {task!r}",
            f"{folder}/[ses-*/]func/{sid}_[ses-*_]task-{task}_[run-*_]bold.nii[.gz]",
            hint="pass run=... (or session=...) to choose one",
        )
        t1s = _bids_runs(folder, "anat", "*_T1w.nii*")
        bold_ses = _entities(bold).get("ses")
        if bold_ses is not None and len(t1s) > 1:  # prefer the BOLD run's session
            same = _select(t1s, ses=bold_ses)
            t1s = same or t1s
        t1 = _one(
            t1s,
            sid,
            "T1-weighted image",
            f"{folder}/[ses-*/]anat/{sid}_[ses-*_]T1w.nii[.gz]",
            hint="keep one T1w image per subject (or per session and pass session=...)",
        )
        rows[sid] = _describe_bold(root, sid, bold, t1)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(RAW_COLUMNS))
    table.index.name = "subject"
    table.attrs["participants"] = participants
    table.attrs["root"] = str(root)
    return table


def _one(files: list[Path], subject: str, what: str, pattern: str, *, hint: str) -> Path:
    if not files:
        raise InputFileError(f"subject {subject} has no {what}: nothing matches {pattern}")
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise InputFileError(f"subject {subject} has {len(files)} files where one {what} is expected ({names}); {hint}")
    return files[0]


def _describe_bold(root: Path, subject: str, bold: Path, t1: Path | None, sidecars: list[Path] | None = None) -> dict:
    """The table row of one subject: checked TR, slice times and slice axis of ``bold``."""
    if sidecars is None:
        sidecars = _sidecars(root, bold, _entities(bold))
    meta: dict[str, Any] = {}
    origin: dict[str, Path] = {}  # the sidecar each value comes from
    for path in sidecars:
        values = _read_json(path, subject)
        meta.update(values)
        origin.update(dict.fromkeys(values, path))
    header = _header(bold, subject)
    shape = header.get_data_shape()
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 4 or shape[3] < 2:
        raise DimensionError(
            f"subject {subject}: BOLD {bold} has shape {tuple(shape)}; expected a 4-D series (x, y, z, time) "
            "of several volumes (a 3-D image is a single volume: is this the right file?)"
        )
    if t1 is not None:
        t1_shape = tuple(_header(t1, subject).get_data_shape())
        while len(t1_shape) > 3 and t1_shape[-1] == 1:
            t1_shape = t1_shape[:-1]
        if len(t1_shape) != 3:
            raise DimensionError(f"subject {subject}: T1w image {t1} has shape {tuple(t1_shape)}; expected 3-D")
    tr = _checked_tr(subject, bold, header, meta, str(origin.get("RepetitionTime")))
    direction = str(meta.get("SliceEncodingDirection", "k"))
    axis = _AXES.get(direction.rstrip("-"))
    if axis is None:
        raise DataValidationError(
            f"subject {subject}: SliceEncodingDirection {direction!r} in {origin['SliceEncodingDirection']} "
            "is not one of i, j, k (optionally with '-')"
        )
    slice_times = None
    if "SliceTiming" in meta:
        n_slices = shape["xyz".index(axis)]
        source = origin["SliceTiming"]
        times = _check_slice_times(
            meta["SliceTiming"], n_slices, tr, f"subject {subject}: SliceTiming of {source} (for {bold.name})"
        )
        slice_times = times.tolist()
    return {
        "bold": bold,
        "t1": t1,
        "tr": tr,
        "slice_times": slice_times,
        "slice_axis": axis,
        "json": tuple(sidecars),
    }


def _header(path: Path, subject: str) -> nib.Nifti1Header:
    try:
        return nib.load(path).header
    except Exception as err:  # nibabel raises many types for a bad header
        raise InputFileError(f"subject {subject}: {path} is not a readable NIfTI/Analyze image: {err}") from err


def _header_tr(header: Any) -> float | None:
    """TR (s) of a NIfTI header (in its time unit) or of an Analyze header (``pixdim[4]``, taken as s)."""
    if isinstance(header, nib.Nifti1Header):
        return slices.header_tr(header)
    zooms = header.get_zooms()
    value = float(zooms[3]) if len(zooms) > 3 else 0.0
    return value if np.isfinite(value) and value > 0 else None


def _checked_tr(subject: str, bold: Path, header: Any, meta: Mapping[str, Any], source: str) -> float:
    header_tr = _header_tr(header)
    if "RepetitionTime" not in meta:
        if header_tr is None:
            raise MissingMetadataError(
                f"subject {subject}: {bold} has no repetition time (no RepetitionTime in a sidecar, none in the "
                "header); add RepetitionTime (s) to its JSON sidecar"
            )
        return header_tr
    value = meta["RepetitionTime"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise DataValidationError(
            f"subject {subject}: RepetitionTime {value!r} in {source} is not a positive number of seconds"
        )
    tr = float(value)
    if header_tr is not None and abs(header_tr - tr) > TR_TOLERANCE:
        raise DataValidationError(
            f"subject {subject}: RepetitionTime {tr:g} s in {source} disagrees with the TR {header_tr:g} s in the "
            f"header of {bold} (by more than {TR_TOLERANCE * 1e3:g} ms); fix whichever is wrong"
        )
    return tr


# ----------------------------------------------------------------------------------------------
# DICOM
# ----------------------------------------------------------------------------------------------


def _dcm2niix() -> str:
    try:
        import dcm2niix
    except ImportError:  # pragma: no cover - the package is a dependency
        path = shutil.which("dcm2niix")
        if path is None:
            raise ImportError("converting DICOM needs dcm2niix: pip install dcm2niix") from None
        return path
    return str(dcm2niix.bin)


_INCOMPLETE = (
    "missing images",
    "not divisible",
    "interslice distance varies",
    "unable to determine slice direction",
)


def dicom_to_nifti(folder: PathLike, out_dir: PathLike) -> list[Path]:
    """Convert one DICOM series to a compressed NIfTI image and a BIDS JSON sidecar.

    Parameters
    ----------
    folder : path
        A folder holding the DICOM files of one series (one acquisition: a BOLD run or a T1).
    out_dir : path
        Folder to write into (created if needed). Files are named after the protocol and series
        number (``<protocol>_<series>.nii.gz``); a file of that name already there is never
        overwritten (an error names it). The conversion runs in a temporary folder inside
        ``out_dir``, removed afterwards, so a refused series leaves nothing behind.

    Returns
    -------
    list of pathlib.Path
        The NIfTI image first, then its JSON sidecar (with ``RepetitionTime`` in s and, where
        the scanner records it, ``SliceTiming``), then any other file written (``.bval``...).

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist.
    InputFileError
        If ``folder`` holds no DICOM image, an incomplete series (missing slices or volumes:
        instance numbers with gaps, slice positions not repeated evenly) or several series;
        the message names the folder.

    Notes
    -----
    The conversion is dcm2niix's (Li et al. 2016), from the ``dcm2niix`` package, which
    ships the program; its warnings about missing images decide that a series is
    incomplete. Siemens mosaics and enhanced (multi-frame) DICOM are handled by dcm2niix.

    References
    ----------
    Li X, Morgan PS, Ashburner J, Smith J, Rorden C. The first step for neuroimaging data
    analysis: DICOM to NIfTI conversion. J Neurosci Methods 2016;264:47-56.

    Examples
    --------
    >>> from brainarr.raw import dicom_to_nifti
    >>> nii, sidecar = dicom_to_nifti("FunRaw/sub01", "FunImg/sub01")[:2]  # doctest: +SKIP
    """
    folder, out_dir = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"DICOM folder not found: {folder}")
    if not any(p.is_file() for p in folder.rglob("*")):
        raise InputFileError(f"DICOM folder {folder} is empty; expected the DICOM files of one series")
    out_dir.mkdir(parents=True, exist_ok=True)
    # convert into a folder of our own: a failed or refused conversion removes only what it wrote,
    # and no file already in out_dir is ever overwritten
    work = Path(tempfile.mkdtemp(prefix=".dcm2niix-", dir=out_dir))
    try:
        written = _convert(folder, work)
        targets = [out_dir / p.name for p in written]
        clash = [str(t) for t in targets if t.exists()]
        if clash:
            raise InputFileError(
                f"converting {folder}: {clash} already exist; brainarr does not overwrite them (move them away, or "
                "convert into an empty folder)"
            )
        for source, target in zip(written, targets, strict=True):
            source.replace(target)
        return targets
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _convert(folder: Path, out_dir: Path) -> list[Path]:
    """Run dcm2niix on one series into the (empty, private) ``out_dir``; the files it wrote, checked."""
    command = [_dcm2niix(), "-b", "y", "-ba", "y", "-z", "y", "-w", "1", "-f", "%p_%s", "-o", str(out_dir), str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_DICOM_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as err:
        raise InputFileError(
            f"converting DICOM folder {folder} took over {_DICOM_TIMEOUT} s; is it one series?"
        ) from err
    log = done.stdout + done.stderr
    lower = log.lower()
    if "unable to find any dicom" in lower or "no valid dicom" in lower:
        raise InputFileError(f"{folder} holds no DICOM image (dcm2niix found none); expected one DICOM series")
    converted = re.findall(r"^Convert \d+ DICOM as (.+?) \(([\dx]+)\)\s*$", done.stdout, flags=re.MULTILINE)
    if any(word in lower for word in _INCOMPLETE):
        warnings = "; ".join(line.strip() for line in log.splitlines() if any(w in line.lower() for w in _INCOMPLETE))
        raise InputFileError(
            f"DICOM series in {folder} is incomplete ({warnings}); copy the missing files from the scanner "
            "or the archive again"
        )
    if len(converted) > 1:
        series = ", ".join(f"{Path(stem).name} ({dims})" for stem, dims in converted)
        raise InputFileError(
            f"{folder} holds {len(converted)} DICOM series ({series}); put each series in its own folder"
        )
    if done.returncode != 0 or not converted:
        raise InputFileError(f"dcm2niix could not convert {folder} (exit code {done.returncode}): {log.strip()[-800:]}")
    stem = Path(converted[0][0])
    image = stem.with_name(stem.name + ".nii.gz")
    sidecar = stem.with_name(stem.name + ".json")
    others = sorted(p for p in stem.parent.glob(stem.name + ".*") if p not in (image, sidecar))
    return [p for p in (image, sidecar) if p.exists()] + others


def _is_dicom(path: Path) -> bool:
    """Whether a file starts like DICOM Part 10 (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------
# DPABI raw
# ----------------------------------------------------------------------------------------------


def _subject_images(folder: Path, subject: str, what: str, out: Path) -> Path:
    """The one image of a DPABI raw subject folder, converting DICOM into ``out`` (DPABI's *Img folder)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.name.endswith(_NIFTI + _ANALYZE)]
    if images:
        if len(images) > 1:
            names = ", ".join(p.name for p in images[:6]) + (", ..." if len(images) > 6 else "")
            raise InputFileError(
                f"subject {subject}: {folder} holds {len(images)} images ({names}); expected one {what} image "
                "(several 3-D volumes: merge them into one 4-D NIfTI first)"
            )
        return images[0]
    candidates = [p for p in files if not p.name.lower().endswith(_NOT_IMAGES)]
    if not candidates:
        raise InputFileError(f"subject {subject}: {folder} holds no {what} image (NIfTI, Analyze .img or DICOM)")
    converted = sorted(p for p in out.glob("*.nii*")) if out.is_dir() else []
    if converted:
        logger.info("find_dpabi_raw: reusing %s converted earlier from %s", converted[0], folder)
        return converted[0]
    if not any(_is_dicom(p) for p in candidates[:20]) and not any(
        p.suffix.lower() in (".dcm", ".ima") for p in candidates
    ):
        raise InputFileError(
            f"subject {subject}: {folder} holds neither NIfTI/Analyze images nor DICOM files "
            f"({', '.join(p.name for p in candidates[:4])}); expected one {what} series"
        )
    return dicom_to_nifti(folder, out)[0]


def find_dpabi_raw(root: PathLike) -> pd.DataFrame:
    """Find each subject's raw BOLD and T1 in a DPABI/DPARSF working folder (``FunRaw``, ``T1Raw``).

    Parameters
    ----------
    root : path
        The DPABI working directory, holding ``FunRaw/<subject>/`` and ``T1Raw/<subject>/``
        (one folder per subject, each with one series: a 4-D NIfTI, an Analyze ``.img``/``.hdr``
        pair or DICOM files). ``T1Img/<subject>/`` may replace ``T1Raw`` (DPABI's NIfTI
        folder for the anatomy); a JSON sidecar next to a NIfTI image is read.

    Returns
    -------
    pandas.DataFrame
        Indexed by subject folder name, the columns of :func:`find_bids_raw` (``bold``,
        ``t1``, ``tr``, ``slice_times``, ``slice_axis``, ``json``). ``attrs["participants"]``
        is None (DPABI keeps no phenotype table) and ``attrs["root"]`` the folder.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    InputFileError
        If ``root`` has no ``FunRaw`` folder or it holds no subject folder; a subject has no
        T1 (or no BOLD while it has a T1), several images, or an unreadable or incomplete DICOM
        series.
    DimensionError, MissingMetadataError, DataValidationError
        As :func:`find_bids_raw`, for the BOLD image and its sidecar.

    Notes
    -----
    DICOM series are converted with :func:`dicom_to_nifti` as DPARSF does, into
    ``root/FunImg/<subject>/`` and ``root/T1Img/<subject>/``; a subject whose folder there
    already holds a NIfTI image is not converted again. The sidecar written by dcm2niix
    gives the TR and slice times; for NIfTI input the TR comes from the header and
    ``slice_times`` is None unless a sidecar gives ``SliceTiming`` (DPABI asks for the slice
    order: pass it to :func:`slice_timing_from`).

    Examples
    --------
    >>> from brainarr.raw import find_dpabi_raw
    >>> table = find_dpabi_raw("dpabi_work/")  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DPABI folder not found: {root}")
    fun = root / "FunRaw"
    if not fun.is_dir():
        raise InputFileError(f"{root} has no FunRaw folder; expected FunRaw/<subject>/ and T1Raw/<subject>/")
    subjects = sorted(p.name for p in fun.iterdir() if p.is_dir())
    if not subjects:
        raise InputFileError(f"{fun} is empty; expected one folder per subject with its functional series")
    anat = root / "T1Raw" if (root / "T1Raw").is_dir() else root / "T1Img"
    anat_subjects = sorted(p.name for p in anat.iterdir() if p.is_dir()) if anat.is_dir() else []
    orphans = sorted(set(anat_subjects) - set(subjects))
    if orphans:
        raise InputFileError(f"subject(s) {orphans} have a T1 folder in {anat} but no BOLD folder in {fun}")
    rows = {}
    for sid in subjects:
        if sid not in anat_subjects:
            raise InputFileError(f"subject {sid} has no T1: {anat / sid} does not exist (needed for coregistration)")
        bold = _subject_images(fun / sid, sid, "functional", root / "FunImg" / sid)
        t1 = _subject_images(anat / sid, sid, "T1", root / "T1Img" / sid)
        sidecar = bold.with_name(_stem(bold) + ".json")
        rows[sid] = _describe_bold(root, sid, bold, t1, [sidecar] if sidecar.exists() else [])
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(RAW_COLUMNS))
    table.index.name = "subject"
    table.attrs["participants"] = None
    table.attrs["root"] = str(root)
    return table
