"""``Engine``: chooses the seams (the host's, or the defaults), owns the task group runs
live in, and is the WorkflowEngine of the seed (create, start, pause, resume, cancel,
status, list, events) plus ``run``, ``wait``, ``recover``, ``retry``, ``rollback``,
``restore``, ``archive``, ``checkpoint`` and the plugin and task type registries.

The work is done in :mod:`dagflow._runtime`; a run there depends on the bundle of
services built here, never on the engine."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

from ._approval.store import DefaultApprovalSystem
from ._checkpoint import DefaultCheckpointManager
from ._clock import Clock, SystemClock
from ._context import Resources, TaskHandler
from ._dag import DefaultDagBuilder
from ._errors import InvalidStateTransition
from ._execute import DefaultTaskExecutor, builtin_handlers
from ._execute.plugin import PluginFunction
from ._models import (
    Checkpoint,
    WorkflowDefinition,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)
from ._parse import DefaultWorkflowParser
from ._protocols import (
    ApprovalSystem,
    CheckpointManager,
    ClusterClient,
    DagBuilder,
    SecretProvider,
    StateMachine,
    TaskExecutor,
    WorkflowParser,
    WorkflowStorage,
)
from ._runtime import _recovery
from ._runtime._create import Catalog, create_instance
from ._runtime._runner import Runner
from ._runtime._services import Services
from ._runtime._stream import EventStream
from ._settings import EngineSettings
from ._state import TERMINAL_STATES, DefaultStateMachine
from ._storage import MemoryStorage, open_storage
from ._storage.composed import ComposedStorage

__all__ = ["Engine", "EnvSecretProvider", "EventStream"]

if TYPE_CHECKING:
    from ._approval.notify import Notifier

logger = logging.getLogger("dagflow")
S = WorkflowState


@attrs.frozen
class EnvSecretProvider:
    """The default :class:`~dagflow.SecretProvider`: ``${secrets.NAME}`` is the environment
    variable ``NAME``."""

    environ: Mapping[str, str] = attrs.Factory(lambda: os.environ)

    async def get_secret(self, name: str) -> str | None:
        """The variable's value, or ``None``."""
        return self.environ.get(name)


