"""Fuzzing the study configuration: malformed TOML never escapes as a bare Python error.

Random text, and random mutations of ``examples/study.toml`` (deleted, duplicated or swapped
lines, values of the wrong type, random tables), are given to
:meth:`StudyConfig.from_toml_string`. Either a valid configuration comes back (and survives a
TOML round trip) or a :class:`ConfigError` whose message names a key or says "invalid TOML";
never a ``TypeError``, ``KeyError``, ``AttributeError``, ``IndexError``, ...
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brainarr.config import ConfigError, StudyConfig

EXAMPLE = (Path(__file__).parents[1] / "examples" / "study.toml").read_text()
LINES = EXAMPLE.splitlines()
ASSIGNMENTS = [i for i, line in enumerate(LINES) if re.match(r"^\w+ = ", line)]
SECTIONS = ["preprocess", "metrics", "group", "output", "group.grf", "group.grf.dc", "group.permutation"]
KEYS = sorted({LINES[i].split(" = ")[0] for i in ASSIGNMENTS} | {"grf", "permutation", "dc", "alff", "x"})

#: A message names a key ("group.grf.dc must be ...", "metrics.seeds: ...", "unknown key ...")
#: or says the text is not TOML.
NAMES_A_KEY = re.compile(
    r"^(invalid TOML|unknown key '[\w.]+'|(preprocess|metrics|group|output)(\.\w+)*( = | must |: ))"
)

FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "nan", "-inf", "1e400", "0", "-1", "0.5", "1.0"]),
    st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['"patient"', '"patient "', '""', '"Postcentral_L"', '"alff"', '"dc"', '"friston24"']),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda v: "[" + ", ".join(v) + "]"),
        st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=3).map(
            lambda kv: "{" + ", ".join(f"{k} = {v}" for k, v in dict(kv).items()) + "}"
        ),
    ),
    max_leaves=6,
)


def _check(text: str) -> None:
    try:
        cfg = StudyConfig.from_toml_string(text)
    except ConfigError as err:
        assert NAMES_A_KEY.search(str(err)), f"message names no key: {err}\n--- text:\n{text}"
        return
    assert isinstance(cfg, StudyConfig)
    assert StudyConfig.from_toml_string(cfg.to_toml()) == cfg


def _mutate(data: st.DataObject, lines: list[str]) -> list[str]:
    """Apply one random mutation to the lines of the example config."""
    kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "value", "table", "header"]))
    lines = list(lines)
    assignments = [i for i, line in enumerate(lines) if re.match(r"^\w+ = ", line)]
    if kind == "delete" and lines:
        del lines[data.draw(st.integers(0, len(lines) - 1))]
    elif kind == "duplicate" and lines:
        i = data.draw(st.integers(0, len(lines) - 1))
        lines.insert(data.draw(st.integers(0, len(lines))), lines[i])
    elif kind == "swap" and len(assignments) >= 2:
        i, j = data.draw(st.lists(st.sampled_from(assignments), min_size=2, max_size=2, unique=True))
        (ki, vi), (kj, vj) = lines[i].split(" = ", 1), lines[j].split(" = ", 1)
        lines[i], lines[j] = f"{ki} = {vj}", f"{kj} = {vi}"
    elif kind == "value" and assignments:
        i = data.draw(st.sampled_from(assignments))
        lines[i] = f"{lines[i].split(' = ', 1)[0]} = {data.draw(values)}"
    elif kind == "table":
        section = data.draw(st.sampled_from([*SECTIONS, *(f"{s}.{k}" for s in SECTIONS for k in ("x", "dc"))]))
        lines.insert(data.draw(st.integers(0, len(lines))), f"[{section}]")
    else:
        key = data.draw(st.sampled_from(KEYS))
        lines.insert(data.draw(st.integers(0, len(lines))), f"{key} = {data.draw(values)}")
    return lines


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text):
    _check(text)


@FUZZ
@given(st.data())
def test_mutated_example(data):
    lines = LINES
    for _ in range(data.draw(st.integers(1, 4))):
        lines = _mutate(data, lines)
    _check("\n".join(lines) + "\n")


@FUZZ
@given(st.dictionaries(st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(KEYS), values, max_size=4)))
def test_random_tables(tables):
    text = "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {v}" for k, v in body.items()) for name, body in tables.items())
    _check(text + "\n")


def test_example_is_valid():
    assert StudyConfig.from_toml_string(EXAMPLE) == StudyConfig()
