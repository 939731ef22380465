"""Tests of the simulator's raw mode (brainarr.datasets.simulate_raw)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import brainarr as ba
from brainarr._core.rigid import rigid_matrix
from brainarr._simulate_raw import EPI_SHAPE, EPI_VOXEL
from brainarr.datasets import simulate_raw
from brainarr.io import read_phenotypes
from brainarr.raw import find_bids_raw

KW = dict(n_patients=1, n_controls=1, n_movers=1, n_volumes=12, seed=3, t1_voxel_size=4.0)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return ba.datasets.simulate_raw(tmp_path_factory.mktemp("raw") / "bids", **KW)


def test_bids_layout_and_sidecars(raw):
    root = raw["root"]
    assert json.loads((root / "dataset_description.json").read_text())["BIDSVersion"]
    for sid in ("sub-001", "sub-002"):
        assert (root / sid / "anat" / f"{sid}_T1w.nii.gz").is_file()
        assert (root / sid / "func" / f"{sid}_task-rest_bold.nii.gz").is_file()
        meta = json.loads((root / sid / "func" / f"{sid}_task-rest_bold.json").read_text())
        assert meta["RepetitionTime"] == 2.0 and meta["TaskName"] == "rest"
        assert len(meta["SliceTiming"]) == 43
    # the raw reader finds it, with the slice times of an interleaved acquisition
    table = find_bids_raw(root)
    assert list(table.index) == ["sub-001", "sub-002"]
    times = np.asarray(table.loc["sub-001", "slice_times"])
    np.testing.assert_allclose(times, raw["slice_times"], atol=1e-6)
    expected = np.empty(43)
    for rank, z in enumerate([*range(0, 43, 2), *range(1, 43, 2)]):
        expected[z] = rank * 2.0 / 43
    np.testing.assert_allclose(raw["slice_times"], expected, atol=1e-12)
    assert table.loc["sub-001", "slice_axis"] == "z"


def test_geometry(raw):
    sub = raw["subjects"]["sub-001"]
    img = nib.load(sub["bold"])
    assert img.shape == (*EPI_SHAPE, KW["n_volumes"])
    zooms = img.header.get_zooms()
    np.testing.assert_allclose(zooms[:3], EPI_VOXEL, rtol=1e-6)
    assert zooms[3] == pytest.approx(2.0)
    affine = img.affine
    np.testing.assert_allclose(affine, raw["epi_affine"], atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), EPI_VOXEL, rtol=1e-6)
    off_diagonal = affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))
    assert np.abs(off_diagonal).max() > 0.1  # oblique
    t1 = nib.load(sub["t1"])
    assert t1.ndim == 3
    np.testing.assert_allclose(t1.affine, sub["t1_affine"])
    # the brain is in the field of view: bright in the middle, dark at the corners
    vol = np.asarray(img.dataobj[..., 0], float)
    assert vol[24:40, 24:40, 15:30].mean() > 300 > vol[:4, :4].mean()


def test_motion_in_file_matches_truth(raw):
    """Volume t, read where the truth says the head moved, reproduces volume 0; other guesses do not."""
    sid = raw["movers"][0]
    sub = raw["subjects"][sid]
    assert sid in raw["excluded"] and sub["max_translation"] > 3.0
    data = np.asarray(nib.load(sub["bold"]).dataobj, np.float64)
    motion = sub["motion"]
    np.testing.assert_array_equal(motion[0], 0.0)
    t = int(np.argmax(np.abs(motion[:, 2])))
    m = raw["epi_affine"]
    vox = np.stack(np.meshgrid(*(np.arange(n, dtype=float) for n in EPI_SHAPE), indexing="ij"), -1)
    ref = data[..., 0]
    inside = ndimage.binary_erosion(ref > 400, iterations=3)
    inside &= ndimage.binary_dilation(np.abs(ndimage.sobel(ref, 0)) > 50, iterations=1)

    def error(q):
        # voxel v of volume 0 shows head point M v; volume t shows it at M^-1 Q_t^-1 M v
        mapping = np.linalg.inv(m) @ np.linalg.inv(q) @ m
        index = np.moveaxis(vox @ mapping[:3, :3].T + mapping[:3, 3], -1, 0)
        moved = ndimage.map_coordinates(data[..., t], index, order=1)
        return np.median(np.abs(moved - ref)[inside])

    truth = error(rigid_matrix(motion[t]))
    wrong = {
        "none": error(np.eye(4)),
        "inverse": error(rigid_matrix(-motion[t])),
        "translation only": error(rigid_matrix(motion[t] * [1, 1, 1, 0, 0, 0])),
        "rotation only": error(rigid_matrix(motion[t] * [0, 0, 0, 1, 1, 1])),
    }
    # the residual of the truth is the noise of two volumes (independent draws), far below the others
    assert all(truth < 0.6 * value for value in wrong.values()), (truth, wrong)


def test_warp_truth(raw):
    sub = raw["subjects"]["sub-002"]
    warp = sub["warp"]
    rng = np.random.default_rng(0)
    points = rng.uniform(-60, 60, (500, 3))
    np.testing.assert_allclose(warp.inverse(warp(points)), points, atol=1e-6)
    np.testing.assert_allclose(sub["head_matrix"], rigid_matrix(sub["head_offset"]))
    # displacement beyond the rigid part: at most max_warp (7 mm) and several mm somewhere
    head = points @ sub["head_matrix"][:3, :3].T + sub["head_matrix"][:3, 3]
    shift = np.linalg.norm(warp(points) - head, axis=-1)
    assert 2.0 < shift.max() <= 7.0 + 1e-9
    grid = ba.datasets.study_grid(6.0)
    assert sub["deformation"].shape == (*grid.shape, 3)
    affine = np.asarray(grid.attrs["affine"])
    corner = affine[:3, :3] @ np.array([10.0, 12.0, 14.0]) + affine[:3, 3]
    np.testing.assert_allclose(warp(sub["deformation"][10, 12, 14].astype(float)), corner, atol=1e-3)


def test_signal_is_the_cohorts(raw):
    """The first slice (acquired at 0 s) of volume 0 (no motion) is the cohort's MNI BOLD at phi(M v)."""
    from brainarr._simulate import _static
    from brainarr._simulate_raw import _epi_contrast

    cohort = ba.datasets.simulate_cohort(1, 1, voxel_size=6.0, n_volumes=12, seed=3, n_movers=1)
    sub = raw["subjects"]["sub-002"]
    data = np.asarray(nib.load(sub["bold"]).dataobj, np.float64)
    bold = cohort.bold.isel(subject=1, time=0).transpose("x", "y", "z").values.astype(float)
    coarse = bold - _static(6.0)["dense"][0]
    fine, fine_affine = _epi_contrast()

    def trilinear(volume, affine, point):  # a plain loop over the 8 neighbours
        index = np.linalg.solve(affine, [*point, 1.0])[:3]
        base = np.floor(index).astype(int)
        total = 0.0
        for corner in np.ndindex(2, 2, 2):
            at = base + corner
            if np.all(at >= 0) and np.all(at < volume.shape):
                weight = np.prod(1 - np.abs(index - at))
                total += weight * volume[tuple(at)]
        return total

    m = raw["epi_affine"]
    mni_affine = np.asarray(cohort.attrs["affine"])
    checked = 0
    for i in range(0, 64, 5):
        for j in range(0, 64, 5):
            point = sub["warp"]((m @ [i, j, 0, 1.0])[:3])
            expected = trilinear(coarse, mni_affine, point) + trilinear(fine, fine_affine, point)
            assert data[i, j, 0, 0] == pytest.approx(expected, abs=0.51)  # int16 rounding
            checked += expected > 100
    assert checked > 5


