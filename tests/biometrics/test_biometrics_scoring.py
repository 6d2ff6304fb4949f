"""Telemetry parsing never raises anything but TelemetryError; scoring names what a script does."""

from __future__ import annotations

import json
import re
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware.biometrics.scoring import assess
from shieldware.biometrics.telemetry import TelemetryError, parse_telemetry
from shieldware.cli import main
from shieldware.policy import PolicyError, default_policy_text, policy_from_mapping
from tests.biometrics_samples import human_telemetry, linear_bot_telemetry

FIXTURES = "tests/fixtures/telemetry"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)
fields = st.sampled_from(["v", "pointer", "keys", "scroll", "touch", "focus", "fills", "env", "page", "seq"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(fields, json_values, max_size=6))
def test_any_json_object_parses_or_fails_with_telemetry_error(raw: dict) -> None:
    raw.setdefault("v", 1)
    try:
        telemetry = parse_telemetry(json.dumps(raw))
    except TelemetryError as exc:
        assert str(exc)
        return
    assess(telemetry)  # and whatever parses can be scored


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_with_telemetry_error(body: bytes) -> None:
    try:
        parse_telemetry(body)
    except TelemetryError:
        pass


@pytest.mark.parametrize("body", [
    b"[" * 60_000 + b"]" * 60_000,
    b'{"v": 1, "pointer": [[1, 2, 3, ' + b"9" * 400 + b"]]}",
    b'{"v": 1, "keys": [[1e308, 1e309]]}',
])
def test_pathological_bodies_fail_cleanly(body: bytes) -> None:
    with pytest.raises(TelemetryError):
        parse_telemetry(body)


def codes(body: dict) -> set[str]:
    return {code for code, _, _ in assess(parse_telemetry(body)).reasons}


def test_person_is_human_and_script_is_not() -> None:
    person = assess(parse_telemetry(human_telemetry()))
    script = assess(parse_telemetry(linear_bot_telemetry()))
    assert person.human_likeness > 0.9
    assert script.human_likeness < 0.1
    assert {"bio.linear_path", "bio.constant_speed", "bio.uniform_keys", "bio.instant_click",
            "bio.automation_flag"} <= codes(linear_bot_telemetry())


def test_teleporting_clicker() -> None:
    pointer = [[0, 10, 10, 0], [500, 900, 600, 1], [620, 900, 600, 2],
               [1500, 200, 700, 1], [1610, 200, 700, 2]]
    assert codes({"v": 1, "pointer": pointer}) >= {"bio.teleport"}


def test_no_input_and_instant_fill() -> None:
    assert codes({"v": 1, "env": {}}) == {"bio.no_input"}
    assert codes({"v": 1, "t": 20_000, "env": {}}) == {"bio.no_input"}
    assert codes({"v": 1, "t": 1500, "env": {}}) == set()  # a glance, like the challenge interstitial
    assert "bio.instant_fill" in codes({"v": 1, "fills": [[100, 1], [130, 1]], "pointer": [[5, 1, 1, 0]]})
    # Pasting alone is what people do with passwords: not evidence.
    assert "bio.instant_fill" not in codes({"v": 1, "fills": [[100, 0]], "pointer": [[5, 1, 1, 0]]})


def test_metronome_scrolling() -> None:
    scroll = [[100 + 200 * i, 0, 120] for i in range(12)]
    assert "bio.uniform_scroll" in codes({"v": 1, "scroll": scroll})
    rng = np.random.default_rng(2)
    times = np.cumsum(rng.uniform(60, 900, 12))
    assert "bio.uniform_scroll" not in codes({"v": 1, "scroll": [[float(t), 0, 100] for t in times]})


def test_people_keys_are_not_uniform() -> None:
    assert "bio.uniform_keys" not in codes(human_telemetry())


def test_cli_prints_score_and_reasons(capsys) -> None:
    rc = main(["biometrics", f"{FIXTURES}/human.json", f"{FIXTURES}/linear_bot.json"])
    out = capsys.readouterr().out
    assert rc == 0
    assert re.search(r"human\.json: human-likeness (9\d|100)/100", out)
    assert re.search(r"linear_bot\.json: human-likeness \d/100", out)
    assert "bio.linear_path" in out and "ruler-straight" in out


def test_cli_reports_bad_files_and_carries_on(capsys) -> None:
    files = [f"{FIXTURES}/malformed.json", "/nonexistent.json", f"{FIXTURES}/human.json"]
    rc = main(["biometrics", "--json", *files])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1
    assert "pointer[0]" in lines[0]["error"]
    assert lines[1]["error"]
    assert lines[2]["human"] > 0.9 and "pointer.straightness_mean" in lines[2]["features"]


def test_collector_is_small_and_never_reads_what_is_typed() -> None:
    source = resources.files("shieldware.web").joinpath("collector.js").read_text()
    # Minified the conservative way: comments, indentation and line breaks removed.
    stripped = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    lines = [line.strip() for line in stripped.splitlines()]
    minified = "\n".join(line for line in lines if line and not line.startswith("//"))
    assert len(minified.encode()) < 6 * 1024
    assert not re.search(r"\.key\b|\.value\b|\.data\b|\.innerText|\.textContent", source)
    assert "http://" not in source and "https://" not in source
    assert "sendBeacon" in source


def test_policy_fields_are_validated() -> None:
    import yaml

    raw = yaml.safe_load(default_policy_text())
    raw["groups"][1]["require_telemetry"] = {"methods": ["POST"], "min_human": 3}
    raw["biometrics"] = {"rate_per_minute": "lots", "colour": "blue"}
    with pytest.raises(PolicyError) as caught:
        policy_from_mapping(raw, "shop.yaml")
    text = str(caught.value)
    assert "groups[1].require_telemetry.min_human" in text
    assert "biometrics.rate_per_minute" in text
    assert "biometrics.colour: unknown field" in text
