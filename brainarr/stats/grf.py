r"""Gaussian random field (GRF) cluster-extent correction, DPABI style.

References
----------
Friston KJ, Worsley KJ, Frackowiak RSJ, Mazziotta JC, Evans AC. Assessing the significance of
focal activations using their spatial extent. Hum Brain Mapp 1994;1:210-220.

Yan C-G, Wang X-D, Zuo X-N, Zang Y-F. DPABI: Data Processing & Analysis for (Resting-State)
Brain Imaging. Neuroinformatics 2016;14:339-351 (``y_GRF_Threshold``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr
from scipy import special, stats

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import SPATIAL
from brainarr._core.grid import voxel_size
from brainarr._core.validation import check_same_grid, describe, get_affine
from brainarr.exceptions import DataValidationError, DimensionError, MissingMetadataError
from brainarr.stats._labels import cluster_structure, signed_clusters
from brainarr.stats.glm import t_to_z
from brainarr.stats.smoothness import smoothness

__all__ = ["cluster_size_threshold", "cluster_structure", "grf", "grf_cluster_p"]

CLUSTER = "cluster_id"


def _grf_terms(z: float, n_voxels: int, dlh: float) -> tuple[float, float]:
    em = n_voxels * (2 * np.pi) ** -2 * dlh * (z**2 - 1) * np.exp(-(z**2) / 2)
    en = n_voxels * stats.norm.sf(z)
    beta = (special.gamma(2.5) * em / en) ** (2.0 / 3.0)
    return float(em), float(beta)


def grf_cluster_p(size: np.ndarray | int, *, z: float, n_voxels: int, dlh: float) -> np.ndarray:
    r"""Probability of a cluster of at least ``size`` voxels above ``z`` (Friston et al. 1994, D = 3).

    Parameters
    ----------
    size : int or array of int
        Cluster sizes in voxels.
    z : float
        The cluster-forming z threshold (one tail).
    n_voxels : int
        Number of voxels in the search volume.
    dlh : float
        Smoothness ``dLh`` (voxels^-3/2).

    Returns
    -------
    numpy.ndarray of float
        :math:`1 - \exp(-E_m e^{-\beta k^{2/3}})`.

    Notes
    -----
    .. math::

        E_m = N (2\pi)^{-2}\, \mathrm{dLh}\, (z^2 - 1) e^{-z^2/2}, \quad
        E_N = N (1 - \Phi(z)), \quad
        \beta = \left(\Gamma(5/2) E_m / E_N\right)^{2/3}.
    """
    em, beta = _grf_terms(z, n_voxels, dlh)
    k = np.asarray(size, dtype=float)
    return -np.expm1(-em * np.exp(-beta * k ** (2.0 / 3.0)))


def cluster_size_threshold(*, z: float, n_voxels: int, dlh: float, cluster_p: float) -> int:
    """Smallest cluster size ``k`` (voxels) with GRF cluster p below ``cluster_p``.

    Parameters
    ----------
    z : float
        The cluster-forming z threshold (one tail).
    n_voxels : int
        Search volume in voxels.
    dlh : float
        Smoothness ``dLh``.
    cluster_p : float
        Cluster-level p for this tail (DPABI halves it for two-tailed tests).

    Returns
    -------
    int
        The threshold ``k`` (at least 1).
    """
    em, beta = _grf_terms(z, n_voxels, dlh)
    # 1 - exp(-Em exp(-beta k^(2/3))) < p  <=>  k > (ln(Em / -ln(1 - p)) / beta)^(3/2)
    rhs = -math.log1p(-cluster_p)
    if em <= rhs:
        return 1
    bound = (math.log(em / rhs) / beta) ** 1.5
    k = max(1, math.floor(bound))
    # settle rounding at the boundary with the exact inequality
    while grf_cluster_p(k, z=z, n_voxels=n_voxels, dlh=dlh) >= cluster_p:
        k += 1
    while k > 1 and grf_cluster_p(k - 1, z=z, n_voxels=n_voxels, dlh=dlh) < cluster_p:
        k -= 1
    return int(k)


def _check_smoothness(dlh: float, fwhm_mm: np.ndarray, result: xr.Dataset, mask_np: np.ndarray, *, func: str) -> None:
    """Refuse a smoothness that could not be estimated (no residual variance in the mask)."""
    if np.isfinite(dlh) and dlh > 0 and np.all(np.isfinite(fwhm_mm)):
        return
    analysed = ""
    if "analysed" in result:
        n = int(np.count_nonzero(np.asarray(result["analysed"].transpose(*SPATIAL).values, bool) & mask_np))
        analysed = f"{n} of the {int(mask_np.sum())} mask voxels were analysed; "
    raise DataValidationError(
        f"{func}: the smoothness of the residuals could not be estimated (dLh = {dlh}, FWHM = "
        f"{[float(v) for v in fwhm_mm]} mm): {analysed}the residuals have no variance in the mask. Check that "
        "no subject's map is zero or NaN everywhere and that the mask covers the maps, or pass fwhm="
    )


@record_history
def grf(
    result: xr.Dataset,
    *,
    mask: xr.DataArray,
    voxel_p: float = 0.01,
    cluster_p: float = 0.05,
    two_tailed: bool = True,
    connectivity: Literal[6, 18, 26] = 26,
    fwhm: float | Sequence[float] | None = None,
) -> xr.Dataset:
    r"""GRF cluster-extent correction of a t map (DPABI's ``y_GRF_Threshold``).

    Parameters
    ----------
    result : xarray.Dataset
        Output of :func:`~brainarr.stats.ttest2` / :func:`~brainarr.stats.glm`: ``t``
        (x, y, z) with ``attrs["dof"]``, and ``residuals`` unless ``fwhm`` is given.
    mask : xarray.DataArray (x, y, z) of bool
        Search volume (the study's grey-matter mask).
    voxel_p : float, default 0.01
        Voxel-level (cluster-forming) p.
    cluster_p : float, default 0.05
        Cluster-level p.
    two_tailed : bool, default True
        Test both signs, each at ``voxel_p / 2`` and ``cluster_p / 2`` (DPABI's two-tailed
        correction). ``False`` tests positive t only, at ``voxel_p`` and ``cluster_p``.
    connectivity : {6, 18, 26}, default 26
        Voxel neighbourhood defining clusters.
    fwhm : float or (float, float, float), optional
        Smoothness in mm. Default: estimated from ``result["residuals"]`` with
        :func:`~brainarr.stats.smoothness` (small-dof corrected ``dLh``). A given FWHM gives
        :math:`\mathrm{dLh} = (4 \ln 2)^{3/2} / \prod_d \mathrm{FWHM}_d` (voxels), without
        the small-dof factor.

    Returns
    -------
    xarray.Dataset
        ``t`` (x, y, z; zero outside surviving clusters); ``zstat`` (x, y, z; the z map
        of all voxels, 0 outside ``mask``; not named ``z``, which is the coordinate);
        ``cluster`` (x, y, z, int32: positive clusters 1, 2, ... and negative clusters
        -1, -2, ..., each numbered by decreasing size; 0 elsewhere); along the
        ``cluster_id`` dim (coordinate: the label) ``cluster_size`` (voxels),
        ``cluster_peak_t`` and ``cluster_p`` (GRF p of the cluster's size for its tail,
        doubled when two-tailed so it compares with ``cluster_p``). attrs ``z_threshold``,
        ``t_threshold``, ``cluster_size`` (k), ``fwhm`` (mm), ``dlh``, ``n_voxels``, ``dof`` and the options.

    Raises
    ------
    DataValidationError
        If the smoothness of the residuals cannot be estimated (no residual variance in the
        mask, e.g. every voxel removed by a subject whose map is zero everywhere). The t map
        is read before the residuals, so the subject checks of :func:`~brainarr.stats.ttest2`
        name such a subject first.

    Notes
    -----
    Triggers computation (cluster labelling needs the data). ``t`` becomes ``z`` with the
    same tail probability, :math:`z = \operatorname{sign}(t)\,\Phi^{-1}(1 - F_t(|t|; \nu))`,
    evaluated from log tail probabilities so large :math:`|t|` never overflow. With
    :math:`p_v`, :math:`p_c` halved when two-tailed, :math:`z_{thr} = \Phi^{-1}(1 - p_v)` and
    the cluster-size threshold is the smallest :math:`k` with
    :math:`1 - \exp(-E_m e^{-\beta k^{2/3}}) < p_c` (see :func:`grf_cluster_p`), N being the
    number of mask voxels. Clusters of :math:`z \ge z_{thr}` and of
    :math:`z \le -z_{thr}` are labelled separately; those with at least k voxels survive.

    References
    ----------
    Friston et al. (1994), Hum Brain Mapp 1:210-220; Yan et al. (2016), Neuroinformatics
    14:339-351.
    """
    func = "brainarr.stats.grf"
    if not isinstance(result, xr.Dataset) or "t" not in result:
        raise TypeError(f"{func}: result must be the Dataset returned by ttest2/glm (with a 't' variable)")
    t_da = result["t"]
    if set(t_da.dims) != set(SPATIAL):
        raise DimensionError(f"{func}: result['t'] must have dims {SPATIAL}, got {t_da.dims}")
    if not isinstance(mask, xr.DataArray) or set(mask.dims) != set(SPATIAL) or mask.dtype != bool:
        raise TypeError(f"{func}: mask must be a bool DataArray with dims {SPATIAL}")
    check_same_grid(t_da, mask, names=("result['t']", "mask"), func=func)
    for name, value in (("voxel_p", voxel_p), ("cluster_p", cluster_p)):
        if not 0 < value < 1:
            raise ValueError(f"{func}: {name} must be in (0, 1), got {value}")
    dof = result.attrs.get("dof", t_da.attrs.get("dof"))
    if dof is None:
        raise MissingMetadataError(f"{func}: result {describe(result)} has no attrs['dof']")
    dof = float(dof)
    structure = cluster_structure(connectivity)
    affine = get_affine(result, func=func)
    vs = voxel_size(affine)

    mask_np = np.asarray(mask.transpose(*SPATIAL).values, dtype=bool)
    n_voxels = int(mask_np.sum())
    if n_voxels == 0:
        raise ValueError(f"{func}: mask {describe(mask)} is empty")
    # the t map first: reading it raises the subject checks of ttest2/glm (lazy for dask maps)
    t_np = np.asarray(t_da.transpose(*SPATIAL).values, dtype=float)
    if fwhm is None:
        if "residuals" not in result:
            raise MissingMetadataError(f"{func}: result has no 'residuals' to estimate smoothness; pass fwhm=")
        smooth = smoothness(result["residuals"], mask, dof=dof).compute()
        fwhm_mm = np.asarray(smooth["fwhm"].values, dtype=float)
        dlh = float(smooth["dlh"].values)
        _check_smoothness(dlh, fwhm_mm, result, mask_np, func=func)
    else:
        fwhm_mm = np.broadcast_to(np.asarray(fwhm, dtype=float), (3,)).copy()
        if np.any(fwhm_mm <= 0):
            raise ValueError(f"{func}: fwhm must be positive, got {fwhm}")
        dlh = float((4 * np.log(2)) ** 1.5 / np.prod(fwhm_mm / vs))

    pv = voxel_p / 2 if two_tailed else voxel_p
    pc = cluster_p / 2 if two_tailed else cluster_p
    z_thr = float(stats.norm.isf(pv))
    t_thr = float(stats.t.isf(pv, dof))
    k = cluster_size_threshold(z=z_thr, n_voxels=n_voxels, dlh=dlh, cluster_p=pc)

    z_np = np.where(mask_np, t_to_z(t_np, dof), 0.0)
    tails = "both" if two_tailed else "positive"
    clusters = signed_clusters(z_np, structure, threshold=z_thr, tail=tails, min_size=k)
    labels, ids, sizes = clusters.labels, clusters.ids, clusters.sizes
    peaks = t_np.ravel()[clusters.peaks(t_np)]
    p_cl = grf_cluster_p(np.asarray(sizes, dtype=float), z=z_thr, n_voxels=n_voxels, dlh=dlh)
    if two_tailed:
        p_cl = np.minimum(1.0, 2 * p_cl)

    spatial = {d: t_da[d] for d in SPATIAL}
    t_out = xr.DataArray(np.where(labels != 0, t_np, 0.0).astype(t_da.dtype), dims=SPATIAL, coords=spatial)
    z_out = xr.DataArray(z_np, dims=SPATIAL, coords=spatial)
    c_out = xr.DataArray(labels.astype(np.int32), dims=SPATIAL, coords=spatial)
    cl = {CLUSTER: np.asarray(ids, dtype=np.int32)}
    tail = "two-tailed" if two_tailed else "one-tailed (positive)"
    out = xr.Dataset(
        {
            "t": set_metadata(
                t_out,
                name="t",
                long_name=f"t in GRF-corrected clusters ({tail})",
                units="1",
                description=f"voxel p < {voxel_p}, cluster p < {cluster_p}, {tail}; 0 elsewhere",
            ),
            "zstat": set_metadata(z_out, name="zstat", long_name="z with the tail probability of t", units="1"),
            "cluster": set_metadata(
                c_out,
                name="cluster",
                long_name="cluster label",
                units="1",
                description="positive clusters 1, 2, ...; negative clusters -1, -2, ...; by decreasing size",
            ),
            "cluster_size": xr.DataArray(
                np.asarray(sizes, dtype=np.int64),
                dims=CLUSTER,
                coords=cl,
                attrs={"long_name": "cluster size", "units": "voxel"},
            ),
            "cluster_peak_t": xr.DataArray(
                np.asarray(peaks, dtype=float),
                dims=CLUSTER,
                coords=cl,
                attrs={"long_name": "peak t (largest |t|) of the cluster", "units": "1"},
            ),
            "cluster_p": xr.DataArray(
                np.asarray(p_cl, dtype=float),
                dims=CLUSTER,
                coords=cl,
                attrs={
                    "long_name": "GRF cluster-level p" + (" (x2, two-tailed)" if two_tailed else ""),
                    "units": "1",
                },
            ),
        }
    )
    out.attrs.update(
        {
            "z_threshold": z_thr,
            "t_threshold": t_thr,
            "cluster_size": int(k),
            "fwhm": [float(v) for v in fwhm_mm],
            "dlh": dlh,
            "n_voxels": n_voxels,
            "dof": dof,
            "voxel_p": float(voxel_p),
            "cluster_p": float(cluster_p),
            "two_tailed": bool(two_tailed),
            "connectivity": int(connectivity),
            "contrast": result.attrs.get("contrast", ""),
        }
    )
    carry_attrs(result, out, keys=("affine", "source"))
    return out
