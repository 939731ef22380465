"""Paper-size cohorts: wall time per stage and peak memory per worker of the whole study.

For each cohort size, simulates the subjects on the study grid (61 x 73 x 61 voxels of 3 mm,
230 volumes) with :func:`brainarr.datasets.simulate_cohort`, streams them into a Zarr store
with :func:`brainarr.io.ingest`, then runs the whole study (:func:`brainarr.pipeline.run`) on a
``distributed.LocalCluster`` of worker processes with a memory limit each. A background
thread polls every worker's resident set size every 0.5 s and keeps the maximum per worker;
worker restarts (a new process behind the same worker name, e.g. after the nanny killed a
worker that exceeded its memory limit) are counted.

Prints a Markdown table (one row per cohort size) and the cost per subject of the subject
level, which should be constant if the cost is linear in the number of subjects.

Usage::

    python benchmarks/cohort.py --subjects 8 16 32 63 --store-dir /scratch/brainarr
    python benchmarks/cohort.py --subjects 8 --families alff reho fc
    python benchmarks/cohort.py --subjects 2 --families dc --split-families

Each full-size subject is about 250 MB of float32 BOLD before compression; stores are
deleted after each size unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU seconds of the calling process so far."""
    import psutil

    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def _probe(dask_worker) -> tuple[str, int, int, float]:
    """Run on a worker: its name, pid, resident set size (bytes) and CPU seconds so far."""
    import psutil

    proc = psutil.Process()
    t = proc.cpu_times()
    return str(dask_worker.name), proc.pid, int(proc.memory_info().rss), float(t.user + t.system)


class MemoryMonitor:
    """Poll the workers' RSS in a background thread; keep the peak per worker name."""

    def __init__(self, client, interval: float = 0.5) -> None:
        self.client = client
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.pids: dict[str, set[int]] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds of each worker process, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def poll(self) -> None:
        for name, pid, rss, cpu in self.client.run(_probe).values():
            self.peak[name] = max(self.peak.get(name, 0), rss)
            self.pids.setdefault(name, set()).add(pid)
            self.cpu[pid] = cpu

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a worker restarting between the two calls
                self.poll()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def restarts(self) -> int:
        return sum(len(p) - 1 for p in self.pids.values())


def _exceeded_messages(client) -> int:
    """Count 'exceeded' memory messages in the nannies' and workers' logs."""
    count = 0
    for logs in (client.get_worker_logs(nanny=True), client.get_worker_logs()):
        for records in logs.values():
            count += sum(1 for _, msg in records if "exceeded" in msg.lower() and "memory" in msg.lower())
    return count


def _config(path: str | None, families: list[str] | None):
    from brainarr.config import StudyConfig

    config = StudyConfig.from_toml(path) if path else StudyConfig()
    if families:
        config = dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, families=tuple(families)))
    return config.validate()


def run_size(n: int, args, store_dir: Path) -> dict:
    from distributed import Client, LocalCluster

    from brainarr import io, pipeline
    from brainarr.datasets import simulate_cohort

    config = _config(args.config, args.families)
    store = store_dir / f"cohort-{n}.zarr"
    out = store_dir / f"results-{n}"
    for path in (store, out):
        shutil.rmtree(path, ignore_errors=True)
    row: dict = {"subjects": n}
    try:
        start = time.perf_counter()
        cpu0 = cpu_seconds()
        sim = simulate_cohort(n // 2, n - n // 2, voxel_size=args.voxel_size, n_volumes=args.n_volumes, seed=args.seed)
        io.ingest(sim, str(store))
        row["simulate+ingest"] = time.perf_counter() - start
        row["ingest_cpu"] = cpu_seconds() - cpu0
        row["store_gb"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e9
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                memory_limit=args.memory_limit,
                dashboard_address=None,
                silence_logs=40,
            ) as cluster,
            Client(cluster) as client,
            MemoryMonitor(client) as monitor,
        ):
            monitor.poll()
            cpu_start = sum(monitor.cpu.values())
            main_start = cpu_seconds()
            subject_times = {}
            if args.split_families:
                # one run per family first: the subject-level cost of each family on its own
                for family in config.metrics.families:
                    cfg = dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, families=(family,)))
                    res = pipeline.run(cfg, str(store), client=client, output=out, progress=False)
                    subject_times[family] = res.timings["subjects"]
            result = pipeline.run(config, str(store), client=client, output=out, progress=False)
            monitor.poll()
            row["worker_cpu"] = sum(monitor.cpu.values()) - cpu_start
            row["main_cpu"] = cpu_seconds() - main_start
            row["exceeded_msgs"] = _exceeded_messages(client)
        row["restarts"] = monitor.restarts
        row["peak_gib"] = {k: v / 2**30 for k, v in sorted(monitor.peak.items())}
        t = result.timings
        row["motion_qc"] = t.get("motion_qc", 0.0)
        row["subjects_s"] = sum(subject_times.values()) if subject_times else t.get("subjects", 0.0)
        row["per_family"] = subject_times
        row["group"] = t.get("group", 0.0)
        row["report"] = t.get("report", 0.0)
        log = (out / "log.txt").read_text() if (out / "log.txt").exists() else ""
        row["per_subject_s"] = [float(m) for m in re.findall(r"INFO subject \S+: .* in ([0-9.]+) s", log)]
        row["pipeline_total"] = sum(subject_times.values()) + t.get("total", 0.0)
        row["total"] = row["simulate+ingest"] + row["pipeline_total"]
    finally:
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    return row


