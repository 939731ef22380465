"""The subject stage: every subject's maps computed and written by the workers, many at once.

Each subject is one task: the worker reads the subject's rows from the store, computes the
maps of the families it needs (the lazy graph of :func:`~brainarr.study.subject_maps`, run
in the task) and writes the rows itself; the task returns a few bytes. The process running
the study keeps a bounded number of subjects in flight (twice the cluster's threads, so
memory stays flat at any cohort size), sends the masks and settings to the cluster once,
and commits the rows of finished subjects in batches (:mod:`brainarr._core.commits`): its
work per subject is constant, and no map passes through it.

A worker that dies mid-subject leaves rows written but not committed: the scheduler runs the
task again elsewhere, and an interrupted run commits exactly the subjects whose task ended.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from brainarr._core import commits
from brainarr._core.dims import SPATIAL, SUBJECT, TIME
from brainarr.cohort import open_group
from brainarr.config import StudyConfig
from brainarr.exceptions import StoreError
from brainarr.study._derived import prepare_variable
from brainarr.study._families import FAMILY_VARIABLES, family_params, params_hash
from brainarr.study._maps import CONF, SUBJECT_TISSUES, motion_parameters, subject_maps, subject_masks
from brainarr.study._progress import Progress

__all__ = ["SubjectContext", "compute_subject", "run_subject_stage"]

logger = logging.getLogger("brainarr")

#: Variables read per subject by a subject task (those present in the store).
_INPUTS = ("bold", "confounds", *SUBJECT_TISSUES)
#: A subject whose inputs take at most this many bytes is read into memory whole and its maps
#: computed on numpy arrays (no graph to build: the cost of small subjects); a larger one is
#: computed chunk by chunk as stored, so its memory stays that of a few chunks.
IN_MEMORY_BYTES = 128 * 2**20


@dataclass(frozen=True)
class SubjectContext:
    """What every subject task needs, sent to the cluster once.

    Attributes
    ----------
    store : str
        Cohort store (absolute path or fsspec URL).
    storage_options : dict or None
        fsspec options of a remote store.
    config : StudyConfig
        Study settings.
    masks : dict of str to xarray.DataArray
        The group's ``gm``, ``wm`` and ``csf`` masks on the study grid (loaded).
    coords : dict of str to numpy.ndarray
        Coordinates of the per-subject variables' other dims (``x``, ``y``, ``z``, ``time``,
        ``confound``).
    tr : float
        Repetition time (s).
    affine : list of list of float
        Voxel-to-world matrix of the grid (mm).
    """

    store: str
    storage_options: dict[str, Any] | None
    config: StudyConfig
    masks: dict[str, xr.DataArray]
    coords: dict[str, np.ndarray]
    tr: float
    affine: list[list[float]]


def _subject_inputs(group, ctx: SubjectContext, index: int) -> xr.Dataset:
    """The rows of subject ``index`` as a lazy one-subject Dataset, chunked as stored."""
    import dask.array as dsa

    data = {}
    for name in _INPUTS:
        if name not in group:
            continue
        array = group[name]
        dims = tuple(array.metadata.dimension_names or ())
        if not dims or dims[0] != SUBJECT:
            continue
        rows = dsa.from_zarr(array)[index : index + 1]
        coords = {d: ctx.coords[d] for d in dims[1:] if d in ctx.coords}
        data[name] = xr.DataArray(rows, dims=dims, coords=coords)
    return xr.Dataset(data)


def compute_subject(
    ctx: SubjectContext, index: int, subject: str, names: Sequence[str], scheduler: str | None = None
) -> dict[str, Any]:
    """Compute and write the maps ``names`` of subject ``index`` (one subject task).

    The maps are those of :func:`~brainarr.study.subject_maps`, bit for bit whether the
    inputs are read whole (up to :data:`IN_MEMORY_BYTES`) or computed chunk by chunk.

    Parameters
    ----------
    ctx : SubjectContext
        Shared inputs.
    index : int
        Row of the subject in the store.
    subject : str
        Its id (for messages).
    names : sequence of str
        Derived variables to compute (their variables exist, see
        :func:`~brainarr.study.prepare_variable`).
    scheduler : str, optional
        Dask scheduler of the subject's graph: ``"sync"`` inside a cluster's task (the
        cluster runs many subjects at once), None for the current default.

    Returns
    -------
    dict
        ``index``, ``subject``, ``names`` and ``seconds`` (time in the task). The rows are
        written, not committed.
    """
    import dask

    start = time.perf_counter()
    group = open_group(ctx.store, "r+", ctx.storage_options)
    inputs = _subject_inputs(group, ctx, index)
    if inputs.nbytes <= IN_MEMORY_BYTES:
        inputs = inputs.load()
    bold = inputs["bold"].isel({SUBJECT: 0}, drop=True)
    bold.attrs.update(tr=ctx.tr, affine=ctx.affine)
    motion = motion_parameters(inputs["confounds"].isel({SUBJECT: 0}, drop=True))
    families = tuple(f for f in ctx.config.metrics.families if set(FAMILY_VARIABLES[f]) & set(names))
    masks = subject_masks(inputs, ctx.masks, 0, ctx.config)
    maps = subject_maps(bold, motion, masks, ctx.config, families)
    values = dask.compute(*(maps[n].data for n in names), scheduler=scheduler)
    for name, value in zip(names, values, strict=True):
        group[name][index] = np.asarray(value, dtype=np.float32)
    return {"index": index, "subject": subject, "names": tuple(names), "seconds": time.perf_counter() - start}


class _Committer:
    """Commits finished subjects' rows in batches (at most every ``every`` seconds)."""

    def __init__(self, store: str, storage_options, digests: Mapping[str, str], *, every: float = 2.0) -> None:
        self.store, self.storage_options, self.digests, self.every = store, storage_options, dict(digests), every
        self.pending: dict[tuple[str, ...], list[tuple[int, str]]] = {}
        self.last = time.perf_counter()

    def add(self, record: Mapping[str, Any]) -> None:
        self.pending.setdefault(tuple(record["names"]), []).append((int(record["index"]), str(record["subject"])))
        if time.perf_counter() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            group = open_group(self.store, "r+", self.storage_options)
            for names, rows in self.pending.items():
                commits.commit_rows(group, {n: self.digests[n] for n in names}, rows)
            self.pending = {}
        self.last = time.perf_counter()


