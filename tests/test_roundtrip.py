"""YAML -> model -> JSON/YAML -> model gives the same model; durations read and write back."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

import dagflow
from dagflow import Loop, WorkflowDefinition
from dagflow._serde import format_duration, make_converter, parse_duration

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deploy-with-approval.yaml"


def _quote_line_breaks(representer: Any, value: str) -> Any:
    # ruamel's emitter writes NEL/LS/PS raw inside single quotes, where every YAML reader
    # folds them into a space; double quotes escape them
    style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
    return representer.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def to_yaml(data: Any) -> str:
    """Render plain data as YAML with ruamel, independently of ``dagflow.dump``."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False  # block style, as people write workflow files
    yaml.representer.add_representer(str, _quote_line_breaks)
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def assert_round_trips(wf: WorkflowDefinition) -> None:
    """JSON and YAML dumps load back to an equal model, and dumping again is stable."""
    as_json = dagflow.dump(wf)
    assert dagflow.loads(as_json, format="json") == wf
    as_yaml = dagflow.dump(wf, format="yaml")
    assert dagflow.loads(as_yaml, format="yaml") == wf
    assert dagflow.dump(dagflow.loads(as_json, format="json")) == as_json


# --------------------------------------------------------------------------- the seed


def test_seed_example_round_trips() -> None:
    """The seed example survives YAML -> model -> JSON -> model and the YAML dump."""
    wf = dagflow.load(EXAMPLE)
    assert_round_trips(wf)
    # JSON is YAML 1.2: the JSON dump also reads as YAML
    assert dagflow.loads(dagflow.dump(wf), format="yaml") == wf


def test_seed_example_dump_has_the_seed_fields() -> None:
    """The JSON dump uses the seed's field names and the tagged task type form."""
    data = json.loads(dagflow.dump(dagflow.load(EXAMPLE)))
    assert data["id"] == "deploy-with-approval"
    assert data["variables"] == {
        "namespace": "production", "image_tag": "${CI_COMMIT_SHA}", "replicas": 3,
    }
    deploy = next(t for t in data["tasks"] if t["id"] == "deploy")
    assert deploy["type"] == {
        "type": "Deploy", "manifest": "manifest.yaml", "namespace": "${namespace}",
        "dry_run": False,
    }
    assert deploy["depends_on"] == ["request-approval"]
    assert deploy["config"]["on_failure"] == "Rollback"
    assert parse_duration(deploy["timeout"]) == dt.timedelta(minutes=15)
    approval = next(t for t in data["tasks"] if t["id"] == "request-approval")
    assert approval["type"]["approvers"] == ["alice@example.com", "bob@example.com"]


def test_seed_example_reads_the_same_from_yaml_and_json() -> None:
    """The seed's YAML and its JSON rendering give equal models."""
    text = EXAMPLE.read_text(encoding="utf-8")
    data = YAML(typ="safe", pure=True).load(text)
    assert dagflow.loads(json.dumps(data), format="json") == dagflow.loads(text)


def test_loop_workflow_round_trips() -> None:
    """A Loop with a task_template loads and round-trips like every other task type."""
    wf = dagflow.loads(
        "id: fan-out\n"
        "variables: {regions: [eu, us]}\n"
        "tasks:\n"
        "  - id: each\n"
        "    type:\n"
        "      type: Loop\n"
        "      items: regions\n"
        "      parallel: true\n"
        "      task_template:\n"
        "        id: deploy-one\n"
        "        type: {type: Command, command: echo, args: ['${item}']}\n"
    )
    loop = wf.tasks[0].type
    assert isinstance(loop, Loop)
    assert loop.items == "regions"
    assert loop.task_template.type == dagflow.Command(command="echo", args=("${item}",))
    assert_round_trips(wf)


# --------------------------------------------------------------------------- generated


def ids() -> st.SearchStrategy[str]:
    return st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)


