r"""Permutation inference for the two-sample GLM: Freedman-Lane, max statistic, TFCE, on Dask.

References
----------
Freedman D, Lane D. A nonstochastic interpretation of reported significance levels. J Bus Econ
Stat 1983;1:292-298.

Winkler AM, Ridgway GR, Webster MA, Smith SM, Nichols TE. Permutation inference for the general
linear model. NeuroImage 2014;92:381-397.

Smith SM, Nichols TE. Threshold-free cluster enhancement: addressing problems of smoothing,
threshold dependence and localisation in cluster inference. NeuroImage 2009;44:83-98.

Nichols TE, Holmes AP. Nonparametric permutation tests for functional neuroimaging: a primer
with examples. Hum Brain Mapp 2002;15:1-25.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from scipy import ndimage, sparse, stats
from scipy.sparse import csgraph

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import SPATIAL, SUBJECT
from brainarr.stats._design import check_maps, check_subject_maps, group_design, valid_voxels
from brainarr.stats._labels import cluster_structure, signed_clusters

__all__ = ["permutation", "tfce"]

PERMUTATION = "permutation"
_SUB_BATCH_BYTES = 32 * 2**20


def _half_offsets(structure: np.ndarray) -> list[tuple[int, int, int]]:
    """Neighbour offsets of a symmetric 3 x 3 x 3 structure, one of each +/- pair."""
    offs = [tuple(int(v) for v in o) for o in np.argwhere(structure) - 1]
    return [o for o in offs if o > (0, 0, 0)]


def _edges(above: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``(a, b)`` of every neighbouring pair of ``above`` voxels (each pair once)."""
    shape = above.shape
    flat = np.arange(above.size).reshape(shape)
    heads, tails = [], []
    for off in _half_offsets(structure):
        src = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(off, shape, strict=True))
        dst = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(off, shape, strict=True))
        both = above[src] & above[dst]
        heads.append(flat[src][both])
        tails.append(flat[dst][both])
    return np.concatenate(heads), np.concatenate(tails)


def _tfce_graph(img: np.ndarray, *, e: float, h: float, dh: float, structure: np.ndarray) -> np.ndarray:
    """TFCE of the positive part of ``img`` (numpy, 3-D), incrementally over heights.

    Exactly the sum over heights ``k dh`` of the cluster extents of ``img >= k dh`` (see
    :func:`tfce`), computed incrementally from the highest height down. Voxels are ranked by
    decreasing number of heights reached and each edge between neighbours by its lower
    endpoint, so the voxels and edges present at a height are prefixes of these orders. Going
    down one step, the clusters are the connected components of the graph whose nodes are the
    clusters of the step above and the voxels that appear, joined by the edges that appear:
    every voxel and every edge is looked at once, whatever the number of heights. Contributions are then summed from the
    lowest height up, as in the direct definition.
    """
    out = np.zeros(img.shape, dtype=np.float64)
    top = float(img.max()) if img.size else 0.0
    n_steps = math.floor(top / dh + 1e-9)
    if n_steps < 1:
        return out
    tol = 1e-9 * dh  # heights are multiples of dh; a value equal to one (up to round-off) reaches it
    above = img >= dh - tol
    thresholds = np.arange(1, n_steps + 1) * dh
    vox = np.flatnonzero(above)
    # level of a voxel: the number of heights it reaches; voxels sorted by decreasing level
    level = np.searchsorted(thresholds - tol, img.ravel()[vox], side="right").astype(np.int32)
    order = np.argsort(-level, kind="stable")  # radix sort of small integers
    vox, level = vox[order], level[order]
    rank = np.empty(img.size, dtype=np.intp)
    rank[vox] = np.arange(vox.size)
    ea, eb = _edges(above, structure)
    ra, rb = rank[ea], rank[eb]
    elevel = level[np.maximum(ra, rb)]  # an edge is present at the heights both its ends reach
    eorder = np.argsort(-elevel, kind="stable")
    ra, rb = ra[eorder], rb[eorder]
    # voxels and edges present at height k dh: the first n_vox_at[k - 1] and n_edge_at[k - 1]
    n_vox_at = np.cumsum(np.bincount(level, minlength=n_steps + 1)[::-1])[::-1][1:]
    n_edge_at = np.cumsum(np.bincount(elevel, minlength=n_steps + 1)[::-1])[::-1][1:]

    labels = np.empty(0, dtype=np.intp)  # cluster of each present voxel (by rank)
    comp_size = np.empty(0, dtype=np.float64)
    n_prev = e_prev = 0
    contributions = []
    for step in range(n_steps, 0, -1):
        n_vox, n_edge = int(n_vox_at[step - 1]), int(n_edge_at[step - 1])
        if n_vox == 0:
            continue
        if n_vox > n_prev or n_edge > e_prev:
            n_comp = comp_size.size
            # nodes: the clusters of the step above, then the voxels that appear
            node = np.concatenate([labels, np.arange(n_comp, n_comp + n_vox - n_prev)])
            head, tail = node[ra[e_prev:n_edge]], node[rb[e_prev:n_edge]]
            n_nodes = n_comp + n_vox - n_prev
            weight = np.ones(head.size, dtype=np.int32)  # repeated pairs add up; never zero
            graph = sparse.csr_matrix((weight, (head, tail)), shape=(n_nodes, n_nodes))
            k, node_label = csgraph.connected_components(graph, directed=False)
            node_size = np.concatenate([comp_size, np.ones(n_vox - n_prev)])
            comp_size = np.bincount(node_label, weights=node_size, minlength=k)
            labels = np.concatenate([node_label[labels], node_label[n_comp:]])
            n_prev, e_prev = n_vox, n_edge
        thr = step * dh
        contributions.append((n_vox, (comp_size**e * thr**h * dh)[labels]))
    flat_out = out.reshape(-1)
    for n_vox, values in reversed(contributions):
        flat_out[vox[:n_vox]] += values
    return out


