"""Export of a study's maps as BIDS derivatives, DPABI and C-PAC outputs, in NIfTI or NIfTI-Zarr."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from io import BytesIO
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
import zarr

from brainarr import export, io, pipeline
from brainarr.cli import main
from brainarr.cohort import open_cohort
from brainarr.config import StudyConfig
from brainarr.datasets import simulate_cohort
from brainarr.exceptions import MissingMetadataError
from brainarr.testing import make_affine

FAMILIES = ("alff", "reho", "fc")
SHAPE = (18, 22, 16)
SPACE = "MNI152NLin2009aSym"
PREFIX = f"task-rest_space-{SPACE}_res-6"
#: BIDS entity order (sub, ses, task, space, res, stat, desc last), then the suffix.
BIDS_MAP = re.compile(
    r"^sub-(?P<sub>[A-Za-z0-9]+)(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+_space-[A-Za-z0-9]+_res-[A-Za-z0-9]+"
    r"_stat-[A-Za-z0-9]+(_desc-[A-Za-z0-9]+)?_boldmap\.(nii\.gz|nii\.zarr|json)$"
)
BIDS_GROUP = re.compile(
    r"^task-[A-Za-z0-9]+_space-[A-Za-z0-9]+_res-[A-Za-z0-9]+_contrast-[A-Za-z0-9]+_stat-t_desc-[A-Za-z0-9]+"
    r"_statmap\.(nii\.gz|nii\.zarr|json)$"
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A processed study (3 + 3 subjects, 6 mm, ALFF, ReHo and four FC seeds) and its results folder."""
    base = tmp_path_factory.mktemp("study")
    store = base / "study.zarr"
    io.ingest(simulate_cohort(3, 3, voxel_size=6.0, n_volumes=56, seed=2, shape=SHAPE), store)
    cfg = StudyConfig()
    cfg = dataclasses.replace(
        cfg,
        preprocess=dataclasses.replace(cfg.preprocess, discard=0),
        metrics=dataclasses.replace(cfg.metrics, families=FAMILIES),
        output=dataclasses.replace(cfg.output, figures=False),
    )
    result = pipeline.run(cfg, store, progress=False)
    return store, result.output


@pytest.fixture(scope="module")
def exported(study, tmp_path_factory):
    store, _ = study
    base = tmp_path_factory.mktemp("exported")
    out = {}
    for layout, fmt in (("bids", None), ("dpabi", None), ("cpac", None), ("bids", "nii.zarr")):
        folder = base / f"{layout}-{fmt or 'native'}"
        out[(layout, fmt)] = (folder, export.export(store, folder, layout=layout, format=fmt))
    return out


def _row(store, name, subject, seed=None):
    cohort = open_cohort(store)
    var = cohort[name].sel(subject=subject)
    return np.asarray((var.sel(seed=seed) if seed is not None else var).values)


def _check_nifti(path: Path, expected: np.ndarray, affine) -> None:
    img = nib.load(path)
    np.testing.assert_array_equal(np.asarray(img.dataobj), expected)
    np.testing.assert_allclose(img.affine, affine)
    assert int(img.header["sform_code"]) == 4 and int(img.header["qform_code"]) == 4
    assert img.get_data_dtype() == expected.dtype


