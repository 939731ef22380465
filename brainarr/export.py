"""Export a study's maps in the layouts and formats other tools read: BIDS derivatives, DPABI, C-PAC.

:func:`export` writes the subject maps that :func:`brainarr.pipeline.run` stored in a cohort
store (:data:`brainarr.pipeline.FAMILY_VARIABLES`; ``zfc`` one map per seed) and the group t
maps it wrote into its results folder (``maps/<variant>_t.nii.gz`` and
``maps/<variant>_t_grf.nii.gz``), one subject map at a time, each file written atomically.

Layouts (``layout=``):

``"bids"``
    A BIDS derivative dataset following the conventions of xcp_d for resting-state maps
    (``sub-<label>/func/sub-<label>_task-<label>_space-<label>_res-<label>_stat-<metric>[_desc-<variant>]_boldmap.nii.gz``,
    ``stat`` before ``desc`` and ``desc`` last, as in xcp_d's path patterns and the BIDS entity
    order), a JSON sidecar per map (``Description``, ``Units``, ``Resolution``, ``Parameters``
    from the map's ``params`` attribute, ``Sources`` as BIDS URIs, ``GeneratedBy``) and a
    ``dataset_description.json`` (``DatasetType`` "derivative", ``GeneratedBy`` brainarr).
    Group maps go to ``group/`` with the statistical-map naming of BIDS Stats Models outputs
    (BEP041, as FitLins and nilearn's ``save_glm_to_bids`` write them):
    ``task-<label>_space-<label>_res-<label>_contrast-<g1>Minus<g2>_stat-t_desc-<map>[GRF]_statmap.nii.gz``.
``"dpabi"``
    DPABI/DPARSF's result folders and names, uncompressed ``.nii`` by default as DPABI writes:
    ``Results/ALFF_FunImgARCW/ALFFMap_<subject>.nii``, ``mALFFMap_``, ``zALFFMap_``,
    ``Results/fALFF_FunImgARCW/fALFFMap_`` (``mfALFFMap_``, ``zfALFFMap_``),
    ``Results/ReHo_FunImgARCWF/ReHoMap_``, ``Results/FC_FunImgARCWF/zROI<i>FCMap_`` (with
    ``ROI_OrderKey_FCMap_<subject>.tsv``),
    ``Results/DegreeCentrality_FunImgARCWF/DegreeCentrality_PositiveBinarizedSumBrainMap_``
    (``PositiveWeightedSumBrainMap_``); smoothed maps in ``ResultsS/`` with SPM's ``s`` prefix
    (``smReHoMap_``, ``smDegreeCentrality_...``, ``szDegreeCentrality_...``). Group t maps:
    ``GroupAnalysis/T2_<map>.nii`` and, GRF-thresholded, ``GroupAnalysis/ClusterThresholded_T2_<map>.nii``.
``"cpac"``
    C-PAC's output tree and resource names:
    ``pipeline_brainarr/sub-<label>/ses-1/func/sub-<label>_ses-1_task-<label>_space-template_<desc>_<suffix>.nii.gz``
    (``alff``, ``desc-zstd_alff``, ``falff``, ``reho``, ``desc-binarized_degree-centrality``,
    ``desc-binarized-sm-zstd_degree-centrality``..., the seed FC maps as one 4-D
    ``desc-MeanSCA_correlations`` stack, a volume per seed, ``pixdim[4]`` 0 as it is no time series)
    with a JSON sidecar naming the ``Template``; group maps under
    ``cpac_group_analysis/FSL_FEAT/pipeline_brainarr/group_model_brainarr/<resource>/stats/``
    (``tstat1``, ``thresh_tstat1``).

Formats (``format=``): ``"nii.gz"`` (BIDS and C-PAC default), ``"nii"`` (DPABI default) through
:func:`brainarr.io.to_nifti`, or ``"nii.zarr"``: NIfTI-Zarr (:func:`to_nifti_zarr`, read back
with :func:`read_nifti_zarr`).

The space label comes from ``space=``, else the ``space-`` entity of the ingested BOLD file
names (fMRIPrep), else ``IXI549Space`` for a DPABI input (SPM12's normalisation target), else
``MNI152NLin2009aSym``: the simulated cohort and brainarr's masks, tissue priors and atlas grid
are nilearn's ICBM 2009a nonlinear symmetric templates (``mni_icbm152_*_tal_nlin_sym_09a``).
``res-`` is the voxel size in mm (``res-3`` for 3 mm isotropic, ``res-2p5``, ``res-2x2x3``),
explained by the sidecars' ``Resolution``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import xarray as xr

from brainarr import io, pipeline
from brainarr._core.dims import SEED, SPATIAL, SUBJECT, TIME
from brainarr._core.grid import spatial_coords, voxel_size
from brainarr._core.version import __version__
from brainarr.exceptions import GridMismatchError, InputFileError, MissingMetadataError
from brainarr.study import family_of

__all__ = [
    "FORMATS",
    "LAYOUTS",
    "bids_label",
    "export",
    "nifti_header_json",
    "read_nifti_zarr",
    "resolution_label",
    "to_nifti_zarr",
]

logger = logging.getLogger("brainarr")

#: Output layouts of :func:`export`.
LAYOUTS = ("bids", "dpabi", "cpac")
#: Image formats of :func:`export`.
FORMATS = ("nii.gz", "nii", "nii.zarr")
_NATIVE_FORMAT = {"bids": "nii.gz", "dpabi": "nii", "cpac": "nii.gz"}

#: BIDS version the exported dataset_description.json declares.
BIDS_VERSION = "1.10.0"
_CODE_URL = "https://brainarr.readthedocs.io"
_DEFAULT_SPACE = "MNI152NLin2009aSym"
_DPABI_SPACE = "IXI549Space"
_PIPELINE = "brainarr"


@dataclass(frozen=True)
class _Map:
    """How one derived variable is described and named in each layout."""

    description: str
    bids: tuple[str, str]  # (stat, desc); desc "" for none
    dpabi: tuple[str, str, str, bool]  # (measure folder, stage, file prefix, smoothed)
    cpac: tuple[str, str]  # (desc, suffix) of the C-PAC resource
    units: str = "1"


_MASKED = "within the grey-matter mask"
_MAPS: dict[str, _Map] = {
    "alff": _Map(
        "Amplitude of low-frequency fluctuations (ALFF): mean amplitude of the BOLD spectrum in the band, "
        "after nuisance regression and detrending, without band-pass filtering (Zang et al. 2007)",
        ("alff", ""), ("ALFF", "FunImgARCW", "ALFFMap", False), ("", "alff"), units="bold",
    ),
    "falff": _Map(
        "Fractional ALFF: amplitude in the band divided by the amplitude over all frequencies (Zou et al. 2008)",
        ("falff", ""), ("fALFF", "FunImgARCW", "fALFFMap", False), ("", "falff"),
    ),
    "malff": _Map(
        f"ALFF divided by its mean {_MASKED} (DPABI's mALFF)",
        ("alff", "meannorm"), ("ALFF", "FunImgARCW", "mALFFMap", False), ("desc-meannorm", "alff"),
    ),
    "zalff": _Map(
        f"ALFF z-scored {_MASKED} (mean subtracted, divided by the standard deviation; DPABI's zALFF)",
        ("alff", "zstd"), ("ALFF", "FunImgARCW", "zALFFMap", False), ("desc-zstd", "alff"),
    ),
    "mfalff": _Map(
        f"fALFF divided by its mean {_MASKED}",
        ("falff", "meannorm"), ("fALFF", "FunImgARCW", "mfALFFMap", False), ("desc-meannorm", "falff"),
    ),
    "zfalff": _Map(
        f"fALFF z-scored {_MASKED}",
        ("falff", "zstd"), ("fALFF", "FunImgARCW", "zfALFFMap", False), ("desc-zstd", "falff"),
    ),
    "reho": _Map(
        "Regional homogeneity (ReHo): Kendall's coefficient of concordance of the band-pass filtered series of "
        "each voxel and its neighbours (Zang et al. 2004)",
        ("reho", ""), ("ReHo", "FunImgARCWF", "ReHoMap", False), ("", "reho"),
    ),
    "smreho": _Map(
        f"ReHo smoothed with a Gaussian kernel, then divided by its mean {_MASKED} (the study's SMKCC ReHo)",
        ("reho", "smoothMeannorm"), ("ReHo", "FunImgARCWF", "smReHoMap", True), ("desc-sm-meannorm", "reho"),
    ),
    "zfc": _Map(
        "Seed-based functional connectivity: Fisher z-transformed Pearson correlation between each voxel's "
        "band-pass filtered series and the mean series of the seed (Biswal et al. 1995)",
        ("fc", "seed"), ("FC", "FunImgARCWF", "zROI", False), ("desc-MeanSCA", "correlations"),
    ),
    "dc_binary": _Map(
        "Degree centrality, binarized: the number of voxels of the mask whose correlation with the voxel exceeds "
        "the threshold (Zuo et al. 2012)",
        ("dcbinarized", ""),
        ("DegreeCentrality", "FunImgARCWF", "DegreeCentrality_PositiveBinarizedSumBrainMap", False),
        ("desc-binarized", "degree-centrality"),
    ),
    "dc_weighted": _Map(
        "Degree centrality, weighted: the sum of the correlations above the threshold",
        ("dcweighted", ""),
        ("DegreeCentrality", "FunImgARCWF", "DegreeCentrality_PositiveWeightedSumBrainMap", False),
        ("desc-weighted", "degree-centrality"),
    ),
    "dc_binary_sm": _Map(
        f"Binarized degree centrality smoothed, then divided by its mean {_MASKED}",
        ("dcbinarized", "smoothMeannorm"),
        ("DegreeCentrality", "FunImgARCWF", "smDegreeCentrality_PositiveBinarizedSumBrainMap", True),
        ("desc-binarized-sm-meannorm", "degree-centrality"),
    ),
    "dc_binary_sz": _Map(
        f"Binarized degree centrality smoothed, then z-scored {_MASKED}",
        ("dcbinarized", "smoothZstd"),
        ("DegreeCentrality", "FunImgARCWF", "szDegreeCentrality_PositiveBinarizedSumBrainMap", True),
        ("desc-binarized-sm-zstd", "degree-centrality"),
    ),
    "dc_weighted_sm": _Map(
        f"Weighted degree centrality smoothed, then divided by its mean {_MASKED}",
        ("dcweighted", "smoothMeannorm"),
        ("DegreeCentrality", "FunImgARCWF", "smDegreeCentrality_PositiveWeightedSumBrainMap", True),
        ("desc-weighted-sm-meannorm", "degree-centrality"),
    ),
    "dc_weighted_sz": _Map(
        f"Weighted degree centrality smoothed, then z-scored {_MASKED}",
        ("dcweighted", "smoothZstd"),
        ("DegreeCentrality", "FunImgARCWF", "szDegreeCentrality_PositiveWeightedSumBrainMap", True),
        ("desc-weighted-sm-zstd", "degree-centrality"),
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- names


def bids_label(text: str) -> str:
    """A BIDS label (letters and digits only) from a name: ``"dc_binary_sm"`` -> ``"dcBinarySm"``."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", str(text)) if p]
    if not parts:
        raise ValueError(f"{text!r} has no letter or digit to make a BIDS label of")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _subject_label(subject: str) -> str:
    return bids_label(re.sub(r"^sub-", "", str(subject)))


