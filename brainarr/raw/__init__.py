"""Raw scanner data: find it (BIDS raw, DPABI ``FunRaw``/``T1Raw``, DICOM) and ingest it.

Raw data are the images as the scanner wrote them: a native-space 4-D EPI series and a
T1-weighted image per subject, before slice-timing correction, realignment, coregistration
and normalisation. :func:`ingest` runs the spatial chain (:func:`brainarr.spatial.preprocess`)
for each subject as one task on the active Dask scheduler and appends the normalised BOLD, the
realignment parameters and the subject's tissue maps to a cohort store, with the commit and
resume guarantees of :func:`brainarr.io.ingest`.

- Discovery: :func:`find_bids_raw`, :func:`find_dpabi_raw`, :func:`dicom_to_nifti`,
  :func:`slice_timing_from`.
- Into a cohort store: :func:`ingest`.
"""

from __future__ import annotations

from brainarr.raw._discover import (
    RAW_COLUMNS,
    dicom_to_nifti,
    find_bids_raw,
    find_dpabi_raw,
    slice_timing_from,
)
from brainarr.raw._ingest import ingest

__all__ = ["RAW_COLUMNS", "dicom_to_nifti", "find_bids_raw", "find_dpabi_raw", "ingest", "slice_timing_from"]
