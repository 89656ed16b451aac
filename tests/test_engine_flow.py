"""Loops, subworkflows, plugins (registered and from entry points), custom task types."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import dagflow
from dagflow import TaskStatus, WorkflowState
from dagflow.testing import RecordingHandler, fail

pytestmark = pytest.mark.anyio


def loop(items: Any, *, parallel: bool = False, config: Any = None) -> dict[str, Any]:
    template = {"id": "each", "type": {"type": "Plugin", "plugin_name": "rec",
                                       "config": config or {"item": "${item}",
                                                            "index": "${item_index}"}}}
    return {"type": "Loop", "items": items, "parallel": parallel, "task_template": template}


async def run(wf: Any, rec: Any, **options: Any) -> Any:
    async with dagflow.Engine(plugins={"rec": rec}, **options) as engine:
        return await engine.run(wf)


async def test_sequential_loop_runs_items_in_order(make_workflow: Any) -> None:
    """A sequential Loop runs the template once per item, in order, with ${item} and
    ${item_index}; its data lists the iteration outputs in item order."""
    rec = RecordingHandler(default=lambda ctx: {"seen": ctx.spec.config["item"]})
    wf = make_workflow({"id": "regions", "type": loop("regions")},
                       variables={"regions": ["eu", "us", "ap"]})
    inst = await run(wf, rec)
    assert inst.state == WorkflowState.COMPLETED
    assert [c.spec.config for c in rec.calls] == [
        {"item": "eu", "index": 0}, {"item": "us", "index": 1}, {"item": "ap", "index": 2}]
    data = inst.task_states["regions"].output.data
    assert [d["data"]["seen"] for d in data] == ["eu", "us", "ap"]
    assert {k: s.state for k, s in inst.task_states.items() if "[" in k} == {
        "regions[0]": TaskStatus.COMPLETED, "regions[1]": TaskStatus.COMPLETED,
        "regions[2]": TaskStatus.COMPLETED}


async def test_parallel_loop_keeps_item_order_in_data(make_workflow: Any) -> None:
    """A parallel Loop's data is in item order even when iterations finish out of order."""
    rec = RecordingHandler(default=lambda ctx: {"i": ctx.item},
                           seconds=0.0)
    wf = make_workflow({"id": "l", "type": loop([3, 1, 2], parallel=True)})
    inst = await run(wf, rec)
    assert [d["data"]["i"] for d in inst.task_states["l"].output.data] == [3, 1, 2]


async def test_loop_items_from_an_upstream_task(make_workflow: Any) -> None:
    """items: ${tasks.X.data.list} iterates over what an upstream task produced."""
    rec = RecordingHandler(results={"list": {"hosts": ["h1", "h2"]}})
    wf = make_workflow({"id": "list"},
                       {"id": "each-host", "depends_on": ["list"],
                        "type": loop("${tasks.list.data.hosts}")})
    inst = await run(wf, rec)
    assert inst.state == WorkflowState.COMPLETED
    assert [c.item for c in rec.calls if c.task_id == "each-host"] == ["h1", "h2"]


async def test_failed_iteration_fails_the_loop(make_workflow: Any) -> None:
    """Any failed iteration fails the Loop (after the others ran, in a parallel loop)."""
    def answer(ctx: Any) -> Any:
        if ctx.item == 2:
            raise dagflow.TaskExecutionFailed(reason="item two is bad", retryable=False)
        return None

    rec = RecordingHandler(default=answer)
    wf = make_workflow({"id": "l", "type": loop([1, 2, 3], parallel=True)})
    inst = await run(wf, rec)
    assert inst.state == WorkflowState.FAILED
    assert "1 of 3 iterations failed" in inst.task_states["l"].error
    assert inst.task_states["l[1]"].state == TaskStatus.FAILED
    assert inst.task_states["l[2]"].state == TaskStatus.COMPLETED


async def test_nested_subworkflows_pass_inputs_and_outputs(tmp_path: Path) -> None:
    """parent -> child -> grandchild, found as files next to the parent; inputs become the
    child's variables and the child's outputs the task's data."""
    (tmp_path / "child.yaml").write_text(textwrap.dedent("""
        id: child
        tasks:
          - id: greet
            type: {type: Plugin, plugin_name: rec, config: {who: "${who}"}}
          - id: deeper
            type: {type: Subworkflow, workflow_id: grandchild, inputs: {n: "${who}!"}}
    """))
    (tmp_path / "grandchild.yaml").write_text(textwrap.dedent("""
        id: grandchild
        tasks:
          - id: leaf
            type: {type: Plugin, plugin_name: rec, config: {n: "${n}"}}
    """))
    (tmp_path / "parent.yaml").write_text(textwrap.dedent("""
        id: parent
        tasks:
          - id: sub
            type: {type: Subworkflow, workflow_id: child, inputs: {who: world}}
          - id: after
            type: {type: Plugin, plugin_name: rec,
                   config: {got: "${tasks.sub.data.tasks.greet.data.echo}"}}
            depends_on: [sub]
    """))
    rec = RecordingHandler(default=lambda ctx: {"echo": ctx.spec.config})
    async with dagflow.Engine(plugins={"rec": rec}) as engine:
        inst = await engine.run(dagflow.load(tmp_path / "parent.yaml"))
        children = await engine.list_workflows()
    assert inst.state == WorkflowState.COMPLETED
    configs = [c.spec.config for c in rec.calls]
    # a free-form value that is exactly one reference keeps the referenced value's type
    assert configs == [{"who": "world"}, {"n": "world!"}, {"got": {"who": "world"}}]
    assert {c.workflow_id for c in children} == {"parent", "child", "grandchild"}
    child = next(c for c in children if c.workflow_id == "child")
    assert child.parent_id == inst.id