def test_bids_names_sidecars_and_description(study, exported):
    store, _ = study
    folder, written = exported[("bids", None)]
    description = json.loads((folder / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    assert description["GeneratedBy"][0]["Name"] == "brainarr" and description["GeneratedBy"][0]["Version"]
    maps = sorted((folder / "sub-001" / "func").iterdir())
    assert maps and all(BIDS_MAP.match(p.name) for p in maps), [p.name for p in maps if not BIDS_MAP.match(p.name)]
    names = {p.name for p in maps}
    for expected in (
        f"sub-001_{PREFIX}_stat-alff_boldmap.nii.gz",
        f"sub-001_{PREFIX}_stat-alff_desc-zstd_boldmap.nii.gz",
        f"sub-001_{PREFIX}_stat-falff_desc-meannorm_boldmap.nii.gz",
        f"sub-001_{PREFIX}_stat-reho_desc-smoothMeannorm_boldmap.nii.gz",
        f"sub-001_{PREFIX}_stat-fc_desc-seedPostcentralL_boldmap.nii.gz",
    ):
        assert expected in names
    assert len(list(folder.glob("sub-*/func/*.nii.gz"))) == 6 * (6 + 2 + 4)
    cohort = open_cohort(store)
    for image in folder.glob("sub-*/func/*.nii.gz"):
        sidecar = json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())
        for key in ("Description", "Units", "Resolution", "Parameters", "Sources", "GeneratedBy"):
            assert sidecar[key], (image.name, key)
        assert sidecar["Parameters"] == json.loads(cohort[sidecar["BrainarrVariable"]].attrs["params"])
        for source in sidecar["Sources"]:  # BIDS URIs: this dataset's files, or the linked store
            assert source == "bids:store:bold" or (folder / source.removeprefix("bids::")).is_file()
    malff = json.loads((folder / f"sub-002/func/sub-002_{PREFIX}_stat-alff_desc-meannorm_boldmap.json").read_text())
    assert malff["Sources"] == [f"bids::sub-002/func/sub-002_{PREFIX}_stat-alff_boldmap.nii.gz"]
    assert "mean" in malff["Description"] and malff["Units"] == "1" and "6 mm" in malff["Resolution"]
    group = sorted((folder / "group").iterdir())
    assert group and all(BIDS_GROUP.match(p.name) for p in group)
    t_json = json.loads(
        (folder / "group" / f"{PREFIX}_contrast-patientMinusControl_stat-t_desc-malff_statmap.json").read_text()
    )
    assert t_json["Contrast"] == "patient - control" and len(t_json["Sources"]) == 6
    assert all((folder / s.removeprefix("bids::")).is_file() for s in t_json["Sources"])
    assert all(p.is_file() or p.is_dir() for p in written)


def test_bids_round_trip(study, exported):
    store, results = study
    folder, _ = exported[("bids", None)]
    affine = open_cohort(store).attrs["affine"]
    _check_nifti(
        folder / f"sub-003/func/sub-003_{PREFIX}_stat-alff_boldmap.nii.gz", _row(store, "alff", "sub-003"), affine
    )
    _check_nifti(
        folder / f"sub-004/func/sub-004_{PREFIX}_stat-fc_desc-seedPrecentralR_boldmap.nii.gz",
        _row(store, "zfc", "sub-004", "Precentral_R"),
        affine,
    )
    t_map = folder / "group" / f"{PREFIX}_contrast-patientMinusControl_stat-t_desc-smreho_statmap.nii.gz"
    _check_nifti(t_map, np.asarray(nib.load(results / "maps" / "smreho_t.nii.gz").dataobj), affine)
    grf = folder / "group" / f"{PREFIX}_contrast-patientMinusControl_stat-t_desc-zfcPostcentralLGRF_statmap.nii.gz"
    _check_nifti(grf, np.asarray(nib.load(results / "maps" / "zfc_Postcentral_L_t_grf.nii.gz").dataobj), affine)
    from nilearn.image import load_img

    assert load_img(str(t_map)).shape == SHAPE


def test_dpabi_names_as_dpabi_writes_them(study, exported):
    store, results = study
    folder, _ = exported[("dpabi", None)]
    subject = "sub-002"
    expected = (
        [f"Results/ALFF_FunImgARCW/{p}_{subject}.nii" for p in ("ALFFMap", "mALFFMap", "zALFFMap")]
        + [f"Results/fALFF_FunImgARCW/{p}_{subject}.nii" for p in ("fALFFMap", "mfALFFMap", "zfALFFMap")]
        + [
            f"Results/ReHo_FunImgARCWF/ReHoMap_{subject}.nii",
            f"ResultsS/ReHo_FunImgARCWF/smReHoMap_{subject}.nii",
            *(f"Results/FC_FunImgARCWF/zROI{i}FCMap_{subject}.nii" for i in range(1, 5)),
            f"Results/FC_FunImgARCWF/ROI_OrderKey_FCMap_{subject}.tsv",
        ]
    )
    for name in expected:
        assert (folder / name).is_file(), name
    assert not list(folder.rglob("*.json")) and not list(folder.rglob("*.gz"))
    key = (folder / f"Results/FC_FunImgARCWF/ROI_OrderKey_FCMap_{subject}.tsv").read_text().splitlines()
    seeds = [str(s) for s in open_cohort(store)["seed"].values]
    assert key == ["Order\tROI Definition", *(f"{i + 1}\t{s}" for i, s in enumerate(seeds))]
    image = folder / f"Results/FC_FunImgARCWF/zROI2FCMap_{subject}.nii"
    assert image.read_bytes()[344:348] == b"n+1\0"  # uncompressed single-file NIfTI-1, as SPM writes
    affine = open_cohort(store).attrs["affine"]
    _check_nifti(image, _row(store, "zfc", subject, seeds[1]), affine)
    _check_nifti(
        folder / "GroupAnalysis/T2_mALFF.nii", np.asarray(nib.load(results / "maps/malff_t.nii.gz").dataobj), affine
    )
    assert (folder / "GroupAnalysis/ClusterThresholded_T2_smReHo.nii").is_file()
    assert (folder / "GroupAnalysis/T2_zROI4FC.nii").is_file()


def test_dpabi_and_cpac_degree_centrality_names():
    cohort = xr.Dataset(coords={"seed": ["a"]})
    dpabi = export._Dpabi(cohort, space=SPACE, task="rest", res="3")
    assert dpabi.subject_stem("dc_binary", "sub-01", None, 0).as_posix() == (
        "Results/DegreeCentrality_FunImgARCWF/DegreeCentrality_PositiveBinarizedSumBrainMap_sub-01"
    )
    assert dpabi.subject_stem("dc_weighted_sz", "sub-01", None, 0).as_posix() == (
        "ResultsS/DegreeCentrality_FunImgARCWF/szDegreeCentrality_PositiveWeightedSumBrainMap_sub-01"
    )
    assert dpabi.subject_stem("zfc", "sub-01", "a", 0).name == "zFCMap_sub-01"  # one seed: no ROI number
    cpac = export._Cpac(cohort, space=SPACE, task="rest", res="3")
    assert cpac.subject_stem("dc_binary_sz", "sub-01", None, 0).name == (
        "sub-01_ses-1_task-rest_space-template_desc-binarized-sm-zstd_degree-centrality"
    )
    bids = export._Bids(cohort, space=SPACE, task="rest", res="3")
    assert bids.subject_stem("dc_weighted_sm", "sub-01", None, 0).name == (
        f"sub-01_task-rest_space-{SPACE}_res-3_stat-dcweighted_desc-smoothMeannorm_boldmap"
    )


def test_cpac_layout(study, exported):
    store, _ = study
    folder, _ = exported[("cpac", None)]
    func = folder / "pipeline_brainarr" / "sub-005" / "ses-1" / "func"
    prefix = "sub-005_ses-1_task-rest_space-template"
    for resource in ("alff", "desc-zstd_alff", "desc-meannorm_falff", "reho", "desc-sm-meannorm_reho"):
        assert (func / f"{prefix}_{resource}.nii.gz").is_file(), resource
    stack = nib.load(func / f"{prefix}_desc-MeanSCA_correlations.nii.gz")
    seeds = [str(s) for s in open_cohort(store)["seed"].values]
    assert stack.shape == (*SHAPE, len(seeds))
    np.testing.assert_array_equal(np.asarray(stack.dataobj)[..., 2], _row(store, "zfc", "sub-005", seeds[2]))
    sidecar = json.loads((func / f"{prefix}_desc-MeanSCA_correlations.json").read_text())
    assert sidecar["Seeds"] == seeds and sidecar["Template"] == SPACE
    stats = folder / "cpac_group_analysis/FSL_FEAT/pipeline_brainarr/group_model_brainarr/space-template_desc-zstd_alff"
    assert (stats / "stats" / "tstat1.nii.gz").is_file() and (stats / "stats" / "thresh_tstat1.nii.gz").is_file()


# schema of the JSON header, as the NIfTI-Zarr 1.0.rc1 specification (and its schema file) constrain it
_XFORM = {"enum": ["", "scanner_anat", "aligned_anat", "talairach", "mni_152", "template_other"]}
_NUMBERS = {"type": "array", "items": {"type": "number"}}
NIFTI_JSON_SCHEMA = {
    "type": "object",
    "required": ["Dim", "VoxelSize", "DataType", "Unit", "QForm", "SForm", "Affine", "NIIFormat"],
    "properties": {
        "NIIHeaderSize": {"enum": [348, 540]},
        "Dim": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 3, "maxItems": 5},
        "VoxelSize": {**_NUMBERS, "minItems": 3, "maxItems": 5},
        "DataType": {"type": "string"},
        "Unit": {
            "type": "object",
            "properties": {"L": {"enum": ["", "m", "mm", "um"]}, "T": {"enum": ["", "s", "ms", "us"]}},
        },
        "QForm": _XFORM,
        "SForm": _XFORM,
        "Affine": {"type": "array", "items": {**_NUMBERS, "minItems": 4, "maxItems": 4}, "minItems": 3, "maxItems": 3},
        "NIIFormat": {"enum": ["ni1", "n+1", "ni2", "n+2"]},
        "Description": {"type": "string", "maxLength": 80},
        "AuxFile": {"type": "string", "maxLength": 24},
        "SliceType": {"enum": ["", "seq+", "seq-", "alt+", "alt-", "alt2+", "alt2-"]},
        "Param1": {"type": ["number", "null"]},
        "ScaleSlope": {"type": "number"},
    },
}


