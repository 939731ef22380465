"""Cut the first volumes of the real rapidtide run for the realignment tests.

The source is ``sub-RAPIDTIDETEST.nii.gz`` (64 x 64 x 29 voxels, 3.5 x 3.5 x 3.99 mm, 260
volumes, TR 1.5 s, int16, oblique affine), the example data of the rapidtide 2.0.9 wheel on
PyPI (``rapidtide/data/examples/src/``, Apache License 2.0). The copy keeps the whole field
of view and the first :data:`VOLUMES` volumes, the raw int16 values, the header (qform,
sform, TR, units) unchanged; it is gzipped with a zero time stamp so that running the
script again gives the same bytes.

Usage::

    python scripts/crop_realign_test_data.py ../shared/data/real/rapidtide-rest/sub-RAPIDTIDETEST.nii.gz

writes ``tests/data/rapidtide/<name>_first4.nii.gz`` (or into ``--out``) and prints its SHA-256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

#: Number of leading volumes kept.
VOLUMES = 4

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "rapidtide"


def first_volumes(img: nib.Nifti1Image, count: int = VOLUMES) -> nib.Nifti1Image:
    """The first ``count`` volumes of ``img`` with its header (raw values, same data type)."""
    data = np.asanyarray(img.dataobj)[..., :count]
    header = img.header.copy()
    out = nib.Nifti1Image(data.astype(img.get_data_dtype(), copy=False), None, header=header)
    qform, qcode = img.get_qform(coded=True)
    sform, scode = img.get_sform(coded=True)
    if qform is not None:
        out.set_qform(qform, code=int(qcode))
    if sform is not None:
        out.set_sform(sform, code=int(scode))
    out.set_data_dtype(img.get_data_dtype())
    out.header.set_xyzt_units(*img.header.get_xyzt_units())
    return out


def main(argv: list[str] | None = None) -> None:
    """Write the copy of the run given on the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bold", type=Path, help="path of sub-RAPIDTIDETEST.nii.gz")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    name = args.bold.name.removesuffix(".gz").removesuffix(".nii")
    args.out.mkdir(parents=True, exist_ok=True)
    out = first_volumes(nib.load(args.bold))
    raw = gzip.compress(out.to_bytes(), compresslevel=9, mtime=0)
    path = args.out / f"{name}_first{VOLUMES}.nii.gz"
    path.write_bytes(raw)
    print(f"{path}: {out.shape} {out.get_data_dtype()}, {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}")


if __name__ == "__main__":
    main()
