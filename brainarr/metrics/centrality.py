"""Voxel-wise degree centrality of the thresholded correlation graph within a mask."""

from __future__ import annotations

import itertools
import math

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.dims import SPATIAL, TIME
from brainarr.exceptions import DimensionError
from brainarr.metrics._common import mask_numpy, prepare_bold, prepare_mask
from brainarr.metrics._kernels import (
    SPARSITY_BAND_LIMIT,
    SPARSITY_BINS,
    degree_histogram,
    degree_upper,
    leading_eigenvector,
    sparsity_band,
    sparsity_pass2,
    sparsity_pass3,
    sparsity_select,
    target_edges,
    zero_constant_rows,
    zscore_rows,
)

__all__ = ["default_block_size", "degree_centrality", "eigenvector_centrality"]

DC_REFERENCES = (
    "Zuo XN, Ehmke R, Mennes M, et al. Network centrality in the human functional connectome. "
    "Cereb Cortex 2012;22:1862-1875. doi:10.1093/cercor/bhr269; "
    "Buckner RL, Sepulcre J, Talukdar T, et al. Cortical hubs revealed by intrinsic functional "
    "connectivity. J Neurosci 2009;29:1860-1873. doi:10.1523/JNEUROSCI.5062-08.2009"
)

#: Target size in MiB of one row block of the correlation matrix (rows x N float32).
BLOCK_TARGET_MIB = 64


def default_block_size(n_voxels: int, *, target_mib: float = BLOCK_TARGET_MIB) -> int:
    """Rows per block so that one block of correlations (rows x ``n_voxels`` float32) is ~``target_mib``.

    Parameters
    ----------
    n_voxels : int
        Number of in-mask voxels ``N``.
    target_mib : float, default 64
        Target size of one ``rows x N`` float32 block in MiB.

    Returns
    -------
    int
        ``clip(floor(target_mib * 2**20 / (4 N)), 1, N)``; for the 3 mm grey matter
        (N ~ 53,600) this is 313 rows.
    """
    n = max(int(n_voxels), 1)
    return int(min(max(math.floor(target_mib * 2**20 / (4 * n)), 1), n))


def _block_slices(chunks: tuple[tuple[int, ...], ...]) -> list[list[slice]]:
    slices = []
    for c in chunks:
        edges = np.cumsum((0, *c))
        slices.append([slice(int(a), int(b)) for a, b in itertools.pairwise(edges)])
    return slices


