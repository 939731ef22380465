"""Design matrices for group models, built from the phenotype coordinates on ``subject``.

Every check of a group design lives here, so :func:`~brainarr.stats.ttest2`,
:func:`~brainarr.stats.permutation` and :func:`~brainarr.stats.demographics` refuse the same
inputs with the same messages: group labels (:func:`check_groups`), covariate values
(missing, mistyped, constant), the rank and degrees of freedom of the design
(:func:`group_design`, :func:`check_design`) and unusable subject maps
(:func:`check_subject_maps`).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from brainarr._core.dims import SPATIAL, SUBJECT
from brainarr._core.validation import MISSING_MARKERS, check_dims, check_same_grid, describe
from brainarr.exceptions import DataValidationError, DimensionError, MissingMetadataError

__all__ = ["Design", "check_design", "check_groups", "check_maps", "check_subject_maps", "group_design", "valid_voxels"]

_SHOWN = 8  # subjects named in a message before "... and k more"


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


def _subjects(maps: xr.DataArray) -> np.ndarray:
    return np.asarray(maps[SUBJECT].values).astype(str)


def _named(subjects: np.ndarray, values: np.ndarray | None = None) -> str:
    """``sub-01 ('4o'), sub-07 ('n/a')``: the first few subjects (with their values)."""
    items = [f"{s} ({v!r})" for s, v in zip(subjects, values, strict=True)] if values is not None else list(subjects)
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(str(i) for i in items[:_SHOWN]) + more


def _counts(labels: np.ndarray) -> dict[str, int]:
    return dict(sorted(Counter(labels.tolist()).items()))


# ----------------------------------------------------------------------------- groups


def _close_label(group: str, present: Sequence[str]) -> str:
    """A hint naming the present label closest to ``group`` (case and spaces first)."""
    folded = [p for p in present if p.strip().casefold() == group.strip().casefold()]
    if folded:
        return f"; did you mean {folded[0]!r}? (labels are compared exactly, case included)"
    close = difflib.get_close_matches(group, list(present), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_padding(labels: np.ndarray, subjects: np.ndarray, *, by: str, func: str) -> None:
    padded = np.flatnonzero(np.char.strip(labels) != labels)
    if padded.size:
        raise MissingMetadataError(
            f"{func}: subject coordinate {by!r} has labels with leading or trailing whitespace: "
            f"{_named(subjects[padded], labels[padded].tolist())}; labels are compared exactly (not stripped), so "
            f"{str(labels[padded[0]])!r} and {str(labels[padded[0]]).strip()!r} would be different groups: strip them "
            "in the phenotype table"
        )


def check_groups(
    labels: np.ndarray,
    subjects: np.ndarray,
    *,
    by: str,
    groups: Sequence[str] | None,
    func: str,
    min_size: int = 2,
) -> tuple[str, str]:
    """Check the two groups of a two-sample comparison; return them as ``(first, second)``.

    Labels are compared exactly: a label of ``by`` with leading or trailing whitespace is
    refused (not stripped), so that the subjects analysed are the subjects whose label is
    written as in ``groups``.

    Parameters
    ----------
    labels : numpy.ndarray of str (n_subjects,)
        The values of the subject coordinate ``by``.
    subjects : numpy.ndarray of str (n_subjects,)
        Subject ids, for the messages.
    by : str
        Name of the group coordinate.
    groups : (str, str) or None
        The two groups requested; None: the two levels of ``by``, sorted.
    func : str
        Name of the calling function, for the messages.
    min_size : int, default 2
        Fewest subjects a group may have.

    Returns
    -------
    (str, str)

    Raises
    ------
    MissingMetadataError
        If a label has surrounding whitespace, ``groups`` does not name two different
        labels, a group has no subject (the message lists the labels present with their
        counts and the closest one) or fewer than ``min_size``.
    """
    labels = np.asarray(labels).astype(str)
    subjects = np.asarray(subjects).astype(str)
    _check_padding(labels, subjects, by=by, func=func)
    present = _counts(labels)
    if groups is None:
        if len(present) != 2:
            raise MissingMetadataError(
                f"{func}: subject coordinate {by!r} has levels {present} (subjects per level); a two-sample "
                "test needs exactly two (pass groups=(first, second) to choose them)"
            )
        groups = tuple(present)
    if isinstance(groups, str) or len(groups) != 2:
        raise MissingMetadataError(f"{func}: groups must name two levels of {by!r}, got {groups!r}")
    groups = tuple(str(g) for g in groups)
    if groups[0] == groups[1]:
        raise MissingMetadataError(f"{func}: groups must name two different levels of {by!r}, got {list(groups)}")
    for g in groups:
        if g != g.strip() or not g:
            raise MissingMetadataError(
                f"{func}: group {g!r} of groups={list(groups)} is empty or has leading or trailing whitespace; "
                f"write it as in the labels of {by!r}: {present}"
            )
    for g in groups:
        if g not in present:
            raise MissingMetadataError(
                f"{func}: group {g!r} (groups={list(groups)}) has no subject: the labels of {by!r} are "
                f"{present} (subjects per label){_close_label(g, list(present))}"
            )
        if present[g] < min_size:
            raise MissingMetadataError(
                f"{func}: group {g!r} has {present[g]} subject(s) ({_named(subjects[labels == g])}); a two-sample "
                f"test needs at least {min_size} per group (labels of {by!r}: {present})"
            )
    return groups  # type: ignore[return-value]


# ----------------------------------------------------------------------------- covariates


def _as_number(value: object) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _missing(values: np.ndarray) -> np.ndarray:
    """Boolean mask of missing values: NaN, None or text such as ``""``, ``"n/a"``, ``"NaN"``."""
    if values.dtype.kind in "fc":
        return ~np.isfinite(values)
    if values.dtype.kind in "iub":
        return np.zeros(values.shape, bool)

    def one(v: object) -> bool:
        if v is None:
            return True
        if isinstance(v, (float, np.floating)):
            return not np.isfinite(v)
        return str(v).strip().lower() in MISSING_MARKERS

    return np.array([one(v) for v in values.tolist()], dtype=bool)


def _check_values(values: np.ndarray, subjects: np.ndarray, cov: str, *, func: str) -> None:
    """Refuse missing values, and text that is numbers with a few typos."""
    missing = _missing(values)
    if missing.any():
        raise MissingMetadataError(
            f"{func}: covariate {cov!r} is missing (NaN or empty) for {missing.sum()} subject(s): "
            f"{_named(subjects[missing], values[missing].tolist())}; fill them in the phenotype table or "
            "leave these subjects out (maps.sel(subject=...))"
        )
    if values.dtype.kind not in "OUS":
        return
    numbers = np.array([_as_number(v) is not None for v in values.tolist()], dtype=bool)
    n_distinct = len({str(v) for v in values.tolist()})
    if numbers.all() and n_distinct > max(2, values.size // 2):
        raise MissingMetadataError(
            f"{func}: covariate {cov!r} is stored as text (dtype {values.dtype}) but every value is a number "
            f"({n_distinct} different values for {values.size} subjects); as text it would be dummy coded "
            "into one column per value: store it as numbers in the phenotype table"
        )
    if numbers.sum() * 2 >= values.size and not numbers.all():
        bad = ~numbers
        raise MissingMetadataError(
            f"{func}: covariate {cov!r} is stored as text, but {numbers.sum()} of {values.size} values are numbers; "
            f"{_named(subjects[bad], values[bad].tolist())} are not: correct them in the phenotype table "
            f"(a categorical {cov!r} needs labels that are not numbers)"
        )


def _check_levels(values: np.ndarray, subjects: np.ndarray, cov: str, *, func: str) -> None:
    """Refuse categorical levels that differ only in case or surrounding whitespace."""
    by_key: dict[str, set[str]] = {}
    for v in values.tolist():
        by_key.setdefault(v.strip().casefold(), set()).add(v)
    clash = [sorted(vs) for vs in by_key.values() if len(vs) > 1]
    if clash:
        rows = np.isin(values, clash[0])
        rows &= values != Counter(values[rows].tolist()).most_common(1)[0][0]  # the odd ones out
        raise MissingMetadataError(
            f"{func}: covariate {cov!r} has levels that differ only in case or surrounding whitespace: "
            f"{clash[0]} ({_named(subjects[rows], values[rows].tolist())}); they would be separate levels: "
            "write them identically in the phenotype table"
        )


def _check_varies(values: np.ndarray, cov: str, *, func: str) -> None:
    if values.size and np.all(values == values[0]):
        raise DataValidationError(
            f"{func}: covariate {cov!r} is constant ({values.tolist()[0]!r} for all {values.size} subjects): its "
            "effect cannot be separated from the intercept; drop it from covariates"
        )


def _covariate_columns(
    values: np.ndarray, subjects: np.ndarray, cov: str, *, center: bool, func: str
) -> tuple[list[np.ndarray], list[str]]:
    """Design columns of one covariate (dummy coded if categorical), its values checked."""
    _check_values(values, subjects, cov, func=func)
    if _is_categorical(values):
        values = values.astype(str)
        _check_levels(values, subjects, cov, func=func)
        _check_varies(values, cov, func=func)
        levels = sorted(set(values.tolist()))
        return [(values == level).astype(float) for level in levels[1:]], [f"{cov}[{level}]" for level in levels[1:]]
    values = values.astype(float)
    _check_varies(values, cov, func=func)
    return [values - values.mean() if center else values], [cov]


# ----------------------------------------------------------------------------- design


def _crosstab(values: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> str:
    if not _is_categorical(values):
        return ""
    values = values.astype(str)
    parts = [f"{g}: {_counts(values[labels == g])}" for g in groups]
    return " (levels per group: " + "; ".join(parts) + ")"


def _collinear_with(matrix: np.ndarray, names: list[str], start: int) -> list[str]:
    """Names of the columns before ``start`` that (together) reproduce a column from ``start`` on."""
    fit, _, _, _ = np.linalg.lstsq(matrix[:, :start], matrix[:, start:], rcond=None)
    used = np.abs(fit).max(axis=1) > 1e-8
    return [n for n, u in zip(names[:start], used, strict=True) if u]


def _check_rank(
    columns: list[tuple[str | None, list[np.ndarray], list[str]]],
    maps: xr.DataArray,
    labels: np.ndarray,
    groups: Sequence[str],
    *,
    func: str,
) -> None:
    """Add the covariates one by one; name the first that makes the design rank deficient."""
    matrix = np.empty((labels.size, 0))
    names: list[str] = []
    for cov, cols, col_names in columns:
        start = matrix.shape[1]
        matrix = np.column_stack([matrix, *cols])
        names = names + col_names
        rank = np.linalg.matrix_rank(matrix)
        if rank < matrix.shape[1]:
            others = _collinear_with(matrix, names, start) or names[:start]
            table = _crosstab(_coord(maps, cov, func=func), labels, groups) if cov is not None else ""
            raise DataValidationError(
                f"{func}: covariate {cov!r} (columns {col_names}) is collinear with {others}: the design "
                f"(columns {names}) has rank {rank} < {len(names)} columns, so its effect cannot be "
                f"separated from theirs{table}; drop {cov!r} from covariates or add subjects that break the tie"
            )


def _check_dof(n: int, names: list[str], labels: np.ndarray, *, func: str) -> None:
    p = len(names)
    if n - p < 1:
        raise DataValidationError(
            f"{func}: {n} subjects ({_counts(labels)}) and {p} regressors ({names}) leave {n - p} residual "
            "degrees of freedom (at least 1 is needed): use fewer covariates or fewer categorical levels, "
            "or more subjects"
        )


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

    Group labels are compared exactly; labels with surrounding whitespace are refused (see
    :func:`check_groups`). Covariates are refused, with the subjects and values named, when a
    value is missing (NaN, None, ``""``, ``"n/a"``, ...), when a text covariate is mostly
    numbers (a typo such as ``"4o"`` would otherwise make it a factor), when categorical levels
    differ only in case or whitespace, when a covariate is constant, when it is collinear
    with the group or the covariates before it, and when the design leaves no residual
    degrees of freedom.

    Raises
    ------
    MissingMetadataError
        Missing coordinates, bad group labels or covariate values.
    DataValidationError
        A constant or collinear covariate, or no residual degrees of freedom.
    """
    subjects = _subjects(maps)
    labels = _coord(maps, by, func=func).astype(str)
    groups = check_groups(labels, subjects, by=by, groups=groups, func=func)
    if not np.all(np.isin(labels, groups)):
        other = sorted(set(labels.tolist()) - set(groups))
        raise MissingMetadataError(
            f"{func}: subjects with {by!r} in {other} belong to neither group {groups}; "
            "select the subjects of the two groups first (maps.sel(subject=...))"
        )
    if len(set(covariates)) != len(covariates) or by in covariates:
        raise MissingMetadataError(
            f"{func}: covariates {list(covariates)} must be different coordinates, none of them {by!r} (the groups)"
        )
    group_cols = [(labels == groups[0]).astype(float), np.ones(labels.size)]
    blocks: list[tuple[str | None, list[np.ndarray], list[str]]] = [
        (None, group_cols, [f"{by}[{groups[0]}]", "intercept"])
    ]
    for cov in covariates:
        cols, names = _covariate_columns(_coord(maps, cov, func=func), subjects, cov, center=center, func=func)
        blocks.append((cov, cols, names))
    names = [n for _, _, block in blocks for n in block]
    _check_dof(labels.size, names, labels, func=func)
    _check_rank(blocks, maps, labels, groups, func=func)
    matrix = np.column_stack([c for _, cols, _ in blocks for c in cols])
    contrast = np.zeros(matrix.shape[1])
    contrast[0] = 1.0
    design = Design(matrix, names, contrast, f"{groups[0]} - {groups[1]}")
    check_design(design, func=func)
    return design


