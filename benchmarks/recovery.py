"""Planted effects recovered and false clusters of the simulated study, over many seeds.

For each seed, the embedded simulated cohort of ``brainarr demo`` (31 patients + 32 controls,
6 mm, 230 volumes, the nine planted effects of :data:`brainarr.datasets.PLANTED`) is
simulated, ingested into a Zarr store and run through the whole study
(:func:`brainarr.pipeline.run` with the reference study's configuration). The clusters of the
eleven group maps (mALFF, zALFF, smReHo, four seed-FC maps, four DC maps) are then sorted by
:func:`brainarr.pipeline.recovery` into planted, implied (a consequence the simulator
documents) and false, for

* GRF cluster correction at the study's thresholds (voxel p 0.01 / cluster p 0.01 for ALFF,
  ReHo and FC; 0.05 / 0.05 for DC), and
* with ``--n-perm N``, Freedman-Lane permutation inference (``--stat``: maximum cluster mass by
  default, or cluster size or TFCE) at the same cluster-forming thresholds and FWE levels, and
  the two combined (``grf+perm-dc``: GRF for ALFF, ReHo and FC, permutation for DC, as
  ``[group.permutation] families = ["dc"]`` runs it).

Prints one line per seed and inference, and the totals: seeds free of false clusters, group
maps with a false cluster (against the nominal per-map FWE level), and planted effects
recovered. ``--effect-size 0`` runs null cohorts. ``--csv`` writes every false cluster.

Run (about 2 minutes per seed on 2 cores with 1000 permutations)::

    python benchmarks/recovery.py --seeds 0-15 --n-perm 1000 --workdir /tmp/recovery
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path

import pandas as pd
from calibration import clopper_pearson  # benchmarks/calibration.py, beside this script

from brainarr import io, pipeline
from brainarr.cli import DEMO_SIZE, demo_config
from brainarr.cohort import open_cohort
from brainarr.config import StudyConfig
from brainarr.datasets import simulate_cohort
from brainarr.study import family_of


def seed_list(text: str) -> list[int]:
    """``"0-15"`` or ``"0,3,7"`` as a list of seeds."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def study_config(n_perm: int, seed: int, stat: str = "cluster_mass") -> StudyConfig:
    config = demo_config(figures=False, n_perm=n_perm, stat=stat, seed=seed)
    return dataclasses.replace(config, output=dataclasses.replace(config.output, nifti=False))


def one_seed(seed: int, effect_size: float, n_perm: int, workdir: Path, stat: str = "cluster_mass") -> list[dict]:
    store = workdir / f"seed{seed}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    io.ingest(simulate_cohort(**DEMO_SIZE, seed=seed, effect_size=effect_size), str(store))
    result = pipeline.run(study_config(n_perm, seed, stat), store, output=workdir / f"seed{seed}-out", progress=False)
    planted = open_cohort(store).attrs.get("planted", [])
    shutil.rmtree(store, ignore_errors=True)
    elapsed = time.perf_counter() - start
    rows = []
    inferences = {"grf": result.tables}
    if n_perm:
        inferences["permutation"] = result.permutation_tables
        # DPABI's GRF for ALFF, ReHo and FC; permutation for DC, whose 0.05 / 0.05 GRF is liberal
        inferences["grf+perm-dc"] = {
            k: (result.permutation_tables[k] if k.startswith("dc_") else v) for k, v in result.tables.items()
        }
    for inference, tables in inferences.items():
        maps = {k: v for k, v in tables.items() if k not in ("table1", "motion", "permutation")}
        effects, implied, false = pipeline.recovery(maps, planted, implied=True)
        rows.append(
            {
                "seed": seed,
                "inference": inference,
                "recovered": int(effects["recovered"].sum()) if len(effects) else 0,
                "missed": "; ".join(
                    f"{e.metric}{f' ({e.seed})' if e.seed else ''} {e.region} {e.direction}"
                    for e in effects[~effects["recovered"]].itertuples()
                )
                if len(effects)
                else "",
                "planted": len(effects),
                "implied": len(implied),
                "false": len(false),
                "maps_with_false": false["variant"].nunique() if len(false) else 0,
                "maps": len(maps),
                "by_family": {
                    family: (
                        sum(family_of(v) == family for v in maps),
                        sum(family_of(v) == family for v in (false["variant"].unique() if len(false) else [])),
                    )
                    for family in ("alff", "reho", "fc", "dc")
                },
                "false_clusters": false.assign(seed=seed, inference=inference),
                "seconds": elapsed,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-15", help="seeds, e.g. 0-15 or 0,4,9 (default 0-15)")
    parser.add_argument("--effect-size", type=float, default=1.0, help="scale of the planted effects (default 1)")
    parser.add_argument("--n-perm", type=int, default=0, help="also run permutation inference (0: GRF only)")
    parser.add_argument(
        "--stat", default="cluster_mass", help="permutation statistic: cluster_mass (default), cluster_size, tfce"
    )
    parser.add_argument("--workdir", default="recovery-bench", help="folder for the stores and results")
    parser.add_argument("--csv", help="write every false cluster to this CSV file")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seed_list(args.seeds):
        for row in one_seed(seed, args.effect_size, args.n_perm, workdir, args.stat):
            rows.append(row)
            print(
                f"seed {seed:>3} {row['inference']:<12} recovered {row['recovered']}/{row['planted']}  "
                f"implied {row['implied']:>3}  false {row['false']:>2} in {row['maps_with_false']:>2} of "
                f"{row['maps']} maps  ({row['seconds']:.0f} s)"
                + (f"  missed: {row['missed']}" if row["missed"] else ""),
                flush=True,
            )
    summary = pd.DataFrame([{k: v for k, v in r.items() if k != "false_clusters"} for r in rows])
    print()
    for inference, part in summary.groupby("inference", sort=False):
        clean = int((part["false"] == 0).sum())
        print(
            f"{inference}: {clean} of {len(part)} seeds free of false clusters; "
            f"{int(part['false'].sum())} false clusters in {int(part['maps_with_false'].sum())} of "
            f"{int(part['maps'].sum())} group maps; planted effects recovered "
            f"{int(part['recovered'].sum())} of {int(part['planted'].sum())}"
        )
    print("\ngroup maps with a false cluster, by metric family (nominal: the family's cluster p):")
    grf = demo_config(figures=False).group.grf
    for inference in summary["inference"].unique():
        parts = []
        for family in ("alff", "reho", "fc", "dc"):
            n = sum(r["by_family"][family][0] for r in rows if r["inference"] == inference)
            k = sum(r["by_family"][family][1] for r in rows if r["inference"] == inference)
            if n:
                lo, hi = clopper_pearson(k, n)
                parts.append(f"{family} {k}/{n} [{lo:.3f}, {hi:.3f}] nominal {grf[family].cluster_p:g}")
        print(f"  {inference}: " + "; ".join(parts))
    false = [r["false_clusters"] for r in rows if len(r["false_clusters"])]
    if args.csv:
        table = pd.concat(false, ignore_index=True) if false else pd.DataFrame()
        table.to_csv(args.csv, index=False)
        print(f"false clusters written to {args.csv}")


if __name__ == "__main__":
    main()