def resolution_label(affine: Any) -> tuple[str, str]:
    """``(res label, Resolution text)`` from the voxel size: ``("3", "3 mm isotropic voxels")``."""
    sizes = [float(f"{v:.4g}") for v in voxel_size(np.asarray(affine, float))]

    def fmt(v: float) -> str:
        return f"{v:g}".replace(".", "p")

    if len(set(sizes)) == 1:
        return fmt(sizes[0]), f"{sizes[0]:g} mm isotropic voxels (res-{fmt(sizes[0])} is the voxel edge in mm)"
    label = "x".join(fmt(v) for v in sizes)
    return label, f"{' x '.join(f'{v:g}' for v in sizes)} mm voxels (res-{label}: voxel edges in mm)"


def _space_of(cohort: xr.Dataset, space: str | None) -> str:
    if space is not None:
        return bids_label(space)
    source = f"{cohort['bold'].attrs.get('source', '')} {cohort.attrs.get('source', '')}"
    match = re.search(r"_space-([A-Za-z0-9]+)", source)
    if match:
        return match.group(1)
    if re.search(r"FunImg[A-Za-z]*W", source):
        return _DPABI_SPACE
    return _DEFAULT_SPACE


def _task_of(cohort: xr.Dataset, task: str | None) -> str:
    if task is not None:
        return bids_label(task)
    match = re.search(r"_task-([A-Za-z0-9]+)", str(cohort["bold"].attrs.get("source", "")))
    return match.group(1) if match else "rest"


