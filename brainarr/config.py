"""The study configuration: a TOML file whose defaults are the reference study's RESTplus settings.

A config has four tables: ``[preprocess]``, ``[metrics]``, ``[group]`` and ``[output]``. Every
key is optional; a missing key takes the study's value, an unknown key or a bad value raises
:class:`ConfigError` naming the key, the value and what is allowed: a wrong type (a number
where a table belongs, a boolean for a number, NaN or infinity), a value out of range, or a
list with repeated entries.

Examples
--------
>>> from brainarr.config import StudyConfig
>>> cfg = StudyConfig.from_toml_string('''
... [preprocess]
... discard = 5
... [group.grf.dc]
... voxel_p = 0.01
... ''')
>>> cfg.preprocess.discard, cfg.preprocess.band, cfg.group.grf["dc"].voxel_p
(5, (0.01, 0.08), 0.01)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainarr.exceptions import BrainarrError

__all__ = [
    "STUDY_SEEDS",
    "ConfigError",
    "GRFConfig",
    "GroupConfig",
    "MetricsConfig",
    "OutputConfig",
    "PermutationConfig",
    "PreprocessConfig",
    "StudyConfig",
]

#: The study's four seeds: left/right precentral and postcentral gyri (AAL1).
STUDY_SEEDS = ("Postcentral_L", "Postcentral_R", "Precentral_L", "Precentral_R")

METRIC_FAMILIES = ("alff", "reho", "fc", "dc")


class ConfigError(BrainarrError, ValueError):
    """A study configuration has an unknown key or an invalid value."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Subject-level preprocessing (RESTplus defaults of the study).

    Attributes
    ----------
    discard : int
        Volumes dropped at the start (10).
    detrend : int
        Polynomial order removed with the confounds (1: linear).
    confounds : tuple of str
        Nuisance model: ``"friston24"`` (Friston et al. 1996), ``"white_matter"``, ``"csf"``,
        ``"global_signal"`` (not in the study).
    band : (float, float)
        Band-pass in Hz for ReHo, FC and DC, and the ALFF band (0.01, 0.08): exactly two
        finite numbers with ``0 <= low < high``.
    filter : {"ideal", "butterworth"}
        Band-pass method ("ideal": RESTplus/DPABI FFT filter).
    mask_threshold : float
        Grey-matter probability threshold of the analysis mask (0.2).
    tissue_threshold : float
        Probability threshold of the white-matter and CSF masks for their mean signals (0.99
        in DPABI's default segmentation masks; lower on coarse grids).
    max_translation, max_rotation : float
        Motion exclusion rule: mm and degrees (3 and 3).
    """

    discard: int = 10
    detrend: int = 1
    confounds: tuple[str, ...] = ("friston24", "white_matter", "csf")
    band: tuple[float, float] = (0.01, 0.08)
    filter: str = "ideal"
    mask_threshold: float = 0.2
    tissue_threshold: float = 0.9
    max_translation: float = 3.0
    max_rotation: float = 3.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` for invalid values."""
        _check_types(self, "preprocess")
        _check(self.discard >= 0, "preprocess.discard", self.discard, "a non-negative integer")
        _check(self.detrend in (0, 1, 2, 3), "preprocess.detrend", self.detrend, "0, 1, 2 or 3")
        allowed = {"friston24", "white_matter", "csf", "global_signal"}
        unknown = [c for c in self.confounds if c not in allowed]
        _check(not unknown, "preprocess.confounds", list(self.confounds), f"a subset of {sorted(allowed)}")
        _check_unique(self.confounds, "preprocess.confounds")
        band = "[low, high]: two frequencies in Hz with 0 <= low < high"
        _check(len(self.band) == 2, "preprocess.band", list(self.band), band)
        low, high = self.band
        _check(0 <= low < high, "preprocess.band", list(self.band), band)
        _check(self.filter in ("ideal", "butterworth"), "preprocess.filter", self.filter, "'ideal' or 'butterworth'")
        _check(0 <= self.mask_threshold < 1, "preprocess.mask_threshold", self.mask_threshold, "in [0, 1)")
        _check(0 < self.tissue_threshold < 1, "preprocess.tissue_threshold", self.tissue_threshold, "in (0, 1)")
        _check(self.max_translation > 0, "preprocess.max_translation", self.max_translation, "positive (mm)")
        _check(self.max_rotation > 0, "preprocess.max_rotation", self.max_rotation, "positive (degrees)")


@dataclass(frozen=True)
class MetricsConfig:
    """Subject-level metrics and their variants.

    Attributes
    ----------
    families : tuple of str
        Which metric families to compute: ``alff`` (ALFF/fALFF with m/z variants), ``reho``
        (KCC, smoothed and mean-normalised: SMKCC), ``fc`` (seed FC, Fisher z), ``dc``
        (degree centrality, binary and weighted, Sm and Sz variants).
    seeds : tuple of str
        AAL1 regions used as FC seeds (the study's four pre/postcentral gyri).
    reho_neighbourhood : {7, 19, 27}
        ReHo cluster size (27).
    dc_threshold : float
        Correlation threshold of degree centrality (r > 0.25); ``0 <= r < 1``.
    smooth_fwhm : float
        Gaussian FWHM in mm of the smoothed variants (6); positive (the smoothed variants are
        always computed, so 0 is refused rather than taken as "no smoothing").
    """

    families: tuple[str, ...] = METRIC_FAMILIES
    seeds: tuple[str, ...] = STUDY_SEEDS
    reho_neighbourhood: int = 27
    dc_threshold: float = 0.25
    smooth_fwhm: float = 6.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` for invalid values."""
        _check_types(self, "metrics")
        unknown = [f for f in self.families if f not in METRIC_FAMILIES]
        _check(
            bool(self.families) and not unknown,
            "metrics.families",
            list(self.families),
            f"a non-empty subset of {list(METRIC_FAMILIES)}",
        )
        _check_unique(self.families, "metrics.families")
        _check_unique(self.seeds, "metrics.seeds")
        _check(
            self.reho_neighbourhood in (7, 19, 27), "metrics.reho_neighbourhood", self.reho_neighbourhood, "7, 19 or 27"
        )
        _check(
            0 <= self.dc_threshold < 1,
            "metrics.dc_threshold",
            self.dc_threshold,
            "a correlation threshold r with 0 <= r < 1 (edges are correlations above r; a negative r "
            "would connect almost every pair of voxels)",
        )
        _check(
            self.smooth_fwhm > 0,
            "metrics.smooth_fwhm",
            self.smooth_fwhm,
            "a positive FWHM in mm (the smoothed variants smreho and dc_*_sm/_sz are always computed; "
            "0 cannot mean 'no smoothing')",
        )
        if "fc" in self.families:
            from brainarr.datasets import aal_labels

            names = set(aal_labels()["name"])
            bad = [s for s in self.seeds if s not in names]
            if bad:
                hints = {s: difflib.get_close_matches(s, sorted(names), n=2) for s in bad}
                raise ConfigError(f"metrics.seeds: {bad} are not AAL1 regions (closest: {hints})")
            _check(len(self.seeds) > 0, "metrics.seeds", [], "at least one AAL1 region")


@dataclass(frozen=True)
class GRFConfig:
    """Gaussian random field cluster correction thresholds."""

    voxel_p: float = 0.01
    cluster_p: float = 0.01
    two_tailed: bool = True

    def validate(self, where: str = "group.grf") -> None:
        """Raise :class:`ConfigError` for invalid values."""
        _check_types(self, where)
        _check(0 < self.voxel_p < 1, f"{where}.voxel_p", self.voxel_p, "a probability in (0, 1)")
        _check(0 < self.cluster_p < 1, f"{where}.cluster_p", self.cluster_p, "a probability in (0, 1)")


@dataclass(frozen=True)
class PermutationConfig:
    """Optional nonparametric inference (Freedman-Lane, FWE by the maximum statistic).

    Run beside GRF on the group maps of ``families``, with the family's thresholds of
    :class:`GRFConfig`: ``voxel_p`` forms the clusters of the cluster statistics and the
    clusters of voxels whose FWE p is below ``cluster_p`` are tabled
    (:attr:`brainarr.pipeline.StudyResult.permutation_tables`).

    Attributes
    ----------
    enabled : bool
        Run the permutation test at all (off by default: the study used GRF only).
    n_perm : int
        Number of permutations, the identity included (5000).
    stat : {"cluster_mass", "tfce", "cluster_size", "voxel"}
        Statistic whose maximum over the map gives the FWE p (see
        :func:`brainarr.stats.permutation`). The cluster mass (default) uses the family's
        ``voxel_p`` as cluster-forming threshold, like the study's cluster inference; on the
        simulated study it recovered more planted effects than the cluster size and had fewer
        false clusters than TFCE (docs/scale.md).
    seed : int
        Seed of the permutations (results are reproducible for a seed).
    families : tuple of str
        Metric families whose group maps are permuted (all by default). ``["dc"]`` keeps
        DPABI's GRF for ALFF, ReHo and FC and permutes only the degree-centrality maps, whose
        0.05 / 0.05 GRF correction is the most anti-conservative (docs/scale.md: on simulated
        null studies GRF is liberal for DC and ALFF, the permutation test holds its level).
    """

    enabled: bool = False
    n_perm: int = 5000
    stat: str = "cluster_mass"
    seed: int = 0
    families: tuple[str, ...] = METRIC_FAMILIES

    def validate(self) -> None:
        """Raise :class:`ConfigError` for invalid values."""
        _check_types(self, "group.permutation")
        _check(self.n_perm >= 10, "group.permutation.n_perm", self.n_perm, "at least 10")
        _check(self.seed >= 0, "group.permutation.seed", self.seed, "a non-negative integer")
        stats = ("tfce", "cluster_mass", "cluster_size", "voxel")
        _check(self.stat in stats, "group.permutation.stat", self.stat, f"one of {list(stats)}")
        unknown = [f for f in self.families if f not in METRIC_FAMILIES]
        _check(
            bool(self.families) and not unknown,
            "group.permutation.families",
            list(self.families),
            f"a non-empty subset of {list(METRIC_FAMILIES)}",
        )
        _check_unique(self.families, "group.permutation.families")


def _study_grf() -> dict[str, GRFConfig]:
    strict = GRFConfig(voxel_p=0.01, cluster_p=0.01)
    return {"alff": strict, "reho": strict, "fc": strict, "dc": GRFConfig(voxel_p=0.05, cluster_p=0.05)}


@dataclass(frozen=True)
class GroupConfig:
    """Group level: two-sample t-test with covariates, then cluster correction.

    Attributes
    ----------
    by : str
        Subject coordinate holding the groups.
    groups : (str, str)
        Contrast ``groups[0] - groups[1]`` (patients minus controls): two different labels,
        compared exactly with the subjects' labels (so none may have surrounding whitespace).
    covariates : tuple of str
        Subject coordinates entered as covariates (age, sex); each once, and not ``by``.
    grf : dict of GRFConfig
        Thresholds per metric family (ALFF, ReHo, FC: 0.01/0.01; DC: 0.05/0.05).
    permutation : PermutationConfig
        Nonparametric inference, off by default.
    exclude_movers : bool
        Drop subjects flagged by the motion rule before the group analysis.
    """

    by: str = "group"
    groups: tuple[str, str] = ("patient", "control")
    covariates: tuple[str, ...] = ("age", "sex")
    grf: dict[str, GRFConfig] = field(default_factory=_study_grf)
    permutation: PermutationConfig = field(default_factory=PermutationConfig)
    exclude_movers: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for invalid values.

        Group labels are compared exactly with the subjects' labels, so labels with leading
        or trailing whitespace are refused, as are two identical labels and a covariate that
        is the group coordinate itself.
        """
        _check_types(self, "group")
        _check_name(self.by, "group.by", "a subject coordinate name")
        two = "two different, non-empty group labels [first, second]"
        _check(len(self.groups) == 2, "group.groups", list(self.groups), two)
        for label in self.groups:
            _check_name(label, "group.groups", "group labels without leading or trailing whitespace", list(self.groups))
        _check(self.groups[0] != self.groups[1], "group.groups", list(self.groups), two)
        for cov in self.covariates:
            _check_name(cov, "group.covariates", "subject coordinate names", list(self.covariates))
        _check_unique(self.covariates, "group.covariates")
        _check(
            self.by not in self.covariates,
            "group.covariates",
            list(self.covariates),
            f"subject coordinates other than group.by = {self.by!r} (the groups cannot be their own covariate)",
        )
        if not isinstance(self.grf, dict):
            raise ConfigError(f"group.grf must be a table of metric families, got {self.grf!r}")
        for family, grf in self.grf.items():
            _check(family in METRIC_FAMILIES, "group.grf", family, f"tables named after {list(METRIC_FAMILIES)}")
            if not isinstance(grf, GRFConfig):
                raise ConfigError(f"group.grf.{family} must be a table (voxel_p, cluster_p, two_tailed), got {grf!r}")
            grf.validate(f"group.grf.{family}")
        if not isinstance(self.permutation, PermutationConfig):
            raise ConfigError(f"group.permutation must be a table, got {self.permutation!r}")
        self.permutation.validate()


@dataclass(frozen=True)
class OutputConfig:
    """What the pipeline writes next to the store."""

    directory: str = "brainarr-results"
    nifti: bool = True
    figures: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for invalid values."""
        _check_types(self, "output")
        _check(bool(self.directory.strip()), "output.directory", self.directory, "a folder path")


@dataclass(frozen=True)
class StudyConfig:
    """The whole study; defaults are the reference study's settings."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    group: GroupConfig = field(default_factory=GroupConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> StudyConfig:
        """Validate every section; return ``self``."""
        for name, kind in (
            ("preprocess", PreprocessConfig),
            ("metrics", MetricsConfig),
            ("group", GroupConfig),
            ("output", OutputConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"{name} must be a table, got {getattr(self, name)!r}")
        self.preprocess.validate()
        self.metrics.validate()
        self.group.validate()
        self.output.validate()
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        """Build from a nested mapping (parsed TOML), filling defaults and validating."""
        return _build(cls, data, "").validate()

    @classmethod
    def from_toml_string(cls, text: str) -> StudyConfig:
        """Parse TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"invalid TOML: {err}") from err
        return cls.from_dict(data)

    @classmethod
    def from_toml(cls, path: str | Path) -> StudyConfig:
        """Read a TOML file; a missing file or invalid content raises with the file name."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"study config not found: {path}")
        try:
            return cls.from_toml_string(path.read_text())
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists), e.g. to record in a store's attrs."""
        return _plain(dataclasses.asdict(self))

    def to_toml(self) -> str:
        """The config as TOML text (every key, with its value)."""
        return _dump_toml(self.to_dict())

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of the given sections, to know when results must be recomputed."""
        import hashlib
        import json

        payload = {s: self.to_dict()[s] for s in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is invalid; expected {allowed}")


def _check_types(section: Any, where: str) -> None:
    """Check the type of every scalar and list field (also for sections built in Python)."""
    defaults = type(section)()
    for f in dataclasses.fields(section):
        current = getattr(defaults, f.name)
        if not (dataclasses.is_dataclass(current) or isinstance(current, dict)):
            _coerce(_plain(getattr(section, f.name)), current, f"{where}.{f.name}")


def _check_unique(values: tuple[Any, ...], key: str) -> None:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(
            f"{key} = {list(values)!r} is invalid; expected each entry once, but {repeated} appear more than once"
        )


def _check_name(value: str, key: str, allowed: str, shown: Any = None) -> None:
    """A label or coordinate name: non-empty, without leading or trailing whitespace."""
    shown = value if shown is None else shown
    if not value.strip():
        raise ConfigError(f"{key} = {shown!r} is invalid; expected {allowed}, not an empty string")
    if value != value.strip():
        raise ConfigError(
            f"{key} = {shown!r} is invalid; expected {allowed}: {value!r} has leading or trailing whitespace, "
            f"and labels are compared exactly (write {value.strip()!r})"
        )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(fields)}"
        raise ConfigError(f"unknown key {(where + '.' if where else '') + key!r}{hint}")
    defaults = cls()
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            kwargs[name] = _build(type(current), value, key)
        elif name == "grf" and cls is GroupConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"{key} must be a table of metric families, got {value!r}")
            merged = dict(current)
            for family, sub in value.items():
                _check(family in METRIC_FAMILIES, key, family, f"tables named after {list(METRIC_FAMILIES)}")
                if not isinstance(sub, dict):
                    raise ConfigError(f"{key}.{family} must be a table (voxel_p, cluster_p, two_tailed), got {sub!r}")
                base = merged.get(family, GRFConfig())
                merged[family] = _build(GRFConfig, {**dataclasses.asdict(base), **sub}, f"{key}.{family}")
            kwargs[name] = merged
        else:
            kwargs[name] = _coerce(value, current, key)
    return cls(**kwargs)


def _coerce(value: Any, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r} is invalid; expected true or false")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r} is invalid; expected an integer")
        return value
    if isinstance(current, float):
        return _number(value, key)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r} is invalid; expected a string")
        return value
    if isinstance(current, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{key} = {value!r} is invalid; expected a list")
        if current and isinstance(current[0], float):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{key} = {value!r} is invalid; expected a list of numbers")
            return tuple(_number(v, key, shown=value) for v in value)
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} = {value!r} is invalid; expected a list of strings")
        return tuple(value)
    return value  # pragma: no cover - every field type is handled above


def _number(value: Any, key: str, *, shown: Any = None) -> float:
    """A finite float from a TOML int or float (booleans, NaN and infinities refused)."""
    shown = value if shown is None else shown
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key} = {shown!r} is invalid; expected a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{key} = {shown!r} is invalid; expected a finite number")
    return number


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = []
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    text = "\n".join(lines)
    for name, sub in tables.items():
        block = _dump_toml(sub, f"{prefix}.{name}" if prefix else name)
        text = f"{text}\n\n{block}" if text else block
    return text
