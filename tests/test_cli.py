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


def test_help_lists_study_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("run", "report", "demo"):
        assert f"brainarr {command}" in out


@pytest.mark.slow
def test_run_and_report_commands(tmp_path, capsys):
    from brainarr.datasets import simulate_cohort

    store = tmp_path / "study.zarr"
    sim = simulate_cohort(4, 4, voxel_size=6.0, n_volumes=60, seed=1, effect_size=3.0, shape=(14, 18, 14))
    ba.io.ingest(sim, str(store))
    config = tmp_path / "study.toml"
    config.write_text('[preprocess]\ndiscard = 2\n[metrics]\nfamilies = ["alff"]\n[output]\nfigures = false\n')
    out_dir = tmp_path / "results"
    assert main(["run", str(config), "--store", str(store), "--output", str(out_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"report:  {out_dir / 'report.html'}" in out
    assert "malff" in out and "cluster(s)" in out
    assert (out_dir / "maps" / "zalff_t.nii.gz").exists()
    (out_dir / "report.html").unlink()
    assert main(["report", str(store), "--config", str(config), "--output", str(out_dir)]) == 0
    assert (out_dir / "report.html").exists()
    # a missing config file is a one-line error
    assert main(["run", str(tmp_path / "nope.toml"), "--store", str(store)]) == 1
    assert "nope.toml" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_prints_recovery_summary(tmp_path, capsys):
    store = tmp_path / "demo.zarr"
    argv = ["demo", "--store", str(store), "--output", str(tmp_path / "out"), "--quiet", "--no-figures"]
    argv += ["--n-patients", "5", "--n-controls", "5", "--n-volumes", "64", "--shape", "16", "20", "16"]
    argv += ["--effect-size", "3", "--permutation", "50"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "planted effects (patients vs controls):" in out
    # the same summary for permutation inference at the same thresholds
    assert "with permutation inference (50 permutations, cluster mass, same thresholds):" in out
    assert out.count("planted effects (patients vs controls):") == 2
    assert (tmp_path / "out" / "tables" / "malff_permutation_clusters.csv").exists()
    assert "alff  Postcentral_R" in out
    assert "recovered" in out and "of 9 planted effects" in out
    assert "false clusters" in out
    assert (tmp_path / "out" / "report.html").exists()
    assert "demo done in" in out


@pytest.mark.parametrize("command", ["demo", "run", "report", "simulate", "ingest", "info"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: brainarr {command}")
    from brainarr.cli import _build_parser

    sub = _build_parser()._subparsers._group_actions[0].choices[command]
    assert sub.description and len(sub.description) > 30  # says what the command does
    undocumented = [a.dest for a in sub._actions if a.help is None]
    assert not undocumented, f"options without help text: {undocumented}"


def test_ingest_raw_needs_one_folder_and_plain_ingest_points_to_it(tmp_path, capsys):
    from brainarr.datasets import simulate_raw

    assert main(["ingest", "--raw", "a.nii.gz", "b.nii.gz", str(tmp_path / "s.zarr")]) == 1
    assert "ingest --raw takes one folder" in capsys.readouterr().err
    root = tmp_path / "bids"
    simulate_raw(root, n_patients=1, n_controls=1, n_volumes=8, t1_voxel_size=4.0, seed=1, n_movers=0)
    assert main(["ingest", str(root), str(tmp_path / "t.zarr")]) == 1
    err = capsys.readouterr().err
    assert "raw scanner data" in err and "brainarr ingest --raw" in err
    assert not (tmp_path / "t.zarr").exists()


def test_demo_from_raw_is_documented(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--from-raw" in out and "BIDS" in out
