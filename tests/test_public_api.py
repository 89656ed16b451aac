"""The public surface of ``dagflow``: what ``__all__`` promises is there, and cheap."""

from __future__ import annotations

import json
import subprocess
import sys

import dagflow


def test_all_names_resolve() -> None:
    """Every name in ``__all__`` is importable from ``dagflow``."""
    missing = [name for name in dagflow.__all__ if not hasattr(dagflow, name)]
    assert missing == []


def test_all_is_sorted_and_unique() -> None:
    """``__all__`` is sorted and has no duplicates, so diffs of the API stay readable."""
    assert list(dagflow.__all__) == sorted(set(dagflow.__all__))


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


def test_enum_values_are_the_seed_names() -> None:
    """``WorkflowState.RUNNING == "Running"``: enum values are the seed's names."""
    assert dagflow.WorkflowState.RUNNING == "Running"
    assert dagflow.WorkflowState.WAITING_APPROVAL == "WaitingApproval"
    assert dagflow.TaskStatus.SKIPPED == "Skipped"


def test_version_is_the_distribution_version() -> None:
    """``dagflow.__version__`` comes from the installed metadata."""
    from importlib.metadata import version

    assert dagflow.__version__ == version("dagflow")


def loaded_after(code: str, modules: set[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(set({sorted(modules)!r}) & set(sys.modules))))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    found: list[str] = json.loads(out)
    return found


def test_import_loads_no_optional_or_heavy_module() -> None:
    """``import dagflow`` loads no driver, HTTP client, CLI or event loop library."""
    heavy = {"httpx", "psycopg", "redis", "rich", "click", "anyio", "trio", "cattrs",
             "ruamel.yaml", "asyncio"}
    assert loaded_after("import dagflow", heavy) == []


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
