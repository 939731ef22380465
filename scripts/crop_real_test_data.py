"""Crop the real rapidtide resting-state run to the small copy kept in ``tests/data/rapidtide/``.

The source is ``sub-RAPIDTIDETEST.nii.gz`` (64 x 64 x 29 voxels, 260 volumes, int16, oblique
affine) and its ``sub-RAPIDTIDETEST_brainmask.nii.gz``, the example data of the rapidtide
2.0.9 wheel on PyPI (``rapidtide/data/examples/src/``, Apache License 2.0). The crop keeps
the 16 x 16 x 8 voxel box :data:`BOX` around the centre of the brain mask and all 260
volumes, the data type, and the header (TR 1.5 s, units mm and s, qform and sform codes);
both the qform and the sform are the original ones composed with the box's voxel offset, so
every kept voxel keeps its world coordinates (the affine stays oblique). The files are
gzipped with a zero time stamp, so running the script again gives the same bytes.

Usage::

    python scripts/crop_real_test_data.py ../shared/data/real/rapidtide-rest/sub-RAPIDTIDETEST.nii.gz

The mask is read from ``<name>_brainmask.nii.gz`` next to the run (or ``--mask``); the crops
are written to ``tests/data/rapidtide/`` (or ``--out``) as ``<name>_crop.nii.gz`` and
``<name>_crop_brainmask.nii.gz``, and their SHA-256 checksums are printed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

#: Voxel box kept, (x, y, z) start and stop: 16 x 16 x 8 voxels centred on the brain mask's
#: centroid (voxel 31.3, 28.0, 12.6 of the 64 x 64 x 29 grid).
BOX = ((23, 39), (20, 36), (9, 17))

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "rapidtide"


def offset_affine(affine: np.ndarray, start: tuple[int, int, int]) -> np.ndarray:
    """``affine`` composed with a shift of the voxel indices by ``start`` (float64)."""
    shift = np.eye(4)
    shift[:3, 3] = start
    return np.asarray(affine, dtype=np.float64) @ shift


def crop(img: nib.Nifti1Image, box=BOX) -> nib.Nifti1Image:
    """The voxels of ``box`` (all volumes), with the header and the shifted qform and sform."""
    start = tuple(int(a) for a, _ in box)
    index = tuple(slice(a, b) for a, b in box)
    data = np.asanyarray(img.dataobj)[index]  # raw values: the file has no scaling
    header = img.header.copy()
    qform, qcode = img.get_qform(coded=True)
    sform, scode = img.get_sform(coded=True)
    out = nib.Nifti1Image(data.astype(img.get_data_dtype(), copy=False), None, header=header)
    if qform is not None:
        out.set_qform(offset_affine(qform, start), code=int(qcode))
    if sform is not None:
        out.set_sform(offset_affine(sform, start), code=int(scode))
    out.set_data_dtype(img.get_data_dtype())
    out.header.set_xyzt_units(*img.header.get_xyzt_units())
    out.header["descrip"] = img.header["descrip"]
    return out


def write_gz(img: nib.Nifti1Image, path: Path) -> str:
    """Write ``img`` gzipped with a zero time stamp; return its SHA-256."""
    raw = gzip.compress(img.to_bytes(), compresslevel=9, mtime=0)
    path.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def main(argv: list[str] | None = None) -> None:
    """Crop the run and its mask given on the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bold", type=Path, help="path of sub-RAPIDTIDETEST.nii.gz")
    parser.add_argument("--mask", type=Path, help="brain mask (default: <name>_brainmask.nii.gz beside it)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    name = args.bold.name.removesuffix(".gz").removesuffix(".nii")
    mask_path = args.mask or args.bold.with_name(f"{name}_brainmask.nii.gz")
    args.out.mkdir(parents=True, exist_ok=True)
    for src, dst in ((args.bold, f"{name}_crop.nii.gz"), (mask_path, f"{name}_crop_brainmask.nii.gz")):
        out = crop(nib.load(src))
        digest = write_gz(out, args.out / dst)
        print(f"{args.out / dst}: {out.shape} {out.get_data_dtype()}, sha256 {digest}")


if __name__ == "__main__":
    main()
