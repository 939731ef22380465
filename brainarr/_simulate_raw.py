r"""The simulator's raw mode: a BIDS raw dataset (native EPI and T1 per subject) with known truth.

:func:`simulate_raw` writes, for each subject of :func:`brainarr.datasets.simulate_cohort`,
the images a scanner would have written before any preprocessing: a T1-weighted image and a
native-space, oblique, slice-timed EPI series with head motion, whose signal is the cohort's
MNI-space BOLD pulled through a known nonlinear warp. Every transform is returned, so that
realignment, slice-timing correction, coregistration and normalisation can be checked
against the truth, and the planted group effects are those of ``simulate_cohort`` with the
same seed.

Geometry
--------
Three frames are involved: the scanner (native world, mm), in which the NIfTI affines are
written; the subject's head, which moves in the scanner; and MNI space. A native point
:math:`w` of volume 0 (and of the T1) lies at the MNI point

.. math::

    \varphi(w) = p + u(p), \qquad p = H w,

with :math:`H` the subject's rigid head offset (``rigid_matrix`` of six parameters) and
:math:`u` a smooth displacement field (a sum of a few plane waves of 100-160 mm wavelength,
scaled to a largest displacement of ``max_warp`` mm). Voxel :math:`v` of volume :math:`t`
shows the head point :math:`Q_t M v`, with :math:`M` the EPI affine and
:math:`Q_t` = ``rigid_matrix(rp[t])``: ``rp`` are the realignment parameters in SPM's
convention (``rp_*.txt``, relative to volume 0), the parameters of the voxel-to-world
matrix that realigns volume :math:`t` (:math:`Q_t M`) relative to that of volume 0.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainarr._core import slices
from brainarr._core.confounds import MOTION_PARAMS
from brainarr._core.fft import fourier_shift
from brainarr._core.rigid import rigid_matrix

__all__ = ["EPI_SHAPE", "EPI_VOXEL", "Warp", "simulate_raw"]

#: Matrix of the simulated EPI (x, y, z voxels): the reference study's acquisition.
EPI_SHAPE = (64, 64, 43)
#: Voxel size of the simulated EPI (mm).
EPI_VOXEL = (3.4, 3.4, 3.2)
#: Obliquity of the EPI slab: pitch and yaw (rad) of its rotation from the scanner axes.
_EPI_TILT = (math.radians(15.0), math.radians(4.0))
#: Scanner-world centre (mm) of the EPI field of view.
_EPI_CENTRE = (0.0, -18.0, 14.0)
#: Native box (mm) covered by the T1: the MNI head plus a margin for the head offset.
_T1_BOX = ((-100.0, 100.0), (-140.0, 105.0), (-80.0, 115.0))
#: Exclusion limits of the reference study (DPABI): largest translation (mm) and rotation (deg).
MAX_TRANSLATION, MAX_ROTATION = 3.0, 3.0

_TAG_RAW = 31  # seed-sequence tag of the raw geometry (the cohort's tags are 11-15)
_N_WAVES = 6
_HEAD_SD = (4.0, 4.0, 3.0, math.radians(3.0), math.radians(3.0), math.radians(3.0))
_FINE_MM = 2.0  # voxel of the tissue maps giving the EPI its anatomical contrast


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


def _epi_affine() -> np.ndarray:
    """Oblique voxel-to-scanner matrix of the EPI: x flipped (LAS storage), slab tilted."""
    rot = rigid_matrix(np.array([0.0, 0.0, 0.0, _EPI_TILT[0], 0.0, _EPI_TILT[1]]))
    scale = np.diag([-EPI_VOXEL[0], EPI_VOXEL[1], EPI_VOXEL[2], 1.0])
    centre_vox = (np.array(EPI_SHAPE, float) - 1.0) / 2.0
    affine = rot @ scale
    affine[:3, 3] = np.asarray(_EPI_CENTRE) - affine[:3, :3] @ centre_vox
    return affine


def _t1_affine(voxel: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    shape = tuple(math.ceil((hi - lo) / voxel) + 1 for lo, hi in _T1_BOX)
    affine = np.diag([-voxel, voxel, voxel, 1.0])
    affine[:3, 3] = [_T1_BOX[0][1], _T1_BOX[1][0], _T1_BOX[2][0]]
    return affine, shape  # type: ignore[return-value]


class Warp:
    r"""The known native-to-MNI transform of one subject: a rigid head offset then a smooth warp.

    Parameters
    ----------
    head : array (6,)
        Head offset in SPM parameters (mm, rad): :math:`H` = ``rigid_matrix(head)``.
    freqs : array (k, 3)
        Angular wave vectors (rad/mm) of the plane waves of :math:`u`.
    phases : array (k,)
        Their phases (rad).
    amplitudes : array (k, 3)
        Displacement (mm) carried by each wave.

    Notes
    -----
    :math:`u(p) = \sum_k a_k \sin(f_k \cdot p + \theta_k)`, with :math:`|J_u| < 1`, so that
    :math:`\varphi` is invertible: the inverse solves :math:`p = m - u(p)` by fixed-point
    iteration (a contraction), then :math:`w = H^{-1} p`.
    """

    def __init__(self, head: np.ndarray, freqs: np.ndarray, phases: np.ndarray, amplitudes: np.ndarray) -> None:
        self.head = np.asarray(head, float)
        self.head_matrix = rigid_matrix(self.head)
        self.freqs, self.phases, self.amplitudes = (np.asarray(a, float) for a in (freqs, phases, amplitudes))

    def displacement(self, p: np.ndarray) -> np.ndarray:
        """The displacement :math:`u(p)` (mm) at head points ``p`` (..., 3) in mm, in the dtype of ``p``."""
        dtype = p.dtype if p.dtype == np.float32 else np.float64
        freqs, phases, amplitudes = (a.astype(dtype, copy=False) for a in (self.freqs, self.phases, self.amplitudes))
        return np.sin(p @ freqs.T + phases) @ amplitudes

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """MNI points (mm) of native scanner points ``w`` (..., 3) in mm."""
        matrix = self.head_matrix.astype(w.dtype if w.dtype == np.float32 else np.float64, copy=False)
        p = w @ matrix[:3, :3].T + matrix[:3, 3]
        return p + self.displacement(p)

    def inverse(self, m: np.ndarray, *, n_iter: int = 30) -> np.ndarray:
        """Native scanner points (mm) of MNI points ``m`` (..., 3) in mm."""
        m = np.asarray(m, float)
        p = m.copy()
        for _ in range(n_iter):
            p = m - self.displacement(p)
        inv = np.linalg.inv(self.head_matrix)
        return p @ inv[:3, :3].T + inv[:3, 3]


def _make_warp(rng: np.random.Generator, max_warp: float) -> Warp:
    head = rng.normal(0.0, 1.0, 6) * np.asarray(_HEAD_SD)
    directions = rng.normal(size=(_N_WAVES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = rng.uniform(100.0, 160.0, _N_WAVES)
    freqs = directions * (2 * np.pi / wavelengths)[:, None]
    phases = rng.uniform(0.0, 2 * np.pi, _N_WAVES)
    amplitudes = rng.normal(size=(_N_WAVES, 3))
    warp = Warp(head, freqs, phases, amplitudes)
    # scale to the largest displacement over the brain's box
    axes = [np.arange(lo, hi + 1, 6.0) for lo, hi in ((-75, 75), (-110, 75), (-60, 85))]
    box = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    largest = float(np.linalg.norm(warp.displacement(box), axis=-1).max())
    warp.amplitudes *= max_warp / largest
    return warp


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------


def _world_to_index(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Fractional voxel indices (3, ...) of world points (..., 3) in an image with ``affine``."""
    inv = np.linalg.inv(affine)
    return np.moveaxis(points @ inv[:3, :3].T + inv[:3, 3], -1, 0)