def test_same_seed_same_files_and_phenotypes(raw, tmp_path):
    again = ba.datasets.simulate_raw(tmp_path / "again", **KW)
    for sid, sub in raw["subjects"].items():
        for key in ("bold", "t1"):
            a = np.asarray(nib.load(sub[key]).dataobj)
            b = np.asarray(nib.load(again["subjects"][sid][key]).dataobj)
            np.testing.assert_array_equal(a, b)
        assert sub["json"].read_text() == again["subjects"][sid]["json"].read_text()
        np.testing.assert_array_equal(sub["motion"], again["subjects"][sid]["motion"])
    cohort = ba.datasets.simulate_cohort(1, 1, voxel_size=6.0, n_volumes=12, seed=3, n_movers=1)
    table = read_phenotypes(raw["root"] / "participants.tsv")
    assert list(table.index) == list(cohort.subject.values)
    assert list(table["group"]) == list(cohort.group.values)
    assert list(table["sex"]) == list(cohort.sex.values)
    np.testing.assert_array_equal(table["age"].to_numpy(float), cohort.age.values)
    np.testing.assert_array_equal(table["vas"].to_numpy(float), cohort.vas.values)
    assert raw["planted"] == cohort.attrs["planted"]
    np.testing.assert_array_equal(raw["subjects"]["sub-001"]["motion"], cohort.confounds.isel(subject=0).values)


def test_refuses_a_folder_it_did_not_write(tmp_path):
    from brainarr.testing import snapshot

    user = tmp_path / "project"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    before = snapshot(user)
    with pytest.raises(FileExistsError, match="did not write"):
        simulate_raw(user, n_patients=1, n_controls=1, n_volumes=8, t1_voxel_size=4.0, n_movers=0)
    assert snapshot(user) == before
    afile = tmp_path / "data.nii.gz"
    afile.write_bytes(b"x")
    with pytest.raises(FileExistsError, match="is a file"):
        simulate_raw(afile, n_patients=1, n_controls=1, n_volumes=8, t1_voxel_size=4.0, n_movers=0)
    assert afile.read_bytes() == b"x"
    # an earlier simulation may be written again
    root = tmp_path / "sim"
    simulate_raw(root, n_patients=1, n_controls=1, n_volumes=8, t1_voxel_size=4.0, n_movers=0)
    simulate_raw(root, n_patients=1, n_controls=1, n_volumes=8, t1_voxel_size=4.0, n_movers=0)
