"""Core helpers: options, provenance, chunk layout, grids, laziness helpers."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import brainarr as ba
from brainarr._core.attrs import carry_attrs, record_history, set_metadata
from brainarr._core.chunks import spatial_chunks
from brainarr._core.grid import is_axis_aligned, spatial_coords, voxel_size
from brainarr._core.validation import check_dims, check_same_grid, check_time_chunk, data_problem, get_tr
from brainarr.exceptions import (
    ChunkingError,
    DataValidationError,
    DimensionError,
    GridMismatchError,
    MissingMetadataError,
)
from brainarr.testing import make_bold, raise_if_dask_computes


class TestOptions:
    def test_context_restores(self):
        before = ba.set_options.current()["chunk_mib"]
        with ba.set_options(chunk_mib=8):
            assert ba.set_options.current()["chunk_mib"] == 8
        assert ba.set_options.current()["chunk_mib"] == before

    @pytest.mark.parametrize(
        ("kwargs", "match"), [({"chunk_mb": 8}, "unknown brainarr option"), ({"chunk_mib": -1}, "positive")]
    )
    def test_invalid(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            ba.set_options(**kwargs)

    def test_data_validation_modes(self, caplog):
        with pytest.raises(DataValidationError, match="bad voxel"):
            data_problem("bad voxel")
        with ba.set_options(data_validation="warn"), pytest.warns(UserWarning, match="bad voxel"):
            data_problem("bad voxel")
        with ba.set_options(data_validation="log"):
            data_problem("bad voxel")
        assert "bad voxel" in caplog.text


class TestChunks:
    def test_full_size_bold_fits_target(self):
        chunks = spatial_chunks((61, 73, 61), bytes_per_voxel=230 * 4, target_mib=64)
        size = np.prod(list(chunks.values())) * 230 * 4
        assert size <= 64 * 2**20
        assert size > 64 * 2**20 / 8  # not needlessly small

    def test_rechunk_for_metrics(self):
        bold = make_bold(shape=(7, 8, 9, 40), chunks={"time": 10})
        with raise_if_dask_computes():
            out = ba.rechunk_for_metrics(bold, target_mib=0.01)
        assert out.chunksizes["time"] == (40,)
        assert all(max(c) * 1 <= n for c, n in zip(out.chunks[:3], (7, 8, 9), strict=True))
        np.testing.assert_array_equal(out.values, bold.values)

    def test_time_chunk_check_names_the_fix(self):
        bold = make_bold(chunks={"time": 10})
        with pytest.raises(ChunkingError, match=r"4 chunks along 'time'.*chunk\(time=-1\)"):
            check_time_chunk(bold, func="f")


class TestGrid:
    def test_axis_aligned_with_flip(self):
        affine = np.diag([-3.0, 3, 3, 1])
        assert is_axis_aligned(affine)
        np.testing.assert_allclose(voxel_size(affine), [3, 3, 3])
        coords = spatial_coords(affine, (4, 5, 6))
        np.testing.assert_allclose(coords["x"].values, [0, -3, -6, -9])

    def test_rotation_is_oblique(self):
        theta = 0.1
        rot = np.eye(4)
        rot[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
        assert not is_axis_aligned(rot)

    def test_permuted_axes_are_not_axis_aligned(self):
        # zero obliquity, but voxel x runs along world y: coordinates cannot be world mm
        perm = np.array([[0, 2.0, 0, 0], [3.0, 0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 1]])
        assert not is_axis_aligned(perm)
        np.testing.assert_allclose(voxel_size(perm), [3, 2, 4])

    def test_voxel_size_of_an_oblique_sheared_affine(self, rng):
        affine = np.eye(4)
        affine[:3, :3] = rng.standard_normal((3, 3))
        affine[:3, 3] = rng.standard_normal(3) * 50
        expected = [np.sqrt(sum(affine[r, c] ** 2 for r in range(3))) for c in range(3)]
        np.testing.assert_allclose(voxel_size(affine), expected, rtol=1e-14)


class TestValidation:
    def test_check_dims(self):
        with pytest.raises(DimensionError, match=r"missing \['time'\]"):
            check_dims(make_bold().isel(time=0), ("x", "y", "z", "time"), func="f")

    def test_tr(self):
        bold = make_bold()
        assert get_tr(bold, func="f") == 2.0
        del bold.attrs["tr"]
        with pytest.raises(MissingMetadataError, match="repetition time"):
            get_tr(bold, func="f")

    def test_same_grid(self):
        a = make_bold(shape=(7, 8, 9, 3))
        b = make_bold(shape=(7, 8, 10, 3))
        with pytest.raises(GridMismatchError, match="z has 9 vs 10"):
            check_same_grid(a, b, names=("bold", "mask"), func="f")


class TestProvenance:
    def test_record_history_and_metadata(self):
        @record_history
        def double(obj, *, factor=2):
            out = set_metadata(obj * factor, name="twice", long_name="twice the input", units="1")
            return carry_attrs(obj, out)

        bold = make_bold()
        out = double(bold, factor=3)
        assert out.name == "twice" and out.attrs["units"] == "1"
        assert out.attrs["tr"] == 2.0 and out.attrs["affine"] == bold.attrs["affine"]
        line = out.attrs["history"].splitlines()[-1]
        assert "test_core.double(factor=3)" in line and f"[brainarr {ba.__version__}]" in line
        again = double(out)
        assert len(again.attrs["history"].splitlines()) == 2

    def test_dataset_variables_get_history(self):
        @record_history
        def pair(obj):
            return xr.Dataset({"a": obj, "b": obj})

        out = pair(make_bold())
        assert "pair()" in out["a"].attrs["history"] and "pair()" in out.attrs["history"]


class TestLazinessHelpers:
    def test_raise_if_dask_computes_raises(self):
        with raise_if_dask_computes(), pytest.raises(RuntimeError, match="Too many computes"):
            da.ones(3).sum().compute()
