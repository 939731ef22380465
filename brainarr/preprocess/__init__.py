"""Preprocessing of BOLD series and maps: lazy, labelled, RESTplus/DPABI-compatible.

Volumes are :class:`xarray.DataArray` objects with dims ``(..., x, y, z, time)`` (an extra
leading ``subject`` dim is allowed everywhere); every function builds a dask graph and
computes nothing until asked, and records itself in ``attrs["history"]``.

- Volumes: :func:`discard`, :func:`detrend`, :func:`slice_timing`.
- Confounds, dims ``(..., time, confound)`` with named regressors: :func:`friston24`,
  :func:`tissue_signals` (readers of fMRIPrep TSVs and SPM ``rp_*.txt`` files are in
  :mod:`brainarr.io`).
- Nuisance removal: :func:`regress`, :func:`bandpass` (``"ideal"`` RESTplus/DPABI FFT
  filter or zero-phase ``"butterworth"`` as nilearn), :func:`clean` (the chain, in RESTplus
  or nilearn order).
- Space: :func:`smooth` (Gaussian FWHM in mm, any chunking).
- Head motion: :func:`framewise_displacement`, :func:`motion_qc`.

Temporal operations need each voxel's whole series in one chunk (``bold.chunk(time=-1)``)
and match confounds to volumes by position. Every temporal step is linear, so each call
applies one ``T x T`` matrix per subject to a chunk of voxels as a single matrix product.
"""

from __future__ import annotations

from brainarr._core.confounds import MOTION_PARAMS
from brainarr.preprocess._confounds import (
    friston24,
    tissue_signals,
)
from brainarr.preprocess._motion import framewise_displacement, motion_qc
from brainarr.preprocess._signal import bandpass, clean, detrend, discard, regress, slice_timing
from brainarr.preprocess._smooth import smooth

__all__ = [
    "MOTION_PARAMS",
    "bandpass",
    "clean",
    "detrend",
    "discard",
    "framewise_displacement",
    "friston24",
    "motion_qc",
    "regress",
    "slice_timing",
    "smooth",
    "tissue_signals",
]