def _tfce_direct(img: np.ndarray, *, e: float, h: float, dh: float, structure: np.ndarray) -> np.ndarray:
    """TFCE of the positive part of ``img`` by labelling ``img >= k dh`` at every height."""
    out = np.zeros(img.shape, dtype=np.float64)
    top = float(img.max()) if img.size else 0.0
    n_steps = math.floor(top / dh + 1e-9)
    for step in range(1, n_steps + 1):
        thr = step * dh
        # heights are multiples of dh; a value equal to one (up to round-off) reaches it
        labels, n = ndimage.label(img >= thr - 1e-9 * dh, structure=structure)
        if n == 0:
            break
        sizes = np.bincount(labels.ravel()).astype(np.float64)
        sizes[0] = 0.0
        out += sizes[labels] ** e * thr**h * dh
    return out


# below this many voxels above the first height, labelling every height is the faster way
_GRAPH_MIN_VOXELS = 4096


def _tfce_kernel(img: np.ndarray, *, e: float, h: float, dh: float, structure: np.ndarray) -> np.ndarray:
    """TFCE of the positive part of ``img`` (numpy, 3-D); both methods give identical results."""
    above = img >= dh - 1e-9 * dh
    if np.count_nonzero(above) >= _GRAPH_MIN_VOXELS:
        return _tfce_graph(img, e=e, h=h, dh=dh, structure=structure)
    out = np.zeros(img.shape, dtype=np.float64)
    if not above.any():
        return out
    # voxels outside the bounding box of the first height never enter a cluster
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(above))
    out[box] = _tfce_direct(img[box], e=e, h=h, dh=dh, structure=structure)
    return out


