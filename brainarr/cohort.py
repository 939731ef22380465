"""The cohort store: open, inspect and append subjects to a Zarr v3 store, safely.

Layout of a store (any fsspec URL): one Zarr group written by :func:`xarray.Dataset.to_zarr`
with ``bold (subject, x, y, z, time)``, optional ``confounds (subject, time, confound)``,
optional ``mask (x, y, z)``, phenotype coordinates on ``subject``, and derived maps under their
own names. The group attribute ``brainarr`` records the format version, the grid (affine,
shape, TR, number of volumes) and the number of *committed* subjects; their ids and the
commit markers of the derived maps are arrays in the group ``_commits`` (see
:mod:`brainarr._core.commits`), so committing a subject costs the same at the ten-thousandth
subject as at the first. A subject is committed only after all its chunks are written;
readers see committed subjects only, and a writer that finds extra (uncommitted) rows left
by a crash trims them before appending. So a crash at any moment leaves the previous
consistent cohort.

Writers hold the store's lock (:class:`StoreLock`, a small Zarr group ``_writer_lock`` created
with an exclusive create), so a second ingest or run on the same store fails at once with
:class:`~brainarr.exceptions.StoreLockedError` instead of interleaving commits. A writer never
removes or overwrites what brainarr did not create: a path holding a file, a non-empty folder,
a Zarr v2 store or another Zarr v3 group is refused before anything is written, and a failed
first subject removes only what that call wrote. :func:`repair` (``brainarr repair STORE``)
brings any store left inconsistent back to its last consistent subject; writers do the same
automatically when they take the lock.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from brainarr._core import commits
from brainarr._core.dims import SPATIAL, SUBJECT, TIME
from brainarr.exceptions import DataValidationError, GridMismatchError, StoreError, StoreLockedError

__all__ = [
    "FORMAT_VERSION",
    "CohortWriter",
    "StoreLock",
    "check_compatible",
    "open_cohort",
    "open_group",
    "repair",
    "summary",
    "upgrade",
]

logger = logging.getLogger("brainarr")

#: Version of the store layout written by this brainarr. Readers refuse newer layouts; format 1
#: stores (commit lists in the group attribute) are read, and upgraded by the first writer.
FORMAT_VERSION = 2
_ATTR = "brainarr"
#: Name of the lock node inside a store (a Zarr group whose attributes say who writes).
LOCK_NODE = "_writer_lock"
_ZARR_V2_KEYS = (".zgroup", ".zarray", ".zattrs", ".zmetadata")


def open_group(store: str | os.PathLike, mode: str, storage_options: Mapping[str, Any] | None = None):
    """The store's root Zarr v3 group (``mode`` ``"r"`` or ``"r+"``), for code that writes the layout."""
    kwargs: dict[str, Any] = {"mode": mode, "zarr_format": 3}
    if storage_options:
        kwargs["storage_options"] = dict(storage_options)
    return zarr.open_group(str(store) if isinstance(store, os.PathLike) else store, **kwargs)


def _filesystem(store, storage_options) -> tuple[Any, str]:
    """The fsspec filesystem of ``store`` and the store's path on it."""
    import fsspec

    return fsspec.core.url_to_fs(str(store), **dict(storage_options or {}))


def _entries(fs, root: str) -> list[str]:
    """Names directly under ``root`` (listing afresh: object-store listings are cached)."""
    fs.invalidate_cache(root)
    return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))


def _looks_like_image(name: str) -> str:
    if name.endswith((".nii", ".nii.gz", ".gz")):
        return " (it looks like an input image: did you forget the STORE argument? it comes last)"
    return ""


