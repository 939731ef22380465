"""Design matrices for group models, built from the phenotype coordinates on ``subject``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from brainarr._core.dims import SPATIAL, SUBJECT
from brainarr._core.validation import check_dims, check_same_grid, describe
from brainarr.exceptions import DimensionError, MissingMetadataError

__all__ = ["Design", "check_maps", "group_design", "valid_voxels"]


@dataclass(frozen=True)
class Design:
    """A design matrix with named columns and the contrast of interest.

    Attributes
    ----------
    matrix : numpy.ndarray (n_subjects, n_regressors)
    regressors : list of str
    contrast : numpy.ndarray (n_regressors,)
    label : str
        Human-readable contrast, e.g. ``"patient - control"``.
    """

    matrix: np.ndarray
    regressors: list[str]
    contrast: np.ndarray
    label: str

    @property
    def dof(self) -> int:
        """Residual degrees of freedom ``n - rank(X)``."""
        return int(self.matrix.shape[0] - np.linalg.matrix_rank(self.matrix))


def check_maps(maps: xr.DataArray, *, func: str) -> None:
    """Check that ``maps`` is a ``(subject, x, y, z)`` DataArray."""
    check_dims(maps, (SUBJECT, *SPATIAL), func=func, allowed_extra=False)


def _coord(maps: xr.DataArray, name: str, *, func: str) -> np.ndarray:
    if name not in maps.coords or maps[name].dims != (SUBJECT,):
        available = [c for c in maps.coords if maps[c].dims == (SUBJECT,)]
        raise MissingMetadataError(
            f"{func}: {describe(maps)} has no subject coordinate {name!r}; subject coordinates available: {available}"
        )
    # Phenotype coordinates are tiny metadata; a dask-backed one (e.g. after ``.chunk()`` of a
    # whole DataArray) is loaded here, the only compute when building a model.
    return np.asarray(maps[name].values)


def _is_categorical(values: np.ndarray) -> bool:
    return values.dtype.kind in "OUSb"


def group_design(
    maps: xr.DataArray,
    *,
    by: str,
    covariates: Sequence[str],
    groups: Sequence[str] | None,
    center: bool,
    func: str,
) -> Design:
    """Two-group design in DPABI's column order: group, intercept, covariates.

    The group regressor is 1 for the first group and 0 for the second (dummy coding, so its
    beta is the adjusted group difference); a categorical covariate with levels ``l0 < l1 <
    ...`` (sorted) gets one 0/1 column per level after the first (``"sex[M]"``); continuous
    covariates are used as given unless ``center``.
    """
    labels = _coord(maps, by, func=func).astype(str)
    levels = sorted(set(labels.tolist()))
    if groups is None:
        if len(levels) != 2:
            raise ValueError(
                f"{func}: subject coordinate {by!r} has levels {levels}; a two-sample test needs "
                "exactly two (pass groups=(first, second) to choose them)"
            )
        groups = tuple(levels)
    groups = tuple(str(g) for g in groups)
    if len(groups) != 2 or groups[0] == groups[1]:
        raise ValueError(f"{func}: groups must name two different levels of {by!r}, got {groups}")
    for g in groups:
        if g not in levels:
            raise ValueError(f"{func}: group {g!r} is not a level of {by!r}; levels are {levels}")
    if not np.all(np.isin(labels, groups)):
        other = sorted(set(labels.tolist()) - set(groups))
        raise ValueError(
            f"{func}: subjects with {by!r} in {other} belong to neither group {groups}; "
            "select the subjects of the two groups first (maps.sel(subject=...))"
        )
    columns = [(labels == groups[0]).astype(float), np.ones(labels.size)]
    names = [f"{by}[{groups[0]}]", "intercept"]
    for cov in covariates:
        values = _coord(maps, cov, func=func)
        if _is_categorical(values):
            values = values.astype(str)
            cov_levels = sorted(set(values.tolist()))
            for level in cov_levels[1:]:
                columns.append((values == level).astype(float))
                names.append(f"{cov}[{level}]")
        else:
            values = values.astype(float)
            if not np.all(np.isfinite(values)):
                bad = np.asarray(maps[SUBJECT].values)[~np.isfinite(values)].tolist()
                raise ValueError(f"{func}: covariate {cov!r} is missing (NaN) for subjects {bad}")
            columns.append(values - values.mean() if center else values)
            names.append(cov)
    matrix = np.column_stack(columns)
    contrast = np.zeros(matrix.shape[1])
    contrast[0] = 1.0
    design = Design(matrix, names, contrast, f"{groups[0]} - {groups[1]}")
    check_design(design, func=func)
    return design


def check_design(design: Design, *, func: str) -> None:
    """Raise if the design is rank deficient or leaves no residual degrees of freedom."""
    n, p = design.matrix.shape
    rank = np.linalg.matrix_rank(design.matrix)
    if rank < p:
        raise ValueError(
            f"{func}: the design matrix (columns {design.regressors}) is rank deficient "
            f"(rank {rank} < {p} columns); drop a collinear covariate"
        )
    if n - p < 1:
        raise ValueError(f"{func}: {n} subjects and {p} regressors leave no residual degrees of freedom")


def valid_voxels(maps: xr.DataArray, mask: xr.DataArray | None, *, func: str) -> xr.DataArray:
    """Voxels analysed (lazy bool (x, y, z)): in ``mask`` and non-zero for every subject.

    Non-finite values count as missing too (they would otherwise poison every statistic).
    """
    valid = ((maps != 0) & np.isfinite(maps)).all(SUBJECT)
    if mask is not None:
        if not isinstance(mask, xr.DataArray) or set(mask.dims) != set(SPATIAL):
            raise DimensionError(f"{func}: mask must be a bool DataArray with dims {SPATIAL}")
        if mask.dtype != bool:
            raise TypeError(f"{func}: mask {describe(mask)} must be bool, got dtype {mask.dtype}")
        check_same_grid(maps, mask, names=("maps", "mask"), func=func)
        valid = valid & mask.transpose(*SPATIAL).variable
    return valid.transpose(*SPATIAL)