# --------------------------------------------------------------------------- writing


def _write_json(path: Path, obj: Mapping[str, Any]) -> Path:
    """Write JSON atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_image(img: xr.DataArray, stem: Path, fmt: str) -> Path:
    path = stem.with_name(f"{stem.name}.{fmt}")
    if fmt == "nii.zarr":
        return to_nifti_zarr(img, path, overwrite=True)
    return io.to_nifti(img, path)


# --------------------------------------------------------------------------- NIfTI-Zarr

_JNIFTI_DTYPES = {
    2: "uint8", 4: "int16", 8: "int32", 16: "single", 64: "double", 256: "int8",
    512: "uint16", 768: "uint32", 1024: "int64", 1280: "uint64",
}  # fmt: skip
_JNIFTI_XFORMS = {0: "", 1: "scanner_anat", 2: "aligned_anat", 3: "talairach", 4: "mni_152", 5: "template_other"}
_JNIFTI_SPACE_UNITS = {0: "", 1: "m", 2: "mm", 3: "um"}
_JNIFTI_TIME_UNITS = {0: "", 8: "s", 16: "ms", 24: "us"}
_OME_UNITS = {"m": "meter", "mm": "millimeter", "um": "micrometer", "s": "second", "ms": "millisecond",
              "us": "microsecond"}  # fmt: skip
_SLICE_CODES = {0: "", 1: "seq+", 2: "seq-", 3: "alt+", 4: "alt-", 5: "alt2+", 6: "alt2-"}


def _f32(value: Any) -> float:
    """A float32 header field as its shortest decimal (0.8, not 0.800000011920929)."""
    value = np.float32(value)
    return float(np.format_float_positional(value, unique=True)) if np.isfinite(value) else float(value)


def _text(value: Any) -> str:
    return np.asarray(value).tobytes().split(b"\0", 1)[0].decode("latin-1")


def nifti_header_json(header: nib.Nifti1Header) -> dict[str, Any]:
    """The JSON form of a NIfTI-1 header that NIfTI-Zarr stores next to the binary one (JNIfTI names)."""
    h = header
    ndim = int(h["dim"][0])
    units = int(h["xyzt_units"])
    dim_info = int(h["dim_info"])
    intent = int(h["intent_code"])
    params = [_f32(p) for p in (h["intent_p1"], h["intent_p2"], h["intent_p3"])]
    n_params = {2: 1, 3: 1, 4: 2, 5: 0, 6: 1}.get(intent, 0)
    srow = [[_f32(v) for v in h[f"srow_{axis}"]] for axis in "xyz"]
    slope, inter = _f32(h["scl_slope"]), _f32(h["scl_inter"])
    out: dict[str, Any] = {
        "NIIHeaderSize": int(h["sizeof_hdr"]),
        "DimInfo": {"Freq": dim_info & 3, "Phase": (dim_info >> 2) & 3, "Slice": (dim_info >> 4) & 3},
        "Dim": [int(d) for d in h["dim"][1 : 1 + ndim]],
        "Param1": params[0] if n_params > 0 else None,
        "Param2": params[1] if n_params > 1 else None,
        "Param3": params[2] if n_params > 2 else None,
        "Intent": {0: "", 2: "corr", 3: "ttest", 4: "ftest", 5: "zscore", 6: "chi2"}.get(intent, ""),
        "DataType": _JNIFTI_DTYPES.get(int(h["datatype"]), str(h.get_data_dtype())),
        "BitDepth": int(h["bitpix"]),
        "FirstSliceID": int(h["slice_start"]),
        "VoxelSize": [_f32(v) for v in h["pixdim"][1 : 1 + ndim]],
        "NIIByteOffset": int(h["vox_offset"]),
        "ScaleSlope": slope if np.isfinite(slope) else 0.0,
        "ScaleOffset": inter if np.isfinite(inter) else 0.0,
        "LastSliceID": int(h["slice_end"]),
        "SliceType": _SLICE_CODES.get(int(h["slice_code"]), ""),
        "Unit": {"L": _JNIFTI_SPACE_UNITS.get(units & 0x07, ""), "T": _JNIFTI_TIME_UNITS.get(units & 0x38, "")},
        "MaxIntensity": _f32(h["cal_max"]),
        "MinIntensity": _f32(h["cal_min"]),
        "SliceTime": _f32(h["slice_duration"]),
        "TimeOffset": _f32(h["toffset"]),
        "Description": _text(h["descrip"])[:80],
        "AuxFile": _text(h["aux_file"])[:24],
        "QForm": _JNIFTI_XFORMS.get(int(h["qform_code"]), ""),
        "SForm": _JNIFTI_XFORMS.get(int(h["sform_code"]), ""),
        "Quatern": {k: _f32(h[f"quatern_{k}"]) for k in "bcd"},
        "QuaternOffset": {k: _f32(h[f"qoffset_{k}"]) for k in "xyz"},
        "Affine": srow,
        "Name": _text(h["intent_name"]),
        "NIIFormat": _text(h["magic"]),
        "NIFTIExtension": [0, 0, 0, 0],
    }
    return out


def _is_nifti_zarr(path: Path) -> bool:
    meta = path / "zarr.json"
    if not meta.is_file() or not (path / "nifti" / "zarr.json").is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return "multiscales" in attrs.get("ome", attrs)


def to_nifti_zarr(img: xr.DataArray, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a 3-D map or 4-D series as NIfTI-Zarr (``.nii.zarr``): OME-Zarr 0.5 on Zarr v3 with the NIfTI header.

    Parameters
    ----------
    img : xarray.DataArray
        Dims ``(x, y, z)`` or ``(x, y, z, time)`` with ``attrs["affine"]`` (and ``tr``), as for
        :func:`brainarr.io.to_nifti`, which builds the header (sform/qform, units, TR).
    path : str or path-like
        Output folder, named ``*.nii.zarr``.
    overwrite : bool, default False
        Replace an existing NIfTI-Zarr at ``path`` (anything else there is never removed).

    Returns
    -------
    pathlib.Path

    Notes
    -----
    Layout (NIfTI-Zarr 1.0.rc1, github.com/neuroscales/nifti-zarr): the group's ``zarr.json``
    holds ``attributes.ome`` = ``{"version": "0.5", "multiscales": [...]}`` with axes
    ``t`` (time, second; 4-D only), ``z``, ``y``, ``x`` (space, millimeter), one level ``"0"``
    whose ``scale`` is the voxel size and, at the multiscale level, the TR as the time scale.
    Array ``0`` holds the voxels in C order ``[t,] z, y, x`` (the NIfTI array reversed),
    ``dimension_names`` the axis names, Blosc-compressed, chunks of at most 64 voxels a side
    and one volume. Array ``nifti`` holds the 348-byte NIfTI-1 header (uint8, one chunk,
    uncompressed); its attributes the JSON form (JNIfTI names). No pyramid is written (one
    level is a valid multiscale image). The folder is written under a temporary name and
    renamed, so a crash never leaves a partial image at ``path``.
    """
    import zarr
    from zarr.codecs import BloscCodec

    path = Path(path)
    if not path.name.endswith(".nii.zarr"):
        raise ValueError(f"{path}: a NIfTI-Zarr name must end in .nii.zarr")
    if path.exists() and not (overwrite and _is_nifti_zarr(path)):
        what = "is not a NIfTI-Zarr image" if overwrite else "exists (pass overwrite=True to replace it)"
        raise FileExistsError(f"{path} {what}; nothing was written")
    nii = io.to_nifti_image(img)
    header = nii.header
    header.set_slope_inter(1.0, 0.0)
    data = np.asarray(nii.dataobj)
    ndim = data.ndim
    zooms = [_f32(z) for z in header.get_zooms()]
    axes = ["t", "z", "y", "x"] if ndim == 4 else ["z", "y", "x"]
    stored = np.ascontiguousarray(data.transpose(tuple(range(ndim))[::-1]))
    space_unit = _OME_UNITS[_JNIFTI_SPACE_UNITS[int(header["xyzt_units"]) & 0x07] or "mm"]
    time_unit = _OME_UNITS.get(_JNIFTI_TIME_UNITS[int(header["xyzt_units"]) & 0x38] or "s", "second")
    ome_axes = [{"name": a, "type": "space", "unit": space_unit} for a in ("z", "y", "x")]
    if ndim == 4:
        ome_axes.insert(0, {"name": "t", "type": "time", "unit": time_unit})
    level_scale = ([1.0] if ndim == 4 else []) + zooms[:3][::-1]
    global_scale = [zooms[3], 1.0, 1.0, 1.0] if ndim == 4 else []
    multiscale: dict[str, Any] = {
        "name": path.name[: -len(".nii.zarr")],
        "axes": ome_axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": level_scale}]}],
    }
    if ndim == 4:  # the TR, common to every level (the specification's place for it)
        multiscale["coordinateTransformations"] = [{"type": "scale", "scale": global_scale}]
    chunks = ((1,) if ndim == 4 else ()) + tuple(min(64, n) for n in stored.shape[-3:])
    raw = np.frombuffer(header.structarr.tobytes(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        ome = {"ome": {"version": "0.5", "multiscales": [multiscale]}}
        group = zarr.create_group(store=str(tmp), zarr_format=3, attributes=ome)
        level = group.create_array(
            "0",
            shape=stored.shape,
            chunks=chunks,
            dtype=stored.dtype,
            compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")],
            fill_value=0,
            dimension_names=axes,
        )
        level[...] = stored
        head = group.create_array(
            "nifti",
            shape=raw.shape,
            chunks=raw.shape,
            dtype=np.uint8,
            compressors=None,
            fill_value=0,
            attributes=nifti_header_json(header),
        )
        head[...] = raw
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
        if old.exists():
            shutil.rmtree(old)
    return path


def read_nifti_zarr(path: str | os.PathLike, *, name: str | None = None) -> xr.DataArray:
    """Open a NIfTI-Zarr image (``.nii.zarr``) lazily, as :func:`brainarr.io.load_nifti` opens a NIfTI file.

    Parameters
    ----------
    path : str or path-like
        A NIfTI-Zarr folder (OME-Zarr 0.4 or 0.5 with a ``nifti`` header array).
    name : str, optional
        Name of the result; ``"bold"`` for 4-D and the file stem for 3-D by default.

    Returns
    -------
    xarray.DataArray
        Dims ``(x, y, z)`` or ``(x, y, z, time)``, dask-backed, in the stored dtype (scaled by
        ``scl_slope``/``scl_inter`` when set); MNI coordinates from the binary header's affine
        (which, by the specification, takes precedence over the OME metadata); ``attrs``
        ``affine``, ``tr`` (4-D), ``units``, ``source``.

    Raises
    ------
    InputFileError
        If ``path`` is not a NIfTI-Zarr image (no ``nifti`` header array, no multiscales).
    """
    import dask.array as da
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIfTI-Zarr image not found: {path}")
    try:
        group = zarr.open_group(str(path), mode="r")
        raw = np.asarray(group["nifti"][...], dtype=np.uint8).tobytes()
        attrs = dict(group.attrs)
        multiscales = dict(attrs.get("ome", attrs))["multiscales"]
        level0 = multiscales[0]["datasets"][0]["path"]
        axes = [a["name"] for a in multiscales[0]["axes"]]
        array = group[level0]
    except (KeyError, IndexError, TypeError, ValueError, FileNotFoundError) as err:
        raise InputFileError(
            f"{path} is not a NIfTI-Zarr image (an OME-Zarr multiscale group with a 'nifti' header array): {err}"
        ) from err
    klass = nib.Nifti2Header if len(raw) >= 540 and int(np.frombuffer(raw[:4], "<i4")[0]) == 540 else nib.Nifti1Header
    header = klass.from_fileobj(BytesIO(raw))
    data = da.from_zarr(array)
    order = [axes.index(a) for a in ("x", "y", "z", "t") if a in axes]
    data = data.transpose(order)
    if data.ndim not in (3, 4):
        raise InputFileError(f"{path}: axes {axes}; brainarr reads 3-D maps and 4-D series")
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope != 1.0 or (inter or 0.0) != 0.0):
        data = data * slope + (inter or 0.0)
    affine = np.asarray(header.get_best_affine(), float)
    shape = tuple(int(s) for s in data.shape)
    coords = spatial_coords(affine, shape[:3], source=str(path))
    out_attrs: dict[str, Any] = {"affine": affine.tolist(), "units": "arbitrary", "source": str(path)}
    dims: tuple[str, ...] = SPATIAL
    if data.ndim == 4:
        dims = (*SPATIAL, TIME)
        tr = io._tr_from_header(header)
        if tr is None:
            raise MissingMetadataError(f"{path}: the NIfTI header has no repetition time (pixdim[4])")
        out_attrs["tr"] = tr
        coords[TIME] = xr.Variable(TIME, np.arange(shape[3]) * tr, {"units": "s", "long_name": "time"})
    if name is None:
        name = (
            "bold"
            if data.ndim == 4
            else path.name[: -len(".nii.zarr")]
            if path.name.endswith(".nii.zarr")
            else path.stem
        )
    return xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=out_attrs)