def _zarr_json(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


def _check_nifti_zarr(path: Path, *, shape_xyz_t: tuple[int, ...], zooms: tuple[float, ...]) -> None:
    import jsonschema

    group = _zarr_json(path)
    assert group["zarr_format"] == 3 and group["node_type"] == "group"
    ome = group["attributes"]["ome"]
    assert ome["version"] == "0.5"  # OME-Zarr 0.5 is the version for Zarr v3
    (multiscale,) = ome["multiscales"]
    axes = [a["name"] for a in multiscale["axes"]]
    four_d = len(shape_xyz_t) == 4
    assert axes == (["t", "z", "y", "x"] if four_d else ["z", "y", "x"])
    assert [a["type"] for a in multiscale["axes"]] == (["time"] if four_d else []) + ["space"] * 3
    assert all(a["unit"] == "millimeter" for a in multiscale["axes"] if a["type"] == "space")
    level = multiscale["datasets"][0]
    assert level["path"] == "0"
    (scale,) = [t for t in level["coordinateTransformations"] if t["type"] == "scale"]
    assert scale["scale"][-3:] == list(zooms[:3])[::-1]
    array = _zarr_json(path / "0")
    assert array["shape"] == list(shape_xyz_t)[::-1] and array["dimension_names"] == axes
    assert array["data_type"] == "float32"
    assert any(c["name"] in ("blosc", "gzip", "zstd") for c in array["codecs"])
    header = _zarr_json(path / "nifti")
    assert header["shape"] == [348] and header["data_type"] == "uint8"
    assert header["chunk_grid"]["configuration"]["chunk_shape"] == [348]  # one chunk
    assert [c["name"] for c in header["codecs"]] == ["bytes"]  # uncompressed
    jsonschema.validate(header["attributes"], NIFTI_JSON_SCHEMA)
    json_header = header["attributes"]
    assert json_header["Dim"] == list(shape_xyz_t) and json_header["VoxelSize"] == list(zooms)
    assert json_header["QForm"] == json_header["SForm"] == "mni_152"
    raw = np.asarray(zarr.open_array(str(path / "nifti"), mode="r")[...]).tobytes()
    binary = nib.Nifti1Header.from_fileobj(BytesIO(raw))
    np.testing.assert_allclose(np.asarray(json_header["Affine"]), binary.get_sform()[:3])
    if four_d:
        assert multiscale["coordinateTransformations"][0]["scale"][0] == zooms[3]


def test_nii_zarr_export_round_trips_exactly(study, exported):
    store, _ = study
    folder, _ = exported[("bids", "nii.zarr")]
    path = folder / f"sub-006/func/sub-006_{PREFIX}_stat-reho_boldmap.nii.zarr"
    _check_nifti_zarr(path, shape_xyz_t=SHAPE, zooms=(6.0, 6.0, 6.0))
    back = export.read_nifti_zarr(path)
    cohort = open_cohort(store)
    assert back.dims == ("x", "y", "z") and back.dtype == np.float32
    np.testing.assert_array_equal(back.values, _row(store, "reho", "sub-006"))
    assert back.attrs["affine"] == cohort.attrs["affine"]
    for dim in ("x", "y", "z"):
        np.testing.assert_array_equal(back[dim].values, cohort[dim].values)
    assert json.loads(path.with_name(path.name.replace(".nii.zarr", ".json")).read_text())["Units"] == "1"


def test_nii_zarr_4d_round_trip(tmp_path, rng):
    data = rng.standard_normal((7, 8, 9, 12)).astype(np.float32)
    img = nib.Nifti1Image(data, make_affine(3.0))
    img.header.set_zooms((3.0, 3.0, 3.0, 0.8))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "sub-01_bold.nii.gz")
    bold = io.load_nifti(tmp_path / "sub-01_bold.nii.gz")
    path = export.to_nifti_zarr(bold, tmp_path / "sub-01_bold.nii.zarr")
    _check_nifti_zarr(path, shape_xyz_t=(7, 8, 9, 12), zooms=(3.0, 3.0, 3.0, 0.8))
    back = export.read_nifti_zarr(path)
    xr.testing.assert_identical(back.load().assign_attrs(source=""), bold.load().assign_attrs(source=""))
    with pytest.raises(FileExistsError, match="exists"):
        export.to_nifti_zarr(bold, path)
    export.to_nifti_zarr(bold * 2, path, overwrite=True)
    np.testing.assert_array_equal(export.read_nifti_zarr(path).values, 2 * data)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_refuses_a_non_empty_folder_and_keeps_foreign_files(study, tmp_path):
    store, _ = study
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export.export(store, out, layout="dpabi")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    written = export.export(store, out, layout="dpabi", overwrite=True)
    again = export.export(store, out, layout="dpabi", overwrite=True)
    assert written == again and (out / "notes.txt").read_text() == "mine"


