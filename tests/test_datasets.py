"""Atlases, masks, grids."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import brainarr as ba
from brainarr import datasets
from brainarr.exceptions import DimensionError

STUDY_REGIONS = [
    "Cerebelum_9_R",
    "Cuneus_R",
    "Temporal_Mid_R",
    "Postcentral_L",
    "Postcentral_R",
    "Frontal_Sup_Medial_R",
    "Cerebelum_Crus1_L",
    "Cerebelum_Crus2_L",
    "Cerebelum_Crus1_R",
    "Thalamus_L",
    "Thalamus_R",
    "Precentral_L",
    "Precentral_R",
    "Paracentral_Lobule_R",
    "Temporal_Sup_L",
    "Calcarine_R",
    "Frontal_Sup_Orb_R",
    "Putamen_R",
    "Frontal_Inf_Orb_L",
    "Angular_R",
    "Precuneus_R",
]


@pytest.fixture(scope="module")
def atlas():
    return datasets.aal()


class TestStudyGrid:
    def test_shape_and_box(self):
        grid = datasets.study_grid()
        assert grid.shape == (61, 73, 61)
        assert (grid.x.values[0], grid.x.values[-1]) == (90.0, -90.0)
        assert (grid.y.values[0], grid.y.values[-1]) == (-126.0, 90.0)
        assert (grid.z.values[0], grid.z.values[-1]) == (-72.0, 108.0)
        affine = np.array(grid.attrs["affine"])
        ijk = np.array([10, 20, 30, 1])
        assert tuple((affine @ ijk)[:3]) == (grid.x.values[10], grid.y.values[20], grid.z.values[30])

    def test_other_voxel_sizes(self):
        assert datasets.study_grid(6.0).shape == (31, 37, 31)
        assert datasets.study_grid(2.0).shape == (91, 109, 91)
        with pytest.raises(ValueError, match="positive"):
            datasets.study_grid(0)


class TestAAL:
    def test_labels_and_cf_attrs(self, atlas):
        table = datasets.aal_labels()
        assert len(table) == 116
        assert set(STUDY_REGIONS) <= set(table["name"])
        assert atlas.dtype == np.int16
        assert atlas.attrs["flag_values"] == list(range(1, 117))
        assert atlas.attrs["flag_meanings"].split()[0] == "Precentral_L"
        assert "Tzourio-Mazoyer" in atlas.attrs["references"]
        present = set(np.unique(atlas.values)) - {0}
        assert len(present) == 116  # every region survives 3 mm resampling

    def test_paper_peak_is_postcentral_left(self, atlas):
        assert datasets.region_at(atlas, -57, -12, 30) == "Postcentral_L"
        assert datasets.region_at(atlas, 48, -21, 36) == "Postcentral_R"
        assert datasets.region_at(atlas, -42, -63, -36) == "Cerebelum_Crus1_L"
        assert datasets.region_at(atlas, 0, 0, 500) is None

    def test_nearest_neighbour_matches_direct_lookup(self, atlas):
        """Independent check: map each 3 mm voxel centre into the 1 mm image by hand."""
        src = nib.load(datasets.resources.files("brainarr").joinpath("data/aal.nii.gz"))
        data = np.asarray(src.dataobj)
        inv = np.linalg.inv(src.affine)
        affine = np.array(atlas.attrs["affine"])
        rng = np.random.default_rng(0)
        ijk = np.stack([rng.integers(0, n, 400) for n in atlas.shape], axis=1)
        world = (affine @ np.c_[ijk, np.ones(400)].T).T
        src_ijk = np.rint((inv @ world.T).T[:, :3]).astype(int)
        inside = np.all((src_ijk >= 0) & (src_ijk < data.shape), axis=1)
        expected = np.zeros(400, int)
        expected[inside] = data[tuple(src_ijk[inside].T)]
        got = atlas.values[tuple(ijk.T)]
        assert np.mean(got == expected) > 0.97  # rounding ties at half-voxel offsets may differ

    def test_regions(self, atlas):
        masks = datasets.regions(atlas, ["Precentral_L", "Postcentral_R"])
        assert masks.dims == ("seed", "x", "y", "z")
        assert list(masks.seed.values) == ["Precentral_L", "Postcentral_R"]
        assert masks.dtype == bool
        assert int(masks.sel(seed="Precentral_L").sum()) == int((atlas == 1).sum())

    def test_unknown_region(self, atlas):
        with pytest.raises(KeyError, match=r"'Postcentral_X' is not in atlas.*Postcentral_L"):
            datasets.regions(atlas, ["Postcentral_X"])


class TestMasks:
    def test_gm_mask(self):
        gm = datasets.gm_mask()
        assert gm.dtype == bool and gm.shape == (61, 73, 61)
        n = int(gm.sum())
        assert 40_000 < n < 80_000
        prob = datasets.tissue_probability(tissue="gm")
        assert n == int((prob > 0.2).sum())
        assert int(datasets.gm_mask(threshold=0.5).sum()) < n
        # the mask covers the cortex around the paper's postcentral peak
        near = datasets.spheres(gm, [(-57, -12, 30)], radius=6.0).isel(seed=0)
        assert int((gm & near).sum()) >= 5

    def test_tissues_are_disjoint_enough(self):
        gm, wm, csf = (datasets.tissue_probability(tissue=t) for t in ("gm", "wm", "csf"))
        total = (gm + wm + csf).values
        assert total.max() <= 1.0 + 1e-5
        # deep white matter is WM, the lateral ventricles are CSF
        assert float(wm.sel(x=-27, y=-12, z=30, method="nearest")) > 0.8
        assert float(csf.sel(x=-3, y=0, z=18, method="nearest")) > 0.3
        with pytest.raises(ValueError, match="tissue"):
            datasets.tissue_probability(tissue="bone")

    def test_spheres(self):
        grid = datasets.study_grid()
        sph = datasets.spheres(grid, [(-57, -12, 30), (0, 0, 0)], radius=6.0, names=["post", "centre"])
        assert sph.dims == ("seed", "x", "y", "z")
        # independent count: voxel centres within 6 mm on a 3 mm lattice centred on a voxel
        offsets = np.arange(-2, 3) * 3.0
        ox, oy, oz = np.meshgrid(offsets, offsets, offsets, indexing="ij")
        expected = int(np.sum(ox**2 + oy**2 + oz**2 <= 36))
        assert int(sph.sel(seed="post").sum()) == expected == int(sph.sel(seed="centre").sum())
        _, n = ndimage.label(sph.sel(seed="post").values)
        assert n == 1
        with pytest.raises(ValueError, match="no voxel"):
            datasets.spheres(grid, [(500, 0, 0)], radius=3)

    def test_like_needs_spatial_dims(self):
        with pytest.raises(DimensionError, match="like"):
            datasets.aal(like=ba.datasets.study_grid().isel(z=0, drop=True))