class Engine:
    """Runs workflow instances; the default :class:`~dagflow.WorkflowEngine`.

    Use it as an async context manager; background runs (``start_workflow``) live in its
    task group, and leaving the block stops them (they stay resumable)::

        async with dagflow.Engine(store="memory://") as engine:
            instance = await engine.run(dagflow.load("deploy.yaml"))

    Args:
        store: A store URL (``memory://``, ``sqlite:///path.db``, ``postgresql://...``) or
            a :class:`~dagflow.WorkflowStorage`.
        executor: Replaces the :class:`~dagflow.TaskExecutor` (task handlers).
        checkpoints: Replaces the :class:`~dagflow.CheckpointManager`.
        approvals: Replaces the :class:`~dagflow.ApprovalSystem`.
        state_machine: Replaces the referee of state changes.
        parser: Reads workflow files (``engine.load``) and validates definitions built in
            Python before they run.
        dag_builder: Builds the graph each run is scheduled by.
        clock: Every wait goes through it (``dagflow.testing.FakeClock`` in tests).
        secrets: Where ``${secrets.NAME}`` come from (default: environment variables).
        plugins: ``{"name": async def handler(config, context)}`` for Plugin tasks.
        handlers: Task type name -> handler, replacing or adding to the built-ins.
        task_types: Custom task type name -> attrs config class (with ``handlers``).
        workflows: Definitions Subworkflow tasks may name, by id.
        cluster: Replaces the kubectl-based ClusterClient of Deploy and Scale tasks.
        notifiers: More notification channels (``async def notify(notification)``), on
            top of email and the webhook.
        environ: The environment tasks start from and ``${env.X}`` reads (default: the
            process environment).
        settings: The engine's configuration (:class:`~dagflow.EngineSettings`): limits,
            timeouts, leases, Query connections, subworkflow directories, SMTP.
    """

    def __init__(
        self,
        *,
        store: str | WorkflowStorage = "memory://",
        executor: TaskExecutor | None = None,
        checkpoints: CheckpointManager | None = None,
        approvals: ApprovalSystem | None = None,
        state_machine: StateMachine | None = None,
        parser: WorkflowParser | None = None,
        dag_builder: DagBuilder | None = None,
        clock: Clock | None = None,
        secrets: SecretProvider | None = None,
        plugins: Mapping[str, PluginFunction] | None = None,
        handlers: Mapping[str, TaskHandler] | None = None,
        task_types: Mapping[str, type[Any]] | None = None,
        workflows: Iterable[WorkflowDefinition] | Mapping[str, WorkflowDefinition] = (),
        cluster: ClusterClient | None = None,
        notifiers: Iterable[Notifier] = (),
        environ: Mapping[str, str] | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        # 'is None', not 'or': a host's component may be falsy (an empty cache's __len__)
        self.settings = settings if settings is not None else EngineSettings()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        key_text = self.settings.checkpoint_key or self.environ.get("DAGFLOW_CHECKPOINT_KEY")
        key = key_text.encode() if key_text else None
        self.store: WorkflowStorage = (open_storage(store, key=key) if isinstance(store, str)
                                       else store)
        self.checkpoints: CheckpointManager = checkpoints if checkpoints is not None else (
            DefaultCheckpointManager(self.store, key=key, now=self.clock.now))
        #: who this engine is, for leases: host, process and a random part
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.secrets: SecretProvider = (secrets if secrets is not None
                                        else EnvSecretProvider(self.environ))
        self.state_machine: StateMachine = (state_machine if state_machine is not None
                                            else DefaultStateMachine(now=self.clock.now))
        self.dag_builder: DagBuilder = (dag_builder if dag_builder is not None
                                        else DefaultDagBuilder())
        self.approvals: ApprovalSystem = approvals if approvals is not None else (
            DefaultApprovalSystem(self.store, clock=self.clock,
                                  poll_seconds=self.settings.approval_poll_seconds))
        self.plugins: dict[str, PluginFunction] = dict(plugins or {})
        self.task_types: dict[str, type[Any]] = dict(task_types or {})
        parts = (self.store if isinstance(self.store, ComposedStorage)
                 else ComposedStorage(self.store))
        if hasattr(parts.instances, "task_types"):
            # the store reads definition snapshots, which may use our custom task types
            parts.instances.task_types = self.task_types
        if executor is None:
            executor = DefaultTaskExecutor(builtin_handlers(self.plugins),
                                           {cls: name for name, cls in self.task_types.items()})
            executor.handlers.update(handlers or {})
        elif handlers:
            raise ValueError("pass handlers to your own executor, not to Engine(handlers=)")
        self.executor: TaskExecutor = executor
        #: reads files and validates definitions (the host's, or one that knows this
        #: engine's task types)
        self.parser: WorkflowParser = (parser if parser is not None
                                       else DefaultWorkflowParser(task_types=self.task_types))
        self.workflows: dict[str, WorkflowDefinition] = (
            dict(workflows) if isinstance(workflows, Mapping)
            else {wf.id: wf for wf in workflows})
        self.workflow_dirs = list(self.settings.workflow_dirs)
        self._http: Any = None
        self.resources = Resources(settings=self.settings, http_client=self._http_client,
                                   connections=dict(self.settings.connections), cluster=cluster)
        from ._approval.notify import EmailNotifier, SmtpSettings, WebhookNotifier

        self.smtp = (self.settings.smtp if self.settings.smtp is not None
                     else SmtpSettings.from_env(self.environ))
        self.notifiers: list[Notifier] = [
            WebhookNotifier(self._http_client,
                            attempts=self.settings.webhook_attempts,
                            backoff_seconds=self.settings.webhook_backoff_seconds,
                            sleep=self.clock.sleep),
            *([EmailNotifier(self.smtp)] if self.smtp is not None else []),
            *notifiers,
        ]
        services = Services(
            instances=parts.instances, leases=parts.leases, controls=parts.controls,
            checkpoints=self.checkpoints, approvals=self.approvals, executor=self.executor,
            state_machine=self.state_machine, dag_builder=self.dag_builder, clock=self.clock,
            secrets=self.secrets, settings=self.settings, environ=self.environ,
            resources=self.resources, notifiers=self.notifiers, smtp=self.smtp,
            # only the plain memory store is known to lose everything at a crash anyway
            owner=self.owner, durable=type(parts.instances) is not MemoryStorage)
        catalog = Catalog(self.parser, parser is None, self.workflows, self.workflow_dirs,
                          self.plugins)
        self._runner = Runner(services, catalog)
        self._stack: AsyncExitStack | None = None

    def __repr__(self) -> str:
        return f"<Engine store={type(self.store).__name__} running={len(self._runner.runs)}>"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.push_async_callback(self._close)
            self._runner.enter(await stack.enter_async_context(anyio.create_task_group()))
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        if self._runner.tg is not None:
            self._runner.tg.cancel_scope.cancel()  # background runs stop; they stay resumable
        self._runner.tg = None
        if stack is None:
            return None
        raised = exc_info[1]
        try:
            return await stack.__aexit__(*exc_info)
        except BaseExceptionGroup as group:
            # the task group wraps what the block raised: give the caller its own
            # exception back, so that 'except ValidationError' around the block works
            if raised is not None and _only(group, raised):
                raise raised from None
            raise

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._http is not None:
                await self._http.aclose()
                self._http = None
            await self.store.close()

    async def _http_client(self) -> Any:
        if self._http is None:
            from ._execute._egress import make_http_client

            self._http = make_http_client(self.settings)
        return self._http

    # ------------------------------------------------------------------ registries

    def register_plugin(self, name: str, handler: PluginFunction) -> None:
        """Make ``handler`` the Plugin task ``plugin_name: name``."""
        self.plugins[name] = handler

    def register_task_type(self, name: str, config: type[Any], handler: TaskHandler) -> None:
        """Add a task type: files write ``type: {type: name, ...}`` with ``config``'s fields.

        Args:
            name: The ``type:`` tag.
            config: An attrs class; its fields are the task's settings, parsed and
                validated like the built-ins.
            handler: Runs it (``async def __call__(self, ctx)``).
        """
        if not attrs.has(config):
            raise TypeError(f"{config!r} is not an attrs class")
        handlers = getattr(self.executor, "handlers", None)
        if handlers is None:
            raise TypeError(f"{type(self.executor).__name__} has no handlers mapping: "
                            "register the type with your executor itself")
        self.task_types[name] = config
        handlers[name] = handler
        names = getattr(self.executor, "type_names", None)
        if names is not None:  # the class stays as it is: another engine may name it too
            names[config] = name

    def load(self, path: str | os.PathLike[str]) -> WorkflowDefinition:
        """Load a workflow file with this engine's parser (which knows its task types)."""
        return self._runner.catalog.load(path)

    def loads(self, text: str | bytes, *, format: Literal["yaml", "json"] = "yaml",
              filename: str | None = None) -> WorkflowDefinition:
        """Parse a workflow from text with this engine's parser."""
        return self._runner.catalog.loads(text, format=format, filename=filename)

    def find_workflow(self, workflow_id: str, base: str) -> WorkflowDefinition | None:
        """A subworkflow definition: registered, else a file in ``base`` or the workflow
        directories."""
        return self._runner.catalog.find_workflow(workflow_id, base)

    # ------------------------------------------------------------------ creating

    async def create_workflow(
        self,
        definition: WorkflowDefinition,
        user_id: str = "",
        variables: Mapping[str, Any] | None = None,
        *,
        workdir: str | os.PathLike[str] | None = None,
        instance_id: str | None = None,
        parent_id: str | None = None,
    ) -> WorkflowInstance:
        """Validate ``definition``, resolve its variables, and store a Pending instance.

        Everything that can be checked before running is: references to unknown variables,
        environment variables and secrets, unknown plugins, subworkflows that cannot be
        found or that recurse.

        Args:
            definition: The workflow (``dagflow.load(...)``).
            user_id: Who starts it (recorded; may not approve its own gates).
            variables: Run-time variables; they win over the file's and the environment.
            workdir: Where Command tasks run (default: the workflow file's directory).
            instance_id: Choose the id (default: a random UUID).
            parent_id: The instance this one is a subworkflow of.

        Raises:
            ValidationError: Listing every problem found.
        """
        runner = self._runner
        return await create_instance(runner.services, runner.catalog, definition, user_id,
                                     variables, workdir=workdir, instance_id=instance_id,
                                     parent_id=parent_id)

    # ------------------------------------------------------------------ running

    async def start_workflow(self, instance_id: str) -> None:
        """Start a Pending instance in the background (inside ``async with Engine()``).

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It is not Pending.
            RuntimeError: The engine is not entered (``async with``).
        """
        runner = self._runner
        if runner.tg is None:
            raise RuntimeError("start_workflow needs a running engine: use "
                               "'async with Engine(...) as engine:' (or await engine.run())")
        instance = await runner.load(instance_id)
        if instance.state != S.PENDING:
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.RUNNING), instance_id=instance_id)
        await runner.claim(instance_id)  # refused here, not later inside the task group
        await runner.start(await runner.prepare(instance), True, claimed=True)

    async def run(
        self,
        definition: WorkflowDefinition,
        variables: Mapping[str, Any] | None = None,
        user_id: str = "",
        *,
        workdir: str | os.PathLike[str] | None = None,
        instance_id: str | None = None,
    ) -> WorkflowInstance:
        """Create an instance and run it to the end; return it (Completed, Failed,
        Cancelled or RolledBack). Works with or without ``async with``.

        Raises:
            ValidationError: The definition or its variables are wrong (nothing ran).
        """
        instance = await self.create_workflow(definition, user_id, variables,
                                              workdir=workdir, instance_id=instance_id)
        runner = self._runner
        await runner.drive(await runner.prepare(instance), first_start=True)
        return await runner.load(instance.id)

    async def wait(self, instance_id: str, *, poll_seconds: float = 0.2) -> WorkflowInstance:
        """Wait until the instance stops running here (or, run elsewhere, reaches a final
        state) and return it."""
        return await self._runner.wait(instance_id, poll_seconds=poll_seconds)

    # ------------------------------------------------------------------ control

    async def pause_workflow(self, instance_id: str) -> None:
        """Let running tasks finish and start nothing new.

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It is not running here.
        """
        runner = self._runner
        run = runner.runs.get(instance_id)
        if run is None:
            instance = await runner.load(instance_id)
            if instance.state in (S.RUNNING, S.WAITING_APPROVAL) and \
                    await runner.running_elsewhere(instance_id):
                await runner.services.controls.request_control(instance_id, "pause",
                                                               "paused by request")
                return
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.PAUSED), instance_id=instance_id)
        run.pause()
        await run.book.flushed()

    async def resume_workflow(self, instance_id: str) -> None:
        """Continue a Paused instance (here, or in the background if it paused elsewhere).

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It is not Paused.
        """
        runner = self._runner
        run = runner.runs.get(instance_id)
        if run is not None:
            run.resume()
            await run.book.flushed()
            return
        instance = await runner.load_trusted(instance_id)
        if instance.state == S.PAUSED and await runner.running_elsewhere(instance_id):
            await runner.services.controls.request_control(instance_id, "resume",
                                                           "resumed by request")
            return
        if instance.state not in (S.PAUSED, S.RUNNING, S.WAITING_APPROVAL):
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.RUNNING), instance_id=instance_id)
        if runner.tg is None:
            raise RuntimeError("resume_workflow of a stored instance needs 'async with Engine'")
        # Paused: resumed by a person; Running/WaitingApproval: its process died
        await runner.claim(instance_id)  # fail here, not in the background, if taken
        await runner.start(await runner.prepare(instance), False, claimed=True)

    async def cancel_workflow(self, instance_id: str, reason: str = "cancelled by user"
                              ) -> None:
        """Stop an instance promptly: running tasks are cancelled (process groups killed,
        requests aborted), ``all_done`` cleanup tasks still run.

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It already finished.
        """
        runner = self._runner
        run = runner.runs.get(instance_id)
        if run is not None:
            run.stop("cancelled", reason)
            return
        instance = await runner.load(instance_id)
        if instance.state in TERMINAL_STATES:
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.CANCELLED), instance_id=instance_id)
        if await runner.running_elsewhere(instance_id):
            await runner.services.controls.request_control(instance_id, "cancel", reason)
            return
        await runner.cancel_stopped(instance, reason)

    async def interrupt_workflow(self, instance_id: str,
                                 reason: str = "interrupted") -> None:
        """Stop an instance running here so that it can be resumed: running tasks are
        stopped (process groups killed) and run again on resume; the instance is Paused.

        Raises:
            InvalidStateTransition: It is not running in this process.
        """
        run = self._runner.runs.get(instance_id)
        if run is None:
            instance = await self._runner.load(instance_id)
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.PAUSED), instance_id=instance_id)
        run.interrupt(reason)

    # ------------------------------------------------------------------ durability

    async def recover(self) -> list[str]:
        """Resume, in the background, every instance that was running when its process
        died (state Running or WaitingApproval, no live lease). Completed tasks are never
        run again; tasks that were running run again, their attempts counted.

        Returns:
            The ids of the instances resumed.

        Raises:
            RuntimeError: The engine is not entered (``async with``).
        """
        return await _recovery.recover(self._runner)

    async def retry(self, instance_id: str, *, from_task: str | None = None
                    ) -> WorkflowInstance:
        """Run a Failed or Cancelled instance again under the same id, with the definition
        it started with: failed, cancelled and never-run tasks run again (or ``from_task``
        and everything downstream of it); completed outputs are reused, and inside a Loop
        only the iterations that did not complete run again.

        Raises:
            InvalidStateTransition: It is not Failed or Cancelled.
            ValidationError: ``from_task`` names no task.
        """
        return await _recovery.retry(self._runner, instance_id, from_task)

    async def rollback(self, instance_id: str) -> WorkflowInstance:
        """Undo a Failed or Cancelled instance's completed tasks, newest first.

        Raises:
            InvalidStateTransition: The instance is not Failed or Cancelled.
            WorkflowError: ``config.enable_rollback`` is false.
        """
        return await _recovery.rollback_instance(self._runner, instance_id)

    async def restore(self, instance_id: str, checkpoint_id: str) -> WorkflowInstance:
        """Rewind an instance that is not running to an earlier checkpoint and run it on
        from there (tasks finished after the checkpoint run again).

        Raises:
            CheckpointError: The checkpoint is missing, corrupt or of another instance.
            InvalidStateTransition: The instance is Completed or Archived, or running.
        """
        return await _recovery.restore(self._runner, instance_id, checkpoint_id)

    async def checkpoint(self, instance_id: str) -> Checkpoint:
        """Write a checkpoint of the instance now (on demand) and return it."""
        return await _recovery.checkpoint(self._runner, instance_id)

    async def archive(self, *, older_than: dt.timedelta) -> list[str]:
        """Move Completed instances that ended more than ``older_than`` ago to Archived,
        deleting their checkpoints.

        Returns:
            The ids archived.
        """
        return await _recovery.archive(self._runner, older_than)

    # ------------------------------------------------------------------ reading

    async def get_status(self, instance_id: str) -> WorkflowInstance:
        """The instance as last recorded.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        return await self._runner.load(instance_id)

    async def list_workflows(self, filters: WorkflowFilters | None = None
                             ) -> list[WorkflowInstance]:
        """Instances matching ``filters``, newest first."""
        return await self.store.list_workflows(filters or WorkflowFilters())

    def stream_events(self, instance_id: str, *, after: int = 0, follow: bool = True,
                      poll_seconds: float = 0.2) -> EventStream:
        """Events with ``seq > after``: the recorded history, then live ones as they are
        committed, until the instance reaches a final state (``follow=False``: history
        only). Nothing is skipped or repeated; a slow reader never slows the run.

        Use it with ``async for``; breaking out early is fine (nothing needs closing).

        Raises:
            WorkflowNotFound: (on the first iteration) no instance has this id.
        """
        return EventStream(self.store, self._runner.waiter, instance_id, after, follow,
                           poll_seconds)


def _only(group: BaseExceptionGroup[BaseException], raised: BaseException) -> bool:
    """Whether ``group`` holds ``raised`` and otherwise only cancellations."""
    cancelled = anyio.get_cancelled_exc_class()
    others = group.subgroup(lambda e: not isinstance(e, BaseExceptionGroup | cancelled)
                            and e is not raised)
    return others is None and group.subgroup(lambda e: e is raised) is not None