# --------------------------------------------------------------------------- the study


def _stored_config(store: str, storage_options: Mapping[str, Any] | None):
    from brainarr.config import ConfigError, StudyConfig

    try:
        config = pipeline._stored_config(store, storage_options)
    except ConfigError:  # a record this brainarr cannot read: the defaults still name the group level
        config = None
    return config if config is not None else StudyConfig()


def _committed(store: str, cohort: xr.Dataset, storage_options) -> dict[str, list[str]]:
    """The derived maps of the store, each checked complete; raises naming the store and the maps."""
    state = pipeline.derived_state(store, storage_options=storage_options)
    subjects = [str(s) for s in cohort[SUBJECT].values]
    names = [n for names in pipeline.FAMILY_VARIABLES.values() for n in names if n in state]
    if not names:
        raise MissingMetadataError(
            f"{store}: the store has no subject maps (derived variables of 'brainarr run'); run "
            f"'brainarr run --store {store}' first"
        )
    incomplete = {n: sorted(set(subjects) - set(state[n].get("subjects", []))) for n in names}
    incomplete = {n: missing for n, missing in incomplete.items() if missing}
    absent = [n for n in names if n not in cohort]
    if incomplete or absent:
        listed = "; ".join(f"{n} lacks {len(m)} subject(s) ({', '.join(m[:5])})" for n, m in incomplete.items())
        if absent:
            listed = "; ".join(filter(None, [listed, f"{absent} are recorded but not stored"]))
        raise MissingMetadataError(
            f"{store}: subject maps are incomplete: {listed}. Run 'brainarr run --store {store}' to finish them "
            "(it resumes where it stopped); nothing was exported"
        )
    return {n: subjects for n in names}