async def test_a_cancelled_parent_cancels_its_running_subworkflow(tmp_path: Path) -> None:
    """Cancelling a parent while its Subworkflow child runs ends the child (and the
    child's own running child) Cancelled, running tasks cancelled, instead of leaving them
    Running forever."""
    running = 0
    started = anyio.Event()

    async def slow(config: Any, ctx: Any) -> None:
        nonlocal running
        running += 1
        if running == 2:  # the child's task and the grandchild's
            started.set()
        await anyio.sleep_forever()

    grandchild = dagflow.loads("id: grandchild\ntasks:\n  - {id: slow, type: {type:"
                               " Plugin, plugin_name: slow}}\n")
    child = dagflow.loads("id: child\ntasks:\n  - {id: slow, type: {type: Plugin,"
                          " plugin_name: slow}}\n  - {id: deeper, type: {type: Subworkflow,"
                          " workflow_id: grandchild}}\n")
    parent = dagflow.loads("id: parent\ntasks:\n  - {id: sub, type: {type: Subworkflow,"
                           " workflow_id: child}}\n")
    async with dagflow.Engine(store=f"sqlite:///{tmp_path}/s.db", plugins={"slow": slow},
                              workflows=[child, grandchild]) as engine:
        instance = await engine.create_workflow(parent)
        await engine.start_workflow(instance.id)
        with anyio.fail_after(10):
            await started.wait()
        await engine.cancel_workflow(instance.id, "by a test")
        with anyio.fail_after(10):
            final = await engine.wait(instance.id)
        kid = await engine.get_status(f"{instance.id}.sub")
        grandkid = await engine.get_status(f"{instance.id}.sub.deeper")
    assert final.state == WorkflowState.CANCELLED
    assert kid.state == WorkflowState.CANCELLED, kid.state
    assert kid.task_states["slow"].state == TaskStatus.CANCELLED
    assert f"parent {instance.id} cancelled" in (kid.error or "")
    assert grandkid.state == WorkflowState.CANCELLED, grandkid.state
    assert grandkid.task_states["slow"].state == TaskStatus.CANCELLED


async def test_subworkflow_recursion_is_refused_before_running(tmp_path: Path) -> None:
    """a -> b -> a is a ValidationError naming the loop, and nothing runs."""
    (tmp_path / "a.yaml").write_text(
        "id: a\ntasks:\n  - {id: x, type: {type: Subworkflow, workflow_id: b}}\n")
    (tmp_path / "b.yaml").write_text(
        "id: b\ntasks:\n  - {id: y, type: {type: Subworkflow, workflow_id: a}}\n")
    async with dagflow.Engine() as engine:
        with pytest.raises(dagflow.ValidationError, match="recursion: a -> b -> a"):
            await engine.run(dagflow.load(tmp_path / "a.yaml"))
        assert await engine.list_workflows() == []


async def test_unknown_subworkflow_is_refused(make_workflow: Any) -> None:
    """A Subworkflow naming no known workflow fails before anything runs."""
    wf = make_workflow({"id": "s", "type": {"type": "Subworkflow", "workflow_id": "ghost"}})
    async with dagflow.Engine() as engine:
        with pytest.raises(dagflow.ValidationError, match="no workflow 'ghost'"):
            await engine.run(wf, workdir=".")


