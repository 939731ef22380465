"""Named slice orders, the Fourier sub-sample shift and the header TR, against independent references."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

import brainarr.preprocess as pp
from brainarr._core.fft import fourier_shift
from brainarr._core.slices import (
    SLICE_ORDERS,
    acquisition_order,
    header_time_unit,
    header_tr,
    slice_times,
)

# ------------------------------------------------------------------------------------------
# slice orders
# ------------------------------------------------------------------------------------------

# 1-based acquisition orders as typed into SPM's slice-timing batch and DPABI's SliceOrder field:
# ascending 1:n, descending n:-1:1, interleaved bottom-up [1:2:n 2:2:n], and the Siemens rule
# for an even number of slices [2:2:n 1:2:n].
LITERAL_1BASED = {
    ("ascending", 5): [1, 2, 3, 4, 5],
    ("descending", 5): [5, 4, 3, 2, 1],
    ("interleaved", 5): [1, 3, 5, 2, 4],
    ("interleaved_siemens", 5): [1, 3, 5, 2, 4],
    ("ascending", 6): [1, 2, 3, 4, 5, 6],
    ("descending", 6): [6, 5, 4, 3, 2, 1],
    ("interleaved", 6): [1, 3, 5, 2, 4, 6],
    ("interleaved_siemens", 6): [2, 4, 6, 1, 3, 5],
    ("interleaved", 33): [*range(1, 34, 2), *range(2, 34, 2)],
    ("interleaved_siemens", 33): [*range(1, 34, 2), *range(2, 34, 2)],
    ("interleaved", 32): [*range(1, 33, 2), *range(2, 33, 2)],
    ("interleaved_siemens", 32): [*range(2, 33, 2), *range(1, 33, 2)],
    ("interleaved", 1): [1],
    ("interleaved_siemens", 1): [1],
    ("interleaved", 2): [1, 2],
    ("interleaved_siemens", 2): [2, 1],
}


@pytest.mark.parametrize(("key", "literal"), LITERAL_1BASED.items(), ids=[f"{o}-{n}" for o, n in LITERAL_1BASED])
def test_acquisition_order_matches_spm_dpabi_literals(key, literal):
    order, n = key
    np.testing.assert_array_equal(acquisition_order(order, n), np.asarray(literal) - 1)


def _loop_order(order: str, n: int) -> list[int]:
    """0-based acquisition order built with plain loops."""
    if order == "ascending":
        return list(range(n))
    if order == "descending":
        return [n - 1 - i for i in range(n)]
    evens = [i for i in range(n) if i % 2 == 0]
    odds = [i for i in range(n) if i % 2 == 1]
    if order == "interleaved_siemens" and n % 2 == 0:
        return odds + evens
    return evens + odds


@pytest.mark.parametrize("order", SLICE_ORDERS)
def test_slice_times_against_loops(order):
    tr = 2.1
    for n in range(1, 14):
        expected = [0.0] * n
        for rank, index in enumerate(_loop_order(order, n)):
            expected[index] = rank * tr / n
        got = slice_times(order, n, tr)
        assert got.dtype == np.float64 and got.shape == (n,)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14)
        # a permutation of the evenly spaced times, all inside [0, TR)
        np.testing.assert_allclose(np.sort(got), np.arange(n) * tr / n, rtol=0, atol=1e-14)
        assert got.min() >= 0 and got.max() < tr


def test_slice_times_literal():
    np.testing.assert_allclose(slice_times("interleaved", 5, 2.0), [0.0, 1.2, 0.4, 1.6, 0.8], atol=1e-15)
    np.testing.assert_allclose(slice_times("interleaved_siemens", 4, 2.0), [1.0, 0.0, 1.5, 0.5], atol=1e-15)
    np.testing.assert_allclose(slice_times("descending", 4, 2.0), [1.5, 1.0, 0.5, 0.0], atol=1e-15)


def test_bad_orders():
    with pytest.raises(ValueError, match=r"^slice_timing: order must be one of 'ascending'.*got 'spiral'"):
        slice_times("spiral", 4, 2.0, func="slice_timing")
    with pytest.raises(ValueError, match=r"^order must be one of"):
        acquisition_order("Interleaved", 4)
    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_slices must be a positive integer"):
            slice_times("ascending", n, 2.0)
    for tr in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tr must be a positive number of seconds"):
            slice_times("ascending", 4, tr)


# ------------------------------------------------------------------------------------------
# Fourier shift
# ------------------------------------------------------------------------------------------


def _dft_reference(x: np.ndarray, shift: float) -> np.ndarray:
    """Line-extended series shifted by explicit DFT sums over all P bins (no FFT, no rfft symmetry)."""
    n = len(x)
    p = 1
    while p < 2 * n:
        p *= 2
    ext = [float(v) for v in x]
    ext += [x[-1] + (x[0] - x[-1]) * j / (p - n + 1) for j in range(1, p - n + 1)]
    ext = np.asarray(ext)
    idx = np.arange(p)
    spectrum = np.exp(-2j * np.pi * np.outer(idx, idx) / p) @ ext
    signed = np.where(idx < p / 2, idx, idx - p)  # frequency of each bin, in cycles per P samples
    factor = np.exp(2j * np.pi * signed * shift / p)
    factor[p // 2] = math.cos(math.pi * shift)  # Nyquist bin: the real part of its factor
    out = (np.exp(2j * np.pi * np.outer(idx, idx) / p) @ (spectrum * factor)) / p
    assert np.abs(out.imag).max() < 1e-9 * max(1.0, np.abs(ext).max())
    return out.real[:n]


@pytest.mark.parametrize("n_time", [1, 2, 3, 7, 16, 17, 30])
def test_fourier_shift_matches_direct_dft(rng, n_time):
    shifts = [0.0, 0.5, -0.5, 0.123, -0.77, 1.0, 1.5, -2.25]
    x = rng.standard_normal((len(shifts), n_time)) * 10 + 100
    got = fourier_shift(x, np.asarray(shifts))
    for row, s in zip(range(len(shifts)), shifts, strict=True):
        np.testing.assert_allclose(got[row], _dft_reference(x[row], s), rtol=0, atol=1e-9)


def test_integer_shift_is_circular_shift_of_extension(rng):
    n = 11
    x = rng.standard_normal(n)
    p = 32
    ext = np.concatenate([x, x[-1] + (x[0] - x[-1]) * np.arange(1, p - n + 1) / (p - n + 1)])
    for m in (-3, -1, 1, 2, 5):
        np.testing.assert_allclose(fourier_shift(x, float(m)), np.roll(ext, -m)[:n], rtol=0, atol=1e-12)


def test_shift_of_slow_sinusoid_matches_analytic():
    # a band-limited signal well below Nyquist: the shifted series is the signal at n + s
    n, s = 200, 0.37
    t = np.arange(n)
    f = 0.0123  # cycles per sample
    got = fourier_shift(np.sin(2 * np.pi * f * t), s)
    inner = slice(20, n - 20)  # away from the line joining the ends
    np.testing.assert_allclose(got[inner], np.sin(2 * np.pi * f * (t + s))[inner], atol=2e-3)


def test_fourier_shift_dtype_shape_and_broadcasting(rng):
    x32 = rng.standard_normal((3, 4, 25)).astype(np.float32)
    out = fourier_shift(x32, 0.25)
    assert out.dtype == np.float32 and out.shape == x32.shape
    np.testing.assert_allclose(out, fourier_shift(x32.astype(np.float64), 0.25), rtol=0, atol=1e-5)
    assert fourier_shift(np.arange(10), 0.5).dtype == np.float64
    np.testing.assert_allclose(fourier_shift(x32, 0.0), x32, atol=1e-6)
    per_row = np.array([[0.1], [-0.4], [0.9]])  # broadcasts over the second axis
    got = fourier_shift(x32, per_row)
    for i in range(3):
        for j in range(4):
            np.testing.assert_array_equal(got[i, j], fourier_shift(x32[i, j], per_row[i, 0]))
    const = np.full((2, 9), 7.5)
    np.testing.assert_allclose(fourier_shift(const, 0.5), const, atol=1e-12)


def test_slice_timing_uses_the_shared_kernel(rng):
    values = rng.standard_normal((2, 3, 6, 40)) * 5 + 50
    bold = xr.DataArray(values, dims=("x", "y", "z", "time"), attrs={"tr": 2.0})
    out = pp.slice_timing(bold, order="interleaved_siemens", ref="first")
    times = slice_times("interleaved_siemens", 6, 2.0)
    expected = np.stack([fourier_shift(values[:, :, z], (times.min() - times[z]) / 2.0) for z in range(6)], axis=2)
    np.testing.assert_array_equal(out.values, expected)
    np.testing.assert_array_equal(out.attrs["slice_times"], times)


# ------------------------------------------------------------------------------------------
# header TR
# ------------------------------------------------------------------------------------------


def _header(shape=(4, 4, 3, 10), tr=2.0, unit="sec", cls=nib.Nifti1Header):
    h = cls()
    h.set_data_shape(shape)
    h.set_zooms((3.0, 3.0, 3.0, tr)[: len(shape)])
    if unit is not None:
        h.set_xyzt_units(xyz="mm", t=unit)
    return h


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (2.0, "sec", 2.0),
        (0.8, "sec", 0.8),  # float32 on disk: read back as 0.8, not 0.800000011920929
        (800.0, "msec", 0.8),
        (720.0, "msec", 0.72),
        (2_000_000.0, "usec", 2.0),
        (2.5, "unknown", 2.5),
        (2.5, "hz", 2.5),  # not a time unit: taken as s
    ],
)
def test_header_tr_units(value, unit, expected):
    assert header_tr(_header(tr=value, unit=unit)) == expected


def test_header_tr_none_and_nifti2():
    assert header_tr(_header(shape=(4, 4, 3))) is None
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        h = _header()
        h["pixdim"][4] = bad  # written as a damaged file would hold it (set_zooms refuses these)
        assert header_tr(h) is None
    assert header_tr(_header(tr=1.5, unit="msec", cls=nib.Nifti2Header)) == 0.0015
    assert header_time_unit(_header(unit="msec")) == "msec"
    assert header_time_unit(nib.AnalyzeHeader()) == "unknown"


def test_io_reads_tr_through_the_shared_helper(tmp_path):
    import warnings

    from brainarr.io import load_nifti

    img = nib.Nifti1Image(np.zeros((4, 4, 3, 5), np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_zooms((3.0, 3.0, 3.0, 720.0))
    img.header.set_xyzt_units(xyz="mm", t="msec")
    nib.save(img, tmp_path / "b.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_nifti(tmp_path / "b.nii.gz").attrs["tr"] == 0.72
