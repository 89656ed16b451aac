"""The public surface of ``dagflow``: what ``__all__`` promises is there, and cheap.

``dagflow._EXPORTS`` is the one list of public names; ``__all__``, lazy loading and the
type checkers' imports all come from it (see the module docstring of ``dagflow``).
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import traceback
import types
import typing
from pathlib import Path

import dagflow

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, *args: str) -> str:
    """What a fresh interpreter running ``code`` prints (so that nothing this test process
    imported or resolved earlier hides what ``import dagflow`` does)."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_all_names_resolve() -> None:
    """Every name in ``__all__`` is importable from ``dagflow``."""
    missing = [name for name in dagflow.__all__ if not hasattr(dagflow, name)]
    assert missing == []


def test_all_is_the_sorted_export_list() -> None:
    """``__all__`` is the export list, sorted and without duplicates, so diffs of the API
    stay readable."""
    assert list(dagflow.__all__) == sorted(set(dagflow._EXPORTS))


def test_exports_name_private_modules() -> None:
    """Each name points at a private module, never at another public name's module path
    or a third-party package."""
    assert [m for m in dagflow._EXPORTS.values() if not m.startswith("._")] == []


def test_type_checking_imports_match_the_list() -> None:
    """The ``if TYPE_CHECKING:`` imports that mypy and pyright read are exactly the ones
    ``tools/public_api.py`` generates from ``_EXPORTS`` (run it after adding a name)."""
    spec = importlib.util.spec_from_file_location("public_api", ROOT / "tools/public_api.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    source = Path(dagflow.__file__).read_text(encoding="utf-8")
    assert tool.exports(source) == dagflow._EXPORTS
    assert tool.split(source)[1] == tool.render(dagflow._EXPORTS), (
        "stale TYPE_CHECKING imports: run python tools/public_api.py")


def test_star_import_and_dir_give_the_public_names() -> None:
    """``from dagflow import *`` binds exactly ``__all__``, and ``dir(dagflow)`` shows it."""
    namespace: dict[str, object] = {}
    exec("from dagflow import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(dagflow.__all__)
    assert set(dagflow.__all__) <= set(dir(dagflow))


def test_public_names_report_module_dagflow() -> None:
    """Classes and functions say ``dagflow``, where users import them from, not the private
    module that defines them; type aliases keep their origin's read-only ``__module__``."""
    wrong = {}
    for name in dagflow.__all__:
        value = getattr(dagflow, name)
        if typing.get_origin(value) is not None:
            continue
        if getattr(value, "__module__", "dagflow") != "dagflow":
            wrong[name] = value.__module__
    assert wrong == {}


def test_renamed_names_pickle_repr_and_print_as_public() -> None:
    """Pickle finds classes and functions under their public name, reprs and
    tracebacks show it, and instances pickle and print as before."""
    for name in dagflow.__all__:
        value = getattr(dagflow, name)
        if isinstance(value, type | types.FunctionType):
            assert pickle.loads(pickle.dumps(value)) is value, name
    wf = dagflow.loads("id: x\ntasks: [{id: a, type: {type: Command, command: echo}}]")
    for instance in (wf, dagflow.WorkflowState.RUNNING, dagflow.RetryPolicy()):
        assert pickle.loads(pickle.dumps(instance)) == instance
    assert repr(dagflow.Engine) == "<class 'dagflow.Engine'>"
    assert repr(dagflow.WorkflowState.RUNNING) == "<WorkflowState.RUNNING: 'Running'>"
    assert repr(dagflow.RetryPolicy()).startswith("RetryPolicy(")
    shown = traceback.format_exception_only(dagflow.StorageError("disk full"))
    assert shown == ["dagflow.StorageError: disk full\n"]


ANNOTATIONS_PROBE = """
import importlib, typing
import dagflow  # the package alone: nothing is renamed before a name is looked up

def outcome(cls):
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

classes = {name: getattr(importlib.import_module(module, "dagflow"), name)
           for name, module in dagflow._EXPORTS.items()}
classes = {name: cls for name, cls in classes.items() if isinstance(cls, type)}
assert all(cls.__module__.startswith("dagflow._") for cls in classes.values())
before = {name: outcome(cls) for name, cls in classes.items()}
for name in classes:
    getattr(dagflow, name)
assert all(cls.__module__ == "dagflow" for cls in classes.values())
after = {name: outcome(cls) for name, cls in classes.items()}
for name in classes:
    if before[name] != after[name]:
        print(f"{name}: {before[name]!r} -> {after[name]!r}")
"""


def test_annotations_resolve_as_before_the_rename() -> None:
    """``typing.get_type_hints`` gives every public class the same hints (or the same
    error, for a name imported only for type checkers) after the rename as before it."""
    assert run_python(ANNOTATIONS_PROBE) == ""


CONVERTER_PROBE = """
from __future__ import annotations

import datetime as dt
import sys
import typing

import anyio
import attrs

import dagflow
from dagflow._serde import make_converter

for name in dagflow.__all__:  # rename everything before anything resolves a type
    getattr(dagflow, name)
assert isinstance(attrs.fields(dagflow.WorkflowInstance).created_at.type, str)

@attrs.frozen
class Notify:
    channel: str
    at: dt.datetime | None = None  # a name from this module, not from dagflow's

@attrs.frozen
class LoudHttp(dagflow.Http):  # a user's subclass of a renamed class
    volume: int = 1

async def handle(ctx: dagflow.TaskContext) -> dict[str, str]:
    return {"type": type(ctx.spec).__name__}

async def main() -> dagflow.WorkflowInstance:
    async with dagflow.Engine(store=f"sqlite:///{sys.argv[1]}") as engine:
        engine.register_task_type("Notify", Notify, handle)
        engine.register_task_type("LoudHttp", LoudHttp, handle)
        wf = engine.loads(
            "id: custom\\n"
            "tasks:\\n"
            "  - {id: a, type: {type: Notify, channel: ops, at: '2024-05-01T12:00:00Z'}}\\n"
            "  - {id: b, type: {type: LoudHttp, url: 'http://127.0.0.1:9/', volume: 3},"
            " depends_on: [a]}\\n")
        return await engine.run(wf)

instance = anyio.run(main)
assert instance.state == dagflow.WorkflowState.COMPLETED, instance.error
assert instance.outputs["b"].data == {"type": "LoudHttp"}
converter = make_converter({"Notify": Notify, "LoudHttp": LoudHttp})
assert converter.structure(converter.unstructure(instance), dagflow.WorkflowInstance) == instance
assert typing.get_type_hints(dagflow.WorkflowInstance)["created_at"] is dt.datetime
assert typing.get_type_hints(LoudHttp)["headers"] == dict[str, str]
assert "RetryPolicy" in dagflow.json_schema()["$defs"]
print("ok")
"""


def test_fresh_converter_after_the_rename(tmp_path: Path) -> None:
    """With every public name renamed before any type was resolved, a workflow with a
    custom task type (and a user's subclass of ``Http``) parses, runs, is stored in SQLite
    and round-trips through a new converter."""
    assert run_python(CONVERTER_PROBE, str(tmp_path / "store.db")) == "ok\n"


def test_stores_are_exported() -> None:
    """``open_store(url)`` gives the store class the URL's scheme names; the engine's
    internal ``open_storage`` is the same function."""
    from dagflow._storage import open_storage

    assert open_storage is dagflow.open_store
    assert type(dagflow.open_store("memory://")) is dagflow.MemoryStorage
    assert type(dagflow.open_store("sqlite:///never-opened.db")) is dagflow.SqliteStorage
    postgres = dagflow.open_store("postgresql://nobody@127.0.0.1:1/none")  # connects lazily
    assert type(postgres) is dagflow.PostgresStorage


def test_enum_values_are_the_seed_names() -> None:
    """``WorkflowState.RUNNING == "Running"``: enum values are the seed's names."""
    assert dagflow.WorkflowState.RUNNING == "Running"
    assert dagflow.WorkflowState.WAITING_APPROVAL == "WaitingApproval"
    assert dagflow.TaskStatus.SKIPPED == "Skipped"


def test_protocols_are_exported() -> None:
    """The seed's eight seams are Protocols exported at the top level."""
    for name in ("WorkflowParser", "DagBuilder", "TaskExecutor", "CheckpointManager",
                 "ApprovalSystem", "StateMachine", "WorkflowStorage", "WorkflowEngine"):
        assert getattr(dagflow, name)._is_protocol, name


def test_defaults_satisfy_their_protocols() -> None:
    """The default parser, DAG builder and state machine fit their Protocols."""
    assert isinstance(dagflow.DefaultWorkflowParser(), dagflow.WorkflowParser)
    assert isinstance(dagflow.DefaultDagBuilder(), dagflow.DagBuilder)
    assert isinstance(dagflow.DefaultStateMachine(), dagflow.StateMachine)


def test_error_hierarchy() -> None:
    """Every error derives from WorkflowError, with the seed's variants as subclasses."""
    for name in ("ParseError", "ValidationError", "CycleDetected", "InvalidStateTransition",
                 "WorkflowNotFound", "TaskExecutionFailed", "DependencyNotSatisfied",
                 "ApprovalError", "ApprovalTimeout", "CheckpointError", "StorageError"):
        assert issubclass(getattr(dagflow, name), dagflow.WorkflowError), name
    assert issubclass(dagflow.CycleDetected, dagflow.ValidationError)
    assert issubclass(dagflow.ApprovalTimeout, dagflow.ApprovalError)


def test_version_is_the_distribution_version() -> None:
    """``dagflow.__version__`` comes from the installed metadata."""
    from importlib.metadata import version

    assert dagflow.__version__ == version("dagflow")


def loaded_after(code: str, modules: set[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(set({sorted(modules)!r}) & set(sys.modules))))\n")
    found: list[str] = json.loads(run_python(probe))
    return found


def test_import_loads_no_optional_or_heavy_module() -> None:
    """``import dagflow`` loads no driver, HTTP client, CLI, event loop or attrs library."""
    heavy = {"httpx", "psycopg", "redis", "rich", "click", "anyio", "trio", "attr", "attrs",
             "cattrs", "ruamel.yaml", "asyncio", "typing", "importlib.metadata"}
    assert loaded_after("import dagflow", heavy) == []


def test_import_runs_only_the_package_file() -> None:
    """``import dagflow`` imports no other module than itself and ``__future__``: the
    names load on first use."""
    code = ("import sys\nbefore = set(sys.modules)\nimport dagflow\n"
            "print(sorted(set(sys.modules) - before))\n")
    assert run_python(code) == "['__future__', 'dagflow']\n"


def test_storage_classes_do_not_import_psycopg() -> None:
    """Naming the stores loads no database driver: psycopg comes with the first
    PostgreSQL connection, and SQLite's module only with ``SqliteStorage``."""
    code = "import dagflow\ndagflow.open_store\ndagflow.MemoryStorage\n"
    assert loaded_after(code, {"psycopg", "psycopg_pool", "sqlite3"}) == []
    code += "dagflow.SqliteStorage\ndagflow.PostgresStorage\n"
    assert loaded_after(code, {"psycopg", "psycopg_pool"}) == []


def test_a_run_without_http_tasks_does_not_import_httpx() -> None:
    """The HTTP client (httpx, and what it imports) loads with the first Http task or
    webhook, not with the engine: it is the slowest import of all."""
    code = (
        "import dagflow\n"
        "wf = dagflow.loads('id: x\\ntasks: [{id: a, type: {type: Command, command: "
        "echo}}]')\n"
        "assert dagflow.run(wf, store='memory://').state == 'Completed'\n"
    )
    assert loaded_after(code, {"httpx", "httpcore", "psycopg", "rich"}) == []
