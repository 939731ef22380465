"""Benchmark: full preprocessing of one full-size subject versus nilearn.signal.clean.

One subject on the study grid (61 x 73 x 61 voxels, 230 volumes, TR 2 s, float32 random
data), a brain mask of about 71,000 voxels (MNI152 grey + white matter + CSF probability
> 0.5), 26 confounds (Friston-24 + white matter + CSF means). brainarr runs detrending,
confound regression and the ideal 0.01-0.08 Hz band-pass (RESTplus order) lazily on 2
threads; nilearn.signal.clean runs on the same in-mask (time, voxels) array with linear
detrending, the same 26 confounds and its Butterworth 0.01-0.08 Hz filter. brainarr's
nilearn-order Butterworth pipeline is also timed and compared with nilearn's output.

nilearn 0.14's ``signal.clean`` filters voxel by voxel (``butterworth(..., copy=False)``
loops over columns), which dominates its time; a vectorised numpy/scipy version of the same
steps is timed as well so the speed-up can be read both ways.

Run with ``python benchmarks/preprocess.py`` (about 3 minutes, mostly nilearn); the numbers
are printed. Times are the best of a few runs on a shared machine.

``python benchmarks/preprocess.py smooth`` times :func:`brainarr.preprocess.smooth` instead
(6 mm FWHM, 2 threads): the 63 subject maps of a study (subject, 61 x 73 x 61, float32, one
subject per chunk) without and with the grey-matter mask (normalised convolution), and one
BOLD series (61 x 73 x 61 x 230, float32, two chunks along x, each volume smoothed). It
checks the result against :func:`scipy.ndimage.gaussian_filter` on the whole array and, when
dask-image is installed, times ``dask_image.ndfilters.gaussian_filter`` on the same input.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import dask  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from nilearn import signal  # noqa: E402

import brainarr.datasets as bd  # noqa: E402
from brainarr import preprocess as pp  # noqa: E402
from brainarr.testing import make_affine, make_bold  # noqa: E402

SHAPE = (61, 73, 61)
N_TIME = 230
TR = 2.0
LOW, HIGH = 0.01, 0.08
REPEATS = 3


def _brain_mask() -> xr.DataArray:
    try:
        grid = bd.study_grid(3.0)
        prob = sum(bd.tissue_probability(grid, tissue=t) for t in ("gm", "wm", "csf"))
        mask = (prob > 0.5).drop_vars([c for c in prob.coords if c not in ("x", "y", "z")])
        return mask.assign_attrs(affine=grid.attrs["affine"])
    except Exception as err:  # templates unavailable: an ellipsoid of similar size
        print(f"(tissue templates unavailable: {err}; using an ellipsoid mask)")
        idx = np.indices(SHAPE, dtype=float)
        centre = (np.array(SHAPE) - 1) / 2
        radii = np.array([24.0, 30.0, 23.5])
        inside = (((idx - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
        return make_bold(inside, affine=make_affine(3.0), name="mask")


def _vectorised_nilearn(series: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Linear detrend, Butterworth of signals and confounds, projection (float64)."""
    import scipy.linalg
    import scipy.signal as sps

    def lin_detrend(a):
        a = a - a.mean(axis=0)
        t = np.arange(a.shape[0], dtype=float)
        t -= t.mean()
        t /= np.sqrt((t**2).sum())
        return a - np.outer(t, t @ a)

    sos = sps.butter(5, [LOW, HIGH], btype="band", output="sos", fs=1 / TR)
    sig = sps.sosfiltfilt(sos, lin_detrend(series.astype(np.float64)), axis=0)
    cf = sps.sosfiltfilt(sos, lin_detrend(conf), axis=0)
    cf = (cf - cf.mean(axis=0)) / cf.std(axis=0, ddof=1)
    q, _ = scipy.linalg.qr(cf, mode="economic")
    return sig - q @ (q.T @ sig)