def test_missing_and_incomplete_maps_are_named(study, tmp_path):
    store, results = study
    fresh = tmp_path / "fresh.zarr"
    io.ingest(simulate_cohort(2, 2, voxel_size=6.0, n_volumes=20, seed=1, shape=(8, 8, 8)), fresh)
    with pytest.raises(MissingMetadataError, match=rf"{re.escape(str(fresh))}.*no subject maps.*brainarr run"):
        export.export(fresh, tmp_path / "a")
    partial = tmp_path / "partial.zarr"
    shutil.copytree(store, partial)
    zarr.open_group(str(partial), mode="r+")["_commits/falff"][4:] = 0  # rows 5 and 6 not committed
    with pytest.raises(MissingMetadataError, match=r"falff lacks 2 subject\(s\) \(sub-005, sub-006\)"):
        export.export(partial, tmp_path / "b", results=results)
    assert not (tmp_path / "b").exists()
    empty = tmp_path / "results"
    (empty / "maps").mkdir(parents=True)
    with pytest.raises(MissingMetadataError, match="no group t maps"):
        export.export(store, tmp_path / "c", results=empty)
    (empty / "maps" / "malff_t.nii.gz").write_bytes((results / "maps" / "malff_t.nii.gz").read_bytes())
    (empty / "maps" / "malff_t_grf.nii.gz").write_bytes((results / "maps" / "malff_t_grf.nii.gz").read_bytes())
    with pytest.raises(MissingMetadataError, match=r"group maps are incomplete.*zalff"):
        export.export(store, tmp_path / "d", results=empty)


