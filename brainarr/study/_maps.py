"""One subject's maps: its masks, its motion parameters and every metric family's maps, lazily."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from brainarr._core.dims import SEED, SPATIAL, SUBJECT
from brainarr.config import StudyConfig

__all__ = [
    "CONF",
    "SUBJECT_TISSUES",
    "analysis_masks",
    "motion_parameters",
    "seed_masks",
    "subject_maps",
    "subject_masks",
]

CONF = "confound"


def analysis_masks(cohort: xr.Dataset, config: StudyConfig) -> dict[str, xr.DataArray]:
    """The study's masks on the cohort grid, computed once for every subject.

    ``gm``, ``wm`` and ``csf``: the store's masks, else the MNI152 probabilities thresholded
    at ``[preprocess] mask_threshold`` / ``tissue_threshold``; with the FC family, ``seeds``:
    the seed regions ``(seed, x, y, z)`` (:func:`seed_masks`).
    """
    from brainarr.datasets import gm_mask, tissue_probability

    pre = config.preprocess
    grid = cohort["bold"].isel({SUBJECT: 0}, drop=True).isel(time=0, drop=True)
    out = {}
    if "mask" in cohort:
        out["gm"] = cohort["mask"].astype(bool)
    else:
        out["gm"] = gm_mask(like=grid, threshold=pre.mask_threshold)
    for tissue, var in (("wm", "wm_mask"), ("csf", "csf_mask")):
        if var in cohort:
            out[tissue] = cohort[var].astype(bool)
        else:
            out[tissue] = tissue_probability(grid, tissue) > pre.tissue_threshold
    coords = {d: cohort[d] for d in SPATIAL}
    affine = cohort.attrs["affine"]
    for key, m in out.items():
        m = m.load().assign_coords(coords)
        m.attrs["affine"] = affine
        out[key] = m
    if "fc" in config.metrics.families:
        out["seeds"] = seed_masks(out["gm"], config)
    return out


def seed_masks(grid: xr.DataArray, config: StudyConfig) -> xr.DataArray:
    """The FC seeds of ``config`` (AAL region names) as masks ``(seed, x, y, z)`` on ``grid``."""
    from brainarr.datasets import aal, regions

    seeds = regions(aal(like=grid), list(config.metrics.seeds))
    seeds.attrs["affine"] = grid.attrs.get("affine")
    return seeds


#: Per-subject tissue probability maps a raw ingest stores (:func:`brainarr.raw.ingest`).
SUBJECT_TISSUES = ("gm", "wm", "csf")


def subject_masks(
    cohort: xr.Dataset, masks: Mapping[str, xr.DataArray], index: int, config: StudyConfig
) -> dict[str, xr.DataArray]:
    """The nuisance masks of subject ``index``: its own WM and CSF maps when the cohort has them.

    A cohort ingested from raw data holds each subject's ``wm`` and ``csf`` probabilities
    ``(subject, x, y, z)`` from its own T1 segmentation; they are thresholded at
    ``[preprocess] tissue_threshold`` as the MNI152 templates are. The grey-matter analysis
    mask stays the group's (``mask``, else the MNI152 template), as in RESTplus/DPABI.
    """
    out = dict(masks)
    for tissue in ("wm", "csf"):
        if tissue in cohort.data_vars and cohort[tissue].dims == (SUBJECT, *SPATIAL):
            own = cohort[tissue].isel({SUBJECT: index}, drop=True) > config.preprocess.tissue_threshold
            own = own.drop_vars([c for c in own.coords if c not in own.dims]).assign_coords(
                {d: masks[tissue][d] for d in SPATIAL}
            )
            own.attrs["affine"] = masks[tissue].attrs.get("affine", cohort.attrs.get("affine"))
            out[tissue] = own
    return out


def subject_maps(
    bold: xr.DataArray,
    motion: xr.DataArray,
    masks: Mapping[str, xr.DataArray],
    config: StudyConfig,
    families: tuple[str, ...],
) -> xr.Dataset:
    """Lazy subject-level maps of the requested families for one subject.

    Parameters
    ----------
    bold : xarray.DataArray (x, y, z, time)
        Raw BOLD with ``attrs`` ``tr`` and ``affine``.
    motion : xarray.DataArray (time, confound)
        The six realignment parameters.
    masks : mapping
        ``"gm"``, ``"wm"``, ``"csf"`` boolean masks (see :func:`analysis_masks`), and
        optionally ``"seeds"`` (else the FC seeds are found by name in the AAL atlas).
    config : StudyConfig
        Study settings.
    families : tuple of str
        Subset of ``("alff", "reho", "fc", "dc")``.

    Returns
    -------
    xarray.Dataset
        The variables of :data:`FAMILY_VARIABLES` for those families, float32, lazy.
    """
    from brainarr import metrics
    from brainarr.preprocess import clean, friston24, tissue_signals

    pre, met = config.preprocess, config.metrics
    gm = masks["gm"]
    parts = []
    if "friston24" in pre.confounds:
        parts.append(friston24(motion))
    tissue = {}
    if "white_matter" in pre.confounds:
        tissue["wm"] = masks["wm"]
    if "csf" in pre.confounds:
        tissue["csf"] = masks["csf"]
    if tissue or "global_signal" in pre.confounds:
        sig = tissue_signals(bold, global_signal=masks["gm"] if "global_signal" in pre.confounds else False, **tissue)
        parts.append(sig.astype(np.float64).drop_vars([c for c in sig.coords if c not in (CONF, "time")]))
    confounds = None
    if parts:
        parts = [p.drop_vars([c for c in p.coords if c not in (CONF,)]) for p in parts]
        confounds = xr.concat(parts, dim=CONF, join="override", coords="minimal", compat="override")
        confounds = confounds.transpose("time", CONF)
    common = {"discard": pre.discard, "detrend": pre.detrend, "mask": gm}
    out: dict[str, xr.DataArray] = {}
    if "alff" in families:
        raw = clean(bold, confounds, filter=None, low=None, high=None, **common)
        a = metrics.alff(raw, tuple(pre.band), mask=gm)
        v = metrics.alff_variants(a, gm)
        out.update({k: a[k] for k in ("alff", "falff")})
        out.update({k: v[k] for k in v.data_vars})
    if {"reho", "fc", "dc"} & set(families):
        filtered = clean(bold, confounds, low=pre.band[0], high=pre.band[1], filter=pre.filter, **common)
        if "reho" in families:
            kcc = metrics.reho(filtered, gm, neighbourhood=met.reho_neighbourhood)
            out["reho"] = kcc
            out["smreho"] = metrics.smooth_normalize(kcc, gm, fwhm=met.smooth_fwhm, method="mean", name="smreho")
        if "fc" in families:
            seeds = masks["seeds"] if "seeds" in masks else list(met.seeds)
            out["zfc"] = metrics.seed_fc(filtered, seeds, mask=gm)["zfc"]
        if "dc" in families:
            dc = metrics.degree_centrality(filtered, gm, threshold=met.dc_threshold)
            variants = metrics.dc_variants(dc, gm, fwhm=met.smooth_fwhm)
            out.update({k: dc[k] for k in ("dc_binary", "dc_weighted")})
            out.update({k: variants[k] for k in variants.data_vars})
    keep = set(SPATIAL) | {SEED}
    result = {}
    for name, var in out.items():
        var = var.astype(np.float32)
        var = var.drop_vars([c for c in var.coords if c not in keep])
        order = [d for d in (SEED, *SPATIAL) if d in var.dims]
        result[name] = var.transpose(*order)
    return xr.Dataset(result)


def motion_parameters(confounds: xr.DataArray) -> xr.DataArray:
    """The six realignment parameters: by name when present, else the first six columns (SPM order)."""
    from brainarr._core.confounds import MOTION_PARAMS

    if CONF not in confounds.dims:
        raise ValueError(f"confounds: expected a {CONF!r} dim, got {confounds.dims}")
    names = [str(c) for c in confounds[CONF].values] if CONF in confounds.coords else []
    if all(m in names for m in MOTION_PARAMS):
        return confounds.sel({CONF: list(MOTION_PARAMS)})
    if confounds.sizes[CONF] < 6:
        raise ValueError(f"confounds: need the six realignment parameters, found {confounds.sizes[CONF]} column(s)")
    return confounds.isel({CONF: slice(0, 6)})
