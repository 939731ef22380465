"""NIfTI as an xarray backend: ``engine="brainarr"`` gives what ``brainarr.io.load_nifti`` gives, lazily."""

from __future__ import annotations

import dask
import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from brainarr import io as bio
from brainarr.backend import BrainarrBackendEntrypoint
from brainarr.exceptions import MissingMetadataError
from brainarr.testing import make_affine


def _write(path, data, tr=2.0):
    img = nib.Nifti1Image(np.asarray(data), make_affine(3.0))
    if np.ndim(data) == 4:
        img.header.set_zooms((*img.header.get_zooms()[:3], tr))
        img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return path


@pytest.fixture
def bold_path(tmp_path, rng):
    return _write(tmp_path / "sub-01_bold.nii.gz", rng.standard_normal((7, 8, 9, 30)).astype(np.float32))


@pytest.fixture
def counting(monkeypatch):
    """Count the voxel reads of the NIfTI chunk reader (the only path to the voxel data)."""
    calls = []
    original = bio._NiftiChunkReader.__getitem__

    def read(self, key):
        calls.append(key)
        return original(self, key)

    monkeypatch.setattr(bio._NiftiChunkReader, "__getitem__", read)
    return calls


def test_registered_engine_and_guess():
    assert "brainarr" in xr.backends.list_engines()
    entry = BrainarrBackendEntrypoint()
    assert entry.guess_can_open("a/sub-01_bold.nii.gz") and entry.guess_can_open("MAP.NII")
    assert not entry.guess_can_open("study.zarr") and not entry.guess_can_open(object())
    assert entry.description and entry.url.startswith("https://")
    assert {"filename_or_obj", "drop_variables", "tr", "dtype", "name"} == set(entry.open_dataset_parameters)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_open_dataarray_is_load_nifti(tmp_path, rng, suffix):
    path = _write(tmp_path / f"sub-01_bold{suffix}", rng.standard_normal((7, 8, 9, 30)).astype(np.float32))
    opened = xr.open_dataarray(path, engine="brainarr")
    reference = bio.load_nifti(path)
    assert opened.dims == reference.dims and opened.dtype == np.float32 and opened.name == "bold"
    assert opened.attrs["tr"] == 2.0 and np.allclose(opened.attrs["affine"], make_affine(3.0))
    xr.testing.assert_identical(opened.load(), reference.load())
    # a 3-D map, found by its name (no engine given), named by its stem
    map_path = _write(tmp_path / f"sub-01_alff{suffix}", rng.random((7, 8, 9)).astype(np.float32))
    xr.testing.assert_identical(xr.open_dataarray(map_path).load(), bio.load_nifti(map_path).load())


def test_open_reads_no_voxel(bold_path, counting):
    bold = xr.open_dataarray(bold_path, engine="brainarr")
    ds = xr.open_dataset(bold_path, engine="brainarr")
    assert counting == []
    assert bold.chunks is None  # a lazily indexed backend array, not dask (.data would load it)
    assert ds.attrs["tr"] == 2.0 and ds["bold"].encoding["source"] == str(bold_path)
    point = bold.sel(x=84.0, y=-120.0, z=-66.0, method="nearest").isel(time=slice(0, 5))
    assert counting == []  # still lazy: indexing composes, nothing is read
    values = point.values
    assert len(counting) == 1 and values.shape == (5,)
    np.testing.assert_array_equal(values, np.asarray(nib.load(bold_path).dataobj)[2, 2, 2, :5])


def test_chunks_give_dask_arrays(bold_path, counting):
    reference = bio.load_nifti(bold_path)
    preferred = xr.open_dataarray(bold_path, engine="brainarr", chunks={})
    auto = xr.open_dataarray(bold_path, engine="brainarr", chunks="auto")
    with pytest.warns(UserWarning, match="separate the stored chunks"):  # load_nifti's chunks are preferred
        explicit = xr.open_dataarray(bold_path, engine="brainarr", chunks={"x": 3})
    assert counting == []
    for arr in (preferred, auto, explicit):
        assert dask.is_dask_collection(arr.data)
    assert preferred.chunks == reference.chunks
    assert explicit.chunks[0] == (3, 3, 1)
    np.testing.assert_array_equal(explicit.values, reference.values)
    assert preferred.attrs["affine"] == reference.attrs["affine"] and preferred.attrs["tr"] == 2.0


def test_open_mfdataset_over_subjects(tmp_path, rng, counting):
    data = rng.standard_normal((3, 7, 8, 9, 20)).astype(np.float32)
    paths = [_write(tmp_path / f"sub-0{i + 1}_bold.nii.gz", data[i]) for i in range(3)]
    cohort = xr.open_mfdataset(paths, engine="brainarr", combine="nested", concat_dim="subject")
    assert counting == []
    bold = cohort["bold"]
    assert bold.dims == ("subject", "x", "y", "z", "time") and bold.shape == (3, 7, 8, 9, 20)
    assert dask.is_dask_collection(bold.data)
    assert bold.attrs["tr"] == 2.0 and np.allclose(bold.attrs["affine"], make_affine(3.0))
    xr.testing.assert_equal(bold[1].load(), bio.load_nifti(paths[1]).load())
    np.testing.assert_array_equal(bold.values, data)


def test_parameters_and_errors(tmp_path, rng):
    path = _write(tmp_path / "b.nii", rng.standard_normal((7, 8, 9, 10)).astype(np.float32), tr=0.0)
    with pytest.raises(MissingMetadataError, match="no repetition time"):
        xr.open_dataarray(path, engine="brainarr")
    bold = xr.open_dataarray(path, engine="brainarr", tr=0.8, dtype=np.float64, name="rest")
    assert bold.attrs["tr"] == 0.8 and bold.dtype == np.float64 and bold.name == "rest"
    np.testing.assert_allclose(bold["time"].values, 0.8 * np.arange(10))
    assert len(xr.open_dataset(path, engine="brainarr", tr=0.8, drop_variables="bold").data_vars) == 0
    with open(path, "rb") as fh, pytest.raises(TypeError, match="by path"):
        BrainarrBackendEntrypoint().open_dataset(fh)


def test_import_brainarr_and_listing_engines_stay_light():
    """xarray imports every registered backend when it lists engines: brainarr must cost it nothing."""
    import subprocess
    import sys

    code = (
        "import sys, xarray as xr; xr.backends.list_engines(); import brainarr; "
        "print(sorted(m for m in ('nibabel', 'matplotlib', 'pandas', 'brainarr.io', 'brainarr.metrics') "
        "if m in sys.modules)); "
        "import xarray; print(hasattr(xarray.DataArray, 'brain'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] in ("[]", "['pandas']"), out  # pandas comes with xarray itself
    assert out[1] == "True"  # the accessor is registered by import brainarr
