"""Cohort stores on S3-compatible object storage (a local moto server on 127.0.0.1)."""

from __future__ import annotations

import threading

import botocore.session as botocore_session
import moto.server as moto_server
import nibabel as nib
import numpy as np
import pytest
import s3fs  # noqa: F401 - the s3:// filesystem of fsspec
import xarray as xr

from brainarr import io as bio
from brainarr.cohort import open_cohort
from brainarr.exceptions import StoreError
from brainarr.metrics import alff
from brainarr.testing import make_affine

pytestmark = pytest.mark.slow

SHAPE = (7, 8, 9, 30)
CHUNKS = {"x": 4, "y": 5, "z": 9}  # two x chunks and two y chunks: four chunks per subject
KEY = "testing"
_BUCKETS = 0


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free loopback port; yields its endpoint URL.

    Fake credentials are set in the environment too, and the EC2 metadata lookup is off, so
    no client ever looks for real credentials or leaves the loopback interface.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", KEY)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.delenv("AWS_PROFILE", raising=False)
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        yield f"http://127.0.0.1:{port}"
        server.stop()


@pytest.fixture
def bucket(s3_endpoint):
    """A fresh bucket; yields ``(bucket name, storage_options)``."""
    global _BUCKETS
    _BUCKETS += 1
    name = f"study-{_BUCKETS}"
    client = botocore_session.get_session().create_client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=KEY,
    )
    client.create_bucket(Bucket=name)
    options = {
        "key": KEY,
        "secret": KEY,
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    return name, options


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    """Three subjects' BOLD as uncompressed NIfTI files (distinct data)."""
    root = tmp_path_factory.mktemp("nifti")
    rng = np.random.default_rng(7)
    paths = {}
    for i in range(3):
        data = (100 + rng.standard_normal(SHAPE) * (1 + i)).astype(np.float32)
        path = root / f"sub-{i + 1:02d}_bold.nii"
        img = nib.Nifti1Image(data, make_affine(3.0))
        img.header.set_xyzt_units("mm", "sec")
        img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
        nib.save(img, path)
        paths[f"sub-{i + 1:02d}"] = str(path)
    return paths


@pytest.fixture(scope="module")
def local_cohort(subjects, tmp_path_factory):
    store = tmp_path_factory.mktemp("local") / "study.zarr"
    return bio.ingest(subjects, store, chunks=CHUNKS)


def _assert_same_cohort(actual: xr.Dataset, expected: xr.Dataset) -> None:
    assert list(actual["subject"].values) == list(expected["subject"].values)
    np.testing.assert_array_equal(actual["bold"].values, expected["bold"].values)
    xr.testing.assert_equal(actual.drop_vars("bold"), expected.drop_vars("bold"))
    for key in ("tr", "affine"):
        assert actual.attrs[key] == expected.attrs[key]
    assert actual["bold"].chunks == expected["bold"].chunks


def test_ingest_and_open_over_s3_equal_local(bucket, subjects, local_cohort):
    name, options = bucket
    url = f"s3://{name}/study.zarr"
    returned = bio.ingest(subjects, url, chunks=CHUNKS, storage_options=options)
    reopened = open_cohort(url, storage_options=options)
    assert returned.attrs["store"] == url
    _assert_same_cohort(reopened, local_cohort)
    _assert_same_cohort(returned, local_cohort)
    # running the same ingest again is a no-op (every subject is committed)
    again = bio.ingest(subjects, url, chunks=CHUNKS, storage_options=options)
    _assert_same_cohort(again, local_cohort)


def test_open_missing_s3_store(bucket):
    name, options = bucket
    with pytest.raises(StoreError, match=f"s3://{name}/absent.zarr"):
        open_cohort(f"s3://{name}/absent.zarr", storage_options=options)


def _failing_reader(monkeypatch, fail_after: int) -> list[int]:
    """Make NIfTI chunk reads raise after ``fail_after`` successful calls (thread-safe)."""
    original = bio._NiftiChunkReader.__getitem__
    lock = threading.Lock()
    calls = [0]

    def flaky(self, key):
        with lock:
            calls[0] += 1
            n = calls[0]
        if n > fail_after:
            raise ConnectionError(f"simulated network failure at read {n}")
        return original(self, key)

    monkeypatch.setattr(bio._NiftiChunkReader, "__getitem__", flaky)
    return calls


@pytest.mark.parametrize(
    ("fail_after", "committed"),
    [(2, []), (5, ["sub-01"])],
    ids=["first-subject", "second-subject"],
)
def test_interrupted_ingest_resumes(bucket, subjects, local_cohort, monkeypatch, fail_after, committed):
    """A failure mid-subject leaves the committed cohort; the same call again finishes it."""
    import zarr

    name, options = bucket
    url = f"s3://{name}/study.zarr"
    _failing_reader(monkeypatch, fail_after)
    with pytest.raises(ConnectionError, match="simulated network failure"):
        bio.ingest(subjects, url, chunks=CHUNKS, storage_options=options)
    monkeypatch.undo()
    if committed:
        partial = open_cohort(url, storage_options=options)
        assert list(partial["subject"].values) == committed
        _assert_same_cohort(partial, local_cohort.isel(subject=slice(0, len(committed))))
        # the half-written subject's rows were trimmed away, not merely hidden
        raw = zarr.open_group(url, mode="r", zarr_format=3, storage_options=options)
        assert raw["bold"].shape[0] == len(committed)
    else:
        # the first subject failed: the store it created is removed again
        with pytest.raises(StoreError, match="no cohort store"):
            open_cohort(url, storage_options=options)
    resumed = bio.ingest(subjects, url, chunks=CHUNKS, storage_options=options)
    _assert_same_cohort(resumed, local_cohort)


def test_alff_from_s3_cohort_equals_local(bucket, subjects, local_cohort):
    name, options = bucket
    url = f"s3://{name}/study.zarr"
    remote = bio.ingest(subjects, url, chunks=CHUNKS, storage_options=options)
    got = alff(remote["bold"]).compute()
    expected = alff(local_cohort["bold"]).compute()
    for var in ("alff", "falff"):
        np.testing.assert_array_equal(got[var].values, expected[var].values)
    # and against the data read straight from the NIfTI files (an independent path)
    direct = xr.concat([bio.load_nifti(path).expand_dims(subject=[s]) for s, path in subjects.items()], dim="subject")
    reference = alff(direct).compute()
    np.testing.assert_allclose(got["alff"].values, reference["alff"].values, rtol=1e-6, atol=1e-7)


def test_lock_is_exclusive_on_s3(bucket):
    """The conditional put (If-None-Match) gives one writer the lock of an S3 store."""
    from brainarr.cohort import StoreLock
    from brainarr.exceptions import StoreLockedError

    name, options = bucket
    url = f"s3://{name}/study.zarr"
    locked = pytest.raises(StoreLockedError, match=r"study\.zarr is locked by another writer: brainarr ingest")
    with StoreLock(url, storage_options=options, command="ingest"), locked:
        StoreLock(url, storage_options=options, command="run").acquire()
    with StoreLock(url, storage_options=options, command="run") as lock:  # released: free again
        assert lock.holder()["command"] == "run"
