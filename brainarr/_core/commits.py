"""Commit records of a cohort store, at a constant cost per subject.

A cohort store says which of its rows are results with two kinds of record, kept in the
Zarr group ``_commits`` beside the data (so that no record grows with the cohort inside
one JSON document):

``_commits/subject`` (string, ``(subject,)``)
    The ids of the committed subjects, in store order. The group attribute
    ``brainarr["n_subjects"]`` says how many are committed: an append writes its rows, then
    the id at position ``n``, then sets ``n_subjects = n + 1`` (one small, fixed-size JSON).
    A reader compares these ids with the ``subject`` coordinate, so a row written but not
    committed, or rows of two writers interleaved, are never read as results.
``_commits/<name>`` (uint64, ``(subject,)``)
    One marker per row of the derived map ``name``: :func:`row_marker` of the map's
    parameter hash and the subject's id, or 0. A row is a result only when its marker
    equals the one its subject and the map's current parameters give, so a row of another
    subject (left at that position by a rolled-back append) or of other parameters is never
    mistaken for one. Markers are written by one process (the driver of a run) after the
    workers have written the rows, in batches, so many workers can write different subjects
    at once and nothing is ever committed before its data.

Format 1 stores kept both records as lists in the group attribute (``subjects``, and
``derived[name]["subjects"]``); :func:`upgrade` converts them in place (under the store's lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "COMMITS",
    "MARKER_CHUNK",
    "clear_rows_from",
    "commit_rows",
    "committed_rows",
    "committed_subjects",
    "drop_rows",
    "record_subject",
    "reset_rows",
    "resize_rows",
    "row_marker",
    "truncate_subjects",
    "upgrade",
]

#: Name of the Zarr group holding the commit records.
COMMITS = "_commits"
#: Entries per chunk of a commit array: few objects to read when a store is opened, and a
#: chunk rewrite per batch of commits (only one process writes the commit arrays).
MARKER_CHUNK = 4096
_SUBJECTS = "subject"


def row_marker(digest: str, subject: str) -> int:
    """The commit marker of ``subject``'s row of a map computed with parameter hash ``digest``.

    A 64-bit hash of both, never 0 (0 is "not committed").
    """
    raw = hashlib.sha256(f"{digest}\0{subject}".encode()).digest()[:8]
    return int.from_bytes(raw, "little") | 1


def _markers(digest: str, subjects: Sequence[str]) -> np.ndarray:
    return np.fromiter((row_marker(digest, s) for s in subjects), dtype=np.uint64, count=len(subjects))


def _commits_group(group, *, create: bool):
    if COMMITS in group:
        return group[COMMITS]
    if not create:
        return None
    return group.create_group(COMMITS)


def _array(group, name: str, dtype, n: int, *, create: bool):
    commits = _commits_group(group, create=create)
    if commits is None:
        return None
    if name in commits:
        return commits[name]
    if not create:
        return None
    fill = "" if dtype is str else 0
    return commits.create_array(
        name, shape=(n,), chunks=(MARKER_CHUNK,), dtype=dtype, fill_value=fill, dimension_names=[_SUBJECTS]
    )


# --------------------------------------------------------------------------- committed subjects


def committed_subjects(group, state: dict[str, Any], *, strict: bool = True) -> list[str]:
    """Ids of the committed subjects of a store, in store order (formats 1 and 2).

    Raises ValueError when the record holds fewer ids than ``n_subjects`` (a damaged store),
    unless ``strict`` is False: then the ids it holds.
    """
    if "subjects" in state:  # format 1
        return [str(s) for s in state["subjects"]]
    n = int(state.get("n_subjects", 0))
    if n == 0:
        return []
    ids = _array(group, _SUBJECTS, str, 0, create=False)
    found = 0 if ids is None else ids.shape[0]
    if found < n and strict:
        raise ValueError(f"{n} subjects are committed but the commit record lists {found}")
    n = min(n, found)
    return [str(s) for s in np.asarray(ids[:n], dtype=object)] if n else []


def record_subject(group, state: dict[str, Any], subject: str) -> dict[str, Any]:
    """Commit ``subject`` as the next subject of a format 2 store; return the new state.

    Writes the id at position ``n`` of ``_commits/subject``, then the attribute (the commit
    point). Constant cost whatever the size of the cohort.
    """
    n = int(state.get("n_subjects", 0))
    ids = _array(group, _SUBJECTS, str, 0, create=True)
    if ids.shape[0] != n + 1:
        ids.resize((n + 1,))
    ids[n] = subject
    state = {**state, "n_subjects": n + 1}
    group.attrs["brainarr"] = state
    return state


def truncate_subjects(group, state: dict[str, Any], n: int) -> dict[str, Any]:
    """Keep the first ``n`` committed subjects (a rollback); return the new state."""
    ids = _array(group, _SUBJECTS, str, 0, create=True)
    ids.resize((n,))
    state = {**state, "n_subjects": n}
    group.attrs["brainarr"] = state
    return state


# --------------------------------------------------------------------------- derived rows


def committed_rows(group, state: dict[str, Any], name: str, subjects: Sequence[str]) -> np.ndarray:
    """Which rows of the derived map ``name`` hold results for ``subjects`` (bool, one per row).

    Reads ``ceil(len(subjects) / MARKER_CHUNK)`` chunks. False for every row when the map
    has no commit record.
    """
    record = dict(state.get("derived", {})).get(name)
    n = len(subjects)
    if record is None:
        return np.zeros(n, dtype=bool)
    if "subjects" in record:  # format 1
        done = set(record["subjects"])
        return np.array([s in done for s in subjects], dtype=bool)
    markers = _array(group, name, np.uint64, 0, create=False)
    if markers is None:
        return np.zeros(n, dtype=bool)
    stored = np.zeros(n, dtype=np.uint64)
    m = min(n, markers.shape[0])
    if m:
        stored[:m] = markers[:m]
    return stored == _markers(record["params"], subjects)


def reset_rows(group, name: str, n: int) -> None:
    """Create the marker array of ``name`` with ``n`` uncommitted rows (dropping any old one)."""
    commits = _commits_group(group, create=True)
    if name in commits:
        del commits[name]
    _array(group, name, np.uint64, n, create=True)


def resize_rows(group, name: str, n: int) -> None:
    """Give the marker array of ``name`` ``n`` rows (kept rows keep their markers)."""
    markers = _array(group, name, np.uint64, n, create=True)
    if markers.shape[0] != n:
        markers.resize((n,))


def commit_rows(group, digests: dict[str, str], rows: Iterable[tuple[int, str]]) -> None:
    """Commit rows of derived maps: ``digests`` ``{name: params hash}``, ``rows`` ``(index, subject)``.

    One write per touched chunk of each map's marker array. Call only after the rows' data
    are written.
    """
    rows = sorted(set(rows))
    if not rows:
        return
    index = np.array([i for i, _ in rows], dtype=np.int64)
    for name, digest in digests.items():
        values = _markers(digest, [s for _, s in rows])
        _array(group, name, np.uint64, 0, create=False).set_coordinate_selection((index,), values)


def clear_rows_from(group, n: int) -> None:
    """Uncommit every derived row at position ``n`` or later (a rollback of subjects)."""
    commits = _commits_group(group, create=False)
    if commits is None:
        return
    for name, markers in commits.arrays():
        if name != _SUBJECTS and markers.shape[0] > n:
            markers[n:] = 0


def drop_rows(group, name: str) -> None:
    """Remove the marker array of ``name``."""
    commits = _commits_group(group, create=False)
    if commits is not None and name in commits:
        del commits[name]


# --------------------------------------------------------------------------- format 1 -> 2


def upgrade(group, state: dict[str, Any]) -> dict[str, Any]:
    """Convert a format 1 store's commit lists into format 2 records, in place; return the state.

    The caller holds the store's lock. The arrays are written first and the attribute last,
    so an interrupted upgrade leaves a format 1 store that upgrades again.
    """
    if "subjects" not in state:
        return state
    subjects = [str(s) for s in state["subjects"]]
    ids = _array(group, _SUBJECTS, str, 0, create=True)
    ids.resize((len(subjects),))
    if subjects:
        ids[:] = np.array(subjects, dtype=object)
    derived = {}
    for name, record in dict(state.get("derived", {})).items():
        done = set(record.get("subjects", []))
        reset_rows(group, name, len(subjects))
        rows = [(i, s) for i, s in enumerate(subjects) if s in done]
        commit_rows(group, {name: record["params"]}, rows)
        derived[name] = {"params": record["params"]}
    new = {k: v for k, v in state.items() if k != "subjects"}
    new.update(format=2, n_subjects=len(subjects), derived=derived)
    group.attrs["brainarr"] = new
    return new