def _active_client(client):
    """``client``, else the default distributed client if one exists, else None."""
    if client is not None:
        return client
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _warm_up() -> None:
    """Import what a subject task needs (run on every worker while the driver prepares the store)."""
    import brainarr.metrics
    import brainarr.preprocess
    import brainarr.study  # noqa: F401


def _check_reachable(store: str, client) -> None:
    """Refuse an in-memory store when workers run in other processes (they cannot see it)."""
    if not store.startswith("memory://"):
        return
    pids = set(client.run(os.getpid).values())
    if pids - {os.getpid()}:
        raise StoreError(
            f"{store}: an in-memory store exists in this process only, and the cluster's workers run "
            "in other processes; write the cohort to a path or an object store they can reach, or "
            "use a client with processes=False"
        )


def _run_local(ctx, jobs, committer, bar) -> None:
    for index, subject, names in jobs:
        record = compute_subject(ctx, index, subject, names)
        committer.add(record)
        bar.update()
        logger.info("subject %s: %s in %.2f s", subject, ", ".join(names), record["seconds"])


def _run_distributed(client, ctx, jobs, committer, bar) -> None:
    from distributed import as_completed

    _check_reachable(ctx.store, client)
    shared = client.scatter(ctx, broadcast=True, hash=False)
    window = 2 * max(1, sum(client.nthreads().values()))
    token = uuid.uuid4().hex[:8]
    queue = iter(jobs)

    def submit(job):
        index, subject, names = job
        key = f"brainarr-subject-{index}-{token}"
        return client.submit(compute_subject, shared, index, subject, names, "sync", key=key, pure=False)

    flight = {submit(job) for job in itertools.islice(queue, window)}
    done = as_completed(flight)
    try:
        for future in done:
            record = future.result()
            flight.discard(future)
            committer.add(record)
            bar.update()
            logger.info("subject %s: %s in %.2f s", record["subject"], ", ".join(record["names"]), record["seconds"])
            job = next(queue, None)
            if job is not None:
                new = submit(job)
                flight.add(new)
                done.add(new)
    finally:
        if flight:
            client.cancel(list(flight))
        client.cancel(shared)


