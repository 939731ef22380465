"""Identical inputs give bit-identical outputs: the metrics under any scheduler, task order and
BLAS thread count, and the whole study run twice on two copies of one cohort.

A resumed study must equal an uninterrupted one to the last bit, so every map must be a
function of its input alone. The metric checks use 500 volumes and tiles large enough for
OpenBLAS to split products between threads, where its rounding depends on the thread count.
"""

from __future__ import annotations

import dataclasses

import dask
import nibabel as nib
import numpy as np
import pytest
import xarray as xr

import brainarr.metrics as bm
from brainarr import io, pipeline
from brainarr.config import StudyConfig
from brainarr.datasets import simulate_cohort
from brainarr.testing import ShuffledThreadPool, blas_threads, make_bold


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(11)
    shape = (12, 13, 14, 500)
    values = rng.standard_normal(shape) + 0.7 * rng.standard_normal(shape[-1])
    values[2, 3, 4] = 1.0  # a constant voxel
    bold = make_bold(values.astype(np.float32), chunks={"x": 5, "y": 7}, tr=2.0)
    mask_np = rng.random(shape[:3]) > 0.2
    coords = {d: bold[d] for d in ("x", "y", "z")}
    mask = xr.DataArray(mask_np, dims=("x", "y", "z"), coords=coords, name="mask")
    x = np.arange(shape[0])[:, None, None]
    seeds = xr.DataArray(
        np.stack([mask_np & (x < 4), mask_np & (x > 8)]),
        dims=("seed", "x", "y", "z"),
        coords={"seed": ["a", "b"], **coords},
    )
    return bold, mask, seeds


def _all_metrics(bold, mask, seeds) -> dict[str, xr.DataArray]:
    """Every subject-level metric and map variant, as one lazy graph."""
    out = {}
    a = bm.alff(bold, (0.01, 0.08), mask=mask)
    out.update(alff=a.alff, falff=a.falff)
    out.update({k: v for k, v in bm.alff_variants(a, mask).items()})
    out["reho"] = bm.reho(bold, mask)
    out["smreho"] = bm.smreho(bold, mask, fwhm=6.0)
    out["smreho_nf"] = bm.smreho(bold, mask, fwhm=6.0, order="normalize_first")
    fc = bm.seed_fc(bold, seeds, mask=mask)
    out.update(zfc=fc.zfc, seed_series=fc.seed_series)
    out["zfc_one_seed"] = bm.seed_fc(bold, seeds.isel(seed=[1]), mask=mask).zfc
    dc = bm.degree_centrality(bold, mask, block_size=300)
    out.update(dc_binary=dc.dc_binary, dc_weighted=dc.dc_weighted)
    out.update({k: v for k, v in bm.dc_variants(dc, mask).items()})
    out.update({f"{k}_nf": v for k, v in bm.dc_variants(dc, mask, order="normalize_first").items()})
    out["zdc_weighted"] = bm.normalize(dc.dc_weighted, mask, method="z")
    return out


def test_metrics_bit_identical(inputs):
    """ALFF, ReHo, seed FC, DC and their smoothed/normalised variants, computed together."""
    graph = _all_metrics(*inputs)
    names = list(graph)

    def run(**compute):
        return dict(zip(names, dask.compute(*[graph[n].data for n in names], **compute), strict=True))

    expected = run(scheduler="sync")
    runs = [run(scheduler="threads", num_workers=4) for _ in range(3)]
    for seed in range(2):
        with ShuffledThreadPool(3, seed) as pool:
            runs.append(run(scheduler="threads", pool=pool))
    for n_threads in (1, 4):
        with blas_threads(n_threads):
            runs.append(run(scheduler="threads", num_workers=2))
    assert all(np.any(expected[n] != 0) for n in names)
    for out in runs:
        for name in names:
            np.testing.assert_array_equal(out[name], expected[name], err_msg=name)


# --------------------------------------------------------------------------- the whole study

SHAPE = (18, 22, 16)


def _config() -> StudyConfig:
    cfg = StudyConfig()
    return dataclasses.replace(
        cfg,
        preprocess=dataclasses.replace(cfg.preprocess, discard=4),
        metrics=dataclasses.replace(cfg.metrics, families=("alff", "reho", "fc", "dc")),
        output=dataclasses.replace(cfg.output, figures=False),
    )


def _arrays(path) -> dict[str, np.ndarray]:
    with xr.open_zarr(path, consolidated=False) as ds:
        return {str(k): np.asarray(v.values) for k, v in ds.variables.items()}


@pytest.mark.slow
def test_study_twice_bit_identical(tmp_path):
    """Two runs of the whole study on two copies of one cohort: same maps, t maps and tables."""
    sim = simulate_cohort(3, 3, voxel_size=6.0, n_volumes=56, seed=5, effect_size=4.5, shape=SHAPE, n_movers=0)
    stores, outputs = [], []
    for i in (1, 2):
        store = tmp_path / f"study{i}.zarr"
        io.ingest(sim, str(store))
        out = tmp_path / f"results{i}"
        pipeline.run(_config(), store, output=out, progress=False)
        stores.append(store)
        outputs.append(out)
    first, second = (_arrays(s) for s in stores)
    assert sorted(first) == sorted(second)
    derived = [v for names in pipeline.FAMILY_VARIABLES.values() for v in names]
    assert set(derived) <= set(first)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
    for name in derived:
        assert np.isfinite(first[name]).any(), name
    t_maps = sorted(p.name for p in (outputs[0] / "maps").glob("*_t.nii.gz"))
    assert t_maps and t_maps == sorted(p.name for p in (outputs[1] / "maps").glob("*_t.nii.gz"))
    for name in t_maps:
        a, b = (nib.load(out / "maps" / name) for out in outputs)
        np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj), err_msg=name)
        np.testing.assert_array_equal(a.affine, b.affine)
    tables = sorted(p.name for p in (outputs[0] / "tables").glob("*.csv"))
    assert tables
    for name in tables:
        assert (outputs[0] / "tables" / name).read_text() == (outputs[1] / "tables" / name).read_text(), name
