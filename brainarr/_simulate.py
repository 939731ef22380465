r"""The embedded simulated cohort: realistic resting-state BOLD with planted group effects.

:func:`simulate_cohort` builds a lazy, labelled cohort (``bold``, ``confounds``, masks and
phenotypes) on the RESTplus/DPABI MNI grid, shaped like the reference study (31 patients with
chronic pain, 32 controls, 230 volumes at TR = 2 s). It is the test bed of brainarr and the
default data of its examples.

Generative model
----------------
For subject :math:`s`, voxel :math:`v` and volume :math:`t`,

.. math::

    y_s(v, t) = \underbrace{B(v)\,(1 + d_s(t))}_{\text{baseline, drift}}
        + \underbrace{\sum_{j=1}^{6} G_j(v)\, m_{sj}(t)}_{\text{motion}}
        + \underbrace{P(v)\, p_s(t) + \Gamma(v)\, g_s(t)}_{\text{physiology, global}}
        + \underbrace{\sum_{r} R_r(v)\, c_{sr}(t)}_{\text{networks}}
        + \sigma_S(v)\, k_s\, \eta_s(v, t) + \sigma_W(v)\, w_s\, \epsilon_s(v, t).

- :math:`B = 800\,p_{GM} + 600\,p_{WM} + 1000\,p_{CSF}` from the MNI152 tissue probabilities
  (grey/white/CSF contrast, 0 outside the brain); :math:`d_s` is a small linear plus quadratic
  scanner drift.
- :math:`G_j` are the first-order (small-displacement) effects of the six rigid-body parameters
  :math:`m_{sj}` on the image: :math:`-\nabla B \cdot \delta` for a translation
  :math:`\delta` and :math:`-(\mathbf{p} \times \nabla B)\cdot\omega` for a rotation
  :math:`\omega` about the origin (MNI mm), so motion leaks most at tissue edges, as in real
  data. The same parameters are returned as ``confounds``.
- :math:`P` weights a physiological (respiration/cardiac-like, AR(1)) signal :math:`p_s` mostly
  in white matter and CSF and a little in grey matter, so WM/CSF mean regressors remove it;
  :math:`\Gamma` is a weak global grey-matter signal.
- :math:`R_r` is the AAL region :math:`r` (Gaussian-softened, 1 % of :math:`B` weighted by the
  grey-matter partial volume :math:`\min(1, 2 p_{GM})`, so that the WM/CSF nuisance signals
  carry almost no network signal) and
  :math:`c_{sr}` its low-frequency (0.01-0.08 Hz) time course in percent signal change: a mix of
  its network's shared signal and a private regional signal (all of a subject's signals
  mutually uncorrelated and uncorrelated with its motion regressors), with subject-specific
  amplitudes (log-normal) and couplings, times the subject's smooth voxelwise gain (individual topography:
  without it every between-subject difference would be uniform over a whole region, and a
  chance group difference of one region would stand out as a whole-region cluster). Networks:
  sensorimotor, cerebellar, thalamic, default mode and visual.
- :math:`\eta_s` is spatially smooth noise (white noise smoothed with a Gaussian of
  ``noise_fwhm`` mm and rescaled to unit variance) with a 1/f-like temporal spectrum (the sum of
  an AR(1) with :math:`\phi = 0.4` and one with :math:`\phi = 0.9`); :math:`\epsilon_s` is
  spatially and temporally white (thermal) noise.

Group effects are planted in the coefficients :math:`c_{sr}` (see ``PLANTED``): a shift of a
generating quantity (log amplitude or coupling) by ``effect`` units (see
:func:`simulate_cohort`, Notes).

Determinism and laziness
------------------------
Everything that is whole-volume but 3-D (tissue maps, region maps, motion maps) is computed once
when the cohort is built; everything per subject but small (time courses, amplitudes) too. The
4-D noise is generated chunk by chunk: white noise lives on a fixed lattice of 8 x 8 x 8 voxel
tiles, each with its own random stream seeded by ``(seed, subject, tile)`` and consumed in fixed
slabs of 32 volumes, and a chunk is built from the tiles under it plus a halo as wide as the
smoothing kernel, smoothed slab by slab and cropped. A voxel's value therefore depends only on the
seed, never on the chunking (bitwise), and every chunk can be generated alone with a working set
of about one chunk beyond its output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage, signal

from brainarr._core.attrs import history_entry
from brainarr._core.chunks import spatial_chunks
from brainarr._core.dims import CONFOUND, SPATIAL, SUBJECT, TIME
from brainarr._core.grid import spatial_coords
from brainarr.exceptions import ChunkingError

__all__ = ["CONFOUND_NAMES", "NETWORKS", "PLANTED", "TABLE1", "simulate_cohort"]

#: fMRIPrep names of the six rigid-body parameters, in SPM ``rp_*.txt`` order.
CONFOUND_NAMES = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")

#: Resting-state networks simulated, as AAL1 regions sharing one low-frequency signal.
NETWORKS: dict[str, tuple[str, ...]] = {
    "sensorimotor": (
        "Precentral_L", "Precentral_R", "Postcentral_L", "Postcentral_R",
        "Paracentral_Lobule_L", "Paracentral_Lobule_R", "Supp_Motor_Area_L", "Supp_Motor_Area_R",
    ),
    "cerebellum": (
        "Cerebelum_Crus1_L", "Cerebelum_Crus1_R", "Cerebelum_Crus2_L", "Cerebelum_Crus2_R",
        "Cerebelum_9_L", "Cerebelum_9_R",
    ),
    "thalamus": ("Thalamus_L", "Thalamus_R"),
    "default_mode": (
        "Precuneus_L", "Precuneus_R", "Cingulum_Post_L", "Cingulum_Post_R",
        "Angular_L", "Angular_R", "Frontal_Sup_Medial_L", "Frontal_Sup_Medial_R",
    ),
    "visual": ("Cuneus_L", "Cuneus_R", "Calcarine_L", "Calcarine_R"),
}  # fmt: skip

#: Planted patient-vs-control effects at ``effect_size=1`` (``effect`` is scaled by it).
PLANTED: tuple[dict[str, Any], ...] = (
    {"region": "Postcentral_L", "metric": "alff", "seed": None, "direction": "decrease", "effect": 1.8},
    {"region": "Postcentral_R", "metric": "alff", "seed": None, "direction": "decrease", "effect": 1.8},
    {"region": "Postcentral_L", "metric": "reho", "seed": None, "direction": "decrease", "effect": 1.8},
    {"region": "Postcentral_R", "metric": "reho", "seed": None, "direction": "decrease", "effect": 1.8},
    {"region": "Cerebelum_9_R", "metric": "alff", "seed": None, "direction": "increase", "effect": 1.5},
    {
        "region": "Cerebelum_Crus1_L",
        "metric": "fc",
        "seed": "Postcentral_L",
        "direction": "increase",
        "effect": 2.5,
    },
    {"region": "Thalamus_L", "metric": "fc", "seed": "Postcentral_L", "direction": "increase", "effect": 1.5},
    {"region": "Cerebelum_Crus1_L", "metric": "dc", "seed": None, "direction": "increase", "effect": 2.5},
    {"region": "Precentral_L", "metric": "dc", "seed": None, "direction": "decrease", "effect": 2.0},
)

#: Table 1 of the reference study: mean, SD and proportion of men per group.
TABLE1: dict[str, dict[str, float]] = {
    "patient": {"age_mean": 64.52, "age_sd": 16.40, "men": 15 / 31, "vas_mean": 5.26, "vas_sd": 1.90},
    "control": {"age_mean": 47.69, "age_sd": 13.45, "men": 9 / 32, "vas_mean": 1.06, "vas_sd": 2.58},
}

_REFERENCES = (
    "Friston KJ, Williams S, Howard R, et al. Movement-related effects in fMRI time-series. Magn Reson "
    "Med 1996;35:346-355. | Zarahn E, Aguirre GK, D'Esposito M. Empirical analyses of BOLD fMRI "
    "statistics. NeuroImage 1997;5:179-197. | Biswal B, Yetkin FZ, Haughton VM, Hyde JS. Functional "
    "connectivity in the motor cortex of resting human brain using echo-planar MRI. Magn Reson Med "
    "1995;34:537-541."
)

_TILE = 8  # edge (voxels) of the noise lattice tiles
_TIME_SLAB = 32  # volumes drawn at once from a tile's stream
_TILE_OFFSET = 1 << 20  # keeps tile indices non-negative in seed entropy
_TAG_PHENO, _TAG_SUBJECT, _TAG_SMOOTH, _TAG_WHITE, _TAG_TOPOGRAPHY = 11, 12, 13, 14, 15

# Amplitudes, in percent of the local baseline unless said otherwise.
_NET_AMP = 2.0  # SD of a region's low-frequency signal
_LOG_AMP_SD = 0.08  # between-subject SD of a region's log amplitude
_LOG_AMP_EFFECT = 0.25  # log-amplitude change of a planted ALFF effect of 1
_NET_COUPLING = 0.85  # correlation of a region's signal with its network's signal
_SMOOTH_NOISE = 1.0  # SD of the spatially smooth 1/f noise
_WHITE_NOISE = 0.8  # SD of the white (thermal) noise
_NOISE_FLOOR = 2.0  # absolute SD of white noise everywhere (background)
_PHYSIO_AMP = 0.8
_GLOBAL_AMP = 0.3
_HUB_COUPLING = 0.15  # typical correlation of a region with another network's signal (FC/DC)
_HUB_SD = 0.3  # its between-subject SD on the Fisher-z scale
_DECOUPLING_SD = 0.35  # between-subject SD of atanh(network coupling) for decoupled regions
_TOPOGRAPHY_SD = 0.35  # between-subject SD of the voxelwise gain of the network signals
_TOPOGRAPHY_FWHM = 8.0  # mm, smoothness of that gain (individual functional topography)
_SPILL = 0.25  # share of a region's signal that makes a neighbouring AAL region carry its effects
_AR_PHIS = (0.4, 0.9)
_AR_WEIGHTS = (0.8, 0.6)
_TISSUE_THRESHOLD = 0.9  # WM/CSF masks: nearly pure tissue (no grey-matter voxel at 0.2)
_N_DENSE = 11  # baseline, 6 motion, physio, global, smooth-noise SD, white-noise SD


# ----------------------------------------------------------------------------------------------
# Static (subject-independent) maps
# ----------------------------------------------------------------------------------------------


def _grid(voxel_size: float, shape: tuple[int, int, int] | None) -> tuple[xr.DataArray, tuple[slice, ...]]:
    from brainarr.datasets import study_grid

    full = study_grid(voxel_size)
    if shape is None:
        return full, tuple(slice(0, n) for n in full.shape)
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or any(not 1 <= n <= m for n, m in zip(shape, full.shape, strict=True)):
        raise ValueError(
            f"shape must be three sizes (x, y, z) between 1 and the grid size {full.shape} "
            f"at {voxel_size:g} mm; got {shape}"
        )
    crop = tuple(slice((m - n) // 2, (m - n) // 2 + n) for n, m in zip(shape, full.shape, strict=True))
    return full, crop


@lru_cache(maxsize=4)
def _static(voxel_size: float) -> dict[str, Any]:
    """Tissue maps, atlas, region maps and motion maps on the full study grid (cached)."""
    from brainarr.datasets import aal, aal_labels, study_grid, tissue_probability

    grid = study_grid(voxel_size)
    affine = np.asarray(grid.attrs["affine"])
    probs = {t: tissue_probability(grid, t).values for t in ("gm", "wm", "csf")}
    gm, wm, csf = (probs[t].astype(np.float64) for t in ("gm", "wm", "csf"))
    atlas = aal(grid).values
    names = aal_labels()["name"]
    lookup = dict(zip(names, names.index, strict=True))

    baseline = 800.0 * gm + 600.0 * wm + 1000.0 * csf
    # spatial gradient in world mm (x is flipped in the affine)
    grads = np.gradient(baseline, *np.diag(affine)[:3])
    pos = np.stack(np.meshgrid(*(grid[d].values.astype(float) for d in SPATIAL), indexing="ij"))
    rot = np.cross(pos, np.stack(grads), axis=0)  # (p x grad B)
    dense = np.empty((_N_DENSE, *baseline.shape), np.float32)
    dense[0] = baseline
    dense[1:4] = -np.stack(grads)
    dense[4:7] = -rot
    dense[7] = 0.01 * baseline * (0.25 * gm + 1.0 * wm + 1.5 * csf)
    dense[8] = 0.01 * baseline * gm
    dense[9] = 0.01 * _SMOOTH_NOISE * baseline
    dense[10] = np.sqrt((0.01 * _WHITE_NOISE * baseline) ** 2 + _NOISE_FLOOR**2)
    dense.setflags(write=False)

    sigma = 3.0 / voxel_size  # soften region edges by ~7 mm FWHM
    regions = []
    spill = {}
    for net in NETWORKS.values():
        for name in net:
            ind = (atlas == lookup[name]).astype(np.float64)
            soft = ndimage.gaussian_filter(ind, sigma, mode="constant", truncate=3.0)
            soft = np.maximum(soft, ind)  # keep the region itself at full weight
            soft[soft < 0.02] = 0.0
            # other AAL regions carrying at least a tenth of this region's signal somewhere
            reached = np.unique(atlas[(soft >= _SPILL) & (ind == 0)])
            spill[name] = tuple(str(names[label]) for label in reached if label in names.index)
            nz = np.nonzero(soft)
            lo = [int(a.min()) for a in nz]
            hi = [int(a.max()) + 1 for a in nz]
            box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            # the network signal comes from grey matter: 1 % of the baseline, weighted by the
            # grey-matter partial volume min(1, 2 p_GM). Unweighted, white-matter and CSF voxels
            # inside the soft regions carry it into the WM/CSF nuisance regressors, whose
            # removal then induces spurious between-network correlations and group differences
            weight = np.minimum(1.0, 2.0 * gm[box])
            arr = (0.01 * baseline[box] * soft[box] * weight).astype(np.float32)
            arr.setflags(write=False)
            regions.append((tuple(lo), arr))
    return {
        "grid": grid,
        "gm": probs["gm"] > 0.2,
        "wm": probs["wm"] > _TISSUE_THRESHOLD,
        "csf": probs["csf"] > _TISSUE_THRESHOLD,
        "dense": dense,
        "regions": tuple(regions),
        "spill": spill,
    }


def _region_names() -> list[str]:
    return [name for net in NETWORKS.values() for name in net]


# ----------------------------------------------------------------------------------------------
# Per-subject time courses (small)
# ----------------------------------------------------------------------------------------------


def _band_gain(n: int, tr: float, band=(0.01, 0.08)) -> np.ndarray:
    """Gain of each ``rfft`` bin of an ``n``-volume series: 1 inside ``band`` (Hz), cosine edges."""
    freqs = np.fft.rfftfreq(n, tr)
    lo, hi = band
    gain = np.zeros_like(freqs)
    gain[(freqs >= lo) & (freqs <= hi)] = 1.0
    edge = 0.25 * lo
    ramp_lo = (freqs >= lo - edge) & (freqs < lo)
    gain[ramp_lo] = 0.5 * (1 - np.cos(np.pi * (freqs[ramp_lo] - (lo - edge)) / edge))
    edge_hi = 0.2 * hi
    ramp_hi = (freqs > hi) & (freqs <= hi + edge_hi)
    gain[ramp_hi] = 0.5 * (1 + np.cos(np.pi * (freqs[ramp_hi] - hi) / edge_hi))
    return gain


def _band_limited(rng: np.random.Generator, n: int, tr: float, size: int, band=(0.01, 0.08)) -> np.ndarray:
    """``size`` unit-variance series whose spectrum is confined (with cosine edges) to ``band``."""
    gain = _band_gain(n, tr, band)
    if not gain.any():
        gain[1:] = 1.0  # too short a run for the band: fall back to broadband
    spec = np.fft.rfft(rng.standard_normal((size, n)), axis=-1) * gain
    out = np.fft.irfft(spec, n=n, axis=-1)
    out -= out.mean(axis=-1, keepdims=True)
    sd = out.std(axis=-1, keepdims=True)
    return out / np.where(sd > 0, sd, 1.0)


def _band_dimension(n: int, tr: float) -> int:
    """Number of independent ``n``-volume series at full gain in the 0.01-0.08 Hz band (2 per bin)."""
    return 2 * int(np.count_nonzero(_band_gain(n, tr) == 1.0))


def _in_band(series: np.ndarray, tr: float) -> np.ndarray:
    """The part of each row of ``series`` that lies in the space :func:`_band_limited` draws from."""
    n = series.shape[-1]
    keep = _band_gain(n, tr) > 0
    return np.fft.irfft(np.fft.rfft(series, axis=-1) * keep, n=n, axis=-1)


def _orthonormal(series: np.ndarray, *, decorrelate: bool = True) -> np.ndarray:
    """Standardise rows to zero mean and unit SD; with ``decorrelate``, also orthogonalise them (QR)."""
    centred = series - series.mean(axis=-1, keepdims=True)
    if decorrelate and centred.shape[0] <= centred.shape[1]:
        q, _ = np.linalg.qr(centred.T)
        centred = q.T
    sd = centred.std(axis=-1, keepdims=True)
    return centred / np.where(sd > 0, sd, 1.0)


def _decorrelate(
    common: np.ndarray, private: np.ndarray, motion: np.ndarray, tr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Make a subject's network, global and private regional signals exactly uncorrelated.

    The network and global signals (``common``) are orthonormalised, so that coupling between
    networks comes only from the planted weights. When the run is long enough for the band to
    hold them, the private regional signals are also made orthogonal to each other, and all of
    them to the in-band part of the Friston-24 motion regressors (realignment parameters, their
    one-volume lags and the squares of both). Otherwise two regions' private signals correlate
    by chance (SD about 0.12 in r for 230 volumes) and nuisance regression removes a random
    share of a network's signal (12 +- 4 % of its variance for 230 volumes), both the same for
    every voxel of a region or network: region-level random effects on FC and degree centrality
    that the voxelwise noise model of cluster inference does not anticipate.
    """
    n = common.shape[-1]
    lagged = np.concatenate([motion[:1], motion[:-1]])
    friston = np.concatenate([motion, lagged], axis=1)
    nuisance = _in_band(np.concatenate([friston, friston**2], axis=1).T, tr)
    norms = np.linalg.norm(nuisance, axis=-1)
    nuisance = nuisance[norms > 1e-9 * max(float(norms.max(initial=0.0)), 1e-300)]
    k = len(common)
    if len(nuisance) + k + len(private) <= _band_dimension(n, tr):
        q = _orthonormal(np.concatenate([nuisance, common, private]))
        return q[len(nuisance) : len(nuisance) + k], q[len(nuisance) + k :]
    common = _orthonormal(common)
    private = _orthonormal(private - (private @ common.T) / n @ common, decorrelate=False)
    return common, private


