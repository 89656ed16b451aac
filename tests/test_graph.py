"""``dagflow graph``: Mermaid, DOT and self-contained HTML pictures of workflows and runs,
through the real entry point, the rendering functions, Graphviz (when installed) and
headless Chromium (``/usr/bin/chromium``; skipped when missing, unless
``DAGFLOW_REQUIRE_SERVICES=1``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

import dagflow
from dagflow._graph import to_dot, to_html, to_mermaid

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "deploy-with-approval.yaml"
SEED_IDS = ["validate-manifest", "run-tests", "build-image", "push-image", "request-approval",
            "deploy", "health-check", "smoke-tests", "notify-success"]
SEED_EDGES = [("run-tests", "build-image"), ("build-image", "push-image"),
              ("validate-manifest", "request-approval"), ("push-image", "request-approval"),
              ("request-approval", "deploy"), ("deploy", "health-check"),
              ("health-check", "smoke-tests"), ("smoke-tests", "notify-success")]

BRANCHES = """
    id: branches
    tasks:
      - id: probe
        type: {type: Command, command: "true"}
      - id: is.big
        depends_on: [probe]
        type: {type: Conditional, condition: "1 == 2", true_branch: [big-path],
               false_branch: [small-path]}
      - id: big-path
        type: {type: Command, command: echo, args: [big]}
      - id: small-path
        type: {type: Command, command: echo, args: [small]}
"""

# a run with a Loop, a task that fails with on_failure Continue, a skipped task, and two
# tasks of known durations (0.2 s and 0.6 s) for the timeline
RUN = """
    id: report-demo
    name: "Nightly <report> & co"
    tasks:
      - id: fast
        type: {type: Command, command: sleep, args: ["0.2"]}
      - id: slow
        type: {type: Command, command: sleep, args: ["0.6"]}
      - id: per.item
        depends_on: [fast]
        type:
          type: Loop
          items: [a, b, c]
          task_template:
            id: each
            type: {type: Command, command: echo, args: ["${item}"]}
      - id: flaky
        name: "<script>alert(1)</script>"
        config: {on_failure: Continue}
        type:
          type: Command
          command: sh
          args: ["-c", "echo '<img src=x onerror=alert(2)>' >&2; exit 3"]
      - id: never
        depends_on: [per.item]
        condition: "1 == 2"
        type: {type: Command, command: echo, args: [never]}
      - id: last
        depends_on: [slow, never]
        join: all_done
        type: {type: Command, command: echo, args: [done]}
