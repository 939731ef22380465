"""Time and peak memory of the subject-level metrics on one full-size subject.

One subject on the study grid (61 x 73 x 61 voxels, 230 volumes, float32, ~250 MiB) with
the 3 mm grey-matter mask (MNI152 GM probability > 0.2). Each metric runs in its own
process. Memory: the peak of the allocations traced by ``tracemalloc`` while the result is
computed (numpy buffers included; the input itself is not counted) and the process's
peak resident set size (which includes building the synthetic input). For degree centrality the
achieved GFLOP/s (2 N^2 T flops) is compared with a plain numpy float32 GEMM of the same
shape measured in the same run.

Usage::

    python benchmarks/metrics.py            # all metrics
    python benchmarks/metrics.py reho dc    # a subset
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
METRICS = ("alff", "reho", "seed_fc", "dc", "gemm")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make_subject():
    import scipy.ndimage

    import brainarr as ba
    from brainarr.testing import make_bold

    grid = ba.datasets.study_grid()
    mask = ba.datasets.gm_mask(like=grid)
    rng = np.random.default_rng(0)
    values = rng.standard_normal(SHAPE, dtype=np.float32)
    # spatially smooth a slow common signal in so that correlations are realistic (some above 0.25)
    slow = scipy.ndimage.gaussian_filter(rng.standard_normal((16, 18, 16, SHAPE[3]), dtype=np.float32), (1, 1, 1, 2))
    zoom = scipy.ndimage.zoom(slow, [a / b for a, b in zip(SHAPE[:3], slow.shape[:3], strict=True)] + [1], order=1)
    values += 3 * zoom[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    bold = make_bold(values, affine=np.asarray(grid.attrs["affine"]), tr=2.0)
    bold = ba.rechunk_for_metrics(bold)
    return bold, mask


def run_one(name: str) -> dict:
    """Run one metric in this process; return timings and memory."""

    import brainarr.metrics as bm

    bold, mask = _make_subject()
    n_vox = int(mask.values.sum())
    base = _rss_mib()
    result: dict = {"metric": name, "n_mask_voxels": n_vox, "chunks": str(bold.chunksizes)}
    if name == "gemm":
        from brainarr.metrics._kernels import zscore_rows

        z = zscore_rows(bold.values[mask.values])
        block = bm.default_block_size(n_vox)
        t0 = time.perf_counter()
        for start in range(0, n_vox, block):
            _ = z[start : start + block] @ z.T
        elapsed = time.perf_counter() - t0
        result.update(seconds=elapsed, gflops=2 * n_vox**2 * SHAPE[3] / elapsed / 1e9, block=block)
    else:
        t0 = time.perf_counter()
        if name == "alff":
            out = bm.alff(bold, mask=mask)
        elif name == "reho":
            out = bm.reho(bold, mask)
        elif name == "seed_fc":
            out = bm.seed_fc(bold, ["Precentral_L", "Precentral_R", "Postcentral_L", "Postcentral_R"], mask=mask)
        elif name == "dc":
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
        if name == "dc":
            flops = 2 * n_vox**2 * SHAPE[3]
            result["gflops"] = flops / elapsed / 1e9
            result["mean_dc_binary"] = float(computed.dc_binary.values[mask.values].mean())
    result["rss_after_data_mib"] = base
    result["peak_rss_mib"] = _rss_mib()
    return result


def main(argv: list[str]) -> None:
    """Run each requested metric in a fresh process and print a table."""
    if argv and argv[0] == "--one":
        print(json.dumps(run_one(argv[1])))
        return
    names = argv or list(METRICS)
    results = {}
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True, check=True)
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(results[name]), flush=True)
    print()
    print(f"{'metric':<10}{'seconds':>10}{'peak alloc MiB (compute)':>26}{'peak RSS MiB':>14}")
    for name, r in results.items():
        alloc = r.get("peak_alloc_during_compute_mib", float("nan"))
        print(f"{name:<10}{r['seconds']:>10.2f}{alloc:>26.0f}{r['peak_rss_mib']:>14.0f}")
    if "dc" in results and "gemm" in results:
        frac = results["dc"]["gflops"] / results["gemm"]["gflops"]
        print(
            f"\nDC: {results['dc']['gflops']:.1f} GFLOP/s (2 N^2 T, N = {results['dc']['n_mask_voxels']}); "
            f"plain numpy float32 GEMM in the same row blocks: {results['gemm']['gflops']:.1f} GFLOP/s; "
            f"fraction {frac:.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
