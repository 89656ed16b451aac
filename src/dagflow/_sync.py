"""``dagflow.run``: the one place that starts an event loop."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import anyio

from ._models import WorkflowDefinition, WorkflowInstance

__all__ = ["run"]


def run(
    definition: WorkflowDefinition,
    variables: Mapping[str, Any] | None = None,
    *,
    user_id: str = "",
    workdir: str | os.PathLike[str] | None = None,
    backend: str = "asyncio",
    **engine_options: Any,
) -> WorkflowInstance:
    """Run a workflow to its end, synchronously, on a fresh engine.

    Args:
        definition: The workflow (``dagflow.load(...)``).
        variables: Run-time variables.
        user_id: Who runs it.
        workdir: Where Command tasks run (default: the workflow file's directory).
        backend: ``"asyncio"`` or ``"trio"``.
        **engine_options: Passed to :class:`~dagflow.Engine` (``store=``, ``plugins=``...).

    Returns:
        The finished instance.

    Raises:
        RuntimeError: Called from inside a running event loop (use ``await
            engine.run(...)`` there).
    """
    try:
        anyio.get_current_task()
    except RuntimeError:  # no event loop running: the normal case
        pass
    else:
        raise RuntimeError("dagflow.run() starts its own event loop; inside async code use "
                           "'async with dagflow.Engine() as engine: await engine.run(wf)'")
    from ._engine import Engine

    async def main() -> WorkflowInstance:
        async with Engine(**engine_options) as engine:
            return await engine.run(definition, variables, user_id, workdir=workdir)

    return anyio.run(main, backend=backend)
