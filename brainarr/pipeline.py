"""The whole study, end to end: motion QC, subject-level maps, group statistics and the report.

:func:`run` takes a :class:`~brainarr.config.StudyConfig` (or a TOML file) and a cohort store
and does every step of the reference study (see ``STUDY.md``):

1. head-motion QC from the stored realignment parameters (``mean_fd``, ``max_translation``,
   ``max_rotation``, ``excluded``);
2. for each committed subject: discard, nuisance regression (Friston-24 + WM + CSF, linear
   detrending), ALFF/fALFF on the unfiltered residuals, band-pass, then ReHo (SMKCC), seed FC
   and degree centrality with their normalised variants;
3. the subject maps are written back into the same store, one subject at a time, each
   variable with its own commit record, so an interrupted run resumes where it stopped and a
   changed parameter recomputes only the maps it affects;
4. group level per map: two-sample t-test with covariates, GRF cluster correction with the
   family's thresholds, cluster tables with AAL labels (optional permutation inference);
5. outputs: t maps (NIfTI), cluster tables (CSV, Markdown), Table 1, figures and one
   self-contained ``report.html``.

Store layout of the derived maps: a variable per map with dims ``(subject, x, y, z)`` (``zfc``:
``(subject, seed, x, y, z)``), one subject per chunk, written in place. The group attribute
``brainarr["derived"][name]`` holds ``{"params": <hash>, "subjects": [...]}``: a subject row is
valid only once its id is listed there, and :func:`brainarr.open_cohort` hides rows that are not.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from brainarr._core.dims import SEED, SPATIAL, SUBJECT
from brainarr.cohort import StoreLock, open_group, upgrade
from brainarr.config import ConfigError, StudyConfig
from brainarr.exceptions import BrainarrError, DataValidationError, MissingMetadataError
from brainarr.study import (
    FAMILY_VARIABLES,
    GROUP_VARIANTS,
    analysis_masks,
    derived_state,
    family_of,
    motion_parameters,
    run_subject_stage,
    subject_maps,
    subject_masks,
)

__all__ = ["StudyResult", "recovery", "report", "run"]

logger = logging.getLogger("brainarr")

_ATTR = "brainarr"


@dataclass
class StudyResult:
    """What :func:`run` produced.

    Attributes
    ----------
    output : pathlib.Path
        The output folder.
    paths : dict of str to pathlib.Path
        Every file written, by a short key (``"report"``, ``"malff_t"``, ``"malff_csv"``...).
    tables : dict of str to pandas.DataFrame
        ``"table1"``, ``"motion"`` and one cluster table per group variant (``"malff"``,
        ``"zfc_Postcentral_L"``...).
    permutation_tables : dict of str to pandas.DataFrame
        With ``[group.permutation] enabled``: per group variant, the clusters of voxels whose
        permutation FWE p is below the family's ``cluster_p`` (``p`` is that FWE p).
    timings : dict of str to float
        Seconds per step (``"motion_qc"``, ``"subjects"``, ``"group"``, ``"report"``, ``"total"``).
    computed : dict of str to list of str
        Subject ids computed in this run, per derived variable (empty when up to date).
    """

    output: Path
    paths: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    permutation_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    computed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def report(self) -> Path | None:
        """Path of ``report.html``."""
        return self.paths.get("report")


# --------------------------------------------------------------------------- config helpers


def _as_config(config: StudyConfig | str | os.PathLike | None) -> StudyConfig:
    if config is None:
        return StudyConfig()
    if isinstance(config, StudyConfig):
        return config.validate()
    return StudyConfig.from_toml(config)


# --------------------------------------------------------------------------- store helpers


def _record_config(store: str, config: StudyConfig, storage_options: Mapping[str, Any] | None) -> None:
    """Keep the config of the last run in the store, so that :func:`report` shows what was run."""
    group = open_group(store, "r+", storage_options)
    state = dict(group.attrs[_ATTR])
    state["config"] = config.to_dict()
    group.attrs[_ATTR] = state


def _stored_config(store: str, storage_options: Mapping[str, Any] | None) -> StudyConfig | None:
    state = dict(open_group(store, "r", storage_options).attrs.get(_ATTR, {}))
    if "config" not in state:
        return None
    try:
        return StudyConfig.from_dict(state["config"])
    except ConfigError as err:
        raise ConfigError(
            f"{store}: the config recorded by the last run is not valid for this brainarr ({err}); "
            "give the study config (--config study.toml)"
        ) from err


# --------------------------------------------------------------------------- subject level


# --------------------------------------------------------------------------- group level


def _group_maps(cohort: xr.Dataset, config: StudyConfig) -> dict[str, xr.DataArray]:
    """Per group variant: the maps ``(subject, x, y, z)`` (FC split by seed)."""
    out = {}
    for family in config.metrics.families:
        for name in GROUP_VARIANTS[family]:
            if name not in cohort:
                continue
            var = cohort[name]
            if SEED in var.dims:
                for seed in [str(s) for s in var[SEED].values]:
                    out[f"{name}_{seed}"] = var.sel({SEED: seed}, drop=True).rename(f"{name}_{seed}")
            else:
                out[name] = var
    return out


def _motion(cohort: xr.Dataset, config: StudyConfig) -> xr.Dataset:
    from brainarr.preprocess import motion_qc

    if "confounds" not in cohort:
        raise ValueError(f"{cohort.attrs.get('store', 'cohort')}: no 'confounds' variable (realignment parameters)")
    qc = motion_qc(
        motion_parameters(cohort["confounds"]),
        max_translation=config.preprocess.max_translation,
        max_rotation=config.preprocess.max_rotation,
    )
    return qc.compute()


def _motion_table(qc: xr.Dataset, cohort: xr.Dataset, by: str) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "subject": [str(s) for s in cohort[SUBJECT].values],
            by: [str(g) for g in cohort[by].values] if by in cohort.coords else "",
            "mean_fd": np.asarray(qc["mean_fd"].values, float),
            "max_translation": np.asarray(qc["max_translation"].values, float),
            "max_rotation": np.asarray(qc["max_rotation"].values, float),
            "excluded": np.asarray(qc["excluded"].values, bool),
        }
    )
    return table


def _permutation(variant, maps, gm, config, thr, out_dir, result, atlas) -> None:
    """Freedman-Lane permutation inference of one group map at the family's thresholds."""
    from brainarr import io, stats

    g = config.group
    perm = stats.permutation(
        maps,
        by=g.by,
        covariates=list(g.covariates),
        groups=list(g.groups),
        mask=gm,
        n_perm=g.permutation.n_perm,
        stat=g.permutation.stat,
        tail="both" if thr.two_tailed else "positive",
        voxel_p=thr.voxel_p,
        seed=g.permutation.seed,
    ).compute()
    p_fwe = perm["p_fwe"]
    significant = perm["t"].where(p_fwe < thr.cluster_p, 0.0)
    significant.attrs["affine"] = gm.attrs["affine"]
    table = stats.cluster_table(significant, atlas=atlas)
    if len(table):  # the FWE p of a cluster (cluster statistics) or of its peak voxel (TFCE, voxel)
        peaks = p_fwe.sel(
            x=xr.DataArray(table["x"].to_numpy()), y=xr.DataArray(table["y"].to_numpy()),
            z=xr.DataArray(table["z"].to_numpy()), method="nearest",
        )  # fmt: skip
        table["p"] = np.asarray(peaks.values, float)
    result.permutation_tables[variant] = table
    csv = out_dir / "tables" / f"{variant}_permutation_clusters.csv"
    stats.table_to_csv(table, csv)
    result.paths[f"{variant}_permutation_csv"] = csv
    row = pd.DataFrame(
        [
            {
                "map": variant,
                "stat": g.permutation.stat,
                "n_perm": g.permutation.n_perm,
                "voxel_p": thr.voxel_p if g.permutation.stat in ("cluster_size", "cluster_mass") else np.nan,
                "alpha": thr.cluster_p,
                "clusters": len(table),
                f"voxels p_fwe < {thr.cluster_p:g}": int((np.asarray(p_fwe.values) < thr.cluster_p).sum()),
                "min p_fwe": float(p_fwe.min()),
            }
        ]
    )
    previous = result.tables.get("permutation")
    result.tables["permutation"] = row if previous is None else pd.concat([previous, row], ignore_index=True)
    if config.output.nifti:
        for var in perm.data_vars:
            if set(perm[var].dims) == set(SPATIAL):
                img = perm[var].astype(np.float32)
                img.attrs["affine"] = gm.attrs["affine"]
                result.paths[f"{variant}_perm_{var}"] = io.to_nifti(
                    img, out_dir / "maps" / f"{variant}_perm_{var}.nii.gz"
                )