def _sample(volume: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Trilinear samples of a 3-D ``volume`` at fractional indices (3, ...); 0 outside."""
    return ndimage.map_coordinates(volume, index, order=1, mode="grid-constant", cval=0.0, prefilter=False)


# ----------------------------------------------------------------------------------------------
# Static inputs
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _template_t1() -> tuple[np.ndarray, np.ndarray]:
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    data = np.asarray(img.get_fdata(), np.float32)
    data.setflags(write=False)
    return data, np.asarray(img.affine, float)


@lru_cache(maxsize=2)
def _epi_contrast() -> tuple[np.ndarray, np.ndarray]:
    """EPI-like baseline on a 2 mm MNI grid: the cohort's tissue weights (GM 800, WM 600, CSF 1000)."""
    from brainarr.datasets import study_grid, tissue_probability

    grid = study_grid(_FINE_MM)
    gm, wm, csf = (tissue_probability(grid, t).values.astype(np.float32) for t in ("gm", "wm", "csf"))
    baseline = 800.0 * gm + 600.0 * wm + 1000.0 * csf
    baseline.setflags(write=False)
    return baseline, np.asarray(grid.attrs["affine"], float)


# ----------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------


def _save(data: np.ndarray, affine: np.ndarray, path: Path, *, tr: float | None = None) -> None:
    """Write int16 NIfTI as a scanner does (rounded, clipped), sform and qform scanner-based."""
    values = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    img = nib.Nifti1Image(values, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    if tr is not None:
        img.header.set_zooms((*img.header.get_zooms()[:3], tr))
        img.header.set_dim_info(slice=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def _write_t1(path: Path, warp: Warp, voxel: float, rng: np.random.Generator) -> np.ndarray:
    """The subject's T1: the MNI152 template at ``phi(w)`` for each native voxel ``w`` (slab by slab)."""
    template, tpl_affine = _template_t1()
    affine, shape = _t1_affine(voxel)
    out = np.empty(shape, np.float32)
    ij = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij"), -1).astype(float)
    for k in range(shape[2]):
        vox = np.concatenate([ij, np.full((*ij.shape[:2], 1), float(k))], axis=-1)
        world = vox @ affine[:3, :3].T + affine[:3, 3]
        out[..., k] = _sample(template, _world_to_index(tpl_affine, warp(world)))
    scale = 1000.0 / max(float(out.max()), 1e-6)
    out *= scale
    out += rng.normal(0.0, 5.0, out.shape).astype(np.float32)  # thermal noise, about 1 % of WM
    _save(np.maximum(out, 0.0), affine, path)
    return affine


def _native_series(
    bold: np.ndarray,
    coarse_affine: np.ndarray,
    coarse_baseline: np.ndarray,
    motion_maps: np.ndarray,
    motion: np.ndarray,
    warp: Warp,
    slice_times: np.ndarray,
    tr: float,
) -> np.ndarray:
    """The native EPI series (x, y, z, time): the MNI BOLD sampled at each volume's pose, slice-timed.

    The cohort's baseline (at its voxel size) is replaced by the 2 mm tissue contrast, so the
    EPI has the anatomical detail coregistration needs; the fluctuations are the cohort's, less
    its motion term: in MNI space the cohort imitates head motion by the first-order image change
    of its realignment parameters, while here the head really moves (each volume is sampled at its
    pose), so keeping that term would move the image twice.
    """
    fine, fine_affine = _epi_contrast()
    epi = _epi_affine()
    vox = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in EPI_SHAPE), indexing="ij"), -1)
    scanner = (vox @ epi[:3, :3].T + epi[:3, 3]).astype(np.float32)  # float32: 1e-5 mm, twice as fast
    n_time = bold.shape[-1]
    out = np.empty((*EPI_SHAPE, n_time), np.float32)
    fluctuation = bold - coarse_baseline[..., None]
    fluctuation -= np.einsum("jxyz,tj->xyzt", motion_maps, motion.astype(np.float32), dtype=np.float32)
    pose = rigid_matrix(motion).astype(np.float32)
    # the MNI point of every voxel of every volume, computed once; a volume at a time (the
    # 4-D stack would be 12 bytes per voxel and volume) when it would not fit in 64 MiB
    keep = n_time * scanner.size * 4 <= 64 * 2**20
    mni = [warp(scanner @ pose[t, :3, :3].T + pose[t, :3, 3]) for t in range(n_time)] if keep else None

    def where(t: int) -> np.ndarray:
        return mni[t] if mni is not None else warp(scanner @ pose[t, :3, :3].T + pose[t, :3, 3])

    for t in range(n_time):
        out[..., t] = _sample(fluctuation[..., t], _world_to_index(coarse_affine, where(t)))
    # slice z sees the fluctuations at n TR + t_z; the anatomy is where the head is at volume n
    # (shifting it too would smear a sudden movement into the volumes before it)
    for z, when in enumerate(slice_times):
        out[:, :, z] = fourier_shift(out[:, :, z], when / tr)
    for t in range(n_time):
        out[..., t] += _sample(fine, _world_to_index(fine_affine, where(t)))
    return out