def main() -> None:
    rng = np.random.default_rng(0)
    mask = _brain_mask()
    inside = np.asarray(mask.values, bool)
    n_vox = int(inside.sum())
    data = np.zeros((*SHAPE, N_TIME), np.float32)
    data[inside] = 1000 + rng.standard_normal((n_vox, N_TIME), dtype=np.float32) * 10
    bold = make_bold(data, tr=TR, affine=np.asarray(mask.attrs["affine"])).chunk(
        {"x": 31, "y": -1, "z": -1, "time": -1}
    )
    mask = mask.assign_coords({d: bold[d] for d in ("x", "y", "z")})
    motion = xr.DataArray(
        np.cumsum(rng.standard_normal((N_TIME, 6)) * [0.02, 0.02, 0.02, 3e-4, 3e-4, 3e-4], axis=0),
        dims=("time", "confound"),
        coords={"confound": list(pp.MOTION_PARAMS)},
    )
    wm = xr.zeros_like(mask, dtype=bool)
    wm[20:40, 30:40, 30:40] = True
    wm &= mask
    csf = xr.zeros_like(mask, dtype=bool)
    csf[28:33, 30:45, 25:35] = True
    csf &= mask
    print(f"grid {SHAPE} x {N_TIME} volumes float32, {n_vox} in-mask voxels, 2 threads")

    def brainarr_pipeline() -> tuple[np.ndarray, xr.DataArray]:
        # Friston-24 + WM + CSF, then detrend, regression, ideal band-pass (RESTplus order)
        tissue = pp.tissue_signals(bold, wm=wm, csf=csf)
        confounds = xr.concat([pp.friston24(motion), tissue], dim="confound", join="override")
        cleaned = pp.clean(bold, confounds, detrend=1, low=LOW, high=HIGH, filter="ideal", mask=mask)
        return cleaned.values, confounds

    with dask.config.set(scheduler="threads", num_workers=2):
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            result, confounds = brainarr_pipeline()
            times.append(time.perf_counter() - t0)
        t_brainarr = min(times)
        tracemalloc.start()
        brainarr_pipeline()
        _, peak_brainarr = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        conf_np = np.asarray(confounds.values, float)
        assert conf_np.shape == (N_TIME, 26)
        assert np.all(result[~inside] == 0)

        # the same operation in brainarr's nilearn order (Butterworth) for the equality check
        times_nl = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            cleaned_nl = pp.clean(
                bold, conf_np, detrend=1, low=LOW, high=HIGH, filter="butterworth", order="nilearn", mask=mask
            ).values
            times_nl.append(time.perf_counter() - t0)
        t_brainarr_nl = min(times_nl)

    # nilearn on the same in-memory (time, voxels) data
    series = np.ascontiguousarray(data[inside].T)
    tracemalloc.start()
    t0 = time.perf_counter()
    ref = signal.clean(
        series,
        confounds=conf_np,
        detrend=True,
        standardize=None,
        standardize_confounds=True,
        filter="butterworth",
        low_pass=HIGH,
        high_pass=LOW,
        t_r=TR,
    )
    t_nilearn = time.perf_counter() - t0
    _, peak_nilearn = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # the same steps vectorised with numpy/scipy (what nilearn does, without its per-voxel
    # filtering loop), to separate algorithmic from implementation speed-ups
    t0 = time.perf_counter()
    vec = _vectorised_nilearn(series, conf_np)
    t_vec = time.perf_counter() - t0
    assert np.allclose(vec, ref, atol=1e-3)

    diff = np.abs(cleaned_nl[inside].T - ref)
    scale = np.abs(ref).max()
    print(
        f"brainarr clean (ideal, RESTplus order, incl. confound model): {t_brainarr:.2f} s "
        f"(best of {REPEATS}; runs: {', '.join(f'{t:.2f}' for t in times)} s), "
        f"peak traced memory {peak_brainarr / 2**20:.0f} MiB (output array included)"
    )
    print(f"brainarr clean (butterworth, nilearn order):                 {t_brainarr_nl:.2f} s (best of {REPEATS})")
    print(
        f"nilearn.signal.clean (butterworth, same data):               {t_nilearn:.2f} s, "
        f"peak traced memory {peak_nilearn / 2**20:.0f} MiB"
    )
    print(
        f"vectorised numpy/scipy version of nilearn's steps:           {t_vec:.2f} s "
        f"({t_vec / t_brainarr:.1f}x brainarr's ideal pipeline)"
    )
    print(f"speed-up vs nilearn: {t_nilearn / t_brainarr:.1f}x (ideal), {t_nilearn / t_brainarr_nl:.1f}x (butterworth)")
    print(
        f"max |brainarr(nilearn order) - nilearn| = {diff.max():.2e} (max |nilearn| = {scale:.2e}, "
        f"relative {diff.max() / scale:.1e})"
    )
    print(
        f"process peak RSS (ru_maxrss, incl. data generation): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


def _best(fn, repeats: int = REPEATS) -> tuple[float, float, object]:
    """Best wall time of ``repeats`` runs, peak traced memory (MiB) of one more, the result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return min(times), peak, out


def smooth_benchmark(fwhm: float = 6.0, repeats: int = 7) -> None:
    """Time smoothing of study maps and of one BOLD series (see the module docstring)."""
    import scipy.ndimage as ndi

    mask = _brain_mask()
    inside = np.asarray(mask.values, bool)
    affine = np.asarray(mask.attrs["affine"])
    sigma = fwhm / np.sqrt(8 * np.log(2)) / 3.0
    rng = np.random.default_rng(0)
    n_sub = 63
    maps_np = rng.standard_normal((n_sub, *SHAPE), dtype=np.float32)
    base = make_bold(maps_np[0], affine=affine)
    maps = xr.DataArray(
        maps_np,
        dims=("subject", "x", "y", "z"),
        coords={"subject": np.arange(n_sub), **{d: base[d] for d in ("x", "y", "z")}},
        attrs=base.attrs,
    ).chunk({"subject": 1})
    mask = mask.assign_coords({d: base[d] for d in ("x", "y", "z")})
    bold_np = rng.standard_normal((*SHAPE, N_TIME), dtype=np.float32)
    bold = make_bold(bold_np, tr=TR, affine=affine).chunk({"x": 31, "y": -1, "z": -1, "time": -1})
    print(f"smooth, FWHM {fwhm:g} mm (sigma {sigma:.3f} voxels), 2 threads")
    with dask.config.set(scheduler="threads", num_workers=2):
        rows = [
            ("63 maps, no mask", lambda: pp.smooth(maps, fwhm).values),
            ("63 maps, grey-matter mask", lambda: pp.smooth(maps, fwhm, mask=mask).values),
            ("BOLD 230 volumes, no mask", lambda: pp.smooth(bold, fwhm).values),
        ]
        results = {}
        for label, fn in rows:
            t, peak, out = _best(fn, repeats)
            results[label] = out
            print(f"  brainarr {label:<32s} {t:6.2f} s, peak traced {peak:6.0f} MiB")
        try:
            from dask_image.ndfilters import gaussian_filter
        except ImportError:
            print("  (dask-image not installed)")
        else:
            sig4 = (0.0, sigma, sigma, sigma)
            t, peak, out = _best(lambda: gaussian_filter(maps.data, sig4).compute(), repeats)
            print(f"  dask-image {'63 maps, no mask':<30s} {t:6.2f} s, peak traced {peak:6.0f} MiB")
            assert np.array_equal(out, results["63 maps, no mask"])
            sigb = (sigma, sigma, sigma, 0.0)
            t, peak, out = _best(lambda: gaussian_filter(bold.data, sigb).compute(), repeats)
            print(f"  dask-image {'BOLD 230 volumes, no mask':<30s} {t:6.2f} s, peak traced {peak:6.0f} MiB")
            assert np.array_equal(out, results["BOLD 230 volumes, no mask"])
    ref = ndi.gaussian_filter(maps_np[:3], (0, sigma, sigma, sigma))
    print(f"  max |brainarr - scipy| (maps): {np.abs(results['63 maps, no mask'][:3] - ref).max():.1e}")
    w = inside.astype(np.float32)
    num = ndi.gaussian_filter(maps_np[:3] * w, (0, sigma, sigma, sigma))
    den = ndi.gaussian_filter(w, sigma)
    ref = np.where(inside, num / np.where(den > 0, den, 1), 0)
    print(f"  max |brainarr - scipy| (masked maps): {np.abs(results['63 maps, grey-matter mask'][:3] - ref).max():.1e}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["smooth"]:
        smooth_benchmark()
    else:
        main()
