"""The study's derived maps: normalised and smoothed variants, and all metrics in one call.

This module composes the single-metric modules (it is the only metrics module that imports
the others) with :func:`brainarr.preprocess.smooth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import xarray as xr

from brainarr._core.attrs import carry_attrs, record_history
from brainarr.metrics.alff import alff as _alff
from brainarr.metrics.centrality import degree_centrality as _degree_centrality
from brainarr.metrics.fc import seed_fc as _seed_fc
from brainarr.metrics.normalize import normalize as _normalize
from brainarr.metrics.reho import reho as _reho
from brainarr.preprocess import smooth

__all__ = ["alff_variants", "dc_variants", "smooth_normalize", "smreho", "study_metrics"]

Order = Literal["smooth_first", "normalize_first"]


def _smooth(map_: xr.DataArray, fwhm: float) -> xr.DataArray:
    return smooth(map_, fwhm)


@record_history
def smooth_normalize(
    map: xr.DataArray,
    mask: xr.DataArray,
    *,
    fwhm: float = 6.0,
    method: Literal["mean", "z"] = "mean",
    order: Order = "smooth_first",
    name: str | None = None,
) -> xr.DataArray:
    r"""Smooth a metric map with a Gaussian kernel and normalise it within the mask.

    Parameters
    ----------
    map : xarray.DataArray (..., x, y, z)
        Metric map (0 outside the mask), with ``attrs["affine"]``.
    mask : xarray.DataArray (x, y, z) of bool
        Mask of the normalisation statistics.
    fwhm : float, default 6.0
        Full width at half maximum of the Gaussian kernel in mm.
    method : {"mean", "z"}, default "mean"
        Normalisation (see :func:`brainarr.metrics.normalize`).
    order : {"smooth_first", "normalize_first"}, default "smooth_first"
        ``"smooth_first"`` (the order stated for the study: smooth, then normalise) or
        ``"normalize_first"`` (normalise, then smooth the normalised map).
    name : str, optional
        Output name; default ``"s" + "m"|"z" + map.name``.

    Returns
    -------
    xarray.DataArray (..., x, y, z), float32, units "1"

    Notes
    -----
    Smoothing is :func:`brainarr.preprocess.smooth` of the whole map (the map is 0 outside
    the mask, so in-mask voxels near the border are pulled towards 0, as when SPM smooths a
    map image), with :math:`\sigma = \mathrm{FWHM} / \sqrt{8 \ln 2}` per axis in voxels.
    With ``"smooth_first"`` the result is 0 outside the mask; with ``"normalize_first"`` the
    smoothed map also has values just outside the mask. For ``method="mean"`` the two orders
    differ only by a factor per map; for ``"z"`` they differ more.
    """
    if order == "smooth_first":
        out = _normalize(_smooth(map, fwhm), mask, method=method)
    elif order == "normalize_first":
        out = _smooth(_normalize(map, mask, method=method), fwhm).astype("float32")
    else:
        raise ValueError(f"order must be 'smooth_first' or 'normalize_first', got {order!r}")
    base = str(map.name) if map.name is not None else "map"
    out = out.rename(name or f"s{'m' if method == 'mean' else 'z'}{base}")
    out.attrs.update(
        {
            "long_name": f"smoothed ({fwhm:g} mm FWHM), {'mean' if method == 'mean' else 'z'}-normalised "
            + str(map.attrs.get("long_name", base)),
            "units": "1",
            "fwhm": float(fwhm),
            "normalization": method,
            "order": order,
        }
    )
    out.attrs.pop("history", None)
    if "history" in map.attrs:
        out.attrs["history"] = map.attrs["history"]
    return carry_attrs(map, out)


@record_history
def smreho(
    bold: xr.DataArray,
    mask: xr.DataArray,
    *,
    fwhm: float = 6.0,
    neighbourhood: Literal[7, 19, 27] = 27,
    order: Order = "smooth_first",
) -> xr.DataArray:
    """The study's "SMKCC" ReHo: Kendall's W map, smoothed and mean-normalised.

    Parameters
    ----------
    bold : xarray.DataArray (..., x, y, z, time)
        Band-pass filtered BOLD.
    mask : xarray.DataArray (x, y, z) of bool
        Grey-matter mask (ReHo neighbourhoods and normalisation statistics).
    fwhm : float, default 6.0
        Smoothing FWHM in mm.
    neighbourhood : {7, 19, 27}, default 27
        ReHo neighbourhood.
    order : {"smooth_first", "normalize_first"}, default "smooth_first"
        See :func:`smooth_normalize`.

    Returns
    -------
    xarray.DataArray (..., x, y, z), float32
        ``smreho``, units "1".
    """
    return smooth_normalize(
        _reho(bold, mask, neighbourhood=neighbourhood),
        mask,
        fwhm=fwhm,
        method="mean",
        order=order,
        name="smreho",
    )


@record_history
def alff_variants(maps: xr.Dataset, mask: xr.DataArray) -> xr.Dataset:
    """Mean- and z-normalised ALFF and fALFF (``malff``, ``zalff``, ``mfalff``, ``zfalff``).

    Parameters
    ----------
    maps : xarray.Dataset
        Output of :func:`brainarr.metrics.alff`.
    mask : xarray.DataArray (x, y, z) of bool
        Mask of the statistics.

    Returns
    -------
    xarray.Dataset
        The four maps, float32, units "1".
    """
    out = {}
    for var in ("alff", "falff"):
        for method, prefix in (("mean", "m"), ("z", "z")):
            out[prefix + var] = _normalize(maps[var], mask, method=method)
    return carry_attrs(maps, xr.Dataset(out))


@record_history
def dc_variants(
    maps: xr.Dataset, mask: xr.DataArray, *, fwhm: float = 6.0, order: Order = "smooth_first"
) -> xr.Dataset:
    """The study's DC maps: binary and weighted, each smoothed and m- ("Sm") or z- ("Sz") normalised.

    Parameters
    ----------
    maps : xarray.Dataset
        Output of :func:`brainarr.metrics.degree_centrality`.
    mask : xarray.DataArray (x, y, z) of bool
        Mask of the statistics.
    fwhm : float, default 6.0
        Smoothing FWHM in mm.
    order : {"smooth_first", "normalize_first"}, default "smooth_first"
        See :func:`smooth_normalize`.

    Returns
    -------
    xarray.Dataset
        ``dc_binary_sm``, ``dc_binary_sz``, ``dc_weighted_sm``, ``dc_weighted_sz``.
    """
    out = {}
    for var in ("dc_binary", "dc_weighted"):
        for method, suffix in (("mean", "sm"), ("z", "sz")):
            name = f"{var}_{suffix}"
            out[name] = smooth_normalize(maps[var], mask, fwhm=fwhm, method=method, order=order, name=name)
    return carry_attrs(maps, xr.Dataset(out))


@record_history
def study_metrics(
    clean_bold: xr.DataArray,
    raw_bold: xr.DataArray,
    mask: xr.DataArray,
    *,
    seeds: xr.DataArray | Sequence[str] = ("Precentral_L", "Precentral_R", "Postcentral_L", "Postcentral_R"),
    band: tuple[float, float] = (0.01, 0.08),
    fwhm: float = 6.0,
    threshold: float = 0.25,
    neighbourhood: Literal[7, 19, 27] = 27,
    order: Order = "smooth_first",
) -> xr.Dataset:
    """Every subject-level map of the study, for one subject or a cohort, as one lazy Dataset.

    Parameters
    ----------
    clean_bold : xarray.DataArray (..., x, y, z, time)
        Nuisance-regressed and band-pass filtered BOLD (ReHo, FC, DC).
    raw_bold : xarray.DataArray (..., x, y, z, time)
        Nuisance-regressed BOLD without band-pass (ALFF/fALFF).
    mask : xarray.DataArray (x, y, z) of bool
        Grey-matter mask.
    seeds : DataArray or list of str, default the four AAL central-gyrus regions
        Seeds for :func:`brainarr.metrics.seed_fc`.
    band : tuple of float, default (0.01, 0.08)
        ALFF band in Hz.
    fwhm : float, default 6.0
        Smoothing FWHM (mm) of the SMKCC ReHo and the DC Sm/Sz maps.
    threshold : float, default 0.25
        DC correlation threshold.
    neighbourhood : {7, 19, 27}, default 27
        ReHo neighbourhood.
    order : {"smooth_first", "normalize_first"}, default "smooth_first"
        See :func:`smooth_normalize`.

    Returns
    -------
    xarray.Dataset
        ``alff``, ``falff``, ``malff``, ``zalff``, ``mfalff``, ``zfalff``, ``reho``,
        ``smreho``, ``fc``, ``zfc``, ``seed_series``, ``dc_binary``, ``dc_weighted``,
        ``dc_binary_sm``, ``dc_binary_sz``, ``dc_weighted_sm``, ``dc_weighted_sz``.
        Nothing is computed.
    """
    a = _alff(raw_bold, band, mask=mask)
    reho_map = _reho(clean_bold, mask, neighbourhood=neighbourhood)
    sm = smooth_normalize(reho_map, mask, fwhm=fwhm, method="mean", order=order, name="smreho")
    fc = _seed_fc(clean_bold, seeds, mask=mask)
    dc = _degree_centrality(clean_bold, mask, threshold=threshold)
    parts = [a, alff_variants(a, mask), xr.Dataset({"reho": reho_map, "smreho": sm}), fc, dc]
    parts.append(dc_variants(dc, mask, fwhm=fwhm, order=order))
    out = xr.merge(parts, compat="override", combine_attrs="drop_conflicts", join="exact")
    out.attrs = {}
    return carry_attrs(clean_bold, out)
