from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import brainarr as ba
import brainarr.stats as bs


@pytest.fixture(scope="module")
def grid():
    return ba.datasets.study_grid()


@pytest.fixture(scope="module")
def atlas(grid):
    return ba.datasets.aal(like=grid)


def _planted(grid, atlas):
    t = xr.zeros_like(grid, dtype=float)
    t.attrs = dict(grid.attrs)
    post = (atlas == 57).values  # Postcentral_L
    xs, ys, zs = (grid[d].values for d in ("x", "y", "z"))
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    ball = ((X + 57) ** 2 + (Y + 12) ** 2 + (Z - 30) ** 2 <= 9.1**2) & post
    vals = t.values
    vals[ball] = 3.0
    peak = (np.abs(xs + 57).argmin(), np.abs(ys + 12).argmin(), np.abs(zs - 30).argmin())
    vals[peak] = 5.4
    # a negative cluster straddling the midline, peak at x = 0
    neg = (np.abs(X) <= 3) & (np.abs(Y + 84) <= 3) & (np.abs(Z - 27) <= 3)
    vals[neg] = -3.0
    vals[np.abs(xs).argmin(), np.abs(ys + 84).argmin(), np.abs(zs - 27).argmin()] = -4.5
    return t.copy(data=vals), int(ball.sum()), int(neg.sum())


class TestClusterTable:
    def test_planted_postcentral(self, grid, atlas):
        t, n_ball, n_neg = _planted(grid, atlas)
        table = bs.cluster_table(t)  # default atlas: AAL on the map's grid
        assert len(table) == 2
        row = table.iloc[0]
        assert row.region == "Postcentral_L" and row.hemisphere == "L"
        assert row["size"] == n_ball and (row.x, row.y, row.z) == (-57.0, -12.0, 30.0)
        assert row.peak_t == 5.4 and row.cluster > 0
        assert row.regions.startswith(f"Postcentral_L ({n_ball})")
        neg = table.iloc[1]
        assert neg.hemisphere == "midline" and neg.peak_t == -4.5 and neg["size"] == n_neg
        assert (neg.x, neg.y, neg.z) == (0.0, -84.0, 27.0) and neg.cluster < 0
        counts = [int(part.rsplit("(", 1)[1].rstrip(")")) for part in neg.regions.split("; ")]
        assert sum(counts) == n_neg

    def test_from_grf_dataset(self, grid, atlas):
        t, n_ball, _ = _planted(grid, atlas)
        ds = xr.Dataset({"t": t}, attrs={"dof": 59, "affine": grid.attrs["affine"]})
        mask = ba.datasets.gm_mask(like=grid) | (t != 0)
        g = bs.grf(ds, mask=mask, voxel_p=0.01, cluster_p=0.05, fwhm=6.0)
        table = bs.cluster_table(g, atlas=atlas, min_size=2)
        assert table.iloc[0].region == "Postcentral_L"
        assert table.iloc[0].p == pytest.approx(float(g.cluster_p.sel(cluster_id=1)))
        big = bs.cluster_table(g, atlas=atlas, min_size=n_ball + 1)
        assert (big["size"] > n_ball).all()

    def test_subpeaks_and_exports(self, grid, atlas, tmp_path):
        t, _, _ = _planted(grid, atlas)
        vals = t.values.copy()
        i, j, k = (
            np.abs(grid.x.values + 57).argmin(),
            np.abs(grid.y.values + 12).argmin(),
            np.abs(grid.z.values - 30).argmin(),
        )
        vals[i, j + 3, k] = 4.0  # 9 mm away, a local maximum
        table = bs.cluster_table(t.copy(data=vals), atlas=atlas, subpeaks=True)
        sub = table[(table.cluster == 1) & (table.peak_kind == "sub")]
        assert (sub.y == -3.0).any()
        md = bs.table_to_markdown(table[table.peak_kind == "main"])
        lines = md.strip().splitlines()
        assert lines[0] == "| Region | Hemisphere | Cluster size | x | y | z | t |"
        assert lines[2].startswith("| Postcentral_L | L |") and lines[2].endswith("| -57 | -12 | 30 | 5.40 |")
        path = tmp_path / "table.csv"
        bs.table_to_csv(table, path)
        back = pd.read_csv(path)
        assert list(back.columns) == ["Region", "Hemisphere", "Cluster size", "x", "y", "z", "t"]
        assert back.iloc[0]["t"] == 5.4

    def test_errors(self, grid, atlas):
        with pytest.raises(TypeError, match="DataArray or Dataset"):
            bs.cluster_table(np.zeros((3, 3, 3)))
        with pytest.raises(ValueError, match="'cluster'"):
            bs.cluster_table(xr.Dataset({"t": grid.astype(float)}))
        with pytest.raises(ValueError, match="different grids"):
            bs.cluster_table(grid.astype(float).isel(x=slice(0, 10)), atlas=atlas)
        assert bs.cluster_table(grid.astype(float) * 0, atlas=atlas).empty


@pytest.mark.slow
def test_matches_nilearn_get_clusters_table():
    """Peaks and sizes agree with nilearn's cluster table (which labels with 6-connectivity)."""
    from nilearn.reporting import get_clusters_table
    from scipy import ndimage

    grid = ba.datasets.study_grid(6.0)
    noise = np.random.default_rng(11).standard_normal(grid.shape)
    smooth = ndimage.gaussian_filter(noise, 1.2)
    t_vals = smooth / smooth.std() * 1.5
    keep = np.abs(t_vals) >= 2.3
    thresholded = xr.DataArray(np.where(keep, t_vals, 0.0), dims=grid.dims, coords=grid.coords, attrs=dict(grid.attrs))
    ours = bs.cluster_table(thresholded, connectivity=6)
    sizes = ours["size"].to_numpy()
    # the data must exercise both signs and clusters of several sizes, single voxels included
    assert (ours.peak_t > 0).sum() >= 3 and (ours.peak_t < 0).sum() >= 3
    assert sizes.min() == 1 and len(set(sizes)) >= 5

    img = ba.io.to_nifti_image(thresholded, dtype=np.float64)
    stat_threshold = float(np.abs(t_vals[keep]).min()) - 1e-9
    ref = get_clusters_table(img, stat_threshold, cluster_threshold=0, two_sided=True)
    ref = ref[ref["Cluster Size (mm3)"] != ""]  # main peaks only (sub-peaks have no size)
    voxel_mm3 = 6.0**3
    ref_rows = sorted(
        (float(r.X), float(r.Y), float(r.Z), float(r["Peak Stat"]), float(r["Cluster Size (mm3)"]) / voxel_mm3)
        for _, r in ref.iterrows()
    )
    our_rows = sorted(zip(ours.x, ours.y, ours.z, ours.peak_t, ours["size"].astype(float), strict=True))
    assert len(our_rows) == len(ref_rows)
    np.testing.assert_allclose(np.array(our_rows), np.array(ref_rows), rtol=0, atol=1e-9)
    # 26-connectivity merges diagonal neighbours: fewer clusters than nilearn's table
    assert len(bs.cluster_table(thresholded, connectivity=26)) < len(ref_rows)
