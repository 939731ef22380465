"""Benchmark: full-size simulated raw BIDS data (two subjects x 240 volumes) and the raw BIDS reader.

Usage: python benchmarks/raw.py [voxel_size_mm] [t1_voxel_size_mm]
"""

import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import brainarr as ba
from brainarr.raw import find_bids_raw


def main(voxel_size: float = 6.0, t1_voxel_size: float = 1.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ba.datasets.study_grid(2.0)  # warm imports
        start = time.perf_counter()
        truth = ba.datasets.simulate_raw(
            Path(tmp) / "bids", n_patients=1, n_controls=1, n_movers=1, n_volumes=240,
            voxel_size=voxel_size, t1_voxel_size=t1_voxel_size,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        table = find_bids_raw(truth["root"])
        read = time.perf_counter() - start
        sizes = {p.name: p.stat().st_size / 2**20 for s in truth["subjects"].values() for p in (s["bold"], s["t1"])}
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        print(f"simulate_raw 2 subjects x 240 volumes, cohort {voxel_size} mm, T1 {t1_voxel_size} mm: {elapsed:.1f} s")
        print(f"find_bids_raw: {read * 1e3:.0f} ms for {len(table)} subjects; peak RSS {peak:.0f} MiB")
        print("file sizes (MiB):", {k: round(v, 1) for k, v in sizes.items()})
        print(
            "excluded:",
            truth["excluded"],
            "max translation/rotation:",
            {k: (round(s["max_translation"], 2), round(s["max_rotation"], 2)) for k, s in truth["subjects"].items()},
        )


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main(*(float(a) for a in sys.argv[1:]))