def tfce(
    image: xr.DataArray | np.ndarray,
    *,
    e: float = 0.5,
    h: float = 2.0,
    dh: float = 0.1,
    connectivity: Literal[6, 18, 26] = 26,
    two_sided: bool = True,
) -> xr.DataArray | np.ndarray:
    r"""Threshold-free cluster enhancement of a statistic image.

    Parameters
    ----------
    image : xarray.DataArray (x, y, z) or numpy.ndarray (3-D)
        A t (or z) map. A dask-backed DataArray is computed (Triggers computation).
    e, h : float, default 0.5 and 2
        Extent and height exponents (Smith & Nichols 2009).
    dh : float, default 0.1
        Height step.
    connectivity : {6, 18, 26}, default 26
        Neighbourhood defining clusters.
    two_sided : bool, default True
        Also enhance the negative part (TFCE of ``-image``, returned with a negative sign).

    Returns
    -------
    same type as ``image``
        The TFCE map (float64), signed like ``image`` when ``two_sided``.

    Notes
    -----
    .. math:: \mathrm{TFCE}(v) = \sum_{k \ge 1,\ k\,dh \le s(v)} e_k(v)^E\, (k\,dh)^H\, dh,

    where :math:`e_k(v)` is the number of voxels of the cluster of :math:`\{s \ge k\,dh\}`
    containing :math:`v`. The sum over heights starts at :math:`dh`, as in FSL.

    The clusters of all heights are found in one pass from the highest height down (a cluster
    at a height is a union of clusters of the heights above and of new voxels): voxels are
    ranked by the number of heights they reach, the clusters one step lower are the connected
    components of the graph of the clusters above, the voxels that appear and the
    neighbour pairs that appear (:func:`scipy.sparse.csgraph.connected_components`), so each
    voxel and each neighbour pair is visited once. The result equals labelling
    :math:`\{s \ge k\,dh\}` at every height (which small images still use, being faster there)
    to the last bit: the same extents enter the same sums in the same order.

    References
    ----------
    Smith SM, Nichols TE. NeuroImage 2009;44:83-98.
    """
    if dh <= 0:
        raise ValueError(f"tfce: dh must be positive, got {dh}")
    structure = cluster_structure(connectivity)
    arr = np.asarray(image.transpose(*SPATIAL).values if isinstance(image, xr.DataArray) else image, float)
    if arr.ndim != 3:
        raise ValueError(f"tfce: image must be 3-D, got shape {arr.shape}")
    out = _tfce_kernel(arr, e=e, h=h, dh=dh, structure=structure)
    if two_sided:
        out -= _tfce_kernel(-arr, e=e, h=h, dh=dh, structure=structure)
    if isinstance(image, xr.DataArray):
        da = xr.DataArray(out, dims=SPATIAL, coords={d: image[d] for d in SPATIAL})
        return set_metadata(da, name="tfce", long_name="TFCE", units="1", E=e, H=h, dh=dh)
    return out


class _Stat:
    """The statistic map of one t map (positive values; larger is more significant)."""

    def __init__(
        self,
        kind: str,
        tail: str,
        shape: tuple[int, ...],
        index: np.ndarray,
        *,
        t_thr: float,
        structure: np.ndarray,
        e: float,
        h: float,
        dh: float,
    ) -> None:
        self.kind, self.tail, self.shape, self.index = kind, tail, shape, index
        self.t_thr, self.structure, self.e, self.h, self.dh = t_thr, structure, e, h, dh

    def _one_side(self, img: np.ndarray) -> np.ndarray:
        if self.kind == "voxel":
            return np.maximum(img, 0.0)
        return _tfce_kernel(img, e=self.e, h=self.h, dh=self.dh, structure=self.structure)

    def signed_map(self, t_vec: np.ndarray) -> np.ndarray:
        """Signed statistic map (3-D): positive-tail values >= 0, negative-tail values <= 0."""
        img = np.zeros(self.shape)
        img.flat[self.index] = t_vec
        if self.kind in ("cluster_size", "cluster_mass"):
            # each voxel of a cluster of |t| >= t_thr gets the cluster's size or mass (sum of |t|)
            clusters = signed_clusters(img, self.structure, threshold=self.t_thr, tail=self.tail)
            per = clusters.sizes if self.kind == "cluster_size" else clusters.sums(np.abs(img))
            return clusters.spread(per * clusters.signs)
        out = np.zeros(self.shape)
        if self.tail in ("both", "positive"):
            out += self._one_side(img)
        if self.tail in ("both", "negative"):
            out -= self._one_side(-img)
        return out

    def max(self, t_vec: np.ndarray) -> float:
        if self.kind == "voxel":
            if self.tail == "both":
                return float(np.abs(t_vec).max(initial=0.0))
            sign = 1.0 if self.tail == "positive" else -1.0
            return float(np.maximum(sign * t_vec, 0).max(initial=0.0))
        return float(np.abs(self.signed_map(t_vec)).max(initial=0.0))


