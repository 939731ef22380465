"""Fuzz tests of the input readers: hostile NIfTI headers and malformed tables.

Whatever the input, a reader either succeeds or raises a :class:`BrainarrError` whose message
names the file; never a bare numpy/pandas/nibabel/zlib error. A failed ingest into a new store
leaves no store behind.
"""

from __future__ import annotations

import gzip
import io
import struct
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainarr import io as bio
from brainarr.exceptions import BrainarrError
from brainarr.testing import make_affine

pytestmark = pytest.mark.filterwarnings("ignore::brainarr.exceptions.ObliqueAffineWarning")

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_nifti_bytes(shape=(4, 5, 3, 6)) -> bytes:
    data = (100 + np.random.default_rng(0).standard_normal(shape)).astype(np.float32)
    img = nib.Nifti1Image(data, make_affine(3.0))
    img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
    img.header.set_xyzt_units("mm", "sec")
    buf = io.BytesIO()
    file_map = nib.Nifti1Image.make_file_map({"image": buf, "header": buf})
    img.to_file_map(file_map)
    return buf.getvalue()


VALID = _valid_nifti_bytes()

# NIfTI-1 header fields: (offset, struct format, count)
FIELDS = {
    "sizeof_hdr": (0, "<i", 1),
    "dim": (40, "<h", 8),
    "datatype": (70, "<h", 1),
    "bitpix": (72, "<h", 1),
    "pixdim": (76, "<f", 8),
    "vox_offset": (108, "<f", 1),
    "scl_slope": (112, "<f", 1),
    "scl_inter": (116, "<f", 1),
    "xyzt_units": (123, "<B", 1),
    "qform_code": (252, "<h", 1),
    "sform_code": (254, "<h", 1),
    "quatern": (256, "<f", 6),
    "srow_x": (280, "<f", 4),
    "srow_y": (296, "<f", 4),
    "srow_z": (312, "<f", 4),
    "magic": (344, "4s", 1),
}

HOSTILE_FLOATS = st.sampled_from([0.0, -0.0, -1.0, 1.0, 1e-30, 1e30, 3.4e38, np.inf, -np.inf, np.nan, 2.0, 0.5])
HOSTILE_INTS = st.one_of(
    st.sampled_from([0, 1, -1, 2, 3, 4, 5, 7, 8, 9, 16, 32, 64, 128, 256, 511, 768, 1536, 2304, 32767, -32768]),
    st.integers(-32768, 32767),
)


@st.composite
def field_edits(draw):
    name = draw(st.sampled_from(sorted(FIELDS)))
    offset, fmt, count = FIELDS[name]
    index = draw(st.integers(0, count - 1))
    if fmt == "<f":
        value = struct.pack("<f", draw(HOSTILE_FLOATS))
    elif fmt == "<h":
        value = struct.pack("<h", draw(HOSTILE_INTS))
    elif fmt == "<i":
        value = struct.pack("<i", draw(st.sampled_from([0, 1, 348, 540, -348, 2**31 - 1])))
    elif fmt == "<B":
        value = struct.pack("<B", draw(st.integers(0, 255)))
    else:
        value = draw(st.sampled_from([b"n+1\0", b"ni1\0", b"n+2\0", b"\0\0\0\0", b"XXXX"]))
    size = struct.calcsize(fmt)
    return offset + index * size, value


byte_flips = st.tuples(st.integers(0, 347), st.integers(0, 255)).map(lambda t: (t[0], bytes([t[1]])))
edits = st.lists(st.one_of(field_edits(), byte_flips), min_size=1, max_size=4)


def _mutated(edits_: list[tuple[int, bytes]]) -> bytes:
    raw = bytearray(VALID)
    for offset, value in edits_:
        raw[offset : offset + len(value)] = value
    return bytes(raw)


def _write(folder: Path, raw: bytes, gz: bool) -> Path:
    path = folder / ("sub-01_bold.nii.gz" if gz else "sub-01_bold.nii")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _assert_names_file(err: BaseException, path: Path) -> None:
    assert isinstance(err, BrainarrError), f"{type(err).__module__}.{type(err).__name__}: {err}"
    assert path.name in str(err), f"{path.name} not in message: {err}"


@SETTINGS
@given(edits_=edits, gz=st.booleans())
def test_load_nifti_hostile_header(edits_, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), _mutated(edits_), gz)
        try:
            img = bio.load_nifti(path)
            img.values  # noqa: B018 - reading the data must fail cleanly too
        except Exception as err:
            _assert_names_file(err, path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits_=edits, gz=st.booleans())
def test_ingest_hostile_header(edits_, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), _mutated(edits_), gz)
        store = Path(tmp) / "fuzz.zarr"
        try:
            cohort = bio.ingest({"sub-01": str(path)}, store)
        except Exception as err:
            _assert_names_file(err, path)
            assert not store.exists(), f"a failed ingest left {sorted(p.name for p in store.iterdir())}"
        else:
            assert cohort.sizes["subject"] == 1
            assert np.isfinite(cohort["bold"].values).all()


def test_valid_file_still_reads():
    with tempfile.TemporaryDirectory() as tmp:
        for gz in (False, True):
            img = bio.load_nifti(_write(Path(tmp), VALID, gz))
            assert img.shape == (4, 5, 3, 6) and img.attrs["tr"] == 2.0


# ----------------------------------------------------------------------------- tables