# ----------------------------------------------------------------------------------------------
# Public
# ----------------------------------------------------------------------------------------------


def simulate_raw(
    root: str | Path,
    *,
    n_patients: int = 31,
    n_controls: int = 32,
    seed: int = 0,
    n_volumes: int = 240,
    tr: float = 2.0,
    n_movers: int = 4,
    voxel_size: float = 6.0,
    t1_voxel_size: float = 1.0,
    effect_size: float = 1.0,
    max_warp: float = 7.0,
) -> dict[str, Any]:
    r"""Write a simulated raw BIDS dataset (native EPI + T1 per subject) and return its truth.

    Parameters
    ----------
    root : path
        Folder to write the dataset into: new, empty, or an earlier ``simulate_raw`` dataset
        (whose files of the same names are replaced). A file or any other non-empty folder is
        refused (:class:`FileExistsError`) before anything is written.
    n_patients, n_controls : int, default 31, 32
        Group sizes, as :func:`brainarr.datasets.simulate_cohort`.
    seed : int, default 0
        Seed of everything: the same seed gives the same files, and the same signal, motion,
        phenotypes and planted effects as ``simulate_cohort(..., seed=seed)``.
    n_volumes : int, default 240
        Volumes per EPI run.
    tr : float, default 2.0
        Repetition time (s).
    n_movers : int, default 4
        Subjects with a large head movement (3.8 mm and 3.5 degrees): above the exclusion
        limits of 3 mm / 3 degrees (``simulate_cohort``'s movers).
    voxel_size : float, default 6.0
        Voxel (mm) of the MNI-space cohort the EPI signal is sampled from; 3.0 is the
        study's grid (finer, slower).
    t1_voxel_size : float, default 1.0
        Voxel (mm) of the T1 image; coarser is faster.
    effect_size : float, default 1.0
        Scale of the planted group effects (as ``simulate_cohort``).
    max_warp : float, default 7.0
        Largest displacement (mm) of the nonlinear warp over the brain.

    Returns
    -------
    dict
        ``root`` (Path), ``tr`` (s), ``slice_times`` (s, 43 values), ``epi_affine``
        (4 x 4), ``planted`` (``simulate_cohort``'s ``attrs["planted"]``), ``movers`` and
        ``excluded`` (subject ids above 3 mm or 3 degrees), ``participants`` (DataFrame), and
        ``subjects``: per subject id a dict with ``bold``, ``t1``, ``json`` (paths),
        ``motion`` (array (time, 6): the ``rp_*.txt`` parameters in mm and rad, relative to
        volume 0, columns ``MOTION_PARAMS``), ``head_offset`` (6 SPM parameters) and
        ``head_matrix`` (4 x 4), ``warp`` (a :class:`Warp`: ``warp(w)`` maps native mm to
        MNI mm, ``warp.inverse(m)`` back), ``deformation`` (array (x, y, z, 3): the native
        point in mm of each voxel of the cohort's MNI grid, as SPM's ``y_*.nii``),
        ``t1_affine``, ``max_translation`` (mm), ``max_rotation`` (deg) and ``excluded``.

    Notes
    -----
    Files (BIDS 1.9): ``dataset_description.json``, ``participants.tsv`` (``participant_id``,
    ``group``, ``age``, ``sex``, ``vas`` from ``simulate_cohort``), and per subject
    ``sub-XXX/anat/sub-XXX_T1w.nii.gz`` and ``sub-XXX/func/sub-XXX_task-rest_bold.nii.gz``
    with its sidecar (``RepetitionTime``, ``SliceTiming``, ``SliceEncodingDirection``,
    ``TaskName``). The EPI has the reference acquisition: 64 x 64 x 43 voxels of
    3.4 x 3.4 x 3.2 mm, an oblique affine (slab tilted by 15 degrees pitch and 4 degrees yaw),
    43 slices acquired interleaved (0, 2, 4, ..., then 1, 3, ...), int16 values.

    The EPI value of voxel :math:`v` at volume :math:`t` is the cohort's MNI BOLD of the
    subject, sampled (trilinear) at :math:`\varphi(Q_t M v)` (see the module's Geometry), with
    the cohort's 6 mm baseline replaced by a 2 mm one (800 GM + 600 WM + 1000 CSF, 0 outside
    the brain) so that coregistration has anatomy to use. Each slice's series is then
    delayed by its acquisition time (a Fourier phase shift: volume :math:`n` of slice
    :math:`z` holds the signal at :math:`n\,TR + t_z`), which slice-timing correction undoes.
    The cohort's BOLD already holds first-order motion artefacts of the same parameters;
    after realignment they remain as the residual motion signal that nuisance regression
    removes. The T1 is the MNI152 template (nilearn, 1 mm) sampled at :math:`\varphi(w)`,
    scaled to 1000 with Gaussian noise of SD 5. Subjects are written one at a time (peak
    memory about three EPI series in float32, about 0.5 GiB for 240 volumes).

    References
    ----------
    Friston KJ, Ashburner J, Frith CD, et al. Spatial registration and normalization of
    images. Hum Brain Mapp 1995;3:165-189 (rigid-body parameters).

    Sladky R, Friston KJ, Troestl J, et al. Slice-timing effects and their correction in
    functional MRI. NeuroImage 2011;58:588-594.

    Examples
    --------
    >>> import brainarr as ba
    >>> truth = ba.datasets.simulate_raw("raw/", n_patients=1, n_controls=1, n_volumes=20)  # doctest: +SKIP
    >>> sorted(truth["subjects"])  # doctest: +SKIP
    ['sub-001', 'sub-002']
    """
    from brainarr._simulate import _static
    from brainarr.datasets import simulate_cohort

    if not max_warp >= 0:
        raise ValueError(f"max_warp must be a non-negative number of mm, got {max_warp!r}")
    if not t1_voxel_size > 0:
        raise ValueError(f"t1_voxel_size must be positive (mm), got {t1_voxel_size!r}")
    cohort = simulate_cohort(
        n_patients,
        n_controls,
        voxel_size=voxel_size,
        n_volumes=n_volumes,
        tr=tr,
        seed=seed,
        effect_size=effect_size,
        n_movers=n_movers,
    )
    root = Path(root)
    _check_root(root)
    root.mkdir(parents=True, exist_ok=True)
    slice_times = slices.slice_times("interleaved", EPI_SHAPE[2], float(tr))
    coarse_affine = np.asarray(cohort.attrs["affine"], float)
    dense = _static(float(voxel_size))["dense"]
    coarse_baseline, motion_maps = dense[0], dense[1:7]
    grid_shape = coarse_baseline.shape
    grid_vox = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in grid_shape), indexing="ij"), -1)
    grid_mm = grid_vox @ coarse_affine[:3, :3].T + coarse_affine[:3, 3]
    participants = _participants(cohort)
    _write_description(root, participants, float(tr))

    subjects: dict[str, dict[str, Any]] = {}
    for i, sid in enumerate(cohort.subject.values.tolist()):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _TAG_RAW, i]))
        warp = _make_warp(rng, float(max_warp))
        motion = np.asarray(cohort.confounds.isel(subject=i).transpose("time", "confound").values, float)
        bold = np.asarray(cohort.bold.isel(subject=i).transpose("x", "y", "z", "time").values, np.float32)
        t1_path = root / sid / "anat" / f"{sid}_T1w.nii.gz"
        t1_affine = _write_t1(t1_path, warp, float(t1_voxel_size), rng)
        series = _native_series(bold, coarse_affine, coarse_baseline, motion_maps, motion, warp, slice_times, float(tr))
        del bold
        bold_path = root / sid / "func" / f"{sid}_task-rest_bold.nii.gz"
        _save(series, _epi_affine(), bold_path, tr=float(tr))
        del series
        sidecar = bold_path.with_name(f"{sid}_task-rest_bold.json")
        sidecar.write_text(json.dumps(_sidecar(float(tr), slice_times), indent=2) + "\n", encoding="utf-8")
        max_translation = float(np.abs(motion[:, :3]).max())
        max_rotation = float(np.degrees(np.abs(motion[:, 3:]).max()))
        subjects[sid] = {
            "bold": bold_path,
            "t1": t1_path,
            "json": sidecar,
            "motion": motion,
            "motion_params": MOTION_PARAMS,
            "head_offset": warp.head.copy(),
            "head_matrix": warp.head_matrix.copy(),
            "warp": warp,
            "deformation": warp.inverse(grid_mm).astype(np.float32),
            "t1_affine": t1_affine,
            "max_translation": max_translation,
            "max_rotation": max_rotation,
            "excluded": max_translation > MAX_TRANSLATION or max_rotation > MAX_ROTATION,
        }
    return {
        "root": root,
        "tr": float(tr),
        "slice_times": slice_times,
        "epi_affine": _epi_affine(),
        "mni_affine": coarse_affine,
        "planted": cohort.attrs["planted"],
        "movers": list(cohort.attrs["movers"]),
        "excluded": [sid for sid, s in subjects.items() if s["excluded"]],
        "participants": participants,
        "subjects": subjects,
    }


