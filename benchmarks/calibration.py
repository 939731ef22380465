"""Family-wise false-positive rate of GRF and permutation inference on null cohorts.

Each simulated cohort is pure noise: 31 + 32 subjects, one map per subject on a small
3 mm grid (20 x 20 x 20 with a spherical mask), Gaussian white noise smoothed to a FWHM like
the study's maps, ages and sexes drawn independently of the group. The two-sample t-test
with age and sex covariates is then thresholded

* with :func:`brainarr.stats.grf` (smoothness estimated from the residuals, two-tailed), and
* with :func:`brainarr.stats.permutation` (Freedman-Lane, max statistic, two-tailed; the
  cluster size by default, ``--stat cluster_mass`` or ``tfce``),

at the study's thresholds (voxel p 0.01 / cluster p 0.01 and voxel p 0.05 / cluster p 0.05).
A family-wise false positive is any surviving cluster. The nominal rate is the cluster p;
the script prints the observed rates with exact (Clopper-Pearson) 95% intervals.

Run (about 20 minutes on 2 cores with the defaults)::

    python benchmarks/calibration.py --n-sim 1000 --n-perm 200 --fwhm 7 --seed 0
"""

from __future__ import annotations

import argparse
import time

import dask
import numpy as np
import xarray as xr
from scipy import ndimage, stats

from brainarr.stats import grf, permutation, ttest2
from brainarr.testing import make_affine

THRESHOLDS = ((0.01, 0.01), (0.05, 0.05))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval of a proportion k / n."""
    alpha = 1 - level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def null_cohort(rng: np.random.Generator, shape, fwhm_mm: float, voxel_mm: float, n1: int, n2: int):
    """Smoothed-noise maps ``(subject, x, y, z)`` with group, age and sex coordinates."""
    sigma = fwhm_mm / voxel_mm / np.sqrt(8 * np.log(2))
    pad = int(np.ceil(4 * sigma))
    n = n1 + n2
    big = rng.standard_normal((n, *(s + 2 * pad for s in shape)))
    smooth = ndimage.gaussian_filter(big, sigma=(0, sigma, sigma, sigma), mode="wrap")
    core = smooth[:, pad:-pad, pad:-pad, pad:-pad]
    core = core / core.std() + 10.0  # non-zero everywhere (zeros mean "missing" to the tests)
    affine = make_affine(voxel_mm, origin=(-30.0, -30.0, -30.0))
    maps = xr.DataArray(
        core.astype(np.float32),
        dims=("subject", "x", "y", "z"),
        coords={
            "subject": [f"sub-{i:02d}" for i in range(n)],
            "group": ("subject", np.array(["control"] * n1 + ["patient"] * n2, dtype=object)),
            "age": ("subject", rng.uniform(20, 60, n)),
            "sex": ("subject", np.array(rng.choice(["F", "M"], n), dtype=object)),
        },
        attrs={"affine": affine.tolist()},
    )
    return maps


def sphere_mask(shape) -> xr.DataArray:
    """A ball filling most of the grid (about 4,000 of 8,000 voxels for 20^3)."""
    centre = (np.asarray(shape) - 1) / 2
    grid = np.indices(shape).reshape(3, -1).T
    inside = (np.linalg.norm(grid - centre, axis=1) <= min(shape) / 2 - 0.5).reshape(shape)
    return xr.DataArray(inside, dims=("x", "y", "z"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sim", type=int, default=1000)
    parser.add_argument("--n-perm", type=int, default=200)
    parser.add_argument("--fwhm", type=float, default=7.0, help="smoothness of the noise, mm")
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stat", default="cluster_size", choices=("cluster_size", "cluster_mass", "tfce"), help="permutation statistic"
    )
    args = parser.parse_args()

    shape = (args.size,) * 3
    mask = sphere_mask(shape)
    rng = np.random.default_rng(args.seed)
    hits = {(method, vp, cp): 0 for method in ("grf", "permutation") for vp, cp in THRESHOLDS}
    fwhm_est = []
    start = time.perf_counter()
    with dask.config.set(scheduler="synchronous"):
        for i in range(args.n_sim):
            maps = null_cohort(rng, shape, args.fwhm, 3.0, 31, 32)
            maps = maps.assign_coords({d: np.arange(s) * 3.0 for d, s in zip(("x", "y", "z"), shape, strict=True)})
            m = mask.assign_coords({d: maps[d] for d in ("x", "y", "z")})
            m.attrs["affine"] = maps.attrs["affine"]
            res = ttest2(maps, mask=m)
            for vp, cp in THRESHOLDS:
                out = grf(res, mask=m, voxel_p=vp, cluster_p=cp, two_tailed=True)
                hits[("grf", vp, cp)] += int(out.sizes.get("cluster_id", 0) > 0 and bool((out["cluster"] != 0).any()))
                if vp == THRESHOLDS[0][0]:
                    fwhm_est.append(np.mean(out.attrs["fwhm"]))
                perm = permutation(
                    maps,
                    mask=m,
                    n_perm=args.n_perm,
                    stat=args.stat,
                    voxel_p=vp,
                    tail="both",
                    seed=int(rng.integers(2**31)),
                    batch_size=args.n_perm,
                ).compute()
                hits[("permutation", vp, cp)] += int(bool((perm["p_fwe"] <= cp).any()))
            if (i + 1) % 50 == 0:
                elapsed = time.perf_counter() - start
                print(f"{i + 1} cohorts, {elapsed:.0f} s", flush=True)
    elapsed = time.perf_counter() - start
    n = args.n_sim
    print()
    print(
        f"{n} null cohorts (31 + 32 subjects, age + sex covariates), grid {shape} at 3 mm, "
        f"{int(mask.sum())} mask voxels, noise FWHM {args.fwhm:g} mm "
        f"(estimated {np.mean(fwhm_est):.2f} mm), {args.n_perm} permutations ({args.stat}), {elapsed:.0f} s"
    )
    print()
    print("| method | voxel p | cluster p (nominal FWER) | false positives | FWER | 95% CI (Clopper-Pearson) |")
    print("|---|---|---|---|---|---|")
    for (method, vp, cp), k in hits.items():
        lo, hi = clopper_pearson(k, n)
        label = f"permutation, {args.stat.replace('_', ' ')}" if method == "permutation" else "GRF (DPABI)"
        print(f"| {label} | {vp:g} | {cp:g} | {k} / {n} | {k / n:.3f} | [{lo:.3f}, {hi:.3f}] |")


if __name__ == "__main__":
    main()