def _extract(data: np.ndarray, valid: np.ndarray, maps_ok: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The analysed voxels' data ``(n, V)`` and flat indices; ``maps_ok`` only orders the check first."""
    index = np.flatnonzero(np.asarray(valid).ravel())
    y = np.asarray(data, dtype=np.float64).reshape(data.shape[0], -1)[:, index]
    return y, index


def _t_batch(e: np.ndarray, perms: np.ndarray, u: np.ndarray, a: np.ndarray, dof: int, var_c: float) -> np.ndarray:
    """Compute t maps (n_perm, V) of the group contrast for the permuted residuals ``e[perm]``.

    With ``U`` an orthonormal basis of the design and ``a = c X^+``, the permuted data
    ``P e`` has ``c beta = a . P e`` and ``SSE = |e|^2 - |U' P e|^2``; both are one matrix
    product with rows of ``U`` and ``a`` gathered by the inverse permutation.
    """
    ss = (e**2).sum(axis=0)
    p = u.shape[1]
    rows = max(1, int(_SUB_BATCH_BYTES // max(1, 8 * e.shape[1] * (p + 1))))
    out = np.empty((perms.shape[0], e.shape[1]))
    for start in range(0, perms.shape[0], rows):
        block = perms[start : start + rows]
        inv = np.argsort(block, axis=1)
        gathered = np.concatenate([a[inv][:, None, :], np.transpose(u[inv], (0, 2, 1))], axis=1)  # (b, p+1, n)
        proj = np.einsum("bkn,nv->bkv", gathered, e, optimize=True)
        effect = proj[:, 0]
        sse = np.maximum(ss - (proj[:, 1:] ** 2).sum(axis=1), 0.0)
        se = np.sqrt(sse / dof * var_c)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start : start + rows] = np.where(se > 0, effect / se, 0.0)
    return out


def _null_batch(ey, perms, u, a, dof, var_c, stat: _Stat) -> np.ndarray:
    e, _ = ey
    t = _t_batch(e, perms, u, a, dof, var_c)
    return np.array([stat.max(row) for row in t])


def _observed(ey, u, a, dof, var_c, stat: _Stat, shape) -> np.ndarray:
    e, index = ey
    t_vec = _t_batch(e, np.arange(e.shape[0])[None, :], u, a, dof, var_c)[0]
    t_map = np.zeros(shape)
    t_map.flat[index] = t_vec
    return np.stack([t_map, stat.signed_map(t_vec)])


def _p_fwe(obs: np.ndarray, null: np.ndarray, valid: np.ndarray) -> np.ndarray:
    s = np.abs(obs[1])
    null_sorted = np.sort(null)
    count = null.size - np.searchsorted(null_sorted, s - 1e-12 * np.maximum(1.0, s), side="left")
    p = count / null.size
    return np.where(valid & (s > 0), p, 1.0)


def _residualise(ey, z: np.ndarray):
    y, index = ey
    beta = np.linalg.lstsq(z, y, rcond=None)[0]
    return y - z @ beta, index


@record_history
def permutation(
    maps: xr.DataArray,
    *,
    by: str = "group",
    covariates: Sequence[str] = ("age", "sex"),
    groups: Sequence[str] | None = None,
    mask: xr.DataArray | None = None,
    n_perm: int = 5000,
    stat: Literal["tfce", "cluster_mass", "cluster_size", "voxel"] = "tfce",
    tail: Literal["both", "positive", "negative"] = "both",
    seed: int = 0,
    voxel_p: float = 0.01,
    connectivity: Literal[6, 18, 26] = 26,
    tfce_e: float = 0.5,
    tfce_h: float = 2.0,
    tfce_dh: float = 0.1,
    batch_size: int | None = None,
) -> xr.Dataset:
    r"""Permutation test of the two-sample GLM with covariates, FWE-corrected by the max statistic.

    Parameters
    ----------
    maps : xarray.DataArray (subject, x, y, z)
        One map per subject, ``subject`` coordinates carrying ``by`` and the covariates.
    by, covariates, groups
        The model, as in :func:`~brainarr.stats.ttest2` (contrast group1 - group2).
    mask : xarray.DataArray (x, y, z) of bool, optional
        Voxels to analyse (also excluding voxels that are zero for any subject).
    n_perm : int, default 5000
        Number of permutations, the identity (the observed labelling) included.
    stat : {"tfce", "cluster_mass", "cluster_size", "voxel"}, default "tfce"
        Statistic whose maximum over the brain builds the null distribution. Cluster statistics
        use clusters of :math:`t \ge t_{thr}` (and :math:`t \le -t_{thr}`) with
        :math:`t_{thr}` the ``voxel_p`` quantile (halved for ``tail="both"``); the mass of a
        cluster is the sum of its :math:`|t|`.
    tail : {"both", "positive", "negative"}, default "both"
        ``"both"``: two-sided, the null distribution is the max over both signs (of
        :math:`|t|`, or of the statistic of the positive and of the negative part).
    seed : int, default 0
        Seed of the permutations; the result is identical for any ``batch_size``.
    voxel_p : float, default 0.01
        Cluster-forming threshold for the cluster statistics.
    connectivity : {6, 18, 26}, default 26
        Neighbourhood defining clusters (cluster and TFCE statistics).
    tfce_e, tfce_h, tfce_dh : float
        TFCE parameters E = 0.5, H = 2 and the height step (see :func:`tfce`).
    batch_size : int, optional
        Permutations per Dask task; default ``ceil(n_perm / 64)``, so a cluster of up to 64
        threads is kept busy.

    Returns
    -------
    xarray.Dataset
        Lazy: ``t`` (x, y, z; observed), ``stat`` (x, y, z; observed statistic, with the sign
        of t), ``p_fwe`` (x, y, z; FWE-corrected p, 1 outside the analysed voxels and where the
        statistic is 0) and ``null_max`` (permutation; the max statistic of each permutation,
        the first being the observed labelling). attrs ``dof``, ``contrast``, ``stat``,
        ``n_perm``, ``seed``, ``tail``.

    Raises
    ------
    MissingMetadataError, DataValidationError
        For the same designs and subject maps as :func:`~brainarr.stats.ttest2` (the design
        is built by the same function); an unusable subject map is reported when the result
        is computed.

    Notes
    -----
    Freedman-Lane (Winkler et al. 2014, Table 2): with nuisance :math:`Z` (intercept and
    covariates) the residuals :math:`e = R_Z y` are permuted, :math:`y^* = P e + H_Z y`, and
    the full model is refitted. Because the contrast is zero on the nuisance columns,
    :math:`t(y^*) = t(P e)`, computed for a batch of permutations by one matrix product
    (see ``_t_batch``). The p of a voxel is

    .. math:: p_{FWE}(v) = \frac{\#\{j : M_j \ge |s(v)|\}}{n_{perm}},

    :math:`M_j` the max statistic of permutation :math:`j` (the identity included, so
    :math:`p \ge 1 / n_{perm}`). Permutations are drawn from ``numpy.random.default_rng(seed)``
    up front and split into batches, each one ``dask.delayed`` task.

    References
    ----------
    Freedman & Lane (1983); Winkler et al. (2014), NeuroImage 92:381-397; Smith & Nichols
    (2009), NeuroImage 44:83-98; Nichols & Holmes (2002), Hum Brain Mapp 15:1-25.
    """
    func = "brainarr.stats.permutation"
    check_maps(maps, func=func)
    if stat not in ("tfce", "cluster_mass", "cluster_size", "voxel"):
        raise ValueError(f"{func}: stat must be 'tfce', 'cluster_mass', 'cluster_size' or 'voxel', got {stat!r}")
    if tail not in ("both", "positive", "negative"):
        raise ValueError(f"{func}: tail must be 'both', 'positive' or 'negative', got {tail!r}")
    if int(n_perm) < 1:
        raise ValueError(f"{func}: n_perm must be at least 1, got {n_perm}")
    n_perm = int(n_perm)
    design = group_design(maps, by=by, covariates=tuple(covariates), groups=groups, center=False, func=func)
    x = design.matrix
    n, p = x.shape
    dof = n - p
    pinv = np.linalg.pinv(x)
    a = design.contrast @ pinv
    var_c = float(a @ a)
    u = np.linalg.qr(x)[0]
    z = x[:, 1:]  # nuisance: intercept and covariates

    if batch_size is None:
        batch_size = max(1, math.ceil(n_perm / 64))
    if int(batch_size) < 1:
        raise ValueError(f"{func}: batch_size must be positive, got {batch_size}")
    batch_size = int(batch_size)

    rng = np.random.default_rng(seed)
    perms = np.empty((n_perm, n), dtype=np.intp)
    perms[0] = np.arange(n)
    for j in range(1, n_perm):
        perms[j] = rng.permutation(n)

    shape = tuple(maps.sizes[d] for d in SPATIAL)
    valid = valid_voxels(maps, mask, func=func)
    maps_ok = check_subject_maps(maps, mask, func=func).data  # True, or raises (when computed, for dask)
    y_data = maps.transpose(SUBJECT, *SPATIAL).data
    valid_data = valid.data
    pv = voxel_p / 2 if tail == "both" else voxel_p
    stat_obj_args = {
        "t_thr": float(stats.t.isf(pv, dof)),
        "structure": cluster_structure(connectivity),
        "e": tfce_e,
        "h": tfce_h,
        "dh": tfce_dh,
    }
    # the voxel index is only known once data are read; it travels inside the extracted tuple
    ey = dask.delayed(_residualise, pure=True)(dask.delayed(_extract, pure=True)(y_data, valid_data, maps_ok), z)

    def make_stat(index):
        return _Stat(stat, tail, shape, index, **stat_obj_args)

    stat_d = dask.delayed(make_stat, pure=True)(ey[1])
    batches = []
    for start in range(0, n_perm, batch_size):
        block = perms[start : start + batch_size]
        task = dask.delayed(_null_batch, pure=True)(ey, block, u, a, dof, var_c, stat_d)
        batches.append(dsa.from_delayed(task, shape=(block.shape[0],), dtype=np.float64))
    null = dsa.concatenate(batches)
    obs = dsa.from_delayed(
        dask.delayed(_observed, pure=True)(ey, u, a, dof, var_c, stat_d, shape),
        shape=(2, *shape),
        dtype=np.float64,
    )
    pmap = dsa.from_delayed(dask.delayed(_p_fwe, pure=True)(obs, null, valid_data), shape=shape, dtype=np.float64)

    coords = {d: maps[d] for d in SPATIAL}
    label = design.label
    long = {"tfce": "TFCE", "cluster_mass": "cluster mass", "cluster_size": "cluster size", "voxel": "|t|"}[stat]
    out = xr.Dataset(
        {
            "t": set_metadata(
                xr.DataArray(obs[0], dims=SPATIAL, coords=coords),
                name="t",
                long_name=f"t statistic ({label})",
                units="1",
            ),
            "stat": set_metadata(
                xr.DataArray(obs[1], dims=SPATIAL, coords=coords),
                name="stat",
                long_name=f"observed {long} (signed like t)",
                units="1",
            ),
            "p_fwe": set_metadata(
                xr.DataArray(pmap, dims=SPATIAL, coords=coords),
                name="p_fwe",
                long_name=f"FWE-corrected p ({long}, max statistic, {tail} tail(s))",
                units="1",
            ),
            "null_max": set_metadata(
                xr.DataArray(null, dims=PERMUTATION, coords={PERMUTATION: np.arange(n_perm)}),
                name="null_max",
                long_name=f"max {long} per permutation (first: observed labelling)",
                units="1",
            ),
        }
    )
    out.attrs.update(
        {
            "dof": int(dof),
            "contrast": label,
            "regressors": list(design.regressors),
            "stat": stat,
            "tail": tail,
            "n_perm": n_perm,
            "seed": int(seed),
            "method": "Freedman-Lane",
        }
    )
    carry_attrs(maps, out, keys=("affine", "source"))
    return out