def _participants(cohort: Any) -> Any:
    import pandas as pd

    table = pd.DataFrame(
        {name: cohort[name].values for name in ("group", "age", "sex", "vas")},
        index=pd.Index(cohort.subject.values.tolist(), name="participant_id"),
    )
    return table


def _check_root(root: Path) -> None:
    """Refuse to write into a file or a non-empty folder that is not an earlier simulation."""
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"simulate_raw: {root} is a file; give a folder to write the BIDS dataset into")
    if not root.is_dir() or not any(root.iterdir()):
        return
    try:
        generated = json.loads((root / "dataset_description.json").read_text(encoding="utf-8"))["GeneratedBy"]
        ours = any(g.get("Name") == "brainarr.datasets.simulate_raw" for g in generated)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ours = False
    if not ours:
        raise FileExistsError(
            f"simulate_raw: {root} is a non-empty folder that brainarr did not write; nothing was changed "
            "(give a new or empty folder)"
        )


def _write_description(root: Path, participants: Any, tr: float) -> None:
    description = {
        "Name": "brainarr simulated resting-state cohort (raw)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "GeneratedBy": [{"Name": "brainarr.datasets.simulate_raw"}],
    }
    (root / "dataset_description.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    # full precision, so the phenotypes read back equal the cohort's
    participants.to_csv(root / "participants.tsv", sep="\t", float_format="%.17g")


def _sidecar(tr: float, slice_times: np.ndarray) -> dict[str, Any]:
    return {
        "TaskName": "rest",
        "RepetitionTime": tr,
        "SliceTiming": [round(float(t), 6) for t in slice_times],
        "SliceEncodingDirection": "k",
        "PhaseEncodingDirection": "j-",
        "EchoTime": 0.03,
        "FlipAngle": 90,
        "Manufacturer": "brainarr (simulated)",
    }