def _analyse(
    variant: str,
    maps: xr.DataArray,
    gm: xr.DataArray,
    config: StudyConfig,
    out_dir: Path,
    result: StudyResult,
    atlas: xr.DataArray,
) -> xr.Dataset:
    from brainarr import io, stats

    family = family_of(variant)
    g = config.group
    thr = g.grf.get(family)
    if thr is None:
        from brainarr.config import GRFConfig

        thr = GRFConfig()
    maps = maps.load()
    maps.attrs.setdefault("affine", gm.attrs["affine"])
    try:
        tt = stats.ttest2(maps, by=g.by, covariates=list(g.covariates), groups=list(g.groups), mask=gm)
        res = stats.grf(tt, mask=gm, voxel_p=thr.voxel_p, cluster_p=thr.cluster_p, two_tailed=thr.two_tailed)
        res = res.compute()
    except BrainarrError as err:  # name the map: a subject's map may be unusable in one variant only
        raise type(err)(f"group map {variant!r}: {err}") from err
    table = stats.cluster_table(res, atlas=atlas)
    result.tables[variant] = table
    csv = out_dir / "tables" / f"{variant}_clusters.csv"
    stats.table_to_csv(table, csv)
    md = out_dir / "tables" / f"{variant}_clusters.md"
    md.write_text(stats.table_to_markdown(table))
    result.paths[f"{variant}_csv"] = csv
    result.paths[f"{variant}_md"] = md
    if config.output.nifti:
        t_all = tt["t"].compute()
        t_all.attrs["affine"] = gm.attrs["affine"]
        t_thr = res["t"]
        t_thr.attrs["affine"] = gm.attrs["affine"]
        result.paths[f"{variant}_t"] = io.to_nifti(t_all, out_dir / "maps" / f"{variant}_t.nii.gz")
        result.paths[f"{variant}_t_grf"] = io.to_nifti(t_thr, out_dir / "maps" / f"{variant}_t_grf.nii.gz")
    if g.permutation.enabled and family in g.permutation.families:
        _permutation(variant, maps, gm, config, thr, out_dir, result, atlas)
    return res