CELL = st.one_of(
    st.sampled_from(
        ["", " ", "n/a", "n/a ", "NA", "nan", "inf", "-1e400", "1e-3", "42", " 42 ", "4o", "control", ' "q" ', '"']
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
)
GOOD_NAME = st.sampled_from(["participant_id", "age", "group", "sex", "site", "csf", " age ", "trans_x"])
NAME = st.one_of(
    GOOD_NAME,
    GOOD_NAME,
    GOOD_NAME,
    st.sampled_from(["subject", "mean_fd", "x", "a/b", "__x", ".x", ""]),
    st.text(alphabet="abcxyz_ -./", max_size=5),
)


@st.composite
def tables(draw, sep=None):
    sep = sep or draw(st.sampled_from(["\t", "\t", ",", ",", ";", " "]))
    n = draw(st.integers(1, 4))
    header = draw(st.lists(NAME, min_size=n, max_size=n))
    width = st.integers(0, 5) if draw(st.integers(0, 3)) == 0 else st.just(n)  # mostly rectangular
    rows = draw(st.lists(width.flatmap(lambda w: st.lists(CELL, min_size=w, max_size=w)), min_size=0, max_size=6))
    ending = draw(st.sampled_from(["\n", "\r\n", ""]))
    text = ending.join(sep.join(r) for r in [header, *rows]) + ending
    if draw(st.integers(0, 3)):
        return text.encode("utf-8", "surrogatepass")
    junk = draw(st.binary(max_size=40))
    return draw(st.sampled_from([junk, text.encode("utf-8", "surrogatepass") + junk, b"\xef\xbb\xbf" + junk]))


def _check_table_call(call, path: Path):
    try:
        return call()
    except Exception as err:
        _assert_names_file(err, path)
        return None


@SETTINGS
@given(
    raw_suffix=st.one_of(
        tables(sep="\t").map(lambda r: (r, ".tsv")),
        tables(sep=",").map(lambda r: (r, ".csv")),
        st.tuples(tables(), st.sampled_from([".tsv", ".csv", ".txt"])),
    )
)
def test_read_phenotypes_malformed(raw_suffix):
    raw, suffix = raw_suffix
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"participants{suffix}"
        path.write_bytes(raw)
        table = _check_table_call(lambda: bio.read_phenotypes(path), path)
        if table is None:
            return
        ids = list(table.index)
        assert all(isinstance(s, str) and s == s.strip() and s for s in ids)
        assert len(set(ids)) == len(ids)
        for name in table.columns:
            assert name == name.strip() and name not in bio._RESERVED_NAMES
            column = table[name]
            if not pd.api.types.is_numeric_dtype(column.dtype):
                assert all(isinstance(v, str) and v == v.strip() and v for v in column.dropna())
            else:
                assert not np.isinf(column.to_numpy(dtype=float)).any()


SAFE_CELL = CELL.filter(lambda c: not set(c) & set('\t\r\n"\x00'))


@SETTINGS
@given(
    ids=st.lists(
        st.sampled_from(["sub-01", " sub-02", "sub-03 ", "sub-04", "sub-05", "sub-06"]),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    columns=st.lists(st.lists(SAFE_CELL, min_size=6, max_size=6), min_size=1, max_size=3),
)
def test_read_phenotypes_hostile_cells(ids, columns):
    """A well-formed TSV with hostile cells: numeric, text, or refused, as documented."""
    names = ["age", "group", "score"][: len(columns)]
    lines = ["\t".join(["participant_id", *names])]
    lines += ["\t".join([sid] + [col[i] for col in columns]) for i, sid in enumerate(ids)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "participants.tsv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        table = _check_table_call(lambda: bio.read_phenotypes(path), path)
        if table is None:
            return
        assert list(table.index) == [s.strip() for s in ids]
        for name, col in zip(names, columns, strict=True):
            cells = [c.strip() for c in col[: len(ids)]]
            present = [c for c in cells if c.lower() not in {"", "n/a", "na", "nan", "-nan", "null", "none", "<na>"}]
            if pd.api.types.is_numeric_dtype(table[name].dtype):
                assert np.isnan(table[name].to_numpy(dtype=float)).sum() == len(cells) - len(present)
                np.testing.assert_allclose(table[name].dropna().to_numpy(dtype=float), [float(c) for c in present])
            else:
                assert list(table[name].dropna()) == present


@SETTINGS
@given(raw=st.one_of(tables(sep="\t"), tables()), pick=st.integers(0, 3))
def test_read_confounds_tsv_malformed(raw, pick):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sub-01_desc-confounds_timeseries.tsv"
        path.write_bytes(raw)
        first_line = raw.split(b"\n", 1)[0].decode("utf-8", "replace").split("\t")
        columns = [first_line[pick % len(first_line)].strip()]
        out = _check_table_call(lambda: bio.read_confounds_tsv(path, columns), path)
        if out is not None:
            assert out.dims == ("time", "confound") and np.isfinite(out.values).all()


motion_lines = st.lists(
    st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), CELL), min_size=0, max_size=7),
    min_size=0,
    max_size=6,
)


@SETTINGS
@given(lines=motion_lines, junk=st.binary(max_size=12), sep=st.sampled_from([" ", "\t", ",", "  "]))
def test_read_spm_motion_malformed(lines, junk, sep):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rp_sub01.txt"
        path.write_bytes("\n".join(sep.join(line) for line in lines).encode("utf-8", "surrogatepass") + junk)
        out = _check_table_call(lambda: bio.read_spm_motion(path), path)
        if out is not None:
            assert out.shape[1] == 6 and np.isfinite(out.values).all()
