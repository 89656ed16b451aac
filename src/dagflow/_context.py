"""What a task handler gets for one attempt: :class:`TaskContext`, and the shared
:class:`Resources` (HTTP client, database connections, cluster client, settings); and the
two seams a handler deals with, :class:`TaskHandler` and :class:`ClusterClient`."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ._clock import Clock, SystemClock
from ._models import TaskDefinition, TaskOutput
from ._settings import EngineSettings

if TYPE_CHECKING:
    import httpx

__all__ = ["REDACTED", "ClusterClient", "Redactor", "Resources", "TaskContext", "TaskHandler"]

REDACTED = "***"


class Redactor:
    """Replaces every known secret value by ``***`` in text and nested data.

    Secrets are added as ``${secrets.NAME}`` references resolve; their JSON-escaped form
    is redacted too, so a secret inside a JSON document is caught.
    """

    __slots__ = ("_needles",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._needles: list[str] = []
        for value in secrets:
            self.add(value)

    def __repr__(self) -> str:
        return f"<Redactor secrets={len(self._needles)}>"

    def __bool__(self) -> bool:
        return bool(self._needles)

    def add(self, secret: str) -> None:
        """Start redacting ``secret`` (empty strings are ignored)."""
        if not secret:
            return
        forms = {secret, json.dumps(secret)[1:-1]}
        for form in forms:
            if form and form not in self._needles:
                self._needles.append(form)
        # longest first, so a secret that contains another is replaced whole
        self._needles.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        """``value`` with every secret replaced."""
        for needle in self._needles:
            if needle in value:
                value = value.replace(needle, REDACTED)
        return value

    def data(self, value: Any) -> Any:
        """``value`` (strings, lists, mappings) with every secret replaced in strings."""
        if not self._needles:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


@runtime_checkable
class ClusterClient(Protocol):
    """What Deploy and Scale tasks do to a cluster (default: the kubectl command).

    Values arrive validated (Kubernetes names) and are passed as single ``--flag=value``
    arguments, never as options of their own.
    """

    async def apply(self, manifest: str, namespace: str, *, dry_run: bool,
                    cwd: str) -> dict[str, Any]:
        """Apply ``manifest``; return what undoing it needs (JSON-ready). An ``"output"``
        key, if present, is what the tool printed: it becomes the task's stdout and is
        not kept in the undo record."""
        ...

    async def undo_apply(self, manifest: str, namespace: str, record: Mapping[str, Any], *,
                         cwd: str) -> None:
        """Undo an :meth:`apply` given the record it returned."""
        ...

    async def get_replicas(self, resource: str, namespace: str) -> int | None:
        """The resource's current replica count (``None`` if it does not exist)."""
        ...

    async def scale(self, resource: str, namespace: str, replicas: int) -> None:
        """Set the replica count."""
        ...


async def _no_http_client() -> httpx.AsyncClient:
    raise RuntimeError("no HTTP client: run Http tasks through dagflow.Engine")


@attrs.frozen
class Resources:
    """What the engine shares between task attempts.

    Attributes:
        settings: The engine's settings.
        http_client: Returns the engine's one shared ``httpx.AsyncClient`` (created on
            first use), which enforces the egress policy.
        connections: Query connection names -> URLs (``sqlite:///x.db``,
            ``postgresql://...``).
        cluster: The client Deploy and Scale use (``None``: kubectl from settings).
    """

    settings: EngineSettings = attrs.Factory(EngineSettings)
    http_client: Callable[[], Awaitable[httpx.AsyncClient]] = _no_http_client
    connections: Mapping[str, str] = attrs.Factory(dict)
    cluster: ClusterClient | None = None


_DEFAULT_RESOURCES = Resources()


@attrs.frozen(kw_only=True)
class TaskContext:
    """Everything one attempt of one task may use.

    Attributes:
        task_id: The task's id (for a Loop iteration, the Loop task's id).
        instance_id: The workflow instance.
        workflow_id: The workflow definition's id.
        task: The task as written in the file (for a Loop iteration, its template).
        spec: The task's type with every ``${...}`` replaced: what to run.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        variables: The instance's resolved variables.
        workdir: The default working directory (the workflow file's directory).
        environ: The environment subprocesses start from.
        loop_index: The iteration number inside a Loop, else ``None``.
        item: The iteration's item inside a Loop.
        idempotency_key: The same for every attempt of this task (and iteration) of this
            instance, also after recovery; Http tasks send it as ``Idempotency-Key``.
        clock: The engine's clock; wait through it (``await ctx.clock.sleep(5)``).
        redactor: Replaces secrets by ``***``; applied to outputs by the engine too.
        on_line: Called with ``(stream, line)`` for every output line when the task has
            ``stream_output: true``; ``None`` otherwise.
        resources: Shared clients and settings.
    """

    task_id: str
    spec: Any
    instance_id: str = ""
    workflow_id: str = ""
    task: TaskDefinition | None = None
    attempt: int = 1
    variables: Mapping[str, Any] = attrs.Factory(dict)
    workdir: str = "."
    environ: Mapping[str, str] = attrs.Factory(lambda: dict(os.environ))
    loop_index: int | None = None
    item: Any = None
    idempotency_key: str = ""
    clock: Clock = attrs.Factory(SystemClock)
    redactor: Redactor = attrs.Factory(Redactor)
    on_line: Callable[[str, str], Awaitable[None]] | None = None
    resources: Resources = _DEFAULT_RESOURCES

    @property
    def settings(self) -> EngineSettings:
        """Shortcut for ``resources.settings``."""
        return self.resources.settings


@runtime_checkable
class TaskHandler(Protocol):
    """Runs one task type. Register with ``Engine(handlers={"Name": handler})``.

    Return a :class:`~dagflow.TaskOutput`, a mapping (it becomes the output's ``data``)
    or ``None``; raise :class:`~dagflow.TaskExecutionFailed` (or anything) to fail the
    attempt. A handler with ``busy = False`` only waits on the engine's clock; every
    other handler counts as doing real work, during which a test's FakeClock does not
    jump ahead.
    """

    async def __call__(self, ctx: TaskContext) -> TaskOutput | Mapping[str, Any] | None:
        """Run one attempt."""
        ...