def _ar1(rng: np.random.Generator, n: int, phi: float, size: int) -> np.ndarray:
    e = rng.standard_normal((size, n))
    zi = (e[:, :1] * (1.0 / math.sqrt(1 - phi**2) - 1.0)) * phi
    out, _ = signal.lfilter([1.0], [1.0, -phi], e, axis=-1, zi=zi)
    return out * math.sqrt(1 - phi**2)


def _motion(rng: np.random.Generator, n: int, mover: bool) -> np.ndarray:
    """Rigid-body parameters ``(time, 6)``: mm for translations, radians for rotations."""
    steps = rng.standard_normal((n, 6)) * np.array([0.015, 0.02, 0.03, 3e-4, 2e-4, 2e-4])
    walk = np.cumsum(steps, axis=0)
    scale = np.array([0.1, 0.15, 0.25, 1e-3, 6e-4, 6e-4])
    slow = np.outer(np.linspace(0, 1, n), rng.normal(0, 1, 6) * scale)
    params = walk + slow
    for _ in range(int(rng.integers(1, 4))):  # a few spikes (jerks), back next volume
        t = int(rng.integers(1, max(n - 1, 2)))
        params[t] += rng.normal(0, 1, 6) * np.array([0.2, 0.3, 0.4, 3e-3, 2e-3, 2e-3])
    if mover:
        t = int(rng.integers(n // 4, max(n // 4 + 1, 3 * n // 4)))
        params[t:, 2] += 3.8  # a 3.8 mm step in z
        params[t:, 3] += np.deg2rad(3.5)
    params -= params[0]  # realignment to the first volume
    return params


def _subject_design(
    seed: int, index: int, patient: bool, mover: bool, n: int, tr: float, effect_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficient time courses ``(11 + n_regions, time)`` and motion ``(time, 6)`` of one subject."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_SUBJECT, index]))
    names = _region_names()
    net_names = list(NETWORKS)
    motion = _motion(rng, n, mover)
    t01 = np.linspace(-1.0, 1.0, n)
    drift = 0.01 * (rng.normal(0, 0.5) * t01 + rng.normal(0, 0.2) * (t01**2 - 1 / 3))
    coef = np.zeros((_N_DENSE + len(names), n))
    coef[0] = 1.0 + drift
    coef[1:7] = motion.T
    resp = _band_limited(rng, n, tr, 1, (0.1, 0.3))[0]
    coef[7] = _PHYSIO_AMP * (0.7 * _ar1(rng, n, 0.6, 1)[0] + 0.7 * resp)
    coef[9] = math.exp(rng.normal(0, 0.05))  # subject's smooth-noise scale
    coef[10] = math.exp(rng.normal(0, 0.05))  # subject's white-noise scale

    common = _band_limited(rng, n, tr, len(net_names) + 1)
    private = _band_limited(rng, n, tr, len(names))
    common, private = _decorrelate(common, private, motion, tr)
    coef[8] = _GLOBAL_AMP * common[-1]
    shared = dict(zip(net_names, common[:-1], strict=True))
    z_reg = rng.normal(0, 1, len(names))
    z_eff = rng.normal(0, 1, len(PLANTED))
    g = 1.0 if patient else 0.0

    log_amp = {}
    coupling = {}
    for i, name in enumerate(names):
        net = next(k for k, v in NETWORKS.items() if name in v)
        log_amp[name] = _LOG_AMP_SD * z_reg[i]
        coupling[name] = (net, _NET_COUPLING)
    z_hub = rng.normal(0, 1, len(names))
    hub: dict[tuple[str, str], float] = {}  # (region, network it couples to) -> shift
    for j, eff in enumerate(PLANTED):
        sign = 1.0 if eff["direction"] == "increase" else -1.0
        shift = g * sign * eff["effect"] * effect_size
        region, metric = eff["region"], eff["metric"]
        if metric == "alff":
            log_amp[region] += _LOG_AMP_EFFECT * shift
        elif metric == "fc" or (metric == "dc" and sign > 0):
            # coupling to another network: the seed's (FC), or the large sensorimotor network,
            # which makes the region a hub (DC); FC and DC of one region share one coupling
            other = _seed_network(eff["seed"]) if metric == "fc" else "sensorimotor"
            hub[region, other] = max(hub.get((region, other), 0.0), shift)
        elif metric == "dc":
            net, c0 = coupling[region]
            coupling[region] = (net, math.tanh(math.atanh(c0) + _DECOUPLING_SD * (z_eff[j] + shift)))
        # "reho" effects follow from the amplitude change of the shared regional signal
    for i, name in enumerate(names):
        net, c = coupling[name]
        amp = _NET_AMP * math.exp(log_amp[name])
        series = c * shared[net] + math.sqrt(max(1 - c * c, 0.0)) * private[i]
        links = [(other, shift) for (region, other), shift in hub.items() if region == name]
        if links:
            hs = [math.tanh(math.atanh(_HUB_COUPLING) + _HUB_SD * (z_hub[i] + shift)) for _, shift in links]
            total = sum(h * h for h in hs)
            if total > 0.9:  # keep some of the region's own signal
                hs = [h * math.sqrt(0.9 / total) for h in hs]
                total = 0.9
            series = math.sqrt(1 - total) * series
            for (other, _), h in zip(links, hs, strict=True):
                series = series + h * shared[other]
        coef[_N_DENSE + i] = amp * series
    return coef.astype(np.float32), motion.astype(np.float32)


def _hubs(network: str) -> list[str]:
    """Regions of other networks that a planted FC or DC increase couples to ``network``."""
    out = []
    for eff in PLANTED:
        if eff["metric"] == "fc" or (eff["metric"] == "dc" and eff["direction"] == "increase"):
            other = _seed_network(eff["seed"]) if eff["metric"] == "fc" else "sensorimotor"
            if other == network and eff["region"] not in out:
                out.append(eff["region"])
    return out


def _implied(effect: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Other (region, metric, seed, direction) group differences that ``effect`` necessarily causes.

    They follow from how the effect is generated (see :func:`simulate_cohort`, Notes): FC seeds
    are listed as every region of the network concerned, whichever the study uses.
    """
    region, metric = effect["region"], effect["metric"]
    sign = effect["direction"]
    opposite = "increase" if sign == "decrease" else "decrease"
    own = _seed_network(region)
    members = NETWORKS[own]
    out: list[tuple[str, str, str | None, str]] = []
    if metric == "alff":
        # the region's whole signal (shared part included) changes amplitude: its spatial
        # coherence (ReHo), its correlation with its network (FC, DC) and, as a seed, its
        # correlation with all its partners change the same way
        out += [(region, "reho", None, sign), (region, "dc", None, sign)]
        out += [(region, "fc", seed, sign) for seed in members]
        out += [(m, "fc", region, sign) for m in (*members, *_hubs(own))]
    elif metric == "fc" or (metric == "dc" and sign == "increase"):
        # the region becomes coupled to (or more coupled to) another network: its FC with every
        # seed of that network and its DC rise, every member of that network gains it as a
        # neighbour (DC), and its own-network part shrinks (FC with its own network, DC there)
        other = _seed_network(effect["seed"]) if metric == "fc" else "sensorimotor"
        out += [(region, "fc", seed, sign) for seed in NETWORKS[other]]
        out += [(region, "dc", None, sign)] + [(m, "dc", None, sign) for m in NETWORKS[other]]
        out += [(m, "fc", region, sign) for m in NETWORKS[other]]
        out += [(region, "fc", seed, opposite) for seed in members if seed != region]
        out += [(m, "dc", None, opposite) for m in members if m != region]
        out += [(m, "fc", region, opposite) for m in members if m != region]
    elif metric == "dc":
        # the region decouples from its own network: its FC with every seed of that network
        # falls, as a seed its FC with the network and the network's hubs falls, and the other
        # members lose it as a neighbour (DC)
        out += [(region, "fc", seed, sign) for seed in members if seed != region]
        out += [(m, "fc", region, sign) for m in (*members, *_hubs(own)) if m != region]
        out += [(m, "dc", None, sign) for m in members if m != region]
    # "reho" effects are the ALFF effect of the same region seen by another metric
    itself = (region, metric, effect.get("seed"), sign)
    return [
        {"region": r, "metric": m, "seed": q, "direction": d}
        for r, m, q, d in dict.fromkeys(out)
        if (r, m, q if m == "fc" else None, d) != itself and not (m == "fc" and q == r and r != region)
    ]


#: ``region`` of a consequence that may appear anywhere in the brain.
ANYWHERE = "*"


def _normalisation(effect: Mapping[str, Any], static: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The consequence of ``effect`` for the mean-normalised maps of its metric (ALFF, ReHo).

    The study's ALFF and ReHo maps are divided by (or z-scored with) the subject's whole-brain
    mean. When the planted effects of a metric change that mean on balance (weighted by the
    regions' signal weight), every other voxel moves the other way relative to it. The effects
    whose sign is that of the balance list it, as a change of the opposite sign ``ANYWHERE``.
    """
    metric = effect["metric"]
    if metric not in ("alff", "reho"):
        return []
    names = _region_names()
    weight = {name: float(arr.sum()) for name, (_, arr) in zip(names, static["regions"], strict=True)}
    balance = sum(
        (1.0 if e["direction"] == "increase" else -1.0) * e["effect"] * weight[e["region"]]
        for e in PLANTED
        if e["metric"] == metric
    )
    sign = 1.0 if effect["direction"] == "increase" else -1.0
    if balance == 0 or sign * balance < 0:
        return []
    other = "decrease" if balance > 0 else "increase"
    return [{"region": ANYWHERE, "metric": metric, "seed": None, "direction": other}]


def _border(effect: Mapping[str, Any], static: Mapping[str, Any]) -> list[dict[str, Any]]:
    """ReHo decreases where a region whose network coupling changes meets its network's regions.

    A coupling change (FC or DC effect) makes the region's signal less like that of the other
    regions of its own network. Inside the region every voxel still carries the same signal, so
    its ReHo is unchanged, but at the border, where the softened region maps of the two regions
    overlap, neighbouring voxels become less concordant. Lists the region and the members of its
    network whose soft maps overlap it.
    """
    if effect["metric"] not in ("fc", "dc"):
        return []
    names = _region_names()
    maps = dict(zip(names, static["regions"], strict=True))
    region = effect["region"]

    def overlaps(a: str, b: str) -> bool:
        (lo_a, arr_a), (lo_b, arr_b) = maps[a], maps[b]
        lo = [max(x, y) for x, y in zip(lo_a, lo_b, strict=True)]
        hi = [min(x + n, y + m) for x, y, n, m in zip(lo_a, lo_b, arr_a.shape, arr_b.shape, strict=True)]
        if any(h <= low for low, h in zip(lo, hi, strict=True)):
            return False
        box_a = tuple(slice(low - x, h - x) for low, h, x in zip(lo, hi, lo_a, strict=True))
        box_b = tuple(slice(low - y, h - y) for low, h, y in zip(lo, hi, lo_b, strict=True))
        return bool(np.any((arr_a[box_a] > 0) & (arr_b[box_b] > 0)))

    touching = [m for m in NETWORKS[_seed_network(region)] if m != region and overlaps(region, m)]
    return [{"region": r, "metric": "reho", "seed": None, "direction": "decrease"} for r in (region, *touching)]


def _consequences(effect: Mapping[str, Any], static: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every documented consequence of a planted effect, without repeats.

    A simulated region's signal reaches beyond its AAL border (the regions are softened), so
    each change in a simulated region, the planted one and its consequences, also shows in the
    AAL regions that carry at least a tenth of that region's signal (``static["spill"]``).
    """
    out = _implied(effect) + _normalisation(effect, static) + _border(effect, static)
    itself = {k: effect.get(k) for k in ("region", "metric", "seed", "direction")}
    out += [{**q, "region": neighbour} for q in (itself, *out) for neighbour in static["spill"].get(q["region"], ())]
    seen = set()
    unique = []
    for q in out:
        key = (q["region"], q["metric"], q["seed"], q["direction"])
        if key not in seen and key != (effect["region"], effect["metric"], effect.get("seed"), effect["direction"]):
            seen.add(key)
            unique.append(q)
    return unique


def _seed_network(region: str) -> str:
    for net, members in NETWORKS.items():
        if region in members:
            return net
    raise ValueError(f"seed region {region!r} belongs to no simulated network")


# ----------------------------------------------------------------------------------------------
# Phenotypes
# ----------------------------------------------------------------------------------------------


def _exact(rng: np.random.Generator, n: int, mean: float, sd: float, lo: float, hi: float) -> np.ndarray:
    """``n`` draws with sample mean ``mean`` and SD (ddof=1) ``sd``, within ``[lo, hi]``."""
    if n == 1:
        return np.array([float(np.clip(mean, lo, hi))])
    x = rng.standard_normal(n)
    for _ in range(200):
        x = (x - x.mean()) / x.std(ddof=1) * sd + mean
        if x.min() >= lo - 1e-9 and x.max() <= hi + 1e-9:
            break
        x = np.clip(x, lo, hi)
    return np.clip(x, lo, hi)


def _exact_floor(rng: np.random.Generator, n: int, mean: float, sd: float, hi: float) -> np.ndarray:
    """Scores clipped at 0 (many zeros) with exact sample mean and SD (ddof=1) where possible."""
    s1 = n * mean
    s2 = (n - 1) * sd**2 + n * mean**2
    for k in range(2, n + 1):  # number of non-zero scores
        m = s1 / k
        var = s2 / k - m * m
        if var <= 0 or m > hi:
            continue
        v = rng.standard_normal(k)
        v = (v - v.mean()) / v.std() * math.sqrt(var) + m  # population SD over the k values
        if v.min() >= 0 and v.max() <= hi:
            out = np.zeros(n)
            out[rng.permutation(n)[:k]] = v
            return out
    return _exact(rng, n, mean, sd, 0.0, hi)


def _phenotypes(seed: int, n_patients: int, n_controls: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_PHENO]))
    cols: dict[str, list] = {"age": [], "sex": [], "vas": []}
    for group, n in (("patient", n_patients), ("control", n_controls)):
        if n == 0:
            continue
        t = TABLE1[group]
        cols["age"].append(_exact(rng, n, t["age_mean"], t["age_sd"], 18.0, 90.0))
        men = round(n * t["men"])
        sex = np.array(["M"] * men + ["F"] * (n - men))
        cols["sex"].append(sex[rng.permutation(n)])
        if group == "control":
            cols["vas"].append(_exact_floor(rng, n, t["vas_mean"], t["vas_sd"], 10.0))
        else:
            cols["vas"].append(_exact(rng, n, t["vas_mean"], t["vas_sd"], 0.0, 10.0))
    return {k: np.concatenate(v) for k, v in cols.items()}


# ----------------------------------------------------------------------------------------------
# Chunk generator (pure numpy)
# ----------------------------------------------------------------------------------------------


def _kernel(voxel_size: float, fwhm: float) -> np.ndarray:
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2))) / voxel_size
    radius = max(math.ceil(3.0 * sigma), 1)
    x = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    return w / math.sqrt(float((w**2).sum()))  # unit output variance per axis


def _tile_rng(seed: int, subject: int, tag: int, tile: Sequence[int]) -> np.random.Generator:
    entropy = [seed, tag, subject, *(t + _TILE_OFFSET for t in tile)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _tile_range(lo: Sequence[int], hi: Sequence[int]):
    """Tile indices covering voxels ``[lo, hi)``, with the source and destination slices of each."""
    ranges = [range(a // _TILE, (b - 1) // _TILE + 1) for a, b in zip(lo, hi, strict=True)]
    for tile in itertools.product(*ranges):
        src, dst = [], []
        for t, a, b in zip(tile, lo, hi, strict=True):
            s0, s1 = max(a, t * _TILE), min(b, (t + 1) * _TILE)
            src.append(slice(s0 - t * _TILE, s1 - t * _TILE))
            dst.append(slice(s0 - a, s1 - a))
        yield tile, tuple(src), tuple(dst)


def _time_slabs(n: int) -> list[slice]:
    return [slice(t, min(t + _TIME_SLAB, n)) for t in range(0, n, _TIME_SLAB)]


def _smooth_noise(
    seed: int,
    subject: int,
    lo: Sequence[int],
    hi: Sequence[int],
    n: int,
    weights: np.ndarray,
    tag: int = _TAG_SMOOTH,
) -> np.ndarray:
    """Unit-variance, spatially smooth white noise on voxels ``[lo, hi)``, shape ``(..., n)``.

    Each tile of the lattice has one random stream (per ``tag``), consumed in fixed slabs of
    ``_TIME_SLAB`` volumes, so the noise is built and smoothed slab by slab with a small
    working set.
    """
    h = (len(weights) - 1) // 2
    ext_lo, ext_hi = [a - h for a in lo], [b + h for b in hi]
    tiles = list(_tile_range(ext_lo, ext_hi))
    rngs = [_tile_rng(seed, subject, tag, tile) for tile, _, _ in tiles]
    out = np.empty((*(b - a for a, b in zip(lo, hi, strict=True)), n), np.float32)
    ext_shape = tuple(b - a for a, b in zip(ext_lo, ext_hi, strict=True))
    for slab in _time_slabs(n):
        m = slab.stop - slab.start
        ext = np.empty((*ext_shape, m), np.float32)
        for rng, (_, src, dst) in zip(rngs, tiles, strict=True):
            draw = rng.standard_normal((_TILE, _TILE, _TILE, m), dtype=np.float32)
            ext[dst] = draw[src]
        for axis in range(3):
            ext = ndimage.correlate1d(ext, weights, axis=axis, output=np.float32, mode="constant")
            index = [slice(None)] * 4
            index[axis] = slice(h, ext.shape[axis] - h)
            ext = np.ascontiguousarray(ext[tuple(index)])
        out[..., slab] = ext
    return out


def _colour_inplace(x: np.ndarray, rows: int = 4) -> None:
    """1/f-like temporal colouring along the last axis, in place, a few x-rows at a time.

    The result is a weighted sum of stationary AR(1) filters of ``x`` (stationary start).
    """
    coeffs = [
        (
            np.array([1.0], np.float32),
            np.array([1.0, -phi], np.float32),
            np.float32(phi * (1.0 / math.sqrt(1 - phi**2) - 1.0)),
            np.float32(weight * math.sqrt(1 - phi**2)),
        )
        for phi, weight in zip(_AR_PHIS, _AR_WEIGHTS, strict=True)
    ]
    for i in range(0, x.shape[0], rows):
        block = x[i : i + rows]
        acc = None
        for b, a, z0, w in coeffs:
            y, _ = signal.lfilter(b, a, block, axis=-1, zi=block[..., :1] * z0)
            y = y.astype(np.float32, copy=False)
            y *= w
            acc = y if acc is None else acc + y
        block[...] = acc


def _bold_block(
    subj, xi, yi, zi, dense, coef, regions, *, seed: int, weights: np.ndarray, topography: np.ndarray
) -> np.ndarray:
    """One chunk ``(1, cx, cy, cz, time)`` of simulated BOLD; depends only on the voxel indices."""
    s = int(subj[0])
    lo = [int(xi[0]), int(yi[0]), int(zi[0])]
    hi = [int(xi[-1]) + 1, int(yi[-1]) + 1, int(zi[-1]) + 1]
    coef = coef[0]
    n = coef.shape[-1]
    # spatially smooth 1/f noise, scaled to its SD map
    out = _smooth_noise(seed, s, lo, hi, n, weights)
    _colour_inplace(out)
    out *= (dense[9] * coef[9, 0])[..., None]
    # baseline, drift, motion, physiology and global signal: dense maps times time courses
    rows = 4
    for i in range(0, out.shape[0], rows):
        block = out[i : i + rows]
        for k in range(9):
            block += dense[k, i : i + rows, ..., None] * coef[k]
    # network regions: sparse boxes, times the subject's smooth gain field (its own topography)
    gain = _smooth_noise(seed, s, lo, hi, 1, topography, tag=_TAG_TOPOGRAPHY)[..., 0]
    gain = np.maximum(1.0 + _TOPOGRAPHY_SD * gain, 0.0, dtype=np.float32)
    for r, (origin, arr) in enumerate(regions):
        src, dst = [], []
        for o, m, a, b in zip(origin, arr.shape, lo, hi, strict=True):
            s0, s1 = max(a, o), min(b, o + m)
            if s0 >= s1:
                break
            src.append(slice(s0 - o, s1 - o))
            dst.append(slice(s0 - a, s1 - a))
        else:
            out[tuple(dst)] += (arr[tuple(src)] * gain[tuple(dst)])[..., None] * coef[_N_DENSE + r]
    # white (thermal) noise, tile by tile
    sd_white = dense[10] * coef[10, 0]
    for tile, src, dst in _tile_range(lo, hi):
        rng = _tile_rng(seed, s, _TAG_WHITE, tile)
        draw = rng.standard_normal((_TILE, _TILE, _TILE, n), dtype=np.float32)
        out[dst] += sd_white[dst][..., None] * draw[src]
    return out[None]


# ----------------------------------------------------------------------------------------------
# Public function
# ----------------------------------------------------------------------------------------------


def _normalise_chunks(chunks: Mapping[str, Any] | None, shape: tuple[int, int, int], n: int) -> dict[str, Any]:
    default = spatial_chunks(shape, bytes_per_voxel=4 * n)
    if chunks is None:
        return default
    if not isinstance(chunks, Mapping):
        raise ChunkingError(f"chunks must be a mapping like {{'x': 16, 'y': 16, 'z': 16}}; got {chunks!r}")
    out = dict(default)
    for key, value in chunks.items():
        if key in SPATIAL:
            out[key] = value
        elif (key == TIME and value in (-1, n, None)) or (key == SUBJECT and value == 1):
            continue
        else:
            raise ChunkingError(
                f"chunks[{key!r}] = {value!r} is not allowed: bold is chunked in space only "
                "(time is one chunk, one subject per chunk); give sizes for 'x', 'y', 'z'"
            )
    return out


def simulate_cohort(
    n_patients: int = 31,
    n_controls: int = 32,
    *,
    voxel_size: float = 3.0,
    n_volumes: int = 230,
    tr: float = 2.0,
    seed: int = 0,
    effect_size: float = 1.0,
    chunks: Mapping[str, Any] | None = None,
    shape: tuple[int, int, int] | None = None,
    n_movers: int = 0,
    noise_fwhm: float = 7.0,
) -> xr.Dataset:
    r"""Simulate a resting-state fMRI cohort of patients and controls with planted group effects.

    The data look like normalised, realigned resting-state BOLD on the RESTplus/DPABI MNI grid:
    grey/white/CSF contrast, spatially smooth 1/f noise, resting-state networks, head motion and
    physiological noise leaking into the signal, and group differences planted where the
    reference study (chronic pain vs controls) reports them. The result is lazy: nothing is
    generated until it is computed or written, chunk by chunk.

    Parameters
    ----------
    n_patients, n_controls : int, default 31 and 32
        Group sizes; patients come first (``sub-001`` ...).
    voxel_size : float, default 3.0
        Isotropic voxel edge in mm of the grid :func:`brainarr.datasets.study_grid` (61 x 73 x 61
        at 3 mm, 31 x 37 x 31 at 6 mm).
    n_volumes : int, default 230
        Number of time points (after discarding the first volumes, as in the study).
    tr : float, default 2.0
        Repetition time in s.
    seed : int, default 0
        Non-negative random seed. The same seed gives bitwise identical data whatever the chunks.
    effect_size : float, default 1.0
        Multiplies every planted effect (0 plants none). At 1, each region-level effect gives a
        two-sample *t* above 3 at 31 vs 32 subjects.
    chunks : mapping, optional
        Spatial chunks of ``bold`` (``{"x": 16, "y": (10, 27), ...}``); by default
        :func:`brainarr._core.chunks.spatial_chunks` (about ``chunk_mib`` MiB each). ``time`` is
        always one chunk and ``subject`` one subject per chunk.
    shape : tuple of int, optional
        Crop the grid to a centred box of this ``(x, y, z)`` size (for tiny tests); the values are
        those of the same voxels in the uncropped cohort.
    n_movers : int, default 0
        Number of subjects (drawn at random) whose head moves more than 3 mm and 3 degrees.
    noise_fwhm : float, default 7.0
        Smoothness (mm) of the spatially correlated noise.

    Returns
    -------
    xarray.Dataset
        - ``bold`` (subject, x, y, z, time), float32, dask-backed, arbitrary units (baseline
          about 800 in grey matter, 600 in white matter, 1000 in CSF, 0 outside the brain);
        - ``confounds`` (subject, time, confound), float32: ``trans_x, trans_y, trans_z`` (mm),
          ``rot_x, rot_y, rot_z`` (radians), SPM realignment order;
        - ``mask`` (x, y, z), bool: :func:`brainarr.datasets.gm_mask`;
        - ``wm_mask``, ``csf_mask`` (x, y, z), bool: MNI152 WM / CSF probability above 0.9 (nearly pure
          tissue, no grey-matter voxel), for the nuisance mean signals.

        Subject coordinates ``group`` ("patient"/"control"), ``age`` (years), ``sex`` ("M"/"F"),
        ``vas`` (pain, 0-10) drawn with the means and SDs of the study's Table 1; ``time`` in s;
        ``x, y, z`` in MNI mm. attrs: ``tr``, ``affine``, ``planted`` (list of dicts with keys
        ``region``, ``metric`` in {"alff", "reho", "fc", "dc"}, ``seed`` (FC seed region or None),
        ``direction`` of the patient-minus-control difference, ``effect``, ``implied``: the
        differences it causes elsewhere, see Notes), ``movers``
        (subject ids), ``source``, ``history``.

    Raises
    ------
    ValueError
        For negative group sizes, a non-positive TR, voxel size or number of volumes, a negative
        seed, or too many movers.
    brainarr.exceptions.ChunkingError
        For chunks along ``time`` or ``subject``.

    Notes
    -----
    For subject :math:`s`, voxel :math:`v` and volume :math:`t`,

    .. math::

        y_s(v, t) = B(v)(1 + d_s(t)) + \sum_{j=1}^{6} G_j(v)\, m_{sj}(t) + P(v)\, p_s(t)
            + \Gamma(v)\, g_s(t) + \sum_r R_r(v)\, a_s(v)\, c_{sr}(t)
            + \sigma_S(v)\, k_s\, \eta_s(v, t) + \sigma_W(v)\, w_s\, \epsilon_s(v, t)

    with :math:`B` the tissue baseline and :math:`d_s` a scanner drift; :math:`G_j` the
    first-order image change per unit of the motion parameter :math:`m_{sj}` (translation:
    :math:`-\partial B/\partial x_j`; rotation about the MNI origin:
    :math:`-(\mathbf{p}\times\nabla B)_j`), so motion leaks at tissue edges as in real data and
    is removable by a Friston-24 regression (Friston et al., 1996); :math:`P` a physiological
    signal mostly in WM/CSF; :math:`\Gamma` a weak global grey-matter signal; :math:`R_r` the
    soft AAL region :math:`r` (grey matter only) and :math:`c_{sr}` its 0.01-0.08 Hz signal (percent change), a mix
    of its network's signal (correlation 0.85) and a private one (Biswal et al., 1995);
    :math:`a_s(v) = \max(0, 1 + 0.35 f_s(v))` the subject's own topography, :math:`f_s` a
    unit-variance Gaussian field of 8 mm FWHM (individual networks differ in their spatial
    layout: Gordon et al., 2017);
    :math:`\eta_s` Gaussian-smoothed noise (``noise_fwhm``) with a 1/f-like spectrum (AR(1)
    :math:`\phi=0.4` plus :math:`\phi=0.9`) (Zarahn et al., 1997); :math:`\epsilon_s` white
    noise. Subjects differ in every random draw, in their regional amplitudes (log-normal, SD
    0.08 of the log amplitude of a region), their noise levels and their topography
    :math:`a_s`. Within a subject the network, global and private signals are exactly
    uncorrelated with each other and with the in-band part of the Friston-24 motion regressors
    (when the run is long enough for the 0.01-0.08 Hz band to hold them all: 230 volumes at
    TR 2 s do), so that coupling between regions is the generated one: left to chance, two
    regions' private signals would correlate with an SD of about 0.12 and nuisance regression
    would remove 12 +- 4 % of a network's signal, the same over the whole region or network.
    The topography makes a subject's deviation vary within a region, as it does in real data;
    without it a chance group difference of one region's amplitude would be uniform over the
    region and show as a whole-region cluster far more often than cluster-level inference
    allows for.

    Planted effects (``attrs["planted"]``) shift, in patients, a generating quantity by
    ``effect`` units:

    - ALFF: the log amplitude of the region's signal, by 0.25 per unit (the region's
      between-subject SD is 0.08 and the topography adds about 0.35 at each voxel, so one unit
      is about 0.7 of the between-subject SD at a voxel); the ReHo decrease in postcentral
      cortex follows from the lower amplitude of its shared (spatially coherent) signal;
    - FC: the Fisher-z correlation :math:`\operatorname{atanh} h` (typical :math:`h = 0.15`,
      between-subject SD 0.3; 0.3 per unit, a Cohen's *d*) of the region's signal with the
      seed's network signal, the region's signal becoming :math:`\sqrt{1 - h^2}\, c_{sr} + h\, u_{\text{net}}`;
    - DC increase: the same coupling, to the large sensorimotor network, which makes the region
      a hub (FC and DC of one region share one coupling);
    - DC decrease: the Fisher-z coupling (typical 0.85, between-subject SD 0.35; 0.35 per
      unit) of the region with its own
      network, the lost part replaced by a private signal of equal power (ALFF unchanged).

    Each planted effect also lists, under ``implied``, the group differences it necessarily
    causes elsewhere (dicts with ``region``, ``metric``, ``seed``, ``direction``; FC seeds are
    every region of the network concerned): an amplitude (ALFF) change changes the region's
    ReHo and DC, its FC with every seed of its network and, as a seed, its FC with its network
    and that network's hubs; a coupling to another network (FC or DC increase) raises the
    region's FC with every seed of that network, its DC and the DC of that network's members,
    and lowers its FC and DC within its own network; a decoupling (DC decrease) lowers the
    region's FC with its network's seeds, its FC as a seed with the network and its hubs, and the
    DC of the other members; a coupling change of either kind also lowers ReHo where the
    region's softened map overlaps those of its network's regions (the region and those
    neighbours). The simulated regions are softened (about 7 mm FWHM), so a region's signal,
    and every change of it, also reaches the AAL regions next to it: each consequence in a
    simulated region is also listed for the AAL regions carrying at least a quarter of that
    region's signal somewhere. The study's ALFF and ReHo maps are relative to the subject's
    whole-brain mean (mALFF, zALFF, smReHo): the planted decreases in the large postcentral
    regions lower the patients' mean, so every other voxel of those maps rises a little in
    patients; the ALFF and ReHo decreases list this as an increase with region ``"*"``
    (anywhere). :func:`brainarr.pipeline.recovery` counts clusters matching them as implied
    rather than false.

    The network signal :math:`R_r` is restricted to grey matter (1 % of :math:`B` times the soft
    region times :math:`\min(1, 2 p_{GM})`) and ``wm_mask``/``csf_mask`` are nearly pure tissue
    (probability above 0.9): otherwise the white-matter and CSF mean signals regressed out by
    the usual preprocessing contain network signals, their removal induces correlations
    between networks (about +0.12 between sensorimotor seeds and the cerebellum, -0.11 with
    visual cortex, with no effect planted), and planted changes of the sensorimotor signals then turn into spurious
    group differences in cerebellar FC.

    With the defaults (31 vs 32 subjects, 230 volumes), a two-sample *t* test of the region
    mean of each metric (after Friston-24 + WM + CSF regression, linear detrending and
    0.01-0.08 Hz band-pass) gives :math:`|t| > 4` with the planted sign.

    White noise is drawn on a fixed lattice of 8 x 8 x 8-voxel tiles, one random stream per
    ``(seed, subject, tile)`` read in slabs of 32 volumes; a chunk draws the tiles under it plus
    a halo of the smoothing kernel's radius, so every voxel's value is independent of the
    chunking (bitwise) and a chunk is generated with a working set of about one extra chunk
    (a full-size subject, 61 x 73 x 61 x 230, takes a few CPU-seconds). 3-D maps and
    per-subject time courses are computed when the cohort is built (a few seconds at 3 mm,
    cached per voxel size).

    References
    ----------
    Biswal B, Yetkin FZ, Haughton VM, Hyde JS. Functional connectivity in the motor cortex of
    resting human brain using echo-planar MRI. Magn Reson Med 1995;34:537-541.

    Friston KJ, Williams S, Howard R, Frackowiak RS, Turner R. Movement-related effects in fMRI
    time-series. Magn Reson Med 1996;35:346-355.

    Zarahn E, Aguirre GK, D'Esposito M. Empirical analyses of BOLD fMRI statistics. I. Spatially
    unsmoothed data collected under null-hypothesis conditions. NeuroImage 1997;5:179-197.

    Gordon EM, Laumann TO, Gilmore AW, et al. Precision functional mapping of individual human
    brains. Neuron 2017;95:791-807.

    Examples
    --------
    >>> import brainarr as ba
    >>> cohort = ba.datasets.simulate_cohort(4, 4, voxel_size=6.0, n_volumes=60)
    >>> cohort.bold.dims
    ('subject', 'x', 'y', 'z', 'time')
    >>> cohort.bold.shape
    (8, 31, 37, 31, 60)
    """
    for name, value in (("n_patients", n_patients), ("n_controls", n_controls), ("n_movers", n_movers)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    n_sub = int(n_patients) + int(n_controls)
    if n_sub == 0:
        raise ValueError("simulate_cohort needs at least one subject (n_patients + n_controls > 0)")
    if n_movers > n_sub:
        raise ValueError(f"n_movers={n_movers} exceeds the number of subjects ({n_sub})")
    if int(n_volumes) != n_volumes or n_volumes < 8:
        raise ValueError(f"n_volumes must be an integer of at least 8, got {n_volumes!r}")
    if not tr > 0:
        raise ValueError(f"tr must be positive (s), got {tr!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not noise_fwhm > 0:
        raise ValueError(f"noise_fwhm must be positive (mm), got {noise_fwhm!r}")
    n_volumes, seed, voxel_size, tr = int(n_volumes), int(seed), float(voxel_size), float(tr)

    full, crop = _grid(voxel_size, shape)
    static = _static(voxel_size)
    grid = full.isel(dict(zip(SPATIAL, crop, strict=True)))
    affine = np.asarray(full.attrs["affine"], float).copy()
    affine[:3, 3] += affine[:3, :3] @ np.array([c.start for c in crop], float)
    gshape = tuple(grid.sizes[d] for d in SPATIAL)
    chunk_spec = _normalise_chunks(chunks, gshape, n_volumes)
    normal = da.core.normalize_chunks(tuple(chunk_spec[d] for d in SPATIAL), gshape)

    # phenotypes, groups, movers
    pheno = _phenotypes(seed, int(n_patients), int(n_controls))
    group = np.array(["patient"] * int(n_patients) + ["control"] * int(n_controls))
    ids = [f"sub-{i + 1:03d}" for i in range(n_sub)]
    mover_rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_PHENO, 1]))
    movers = sorted(mover_rng.choice(n_sub, size=int(n_movers), replace=False).tolist())
    designs = [
        _subject_design(seed, i, group[i] == "patient", i in movers, n_volumes, tr, float(effect_size))
        for i in range(n_sub)
    ]
    coef = np.stack([d[0] for d in designs])
    motion = np.stack([d[1] for d in designs])

    # lazy BOLD: one task per (subject, spatial block)
    dense = static["dense"][(slice(None), *crop)]
    offsets = [np.arange(c.start, c.stop) for c in crop]  # full-grid voxel indices keep crops consistent
    region_delayed = dask.delayed(static["regions"], pure=True, traverse=False)
    token = dask.base.tokenize(seed, voxel_size, n_volumes, tr, effect_size, n_patients, n_controls, n_movers,
                               noise_fwhm, crop, normal, _TOPOGRAPHY_SD, _TOPOGRAPHY_FWHM, _LOG_AMP_SD)  # fmt: skip
    data = da.blockwise(
        _bold_block,
        "sxyzt",
        da.arange(n_sub, chunks=1),
        "s",
        da.from_array(offsets[0], chunks=(normal[0],)),
        "x",
        da.from_array(offsets[1], chunks=(normal[1],)),
        "y",
        da.from_array(offsets[2], chunks=(normal[2],)),
        "z",
        da.from_array(dense, chunks=((_N_DENSE,), *normal)),
        "dxyz",
        da.from_array(coef, chunks=(1, coef.shape[1], n_volumes)),
        "skt",
        region_delayed,
        None,
        seed=seed,
        weights=_kernel(voxel_size, noise_fwhm),
        topography=_kernel(voxel_size, _TOPOGRAPHY_FWHM),
        dtype=np.float32,
        concatenate=True,
        meta=np.empty((0,) * 5, np.float32),
        name=f"simulate-bold-{token}",
    )

    coords = spatial_coords(affine, gshape)
    time = xr.Variable(TIME, np.arange(n_volumes) * tr, {"units": "s", "long_name": "time"})
    source = f"brainarr.datasets.simulate_cohort(seed={seed})"
    sub_coords = {
        SUBJECT: ids,
        "group": (SUBJECT, group),
        "age": (SUBJECT, pheno["age"], {"units": "years", "long_name": "age"}),
        "sex": (SUBJECT, pheno["sex"], {"long_name": "sex"}),
        "vas": (SUBJECT, pheno["vas"], {"units": "1", "long_name": "pain visual analogue scale (0-10)"}),
    }
    bold = xr.DataArray(
        data,
        dims=(SUBJECT, *SPATIAL, TIME),
        coords={**coords, TIME: time},
        name="bold",
        attrs={
            "long_name": "simulated BOLD signal",
            "units": "arbitrary",
            "tr": tr,
            "affine": affine.tolist(),
            "source": source,
        },
    )
    confounds = xr.DataArray(
        da.from_array(motion, chunks=(1, n_volumes, 6)),
        dims=(SUBJECT, TIME, CONFOUND),
        coords={TIME: time, CONFOUND: list(CONFOUND_NAMES)},
        name="confounds",
        attrs={
            "long_name": "rigid-body head motion (realignment parameters)",
            "units": "mm (trans_*), rad (rot_*)",
            "tr": tr,
            "source": source,
        },
    )
    masks = {}
    spatial_chunk = dict(zip(SPATIAL, normal, strict=True))
    for var, values, long_name in (
        ("mask", static["gm"], "grey matter (MNI152 GM probability > 0.2)"),
        ("wm_mask", static["wm"], f"white matter (MNI152 WM probability > {_TISSUE_THRESHOLD:g})"),
        ("csf_mask", static["csf"], f"CSF (MNI152 CSF probability > {_TISSUE_THRESHOLD:g})"),
    ):
        mask_values = values
        masks[var] = xr.DataArray(
            da.from_array(mask_values[crop], chunks=tuple(spatial_chunk[d] for d in SPATIAL)),
            dims=SPATIAL,
            coords=coords,
            name=var,
            attrs={"long_name": long_name, "affine": affine.tolist()},
        )
    ds = xr.Dataset({"bold": bold, "confounds": confounds, **masks}, coords=sub_coords)
    planted = [
        {**eff, "effect": float(eff["effect"] * effect_size), "implied": _consequences(eff, static)}
        for eff in PLANTED
        if effect_size != 0
    ]
    entry = history_entry(
        "brainarr.datasets.simulate_cohort",
        {
            "n_patients": n_patients,
            "n_controls": n_controls,
            "voxel_size": voxel_size,
            "n_volumes": n_volumes,
            "tr": tr,
            "seed": seed,
            "effect_size": effect_size,
            "chunks": chunks,
            "shape": shape,
            "n_movers": n_movers,
            "noise_fwhm": noise_fwhm,
        },
    )
    ds.attrs.update(
        {
            "title": "simulated resting-state fMRI cohort (chronic pain vs controls)",
            "tr": tr,
            "affine": affine.tolist(),
            "planted": planted,
            "movers": [ids[i] for i in movers],
            "source": source,
            "references": _REFERENCES,
            "history": entry,
        }
    )
    for var in ds.data_vars.values():
        var.attrs["history"] = entry
    return ds
