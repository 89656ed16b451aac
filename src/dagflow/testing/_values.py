"""The values the conformance kits store and compare: definitions that use every task
type, instances with every field filled, events of every kind, checkpoints and gates.

Every id is random (uuid4), so checks may share one database and never assume it empty.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable

import attrs

from .._events import (
    ApprovalRequired,
    TaskCompleted,
    TaskFailed,
    TaskOutputLine,
    TaskStarted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowStarted,
)
from .._models import (
    ApprovalRequest,
    Checkpoint,
    ExecutionContext,
    StateTransition,
    TaskOutput,
    TaskState,
    TaskStatus,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowState,
)

__all__ = ["UNICODE", "make_checkpoint", "make_definition", "make_events", "make_gate",
           "make_instance", "make_output", "new_id", "utcnow", "with_outputs"]

#: Text that stores must keep exactly: emoji, CJK, right-to-left, combining marks,
#: zero-width and line-separator characters, control characters (but no NUL), quotes,
#: backslashes, SQL and interpolation look-alikes.
UNICODE = ("héllo wörld 🚀🔥👩‍💻 日本語テキスト مرحبا עברית e\u0301 \u200b\u200d \u2028\u2029 "
           "tab\tnl\ncr\r bell\x07 esc\x1b del\x7f \x01\x1f 'quote' \"dq\" back\\slash "
           "'; DROP TABLE dagflow_instances; -- ${not.a.ref} $${literal} %s ? :name")


def new_id() -> str:
    """A random instance id."""
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)


def make_definition(workflow_id: str | None = None) -> WorkflowDefinition:
    """A valid definition using every built-in task type and most optional fields."""
    from .._parse import loads

    doc = {
        "id": workflow_id or f"kit-{uuid.uuid4().hex[:12]}",
        "name": "check_storage 🚀",
        "description": UNICODE,
        "version": "1.2.3",
        "variables": {"stage": "staging", "regions": ["eu-west-1", "ap-south-1"],
                      "nested": {"a": [1, 2.5, None, True, {"b": "ü"}]}},
        "metadata": {"owner": "platform", "note": "日本語"},
        "config": {"max_parallel_tasks": 3, "timeout_seconds": 600,
                   "checkpoint_interval_seconds": 5, "enable_rollback": True,
                   "notification_config": {"on_completion": ["team@example.com"],
                                           "webhook_url": "http://127.0.0.1:9/hook"}},
        "tasks": [
            {"id": "build", "type": {"type": "Command", "command": "make",
                                     "args": ["build", "N=${stage}"], "env": {"K": "v ✓"},
                                     "working_dir": "src"},
             "retry_policy": {"max_attempts": 2, "initial_delay_ms": 10},
             "timeout": "PT10M", "rollback": {"type": "Command", "command": "make",
                                              "args": ["clean"]}},
            {"id": "check", "type": {"type": "Http", "method": "POST",
                                     "url": "http://127.0.0.1:9/check",
                                     "headers": {"X-Kit": "1"}, "body": "{\"a\": 1}"},
             "depends_on": ["build"], "timeout": 30},
            {"id": "count", "type": {"type": "Query", "query_type": "analytics",
                                     "query": "SELECT count(*) FROM t WHERE r = :r",
                                     "parameters": {"r": "eu"}}},
            {"id": "approve", "type": {"type": "Approval", "approvers": ["alice@example.com"],
                                       "timeout_seconds": 3600}, "depends_on": ["check"]},
            {"id": "deploy", "type": {"type": "Deploy", "manifest": "k8s/app.yaml",
                                      "namespace": "staging", "dry_run": True},
             "depends_on": ["approve"], "config": {"on_failure": "Rollback"}},
            {"id": "scale", "type": {"type": "Scale", "resource": "deployment/app",
                                     "replicas": 3}, "depends_on": ["deploy"]},
            {"id": "branch", "type": {"type": "Conditional", "condition": "${stage} == 'prod'",
                                      "true_branch": ["each"], "false_branch": ["note"]},
             "depends_on": ["count"]},
            {"id": "each", "type": {"type": "Loop", "items": "${regions}", "parallel": True,
                                    "task_template": {"id": "each-region", "type": {
                                        "type": "Command", "command": "echo",
                                        "args": ["${item}"]}}}},
            {"id": "note", "type": {"type": "Plugin", "plugin_name": "notify",
                                    "config": {"text": "ünïcödé", "n": [1, 2]}}},
            {"id": "report", "type": {"type": "Subworkflow", "workflow_id": "send-report",
                                      "inputs": {"region": "${stage}"}},
             "depends_on": ["each", "note", "scale"], "join": "one_success"},
        ],
    }
    return loads(json.dumps(doc), format="json")


def make_output(n: int = 0, text: str = "") -> TaskOutput:
    """A task output with every field filled, different for each ``n``."""
    return TaskOutput(stdout=f"out {n} {text}\n", stderr=f"err {n}", exit_code=n % 3,
                      data={"n": n, "items": [1, "two", {"three": [3.5, None, False]}],
                            "text": text},
                      metrics={"duration_seconds": 1.25 + n, "rows": 3.0})


def make_instance(definition: WorkflowDefinition | None = None, *, instance_id: str | None = None,
                  created_at: dt.datetime | None = None, created_by: str = "kit-user",
                  state: WorkflowState = WorkflowState.RUNNING, full: bool = True,
                  text: str = "") -> WorkflowInstance:
    """An instance; ``full`` fills every field (task states, history, context...)."""
    from .._serde import definition_hash

    definition = definition or make_definition()
    created = created_at or utcnow()
    if not full:
        return WorkflowInstance(
            id=instance_id or new_id(), workflow_id=definition.id, definition=definition,
            state=state, created_at=created, created_by=created_by,
            definition_hash=definition_hash(definition))
    second = dt.timedelta(seconds=1)
    states = {
        "build": TaskState("build", TaskStatus.COMPLETED, created + second, created + 2 * second,
                           2, make_output(1, text), None),
        "check": TaskState("check", TaskStatus.FAILED, created + 3 * second,
                           created + 4 * second, 3, make_output(2, text), f"HTTP 503 {text}"),
        "count": TaskState("count", TaskStatus.RUNNING, created + 5 * second, None, 1),
        "note": TaskState("note", TaskStatus.SKIPPED, error=f"branch not taken {text}"),
    }
    history = (
        StateTransition(WorkflowState.PENDING, WorkflowState.RUNNING, created, None),
        StateTransition(WorkflowState.RUNNING, WorkflowState.PAUSED, created + second,
                        f"paused by José {text}"),
        StateTransition(WorkflowState.PAUSED, WorkflowState.RUNNING, created + 2 * second,
                        "resumed"),
    )
    variables = {"env": "staging", "text": text or "plain", "list": [1, 2, [3, {"k": "v"}]],
                 "nested": {"ü": {"deeper": [None, True, 1.5, -7, 10**15]}}, "empty": {}}
    return WorkflowInstance(
        id=instance_id or new_id(), workflow_id=definition.id, definition=definition,
        state=state, created_at=created, created_by=created_by,
        started_at=created + second, completed_at=None,
        execution_context=ExecutionContext(
            variables=variables,
            outputs={k: s.output for k, s in states.items() if s.output is not None},
            environment={"HOME": "/home/kit", "LANG": "C.UTF-8", "NOTE": text}),
        task_states=states, error=None, state_history=history,
        workdir=f"/var/lib/dagflow/runs/kit {text}",
        definition_hash=definition_hash(definition), parent_id=new_id())


def with_outputs(instance: WorkflowInstance) -> WorkflowInstance:
    """``instance`` with its context's outputs matching its task states, as loaded."""
    context = instance.execution_context
    return attrs.evolve(instance, execution_context=ExecutionContext(
        context.variables, instance.outputs, context.environment))