def test_cli_export(study, tmp_path, capsys):
    store, _ = study
    assert main(["export", str(store), str(tmp_path / "out"), "--layout", "cpac", "--format", "nii.zarr"]) == 0
    out = capsys.readouterr().out
    assert "exported" in out and "cpac layout" in out
    assert list((tmp_path / "out").rglob("*_space-template_alff.nii.zarr"))
    assert main(["export", str(store), str(tmp_path / "out"), "--layout", "cpac"]) == 1
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(store), str(tmp_path / "x"), "--layout", "fsl"])


def test_labels():
    assert export.bids_label("zfc_Postcentral_L") == "zfcPostcentralL"
    assert export.resolution_label(make_affine(3.0))[0] == "3"
    assert export.resolution_label(np.diag([2.5, 2.5, 2.5, 1.0]))[0] == "2p5"
    assert export.resolution_label(np.diag([2.0, 2.0, 3.0, 1.0]))[0] == "2x2x3"
    with pytest.raises(ValueError, match="layout"):
        export.export("nowhere.zarr", "out", layout="fsl")


def test_cli_help(capsys):
    from brainarr.cli import _build_parser

    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("usage: brainarr export")
    sub = _build_parser()._subparsers._group_actions[0].choices["export"]
    assert sub.description and not [a.dest for a in sub._actions if a.help is None]
