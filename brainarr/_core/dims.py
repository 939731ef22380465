"""Dimension names used throughout brainarr.

Code selects dimensions by these names, never by axis position.
"""

from __future__ import annotations

__all__ = ["CONFOUND", "SEED", "SPATIAL", "SUBJECT", "TIME", "X", "Y", "Z"]

X = "x"
Y = "y"
Z = "z"
TIME = "time"
SUBJECT = "subject"
SEED = "seed"
CONFOUND = "confound"

#: The three spatial dims, in NIfTI voxel order.
SPATIAL = (X, Y, Z)