def make_events(instance_id: str, start: int, n: int, text: str = "") -> list[WorkflowEvent]:
    """``n`` events of several types with seq ``start``, ``start + 1``..."""
    at = utcnow()
    kinds: list[Callable[[int], WorkflowEvent]] = [
        lambda seq: WorkflowStarted(seq=seq, instance_id=instance_id, timestamp=at,
                                    workflow_id="kit"),
        lambda seq: TaskStarted(seq=seq, instance_id=instance_id, timestamp=at,
                                task_id="build", attempt=2),
        lambda seq: TaskOutputLine(seq=seq, instance_id=instance_id, timestamp=at,
                                   task_id="build", stream="stdout", line=f"line {seq} {text}"),
        lambda seq: TaskCompleted(seq=seq, instance_id=instance_id, timestamp=at,
                                  task_id="build", output=make_output(seq, text)),
        lambda seq: TaskFailed(seq=seq, instance_id=instance_id, timestamp=at,
                               task_id="check", error=f"boom {text}", attempt=3,
                               output=make_output(seq)),
        lambda seq: ApprovalRequired(seq=seq, instance_id=instance_id, timestamp=at,
                                     task_id="approve", approvers=("alice@example.com",),
                                     approval_id="ap-1", expires_at=at + dt.timedelta(hours=1),
                                     min_approvals=1),
        lambda seq: WorkflowCancelled(seq=seq, instance_id=instance_id, timestamp=at,
                                      reason=f"stopped {text}"),
        lambda seq: WorkflowCompleted(seq=seq, instance_id=instance_id, timestamp=at),
    ]
    return [kinds[(start + i) % len(kinds)](start + i) for i in range(n)]


def make_checkpoint(instance: WorkflowInstance, at: dt.datetime, text: str = "") -> Checkpoint:
    """A snapshot of ``instance`` taken at ``at`` (its checksum is a random string)."""
    return Checkpoint(id=f"cp_{uuid.uuid4().hex}", timestamp=at,
                      workflow_state=instance.state, task_states=dict(instance.task_states),
                      execution_context=with_outputs(instance).execution_context,
                      instance_id=instance.id, checksum=f"s:{uuid.uuid4().hex} {text}")


def make_gate(instance_id: str, expires_in_hours: int) -> ApprovalRequest:
    """A pending gate of ``instance_id`` that needs two of two approvers."""
    at = utcnow()
    return ApprovalRequest(
        approval_id=f"apr_{uuid.uuid4().hex}", workflow_id="kit", task_id="approve ✓",
        requested_at=at, expires_at=at + dt.timedelta(hours=expires_in_hours),
        approvers=("alice@example.com", "bob@example.com"), instance_id=instance_id,
        min_approvals=2, context={"requested_by": "carol", "note": "ünïcode"})

