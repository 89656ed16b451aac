"""A task type of your own, written in Python: ``type: {type: Notify, ...}`` in a workflow.

    python examples/custom_task_type.py

A host application registers a name, an attrs class (the task's settings, parsed and
validated like the built-in types: unknown keys, wrong types and missing fields are
errors with their line) and an async handler. Here Notify "sends" a chat message; a real
one would call your chat service.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import attrs

import dagflow


@attrs.frozen
class Notify:
    """The settings of a Notify task; their ``${...}`` are replaced before it runs."""

    channel: str
    message: str
    mention: tuple[str, ...] = ()  # optional, with a default


async def notify(ctx: dagflow.TaskContext) -> dict[str, Any]:
    """Send one notification; the returned mapping becomes the task's ``data``.

    Raise (``dagflow.TaskExecutionFailed`` or any exception) to fail the attempt; the
    task's ``retry_policy`` applies as for any other type.
    """
    spec: Notify = ctx.spec  # already interpolated
    if not spec.channel.startswith("#"):
        raise dagflow.TaskExecutionFailed(reason=f"not a channel: {spec.channel!r}",
                                          retryable=False)
    text = " ".join([*(f"@{who}" for who in spec.mention), spec.message])
    print(f"[{spec.channel}] {text}")  # a real handler would post to the chat service
    return {"channel": spec.channel, "text": text, "attempt": ctx.attempt}


WORKFLOW = """
id: notify-demo
variables:
  version: 2.3.1
tasks:
  - id: build
    type: {type: Command, command: echo, args: ["built app ${version}"]}

  - id: announce
    depends_on: [build]
    type: {type: Notify, channel: "#releases", message: "${tasks.build.stdout}",
           mention: [alice]}
    retry_policy: {max_attempts: 3, initial_delay_ms: 200}

  # a custom type's output is read like any other task's
  - id: confirm
    depends_on: [announce]
    type: {type: Command, command: echo,
           args: ["announced in ${tasks.announce.data.channel}"]}
"""


async def main() -> None:
    async with dagflow.Engine(store="memory://") as engine:
        engine.register_task_type("Notify", Notify, notify)
        # the parser must know the type: pass the engine's task types (engine.load(path)
        # does this for a file)
        workflow = engine.loads(WORKFLOW)
        instance = await engine.run(workflow, user_id="example")

    print(f"state: {instance.state.value}")
    if instance.state != dagflow.WorkflowState.COMPLETED:
        raise SystemExit(1)
    # a task's output is None until it has run, and a Command's stdout is text
    announce = instance.task_states["announce"].output
    confirm = instance.task_states["confirm"].output
    if announce is not None and confirm is not None:
        print("announce data:", json.dumps(announce.data))
        print("confirm:", (confirm.stdout or "").strip())


if __name__ == "__main__":
    anyio.run(main)
