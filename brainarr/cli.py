"""The ``brainarr`` command line.

``brainarr demo`` simulates the embedded cohort into a Zarr store and describes it;
``brainarr simulate``, ``brainarr ingest`` and ``brainarr info`` are the building blocks.
Run ``brainarr COMMAND --help`` for the options of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

_DESCRIPTION = """\
brainarr: lazy, labelled, scalable resting-state fMRI.

Subjects' 4-D BOLD volumes become one chunked Zarr store (a "cohort"); metrics and group
statistics then run as Dask graphs on a laptop, out of core, or on a Dask cluster.

Typical use:
  brainarr demo                                  simulate a cohort and summarise it
  brainarr ingest derivatives/ study.zarr        fMRIPrep or DPABI folder -> cohort store
  brainarr info study.zarr                       what a store holds
"""


def _build_parser() -> argparse.ArgumentParser:
    from brainarr import __version__

    parser = argparse.ArgumentParser(
        prog="brainarr", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"brainarr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
        p.add_argument(
            "--n-volumes", type=int, default=n_volumes, help=f"volumes per subject (default {n_volumes})"
        )
        p.add_argument("--tr", type=float, default=2.0, help="repetition time in s (default 2)")
        p.add_argument(
            "--effect-size", type=float, default=1.0, help="scale of the planted group effects (default 1)"
        )
        p.add_argument(
            "--seed", type=int, default=0, help="random seed; the same seed gives the same data (default 0)"
        )

    demo = sub.add_parser(
        "demo",
        help="simulate the embedded cohort into a store and summarise it",
        description="Simulate the embedded default cohort (patients vs controls with planted effects in "
        "the regions the reference study reports), stream it into a Zarr store subject by subject and "
        "print a summary. By default a reduced size that runs in about a minute; --full gives the "
        "study's size (63 subjects, 3 mm, 230 volumes: about 15.7 GB).",
    )
    demo.add_argument(
        "--store",
        default="brainarr-demo.zarr",
        help="where to write the cohort (default ./brainarr-demo.zarr)",
    )
    demo.add_argument("--full", action="store_true", help="the study's full size instead of the reduced demo")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

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
    ing.add_argument("--tr", type=float, help="repetition time in s, for headers that lack it")

    info = sub.add_parser(
        "info", help="describe a cohort store", description="Print what a cohort store holds."
    )
    info.add_argument("store", help="cohort store: a path or an fsspec URL")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _simulate_into(store: str, **kwargs) -> None:
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
    with ProgressBar(minimum=1.0):
        cohort = io.ingest(sim, store)
    print(f"done in {time.perf_counter() - start:.1f} s\n")
    print(_cohort.summary(cohort))
    planted = cohort.attrs.get("planted", [])
    if planted:
        print("\nplanted group effects (patients vs controls):")
        for p in planted:
            seed = f" with seed {p['seed']}" if p.get("seed") else ""
            print(f"  {p['metric']:<6} {p['region']:<22} {p['direction']:<9} effect {p['effect']:g}{seed}")


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
            if args.full:
                options = {"n_patients": 31, "n_controls": 32, "voxel_size": 3.0, "n_volumes": 230}
            else:
                options = {"n_patients": 31, "n_controls": 32, "voxel_size": 6.0, "n_volumes": 230}
            _simulate_into(args.store, seed=args.seed, **options)
            print(f"\nopen it with:  import brainarr as ba; cohort = ba.open_cohort({args.store!r})")
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

            sources = (
                args.sources[0] if len(args.sources) == 1 and Path(args.sources[0]).is_dir() else args.sources
            )
            cohort = io.ingest(sources, args.store, phenotypes=args.phenotypes, tr=args.tr, progress=True)
            print(_cohort.summary(cohort))
        elif args.command == "info":
            from brainarr import cohort as _cohort

            cohort = _cohort.open_cohort(args.store)
            if args.json:
                info = {
                    "subjects": [str(s) for s in cohort["subject"].values]
                    if "subject" in cohort.dims
                    else [],
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