def _table(rows: list[dict], limit: str) -> str:
    head = (
        "| subjects | simulate + ingest (s) | subject maps (s) | group level (s) | report (s) | total (s) "
        f"| peak RSS per worker (GiB, limit {limit}) | restarts / 'exceeded' messages |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        peaks = ", ".join(f"{v:.2f}" for v in r["peak_gib"].values())
        lines.append(
            f"| {r['subjects']} | {r['simulate+ingest']:.0f} | {r['subjects_s']:.0f} | {r['group']:.0f} "
            f"| {r['report']:.0f} | {r['total']:.0f} | {peaks} | {r['restarts']} / {r['exceeded_msgs']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, nargs="+", default=[8, 16, 32, 63])
    parser.add_argument("--store-dir", default=None, help="where the stores go (default a temporary folder)")
    parser.add_argument("--config", default=None, help="study TOML (default the reference study's settings)")
    parser.add_argument("--families", nargs="+", choices=("alff", "reho", "fc", "dc"), default=None)
    parser.add_argument("--split-families", action="store_true", help="time the subject maps of each family")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GiB")
    parser.add_argument("--n-volumes", type=int, default=230)
    parser.add_argument("--voxel-size", type=float, default=3.0, help="3: the study grid; 6 for a quick check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the stores and results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.store_dir) as tmp:
        store_dir = Path(args.store_dir) if args.keep and args.store_dir else Path(tmp)
        rows = []
        for n in args.subjects:
            row = run_size(n, args, store_dir)
            rows.append(row)
            fam = ", ".join(f"{k} {v:.1f} s" for k, v in row["per_family"].items())
            print(
                f"{n} subjects: simulate+ingest {row['simulate+ingest']:.1f} s ({row['store_gb']:.2f} GB stored), "
                f"motion QC {row['motion_qc']:.1f} s, subject maps {row['subjects_s']:.1f} s"
                + (f" ({fam})" if fam else "")
                + f", group {row['group']:.1f} s, report {row['report']:.1f} s, total {row['total']:.1f} s",
                flush=True,
            )
            print(f"  subject maps, wall s per subject in order: {[round(v, 1) for v in row['per_subject_s']]}")
            print(
                f"  CPU s: simulate+ingest {row['ingest_cpu']:.0f}, workers {row['worker_cpu']:.0f}, "
                f"client {row['main_cpu']:.0f}; peak RSS per worker {row['peak_gib']}",
                flush=True,
            )
    print()
    print(_table(rows, args.memory_limit))
    print()
    print(
        "| subjects | subject maps per subject (s) | simulate + ingest per subject (s) | total per subject (s) "
        "| CPU s per subject: simulate + ingest | CPU s per subject: pipeline (workers + client) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        n = r["subjects"]
        print(
            f"| {n} | {r['subjects_s'] / n:.1f} | {r['simulate+ingest'] / n:.1f} | {r['total'] / n:.1f} "
            f"| {r['ingest_cpu'] / n:.1f} | {(r['worker_cpu'] + r['main_cpu']) / n:.1f} |"
        )


if __name__ == "__main__":
    main()
