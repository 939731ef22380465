"""The study's building blocks: metric families, one subject's maps, the subject stage.

:func:`brainarr.pipeline.run` chains them; they are public so that a study can be assembled
differently (another cluster, another set of maps) without copying them.
"""

from brainarr.study._derived import derived_state, prepare_variable
from brainarr.study._families import FAMILY_VARIABLES, GROUP_VARIANTS, family_of, family_params, params_hash
from brainarr.study._maps import (
    SUBJECT_TISSUES,
    analysis_masks,
    motion_parameters,
    seed_masks,
    subject_maps,
    subject_masks,
)
from brainarr.study._progress import Progress
from brainarr.study._subjects import SubjectContext, compute_subject, run_subject_stage

__all__ = [
    "FAMILY_VARIABLES",
    "GROUP_VARIANTS",
    "SUBJECT_TISSUES",
    "Progress",
    "SubjectContext",
    "analysis_masks",
    "compute_subject",
    "derived_state",
    "family_of",
    "family_params",
    "motion_parameters",
    "params_hash",
    "prepare_variable",
    "run_subject_stage",
    "seed_masks",
    "subject_maps",
    "subject_masks",
]