def _group_maps(
    store: str, cohort: xr.Dataset, results: Path | None, config, names: Sequence[str]
) -> tuple[Path | None, dict[str, tuple[Path, Path]]]:
    """``{variant: (t map, GRF-thresholded t map)}`` of the results folder, checked against the store."""
    explicit = results is not None
    folder = Path(results) if explicit else pipeline._default_output(store, config)
    maps_dir = folder / "maps"
    found = sorted(p for p in maps_dir.glob("*_t.nii.gz")) if maps_dir.is_dir() else []
    if not found:
        if explicit:
            raise MissingMetadataError(
                f"{folder}: no group t maps (maps/<variant>_t.nii.gz): is it the results folder of 'brainarr run' "
                f"on {store}? ([output] nifti = true writes them; 'brainarr report {store}' rebuilds them)"
            )
        logger.warning("export: no group t maps in %s; exporting the subject maps only", folder)
        return None, {}
    seeds = [str(s) for s in cohort[SEED].values] if SEED in cohort.coords else []
    known: dict[str, str] = {}  # group variant -> family, for this store's seeds
    for family, variants in pipeline.GROUP_VARIANTS.items():
        for variant in variants:
            known.update({f"{variant}_{s}": family for s in seeds} if variant == "zfc" else {variant: family})
    out = {}
    for t_map in found:
        variant = t_map.name[: -len("_t.nii.gz")]
        if variant not in known:  # e.g. <variant>_perm_t.nii.gz of permutation inference
            continue
        grf = maps_dir / f"{variant}_t_grf.nii.gz"
        if not grf.is_file():
            raise MissingMetadataError(f"{folder}: group map {variant!r} has {t_map.name} but no {grf.name}")
        out[variant] = (t_map, grf)
    expected = [
        v for v, family in known.items() if all(n in names for n in pipeline.FAMILY_VARIABLES[family])
    ]  # fmt: skip
    missing = [v for v in expected if v not in out]
    if missing:
        raise MissingMetadataError(
            f"{folder}: group maps are incomplete: no t map for {missing} (the store {store} has their subject "
            f"maps); run 'brainarr report {store}' to rebuild the group level, or pass results= the right folder"
        )
    return folder, out


