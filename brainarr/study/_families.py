"""The metric families of the study.

The maps each family writes, which enter the group level, and the parameters each depends on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from brainarr.config import StudyConfig

__all__ = ["FAMILY_VARIABLES", "GROUP_VARIANTS", "family_of", "family_params", "params_hash"]

#: Derived variables written to the store, per metric family.
FAMILY_VARIABLES: dict[str, tuple[str, ...]] = {
    "alff": ("alff", "falff", "malff", "zalff", "mfalff", "zfalff"),
    "reho": ("reho", "smreho"),
    "fc": ("zfc",),
    "dc": ("dc_binary", "dc_weighted", "dc_binary_sm", "dc_binary_sz", "dc_weighted_sm", "dc_weighted_sz"),
}

#: Maps entering the group analysis (the study's tables), per family.
GROUP_VARIANTS: dict[str, tuple[str, ...]] = {
    "alff": ("malff", "zalff"),
    "reho": ("smreho",),
    "fc": ("zfc",),
    "dc": ("dc_binary_sm", "dc_binary_sz", "dc_weighted_sm", "dc_weighted_sz"),
}


def family_params(config: StudyConfig, family: str) -> dict[str, Any]:
    """The configuration values that determine one family's subject maps."""
    cfg = config.to_dict()
    pre = cfg["preprocess"]
    params: dict[str, Any] = {
        k: pre[k] for k in ("discard", "detrend", "confounds", "mask_threshold", "tissue_threshold")
    }
    if family == "alff":
        params["band"] = pre["band"]
    else:
        params.update(band=pre["band"], filter=pre["filter"])
    m = cfg["metrics"]
    if family == "reho":
        params.update(reho_neighbourhood=m["reho_neighbourhood"], smooth_fwhm=m["smooth_fwhm"])
    elif family == "fc":
        params.update(seeds=m["seeds"])
    elif family == "dc":
        params.update(dc_threshold=m["dc_threshold"], smooth_fwhm=m["smooth_fwhm"])
    return params


def params_hash(params: Mapping[str, Any]) -> str:
    """A short stable hash of a parameter mapping (16 hex digits)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def family_of(variant: str) -> str:
    """Metric family of a group variant (``"zfc_<seed>"`` is FC)."""
    if variant.startswith("zfc_"):
        return "fc"
    for family, names in GROUP_VARIANTS.items():
        if variant in names:
            return family
    raise KeyError(variant)