def run_subject_stage(
    cohort: xr.Dataset,
    store: str,
    storage_options: Mapping[str, Any] | None,
    config: StudyConfig,
    masks: Mapping[str, xr.DataArray],
    *,
    client: Any = None,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Compute, write and commit every subject map missing from the store.

    Parameters
    ----------
    cohort : xarray.Dataset
        The opened cohort (:func:`brainarr.open_cohort`); only its metadata is read here.
    store : str
        Its store.
    storage_options : mapping, optional
        fsspec options of a remote store.
    config : StudyConfig
        Study settings.
    masks : mapping
        ``gm``, ``wm``, ``csf`` (see :func:`~brainarr.study.analysis_masks`).
    client : distributed.Client, optional
        Run the subjects as tasks of this cluster (default: the current distributed client,
        else one subject at a time with the local threaded scheduler).
    progress : bool, default True
        Show one progress line for the stage (and the dashboard address of a cluster).

    Returns
    -------
    dict of str to list of str
        Per derived variable, the subjects computed.
    """
    if "://" not in store:
        store = os.path.abspath(store)
    client = _active_client(client)
    warming = []
    if client is not None:  # new worker processes import while the store is prepared
        warming = [
            client.submit(_warm_up, workers=[address], allow_other_workers=False, pure=False)
            for address in client.scheduler_info()["workers"]
        ]
    subjects = [str(s) for s in cohort[SUBJECT].values]
    grid = masks["gm"]
    todo: dict[str, list[str]] = {}
    digests: dict[str, str] = {}
    for family in config.metrics.families:
        params = family_params(config, family)
        for name in FAMILY_VARIABLES[family]:
            seeds = list(config.metrics.seeds) if name == "zfc" else None
            todo[name] = prepare_variable(
                store, storage_options, name, subjects=subjects, grid=grid, seeds=seeds, params=params,
                attrs={"family": family},
            )  # fmt: skip
            digests[name] = params_hash(params)
    missing = {name: set(v) for name, v in todo.items()}
    jobs = []
    for index, subject in enumerate(subjects):
        names = [n for n in todo if subject in missing[n]]
        if names:
            jobs.append((index, subject, names))
    logger.info("subject level: %d of %d subjects need maps", len(jobs), len(subjects))
    if not jobs:
        return todo
    coords = {d: np.asarray(cohort[d].values) for d in (*SPATIAL, TIME, CONF) if d in cohort.coords}
    ctx = SubjectContext(
        store=store,
        storage_options=dict(storage_options) if storage_options else None,
        config=config,
        masks={k: v for k, v in masks.items()},
        coords=coords,
        tr=float(cohort.attrs["tr"]),
        affine=[list(map(float, row)) for row in np.asarray(cohort.attrs["affine"])],
    )
    committer = _Committer(store, storage_options, digests)
    if client is not None and progress:
        link = getattr(client, "dashboard_link", None)
        if link:
            print(f"Dask dashboard: {link}", flush=True)
    bar = Progress(len(jobs), "subjects", enabled=progress)
    try:
        if client is None:
            _run_local(ctx, jobs, committer, bar)
        else:
            _run_distributed(client, ctx, jobs, committer, bar)
    finally:
        committer.flush()
        bar.close()
        del warming
    return todo
