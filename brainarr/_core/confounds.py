"""Names and units of confound regressors shared by the readers and the confound models."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from brainarr._core.dims import TIME

__all__ = ["DEFAULT_TSV_COLUMNS", "MOTION_PARAMS", "MOTION_UNITS", "confound_units", "time_coord"]

#: The six rigid-body parameters, in SPM/fMRIPrep order (translations in mm, rotations in rad).
MOTION_PARAMS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
MOTION_UNITS = ("mm", "mm", "mm", "rad", "rad", "rad")
DEFAULT_TSV_COLUMNS = (*MOTION_PARAMS, "white_matter", "csf")


def time_coord(n: int, tr: float | None) -> xr.Variable:
    """The ``time`` coordinate of ``n`` volumes: seconds if ``tr`` is given, else volume indices."""
    if tr is None:
        return xr.Variable(TIME, np.arange(n), {"units": "1", "long_name": "volume index"})
    return xr.Variable(TIME, np.arange(n) * float(tr), {"units": "s", "long_name": "time"})


def confound_units(columns: Sequence[str]) -> list[str]:
    """Units of confound columns (mm and rad for motion and its expansions, else "arbitrary")."""
    units = []
    for c in columns:
        base = c
        for suffix in ("_derivative1", "_power2", "_lag1"):
            base = base.replace(suffix, "")
        if base in MOTION_PARAMS:
            unit = MOTION_UNITS[MOTION_PARAMS.index(base)]
            units.append(unit + "^2" if "power2" in c else unit)
        elif c == "framewise_displacement":
            units.append("mm")
        else:
            units.append("arbitrary")
    return units