# any text (full Unicode, control characters included) that is not a reference
_text = st.text(st.characters(codec="utf-8"), max_size=12).filter(lambda s: "${" not in s)
_word = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(
    lambda s: "${" not in s and s.strip() != "" and not s.startswith("-")
)
_k8s_name = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
_email = st.from_regex(r"[a-z][a-z0-9._]{0,8}@[a-z]{1,8}\.(com|org|io)", fullmatch=True)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def durations(draw: st.DrawFn) -> str | int | float:
    """A positive timeout of at most a year: ISO 8601 text, whole seconds or milliseconds."""
    kind = draw(st.sampled_from(["iso", "int", "float"]))
    if kind == "int":
        return draw(st.integers(1, 31_536_000))
    if kind == "float":
        return draw(st.integers(1, 31_536_000_000)) / 1000
    days = draw(st.integers(0, 300))
    hours, minutes, seconds = (draw(st.integers(0, n)) for n in (23, 59, 59))
    if not (days or hours or minutes or seconds):
        seconds = 1
    time = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")


@st.composite
def task_types(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Command", "Http", "Plugin", "Approval", "Deploy"]))
    spec: dict[str, Any] = {"type": kind}
    if kind == "Command":
        spec["command"] = draw(_word)
        if draw(st.booleans()):
            spec["args"] = draw(st.lists(_text, max_size=4))
        if draw(st.booleans()):
            spec["env"] = draw(st.dictionaries(_word, _text, max_size=3))
        if draw(st.booleans()):
            spec["working_dir"] = draw(st.none() | _word)
    elif kind == "Http":
        spec["url"] = "https://" + draw(_k8s_name) + ".example.com/" + draw(_text)
        if draw(st.booleans()):
            spec["method"] = draw(st.sampled_from(dagflow.Http.HTTP_METHODS))
        if draw(st.booleans()):
            spec["headers"] = draw(st.dictionaries(_word, _text, max_size=3))
        if draw(st.booleans()):
            spec["body"] = draw(st.none() | _text)
    elif kind == "Plugin":
        spec["plugin_name"] = draw(ids())
        if draw(st.booleans()):
            spec["config"] = draw(st.dictionaries(_text, _json, max_size=4))
    elif kind == "Approval":
        approvers = draw(st.lists(_email, min_size=1, max_size=4, unique=True))
        spec["approvers"] = approvers
        if draw(st.booleans()):
            spec["timeout_seconds"] = draw(st.integers(1, 31_536_000))
        if draw(st.booleans()):
            spec["auto_approve"] = draw(st.booleans())
        if draw(st.booleans()):
            spec["min_approvals"] = draw(st.integers(1, len(approvers)))
        if draw(st.booleans()):
            spec["allow_self_approval"] = draw(st.booleans())
        if draw(st.booleans()):
            spec["on_timeout"] = draw(st.sampled_from(["cancel", "reject"]))
    else:
        spec["manifest"] = draw(_word)
        if draw(st.booleans()):
            spec["namespace"] = draw(_k8s_name)
        if draw(st.booleans()):
            spec["dry_run"] = draw(st.booleans())
    return spec


@st.composite
def retry_policies(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "max_attempts": st.integers(1, 1000),
        "initial_delay_ms": st.integers(0, 86_400_000),
        "max_delay_ms": st.integers(0, 86_400_000),
        "backoff_multiplier": st.floats(1, 100) | st.integers(1, 100),
        "retryable_errors": st.lists(_text, max_size=3),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return {name: draw(fields[name]) for name in chosen}


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A valid workflow as plain data: random ids, types, policies and earlier-only deps."""
    task_ids = draw(st.lists(ids(), min_size=1, max_size=6, unique=True))
    tasks = []
    for i, task_id in enumerate(task_ids):
        task: dict[str, Any] = {"id": task_id, "type": draw(task_types())}
        if draw(st.booleans()):
            task["name"] = draw(_text)
        if i and draw(st.booleans()):
            task["depends_on"] = draw(st.lists(st.sampled_from(task_ids[:i]), unique=True))
        if draw(st.booleans()):
            task["retry_policy"] = draw(retry_policies())
        if draw(st.booleans()):
            task["timeout"] = draw(durations())
        if draw(st.booleans()):
            task["config"] = {
                "on_failure": draw(st.sampled_from(["Fail", "Continue", "Retry", "Rollback"])),
                "collect_output": draw(st.booleans()),
            }
        # (an id with an empty dotted part, like "a." or "a..b", is tested in test_expr)
        if task.get("depends_on") and "" not in task["depends_on"][0].split(".") and draw(
            st.booleans()
        ):
            task["condition"] = f"${{tasks.{task['depends_on'][0]}.exit_code}} == 0"
        if draw(st.booleans()):
            task["join"] = draw(st.sampled_from(["default", "all_success", "one_success",
                                                 "all_done"]))
        if draw(st.booleans()):
            task["rollback"] = {"type": "Command", "command": draw(_word)}
        tasks.append(task)
    doc: dict[str, Any] = {"id": draw(ids()), "tasks": tasks}
    if draw(st.booleans()):
        doc["name"] = draw(_text)
    if draw(st.booleans()):
        doc["description"] = draw(_text)
    if draw(st.booleans()):
        doc["version"] = draw(_text)
    if draw(st.booleans()):
        doc["variables"] = draw(st.dictionaries(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True), _json, max_size=4,
        ))
    if draw(st.booleans()):
        doc["metadata"] = draw(st.dictionaries(_text, _text, max_size=3))
    if draw(st.booleans()):
        doc["config"] = {
            "max_parallel_tasks": draw(st.integers(1, 100_000)),
            "timeout_seconds": draw(st.none() | st.integers(1, 31_536_000)),
            "checkpoint_interval_seconds": draw(st.integers(1, 86_400)),
            "enable_rollback": draw(st.booleans()),
        }
    return doc


@given(workflows())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_workflows_round_trip(doc: dict[str, Any]) -> None:
    """Any valid workflow loads from JSON and YAML alike, and its dumps load back equal."""
    wf = dagflow.loads(json.dumps(doc), format="json")
    assert dagflow.loads(to_yaml(doc), format="yaml") == wf
    assert [t.id for t in wf.tasks] == [t["id"] for t in doc["tasks"]]
    for task, raw in zip(wf.tasks, doc["tasks"], strict=True):
        assert task.name == raw.get("name", raw["id"])
        assert task.depends_on == tuple(raw.get("depends_on", ()))
        if "timeout" in raw:
            assert task.timeout == parse_duration(raw["timeout"])
    assert_round_trips(wf)


@given(workflows())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_converter_unstructure_structure_is_identity(doc: dict[str, Any]) -> None:
    """The one converter turns a model into plain data and back without loss."""
    wf = dagflow.loads(json.dumps(doc), format="json")
    converter = make_converter()
    assert converter.structure(converter.unstructure(wf), WorkflowDefinition) == wf


@pytest.mark.parametrize("seconds", [12.345678, 59.999999, 0.000001, 3599.999999])
def test_sub_second_timeouts_round_trip_exactly(seconds: float) -> None:
    """A timeout with microseconds dumps to a duration that loads back to the same value."""
    doc = {"id": "w", "tasks": [{"id": "a", "type": {"type": "Command", "command": "x"},
                                 "timeout": seconds}]}
    wf = dagflow.loads(json.dumps(doc), format="json")
    assert wf.tasks[0].timeout == dt.timedelta(seconds=seconds)
    assert_round_trips(wf)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT15M", dt.timedelta(minutes=15)),
        ("PT1H30M", dt.timedelta(hours=1, minutes=30)),
        ("P1D", dt.timedelta(days=1)),
        ("P1DT2H3M4.5S", dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)),
        ("PT30S", dt.timedelta(seconds=30)),
        ("PT0.5S", dt.timedelta(milliseconds=500)),
        ("P2W", dt.timedelta(weeks=2)),
        (90, dt.timedelta(seconds=90)),
        (0.25, dt.timedelta(milliseconds=250)),
        (3600, dt.timedelta(hours=1)),
    ],
)
def test_parse_duration_reads_iso_and_seconds(value: str | float, expected: dt.timedelta) -> None:
    """ISO 8601 durations and plain numbers of seconds both read as timedeltas."""
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.timedelta(minutes=15), "PT15M"),
        (dt.timedelta(hours=1, minutes=30), "PT1H30M"),
        (dt.timedelta(days=1), "P1D"),
        (dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5), "P1DT2H3M4.5S"),
        (dt.timedelta(seconds=90), "PT1M30S"),
        (dt.timedelta(0), "PT0S"),
    ],
)
def test_format_duration_writes_iso(value: dt.timedelta, text: str) -> None:
    """Timedeltas are written in the shortest ISO 8601 form."""
    assert format_duration(value) == text
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    "value",
    [
        "P1Y", "P1M", "P1Y2M", "15 minutes", "15m", "1h", "", "P", "PT", "PT1H30", "T15M",
        "90", "PT-5M", "-PT5M", "P1.5.5D", True, False, None, [], {},
        math.nan, math.inf, -math.inf,
    ],
)
def test_parse_duration_rejects_other_forms(value: Any) -> None:
    """Years, months, prose, booleans, NaN and infinity are refused."""
    with pytest.raises((ValueError, TypeError)):
        parse_duration(value)


@pytest.mark.parametrize("value", ["P1Y", "15 minutes", True, "PT", -5, 0])
def test_bad_timeout_in_a_file_is_reported(value: Any) -> None:
    """A bad task timeout is a ParseError or ValidationError naming the field, never raw."""
    doc = {"id": "w", "tasks": [{"id": "a", "type": {"type": "Command", "command": "x"},
                                 "timeout": value}]}
    with pytest.raises((dagflow.ParseError, dagflow.ValidationError)) as info:
        dagflow.loads(json.dumps(doc), format="json")
    [problem] = info.value.problems
    assert problem.path == ("tasks", 0, "timeout")
    assert (problem.line, problem.col) == (1, json.dumps(doc).index('"timeout"') + 12)


@given(st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=3650)))
@settings(max_examples=200, deadline=None)
def test_format_then_parse_is_identity(value: dt.timedelta) -> None:
    """Any non-negative timedelta written as ISO 8601 reads back exactly."""
    assert parse_duration(format_duration(value)) == value


@given(st.integers(0, 10**9))
def test_whole_seconds_round_trip(seconds: int) -> None:
    """A whole number of seconds reads, writes and reads back to the same duration."""
    value = parse_duration(seconds)
    assert value == dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["a\x85b", "a\u2028b", "a\u2029b", "a\nb", "tab\there"])
def test_yaml_dump_keeps_line_break_characters(text: str) -> None:
    """Strings with NEL, LS, PS or newlines survive dagflow.dump(format="yaml")."""
    wf = dagflow.loads(json.dumps({"id": "w", "tasks": [
        {"id": "a", "type": {"type": "Command", "command": "echo", "args": [text]}}]}),
        format="json")
    assert dagflow.loads(dagflow.dump(wf, format="yaml")).tasks[0].type == wf.tasks[0].type


def test_urls_in_flow_mappings_parse() -> None:
    """``{url: https://x}`` is valid YAML 1.2 even though libyaml alone refuses it."""
    wf = dagflow.loads("id: w\ntasks:\n  - {id: a, type: {type: Http, url: https://x.example/a}}\n")
    assert wf.tasks[0].type == dagflow.Http(url="https://x.example/a")


def test_yaml_errors_still_have_lines_after_the_fallback() -> None:
    """A file both YAML parsers refuse reports libyaml's message with its line."""
    with pytest.raises(dagflow.ParseError) as info:
        dagflow.loads("id: w\ntasks:\n  - {id: a, type: {type: Http, url: https://x}\n")
    assert info.value.problems[0].line is not None


def test_source_path_is_where_a_file_came_from_and_not_part_of_the_value(
        tmp_path: Path) -> None:
    """load() records the file's absolute path on the definition; it is left out of
    equality and of what dump() writes, and a file cannot set it."""
    text = "id: hello\ntasks: [{id: hi, type: {type: Command, command: echo}}]\n"
    (tmp_path / "hello.yaml").write_text(text)
    loaded = dagflow.load(tmp_path / "hello.yaml")
    assert loaded.source_path == str(tmp_path / "hello.yaml")
    parsed = dagflow.loads(text)
    assert parsed.source_path is None
    assert loaded == parsed
    assert "source_path" not in dagflow.dump(loaded)
    with pytest.raises(dagflow.ParseError, match="unknown key 'source_path'"):
        dagflow.loads(text + "source_path: /etc\n")
