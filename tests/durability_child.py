"""A child process for ``tests/test_durability.py``: it runs, resumes or recovers one
instance through the Python API, so that the test can kill it (SIGKILL, SIGSTOP) or let a
crash point end it, and then look at what the store kept.

Usage: ``python durability_child.py '<json>'`` where the JSON object holds

- ``mode``: ``run`` (create ``id`` from the ``workflow`` file and run it), ``resume``
  (``resume_workflow(id)``, retried while another process's lease is live) or
  ``recover`` (``recover()`` until it picks ``id`` up);
- ``store``: the store URL; ``id``: the instance id; ``lease``: ``lease_seconds``;
- ``patience``: how long ``resume``/``recover`` keep trying (seconds, default 20);
- ``crash_at``: ``POINT:N`` ends the process with exit status 137 (like SIGKILL: nothing
  is cleaned up) the N-th time the run passes POINT, one of ``before-commit`` and
  ``after-commit`` (a journal commit), ``task-started`` (a task's Running record is
  durable, its handler not started) and ``task-finished`` (a handler returned, its outcome
  not yet recorded). The engine has no crash hooks: the points are seen from the store,
  the seam every change goes through.

It writes ``STARTED`` on a line of its own once the instance is being driven (a killer
times its kill from there), then, when the instance stops, one JSON line
``{"state": ..., "error": ...}``. A refusal to resume is one JSON line
``{"refused": message}`` and exit status 3.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import anyio

import dagflow
import dagflow._storage
from dagflow import WorkflowState

TERMINAL = {WorkflowState.COMPLETED, WorkflowState.FAILED, WorkflowState.CANCELLED,
            WorkflowState.ROLLED_BACK, WorkflowState.ARCHIVED}


class CrashingStore:
    """A store that ends the process at a crash point (see the module docstring)."""

    _STARTED = {"TaskStarted"}
    _FINISHED = {"TaskCompleted", "TaskFailed", "TaskRetrying"}

    def __init__(self, inner: Any, spec: str) -> None:
        point, _, count = spec.partition(":")
        self._inner = inner
        self._point = point
        self._left = int(count) if count.isdigit() else 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _tick(self, passed: int) -> None:
        self._left -= passed
        if passed and self._left <= 0:
            os._exit(137)

    def _count(self, changes: Any, names: set[str]) -> int:
        return sum(1 for event in changes.events if type(event).__name__ in names)

    async def commit(self, instance_id: str, changes: Any) -> None:
        await self.commit_many([(instance_id, changes)])

    async def commit_many(self, batch: Any) -> None:
        """One transaction (the engine's group commit), seen as one commit."""
        point = self._point
        everything = [changes for _, changes in batch]
        if point == "before-commit":
            self._tick(1)
        elif point == "task-finished":
            self._tick(sum(self._count(c, self._FINISHED) for c in everything))
        await self._inner.commit_many(batch)
        if point == "after-commit":
            self._tick(1)
        elif point == "task-started":
            self._tick(sum(self._count(c, self._STARTED) for c in everything))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _resume(engine: dagflow.Engine, instance_id: str, patience: float) -> None:
    """``resume_workflow`` until the lease of a killed process has expired."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await engine.resume_workflow(instance_id)
            return
        except dagflow.WorkflowError as exc:
            if "cannot be resumed twice" not in str(exc) or time.monotonic() > deadline:
                raise
        await anyio.sleep(0.05)


async def _recover(engine: dagflow.Engine, instance_id: str, patience: float) -> None:
    """``recover()`` until it resumes ``instance_id`` (its old lease must expire first)."""
    deadline = time.monotonic() + patience
    while instance_id not in await engine.recover():
        if time.monotonic() > deadline:
            raise dagflow.WorkflowError(f"recover() did not pick up {instance_id}")
        await anyio.sleep(0.05)


async def _until_stopped(engine: dagflow.Engine, instance_id: str) -> Any:
    """The instance once it is final, or paused/stopped here."""
    while True:
        instance = await engine.wait(instance_id)
        if instance.state in TERMINAL or instance.state == WorkflowState.PAUSED:
            return instance
        await anyio.sleep(0.05)


async def main(args: dict[str, Any]) -> int:
    """Do what ``args`` says; the exit status of the process."""
    settings = dagflow.EngineSettings(lease_seconds=float(args.get("lease", 30.0)))
    instance_id = args["id"]
    patience = float(args.get("patience", 20.0))
    store: Any = dagflow._storage.open_storage(args["store"])
    if "crash_at" in args:
        store = CrashingStore(store, args["crash_at"])
    async with dagflow.Engine(store=store, settings=settings) as engine:
        mode = args["mode"]
        try:
            if mode == "run":
                definition = engine.load(args["workflow"])
                _say("STARTED")
                instance = await engine.run(definition, instance_id=instance_id)
            else:
                if mode == "resume":
                    await _resume(engine, instance_id, patience)
                elif mode == "recover":
                    await _recover(engine, instance_id, patience)
                else:
                    raise SystemExit(f"unknown mode {mode!r}")
                _say("STARTED")
                instance = await _until_stopped(engine, instance_id)
        except dagflow.WorkflowError as exc:
            _say(json.dumps({"refused": f"{type(exc).__name__}: {exc}"}))
            return 3
    _say(json.dumps({"state": str(instance.state), "error": instance.error}))
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, json.loads(sys.argv[1])))