def _check_store_path(store, storage_options) -> bool:
    """Refuse a path holding anything but a Zarr v3 group; return whether that group exists.

    Returns False for a path that does not exist, an empty folder, or a folder holding only a
    store lock (left by a first write that was killed).
    """
    fs, root = _filesystem(store, storage_options)
    fs.invalidate_cache(root)
    try:
        if fs.isfile(root):
            raise StoreError(
                f"{store} is a file, not a cohort store{_looks_like_image(root)}; "
                "give the path of a new or existing cohort store (a folder such as study.zarr)"
            )
        if not fs.isdir(root):
            return False
        entries = _entries(fs, root)
    except StoreError:
        raise
    except FileNotFoundError:
        return False
    except OSError as err:
        raise StoreError(f"cannot inspect {store}: {err}") from err
    entries = [e for e in entries if e not in (".", "")]
    if "zarr.json" in entries:
        return True
    v2 = [e for e in entries if e in _ZARR_V2_KEYS]
    if v2:
        raise StoreError(
            f"{store} is a Zarr v2 store ({', '.join(v2)} found), not a brainarr cohort store (Zarr v3); "
            "brainarr never overwrites it: use a new path"
        )
    others = [e for e in entries if e != LOCK_NODE]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise StoreError(
            f"{store} is a folder that is not empty and not a cohort store (it holds {shown}); "
            "brainarr never writes into it: give a new path or an empty folder"
        )
    return False


