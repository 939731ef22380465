"""The ``brainarr`` command line.

``brainarr run`` runs the whole study on a cohort store (:func:`brainarr.pipeline.run`),
``brainarr report`` rebuilds the group level and the HTML report from the stored maps, and
``brainarr demo`` simulates the embedded cohort, runs the study on it and checks that the
planted effects are found; ``brainarr simulate``, ``brainarr ingest`` and ``brainarr info``
are the building blocks.
Run ``brainarr COMMAND --help`` for the options of each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

#: Size of the reduced demo cohort (``brainarr demo`` without ``--full``).
DEMO_SIZE = {"n_patients": 31, "n_controls": 32, "voxel_size": 6.0, "n_volumes": 230}
FULL_SIZE = {"n_patients": 31, "n_controls": 32, "voxel_size": 3.0, "n_volumes": 230}
#: ``demo --from-raw``: every subject is preprocessed from native EPI + T1 (about a minute each on
#: 2 cores at these settings), so the default cohort is smaller and its planted effects larger.
RAW_DEMO_SIZE = {"n_patients": 8, "n_controls": 8, "voxel_size": 6.0, "n_volumes": 120, "effect_size": 2.0}
#: Faster settings of the spatial chain for the demo's 6 mm grid (T1 at 2 mm, normalisation at 4 mm).
RAW_DEMO_CHAIN = {"normalise_options": {"voxel_size": 4.0}, "coregister_options": {"sep": (6.0, 4.0)}}

_DESCRIPTION = """\
brainarr: lazy, labelled, scalable resting-state fMRI.

Subjects' 4-D BOLD volumes become one chunked Zarr store (a "cohort"); metrics and group
statistics then run as Dask graphs on a laptop, out of core, or on a Dask cluster.

Typical use:
  brainarr demo                                  simulate a cohort, run the study, check it
  brainarr run study.toml --store study.zarr     the whole study on a cohort store
  brainarr report study.zarr                     rebuild the report from stored maps
  brainarr ingest derivatives/ study.zarr        fMRIPrep or DPABI folder -> cohort store
  brainarr info study.zarr                       what a store holds
  brainarr export study.zarr out/ --layout bids  maps as BIDS derivatives, DPABI or C-PAC outputs
  brainarr repair study.zarr                     return a crashed store to its last consistent subject
