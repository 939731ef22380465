"""Small helpers that lean on other libraries: voxel sizes, BIDS file names, the HTML report.

Run: ``python benchmarks/helpers.py``. Prints, best of several runs:

- voxel sizes of 10,000 affines: :func:`brainarr._core.grid.voxel_size` (which calls
  :func:`nibabel.affines.voxel_sizes`) against the column norms written out;
- the file names of an fMRIPrep folder (20,000 names): :func:`brainarr.io.find_fmriprep`'s
  pattern against :func:`nilearn.interfaces.bids.parse_bids_filename` (nilearn >= 0.13), and
  the names on which the two disagree;
- :meth:`brainarr.report.Report.to_html` of a study-like report (12 tables of 40 rows, 12
  PNG figures of about 100 kB).
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pandas as pd


def best(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def voxel_sizes() -> None:
    from brainarr._core.grid import voxel_size

    rng = np.random.default_rng(0)
    affines = [np.vstack([rng.standard_normal((3, 4)), [0, 0, 0, 1]]) for _ in range(10_000)]
    ours = best(lambda: [voxel_size(a) for a in affines])
    by_hand = best(lambda: [np.sqrt((a[:3, :3] ** 2).sum(axis=0)) for a in affines])
    same = all(np.array_equal(voxel_size(a), np.sqrt((a[:3, :3] ** 2).sum(axis=0))) for a in affines)
    print(f"voxel sizes of 10,000 affines: voxel_size {ours * 1e3:.1f} ms, by hand {by_hand * 1e3:.1f} ms")
    print(f"  the same numbers: {same}")


def bids_names() -> None:
    from nilearn.interfaces.bids import parse_bids_filename

    pattern = re.compile(
        r"^(sub-[^_]+)(?:_(ses-[^_]+))?_task-([^_]+)(?:_.*)?_space-([^_]+)(?:_.*)?_desc-preproc_bold\.nii(\.gz)?$"
    )
    names = [
        f"sub-{i:04d}_ses-{s}_task-rest_run-{r}_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
        for i in range(2500)
        for s in ("A", "B")
        for r in (1, 2, 3, 4)
    ]
    ours = best(lambda: [pattern.match(n) for n in names])
    theirs = best(lambda: [parse_bids_filename(n) for n in names])
    print(f"{len(names):,} fMRIPrep names: our pattern {ours * 1e3:.1f} ms, nilearn {theirs * 1e3:.1f} ms")
    tricky = [
        "sub-01_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",  # both accept
        "sub-01_acq-x_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",  # entity order
        "sub-01_extra_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",  # a part without '-'
        "sub-01_task-rest-x_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",  # two '-' in a part
        "sub-01_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",  # no task
    ]
    for name in tricky:
        parsed = parse_bids_filename(name)
        print(f"  {name}\n    ours: {'match' if pattern.match(name) else 'no match'}; nilearn: {parsed['entities']}")


def report_rendering() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from brainarr.report import Report

    rng = np.random.default_rng(0)
    fig = Figure(figsize=(8, 3))
    fig.add_subplot().imshow(rng.standard_normal((200, 600)))
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=60)
    rep = Report("brainarr study report", subtitle="benchmark")
    rep.add_parameters({"grf": {"voxel_p": 0.01, "cluster_p": 0.05}, "fwhm": [6.0] * 3})
    for i in range(12):
        table = pd.DataFrame(
            {
                "cluster": np.arange(40),
                "region": [f"Region_{j} <L>" for j in range(40)],
                "size": rng.integers(1, 500, 40),
                "x": rng.normal(0, 40, 40).round(),
                "peak_t": rng.normal(0, 4, 40),
                "p": rng.random(40),
            }
        )
        rep.add_table(f"Table {i}", table, caption="clusters", signed=["peak_t"])
        rep.add_text(f"Figure {i} shows `something`.", name=f"Notes {i}")
    path = "/tmp/_brainarr_report_benchmark.png"
    with open(path, "wb") as f:
        f.write(png.getvalue())
    for i in range(12):
        rep.add_figure(f"Figure {i}", path, caption="axial slices")
    size = len(rep.to_html())
    print(f"report of 12 tables, 12 figures ({len(png.getvalue()) / 1e3:.0f} kB each), {size / 1e6:.1f} MB: ", end="")
    print(f"to_html {best(rep.to_html) * 1e3:.1f} ms")


if __name__ == "__main__":
    voxel_sizes()
    bids_names()
    report_rendering()