"""
RUN_IDS = ["fast", "slow", "per.item", "flaky", "never", "last"]
ITERATIONS = ["per.item[0]", "per.item[1]", "per.item[2]"]


def dagflow_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dagflow ARGS``; never raises on a non-zero exit."""
    env = {**os.environ, "DAGFLOW_STORE": "memory://"}
    return subprocess.run([sys.executable, "-m", "dagflow", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60, env=env)


def write(directory: Path, text: str, name: str = "wf.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def mermaid_node_ids(text: str) -> dict[str, str]:
    """Task id -> Mermaid node id, read from the node lines' labels."""
    found = re.findall(r'^\s+(\S+?)(?:\[\[|\{\{|\[|\{)"([^"<]+)<br/>', text, re.MULTILINE)
    return {label: node for node, label in found}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One finished run of RUN in a SQLite store: its store URL, id and instance JSON."""
    where = tmp_path_factory.mktemp("run")
    wf = write(where, RUN)
    store = f"sqlite:///{where / 'runs.db'}"
    result = dagflow_cli("run", str(wf), "--store", store, "--json", cwd=where)
    assert result.returncode == 0, result.stderr
    instance = json.loads(result.stdout)
    states = {k: v["state"] for k, v in instance["task_states"].items()}
    assert states["flaky"] == "Failed" and states["never"] == "Skipped", states
    assert states["per.item[2]"] == "Completed", states
    return {"store": store, "id": instance["id"], "instance": instance, "dir": where,
            "file": wf}


# --------------------------------------------------------------------------- Mermaid, DOT


def test_mermaid_of_the_seed_example_has_every_task_edge_and_the_approval_hexagon() -> None:
    """The default format is a Mermaid flowchart with each task, each dependency edge and
    the Approval gate drawn as a hexagon."""
    result = dagflow_cli("graph", str(SEED))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "\nflowchart TD\n" in text
    nodes = mermaid_node_ids(text)
    assert sorted(nodes) == sorted(SEED_IDS)
    for source, target in SEED_EDGES:
        assert f"    {nodes[source]} --> {nodes[target]}\n" in text
    assert text.count("-->") == len(SEED_EDGES)
    assert f'{nodes["request-approval"]}{{{{"request-approval<br/><small>Approval</small>"}}}}' \
        in text
    assert 'deploy["deploy<br/><small>Deploy</small>"]' in text


def test_mermaid_node_ids_cannot_be_misread(make_workflow: Any) -> None:
    """Ids with '.', '-' or a Mermaid keyword become distinct plain-word node ids, while
    labels keep the real ids."""
    wf = make_workflow({"id": "end"}, {"id": "a.b", "depends_on": ["end"]},
                       {"id": "a-b", "depends_on": ["a.b"]}, {"id": "ok_1"})
    text = to_mermaid(wf)
    nodes = mermaid_node_ids(text)
    assert sorted(nodes) == ["a-b", "a.b", "end", "ok_1"]
    assert len(set(nodes.values())) == 4
    assert nodes["ok_1"] == "ok_1"
    for node in nodes.values():
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", node) and node.lower() != "end"
    assert f"{nodes['end']} --> {nodes['a.b']}" in text


def test_dot_of_the_seed_example_has_every_task_edge_and_shape() -> None:
    """--format dot is a top-to-bottom digraph with a quoted node per task (hexagon for
    the Approval) and an edge per dependency."""
    result = dagflow_cli("graph", str(SEED), "--format", "dot")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.match(r'digraph "deploy-with-approval" \{\n    rankdir=TB;\n', text)
    assert text.rstrip().endswith("}")
    assert 'graph [label="Production Deployment with Approval"' in text
    for task_id in SEED_IDS:
        assert re.search(rf'^    "{re.escape(task_id)}" \[label=<{re.escape(task_id)}<BR/>',
                         text, re.MULTILINE), task_id
    edges = re.findall(r'^    "([^"]+)" -> "([^"]+)";$', text, re.MULTILINE)
    assert sorted(edges) == sorted(SEED_EDGES)
    assert re.search(r'^    "request-approval" \[[^\n]*shape=hexagon', text, re.MULTILINE)


def test_dot_output_renders_with_graphviz(tmp_path: Path) -> None:
    """Graphviz's dot accepts the DOT output (for a tricky file and a branching one)."""
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz 'dot' is not installed (apt-get install graphviz); the DOT "
                    "structure is checked without it in the test above")
    wf = write(tmp_path, RUN)
    for path in (SEED, wf, write(tmp_path, BRANCHES, "branches.yaml")):
        text = dagflow_cli("graph", str(path), "--format", "dot").stdout
        out = subprocess.run([dot, "-Tsvg"], input=text, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "<svg" in out.stdout and not out.stderr.strip(), out.stderr


def test_conditional_branch_edges_are_labelled_true_and_false(tmp_path: Path) -> None:
    """A Conditional's implicit edges to its branches are dashed and labelled true/false
    in Mermaid, DOT and HTML; the Conditional is a rhombus/diamond."""
    wf = dagflow.load(write(tmp_path, BRANCHES))
    mermaid = to_mermaid(wf)
    nodes = mermaid_node_ids(mermaid)
    assert f"{nodes['is.big']} -. true .-> {nodes['big-path']}" in mermaid
    assert f"{nodes['is.big']} -. false .-> {nodes['small-path']}" in mermaid
    assert f'{nodes["is.big"]}{{"is.big<br/>' in mermaid
    dot = to_dot(wf)
    assert '"is.big" -> "big-path" [style=dashed, label="true"];' in dot
    assert '"is.big" -> "small-path" [style=dashed, label="false"];' in dot
    assert re.search(r'"is.big" \[[^\n]*shape=diamond', dot)
    page = to_html(wf)
    assert re.search(r'<path class="edge branch" data-from="is.big" data-to="big-path"', page)
    labels = re.findall(r'<text class="edge-label"[^>]*>(\w+)</text>', page)
    assert sorted(labels) == ["false", "true"]


def test_mermaid_and_dot_colour_nodes_by_state_of_an_instance(run: dict[str, Any]) -> None:
    """With --instance (and no FILE) Mermaid gets a classDef per state and DOT fill colours."""
    mermaid = dagflow_cli("graph", "--instance", run["id"], "--store", run["store"])
    assert mermaid.returncode == 0, mermaid.stderr
    nodes = mermaid_node_ids(mermaid.stdout)
    assert sorted(nodes) == sorted(RUN_IDS)
    assert re.search(rf"^    class (\S+,)*{nodes['flaky']}(,\S+)* failed$", mermaid.stdout,
                     re.MULTILINE)
    assert re.search(rf"^    class (\S+,)*{nodes['never']}(,\S+)* skipped$", mermaid.stdout,
                     re.MULTILINE)
    assert "classDef completed fill:#d3f9d8" in mermaid.stdout
    dot = dagflow_cli("graph", str(run["file"]), "--format", "dot", "--instance", run["id"],
                      "--store", run["store"])
    assert dot.returncode == 0, dot.stderr
    assert re.search(r'"flaky" \[[^\n]*fillcolor="#ffe3e3"', dot.stdout)
    # the error text is user-controlled: it lands escaped inside a quoted tooltip
    assert re.search(r'"flaky" \[[^\n]*tooltip="[^"\n]*error: exit code 3', dot.stdout)


# --------------------------------------------------------------------------- HTML


def test_html_is_self_contained_and_escapes_user_text(tmp_path: Path) -> None:
    """The page loads nothing from the network, shows every task id as text, and escapes
    a task name and workflow name that contain markup."""
    wf = write(tmp_path, RUN)
    out = tmp_path / "graph.html"
    result = dagflow_cli("graph", str(wf), "--format", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    external = re.findall(r"""(?:\bsrc\s*=|\bhref\s*=|@import|\burl\()\s*["']?\s*(?:https?:)?//""",
                          page, re.IGNORECASE)
    assert external == []
    assert re.findall(r"https?://[^\s\"'<]*", page) == ["http://www.w3.org/2000/svg"]  # xmlns
    assert "<link" not in page and "<img" not in page and "<script src" not in page
    for task_id in RUN_IDS:
        assert re.search(rf'<text class="id"[^>]*>{re.escape(task_id)}</text>', page), task_id
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Nightly &lt;report&gt; &amp; co</title>" in page
    assert page.count("<script>") == 1  # the hover script, and nothing user-made


def test_html_highlights_the_critical_path_and_has_a_legend() -> None:
    """The seed's critical path is marked on its nodes and edges, and the legend names it."""
    page = to_html(dagflow.load(SEED))
    path = ["run-tests", "build-image", "push-image", "request-approval", "deploy",
            "health-check", "smoke-tests", "notify-success"]
    critical = re.findall(r'<g class="node [^"]*\bcritical\b[^"]*" data-task="([^"]+)"', page)
    assert critical == path
    hops = re.findall(r'<path class="edge critical" data-from="([^"]+)" data-to="([^"]+)"',
                      page)
    assert hops == list(pairwise(path))
    assert 'class="legend"' in page and "critical path (8 steps)" in page
    assert "<title>Production Deployment with Approval</title>" in page


def test_run_report_has_summary_timeline_and_escaped_errors(run: dict[str, Any]) -> None:
    """--instance --format html adds the run's summary, one timeline bar per task and
    loop iteration that ran, and shows error text escaped."""
    out = run["dir"] / "report.html"
    result = dagflow_cli("graph", "--instance", run["id"], "--store", run["store"],
                         "--format", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert run["id"] in page and '<dl class="summary">' in page
    assert re.search(r"<dt>state</dt><dd><span class=\"badge\"[^>]*>Completed</span>", page)
    ran = [k for k, v in run["instance"]["task_states"].items() if v["started_at"]]
    bars = re.findall(r'<rect class="bar [^"]*" data-task="([^"]+)"', page)
    assert sorted(bars) == sorted(ran)
    assert set(ITERATIONS) <= set(bars) and "never" not in bars
    # iterations are nested right under their loop
    assert bars[bars.index("per.item") + 1:bars.index("per.item") + 4] == ITERATIONS
    assert re.search(r'<g class="node [^"]*state-failed[^"]*" data-task="flaky"', page)
    assert re.search(r'<g class="node [^"]*state-skipped[^"]*" data-task="never"', page)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page


def test_timeline_bar_widths_are_proportional_to_durations(run: dict[str, Any]) -> None:
    """The bars of a 0.2 s and a 0.6 s task are about a third of each other's width."""
    from dagflow._storage import open_storage

    definition = dagflow.load(run["file"])
    instance = _stored_instance(open_storage, run["store"], run["id"])
    page = to_html(definition, instance)

    def width(task_id: str) -> float:
        found = re.search(rf'<rect class="bar [^"]*" data-task="{re.escape(task_id)}" '
                          r'data-seconds="([\d.]+)" x="[\d.]+" y="\d+" width="([\d.]+)"', page)
        assert found, task_id
        return float(found.group(2))

    fast, slow = width("fast"), width("slow")
    assert 2.5 < slow / fast < 3.5, (fast, slow)
    assert slow > 300  # the plot is 760 px wide and the slow task spans most of the run


def _stored_instance(open_storage: Any, url: str, instance_id: str) -> Any:
    import anyio

    async def load() -> Any:
        store = open_storage(url)
        try:
            return await store.load_workflow(instance_id)
        finally:
            await store.close()

    return anyio.run(load)


# --------------------------------------------------------------------------- Chromium

RECORDER = """<script>
(function () {
  var errors = [];
  function put() { document.documentElement.setAttribute("data-errors", JSON.stringify(errors)); }
  window.addEventListener("error", function (e) {
    errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || "error"));
    put();
  }, true);
  var original = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    put();
    return original.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    document.documentElement.setAttribute("data-loaded", "yes"); put();
  });
  put();
})();
</script>"""


@pytest.fixture
def chromium() -> str:
    """The Chromium binary, or skip (fail under DAGFLOW_REQUIRE_SERVICES=1)."""
    path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which(
        "chromium")
    if path is None:
        if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
            pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but Chromium is not installed "
                        "(apt-get install chromium)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return path


def open_in_chromium(chromium: str, page: Path, tmp_path: Path) -> str:
    """Load ``page`` (with an error recorder added first in <head>) in headless Chromium
    with every host unresolvable, and return the DOM after the load event; console
    messages and recorded errors fail the test."""
    html_text = page.read_text(encoding="utf-8")
    assert "<head>" in html_text
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(html_text.replace("<head>", "<head>" + RECORDER, 1), encoding="utf-8")
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=3000", "--dump-dom", probe.resolve().as_uri()]
    result = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    dom = result.stdout
    assert 'data-loaded="yes"' in dom, "the page's load event never fired"
    errors = re.search(r'data-errors="([^"]*)"', dom)
    assert errors is not None and errors.group(1) == "[]", errors and errors.group(1)
    return dom


def test_html_graph_renders_in_chromium(chromium: str, tmp_path: Path) -> None:
    """Headless Chromium renders the workflow page with every task id in the DOM and no
    console error."""
    out = tmp_path / "seed.html"
    assert dagflow_cli("graph", str(SEED), "--format", "html", "-o", str(out)).returncode == 0
    dom = open_in_chromium(chromium, out, tmp_path)
    for task_id in SEED_IDS:
        assert re.search(rf'data-task="{re.escape(task_id)}"', dom), task_id
        assert re.search(rf'<text class="id"[^>]*>{re.escape(task_id)}</text>', dom), task_id
    assert dom.count('class="edge') == len(SEED_EDGES)


def test_run_report_renders_in_chromium(chromium: str, run: dict[str, Any],
                                        tmp_path: Path) -> None:
    """Headless Chromium renders the run report (loop, failed-with-Continue and skipped
    tasks) with every task and iteration in the DOM and no console error."""
    out = tmp_path / "run.html"
    result = dagflow_cli("graph", "--instance", run["id"], "--store", run["store"],
                         "--format", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    dom = open_in_chromium(chromium, out, tmp_path)
    for task_id in RUN_IDS:
        assert re.search(rf'<text class="id"[^>]*>{re.escape(task_id)}</text>', dom), task_id
        assert re.search(rf'<text class="row-label[^"]*"[^>]*>{re.escape(task_id)}</text>',
                         dom), task_id
    for key in ITERATIONS:
        assert re.search(rf'<rect class="bar [^"]*" data-task="{re.escape(key)}"', dom), key
    assert "<script>alert(1)</script>" not in dom


# --------------------------------------------------------------------------- errors, -o


def test_unknown_instance_exits_2_without_traceback(tmp_path: Path) -> None:
    """An instance id the store does not have (or a store file that does not exist) is
    bad input: exit 2 and one error line, no traceback, and no store file created."""
    for store in ("memory://", f"sqlite:///{tmp_path / 'missing.db'}"):
        result = dagflow_cli("graph", "--instance", "nope-123", "--store", store,
                             "--format", "html")
        assert result.returncode == 2, (store, result.stderr)
        assert result.stderr.startswith(
            "dagflow: error: workflow instance not found: nope-123\n"), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "missing.db").exists()


def test_invalid_file_exits_2_with_positions(tmp_path: Path) -> None:
    """A file with problems exits 2 and lists each one as FILE:LINE:COL like validate."""
    wf = write(tmp_path, """
        id: broken
        tasks:
          - id: a
            type: {type: Command, command: echo}
            dependson: [b]
          - id: b
            type: {type: Nope}
    """)
    result = dagflow_cli("graph", str(wf), "--format", "dot")
    assert result.returncode == 2
    validate = dagflow_cli("validate", str(wf))
    problems = [line for line in result.stderr.splitlines() if line]
    assert problems == [line for line in validate.stderr.splitlines() if line]
    assert len(problems) >= 2
    assert all(re.match(rf"{re.escape(str(wf))}:\d+:\d+: ", p) for p in problems), problems
    assert "Traceback" not in result.stderr and result.stdout == ""
    missing = dagflow_cli("graph", str(tmp_path / "nowhere.yaml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_output_option_writes_the_file(tmp_path: Path) -> None:
    """-o writes the drawing to a new file (nothing on stdout); without it, stdout gets it."""
    out = tmp_path / "pictures" / "seed.mmd"
    out.parent.mkdir()
    result = dagflow_cli("graph", str(SEED), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert out.read_text(encoding="utf-8") == dagflow_cli("graph", str(SEED)).stdout
    bad = dagflow_cli("graph", str(SEED), "-o", str(tmp_path / "no" / "such" / "dir.mmd"))
    assert bad.returncode == 2 and bad.stderr.startswith("dagflow: error: cannot write")


def test_graph_needs_a_file_or_an_instance_and_teaches_with_examples() -> None:
    """Neither FILE nor --instance is bad input; --help shows the formats and examples."""
    result = dagflow_cli("graph")
    assert result.returncode == 2 and "--instance" in result.stderr
    help_text = dagflow_cli("graph", "--help").stdout
    assert "Examples:" in help_text and "dagflow graph deploy.yaml --format html" in help_text
    assert "mermaid" in help_text and "--instance" in help_text