def _scatter(slot: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Put per-row values on one spatial chunk: ``values[slot]`` where ``slot >= 0``, 0 elsewhere."""
    out = np.zeros(slot.shape, np.float32)
    inside = slot >= 0
    out[inside] = values[slot[inside]]
    return out


class _Layout:
    """Where the in-mask voxels of a mask go as rows, for one spatial chunking.

    Rows are ordered spatial chunk by spatial chunk (C order of the chunks, then C order of
    the voxels within a chunk), so that the row blocks of the metrics follow the data layout.
    The same for every subject, so it is worked out once.
    """

    def __init__(self, mask: np.ndarray, spatial_chunks: tuple[tuple[int, ...], ...]) -> None:
        #: row of each in-mask voxel, -1 elsewhere (x, y, z) int32
        self.slot = np.full(mask.shape, -1, np.int32)
        n = 0
        for block in itertools.product(*_block_slices(spatial_chunks)):
            inside = mask[block]
            count = int(inside.sum())
            self.slot[block][inside] = np.arange(n, n + count)
            n += count
        self.n = n
        #: flat voxel index of each row (N,)
        self.voxels = np.empty(n, np.int64)
        self.voxels[self.slot[mask]] = np.flatnonzero(mask)
        self.index = np.unravel_index(self.voxels, mask.shape)
        self.slot_chunks = dsa.from_array(self.slot, chunks=spatial_chunks)


class _Rows:
    """In-mask rows of one subject gathered from the spatial chunks, and how to put values back."""

    def __init__(self, data: dsa.Array, sub: int | None, layout: _Layout) -> None:
        self.layout = layout
        self.n = layout.n
        series = data if sub is None else data[sub]
        #: standardised rows (N, T) float32
        self.rows = series.vindex[layout.index].map_blocks(
            zscore_rows, dtype=np.float32, meta=np.empty((0, 0), np.float32)
        )

    def scatter(self, values: dsa.Array, column: int) -> dsa.Array:
        """Map column ``column`` of per-row ``values`` (N, c) back onto the spatial chunks (float32)."""
        return dsa.blockwise(
            _scatter,
            "xyz",
            self.layout.slot_chunks,
            "xyz",
            values[:, column].rechunk(-1),
            "n",
            concatenate=True,
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
        )


def _degree_one(rows: _Rows, *, threshold: float, absolute: bool, block_size: int | None) -> list[dsa.Array]:
    """Binary and weighted degree maps (x, y, z) of one subject as dask arrays."""
    size = block_size or default_block_size(rows.n)
    rows_blocked = rows.rows.rechunk({0: size})
    z_all = rows.rows.rechunk({0: -1})
    start = dsa.arange(rows.n, chunks=rows_blocked.chunks[0])  # each task reads its first index
    # one task per row block: its pairs with the columns at and after it (each pair once),
    # credited to both ends; then a tree sum over the row blocks
    parts = dsa.blockwise(
        degree_upper,
        "inc",
        rows_blocked,
        "it",
        start,
        "i",
        z_all,
        "kt",
        new_axes={"n": rows.n, "c": 2},
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
        threshold=threshold,
        absolute=absolute,
    )
    total = parts.sum(axis=0, split_every=8)
    degrees = dsa.map_blocks(
        zero_constant_rows, total, z_all, dtype=np.float64, meta=np.empty((0, 0), np.float64), chunks=total.chunks
    )
    return [rows.scatter(degrees, column) for column in (0, 1)]


def _boxed(value) -> np.ndarray:
    """One Python object as the single element of a 1-d object array (a block of a holder array)."""
    out = np.empty(1, object)
    out[0] = value
    return out


def _pass2_block(rows, start, z_all, band, *, absolute: bool) -> np.ndarray:
    return _boxed(sparsity_pass2(rows, start, z_all, band, absolute))


def _pass2_degrees(boxes: np.ndarray) -> np.ndarray:
    return boxes[0][0]


def _pass2_band(boxes: np.ndarray) -> np.ndarray:
    return _boxed(boxes[0][1])


def _select_block(band: np.ndarray, collected: np.ndarray, *, n_all: int) -> np.ndarray:
    return _boxed(sparsity_select(band, list(collected), n_all))


def _pass3_block(rows, start, z_all, selected, *, absolute: bool) -> np.ndarray:
    return sparsity_pass3(rows, start, z_all, selected[0], absolute)


def _selected_extra(selected: np.ndarray) -> np.ndarray:
    return selected[0][1]


def _selected_tau(selected: np.ndarray) -> np.ndarray:
    return np.asarray(selected[0][0], np.float64).reshape(())


def _degree_sparsity_one(rows: _Rows, *, sparsity: float, absolute: bool, block_size: int | None) -> list[dsa.Array]:
    """Binary and weighted degree maps at a sparsity, and the chosen threshold (0-d), lazily.

    Pass 1 histograms the correlations of every row block (one task each, the tiles of
    :func:`degree_upper`) and :func:`sparsity_band` finds the bin of the k-th largest; pass 2
    counts the edges above that bin and collects the pairs inside it, from which
    :func:`sparsity_select` takes the exact k-th value and the degrees of the band's edges
    (pass 3 runs only for a band too large to collect).
    """
    size = block_size or default_block_size(rows.n)
    rows_blocked = rows.rows.rechunk({0: size})
    z_all = rows.rows.rechunk({0: -1})
    n = rows.n
    k = target_edges(n, sparsity)
    nb = rows_blocked.numblocks[0]
    start = dsa.arange(n, chunks=rows_blocked.chunks[0])  # each task reads its first index
    # the arguments of every per-row-block task: its rows, its first index and all rows
    per_block = (rows_blocked, "it", start, "i", z_all, "kt")
    obj = np.empty(0, object)

    hist = dsa.blockwise(
        degree_histogram,
        "ib",
        *per_block,
        new_axes={"b": SPARSITY_BINS + 2},
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=np.int64,
        meta=np.empty((0, 0), np.int64),
        token="dc-sparsity-hist",
        absolute=absolute,
    ).sum(axis=0, split_every=8)
    band = hist.map_blocks(
        sparsity_band, k, SPARSITY_BAND_LIMIT, chunks=((5,),), dtype=np.float64, meta=np.empty(0, np.float64)
    )
    # pass 2 returns (degrees, band pairs) per row block: held as one object per block
    pass2 = dsa.blockwise(
        _pass2_block,
        "i",
        *per_block,
        band,
        "q",
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=object,
        meta=obj,
        token="dc-sparsity-pass2",
        absolute=absolute,
    )
    degrees2 = pass2.map_blocks(
        _pass2_degrees, chunks=((1,) * nb, (n,), (2,)), new_axis=[1, 2], dtype=np.float64, meta=np.empty((0, 0, 0))
    )
    band_pairs = pass2.map_blocks(_pass2_band, dtype=object, meta=obj)
    selected = dsa.blockwise(
        _select_block,
        "",
        band,
        "q",
        band_pairs,
        "i",
        concatenate=True,
        dtype=object,
        meta=obj,
        token="dc-sparsity-select",
        n_all=n,
    )
    pass3 = dsa.blockwise(
        _pass3_block,
        "inc",
        *per_block,
        selected,
        "",
        new_axes={"n": n, "c": 2},
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0), np.float64),
        token="dc-sparsity-pass3",
        absolute=absolute,
    )
    extra = selected.map_blocks(
        _selected_extra, chunks=((n,), (2,)), new_axis=[0, 1], dtype=np.float64, meta=np.empty((0, 0))
    )
    tau = selected.map_blocks(_selected_tau, chunks=(), dtype=np.float64, meta=np.empty((), np.float64))

    total = degrees2.sum(axis=0, split_every=8) + pass3.sum(axis=0, split_every=8) + extra
    degrees = dsa.map_blocks(
        zero_constant_rows, total, z_all, dtype=np.float64, meta=np.empty((0, 0), np.float64), chunks=total.chunks
    )
    return [*(rows.scatter(degrees, column) for column in (0, 1)), tau]


def _prepare(bold: xr.DataArray, mask: xr.DataArray, *, func: str):
    """Validate inputs and gather each subject's in-mask rows."""
    if mask is None:
        raise DimensionError(f"{func}: a bool mask (x, y, z) is required")
    prepared = prepare_bold(bold, func=func)
    lead = [d for d in prepared.dims if d not in (*SPATIAL, TIME)]
    if len(lead) > 1:
        raise DimensionError(f"{func}: expected at most one leading dim (subject), got {lead}")
    mask = prepare_mask(mask, prepared, func=func)
    mask_np = mask_numpy(mask, func=func)
    if not mask_np.any():
        raise ValueError(f"{func}: mask has no voxel")
    data = prepared.data
    if not dask.is_dask_collection(data):
        data = dsa.from_array(data, chunks=data.shape)
    layout = _Layout(mask_np, data.chunks[-4:-1])
    rows = [_Rows(data, sub, layout) for sub in (range(data.shape[0]) if lead else [None])]
    return prepared, lead, rows


def _wrap(maps: list[list[dsa.Array]], prepared: xr.DataArray, lead: list[str]) -> list[xr.DataArray]:
    """Stack per-subject maps and label them ``(*lead, x, y, z)``."""
    coords = {k: v for k, v in prepared.coords.items() if TIME not in v.dims}
    out = []
    for i in range(len(maps[0])):
        arr = dsa.stack([m[i] for m in maps]) if lead else maps[0][i]
        out.append(xr.DataArray(arr, dims=(*lead, *SPATIAL), coords=coords))
    return out


@record_history
def degree_centrality(
    bold: xr.DataArray,
    mask: xr.DataArray,
    *,
    threshold: float | None = None,
    sparsity: float | None = None,
    absolute: bool = False,
    block_size: int | None = None,
) -> xr.Dataset:
    r"""Binary and weighted degree centrality of every in-mask voxel.

    Parameters
    ----------
    bold : xarray.DataArray (x, y, z, time) or (subject, x, y, z, time)
        Preprocessed BOLD; ``time`` must be one dask chunk.
    mask : xarray.DataArray (x, y, z) of bool
        The graph's nodes (the study: grey matter). It is small and is loaded into memory
        (the only computation done when the graph is built, and only if it is dask-backed).
    threshold : float, optional
        Correlations strictly above it are edges. Default 0.25 (RESTplus) unless
        ``sparsity`` is given; the two are exclusive.
    sparsity : float, optional
        Instead of a threshold, keep the top ``sparsity`` percent of the
        :math:`N (N - 1) / 2` unique pairs, as ``3dDegreeCentrality -sparsity`` (a percent in
        (0, 100], e.g. ``1.0``); see Notes. Only positive r (:math:`|r| > 0` with ``absolute``) are edges.
    absolute : bool, default False
        Use :math:`|r|` for thresholding and weights (negative correlations count too).
    block_size : int, optional
        Rows (voxels) per task. Default :func:`default_block_size` (313 rows for
        N = 53,600, about 170 tasks); the block of correlations is processed in cache-sized
        tiles, so a task's memory hardly depends on it.

    Returns
    -------
    xarray.Dataset
        ``dc_binary`` (number of edges) and ``dc_weighted`` (sum of edge weights), each
        ``(..., x, y, z)`` float32, 0 outside the mask, with the spatial chunks of ``bold``.
        With ``sparsity``, also ``dc_threshold`` ``(...)`` float64: the threshold
        :math:`\tau` it chose (the edges are :math:`r > \tau`), lazy like the maps; the
        attrs record ``sparsity`` and ``target_edges`` (k).

    Notes
    -----
    Each in-mask series is z-scored (ddof = 1) and divided by :math:`\sqrt{T-1}` so that
    :math:`r_{ij} = z_i \cdot z_j`. Then

    .. math::

       \mathrm{DC}^{bin}_i = \#\{ j \ne i : r_{ij} > \tau \}, \qquad
       \mathrm{DC}^{w}_i = \sum_{j \ne i,\ r_{ij} > \tau} r_{ij} .

    The N x N matrix is never held: the in-mask voxels are gathered into an ``(N, T)`` dask
    array chunked in row blocks. The matrix is symmetric, so the task of a row block
    :math:`[s, e)` computes only its correlations with the columns :math:`j \ge s`, one
    cache-sized tile at a time (``rows x 256`` float32, a product with one BLAS thread since
    Dask already runs one task per core); each tile is thresholded and reduced in place
    to per-row and per-column counts and sums while it is in cache, and every edge is
    credited to both of its ends. The tasks' length-N contributions are summed in a tree and
    scattered back onto the spatial chunks of ``bold``. This halves the flops and never
    writes a block of correlations to main memory; each task holds the ``N x T`` series
    (about 50 MiB for N = 53,600), two tiles and its contribution (16 N bytes). A constant voxel gets
    0 (DPABI counts :math:`r_{ii} = 1` then subtracts 1, which gives -1 there); with a
    negative threshold, other voxels count it as an edge of weight 0. Correlations are
    float32 products of float32 rows, so a pair within about 1e-6 of the threshold may fall
    on either side.

    Sparsity (AFNI ``src/3dDegreeCentrality.c``, ``main``: ``totPosCor = N (N - 1) / 2``,
    ``ngoal = (int)(totPosCor * sparsity / 100)``, only ``r > thresh >= 0`` enters the
    histogram, whole histogram bins are taken from the top until the goal is met, so "the
    fraction ... might be slightly more than the number specified"): the target is
    :math:`k = \lfloor N (N - 1) / 2 \cdot s / 100 \rfloor` edges (N counts every mask voxel,
    constant ones included) and the edges are the pairs with :math:`r \ge r_{(k)}`, the k-th
    largest positive correlation (:math:`|r|` with ``absolute``), found exactly: pairs tied
    with :math:`r_{(k)}` (equal float32 values) are all kept, so the count is k plus the
    extra ties, and where AFNI overshoots by up to a sub-bin (about 2e-4 in r) this keeps
    exactly k on continuous data. (AFNI's ``-thresh`` is a starting floor for ``-sparsity``;
    here the two are exclusive.) If fewer than k pairs have :math:`r > 0`, all of them are
    kept and a :class:`RuntimeWarning` is emitted at compute time (AFNI warns alike).
    Passing ``threshold=float(out.dc_threshold)`` gives the same graph (up to the float32
    rounding of a pair at the threshold). No N x N and no sort of all pairs: a first pass
    over the same tiles histograms the correlations of each row block into :math:`2^{16}`
    bins of width :math:`2^{-16}` (exact: ``ceil(r 2**16)`` in float32; integer counts
    summed in a tree, so the same in any order); the bin holding the k-th largest is found;
    a second pass counts the edges above that bin like the threshold pass and collects the
    pairs inside it (80 to 2,800 pairs for N = 20,000 at 0.1 to 10 %, 12 bytes each), whose
    k-th value and edges are then added in block order. A bin of more than
    ``SPARSITY_BAND_LIMIT`` (4 M) pairs (many exactly tied series) is instead resolved with
    a sub-histogram of width :math:`2^{-34}` (one float32 value per sub-bin for
    :math:`r \ge 2^{-11}`) and a third pass. So a sparsity costs about two degree passes
    (measured: 2 to 2.5 times the time of a threshold), and the task memory of the threshold
    version plus a 0.5 MiB histogram and a 1 MiB buffer. Everything stays lazy: the
    threshold is a task of the graph feeding the second pass.

    Reproducibility: for the same input, spatial chunks and ``block_size``, repeated runs
    give bit-identical maps, with the threaded, synchronous or distributed scheduler and in
    whatever order the tasks finish. Each task computes its tiles with one BLAS thread
    (OpenBLAS rounds a product differently with a different number of threads; see
    ``brainarr._core.blas.one_blas_thread``) and accumulates them in a fixed
    order, and the tasks' contributions are summed in a fixed tree (8 at a time, in block
    order). Another chunking or ``block_size`` sums in another order: ``dc_weighted`` may
    then differ by float32 rounding (a few 1e-7 relative) and ``dc_binary`` only for a pair
    within rounding of the threshold. Bit-identity also assumes the same BLAS library and
    CPU (with MKL, set ``MKL_CBWR`` for reproducible products).

    References
    ----------
    Buckner et al. 2009; Zuo et al. 2012 (see ``attrs["references"]``).
    """
    func = "brainarr.metrics.degree_centrality"
    if threshold is not None and sparsity is not None:
        raise ValueError(f"{func}: give threshold or sparsity, not both")
    if sparsity is not None and not 0 < float(sparsity) <= 100:
        raise ValueError(f"{func}: sparsity is a percent of the pairs in (0, 100], got {sparsity!r}")
    if threshold is None:
        threshold = 0.25
    if not -1 <= float(threshold) < 1:
        raise ValueError(f"{func}: threshold must be in [-1, 1), got {threshold!r}")
    if block_size is not None and int(block_size) < 1:
        raise ValueError(f"{func}: block_size must be a positive number of rows, got {block_size!r}")
    prepared, lead, subjects = _prepare(bold, mask, func=func)
    rel = "|r|" if absolute else "r"
    if sparsity is None:
        kw = {"threshold": float(threshold), "absolute": bool(absolute), "block_size": block_size}
        bin_da, w_da = _wrap([_degree_one(rows, **kw) for rows in subjects], prepared, lead)
        params = {"threshold": float(threshold), "absolute": int(bool(absolute)), "references": DC_REFERENCES}
        rule = f"{rel} > {float(threshold):g}"
    else:
        k = target_edges(subjects[0].n, sparsity)
        if k < 1:
            raise ValueError(
                f"{func}: sparsity {float(sparsity):g}% of the {subjects[0].n * (subjects[0].n - 1) // 2} "
                "pairs keeps no edge"
            )
        kw = {"sparsity": float(sparsity), "absolute": bool(absolute), "block_size": block_size}
        maps = [_degree_sparsity_one(rows, **kw) for rows in subjects]
        bin_da, w_da = _wrap([m[:2] for m in maps], prepared, lead)
        taus = [m[2] for m in maps]
        tau_da = xr.DataArray(
            dsa.stack(taus) if lead else taus[0],
            dims=tuple(lead),
            coords={d: prepared[d] for d in lead if d in prepared.coords},
        )
        params = {
            "sparsity": float(sparsity),
            "target_edges": int(k),
            "absolute": int(bool(absolute)),
            "references": DC_REFERENCES,
        }
        rule = f"{rel} > dc_threshold (top {float(sparsity):g}% of pairs, {k} edges)"
    b = set_metadata(
        bin_da,
        name="dc_binary",
        long_name="degree centrality (binary)",
        units="1",
        description=f"number of voxels in the mask with {rule}",
        **params,
    )
    w = set_metadata(
        w_da,
        name="dc_weighted",
        long_name="degree centrality (weighted)",
        units="1",
        description=f"sum of {rel} over voxels in the mask with {rule}",
        **params,
    )
    out = xr.Dataset({"dc_binary": b, "dc_weighted": w})
    if sparsity is not None:
        out["dc_threshold"] = set_metadata(
            tau_da,
            name="dc_threshold",
            long_name="correlation threshold chosen for the sparsity",
            units="1",
            description=f"edges are the pairs with {rel} > dc_threshold: the float32 just below the "
            f"{k}-th largest {rel} of the N (N - 1) / 2 pairs",
            **params,
        )
        out.attrs.update(sparsity=float(sparsity), target_edges=int(k))
    return carry_attrs(bold, out)


EC_REFERENCES = (
    "Lohmann G, Margulies DS, Horstmann A, et al. Eigenvector centrality mapping for analyzing "
    "connectivity patterns in fMRI data of the human brain. PLoS One 2010;5:e10232. "
    "doi:10.1371/journal.pone.0010232; Wink AM, de Munck JC, van der Werf YD, van den Heuvel OA, "
    "Barkhof F. Fast eigenvector centrality mapping of voxel-wise connectivity in functional "
    "magnetic resonance imaging. Brain Connect 2012;2:265-274. doi:10.1089/brain.2012.0087"
)


@record_history
def eigenvector_centrality(
    bold: xr.DataArray,
    mask: xr.DataArray,
    *,
    threshold: float | None = None,
    binary: bool = False,
    max_iter: int = 200,
    tol: float = 1e-7,
    block_size: int | None = None,
) -> xr.DataArray:
    r"""Eigenvector centrality of every in-mask voxel, without an N x N matrix.

    Parameters
    ----------
    bold : xarray.DataArray (x, y, z, time) or (subject, x, y, z, time)
        Preprocessed BOLD; ``time`` must be one dask chunk.
    mask : xarray.DataArray (x, y, z) of bool
        The graph's nodes (loaded into memory if dask-backed; it is small).
    threshold : float, optional
        ``None`` (default): fast eigenvector centrality mapping (Wink et al. 2012) of the
        all-positive matrix :math:`M = (R + 1) / 2` (self-loops included, no threshold).
        A number in [0, 1): the graph of :func:`degree_centrality` (edges
        :math:`r_{ij} > \tau`, :math:`j \ne i`).
    binary : bool, default False
        With a threshold, use 0/1 edges instead of weights :math:`r_{ij}`.
    max_iter : int, default 200
        Maximum number of products with the matrix (with a threshold, each is a pass over
        all pairs of voxels).
    tol : float, default 1e-7
        Convergence. Without a threshold (power iteration): largest change of the unit-norm
        vector between iterations. With a threshold (Lanczos): relative accuracy of the
        eigenvalue, as ``tol`` of :func:`scipy.sparse.linalg.eigsh`.
    block_size : int, optional
        Rows per block of the thresholded matvec (default :func:`default_block_size`).

    Returns
    -------
    xarray.DataArray (..., x, y, z), float32
        ``ec``: the leading eigenvector with unit L2 norm over the in-mask voxels
        (non-negative), 0 outside the mask and at constant voxels; spatial chunks of ``bold``.

    Notes
    -----
    Without a threshold, power iteration :math:`v \leftarrow M v / \lVert M v \rVert` from a
    constant vector: :math:`M v = (Z (Z^\top v) + \mathbf{1}\mathbf{1}^\top v) / 2` costs
    :math:`O(N T)` per product (rows of :math:`Z` are the standardised series, so
    :math:`Z Z^\top = R`), and the dominant eigenvalue (about N / 2) makes it converge in a
    few products. With a threshold, each product recomputes the correlations block by block
    (one float32 GEMM per ``block_size`` rows, as for degree centrality) and applies
    :math:`A + I` (the same eigenvectors), so it costs one degree-centrality pass; the
    eigenvector is found by implicitly restarted Lanczos iteration
    (:func:`scipy.sparse.linalg.eigsh`) from the constant vector, which needs far fewer
    products than power iteration where the two leading eigenvalues are close (61 instead
    of more than 200 on the 6 mm grey matter at r > 0.25). If it has not converged after
    ``max_iter`` products, the Rayleigh-Ritz vector of the space spanned by the products made
    (which holds the power iterate of one product fewer) is returned with the warning; the
    products are kept for that, :math:`16 N` bytes each. Each subject is one Dask task
    holding the ``N x T`` series matrix (about 50 MiB for the 3 mm grey matter) and one row
    block. Constant voxels are left out of the graph. A :class:`RuntimeWarning` is emitted
    at compute time if the iteration does not converge.

    Reproducibility: the products use the BLAS's default number of threads (one task per
    subject may use every core), so repeated runs are bit-identical only while that number
    is the same. OpenBLAS rounds a product differently with another thread count, which
    happens when degree centrality, ALFF or seed FC tasks run at the same time (they hold
    BLAS at one thread while they run): the thresholded variant then differs by about 1e-8
    (absolute, unit-norm vector; tested below 1e-6), far below ``tol``.

    References
    ----------
    Lohmann et al. 2010; Wink et al. 2012 (see ``attrs["references"]``).
    """
    func = "brainarr.metrics.eigenvector_centrality"
    if threshold is not None and not 0 <= float(threshold) < 1:
        raise ValueError(f"{func}: threshold must be None or in [0, 1), got {threshold!r}")
    if int(max_iter) < 1 or not float(tol) > 0:
        raise ValueError(f"{func}: max_iter must be >= 1 and tol > 0, got {max_iter!r}, {tol!r}")
    if block_size is not None and int(block_size) < 1:
        raise ValueError(f"{func}: block_size must be a positive number of rows, got {block_size!r}")
    prepared, lead, subjects = _prepare(bold, mask, func=func)
    maps = []
    for rows in subjects:
        z_all = rows.rows.rechunk({0: -1})
        vec = z_all.map_blocks(
            leading_eigenvector,
            chunks=((rows.n,), (1,)),
            dtype=np.float64,
            meta=np.empty((0, 0), np.float64),
            threshold=None if threshold is None else float(threshold),
            binary=bool(binary),
            block_size=int(block_size or default_block_size(rows.n)),
            max_iter=int(max_iter),
            tol=float(tol),
        )
        maps.append([rows.scatter(vec, 0)])
    (ec,) = _wrap(maps, prepared, lead)
    kind = "fast ECM, (R + 1) / 2" if threshold is None else f"r > {float(threshold):g}"
    ec = set_metadata(
        ec,
        name="ec",
        long_name="eigenvector centrality",
        units="1",
        description=f"leading eigenvector (unit norm) of the voxel graph ({kind}"
        + (", binary" if binary and threshold is not None else "")
        + ")",
        references=EC_REFERENCES,
        threshold="none" if threshold is None else float(threshold),
        binary=int(bool(binary)),
    )
    return carry_attrs(bold, ec)
