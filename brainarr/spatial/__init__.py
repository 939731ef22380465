"""From the scanner to the study grid: realignment, coregistration, segmentation, normalisation.

Native-space images are :class:`xarray.DataArray` objects as :func:`brainarr.io.load_nifti`
returns them (oblique affines included, the exact voxel-to-world matrix in ``attrs["affine"]``).
Every transform is kept as numbers (rigid parameters in SPM12's ``rp_*.txt`` convention, 4 x 4
matrices, deformation fields in world millimetres), so each volume is resampled once, through the
whole chain, onto the study grid.

- Head motion: :func:`realign` (SPM12's algorithm and parameters), :func:`reslice`.
- Any image through a chain of transforms: :func:`resample`.
- Between images: :func:`coregister` (rigid, normalised mutual information).
- Anatomy: :func:`segment` (GM/WM/CSF), :func:`normalise` (affine + nonlinear to MNI152) and
  :func:`deformation_at` (where MNI points fall in the T1).
- The whole chain for one subject: :func:`preprocess`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["coregister", "deformation_at", "normalise", "preprocess", "realign", "resample", "reslice", "segment"]

_HOMES = {
    "realign": "brainarr.spatial._realign",
    "reslice": "brainarr.spatial._realign",
    "resample": "brainarr.spatial._resample",
    "coregister": "brainarr.spatial._coregister",
    "normalise": "brainarr.spatial._normalise",
    "deformation_at": "brainarr.spatial._normalise",
    "segment": "brainarr.spatial._segment",
    "preprocess": "brainarr.spatial._preprocess",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'brainarr.spatial' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