def check_design(design: Design, *, func: str) -> None:
    """Raise :class:`DataValidationError` for a design without residual dof or of deficient rank."""
    n, p = design.matrix.shape
    if n - p < 1:
        raise DataValidationError(
            f"{func}: {n} subjects and {p} regressors ({design.regressors}) leave no residual degrees of "
            "freedom; use fewer regressors or more subjects"
        )
    rank = np.linalg.matrix_rank(design.matrix)
    if rank < p:
        raise DataValidationError(
            f"{func}: the design matrix (columns {design.regressors}) is rank deficient "
            f"(rank {rank} < {p} columns); drop a collinear covariate"
        )


# ----------------------------------------------------------------------------- subject maps


def _raise_unusable(
    usable: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, subjects: np.ndarray, func: str
) -> np.ndarray:
    """Kernel of :func:`check_subject_maps`: a 0-d True, or raise naming the unusable subjects."""
    usable, lo, hi = np.asarray(usable), np.asarray(lo), np.asarray(hi)
    empty = usable == 0
    if empty.all():
        raise DataValidationError(
            f"{func}: every subject's map is zero or non-finite (NaN/Inf) at every voxel of the mask: is the "
            "mask empty, or on another grid than the maps?"
        )
    if empty.any():
        raise DataValidationError(
            f"{func}: the map of {_named(subjects[empty])} is zero or non-finite (NaN/Inf) at every voxel of "
            "the mask, so no voxel could be analysed for any subject; recompute these subjects' maps or "
            "leave them out (maps.sel(subject=...))"
        )
    flat = lo == hi
    if flat.any():
        raise DataValidationError(
            f"{func}: the map of {_named(subjects[flat], lo[flat].tolist())} is constant over the mask; "
            "recompute these subjects' maps or leave them out (maps.sel(subject=...))"
        )
    return np.array(True)


