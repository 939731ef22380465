"""Atlases, masks and templates on any grid, and the embedded simulated cohort.

AAL1 (Tzourio-Mazoyer et al., 2002) ships with brainarr; the MNI152 tissue templates come
from nilearn (ICBM 2009a symmetric, Fonov et al., 2011). Everything is returned as a labelled
DataArray on the grid of ``like`` (nearest-neighbour for labels, linear for probabilities).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Literal

import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr

from brainarr._core.dims import SEED, SPATIAL
from brainarr._core.grid import spatial_coords
from brainarr._core.validation import get_affine
from brainarr.exceptions import DimensionError

__all__ = [
    "AAL_REFERENCE",
    "STUDY_BOX",
    "aal",
    "aal_labels",
    "gm_mask",
    "region_at",
    "regions",
    "simulate_cohort",
    "simulate_raw",
    "spheres",
    "study_grid",
    "tissue_probability",
]

#: Bounding box (mm) of the RESTplus/DPABI/SPM output grid: x, y, z (min, max).
STUDY_BOX = ((-90.0, 90.0), (-126.0, 90.0), (-72.0, 108.0))

AAL_REFERENCE = (
    "Tzourio-Mazoyer N, Landeau B, Papathanassiou D, et al. Automated anatomical labeling of "
    "activations in SPM using a macroscopic anatomical parcellation of the MNI MRI single-subject "
    "brain. NeuroImage 2002;15:273-289. doi:10.1006/nimg.2001.0978"
)
MNI_REFERENCE = (
    "Fonov V, Evans AC, Botteron K, et al. Unbiased average age-appropriate atlases for pediatric "
    "studies. NeuroImage 2011;54:313-327 (MNI ICBM152 2009a symmetric, as shipped by nilearn)"
)


def study_grid(voxel_size: float = 3.0) -> xr.DataArray:
    """The MNI bounding box of RESTplus/DPABI outputs at ``voxel_size`` mm, as an empty map.

    At 3 mm this is the study grid: 61 x 73 x 61 voxels, x from 90 to -90 (SPM's flipped x),
    y from -126 to 90, z from -72 to 108.

    Parameters
    ----------
    voxel_size : float, default 3.0
        Isotropic voxel edge in mm.

    Returns
    -------
    xarray.DataArray (x, y, z), float32 zeros
        With MNI coordinates (mm) and ``attrs["affine"]``.

    Examples
    --------
    >>> import brainarr as ba
    >>> ba.datasets.study_grid().shape
    (61, 73, 61)
    """
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be positive (mm), got {voxel_size}")
    shape = tuple(int(np.floor((hi - lo) / voxel_size + 1e-9)) + 1 for lo, hi in STUDY_BOX)
    affine = np.diag([-voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = [STUDY_BOX[0][1], STUDY_BOX[1][0], STUDY_BOX[2][0]]
    da = xr.DataArray(np.zeros(shape, np.float32), dims=SPATIAL, coords=spatial_coords(affine, shape), name="grid")
    da.attrs.update({"affine": affine.tolist(), "source": f"MNI box at {voxel_size:g} mm"})
    return da


def _grid_of(like: xr.DataArray | xr.Dataset) -> tuple[np.ndarray, tuple[int, int, int]]:
    for dim in SPATIAL:
        if dim not in like.dims:
            raise DimensionError(f"`like` must have dims {SPATIAL}; got {tuple(like.dims)}")
    return get_affine(like, func="brainarr.datasets"), tuple(like.sizes[d] for d in SPATIAL)


def _on_grid(img: nib.Nifti1Image, like, *, interpolation: str, name: str, source: str) -> xr.DataArray:
    from nilearn.image import resample_img

    affine, shape = _grid_of(like)
    with warnings.catch_warnings():
        # a binary mask resampled linearly gives its partial-volume fraction: intended here
        warnings.filterwarnings("ignore", message="Resampling binary images", category=UserWarning)
        out = resample_img(
            img,
            target_affine=affine,
            target_shape=shape,
            interpolation=interpolation,
            force_resample=True,
            copy_header=True,
        )
    data = np.asarray(out.dataobj)
    da = xr.DataArray(data, dims=SPATIAL, coords=spatial_coords(affine, shape, source=source), name=name)
    da.attrs.update({"affine": affine.tolist(), "source": source})
    return da


@lru_cache(maxsize=1)
def _aal_table() -> pd.DataFrame:
    text = resources.files("brainarr").joinpath("data/aal.nii.txt").read_text()
    rows = [line.split() for line in text.splitlines() if line.strip()]
    return pd.DataFrame(
        {"index": [int(r[0]) for r in rows], "name": [r[1] for r in rows], "code": [int(r[2]) for r in rows]}
    ).set_index("index")


def aal_labels() -> pd.DataFrame:
    """The 116 AAL1 regions: label value (index), ``name`` (as in SPM/RESTplus tables) and ``code``.

    Returns
    -------
    pandas.DataFrame
        Indexed by the integer label of the atlas image.
    """
    return _aal_table().copy()


def aal(like: xr.DataArray | xr.Dataset | None = None) -> xr.DataArray:
    """The AAL1 atlas (116 regions) resampled nearest-neighbour onto the grid of ``like``.

    Parameters
    ----------
    like : DataArray or Dataset, optional
        Anything with ``x, y, z`` dims and ``attrs["affine"]``; default :func:`study_grid`.

    Returns
    -------
    xarray.DataArray (x, y, z), int16
        0 outside the atlas, otherwise the region label. CF attrs ``flag_values`` and
        ``flag_meanings`` list the labels and region names.

    References
    ----------
    Tzourio-Mazoyer et al. (2002), NeuroImage 15:273-289.

    Examples
    --------
    >>> import brainarr as ba
    >>> atlas = ba.datasets.aal()
    >>> ba.datasets.region_at(atlas, -57, -12, 30)
    'Postcentral_L'
    """
    like = study_grid() if like is None else like
    path = resources.files("brainarr").joinpath("data/aal.nii.gz")
    with resources.as_file(path) as p:
        img = nib.load(p)
        img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    da = _on_grid(img, like, interpolation="nearest", name="aal", source="AAL1 (brainarr/data/aal.nii.gz)")
    da = da.astype(np.int16)
    table = _aal_table()
    da.attrs.update(
        {
            "long_name": "AAL1 anatomical label",
            "units": "1",
            "flag_values": table.index.to_numpy(dtype=np.int16).tolist(),
            "flag_meanings": " ".join(table["name"]),
            "references": AAL_REFERENCE,
        }
    )
    return da


def _label_names(atlas: xr.DataArray) -> dict[int, str]:
    values = atlas.attrs.get("flag_values")
    meanings = atlas.attrs.get("flag_meanings")
    if values is None or meanings is None:
        raise ValueError(f"atlas {atlas.name!r} has no CF flag_values/flag_meanings attributes naming its regions")
    return dict(zip((int(v) for v in values), meanings.split(), strict=True))


def _nearest_index(coord: xr.DataArray, value: float) -> int | None:
    values = np.asarray(coord.values, float)
    i = int(np.argmin(np.abs(values - value)))
    step = abs(values[1] - values[0]) if values.size > 1 else np.inf
    return i if abs(values[i] - value) <= step / 2 + 1e-6 else None


def region_at(atlas: xr.DataArray, x: float, y: float, z: float) -> str | None:
    """Name of the atlas region at the voxel nearest to MNI ``(x, y, z)`` mm.

    Parameters
    ----------
    atlas : xarray.DataArray (x, y, z)
        Integer atlas with ``flag_values``/``flag_meanings`` (e.g. :func:`aal`).
    x, y, z : float
        MNI coordinates in mm.

    Returns
    -------
    str or None
        The region name, or None if the point is outside the grid or unlabelled.
    """
    names = _label_names(atlas)
    idx = [_nearest_index(atlas[d], v) for d, v in zip(SPATIAL, (x, y, z), strict=True)]
    if any(i is None for i in idx):
        return None
    label = int(atlas.values[tuple(idx)])
    return names.get(label)


def regions(atlas: xr.DataArray, names: str | Sequence[str]) -> xr.DataArray:
    """Boolean masks of atlas regions, one per name, along a ``seed`` dim.

    Parameters
    ----------
    atlas : xarray.DataArray (x, y, z)
        Integer atlas with CF flag attributes (e.g. :func:`aal`).
    names : str or sequence of str
        Region names (e.g. ``["Precentral_L", "Postcentral_R"]``).

    Returns
    -------
    xarray.DataArray (seed, x, y, z), bool

    Raises
    ------
    KeyError
        For a name that is not in the atlas (the message suggests close matches).
    """
    names = [names] if isinstance(names, str) else list(names)
    lookup = {v: k for k, v in _label_names(atlas).items()}
    masks = []
    for name in names:
        if name not in lookup:
            close = difflib.get_close_matches(name, list(lookup), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"region {name!r} is not in atlas {atlas.name!r}{hint}")
        masks.append(atlas == lookup[name])
    out = xr.concat(masks, dim=SEED).assign_coords({SEED: names})
    out.name = "seed_mask"
    out.attrs = {k: atlas.attrs[k] for k in ("affine", "source") if k in atlas.attrs}
    return out


def spheres(
    like: xr.DataArray | xr.Dataset,
    centres: Iterable[Sequence[float]],
    radius: float,
    *,
    names: Sequence[str] | None = None,
) -> xr.DataArray:
    """Boolean spheres of ``radius`` mm around MNI ``centres``, along a ``seed`` dim.

    Parameters
    ----------
    like : DataArray or Dataset
        Target grid (``x, y, z`` coordinates in mm).
    centres : iterable of (x, y, z)
        Centres in MNI mm.
    radius : float
        Radius in mm; a voxel belongs to the sphere when its centre is within ``radius``.
    names : sequence of str, optional
        Seed names; default ``"x_y_z"`` of each centre.

    Returns
    -------
    xarray.DataArray (seed, x, y, z), bool
    """
    if not radius > 0:
        raise ValueError(f"sphere radius must be positive (mm), got {radius}")
    centres = [tuple(float(c) for c in centre) for centre in centres]
    names = list(names) if names is not None else ["_".join(f"{c:g}" for c in ctr) for ctr in centres]
    xs, ys, zs = (like[d].astype(float) for d in SPATIAL)
    masks = [((xs - cx) ** 2 + (ys - cy) ** 2 + (zs - cz) ** 2) <= radius**2 for cx, cy, cz in centres]
    out = xr.concat(masks, dim=SEED).assign_coords({SEED: names}).transpose(SEED, *SPATIAL)
    empty = [n for n, m in zip(names, masks, strict=True) if not bool(m.any())]
    if empty:
        raise ValueError(f"sphere(s) {empty} of radius {radius} mm contain no voxel of the grid")
    out.name = "seed_mask"
    if "affine" in like.attrs:
        out.attrs["affine"] = like.attrs["affine"]
    return out


def tissue_probability(
    like: xr.DataArray | xr.Dataset | None = None, tissue: Literal["gm", "wm", "csf"] = "gm"
) -> xr.DataArray:
    """MNI152 tissue probability (0-1) resampled linearly onto the grid of ``like``.

    ``gm`` and ``wm`` are nilearn's MNI ICBM152 2009a templates; ``csf`` is the brain mask's
    remainder ``clip(brain - gm - wm, 0, 1)`` (nilearn ships no CSF template), which mostly
    covers the ventricles and sulci.

    Parameters
    ----------
    like : DataArray or Dataset, optional
        Target grid; default :func:`study_grid`.
    tissue : {"gm", "wm", "csf"}
        Which tissue.

    Returns
    -------
    xarray.DataArray (x, y, z), float32, units "1"
    """
    from nilearn import datasets as nd

    like = study_grid() if like is None else like
    if tissue == "gm":
        img = nd.load_mni152_gm_template(resolution=1)
    elif tissue == "wm":
        img = nd.load_mni152_wm_template(resolution=1)
    elif tissue == "csf":
        gm = tissue_probability(like, "gm")
        wm = tissue_probability(like, "wm")
        mask_img = nd.load_mni152_brain_mask(resolution=1)
        mask_img = nib.Nifti1Image(np.asarray(mask_img.dataobj, np.float32), mask_img.affine)
        brain = _on_grid(mask_img, like, interpolation="linear", name="brain", source="MNI152 brain mask")
        out = (brain - gm - wm).clip(0, 1).astype(np.float32)
        out.name = "csf"
        out.attrs.update(
            {
                "affine": gm.attrs["affine"],
                "units": "1",
                "long_name": "CSF probability",
                "references": MNI_REFERENCE,
            }
        )
        return out
    else:
        raise ValueError(f"tissue must be 'gm', 'wm' or 'csf', got {tissue!r}")
    da = _on_grid(img, like, interpolation="continuous", name=tissue, source=f"MNI152 {tissue} template (nilearn)")
    da = da.clip(0, 1).astype(np.float32)
    da.attrs.update({"units": "1", "long_name": f"{tissue.upper()} probability", "references": MNI_REFERENCE})
    return da


def gm_mask(like: xr.DataArray | xr.Dataset | None = None, threshold: float = 0.2) -> xr.DataArray:
    """Grey-matter mask: MNI152 GM probability above ``threshold`` on the grid of ``like``.

    Parameters
    ----------
    like : DataArray or Dataset, optional
        Target grid; default :func:`study_grid`.
    threshold : float, default 0.2
        Probability threshold (RESTplus/DPABI use 0.2 for their GM masks).

    Returns
    -------
    xarray.DataArray (x, y, z), bool
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    prob = tissue_probability(like, "gm")
    mask = prob > threshold
    mask.name = "mask"
    mask.attrs = {
        "affine": prob.attrs["affine"],
        "long_name": f"grey matter (MNI152 GM probability > {threshold:g})",
        "threshold": threshold,
        "references": MNI_REFERENCE,
    }
    return mask


# the simulator builds on the atlases above; it imports this module lazily inside its functions
from brainarr._simulate import simulate_cohort  # noqa: E402
from brainarr._simulate_raw import simulate_raw  # noqa: E402