def _load_group_map(path: Path, cohort: xr.Dataset, store: str) -> xr.DataArray:
    dtype = np.dtype(nib.load(path).get_data_dtype())  # the t maps' own (float64): exact copies
    img = io.load_nifti(path, dtype=dtype if dtype.kind == "f" else np.float32).load()
    affine = np.asarray(cohort.attrs["affine"], float)
    same = tuple(img.sizes[d] for d in SPATIAL) == tuple(cohort.sizes[d] for d in SPATIAL) and np.allclose(
        np.asarray(img.attrs["affine"], float), affine, atol=1e-4
    )
    if not same:
        raise GridMismatchError(
            f"group map {path} is not on the grid of the store {store} (shape {img.shape}, affine "
            f"{np.round(img.attrs['affine'], 3).tolist()}): is the results folder that of another study?"
        )
    return img


def _included_subjects(folder: Path | None, config, subjects: list[str]) -> list[str]:
    """The subjects that entered the group test: by the results' motion table and the stored config."""
    table = folder / "tables" / "motion_qc.csv" if folder is not None else None
    if table is None or not table.is_file():
        return subjects
    import pandas as pd

    qc = pd.read_csv(table, dtype={"subject": str})
    g = config.group
    keep = qc[g.by].astype(str).isin(list(g.groups)) if g.by in qc else pd.Series(True, index=qc.index)
    if g.exclude_movers and "excluded" in qc:
        keep &= ~qc["excluded"].astype(bool)
    chosen = set(qc.loc[keep, "subject"].astype(str))
    return [s for s in subjects if s in chosen]


class _Layout:
    """File names of one layout; ``stem`` paths are relative to the export folder, without extension."""

    name = ""
    sidecars = True

    def __init__(self, cohort: xr.Dataset, *, space: str, task: str, res: str) -> None:
        self.cohort, self.space, self.task, self.res = cohort, space, task, res

    def subject_stem(self, name: str, subject: str, seed: str | None, seed_index: int) -> Path:
        raise NotImplementedError

    def group_stems(self, variant: str, contrast: str) -> tuple[Path, Path]:
        raise NotImplementedError


class _Bids(_Layout):
    name = "bids"

    def subject_stem(self, name, subject, seed, seed_index):
        sub = _subject_label(subject)
        stat, desc = _MAPS[name].bids
        if seed is not None:
            desc = f"{desc}{bids_label(seed)[:1].upper()}{bids_label(seed)[1:]}"
        entities = f"sub-{sub}_task-{self.task}_space-{self.space}_res-{self.res}_stat-{stat}"
        if desc:
            entities += f"_desc-{desc}"
        return Path(f"sub-{sub}", "func", f"{entities}_boldmap")

    def group_stems(self, variant, contrast):
        base = (
            f"task-{self.task}_space-{self.space}_res-{self.res}_contrast-{contrast}_stat-t_desc-{bids_label(variant)}"
        )
        return Path("group", f"{base}_statmap"), Path("group", f"{base}GRF_statmap")


class _Dpabi(_Layout):
    name = "dpabi"
    sidecars = False

    def subject_stem(self, name, subject, seed, seed_index):
        measure, stage, prefix, smoothed = _MAPS[name].dpabi
        results = "ResultsS" if smoothed else "Results"
        if seed is not None:  # y_SCA: zROI<i>FCMap_<subject> for several seeds, zFCMap_<subject> for one
            n_seeds = self.cohort.sizes.get(SEED, 1)
            prefix = f"zROI{seed_index + 1}FCMap" if n_seeds > 1 else "zFCMap"
        return Path(results, f"{measure}_{stage}", f"{prefix}_{subject}")

    def group_stems(self, variant, contrast):
        stem = f"T2_{self._measure(variant)}"
        return Path("GroupAnalysis", stem), Path("GroupAnalysis", f"ClusterThresholded_{stem}")

    def _measure(self, variant: str) -> str:
        if variant.startswith("zfc_"):
            seeds = [str(s) for s in self.cohort[SEED].values]
            seed = variant[len("zfc_") :]
            return f"zROI{seeds.index(seed) + 1}FC" if seed in seeds and len(seeds) > 1 else "zFC"
        prefix = _MAPS[variant].dpabi[2]
        return prefix[: -len("Map")] if prefix.endswith("Map") else prefix