"""


def _build_parser() -> argparse.ArgumentParser:
    from brainarr._core.version import __version__

    parser = argparse.ArgumentParser(
        prog="brainarr", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"brainarr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_cluster_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
        p.add_argument("--workers", type=int, help="start a local Dask cluster with N worker processes")
        p.add_argument("--memory-limit", default="auto", help="memory per worker of the local cluster (e.g. 4GB)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    def add_simulation_options(
        p: argparse.ArgumentParser, *, voxel_size: float, n_volumes: int, n: tuple[int, int]
    ) -> None:
        p.add_argument("--n-patients", type=int, default=n[0], help=f"patients to simulate (default {n[0]})")
        p.add_argument("--n-controls", type=int, default=n[1], help=f"controls to simulate (default {n[1]})")
        p.add_argument(
            "--voxel-size",
            type=float,
            default=voxel_size,
            help=f"voxel edge in mm of the MNI grid (default {voxel_size:g})",
        )
        p.add_argument("--n-volumes", type=int, default=n_volumes, help=f"volumes per subject (default {n_volumes})")
        p.add_argument("--tr", type=float, default=2.0, help="repetition time in s (default 2)")
        p.add_argument("--effect-size", type=float, default=1.0, help="scale of the planted group effects (default 1)")
        p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data (default 0)")

    demo = sub.add_parser(
        "demo",
        help="simulate a cohort, run the whole study on it and check the planted effects",
        description="Simulate the embedded default cohort (patients vs controls with planted effects in "
        "the regions the reference study reports), stream it into a Zarr store, run the whole study "
        "(subject maps, group statistics, report) and print which planted effects were recovered and "
        f"any false clusters. By default a reduced size ({DEMO_SIZE['n_patients']}+{DEMO_SIZE['n_controls']} "
        f"subjects, {DEMO_SIZE['voxel_size']:g} mm, {DEMO_SIZE['n_volumes']} volumes: a few minutes on 2 cores); "
        "--full gives the study's size (63 subjects, 3 mm, 230 volumes: about 15.7 GB).",
    )
    demo.add_argument(
        "--store",
        default="brainarr-demo.zarr",
        help="where to write the cohort (default ./brainarr-demo.zarr)",
    )
    demo.add_argument("--output", help="results folder (default brainarr-results next to the store)")
    demo.add_argument("--full", action="store_true", help="the study's full size instead of the reduced demo")
    demo.add_argument(
        "--from-raw",
        action="store_true",
        help="start from raw scanner data: write a simulated raw BIDS dataset (native oblique EPI with head "
        f"motion and slice timing, and a T1 per subject; {RAW_DEMO_SIZE['n_patients']}+"
        f"{RAW_DEMO_SIZE['n_controls']} subjects, {RAW_DEMO_SIZE['n_volumes']} volumes, effects x"
        f"{RAW_DEMO_SIZE['effect_size']:g}), preprocess it (realign, coregister, normalise, segment) into the "
        "store, then run the study",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_cluster_options(demo)
    # sizing options for quick checks; not part of the documented interface
    for flag, kind in (("--n-patients", int), ("--n-controls", int), ("--voxel-size", float), ("--n-volumes", int)):
        demo.add_argument(flag, type=kind, help=argparse.SUPPRESS)
    demo.add_argument("--effect-size", type=float, help=argparse.SUPPRESS)
    demo.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    demo.add_argument("--no-figures", action="store_true", help=argparse.SUPPRESS)
    demo.add_argument("--permutation", type=int, metavar="N_PERM", help=argparse.SUPPRESS)

    run = sub.add_parser(
        "run",
        help="run the whole study on a cohort store (resumable)",
        description="Motion QC, subject-level maps (written into the store, resumable: a re-run computes "
        "only what is missing or whose parameters changed), group statistics with GRF correction, cluster "
        "tables, figures and an HTML report. CONFIG is a study TOML file (see examples/study.toml); "
        "without it the reference study's defaults are used.",
    )
    run.add_argument("config", nargs="?", help="study configuration (TOML); default: the study's defaults")
    run.add_argument("--store", required=True, help="cohort store: a path or an fsspec URL")
    run.add_argument("--output", help="results folder (default: [output] directory next to the store)")
    add_cluster_options(run)

    rep = sub.add_parser(
        "report",
        help="rebuild the group statistics and the HTML report from stored maps",
        description="Re-run the group level (t-tests, GRF, cluster tables, figures) from the subject maps "
        "already in STORE and write report.html; no subject map is recomputed. Fails if 'brainarr run' "
        "has not completed the maps.",
    )
    rep.add_argument("store", help="cohort store processed by 'brainarr run'")
    rep.add_argument("--config", help="study configuration (TOML) for the group settings")
    rep.add_argument("--output", help="results folder (default: [output] directory next to the store)")

    sim = sub.add_parser(
        "simulate",
        help="simulate a cohort into a Zarr store",
        description="Simulate a cohort with planted group effects and stream it into STORE (resumable).",
    )
    sim.add_argument("store", help="output store: a path or an fsspec URL (memory://, s3://...)")
    add_simulation_options(sim, voxel_size=3.0, n_volumes=230, n=(31, 32))

    ing = sub.add_parser(
        "ingest",
        help="ingest NIfTI files, an fMRIPrep or a DPABI folder into a cohort store",
        description="Append subjects to STORE (created if absent). SOURCES is an fMRIPrep derivatives "
        "folder, a RESTplus/DPABI working folder, or NIfTI files (subject ids from 'sub-XX' in the "
        "names). Re-running skips subjects already in the store.",
    )
    ing.add_argument("sources", nargs="+", help="a derivatives folder, or NIfTI files")
    ing.add_argument("store", help="cohort store: a path or an fsspec URL")
    ing.add_argument("--phenotypes", help="participants.tsv or CSV with one row per subject")
    ing.add_argument(
        "--tr", type=float, help="repetition time in s, for headers that lack it (a header TR that differs is an error)"
    )
    ing.add_argument(
        "--raw",
        action="store_true",
        help="SOURCES is raw scanner data (a BIDS raw dataset or a DPABI folder with FunRaw/ and T1Raw/): "
        "slice timing, realignment, coregistration, normalisation and segmentation run per subject first",
    )
    ing.add_argument("--voxel-size", type=float, default=3.0, help="--raw: output grid voxel in mm (default 3)")
    ing.add_argument(
        "--slice-order",
        help="--raw: slice order for every subject (ascending, descending, interleaved, interleaved_siemens) "
        "instead of the sidecars' SliceTiming; 'none' skips slice-timing correction",
    )
    add_cluster_options(ing)

    rep_ = sub.add_parser(
        "repair",
        help="bring a store left inconsistent by a crash back to its last consistent subject",
        description="Cut every array of STORE back to its committed subjects, roll back subjects whose "
        "stored ids do not match the commit record (two writers at once, or a crash between writing and "
        "committing) and forget them in the derived maps' records. Ingest and run do the same "
        "automatically when they start; re-run the ingest afterwards to add the rolled-back subjects.",
    )
    rep_.add_argument("store", help="cohort store: a path or an fsspec URL")
    rep_.add_argument(
        "--unlock",
        action="store_true",
        help="first remove the writer lock, whoever holds it (only when no ingest or run is still running)",
    )

    exp = sub.add_parser(
        "export",
        help="write the subject and group maps as BIDS derivatives, DPABI or C-PAC outputs",
        description="Write the subject maps stored by 'brainarr run' in STORE and the group t maps of its results "
        "folder into DIR, named as BIDS derivatives (xcp_d conventions, JSON sidecars, dataset_description.json), "
        "DPABI/DPARSF results (Results/ALFF_FunImgARCW/ALFFMap_<subject>.nii...) or C-PAC outputs "
        "(pipeline_brainarr/sub-<label>/ses-1/func/...). DIR must be new or empty unless --overwrite.",
    )
    exp.add_argument("store", help="cohort store processed by 'brainarr run'")
    exp.add_argument("directory", metavar="DIR", help="output folder")
    exp.add_argument("--layout", choices=("bids", "dpabi", "cpac"), default="bids", help="naming (default bids)")
    exp.add_argument(
        "--format",
        choices=("nii.gz", "nii", "nii.zarr"),
        help="image format (default: the layout's own, .nii for dpabi, .nii.gz otherwise; nii.zarr: NIfTI-Zarr)",
    )
    exp.add_argument("--results", help="results folder of the run (default: the run's output folder next to the store)")
    exp.add_argument("--space", help="BIDS space label (default: from the ingested file names)")
    exp.add_argument("--task", help="BIDS task label (default: from the ingested file names, else rest)")
    exp.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty DIR, replacing files of the same names"
    )

    info = sub.add_parser("info", help="describe a cohort store", description="Print what a cohort store holds.")
    info.add_argument("store", help="cohort store: a path or an fsspec URL")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _simulate_into(store: str, *, progress: bool = True, **kwargs) -> None:
    from dask.diagnostics import ProgressBar

    from brainarr import cohort as _cohort
    from brainarr import io
    from brainarr.datasets import simulate_cohort

    start = time.perf_counter()
    sim = simulate_cohort(**kwargs)
    print(
        f"simulating {sim.sizes['subject']} subjects on a "
        f"{' x '.join(str(sim.sizes[d]) for d in 'xyz')} grid, "
        f"{sim.sizes['time']} volumes -> {store}"
    )
    with ProgressBar(minimum=1.0) if progress else contextlib.nullcontext():
        cohort = io.ingest(sim, store)
    print(f"done in {time.perf_counter() - start:.1f} s\n")
    print(_cohort.summary(cohort))
    planted = cohort.attrs.get("planted", [])
    if planted:
        print("\nplanted group effects (patients vs controls):")
        for p in planted:
            seed = f" with seed {p['seed']}" if p.get("seed") else ""
            print(f"  {p['metric']:<6} {p['region']:<22} {p['direction']:<9} effect {p['effect']:g}{seed}")


def _ingest_raw(args, **options):
    """``brainarr ingest --raw``: the spatial chain per subject on the chosen scheduler, then the store."""
    from brainarr import raw
    from brainarr.datasets import study_grid

    if len(args.sources) != 1 or not Path(args.sources[0]).is_dir():
        raise ValueError("ingest --raw takes one folder: a BIDS raw dataset or a DPABI folder with FunRaw/")
    order = getattr(args, "slice_order", None)
    slice_timing = "auto" if order is None else (None if order == "none" else order)
    client = _client(args)
    try:
        return raw.ingest(
            args.sources[0], args.store, phenotypes=args.phenotypes, grid=study_grid(args.voxel_size),
            slice_timing=slice_timing, progress=not args.quiet, **options,
        )  # fmt: skip
    finally:
        _close(client)


def _close(client) -> None:
    if client is not None:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()


def _raw_into(args, size: dict) -> None:
    """``demo --from-raw``: a simulated raw BIDS dataset next to the store, preprocessed into it."""
    import argparse as _argparse

    from brainarr.datasets import simulate_raw

    root = Path(str(args.store).rstrip("/")).with_suffix("").with_name(Path(str(args.store)).stem + "-raw")
    start = time.perf_counter()
    print(
        f"writing a simulated raw BIDS dataset ({size['n_patients']}+{size['n_controls']} subjects, native "
        f"64 x 64 x 43 oblique EPI, {size['n_volumes']} volumes, T1 at 2 mm) -> {root}"
    )
    truth = simulate_raw(
        root, n_patients=size["n_patients"], n_controls=size["n_controls"], n_volumes=size["n_volumes"],
        voxel_size=size["voxel_size"], effect_size=size["effect_size"], seed=args.seed, t1_voxel_size=2.0,
    )  # fmt: skip
    print(f"done in {time.perf_counter() - start:.1f} s; subjects above 3 mm / 3 degrees: {truth['excluded']}")
    print("preprocessing every subject (slice timing, realignment, coregistration, normalisation, segmentation)")
    start = time.perf_counter()
    ns = _argparse.Namespace(**{**vars(args), "sources": [str(root)], "phenotypes": None, "slice_order": None})
    ns.voxel_size = size["voxel_size"]
    _ingest_raw(ns, preprocess_options=RAW_DEMO_CHAIN)
    args.planted = truth["planted"]
    print(f"done in {time.perf_counter() - start:.1f} s\n")


def _client(args):
    """A distributed client from --scheduler or --workers, or None (the local threaded scheduler)."""
    if getattr(args, "scheduler", None):
        from distributed import Client

        return Client(args.scheduler)
    if getattr(args, "workers", None):
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit)
        return Client(cluster)
    return None


def _run_study(config, store: str, args, *, demo: bool = False):
    import logging

    from brainarr import pipeline

    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING)
    logging.getLogger("brainarr").setLevel(logging.INFO)
    client = _client(args)
    for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"]:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return pipeline.run(config, store, client=client, output=args.output, progress=not args.quiet)
    finally:
        _close(client)


def _print_tables(result) -> None:
    print(f"\nresults: {result.output}")
    print(f"report:  {result.report}")
    for name, table in result.tables.items():
        if name in ("table1", "motion", "permutation"):
            continue
        print(f"  {name:<22} {len(table)} cluster(s)")
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"timings: {timings}")


def _run(args) -> None:
    result = _run_study(args.config, args.store, args)
    _print_tables(result)


def _print_recovery(tables, planted) -> None:
    """Print which planted effects the cluster tables recover and which clusters are false."""
    from brainarr import pipeline

    effects, implied, false = pipeline.recovery(tables, planted, implied=True)
    print("\nplanted effects (patients vs controls):")
    for _, row in effects.iterrows():
        seed = f" (seed {row['seed']})" if row["seed"] else ""
        status = f"recovered in {row['variants']}" if row["recovered"] else "NOT recovered"
        print(f"  {row['metric']:<5} {row['region']:<20} {row['direction']}{seed}: {status}")
    print(f"recovered {int(effects['recovered'].sum()) if len(effects) else 0} of {len(effects)} planted effects")
    if len(implied):
        print(
            f"{len(implied)} further cluster(s) are consequences the simulator documents for the planted "
            "effects (e.g. a region coupled to the sensorimotor network also gains degree centrality there, "
            "and mean-normalised maps rise elsewhere when planted decreases lower the brain mean)"
        )
    if len(false):
        n_related = int((false["related"] != "").sum())
        print(
            f"\nfalse clusters (no planted effect of that metric and sign in that region): {len(false)}, "
            f"of which {n_related} lie in a region with a planted effect of the same sign on another "
            "metric or seed"
        )
        for _, row in false.iterrows():
            related = f"  [planted: {row['related']}]" if row["related"] else ""
            print(
                f"  {row['variant']:<22} {row['region']!s:<20} {row['size']:>5} voxels  "
                f"t = {row['peak_t']:.2f}{related}"
            )
    else:
        print("no false clusters")


def demo_config(*, figures: bool = True, n_perm: int = 0, stat: str = "cluster_mass", seed: int = 0):
    """The study configuration for the simulated cohort, optionally with permutation inference.

    The reference study's defaults, except that no volume is discarded (the simulated volumes
    are those left after discarding the first ones). Permutation inference, when asked for,
    uses the cluster mass by default: at the study's thresholds it finds the small, strong
    Thalamus_L cluster of the simulated cohort in 12 of 16 seeds, the maximum cluster size in
    6 (docs/scale.md, "False clusters on the simulated study").
    """
    import dataclasses

    from brainarr.config import PermutationConfig, StudyConfig

    config = StudyConfig()
    config = dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess, discard=0))
    if not figures:
        config = dataclasses.replace(config, output=dataclasses.replace(config.output, figures=False))
    if n_perm:
        permutation = PermutationConfig(enabled=True, n_perm=n_perm, stat=stat, seed=seed)
        config = dataclasses.replace(config, group=dataclasses.replace(config.group, permutation=permutation))
    return config


def _demo(args) -> None:

    from brainarr.cohort import open_cohort

    start = time.perf_counter()
    size = dict(RAW_DEMO_SIZE if args.from_raw else FULL_SIZE if args.full else DEMO_SIZE)
    size.setdefault("effect_size", 1.0)
    for key in ("n_patients", "n_controls", "voxel_size", "n_volumes", "effect_size"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    extra = {"shape": tuple(args.shape)} if args.shape else {}
    if args.from_raw:
        _raw_into(args, size)
    else:
        _simulate_into(args.store, seed=args.seed, progress=not args.quiet, **size, **extra)
    config = demo_config(figures=not args.no_figures, n_perm=args.permutation or 0, seed=args.seed)
    print("\nrunning the study")
    result = _run_study(config, args.store, args, demo=True)
    _print_tables(result)
    planted = args.planted if args.from_raw else open_cohort(args.store).attrs.get("planted", [])
    _print_recovery(result.tables, planted)
    if result.permutation_tables:
        print(f"\nwith permutation inference ({args.permutation} permutations, cluster mass, same thresholds):")
        _print_recovery(result.permutation_tables, planted)
    print(f"\ndemo done in {time.perf_counter() - start:.1f} s; open {result.report}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from brainarr.exceptions import BrainarrError

    try:
        if args.command == "demo":
            _demo(args)
        elif args.command == "run":
            _run(args)
        elif args.command == "report":
            from brainarr import pipeline

            result = pipeline.report(args.store, config=args.config, output=args.output)
            print(f"report: {result.report}")
        elif args.command == "simulate":
            _simulate_into(
                args.store,
                n_patients=args.n_patients,
                n_controls=args.n_controls,
                voxel_size=args.voxel_size,
                n_volumes=args.n_volumes,
                tr=args.tr,
                effect_size=args.effect_size,
                seed=args.seed,
            )
        elif args.command == "ingest":
            from brainarr import cohort as _cohort
            from brainarr import io

            if args.raw:
                cohort = _ingest_raw(args)
            else:
                sources = args.sources[0] if len(args.sources) == 1 and Path(args.sources[0]).is_dir() else args.sources
                cohort = io.ingest(sources, args.store, phenotypes=args.phenotypes, tr=args.tr, progress=True)
            print(_cohort.summary(cohort))
        elif args.command == "repair":
            from brainarr import cohort as _cohort

            done = _cohort.repair(args.store, unlock=args.unlock)
            if done["unlocked"]:
                holder = done["unlocked"]
                who = f"brainarr {holder.get('command')} (pid {holder.get('pid')} on {holder.get('host')})"
                print(f"removed the lock of {who}")
            if done["dropped"]:
                print(f"rolled back {len(done['dropped'])} subject(s): {', '.join(done['dropped'])}; ingest them again")
            for name, length in done["trimmed"].items():
                print(f"cut {name} from {length} to {len(done['subjects'])} subject rows")
            print(f"{args.store}: {len(done['subjects'])} committed subject(s), consistent")
        elif args.command == "export":
            from brainarr import export as _export

            written = _export.export(
                args.store,
                args.directory,
                layout=args.layout,
                format=args.format,
                results=args.results,
                space=args.space,
                task=args.task,
                overwrite=args.overwrite,
            )
            images = [p for p in written if p.name.endswith((".nii", ".nii.gz", ".nii.zarr"))]
            print(f"exported {len(images)} images ({len(written)} files, {args.layout} layout) to {args.directory}")
        elif args.command == "info":
            from brainarr import cohort as _cohort

            cohort = _cohort.open_cohort(args.store)
            if args.json:
                info = {
                    "subjects": [str(s) for s in cohort["subject"].values] if "subject" in cohort.dims else [],
                    "sizes": {str(k): int(v) for k, v in cohort.sizes.items()},
                    "variables": sorted(map(str, cohort.data_vars)),
                    "tr": cohort.attrs.get("tr"),
                    "affine": cohort.attrs.get("affine"),
                }
                print(json.dumps(info, indent=2))
            else:
                print(_cohort.summary(cohort))
    except (BrainarrError, FileNotFoundError, OSError, ValueError, KeyError) as err:
        print(f"brainarr {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
