"""Ingest throughput: full-size NIfTI subjects (61 x 73 x 61 x 230 float32) into a Zarr store.

Run: ``python benchmarks/ingest.py [--subjects 3] [--gzip]``. Prints MB/s and the peak resident
memory of the process, which must stay far below one subject's size (the data are streamed
chunk by chunk, never held whole).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

import brainarr as ba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--gzip", action="store_true", help="write .nii.gz inputs")
    args = parser.parse_args()

    grid = ba.datasets.study_grid()
    shape = (*grid.shape, 230)
    workdir = Path(tempfile.mkdtemp(prefix="brainarr-bench-"))
    suffix = ".nii.gz" if args.gzip else ".nii"
    rng = np.random.default_rng(0)
    files = {}
    volume = rng.standard_normal(shape, dtype=np.float32)
    for i in range(args.subjects):
        img = nib.Nifti1Image(volume + i, np.array(grid.attrs["affine"]))
        img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
        img.header.set_xyzt_units("mm", "sec")
        files[f"sub-{i + 1:02d}"] = workdir / f"sub-{i + 1:02d}_bold{suffix}"
        nib.save(img, files[f"sub-{i + 1:02d}"])
    del volume, img
    subject_mb = np.prod(shape) * 4 / 1e6
    # ingest in a fresh process so that its peak RSS is the ingest's own
    # (VmHWM, unlike ru_maxrss, is not inherited from the forking parent)
    hwm = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"
    code = (
        "import json, sys, time; import brainarr as ba;"
        "files = json.loads(sys.argv[1]); t = time.perf_counter();"
        "c = ba.io.ingest(files, sys.argv[2]);"
        f"print(time.perf_counter() - t, {hwm}, c.sizes['subject'])"
    )
    baseline = f"import brainarr; print({hwm})"
    run = subprocess.run([sys.executable, "-c", baseline], capture_output=True, text=True, check=True)
    import_rss = float(run.stdout)
    paths = json.dumps({k: str(v) for k, v in files.items()})
    out = subprocess.run(
        [sys.executable, "-c", code, paths, str(workdir / "study.zarr")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    elapsed, peak, n = float(out[0]), float(out[1]), int(out[2])
    total_mb = subject_mb * args.subjects
    print(f"subjects: {n} x {subject_mb:.0f} MB ({suffix} inputs)")
    print(f"ingest: {elapsed:.1f} s, {total_mb / elapsed:.0f} MB/s")
    print(f"peak RSS of the ingest process: {peak:.0f} MB (after imports alone: {import_rss:.0f} MB)")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