class _Cpac(_Layout):
    name = "cpac"

    def _resource(self, name: str) -> str:
        desc, suffix = _MAPS[name].cpac
        return "_".join(filter(None, ["space-template", desc, suffix]))

    def subject_stem(self, name, subject, seed, seed_index):
        sub = _subject_label(subject)
        return Path(
            f"pipeline_{_PIPELINE}",
            f"sub-{sub}",
            "ses-1",
            "func",
            f"sub-{sub}_ses-1_task-{self.task}_{self._resource(name)}",
        )

    def group_stems(self, variant, contrast):
        if variant.startswith("zfc_"):
            resource = f"{self._resource('zfc')}_{bids_label(variant[len('zfc_') :])}"
        else:
            resource = self._resource(variant)
        base = Path(
            "cpac_group_analysis", "FSL_FEAT", f"pipeline_{_PIPELINE}", f"group_model_{_PIPELINE}", resource, "stats"
        )
        return base / "tstat1", base / "thresh_tstat1"


_LAYOUT_CLASSES = {"bids": _Bids, "dpabi": _Dpabi, "cpac": _Cpac}

#: The map each normalised or smoothed map is computed from (its BIDS ``Sources``).
_DERIVED_FROM = {
    "malff": "alff", "zalff": "alff", "mfalff": "falff", "zfalff": "falff", "smreho": "reho",
    "dc_binary_sm": "dc_binary", "dc_binary_sz": "dc_binary", "dc_weighted_sm": "dc_weighted",
    "dc_weighted_sz": "dc_weighted",
}  # fmt: skip


def _params(var: xr.DataArray) -> dict[str, Any]:
    text = var.attrs.get("params")
    if not text:
        return {}
    try:
        return dict(json.loads(text))
    except (TypeError, ValueError):
        return {"params": str(text)}


def _generated_by() -> list[dict[str, str]]:
    return [{"Name": "brainarr", "Version": __version__, "CodeURL": _CODE_URL}]


def _check_target(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a folder; nothing was written")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{directory} is not empty; export into a new or empty folder, or pass overwrite=True (--overwrite) to "
            "replace the files of the same names (no other file there is touched)"
        )


