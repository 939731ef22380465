"""Time and peak memory of the subject-level metrics on one full-size subject.

One subject on the study grid (61 x 73 x 61 voxels, 230 volumes, float32, ~250 MiB) with
the 3 mm grey-matter mask (MNI152 GM probability > 0.2, N = 53,585 voxels). Degree
centrality also runs on the 67,541 voxels of highest GM probability (the size of DPABI's own
3 mm grey-matter mask). Each metric runs in its own process. Memory: the peak of the
allocations traced by ``tracemalloc`` while the result is computed (numpy buffers included;
the input itself is not counted) and the process's peak resident set size (which includes
building the synthetic input).

For degree centrality the achieved GFLOP/s (counting the full ``2 N^2 T`` flops of the
correlation matrix, although only its upper triangle is computed) is compared with a plain
numpy float32 product of the same shape measured in the same process, and one row block in
eight is re-run serially with single-threaded BLAS to split a task's time into the tile
products, the threshold-and-reduce passes and the rest.

Usage::

    python benchmarks/metrics.py            # all metrics, Markdown table at the end
    python benchmarks/metrics.py reho dc    # a subset (dc = dc at N = 53,585 and 67,541)
    python benchmarks/metrics.py ec         # eigenvector centrality on the 6 mm grid
    python benchmarks/metrics.py graphs     # building the centrality graphs of a study

``ec`` times :func:`brainarr.metrics.eigenvector_centrality` on the same kind of data on the
6 mm grid (N = 6,726 grey-matter voxels, where the exact eigenvector of the N x N matrix is
cheap to get with :func:`scipy.linalg.eigh`): fast ECM and the graph r > 0.25, with the
largest difference from the exact eigenvector.

``graphs`` times building (not computing) the graphs of degree centrality (threshold and
sparsity), eigenvector centrality and LFCD for a lazy 63-subject study on the 3 mm grid, with
their numbers of tasks, then computes each for one subject on the 6 mm grid (best of 3).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

SHAPE = (61, 73, 61, 230)
METRICS = ("alff", "reho", "seed_fc", "dc", "dc_dpabi")
N_DPABI = 67_541
#: RESTplus/DPABI under Octave on the same machine class, from the issue (s, peak memory).
REFERENCE = {
    "alff": ("ALFF/fALFF", 5.9),
    "reho": ("ReHo (27 neighbours)", 22.0),
    "seed_fc": ("seed FC, 4 seeds", None),
    "dc": ("degree centrality, r > 0.25", None),
    "dc_dpabi": ("degree centrality, r > 0.25", 160.0),
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make_subject(n_voxels: int | None = None, voxel_size: float = 3.0):
    import scipy.ndimage

    import brainarr as ba
    from brainarr.testing import make_bold

    grid = ba.datasets.study_grid(voxel_size)
    if n_voxels is None:
        mask = ba.datasets.gm_mask(like=grid)
    else:  # the n_voxels voxels of highest grey-matter probability
        prob = ba.datasets.tissue_probability(like=grid, tissue="gm")
        flat = prob.values.ravel()
        keep = np.zeros(flat.size, bool)
        keep[np.argsort(flat, kind="stable")[::-1][:n_voxels]] = True
        mask = prob.copy(data=keep.reshape(prob.shape))
    rng = np.random.default_rng(0)
    shape = (*grid.shape, SHAPE[3])
    values = rng.standard_normal(shape, dtype=np.float32)
    # spatially smooth a slow common signal in so that correlations are realistic (some above 0.25)
    slow = scipy.ndimage.gaussian_filter(rng.standard_normal((16, 18, 16, SHAPE[3]), dtype=np.float32), (1, 1, 1, 2))
    zoom = scipy.ndimage.zoom(slow, [a / b for a, b in zip(shape[:3], slow.shape[:3], strict=True)] + [1], order=1)
    values += 3 * zoom[: shape[0], : shape[1], : shape[2]]
    bold = make_bold(values, affine=np.asarray(grid.attrs["affine"]), tr=2.0)
    bold = ba.rechunk_for_metrics(bold)
    return bold, mask


def _dc_parts(z: np.ndarray, block: int, *, every: int = 8) -> dict:
    """Serial, single-threaded timing of one row block in ``every``: tile GEMM vs the rest."""
    import itertools

    from brainarr._core.blas import one_blas_thread
    from brainarr.metrics._kernels import DEGREE_TILE, _reduce_tile

    n_all = z.shape[0]
    t_gemm = t_reduce = t_total = 0.0
    starts = list(range(0, n_all, block))[::every]
    with one_blas_thread():
        for start in starts:
            t_task = time.perf_counter()
            rows = z[start : start + block]
            n = rows.shape[0]
            stop = start + n
            buf = np.empty((2, n, DEGREE_TILE), np.float32)
            ones_c = np.ones(DEGREE_TILE, np.float32)
            ones_r = np.ones(n, np.float32)
            out = np.zeros((n_all, 2))
            edges = sorted({*range(start, stop, DEGREE_TILE), *range(stop, n_all, DEGREE_TILE), n_all})
            for c0, c1 in itertools.pairwise(edges):
                b = buf[:, :, : c1 - c0]
                t0 = time.perf_counter()
                np.matmul(rows, z[c0:c1].T, out=b[0])
                t1 = time.perf_counter()
                _reduce_tile(b[0], b[1], 0.25, False)
                np.matmul(b, ones_c[: c1 - c0])
                if c0 >= stop:
                    out[c0:c1] += np.matmul(ones_r, b).T
                t_gemm += t1 - t0
                t_reduce += time.perf_counter() - t1
            t_total += time.perf_counter() - t_task
    return {
        "parts_sampled_blocks": len(starts),
        "parts_gemm_s": t_gemm,
        "parts_threshold_reduce_s": t_reduce,
        "parts_other_s": t_total - t_gemm - t_reduce,
    }


def _gemm(z: np.ndarray, block: int) -> float:
    """Seconds of a plain float32 product z z^T (N x T x N) in row blocks, BLAS default threads."""
    t0 = time.perf_counter()
    for start in range(0, z.shape[0], block):
        _ = z[start : start + block] @ z.T
    return time.perf_counter() - t0


def run_one(name: str) -> dict:
    """Run one metric in this process; return timings and memory."""

    import brainarr.metrics as bm

    bold, mask = _make_subject(N_DPABI if name == "dc_dpabi" else None)
    n_vox = int(mask.values.sum())
    base = _rss_mib()
    result: dict = {"metric": name, "n_mask_voxels": n_vox, "chunks": str(bold.chunksizes)}
    t0 = time.perf_counter()
    if name == "alff":
        out = bm.alff(bold, mask=mask)
    elif name == "reho":
        out = bm.reho(bold, mask)
    elif name == "seed_fc":
        out = bm.seed_fc(bold, ["Precentral_L", "Precentral_R", "Postcentral_L", "Postcentral_R"], mask=mask)
    elif name in ("dc", "dc_dpabi"):
        out = bm.degree_centrality(bold, mask, threshold=0.25)
    else:
        raise ValueError(name)
    build = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    computed = out.compute()
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    result.update(graph_seconds=build, seconds=elapsed, peak_alloc_during_compute_mib=peak)
    result["peak_rss_mib"] = _rss_mib()
    if name in ("dc", "dc_dpabi"):
        from brainarr.metrics._kernels import zscore_rows

        flops = 2 * n_vox**2 * SHAPE[3]
        result["gflops"] = flops / elapsed / 1e9
        result["mean_dc_binary"] = float(computed.dc_binary.values[mask.values].mean())
        z = zscore_rows(bold.values[mask.values])
        block = bm.default_block_size(n_vox)
        gemm = min(_gemm(z, block) for _ in range(2))
        result.update(block=block, gemm_seconds=gemm, gemm_gflops=flops / gemm / 1e9)
        result["fraction_of_gemm"] = result["gflops"] / result["gemm_gflops"]
        result.update(_dc_parts(z, block))
    result["rss_after_data_mib"] = base
    return result


def ec_benchmark() -> None:
    """Time eigenvector centrality and compare it with the exact eigenvector (6 mm grid)."""
    import warnings

    import dask
    import scipy.linalg

    import brainarr.metrics as bm

    bold, mask = _make_subject(voxel_size=6.0)
    inside = mask.values
    x = bold.values[inside].astype(np.float64)
    n = x.shape[0]
    print(f"eigenvector centrality, 6 mm grid, N = {n:,} voxels x {SHAPE[3]} volumes")
    r = np.corrcoef(x)
    for threshold in (None, 0.25):
        if threshold is None:
            matrix = (r + 1) / 2
        else:
            matrix = np.where(r > threshold, r, 0.0)
            np.fill_diagonal(matrix, 0.0)
        t0 = time.perf_counter()
        _, vec = scipy.linalg.eigh(matrix, subset_by_index=[n - 1, n - 1])
        t_ref = time.perf_counter() - t0
        ref = np.abs(vec[:, 0])
        with dask.config.set(scheduler="threads"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            ec = bm.eigenvector_centrality(bold, mask, threshold=threshold).values[inside]
            elapsed = time.perf_counter() - t0
        label = "fast ECM (R + 1) / 2" if threshold is None else f"r > {threshold:g}"
        note = "".join(f" [{w.message}]" for w in caught)
        print(
            f"  {label:<22s} {elapsed:8.2f} s, max |ec - exact| = {np.abs(ec - ref).max():.1e} "
            f"(exact eigh {t_ref:.1f} s){note}",
            flush=True,
        )


def graphs_benchmark(n_subjects: int = 63, repeats: int = 3) -> None:
    """Time building the centrality graphs of a study and computing them for one subject."""
    import dask
    import dask.array as da
    import xarray as xr

    import brainarr as ba
    import brainarr.metrics as bm

    grid = ba.datasets.study_grid()
    mask = ba.datasets.gm_mask(like=grid).compute()
    data = da.zeros((n_subjects, *grid.shape, SHAPE[3]), np.float32, chunks=(1, 31, 37, 31, -1))
    study = xr.DataArray(
        data,
        dims=("subject", "x", "y", "z", "time"),
        coords={"subject": [f"sub-{i:02d}" for i in range(n_subjects)], **{d: grid[d] for d in ("x", "y", "z")}},
        attrs={"affine": grid.attrs["affine"], "tr": 2.0},
    )
    steps = {
        "dc r > 0.25": lambda b, m: bm.degree_centrality(b, m),
        "dc sparsity 1%": lambda b, m: bm.degree_centrality(b, m, sparsity=1.0),
        "ec r > 0.25": lambda b, m: bm.eigenvector_centrality(b, m, threshold=0.25, max_iter=20),
        "lfcd": lambda b, m: bm.lfcd(b, m),
    }
    print(f"building the graphs of {n_subjects} subjects, 3 mm grid, N = {int(mask.sum()):,}")
    for label, fn in steps.items():
        t0 = time.perf_counter()
        out = fn(study, mask)
        elapsed = time.perf_counter() - t0
        print(f"  {label:<16s} {elapsed:6.2f} s, {len(out.__dask_graph__()):,} tasks", flush=True)
    bold, mask6 = _make_subject(voxel_size=6.0)
    bold = bold.chunk({"x": 16, "y": 19})
    print(f"computing one subject, 6 mm grid, N = {int(mask6.values.sum()):,}, chunks {dict(bold.chunksizes)}")
    for label, fn in steps.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with dask.config.set(scheduler="threads"):
                fn(bold, mask6).compute()
            times.append(time.perf_counter() - t0)
        print(f"  {label:<16s} {min(times):6.2f} s (best of {repeats})", flush=True)


def _table(results: dict) -> str:
    lines = [
        "| metric | N | brainarr time | peak memory: RSS / allocated while computing "
        "| RESTplus/DPABI (Octave) | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        label, ref = REFERENCE[name]
        ref_s = f"{ref:g} s" if ref else "-"
        ratio = f"{ref / r['seconds']:.1f}x faster" if ref else "-"
        lines.append(
            f"| {label} | {r['n_mask_voxels']:,} | {r['seconds']:.2f} s | {r['peak_rss_mib'] / 1024:.2f} GiB / "
            f"{r['peak_alloc_during_compute_mib']:.0f} MiB "
            f"| {ref_s} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Run each requested metric in a fresh process and print a table."""
    if argv == ["ec"]:
        ec_benchmark()
        return
    if argv == ["graphs"]:
        graphs_benchmark()
        return
    if argv and argv[0] == "--one":
        print(json.dumps(run_one(argv[1])))
        return
    names = argv or list(METRICS)
    if "dc" in names and "dc_dpabi" not in names:
        names.append("dc_dpabi")
    results = {}
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(results[name]), flush=True)
    print()
    print(_table(results))
    for name in ("dc", "dc_dpabi"):
        if name in results:
            r = results[name]
            sampled = r["parts_gemm_s"] + r["parts_threshold_reduce_s"] + r["parts_other_s"]
            print(
                f"\nDC, N = {r['n_mask_voxels']:,}: {r['gflops']:.1f} GFLOP/s (2 N^2 T); plain float32 GEMM "
                f"of the same shape: {r['gemm_gflops']:.1f} GFLOP/s ({r['gemm_seconds']:.1f} s); "
                f"fraction {r['fraction_of_gemm']:.2f}. Serial split of {r['parts_sampled_blocks']} row blocks: "
                f"tile GEMM {r['parts_gemm_s'] / sampled:.0%}, threshold + reduce "
                f"{r['parts_threshold_reduce_s'] / sampled:.0%}, other {r['parts_other_s'] / sampled:.0%} "
                f"({sampled:.1f} s)"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