# --------------------------------------------------------------------------- the pipeline


def _default_output(store: str, config: StudyConfig) -> Path:
    directory = Path(config.output.directory)
    if directory.is_absolute() or "://" in store:
        return directory
    return Path(store).resolve().parent / directory


class _Timer:
    def __init__(self, result: StudyResult, key: str) -> None:
        self.result, self.key = result, key

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        logger.info("%s: started", self.key)
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.result.timings[self.key] = self.result.timings.get(self.key, 0.0) + elapsed
        logger.info("%s: %s in %.2f s", self.key, "failed" if exc[0] else "done", elapsed)


def run(
    config: StudyConfig | str | os.PathLike | None,
    store: str | os.PathLike,
    *,
    client: Any = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> StudyResult:
    """Run the whole study on a cohort store: subject maps (resumable), group statistics, report.

    Parameters
    ----------
    config : StudyConfig, path to a TOML file, or None
        Study settings; None: the reference study's defaults.
    store : str or path-like
        Cohort store (local path or fsspec URL) with ``bold``, ``confounds`` (six realignment
        parameters) and the subject coordinates of the group model. The derived maps are
        written into it.
    client : distributed.Client, optional
        Compute on this cluster; default the current Dask scheduler.
    output : str or path-like, optional
        Output folder; default ``config.output.directory`` next to a local store (as given
        for a remote store).
    progress : bool, default True
        Show progress bars.
    storage_options : mapping, optional
        fsspec options of a remote store.

    Returns
    -------
    StudyResult
        Paths of the files written, the tables and the timings.

    Raises
    ------
    StoreLockedError
        If another writer (an ingest, another run) holds the store's lock; the run holds it
        from start to end, so two runs never write the same store at once.

    Notes
    -----
    A derived map is recomputed for a subject only when the subject is not committed for it
    or when the parameters it depends on (:func:`family_params`) changed. The group level and
    the outputs are always rebuilt (they take seconds). A log of the steps and timings is
    written to ``log.txt`` in the output folder.
    """
    from brainarr.cohort import open_cohort

    config = _as_config(config)
    store = str(store)
    out_dir = Path(output) if output is not None else _default_output(store, config)
    for sub in ("", "tables", "maps", "figures"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    result = StudyResult(output=out_dir)
    handler = logging.FileHandler(out_dir / "log.txt", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    previous_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    total = time.perf_counter()
    lock = StoreLock(store, storage_options=storage_options, command="run")
    try:
        logger.info("brainarr run: store %s, output %s", store, out_dir)
        lock.acquire()
        upgrade(store, storage_options=storage_options)
        cohort = open_cohort(store, storage_options=storage_options)
        subjects = [str(s) for s in cohort[SUBJECT].values]
        if not subjects:
            raise ValueError(f"{store}: the cohort has no committed subject")
        with _Timer(result, "motion_qc"):
            qc = _motion(cohort, config)
        _check_group_model(cohort.assign_coords({k: (SUBJECT, qc[k].values) for k in qc.data_vars}), config)
        masks = analysis_masks(cohort, config)
        _check_subject_model(cohort, config, masks)
        with _Timer(result, "subjects"):
            _subject_level(cohort, store, storage_options, config, masks, client, progress, result)
        _record_config(store, config, storage_options)
        cohort = open_cohort(store, storage_options=storage_options)
        cohort = cohort.assign_coords({k: (SUBJECT, qc[k].values) for k in qc.data_vars})
        with _Timer(result, "group"):
            group_results = _group_level(cohort, config, masks, out_dir, result)
        with _Timer(result, "report"):
            _write_report(cohort, config, masks, group_results, out_dir, result, store)
    finally:
        lock.release()
        result.timings["total"] = time.perf_counter() - total
        logger.info("brainarr run: total %.2f s", result.timings["total"])
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous_level)
    result.paths["log"] = out_dir / "log.txt"
    return result


def _subject_level(cohort, store, storage_options, config, masks, client, progress, result) -> None:
    result.computed = run_subject_stage(cohort, store, storage_options, config, masks, client=client, progress=progress)


def _check_group_model(cohort: xr.Dataset, config: StudyConfig) -> None:
    """Refuse, before any subject map is computed, a group model that cannot be fitted.

    The group labels are checked on the whole cohort (a wrong-case or misspelt label is named
    with the labels present), the motion exclusions per group, then the design of the
    subjects that enter the group level (covariate values, rank, degrees of freedom).
    """
    from brainarr import stats

    g = config.group
    func = f"brainarr.pipeline.run ({cohort.attrs.get('store', 'cohort')})"
    derived = {n for names in FAMILY_VARIABLES.values() for n in names} | {SEED}
    clash = sorted(str(c) for c in cohort.coords if c in derived and cohort[c].dims == (SUBJECT,))
    if clash:
        raise MissingMetadataError(
            f"{func}: phenotype column(s) {clash} have the names of maps the study writes into the store; "
            "rename them in the phenotype table and ingest into a new store"
        )
    if g.by not in cohort.coords:
        available = sorted(str(c) for c in cohort.coords if cohort[c].dims == (SUBJECT,) and c != SUBJECT)
        raise MissingMetadataError(
            f"{func}: [group] by = {g.by!r} is not a subject coordinate of the cohort; available: {available} "
            "(phenotype columns given at ingest)"
        )
    labels = np.asarray(cohort[g.by].values).astype(str)
    subjects = np.asarray(cohort[SUBJECT].values).astype(str)
    stats.check_groups(labels, subjects, by=g.by, groups=g.groups, func=func)
    if g.exclude_movers:
        excluded = np.asarray(cohort["excluded"].values, bool)
        for group in g.groups:
            members = labels == group
            kept = int((members & ~excluded).sum())
            if kept < 2:
                movers = subjects[members & excluded].tolist()
                raise DataValidationError(
                    f"{func}: group {group!r} keeps {kept} of {int(members.sum())} subjects after excluding those "
                    f"over the motion limits ([preprocess] max_translation = {config.preprocess.max_translation:g} "
                    f"mm, max_rotation = {config.preprocess.max_rotation:g} degrees): {movers}; the two-sample "
                    "test needs at least 2 per group: raise the limits or set [group] exclude_movers = false"
                )
    included = _included(cohort, config)
    coords = {c: included[c] for c in included.coords if included[c].dims == (SUBJECT,)}
    placeholder = xr.DataArray(np.zeros(included.sizes[SUBJECT]), dims=(SUBJECT,), coords=coords)
    stats.group_design(
        placeholder, by=g.by, covariates=list(g.covariates), groups=list(g.groups), center=False, func=func
    )


def _check_subject_model(cohort: xr.Dataset, config: StudyConfig, masks: Mapping[str, xr.DataArray]) -> None:
    """Build the first subject's maps without computing them: a bad nuisance model fails before any write.

    A model with at least as many regressors as the volumes left after ``discard`` would give
    all-zero residuals and silently meaningless maps.
    """
    pre = config.preprocess
    n_time = int(cohort.sizes["time"])
    if pre.discard >= n_time:
        raise ConfigError(
            f"[preprocess] discard = {pre.discard} is invalid: the cohort {cohort.attrs.get('store', '')} has "
            f"{n_time} volumes per subject"
        )
    bold = cohort["bold"].isel({SUBJECT: 0}, drop=True)
    bold = bold.drop_vars([c for c in bold.coords if c not in bold.dims])
    bold.attrs.update(tr=cohort.attrs["tr"], affine=cohort.attrs["affine"])
    motion = motion_parameters(cohort["confounds"].isel({SUBJECT: 0}, drop=True))
    try:
        subject_maps(bold, motion.drop_vars([c for c in motion.coords if c not in motion.dims]),
                     subject_masks(cohort, masks, 0, config), config, tuple(config.metrics.families))  # fmt: skip
    except DataValidationError as err:
        raise DataValidationError(
            f"[preprocess] discard = {pre.discard}, detrend = {pre.detrend}, confounds = {list(pre.confounds)} "
            f"cannot be used on {n_time} volumes: {err}"
        ) from err


def _included(cohort: xr.Dataset, config: StudyConfig) -> xr.Dataset:
    g = config.group
    keep = np.isin(np.asarray(cohort[g.by].values, dtype=str), list(g.groups))
    if g.exclude_movers and "excluded" in cohort.coords:
        keep &= ~np.asarray(cohort["excluded"].values, bool)
    return cohort.isel({SUBJECT: np.flatnonzero(keep)})


def _group_level(cohort, config, masks, out_dir, result) -> dict[str, xr.Dataset]:
    from brainarr import stats
    from brainarr.datasets import aal

    g = config.group
    movers = [str(s) for s in cohort[SUBJECT].values[np.asarray(cohort["excluded"].values, bool)]]
    if movers:
        logger.info("motion: %s exceed the motion limits%s", movers, "; excluded" if g.exclude_movers else "")
    included = _included(cohort, config)
    result.tables["motion"] = _motion_table(cohort, cohort, g.by)
    variables = [c for c in included.coords if included[c].dims == (SUBJECT,) and c not in (SUBJECT, "excluded")]
    # sorted: the order in which a store lists its coordinates is not guaranteed to be stable
    variables = sorted(v for v in variables if v not in (g.by, "max_translation", "max_rotation", "mean_fd"))
    table1 = stats.demographics(included, by=g.by, groups=list(g.groups), variables=variables)
    result.tables["table1"] = table1
    table1.to_csv(out_dir / "tables" / "table1.csv")
    (out_dir / "tables" / "table1.md").write_text(stats.demographics_to_markdown(table1))
    result.paths["table1_csv"] = out_dir / "tables" / "table1.csv"
    result.paths["table1_md"] = out_dir / "tables" / "table1.md"
    result.tables["motion"].to_csv(out_dir / "tables" / "motion_qc.csv", index=False)
    result.paths["motion_csv"] = out_dir / "tables" / "motion_qc.csv"
    atlas = aal(masks["gm"])
    out = {}
    for variant, maps in _group_maps(included, config).items():
        start = time.perf_counter()
        out[variant] = _analyse(variant, maps, masks["gm"], config, out_dir, result, atlas)
        n = len(result.tables[variant])
        logger.info("group %s: %d cluster(s) in %.2f s", variant, n, time.perf_counter() - start)
    return out


def _figures(variant, res, config, masks, out_dir, result) -> list[tuple[str, Path]]:
    from brainarr import plotting
    from brainarr.datasets import regions

    figs = []
    path = out_dir / "figures" / f"{variant}_montage.png"
    z = np.asarray(masks["gm"]["z"].values, float)
    cuts = [c for c in plotting.STUDY_CUTS if z.min() <= c <= z.max()] or [float(np.median(z))]
    fig = plotting.montage(res, title=variant, cuts=cuts, path=path, dpi=80)
    _close(fig)
    figs.append(("montage", path))
    result.paths[f"{variant}_montage"] = path
    if variant.startswith("zfc_") and len(result.tables[variant]):
        seed = variant[len("zfc_") :]
        path = out_dir / "figures" / f"{variant}_glass.png"
        from brainarr.datasets import aal

        seed_mask = regions(aal(masks["gm"]), seed)
        fig = plotting.glass_brain(seed_mask, result.tables[variant], title=f"FC of {seed}", path=path, dpi=80)
        _close(fig)
        figs.append(("glass brain", path))
        result.paths[f"{variant}_glass"] = path
    return figs


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _write_report(cohort, config, masks, group_results, out_dir, result, store) -> None:
    from brainarr.report import Report

    rep = Report("brainarr study report", subtitle=f"cohort store: {store}")
    n = cohort.sizes[SUBJECT]
    rep.add_text(
        f"{n} subjects; groups {config.group.groups[0]} - {config.group.groups[1]}; covariates "
        f"{', '.join(config.group.covariates) or 'none'}. Subject-level maps are stored in the cohort "
        "store; t maps, cluster tables and figures are in this folder.",
        name="Summary",
    )
    rep.add_parameters(config.to_dict(), name="Parameters")
    rep.add_table("Table 1: demographics", result.tables["table1"])
    rep.add_table("Head motion", result.tables["motion"], decimals=3)
    if "permutation" in result.tables:
        rep.add_table(
            "Permutation inference",
            result.tables["permutation"],
            caption="Freedman-Lane permutations, FWE by the maximum statistic",
            decimals=4,
        )
    for variant, res in group_results.items():
        figs = _figures(variant, res, config, masks, out_dir, result) if config.output.figures else []
        for kind, path in figs:
            rep.add_figure(f"{variant}: {kind}", path)
        table = result.tables[variant]
        caption = (
            f"GRF: voxel t > {float(res.attrs.get('t_threshold', np.nan)):.2f}, cluster size >= "
            f"{res.attrs.get('cluster_size', '?')} voxels"
        )
        if len(table):
            rep.add_table(f"{variant}: clusters", table, caption=caption, signed=["peak_t"])
        else:
            rep.add_text(f"No cluster survives ({caption}).", name=f"{variant}: clusters")
        permuted = result.permutation_tables.get(variant)
        if permuted is not None:
            name = f"{variant}: clusters (permutation)"
            caption = f"{config.group.permutation.stat} permutation inference, FWE p below the family's cluster p"
            if len(permuted):
                rep.add_table(name, permuted, caption=caption, signed=["peak_t"])
            else:
                rep.add_text(f"No cluster survives ({caption}).", name=name)
    path = rep.write(out_dir / "report.html")
    result.paths["report"] = Path(path)


def report(
    store: str | os.PathLike,
    *,
    config: StudyConfig | str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> StudyResult:
    """Rebuild the group level and ``report.html`` from the maps already stored (nothing recomputed).

    Parameters
    ----------
    store : str or path-like
        A cohort store processed by :func:`run`.
    config : StudyConfig, path or None
        Group settings; default the config of the last :func:`run` on this store (recorded in
        the store), else the study's defaults.
    output : str or path-like, optional
        Output folder (default as :func:`run`).
    storage_options : mapping, optional
        fsspec options.

    Returns
    -------
    StudyResult
    """
    from brainarr.cohort import open_cohort

    store = str(store)
    if config is None:
        config = _stored_config(store, storage_options)
    config = _as_config(config)
    out_dir = Path(output) if output is not None else _default_output(store, config)
    for sub in ("", "tables", "maps", "figures"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    result = StudyResult(output=out_dir)
    start = time.perf_counter()
    cohort = open_cohort(store, storage_options=storage_options)
    state = derived_state(store, storage_options=storage_options)
    subjects = [str(s) for s in cohort[SUBJECT].values]
    missing = [n for n, r in state.items() if set(r.get("subjects", [])) != set(subjects)]
    if not state:
        raise ValueError(f"{store}: no derived maps; run 'brainarr run' first")
    if missing:
        raise ValueError(f"{store}: maps {missing} are incomplete; run 'brainarr run' to finish them")
    qc = _motion(cohort, config)
    cohort = cohort.assign_coords({k: (SUBJECT, qc[k].values) for k in qc.data_vars})
    _check_group_model(cohort, config)
    masks = analysis_masks(cohort, config)
    families = tuple(f for f in config.metrics.families if all(n in state for n in FAMILY_VARIABLES[f]))
    import dataclasses

    config = dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, families=families))
    group_results = _group_level(cohort, config, masks, out_dir, result)
    _write_report(cohort, config, masks, group_results, out_dir, result, store)
    result.timings["total"] = time.perf_counter() - start
    return result


def _variants_of(effect: Mapping[str, Any]) -> list[str]:
    metric = str(effect["metric"])
    if metric == "fc":
        return [f"zfc_{effect.get('seed')}"]
    return list(GROUP_VARIANTS.get(metric, ()))


def _covers(row: pd.Series, region: str) -> bool:
    if region == "*" or row["region"] == region:  # "*": anywhere (simulate_cohort's ANYWHERE)
        return True
    covered = [part.rsplit(" (", 1)[0].strip() for part in str(row.get("regions", "")).split(";")]
    return region in covered


def recovery(
    tables: Mapping[str, pd.DataFrame], planted: list[Mapping[str, Any]], *, implied: bool = False
) -> tuple[pd.DataFrame, ...]:
    """Compare cluster tables with the effects planted in a simulated cohort.

    Every surviving cluster (main peaks) is either a recovered planted effect, a documented
    consequence of one (*implied*), or a false cluster.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        Cluster tables by group variant (:attr:`StudyResult.tables`).
    planted : list of dict
        ``attrs["planted"]`` of :func:`brainarr.datasets.simulate_cohort` (``region``,
        ``metric``, ``seed``, ``direction`` and, optionally, ``implied``: the group differences
        of other regions, metrics or FC seeds that the effect necessarily causes, each a dict
        with ``region``, ``metric``, ``seed``, ``direction``).
    implied : bool, default False
        Also return the implied clusters (as a middle element).

    Returns
    -------
    effects : pandas.DataFrame
        One row per planted effect: ``metric``, ``seed``, ``region``, ``direction``,
        ``recovered`` (a surviving cluster of the planted sign whose peak is in the region or
        that covers it, in at least one variant of the metric), ``variants`` (those where it
        was recovered) and ``implied`` (the number of clusters explained as its consequences,
        each cluster counted for the first planted effect that implies it).
    implied_clusters : pandas.DataFrame
        Only with ``implied=True``: the clusters that match no planted effect of their map but
        match a consequence listed in ``implied`` (same map, sign and region): ``variant``,
        ``region``, ``size``, ``peak_t``, ``x``, ``y``, ``z`` and ``implied_by`` (the planted
        effects that imply it).
    false_clusters : pandas.DataFrame
        Surviving clusters that match neither a planted effect nor one of its consequences:
        ``variant``, ``region``, ``size``, ``peak_t``, ``x``, ``y``, ``z`` and ``related``: the
        planted effects of other metrics (or FC seeds) with the same sign in the cluster's
        regions, "" if none.

    Notes
    -----
    A cluster of map :math:`m` (a group variant of a metric, or the FC map of one seed) with
    peak sign :math:`s` matches an effect or consequence ``(region, metric, seed, direction)``
    when :math:`m` is a variant of ``metric`` (of ``seed`` for FC), :math:`s` is the sign of
    ``direction`` and the cluster's peak lies in ``region`` or the cluster covers part of it.
    """

    def sign_of(effect: Mapping[str, Any]) -> float:
        return 1.0 if effect["direction"] == "increase" else -1.0

    def label(effect: Mapping[str, Any]) -> str:
        seed = f" ({effect['seed']})" if effect.get("seed") else ""
        return f"{effect['metric']}{seed} {effect['region']} {effect['direction']}"

    rows = []
    for p in planted:
        found = []
        for variant in _variants_of(p):
            table = tables.get(variant)
            if table is None or table.empty:
                continue
            main = table[table.get("peak_kind", "main") == "main"] if "peak_kind" in table else table
            if any(np.sign(r["peak_t"]) == sign_of(p) and _covers(r, p["region"]) for _, r in main.iterrows()):
                found.append(variant)
        rows.append(
            {
                "metric": p["metric"],
                "seed": p.get("seed") or "",
                "region": p["region"],
                "direction": p["direction"],
                "recovered": bool(found),
                "variants": ", ".join(found),
                "implied": 0,
            }
        )
    implied_rows, false_rows = [], []
    for variant, table in tables.items():
        if variant in ("table1", "motion", "permutation") or table.empty or "peak_t" not in table:
            continue
        expected = [p for p in planted if variant in _variants_of(p)]
        for _, r in table.iterrows():
            if r.get("peak_kind", "main") != "main":
                continue
            sign = np.sign(r["peak_t"])
            if any(sign == sign_of(p) and _covers(r, p["region"]) for p in expected):
                continue
            cluster = {
                "variant": variant,
                "region": r["region"] if isinstance(r["region"], str) else "unlabelled",
                "size": int(r["size"]),
                "peak_t": float(r["peak_t"]),
                "x": r["x"],
                "y": r["y"],
                "z": r["z"],
            }
            causes = [
                i
                for i, p in enumerate(planted)
                if any(
                    variant in _variants_of(q) and sign == sign_of(q) and _covers(r, q["region"])
                    for q in p.get("implied", ())
                )
            ]
            if causes:
                rows[causes[0]]["implied"] += 1
                implied_rows.append({**cluster, "implied_by": "; ".join(label(planted[i]) for i in causes)})
                continue
            related = [
                p["metric"] + (f" ({p['seed']})" if p.get("seed") else "")
                for p in planted
                if sign == sign_of(p) and _covers(r, p["region"])
            ]
            false_rows.append({**cluster, "related": ", ".join(dict.fromkeys(related))})
    columns = ["variant", "region", "size", "peak_t", "x", "y", "z"]
    effects = pd.DataFrame(rows, columns=["metric", "seed", "region", "direction", "recovered", "variants", "implied"])
    false_clusters = pd.DataFrame(false_rows, columns=[*columns, "related"])
    if implied:
        return effects, pd.DataFrame(implied_rows, columns=[*columns, "implied_by"]), false_clusters
    return effects, false_clusters