def _store_state(store, storage_options) -> dict[str, Any] | None:
    """The ``brainarr`` group attribute of an existing store, or None if there is no store.

    Raises :class:`StoreError` when the path holds something other than a brainarr store.
    """
    if not _check_store_path(store, storage_options):
        return None
    try:
        group = open_group(store, "r", storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None
    except Exception as err:  # a store of another format, a permission problem
        raise StoreError(f"cannot open {store} as a Zarr v3 group: {err}") from err
    state = group.attrs.get(_ATTR)
    if state is None:
        raise StoreError(
            f"{store} is a Zarr group but not a brainarr cohort store (no '{_ATTR}' attribute); "
            "brainarr never overwrites it: use a new path"
        )
    version = int(state.get("format", 0))
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{store} was written by a newer brainarr (store format {version}, this brainarr "
            f"reads up to {FORMAT_VERSION}); upgrade brainarr to read it"
        )
    if version < 1:
        raise StoreError(f"{store} has an invalid brainarr format version {version}")
    return dict(state)


# --------------------------------------------------------------------------- the writer lock


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class StoreLock:
    """Exclusive writer lock on a cohort store.

    The lock is a Zarr group ``_writer_lock`` inside the store whose ``zarr.json`` is created
    with an exclusive create (``O_EXCL`` on local disks, a conditional put on object stores
    that support it), so of two writers exactly one gets it. Its attributes name the holder
    (command, host, process id, start time). A lock left by a process that no longer runs on
    this host is stale and is taken over with a log message; a lock held by a live process or
    by another host raises :class:`~brainarr.exceptions.StoreLockedError` after ``wait`` seconds.

    Parameters
    ----------
    store : str or path-like
        Local path or fsspec URL of the store.
    storage_options : mapping, optional
        fsspec options.
    command : str, default "write"
        What the holder does (``"ingest"``, ``"run"``, ``"repair"``), shown to other writers.
    wait : float, default 0
        Seconds to wait for a held lock before raising.

    Examples
    --------
    >>> from brainarr.cohort import StoreLock
    >>> with StoreLock("memory://locked.zarr", command="example"):
    ...     pass  # only this writer may change the store here
    """

    def __init__(
        self,
        store: str | os.PathLike,
        *,
        storage_options: Mapping[str, Any] | None = None,
        command: str = "write",
        wait: float = 0.0,
    ) -> None:
        self.store = str(store)
        self.storage_options = dict(storage_options) if storage_options else None
        self.command = command
        self.wait = float(wait)
        self.token: str | None = None
        self._fs, root = _filesystem(self.store, self.storage_options)
        self._dir = f"{root.rstrip('/')}/{LOCK_NODE}"
        self._path = f"{self._dir}/zarr.json"

    def _document(self) -> bytes:
        from brainarr._core.version import __version__

        self.token = uuid.uuid4().hex
        holder = {
            "command": self.command,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "token": self.token,
            "version": __version__,
        }
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {"brainarr_lock": holder}}
        return json.dumps(doc, indent=2).encode()

    def _create(self, payload: bytes) -> None:
        """Create the lock document; FileExistsError if it exists."""
        from fsspec.implementations.local import LocalFileSystem

        if isinstance(self._fs, LocalFileSystem):
            os.makedirs(self._dir, exist_ok=True)
            fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            return
        try:
            self._fs.pipe_file(self._path, payload, mode="create")
        except TypeError:  # a filesystem without exclusive create: check, then write
            if self._fs.exists(self._path):
                raise FileExistsError(self._path) from None
            self._fs.pipe_file(self._path, payload)

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock (``command``, ``host``, ``pid``, ``started``), or None if free."""
        try:
            doc = json.loads(self._fs.cat_file(self._path))
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {"command": "unknown (unreadable lock)", "host": "?", "pid": -1, "started": "?"}
        return dict(doc.get("attributes", {}).get("brainarr_lock", {}))

    def _stale(self, holder: Mapping[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname():
            return False
        pid = int(holder.get("pid", -1))
        return pid > 0 and not _process_alive(pid)

    def remove(self) -> None:
        """Remove the lock whoever holds it (``brainarr repair --unlock``)."""
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(self._dir, recursive=True)
        self._fs.invalidate_cache(self._dir)

    def acquire(self) -> StoreLock:
        """Take the lock; raise :class:`~brainarr.exceptions.StoreLockedError` if another writer holds it."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                self._create(self._document())
                return self
            except FileExistsError:
                pass
            except NotADirectoryError as err:
                raise StoreError(f"cannot create the cohort store {self.store}: {err.strerror or err}") from err
            except OSError as err:
                raise StoreError(f"cannot lock the cohort store {self.store}: {err}") from err
            holder = self.holder()
            if holder is None:
                continue  # released in between
            if self._stale(holder):
                logger.warning(
                    "%s: removing a stale lock of brainarr %s (pid %s on %s, since %s: that process no longer runs)",
                    self.store, holder.get("command"), holder.get("pid"), holder.get("host"), holder.get("started"),
                )  # fmt: skip
                self.remove()
                continue
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"{self.store} is locked by another writer: brainarr {holder.get('command')} "
                    f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}). "
                    f"Wait for it to finish; if that process no longer runs, remove the lock with "
                    f"'brainarr repair {self.store} --unlock'"
                )
            time.sleep(min(0.5, max(0.01, deadline - time.monotonic())))

    def release(self) -> None:
        """Give the lock back (only if this object still holds it)."""
        if self.token is None:
            return
        holder = self.holder()
        if holder is not None and holder.get("token") == self.token:
            self.remove()
        self.token = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_cohort(
    store: str | os.PathLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Open a cohort store lazily.

    Parameters
    ----------
    store : str or path-like
        Local path or fsspec URL (``memory://``, ``s3://bucket/study.zarr``...).
    storage_options : mapping, optional
        fsspec options for remote stores (credentials, endpoint_url...).
    chunks : mapping, optional
        Dask chunks; default the stored chunks (one subject per chunk, time whole).

    Returns
    -------
    xarray.Dataset
        ``bold (subject, x, y, z, time)`` and the other stored variables, restricted to the
        committed subjects; phenotype coordinates on ``subject``; ``attrs`` ``tr``, ``affine``.

    Raises
    ------
    StoreError
        If the store does not exist, is not a brainarr store, or was written by a newer
        brainarr.

    Examples
    --------
    >>> import brainarr as ba
    >>> cohort = ba.open_cohort("study.zarr")  # doctest: +SKIP
    """
    state = _store_state(store, storage_options)
    if state is None:
        raise StoreError(f"no cohort store at {store}")
    kwargs: dict[str, Any] = {"consolidated": False, "zarr_format": 3}
    if storage_options:
        kwargs["storage_options"] = dict(storage_options)
    group = open_group(store, "r", storage_options)
    try:
        committed = commits.committed_subjects(group, state)
    except ValueError as err:
        raise StoreError(f"{store}: {err}; run 'brainarr repair {store}'") from err
    ds = _open_committed(store, kwargs, chunks if chunks is not None else {}, len(committed), storage_options)
    if SUBJECT in ds.dims:
        ds = ds.isel({SUBJECT: slice(0, len(committed))})
        found = [str(s) for s in ds[SUBJECT].values]
        if found != committed:
            raise StoreError(
                f"{store}: subject ids {found} do not match the committed list {committed} (a writer was "
                f"interrupted or two wrote at once); run 'brainarr repair {store}' to return to the last "
                "consistent subject"
            )
    ds = _hide_uncommitted_derived(ds, state, committed, group)
    ds = _strings_as_objects(ds)
    # phenotype coordinates are tiny: load them so selecting by group never builds a graph
    small = {name: c.load() for name, c in ds.coords.items() if c.dims == (SUBJECT,)}
    ds = ds.assign_coords(small)
    ds.attrs.pop(_ATTR, None)
    ds.attrs.update(state.get("attrs", {}))
    ds.attrs.update({"tr": state["tr"], "affine": state["affine"], "store": str(store)})
    for name, var in ds.data_vars.items():
        if set(SPATIAL) <= set(var.dims):
            var.attrs["affine"] = state["affine"]
        if TIME in var.dims and name == "bold":
            var.attrs["tr"] = state["tr"]
    return ds


def _hide_uncommitted_derived(ds: xr.Dataset, state: Mapping[str, Any], committed: list[str], group) -> xr.Dataset:
    """Set to NaN the rows of derived maps whose commit marker is missing.

    Derived maps (written by :func:`brainarr.pipeline.run`) have a record
    ``state["derived"][name]`` and a marker per committed row
    (:func:`brainarr._core.commits.committed_rows`); a row written but not yet committed (a
    crash between the two) must never be read as a result. Variables stored without a
    record are dropped.
    """
    derived = state.get("derived", {})
    for name in list(ds.data_vars):
        var = ds[name]
        if SUBJECT not in var.dims or name == "bold" or name == "confounds":
            continue
        record = derived.get(name)
        if record is None:
            if var.attrs.get("family") is not None:  # a derived map without a commit record
                ds = ds.drop_vars(name)
            continue
        done = commits.committed_rows(group, dict(state), name, committed)
        if done.all():
            continue
        ds[name] = var.where(xr.DataArray(done, dims=(SUBJECT,)))
    return ds


def _open_committed(store, kwargs: dict[str, Any], chunks, n_committed: int, storage_options) -> xr.Dataset:
    """Open the store with xarray, cutting arrays left longer than the committed rows.

    A writer killed during an append may leave the ``subject`` arrays with different lengths
    (e.g. ``bold`` resized, the ``subject`` coordinate not yet), which xarray cannot open as
    one Dataset. Then each such array is opened on its own, cut to the committed length, and
    the parts merged.
    """
    group = open_group(store, "r", storage_options)
    per_subject = {}
    short = []  # derived maps not yet extended to subjects appended after them: hidden
    for name, array in group.arrays():
        names = array.metadata.dimension_names or ()
        if SUBJECT in names:
            if array.shape[names.index(SUBJECT)] < n_committed and "family" in array.attrs:
                short.append(name)
                continue
            per_subject[name] = array.shape[names.index(SUBJECT)]
    if short:
        kwargs = {**kwargs, "drop_variables": short}
    if all(length == n_committed for length in per_subject.values()):
        return xr.open_zarr(store, chunks=chunks, **kwargs)
    parts = []
    coord_names: set[str] = set()
    for name in per_subject:
        others = [o for o in per_subject if o != name] + short
        part = xr.open_zarr(store, chunks=chunks, **{**kwargs, "drop_variables": others})
        part = part.isel({SUBJECT: slice(0, n_committed)})
        coords = str(part[name].encoding.get("coordinates", part[name].attrs.get("coordinates", "")))
        coord_names.update(coords.split())
        parts.append(part)
    ds = xr.merge(parts, compat="override", join="exact", combine_attrs="override")
    promote = [c for c in coord_names if c in ds.data_vars]
    return ds.set_coords(promote) if promote else ds


def _strings_as_objects(ds: xr.Dataset) -> xr.Dataset:
    """Return string coordinates as numpy object arrays (what pandas and users expect)."""
    updates = {}
    for name, coord in ds.coords.items():
        if coord.dtype.kind in ("T", "U", "O"):
            updates[name] = (
                coord.dims,
                np.array([str(v) for v in coord.values.ravel()], dtype=object).reshape(coord.shape),
            )
    return ds.assign_coords(updates) if updates else ds


def check_compatible(reference: xr.DataArray | xr.Dataset, candidate: xr.DataArray, subject: str) -> None:
    """Raise :class:`GridMismatchError` unless ``candidate`` fits the cohort of ``reference``.

    Compares the spatial grid size, the affine, the TR and the number of volumes, and names
    ``subject`` and the difference.
    """
    if isinstance(reference, xr.Dataset):
        reference = reference["bold"]
    ref_shape = tuple(reference.sizes[d] for d in SPATIAL)
    cand_shape = tuple(candidate.sizes[d] for d in SPATIAL)
    source = candidate.attrs.get("source", "")
    where = f"subject {subject!r}" + (f" ({source})" if source else "")
    if ref_shape != cand_shape:
        raise GridMismatchError(f"{where}: grid {cand_shape} differs from the cohort's {ref_shape}")
    ref_aff = np.asarray(reference.attrs["affine"], float)
    cand_aff = np.asarray(candidate.attrs["affine"], float)
    if not np.allclose(ref_aff, cand_aff, atol=1e-4):
        raise GridMismatchError(
            f"{where}: affine differs from the cohort's "
            f"(max difference {np.abs(ref_aff - cand_aff).max():.4g} mm); "
            "resample it onto the cohort grid first"
        )
    ref_tr, cand_tr = float(reference.attrs["tr"]), float(candidate.attrs["tr"])
    if not np.isclose(ref_tr, cand_tr, rtol=1e-4):
        raise GridMismatchError(f"{where}: TR {cand_tr:g} s differs from the cohort's {ref_tr:g} s")
    if reference.sizes[TIME] != candidate.sizes[TIME]:
        raise GridMismatchError(
            f"{where}: {candidate.sizes[TIME]} volumes, the cohort has {reference.sizes[TIME]}; "
            "discard volumes so that every subject has the same number"
        )


def _check_finite_block(block: np.ndarray, subject: str) -> np.ndarray:
    if not np.all(np.isfinite(block)):
        n_bad = int(np.count_nonzero(~np.isfinite(block)))
        raise DataValidationError(f"subject {subject!r}: BOLD contains {n_bad} NaN/Inf values in one chunk")
    return block


class CohortWriter:
    """Append subjects to a cohort store with commit semantics, under the store's lock.

    Parameters
    ----------
    store : str or path-like
        Local path or fsspec URL.
    storage_options : mapping, optional
        fsspec options.

    Raises
    ------
    StoreError
        If ``store`` holds something that is not a brainarr store (a file, a non-empty
        folder, a Zarr v2 store, another Zarr v3 group): nothing there is ever changed.

    Examples
    --------
    >>> writer = CohortWriter("memory://writer-example.zarr")
    >>> with writer.locked("ingest"):  # doctest: +SKIP
    ...     writer.append(subject_dataset)
    """

    def __init__(self, store: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.store = str(store) if isinstance(store, os.PathLike) else store
        self.storage_options = dict(storage_options) if storage_options else None
        self.state = _store_state(self.store, self.storage_options)
        self._completed: list[str] | None = None
        self._lock: StoreLock | None = None
        #: What :meth:`locked` changed to make the store consistent (``dropped``, ``trimmed``).
        self.repaired: dict[str, Any] = {"dropped": [], "trimmed": {}}

    @property
    def completed(self) -> list[str]:
        """Committed subject ids, in store order (read once, then kept up to date by the writer)."""
        if not self.state:
            return []
        if self._completed is None:
            group = open_group(self.store, "r", self.storage_options)
            self._completed = commits.committed_subjects(group, self.state, strict=False)
        return list(self._completed)

    @contextlib.contextmanager
    def locked(self, command: str = "ingest", *, wait: float = 0.0) -> Iterator[CohortWriter]:
        """Hold the store's lock; re-read and repair the commit state first.

        A store that did not exist before and holds no committed subject when the block
        ends (the first subject failed) is removed again: nothing is left behind.
        """
        if self._lock is not None:  # re-entrant
            yield self
            return
        fs, root = _filesystem(self.store, self.storage_options)
        fs.invalidate_cache(root)
        existed = fs.exists(root)
        lock = StoreLock(self.store, storage_options=self.storage_options, command=command, wait=wait)
        lock.acquire()
        self._lock = lock
        try:
            self.state = _store_state(self.store, self.storage_options)
            self._completed = None
            if self.state is not None and "subjects" in self.state:
                upgrade(self.store, storage_options=self.storage_options)
                self.state = _store_state(self.store, self.storage_options)
            self.repaired = self._reconcile() if self.state is not None else {"dropped": [], "trimmed": {}}
            yield self
        finally:
            self._lock = None
            lock.release()
            if not existed and not self.completed:
                self._remove_created()

    def reference_dataset(self) -> xr.Dataset | None:
        """The cohort as stored so far, or None for a new or empty store."""
        if not self.completed:
            return None
        return open_cohort(self.store, storage_options=self.storage_options)

    def _to_zarr_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"consolidated": False, "zarr_format": 3}
        if self.storage_options:
            kwargs["storage_options"] = self.storage_options
        return kwargs

    def _reconcile(self) -> dict[str, Any]:
        """Bring the store back to its last consistent subject; return what was changed.

        The committed subjects are kept up to the first one whose stored ``subject`` id does
        not match (two writers that appended at once, or a crash between writing and
        committing); every array along ``subject`` is cut to that length and the commit
        records of derived maps forget the dropped subjects.
        """
        committed = self.completed
        group = open_group(self.store, "r+", self.storage_options)
        stored: list[str] = []
        if SUBJECT in group:
            stored = [str(s) for s in np.asarray(group[SUBJECT][:], dtype=object)]
        keep = 0
        while keep < min(len(committed), len(stored)) and committed[keep] == stored[keep]:
            keep += 1
        dropped = committed[keep:]
        changes: dict[str, Any] = {"dropped": dropped, "trimmed": {}}
        if dropped or keep != int(self.state.get("n_subjects", 0)):
            self.state = commits.truncate_subjects(group, dict(group.attrs[_ATTR]), keep)
            commits.clear_rows_from(group, keep)
            self._completed = committed[:keep]
        if dropped:
            logger.warning(
                "%s: subjects %s were not stored consistently and are rolled back; ingest them again",
                self.store, dropped,
            )  # fmt: skip
        changes["trimmed"] = self._trim()
        return changes

    def _trim(self) -> dict[str, int]:
        """Cut every array with a ``subject`` dim back to the committed length; return the cut arrays."""
        n = len(self.completed)
        group = open_group(self.store, "r+", self.storage_options)
        cut = {}
        for name, array in group.arrays():
            names = array.metadata.dimension_names or ()
            if SUBJECT in names:
                axis = names.index(SUBJECT)
                if array.shape[axis] != n:
                    cut[name] = int(array.shape[axis])
                    shape = list(array.shape)
                    shape[axis] = n
                    array.resize(tuple(shape))
        return cut

    def _commit(self, subject: str) -> None:
        group = open_group(self.store, "r+", self.storage_options)
        completed = self.completed
        self.state = commits.record_subject(group, dict(group.attrs[_ATTR]), subject)
        self._completed = [*completed, subject]

    def _clear(self) -> None:
        """Remove what brainarr wrote in a store with no committed subject, keeping the lock."""
        fs, root = _filesystem(self.store, self.storage_options)
        with contextlib.suppress(FileNotFoundError):
            for entry in _entries(fs, root):
                if entry != LOCK_NODE:
                    fs.rm(f"{root.rstrip('/')}/{entry}", recursive=True)
            fs.invalidate_cache(root)

    def _remove_created(self) -> None:
        """Remove the store folder this writer created, if nothing but its own leftovers are in it."""
        fs, root = _filesystem(self.store, self.storage_options)
        with contextlib.suppress(FileNotFoundError):
            if set(_entries(fs, root)) <= {LOCK_NODE, "zarr.json"}:
                fs.rm(root, recursive=True)
            fs.invalidate_cache(root)

    def append(
        self,
        ds: xr.Dataset,
        *,
        static: Mapping[str, xr.DataArray] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write one subject (a Dataset with ``subject`` of length 1) and commit it.

        ``static`` variables without a ``subject`` dim (masks) and cohort ``attrs`` are written
        with the first subject only. On any error the subject is rolled back (rows trimmed, or
        what this call wrote into a new store removed) and the error re-raised. Takes the
        store's lock unless the caller holds it (:meth:`locked`).
        """
        if self._lock is None:
            with self.locked("ingest"):
                self.append(ds, static=static, attrs=attrs)
            return
        subject = str(ds[SUBJECT].values[0])
        bold = ds["bold"]
        checked = da.map_blocks(_check_finite_block, bold.data, subject, dtype=bold.dtype)
        ds = ds.assign(bold=bold.copy(data=checked))
        ds["bold"].encoding = {}
        fresh = not self.completed
        state = {
            "format": FORMAT_VERSION,
            "n_subjects": len(self.completed),
            "tr": float(ds.attrs["tr"]),
            "affine": [list(map(float, row)) for row in ds.attrs["affine"]],
            "n_time": int(bold.sizes[TIME]),
            "shape": [int(bold.sizes[d]) for d in SPATIAL],
            "attrs": dict(self.state.get("attrs", {})) if self.state else _jsonable(dict(attrs or {})),
            # commit records of derived maps (brainarr.pipeline) survive appends
            "derived": dict(self.state.get("derived", {})) if self.state else {},
        }
        from brainarr._core.version import __version__

        state["version"] = __version__
        ds.attrs = {_ATTR: state}
        # text coordinates as variable-length strings, the string type Zarr v3 specifies
        ds = _strings_as_objects(ds)
        try:
            if fresh:
                for name, var in (static or {}).items():
                    check_compatible_mask(var, bold, subject)
                    ds[name] = var.drop_vars([c for c in var.coords if c not in SPATIAL])
                    ds[name].attrs = {k: v for k, v in var.attrs.items() if k in ("long_name", "units")}
                self._clear()  # only brainarr's own leftovers: the path was checked on open
                ds.to_zarr(self.store, mode="a", **self._to_zarr_kwargs())
            else:
                self._trim()
                ds.to_zarr(self.store, append_dim=SUBJECT, **self._to_zarr_kwargs())
        except BaseException:
            if fresh:
                self._clear()
                self.state = None
                self._completed = None
            else:
                self._trim()
            raise
        self._commit(subject)


def upgrade(store: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None) -> int:
    """Bring a store of an earlier layout to :data:`FORMAT_VERSION` in place; return its former version.

    The caller holds the store's lock (writers call this when they take it). A format 1 store
    kept its commit records as lists in the group attribute; they become the arrays of
    :mod:`brainarr._core.commits`.
    """
    state = _store_state(store, storage_options)
    if state is None:
        raise StoreError(f"no cohort store at {store}")
    version = int(state.get("format", 1))
    if "subjects" in state:
        commits.upgrade(open_group(store, "r+", storage_options), state)
    return version


def repair(
    store: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None, unlock: bool = False
) -> dict[str, Any]:
    """Bring a cohort store left inconsistent by a crash back to its last consistent subject.

    Parameters
    ----------
    store : str or path-like
        Local path or fsspec URL of the store.
    storage_options : mapping, optional
        fsspec options.
    unlock : bool, default False
        First remove the writer lock whoever holds it. Only when no writer runs any more (a
        lock of a dead process on this host is removed without this).

    Returns
    -------
    dict
        ``subjects`` (committed subjects kept), ``dropped`` (subjects rolled back: ingest
        them again), ``trimmed`` (arrays cut back, with their previous length) and
        ``unlocked`` (the holder of a removed lock, or None).

    Raises
    ------
    StoreError
        If there is no brainarr store at ``store``.
    StoreLockedError
        If a writer holds the lock and ``unlock`` is False.
    """
    writer = CohortWriter(store, storage_options=storage_options)
    if writer.state is None:
        raise StoreError(f"no cohort store at {store}")
    unlocked = None
    if unlock:
        lock = StoreLock(store, storage_options=storage_options)
        unlocked = lock.holder()
        lock.remove()
    with writer.locked("repair"):
        changes = writer.repaired
    return {"subjects": writer.completed, **changes, "unlocked": unlocked}


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays nested in dicts and lists to JSON-ready Python objects."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_compatible_mask(mask: xr.DataArray, bold: xr.DataArray, subject: str) -> None:
    """Raise :class:`GridMismatchError` unless ``mask`` is on the grid of ``bold``."""
    shape = tuple(mask.sizes.get(d, -1) for d in SPATIAL)
    expected = tuple(bold.sizes[d] for d in SPATIAL)
    if shape != expected:
        raise GridMismatchError(
            f"{mask.name or 'mask'}: grid {shape} differs from the BOLD grid {expected} (subject {subject!r})"
        )


def summary(cohort: xr.Dataset) -> str:
    """A short human-readable description of a cohort Dataset.

    Parameters
    ----------
    cohort : xarray.Dataset
        As returned by :func:`open_cohort` or ``simulate_cohort``.

    Returns
    -------
    str
        Subjects (by group), grid, voxel size, TR, volumes, variables and size in GB.
    """
    from brainarr._core.grid import voxel_size

    lines = []
    n = cohort.sizes.get(SUBJECT, 0)
    groups = ""
    if "group" in cohort.coords:
        values, counts = np.unique(np.asarray(cohort["group"].values, dtype=str), return_counts=True)
        groups = " (" + ", ".join(f"{c} {v}" for v, c in zip(values, counts, strict=True)) + ")"
    lines.append(f"subjects: {n}{groups}")
    if "bold" in cohort:
        bold = cohort["bold"]
        shape = " x ".join(str(bold.sizes[d]) for d in SPATIAL)
        affine = cohort.attrs.get("affine", bold.attrs.get("affine"))
        if affine is not None:
            vs = voxel_size(np.asarray(affine, float))
            lines.append(f"grid: {shape} voxels of {' x '.join(f'{v:g}' for v in vs)} mm")
        else:
            lines.append(f"grid: {shape} voxels")
        if TIME in bold.dims:
            tr = cohort.attrs.get("tr", bold.attrs.get("tr"))
            lines.append(f"volumes: {bold.sizes[TIME]}" + (f" at TR {float(tr):g} s" if tr is not None else ""))
        lines.append(
            f"bold: {bold.dtype}, {bold.nbytes / 1e9:.2f} GB, "
            f"chunks {bold.data.chunksize if bold.chunks else 'in memory'}"
        )
    phenos = [c for c in cohort.coords if c != SUBJECT and cohort[c].dims == (SUBJECT,)]
    if phenos:
        lines.append(f"phenotypes: {', '.join(phenos)}")
    others = [v for v in cohort.data_vars if v != "bold"]
    if others:
        lines.append(f"other variables: {', '.join(others)}")
    return "\n".join(lines)
