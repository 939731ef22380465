"""Bad study configurations for a given cohort: refused by ``pipeline.run`` before any map is written.

Each case is a study config that validates on its own but cannot be run on the cohort (a group
label that is not in the data, every subject of a group over the motion limits, a nuisance
model with more regressors than volumes, a covariate the cohort lacks). The run must fail at
once with a message naming the key, the subjects or groups and what to do, and leave the store
byte for byte as it was.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from brainarr import io, pipeline
from brainarr.config import ConfigError, StudyConfig
from brainarr.datasets import simulate_cohort
from brainarr.exceptions import DataValidationError, MissingMetadataError
from brainarr.testing import BadInput, check_bad_input

N_VOLUMES = 40


@pytest.fixture(scope="module")
def cohort_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("cohort") / "study.zarr"
    io.ingest(simulate_cohort(3, 3, voxel_size=6.0, n_volumes=N_VOLUMES, seed=2, shape=(12, 14, 10)), store)
    return store


def _config(**sections) -> StudyConfig:
    base = StudyConfig()
    changes = {"output": dataclasses.replace(base.output, figures=False, nifti=False)}
    for section, values in sections.items():
        changes[section] = dataclasses.replace(getattr(base, section), **values)
    return dataclasses.replace(base, **changes)


def _case(config: StudyConfig, error, names) -> tuple[StudyConfig, type, tuple[str, ...]]:
    return config, error, names


CASES = {
    "group-label-wrong-case": _case(
        _config(group={"groups": ("Patient", "control")}),
        MissingMetadataError,
        ("brainarr.pipeline.run", "'Patient'", "did you mean 'patient'", "case included"),
    ),
    "group-label-misspelt": _case(
        _config(group={"groups": ("patients", "control")}),
        MissingMetadataError,
        ("'patients'", "has no subject", "'patient': 3", "'control': 3"),
    ),
    "group-by-not-a-coordinate": _case(
        _config(group={"by": "diagnosis"}),
        MissingMetadataError,
        (r"\[group\] by = 'diagnosis'", "not a subject coordinate", "available", "'group'", "phenotype"),
    ),
    "covariate-not-a-coordinate": _case(
        _config(group={"covariates": ("age", "handedness")}),
        MissingMetadataError,
        ("handedness", "age"),
    ),
    "every-patient-over-the-motion-limit": _case(
        _config(preprocess={"max_translation": 1e-6, "max_rotation": 1e-6}),
        DataValidationError,
        ("group 'patient' keeps 0 of 3 subjects", "max_translation = 1e-06 mm", "sub-", "exclude_movers = false"),
    ),
    "discard-leaves-fewer-volumes-than-regressors": _case(
        _config(preprocess={"discard": N_VOLUMES - 20}),
        DataValidationError,
        (r"\[preprocess\] discard = 20", "friston24", "on 40 volumes", r"\d+ regressors", "for 20 volumes", "fewer"),
    ),
    "discard-every-volume": _case(
        _config(preprocess={"discard": N_VOLUMES}),
        ConfigError,
        (r"\[preprocess\] discard = 40 is invalid", "40 volumes per subject"),
    ),
}


def test_phenotype_named_like_a_map_is_refused(cohort_store, tmp_path):
    store = tmp_path / "study.zarr"
    io.ingest(
        simulate_cohort(2, 2, voxel_size=6.0, n_volumes=N_VOLUMES, seed=2, shape=(12, 14, 10)).assign_coords(
            alff=("subject", [1.0, 2.0, 3.0, 4.0])
        ),
        store,
    )
    case = BadInput(
        lambda t: pipeline.run(_config(), store, output=t / "out", progress=False),
        MissingMetadataError,
        (r"phenotype column\(s\) \['alff'\]", "names of maps", "rename them"),
        store=lambda t: store,
    )
    check_bad_input(case, tmp_path)


@pytest.mark.parametrize("case_id", list(CASES))
def test_study_refused_before_any_write(case_id, cohort_store, tmp_path):
    config, error, names = CASES[case_id]
    store = tmp_path / "study.zarr"
    shutil.copytree(cohort_store, store)
    case = BadInput(
        lambda t: pipeline.run(config, store, output=t / "out", progress=False),
        error,
        names,
        store=lambda t: store,
    )
    check_bad_input(case, tmp_path)