async def test_plugin_found_through_an_entry_point(make_workflow: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A Plugin task finds a handler installed in the 'dagflow.plugins' entry point group."""
    (tmp_path / "acme_dagflow_plugin.py").write_text(textwrap.dedent("""
        async def greet(config, ctx):
            return {"greeting": "hello " + config["name"], "task": ctx.task_id}
    """))
    dist = tmp_path / "acme_dagflow_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-dagflow-plugin\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dagflow.plugins]\ngreet = acme_dagflow_plugin:greet\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    wf = make_workflow({"id": "hi", "type": {"type": "Plugin", "plugin_name": "greet",
                                             "config": {"name": "ops"}}})
    async with dagflow.Engine() as engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["hi"].output.data == {"greeting": "hello ops", "task": "hi"}
    sys.modules.pop("acme_dagflow_plugin", None)


async def test_unknown_plugin_is_refused_before_running(make_workflow: Any) -> None:
    """A Plugin task naming no registered or installed plugin is a ValidationError."""
    wf = make_workflow({"id": "x", "type": {"type": "Plugin", "plugin_name": "nope"}})
    async with dagflow.Engine() as engine:
        with pytest.raises(dagflow.ValidationError, match="unknown plugin 'nope'"):
            await engine.run(wf)


@attrs.frozen
class Notify:
    """A host application's own task type."""

    channel: str
    message: str
    urgent: bool = False


async def test_custom_task_type_parses_validates_and_runs() -> None:
    """A host registers a type with its attrs config; files use it like a built-in, with
    strict parsing and interpolation."""
    rec = RecordingHandler(default=lambda ctx: {"sent": ctx.spec.message})
    engine = dagflow.Engine()
    engine.register_task_type("Notify", Notify, rec)
    wf = dagflow.loads(textwrap.dedent("""
        id: custom
        variables: {who: ops}
        tasks:
          - id: ping
            type: {type: Notify, channel: "#deploys", message: "hello ${who}"}
    """), task_types=engine.task_types)
    async with engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["ping"].output.data == {"sent": "hello ops"}
    with pytest.raises(dagflow.ParseError, match="unknown key 'chanel'"):
        dagflow.loads("id: c\ntasks:\n  - {id: p, type: {type: Notify, chanel: x, "
                      "message: y}}\n", task_types=engine.task_types)


@attrs.frozen
class Page:
    """A custom type with attrs validators of its own."""

    channel: str = attrs.field(validator=attrs.validators.matches_re(r"#[a-z-]+"))


async def test_custom_type_validators_check_the_file_and_the_replaced_values() -> None:
    """The type's own attrs validators reject a literal value when the file is loaded, with
    attrs' message only; a value holding a reference is checked once it is replaced, and a
    refused one fails the task (not the process) with the same message."""
    rec = RecordingHandler(default=lambda ctx: {"to": ctx.spec.channel})
    engine = dagflow.Engine()
    engine.register_task_type("Page", Page, rec)

    def load(channel: str) -> dagflow.WorkflowDefinition:
        return dagflow.loads(textwrap.dedent(f"""
            id: paging
            variables: {{good: "#ops", bad: ops}}
            tasks:
              - id: page
                type: {{type: Page, channel: "{channel}"}}
        """), task_types=engine.task_types)

    with pytest.raises(dagflow.ValidationError) as info:
        load("general")
    [problem] = info.value.problems
    assert problem.line == 6
    assert problem.message == "'channel' must match regex '#[a-z-]+' ('general' doesn't)"
    async with engine:
        good = await engine.run(load("${good}"))
        bad = await engine.run(load("${bad}"))
    assert good.state == WorkflowState.COMPLETED
    assert good.task_states["page"].output.data == {"to": "#ops"}
    assert bad.state == WorkflowState.FAILED
    assert bad.task_states["page"].error == (
        "with its references replaced: 'channel' must match regex '#[a-z-]+' "
        "('ops' doesn't)")
    assert rec.task_ids() == ["page"]  # the refused one never reached the handler


async def test_one_settings_class_under_two_names_on_two_engines() -> None:
    """Registering a class does not change it: two engines may give it different names,
    and each runs its own files (also when passed as Engine(task_types=...))."""
    first, second = RecordingHandler(), RecordingHandler()
    chat = dagflow.Engine()
    chat.register_task_type("Chat", Notify, first)
    page = dagflow.Engine(task_types={"Page": Notify}, handlers={"Page": second})
    text = "id: n\ntasks:\n  - {{id: t, type: {{type: {}, channel: '#x', message: hi}}}}\n"
    async with chat, page:
        done = await chat.run(chat.loads(text.format("Chat")))
        also = await page.run(page.loads(text.format("Page")))
    assert (done.state, also.state) == (WorkflowState.COMPLETED, WorkflowState.COMPLETED)
    assert (first.task_ids(), second.task_ids()) == (["t"], ["t"])
    assert not hasattr(Notify, "type_name")


async def test_iteration_retries_use_the_template_policy(make_workflow: Any) -> None:
    """An iteration that fails once is retried under the template's retry policy."""
    rec = RecordingHandler(default=[fail("flaky"), None])
    spec = loop([1])
    spec["task_template"]["retry_policy"] = {"max_attempts": 2, "initial_delay_ms": 0}
    inst = await run(make_workflow({"id": "l", "type": spec}), rec)
    assert inst.state == WorkflowState.COMPLETED
    assert inst.task_states["l[0]"].attempts == 2