def export(
    store: str | os.PathLike,
    directory: str | os.PathLike,
    *,
    layout: str = "bids",
    format: str | None = None,
    results: str | os.PathLike | None = None,
    space: str | None = None,
    task: str | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a study's subject maps and group t maps in the layout of BIDS derivatives, DPABI or C-PAC.

    Parameters
    ----------
    store : str or path-like
        A cohort store processed by :func:`brainarr.pipeline.run` (every derived map complete).
    directory : str or path-like
        Output folder, created if absent; it must be empty unless ``overwrite``.
    layout : {"bids", "dpabi", "cpac"}, default "bids"
        File and folder naming (see the module documentation).
    format : {"nii.gz", "nii", "nii.zarr"}, optional
        Image format; default the layout's own (``.nii`` for DPABI, ``.nii.gz`` otherwise).
    results : str or path-like, optional
        The results folder of the run (``maps/<variant>_t.nii.gz``); default the run's output
        folder next to the store. Without group t maps there (and ``results`` not given) only
        the subject maps are exported, with a warning.
    space, task : str, optional
        BIDS ``space-`` and ``task-`` labels; by default from the ingested file names, else
        ``MNI152NLin2009aSym`` (``IXI549Space`` for DPABI inputs) and ``rest``.
    overwrite : bool, default False
        Export into a non-empty folder, replacing files of the same names; other files there
        are never touched.
    storage_options : mapping, optional
        fsspec options of a remote store.

    Returns
    -------
    list of pathlib.Path
        Every file (or ``.nii.zarr`` folder) written, in order.

    Raises
    ------
    MissingMetadataError
        If the store has no derived maps, a map lacks subjects (an interrupted run), or
        ``results`` holds no or incomplete group maps; nothing is written then.
    GridMismatchError
        If a group map is not on the store's grid.
    FileExistsError
        If ``directory`` is not empty and ``overwrite`` is False.

    Notes
    -----
    One subject map is in memory at a time (a subject's row of one variable); every file is
    written under a temporary name and renamed. Subject labels are the store's ids without
    ``sub-`` and with non-alphanumeric characters removed (BIDS, C-PAC); DPABI keeps the ids.
    """
    from brainarr.cohort import open_cohort

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    fmt = _NATIVE_FORMAT[layout] if format is None else str(format).lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    store = str(store)
    directory = Path(directory)
    cohort = open_cohort(store, storage_options=storage_options)
    maps = _committed(store, cohort, storage_options)
    config = _stored_config(store, storage_options)
    folder, group = _group_maps(store, cohort, Path(results) if results is not None else None, config, list(maps))
    subjects = [str(s) for s in cohort[SUBJECT].values]
    labels = [_subject_label(s) for s in subjects]
    if layout != "dpabi" and len(set(labels)) != len(labels):
        raise ValueError(f"{store}: subject ids {subjects} give clashing BIDS labels {labels}; rename the subjects")
    _check_target(directory, overwrite)
    affine = cohort.attrs["affine"]
    res, resolution = resolution_label(affine)
    names = _LAYOUT_CLASSES[layout](
        cohort, space=_space_of(cohort, space), task=_task_of(cohort, task), res=res
    )  # fmt: skip
    written: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)
    bold_units = str(cohort["bold"].attrs.get("units", "arbitrary"))
    seeds = [str(s) for s in cohort[SEED].values] if SEED in cohort.coords else []
    subject_files: dict[tuple[str, str | None], list[str]] = {}
    if layout == "bids":
        description = {
            "Name": f"brainarr derivatives of {Path(store).name}",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [
                {
                    **_generated_by()[0],
                    "Description": "subject-level resting-state maps and group t maps of brainarr.pipeline.run",
                }
            ],
            "DatasetLinks": {"store": Path(store).resolve().as_uri() if "://" not in store else store},
        }
        written.append(_write_json(directory / "dataset_description.json", description))
    for index, subject in enumerate(subjects):
        for name in maps:
            var = cohort[name]
            row = var.isel({SUBJECT: index}, drop=True).load()
            row.attrs = {"affine": affine}
            info = _MAPS[name]
            if SEED in row.dims and layout == "cpac":
                stack = row.transpose(SEED, *SPATIAL).rename({SEED: TIME}).transpose(*SPATIAL, TIME)
                stack = stack.drop_vars([c for c in stack.coords if c not in SPATIAL])
                stem = names.subject_stem(name, subject, None, 0)
                written.append(_write_image(stack, directory / stem, fmt))
                sidecar = _sidecar(info, name, var, subject, bold_units, resolution, names, layout)
                sidecar["Seeds"] = seeds
                written.append(_write_json((directory / stem).with_name(stem.name + ".json"), sidecar))
                continue
            parts = (
                [(s, i, row.sel({SEED: s}, drop=True)) for i, s in enumerate(seeds)]
                if SEED in row.dims
                else [(None, 0, row)]
            )
            for seed, seed_index, img in parts:
                img = img.drop_vars([c for c in img.coords if c not in SPATIAL])
                img.attrs = {"affine": affine}
                stem = names.subject_stem(name, subject, seed, seed_index)
                written.append(_write_image(img, directory / stem, fmt))
                subject_files.setdefault((name, seed), []).append(f"{stem.as_posix()}.{fmt}")
                if names.sidecars:
                    sidecar = _sidecar(info, name, var, subject, bold_units, resolution, names, layout, seed=seed)
                    parent = _DERIVED_FROM.get(name)
                    if layout == "bids" and parent in maps:
                        sidecar["Sources"] = [f"bids::{names.subject_stem(parent, subject, None, 0).as_posix()}.{fmt}"]
                    written.append(_write_json((directory / stem).with_name(stem.name + ".json"), sidecar))
            if SEED in row.dims and layout == "dpabi":
                key = names.subject_stem(name, subject, seeds[0], 0).parent / f"ROI_OrderKey_FCMap_{subject}.tsv"
                rows = "".join(f"{i + 1}\t{s}\n" for i, s in enumerate(seeds))
                written.append(_write_text(directory / key, "Order\tROI Definition\n" + rows))
    if group:
        g = config.group
        contrast = f"{bids_label(g.groups[0])}Minus{bids_label(g.groups[1])[:1].upper()}{bids_label(g.groups[1])[1:]}"
        included = _included_subjects(folder, config, subjects)
        for variant, (t_path, grf_path) in group.items():
            t_stem, grf_stem = names.group_stems(variant, contrast)
            base_name, seed = ("zfc", variant[len("zfc_") :]) if variant.startswith("zfc_") else (variant, None)
            for kind, source, stem in (("t", t_path, t_stem), ("grf", grf_path, grf_stem)):
                img = _load_group_map(source, cohort, store)
                img = img.drop_vars([c for c in img.coords if c not in SPATIAL])
                img.attrs = {"affine": affine}
                written.append(_write_image(img, directory / stem, fmt))
                if names.sidecars:
                    sources = [
                        f"bids::{f}"
                        for s, f in zip(subjects, subject_files.get((base_name, seed), []), strict=False)
                        if s in included
                    ]
                    sidecar = _group_sidecar(variant, kind, config, resolution, names, sources, t_stem, fmt)
                    written.append(_write_json((directory / stem).with_name(stem.name + ".json"), sidecar))
    logger.info("export: %d files (%s, %s) written to %s", len(written), layout, fmt, directory)
    return written


def _sidecar(info: _Map, name, var, subject, bold_units, resolution, names: _Layout, layout, *, seed=None) -> dict:
    description = info.description + (f"; seed {seed}" if seed is not None else "")
    params = _params(var)
    out: dict[str, Any] = {
        "Description": description,
        "Units": bold_units if info.units == "bold" else info.units,
        "Resolution": resolution,
        "Parameters": params,
        "Sources": ["bids:store:bold"],
        "GeneratedBy": _generated_by(),
        "BrainarrVariable": name,
    }
    if seed is not None:
        out["Seed"] = seed
    if layout == "cpac":
        out["Template"] = names.space
        out.pop("Resolution")
    return out


def _group_sidecar(variant, kind, config, resolution, names: _Layout, sources, t_stem: Path, fmt) -> dict:
    g = config.group
    family = family_of(variant)
    thr = g.grf.get(family)
    out: dict[str, Any] = {
        "Description": (
            f"Two-sample t statistic of {variant}: {g.groups[0]} minus {g.groups[1]} (by {g.by}), "
            f"covariates {', '.join(g.covariates) or 'none'}; "
            + (
                "GRF cluster-corrected: voxels outside surviving clusters set to 0"
                if kind == "grf"
                else "unthresholded"
            )
        ),
        "Units": "1",
        "Contrast": f"{g.groups[0]} - {g.groups[1]}",
        "Statistic": "t",
        "Covariates": list(g.covariates),
        "GeneratedBy": _generated_by(),
        "BrainarrVariant": variant,
    }
    if thr is not None and kind == "grf":
        out["Thresholds"] = {"VoxelP": thr.voxel_p, "ClusterP": thr.cluster_p, "TwoTailed": thr.two_tailed}
    if names.name == "bids":
        out["Resolution"] = resolution
        out["Sources"] = sources if kind == "t" else [f"bids::{t_stem.as_posix()}.{fmt}"]
    if names.name == "cpac":
        out["Template"] = names.space
    return out