def check_subject_maps(maps: xr.DataArray, mask: xr.DataArray | None, *, func: str) -> xr.DataArray:
    """A 0-d bool that is True, or raises :class:`DataValidationError` naming unusable subjects.

    A subject's map is unusable when it is zero or non-finite at every voxel of ``mask`` (it
    would remove every voxel from the analysis, see :func:`valid_voxels`) or constant over
    the mask. Three per-subject reductions (count, minimum, maximum over the mask) are
    computed; for dask-backed ``maps`` the result is lazy and the error is raised when it is
    computed (combine it into the outputs, e.g. ``ok & flag``), otherwise at once.
    """
    region = maps if mask is None else maps.where(mask.transpose(*SPATIAL).variable)
    finite = np.isfinite(region)
    usable = (finite & (region != 0)).sum(SPATIAL)
    lo = region.where(finite, np.inf).min(SPATIAL)
    hi = region.where(finite, -np.inf).max(SPATIAL)
    parts = [usable.data, lo.data, hi.data]
    kwargs = {"subjects": _subjects(maps), "func": func}
    if any(dask.is_dask_collection(p) for p in parts):
        task = dask.delayed(_raise_unusable, pure=True)(*parts, **kwargs)
        return xr.DataArray(dsa.from_delayed(task, shape=(), dtype=bool))
    return xr.DataArray(_raise_unusable(*parts, **kwargs))


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
