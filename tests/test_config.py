"""Study configuration: defaults, TOML round trip, validation messages."""

from __future__ import annotations

import pytest

from brainarr.config import ConfigError, StudyConfig


def test_defaults_are_the_study():
    cfg = StudyConfig()
    assert cfg.preprocess.discard == 10
    assert cfg.preprocess.confounds == ("friston24", "white_matter", "csf")
    assert cfg.preprocess.band == (0.01, 0.08) and cfg.preprocess.filter == "ideal"
    assert cfg.metrics.reho_neighbourhood == 27 and cfg.metrics.smooth_fwhm == 6.0
    assert set(cfg.metrics.seeds) == {"Precentral_L", "Precentral_R", "Postcentral_L", "Postcentral_R"}
    assert cfg.metrics.dc_threshold == 0.25
    assert cfg.group.covariates == ("age", "sex")
    assert (cfg.group.grf["alff"].voxel_p, cfg.group.grf["alff"].cluster_p) == (0.01, 0.01)
    assert (cfg.group.grf["dc"].voxel_p, cfg.group.grf["dc"].cluster_p) == (0.05, 0.05)
    assert all(g.two_tailed for g in cfg.group.grf.values())
    assert not cfg.group.permutation.enabled


def test_toml_round_trip(tmp_path):
    text = "[metrics]\nfamilies = ['alff', 'dc']\n[group.grf.dc]\nvoxel_p = 0.001\n"
    cfg = StudyConfig.from_toml_string(text + "[group.permutation]\nenabled = true\nfamilies = ['dc']\n")
    path = tmp_path / "study.toml"
    path.write_text(cfg.to_toml())
    again = StudyConfig.from_toml(path)
    assert again == cfg
    assert again.group.grf["dc"].voxel_p == 0.001 and again.group.grf["dc"].cluster_p == 0.05
    assert again.group.grf["alff"].voxel_p == 0.01
    assert again.group.permutation.families == ("dc",)


def test_hash_tracks_sections():
    a = StudyConfig()
    b = StudyConfig.from_toml_string("[group]\ncovariates = ['age']\n")
    assert a.section_hash("preprocess", "metrics") == b.section_hash("preprocess", "metrics")
    assert a.section_hash("group") != b.section_hash("group")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[preprocess]\ndiscrad = 3\n", r"unknown key 'preprocess.discrad'; did you mean 'discard'"),
        ("[preproces]\n", r"unknown key 'preproces'; did you mean 'preprocess'"),
        ("[preprocess]\ndiscard = -1\n", r"preprocess.discard = -1 is invalid"),
        ("[preprocess]\ndiscard = 2.5\n", r"preprocess.discard = 2.5 is invalid; expected an integer"),
        ("[preprocess]\nband = [0.08, 0.01]\n", r"preprocess.band = \[0.08, 0.01\] is invalid"),
        ("[preprocess]\nfilter = 'chebyshev'\n", r"preprocess.filter = 'chebyshev' is invalid"),
        ("[preprocess]\nconfounds = ['friston6']\n", r"preprocess.confounds"),
        ("[metrics]\nreho_neighbourhood = 26\n", r"metrics.reho_neighbourhood = 26 is invalid; expected 7, 19 or 27"),
        ("[metrics]\nseeds = ['Postcentral_Left']\n", r"metrics.seeds: \['Postcentral_Left'\] are not AAL1 regions"),
        ("[group.grf.dc]\nvoxel_p = 1.5\n", r"group.grf.dc.voxel_p = 1.5 is invalid"),
        ("[group.grf.alf]\nvoxel_p = 0.1\n", r"group.grf = 'alf' is invalid"),
        ("[group.permutation]\nstat = 'max'\n", r"group.permutation.stat = 'max' is invalid"),
        ("[group.permutation]\nfamilies = ['degree']\n", r"group.permutation.families = \['degree'\] is invalid"),
        ("[group.permutation]\nfamilies = []\n", r"group.permutation.families = \[\] is invalid"),
        ("[group]\nexclude_movers = 1\n", r"group.exclude_movers = 1 is invalid; expected true or false"),
        ("preprocess = 3\n", r"preprocess must be a table"),
        ("[preprocess\n", r"invalid TOML"),
    ],
)
def test_invalid(text, pattern):
    with pytest.raises(ConfigError, match=pattern):
        StudyConfig.from_toml_string(text)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.toml"):
        StudyConfig.from_toml(tmp_path / "absent.toml")
    path = tmp_path / "bad.toml"
    path.write_text("[metrics]\ndc_threshold = 2\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: metrics.dc_threshold = 2.0 is invalid"):
        StudyConfig.from_toml(path)


def test_example_config_states_every_default():
    """examples/study.toml lists every key of the configuration, each with its default value."""
    import tomllib
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "study.toml"

    def keys(tree, prefix=""):
        return {
            k
            for name, v in tree.items()
            for k in (keys(v, f"{prefix}{name}.") if isinstance(v, dict) else [prefix + name])
        }

    assert keys(tomllib.loads(path.read_text())) == keys(StudyConfig().to_dict())
    assert StudyConfig.from_toml(path) == StudyConfig()
