"""The command line."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import brainarr as ba
from brainarr.cli import main
from brainarr.testing import make_affine


def _nifti(path, rng, shape=(7, 8, 9, 12)):
    img = nib.Nifti1Image(rng.standard_normal(shape).astype(np.float32), make_affine(3.0))
    img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return path


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"brainarr {ba.__version__}"


def test_help_explains_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "simulate", "ingest", "info"):
        assert command in out


def test_entry_point_installed():
    result = subprocess.run([sys.executable, "-m", "brainarr.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "cohort" in result.stdout


def test_ingest_and_info(tmp_path, rng, capsys):
    files = [_nifti(tmp_path / f"sub-0{i}_task-rest_bold.nii", rng) for i in (1, 2)]
    store = str(tmp_path / "s.zarr")
    assert main(["ingest", *map(str, files), store]) == 0
    assert "subjects: 2" in capsys.readouterr().out
    assert main(["info", store, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["subjects"] == ["sub-01", "sub-02"]
    assert info["sizes"]["time"] == 12 and info["tr"] == 2.0


def test_errors_are_one_line_and_exit_1(tmp_path, rng, capsys):
    assert main(["info", str(tmp_path / "missing.zarr")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("brainarr info: error: no cohort store at") and "missing.zarr" in err
    good = _nifti(tmp_path / "sub-01_bold.nii", rng)
    bad = _nifti(tmp_path / "sub-02_bold.nii", rng, shape=(7, 8, 9, 11))
    assert main(["ingest", str(good), str(bad), str(tmp_path / "s.zarr")]) == 1
    assert "sub-02" in capsys.readouterr().err
