"""``Engine``: wires the seams together, owns the task group runs live in, and is the
WorkflowEngine of the seed (create, start, pause, resume, cancel, status, list, events)
plus ``run``, ``wait``, ``rollback`` and the plugin and task type registries."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

from ._approval.store import StoreApprovalSystem
from ._checkpoint import DefaultCheckpointManager
from ._clock import SystemClock
from ._context import Resources, TaskContext
from ._dag import DefaultDagBuilder
from ._durability import Durability
from ._errors import (
    InvalidStateTransition,
    Problem,
    StorageError,
    ValidationError,
    WorkflowError,
    WorkflowNotFound,
)
from ._execute import DefaultTaskExecutor, builtin_handlers
from ._execute.flow import PluginFunction, find_plugin
from ._expr import ExprError, UnresolvedVariables, resolve_variables
from ._gc import building
from ._interp import definition_refs
from ._models import (
    ExecutionContext,
    Loop,
    Plugin,
    StateTransition,
    Subworkflow,
    WorkflowDefinition,
    WorkflowFilters,
    WorkflowInstance,
    WorkflowState,
)
from ._parse import DefaultWorkflowParser
from ._protocols import (
    ApprovalSystem,
    CheckpointManager,
    Clock,
    ClusterClient,
    SecretProvider,
    StateMachine,
    TaskExecutor,
    TaskHandler,
    WorkflowParser,
    WorkflowStorage,
)
from ._run import Run
from ._serde import definition_hash, suggest
from ._settings import EngineSettings
from ._state import TERMINAL_STATES, DefaultStateMachine
from ._storage import open_storage
from ._stream import EventStream

__all__ = ["Engine", "EnvSecretProvider", "EventStream", "definition_hash"]

if TYPE_CHECKING:
    from ._approval.notify import Notifier, SmtpSettings

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


class Engine(Durability):
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
        parser: Validates definitions built in Python before they run.
        clock: Every wait goes through it (``dagflow.testing.FakeClock`` in tests).
        secrets: Where ``${secrets.NAME}`` come from (default: environment variables).
        plugins: ``{"name": async def handler(config, context)}`` for Plugin tasks.
        handlers: Task type name -> handler, replacing or adding to the built-ins.
        task_types: Custom task type name -> attrs config class (with ``handlers``).
        workflows: Definitions Subworkflow tasks may name, by id.
        workflow_dirs: Directories searched for ``<workflow_id>.yaml|.yml|.json``
            (besides the parent workflow file's directory).
        connections: Query connection name -> URL.
        cluster: Replaces the kubectl-based ClusterClient of Deploy and Scale tasks.
        notifiers: More notification channels (``async def notify(notification)``), on
            top of email and the webhook.
        smtp: Where emails go (``SmtpSettings``; default: ``$DAGFLOW_SMTP_*``).
        environ: The environment tasks start from and ``${env.X}`` reads (default: the
            process environment).
        settings: Engine-wide knobs (:class:`~dagflow.EngineSettings`).
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
        clock: Clock | None = None,
        secrets: SecretProvider | None = None,
        plugins: Mapping[str, PluginFunction] | None = None,
        handlers: Mapping[str, TaskHandler] | None = None,
        task_types: Mapping[str, type[Any]] | None = None,
        workflows: Iterable[WorkflowDefinition] | Mapping[str, WorkflowDefinition] = (),
        workflow_dirs: Iterable[str | os.PathLike[str]] = (),
        connections: Mapping[str, str] | None = None,
        cluster: ClusterClient | None = None,
        notifiers: Iterable[Notifier] = (),
        smtp: SmtpSettings | None = None,
        environ: Mapping[str, str] | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        # 'is None', not 'or': a host's component may be falsy (an empty cache's __len__)
        self.settings = settings if settings is not None else EngineSettings()
        self.clock = clock if clock is not None else SystemClock()
        key_text = self.settings.checkpoint_key or os.environ.get("DAGFLOW_CHECKPOINT_KEY")
        key = key_text.encode() if key_text else None
        self.store = open_storage(store, key=key) if isinstance(store, str) else store
        self.checkpoints = checkpoints if checkpoints is not None else (
            DefaultCheckpointManager(self.store, key, self.clock.now))
        #: who this engine is, for leases: host, process and a random part
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._crash_at = _crash_spec(os.environ.get("DAGFLOW_CRASH_AT", ""))
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.secrets = secrets if secrets is not None else EnvSecretProvider(self.environ)
        self.state_machine = (state_machine if state_machine is not None
                              else DefaultStateMachine(now=self.clock.now))
        self.approvals = approvals if approvals is not None else StoreApprovalSystem(
            self.store, self.clock, self.settings.approval_poll_seconds)
        self.plugins: dict[str, PluginFunction] = dict(plugins or {})
        self.task_types: dict[str, type[Any]] = dict(task_types or {})
        if hasattr(self.store, "task_types"):
            # the store reads definition snapshots, which may use our custom task types
            self.store.task_types = self.task_types
        if executor is None:
            executor = DefaultTaskExecutor(builtin_handlers(self.plugins),
                                           {cls: name for name, cls in self.task_types.items()})
            executor.handlers.update(handlers or {})
        elif handlers:
            raise ValueError("pass handlers to your own executor, not to Engine(handlers=)")
        self.executor = executor
        self._parser = parser
        self.workflows: dict[str, WorkflowDefinition] = (
            dict(workflows) if isinstance(workflows, Mapping)
            else {wf.id: wf for wf in workflows})
        self.workflow_dirs = [os.fspath(d) for d in workflow_dirs]
        self._http: Any = None
        self.resources = Resources(settings=self.settings, http_client=self._http_client,
                                   connections=dict(connections or {}), cluster=cluster)
        from ._approval.notify import EmailNotifier, SmtpSettings, WebhookNotifier

        self.smtp = smtp if smtp is not None else SmtpSettings.from_env(self.environ)
        self.notifiers: list[Any] = [
            WebhookNotifier(self._http_client,
                            attempts=self.settings.webhook_attempts,
                            backoff_seconds=self.settings.webhook_backoff_seconds),
            *([EmailNotifier(self.smtp)] if self.smtp is not None else []),
            *notifiers,
        ]
        self._runs: dict[str, Run] = {}
        self._done: dict[str, anyio.Event] = {}
        self._stack: AsyncExitStack | None = None
        self._tg: Any = None

    def __repr__(self) -> str:
        return f"<Engine store={type(self.store).__name__} running={len(self._runs)}>"

    def _crash_point(self, name: str) -> None:
        """For crash tests: ``DAGFLOW_CRASH_AT=name:n`` ends the process (exit 137, like
        SIGKILL: nothing is cleaned up) the n-th time the engine passes ``name``."""
        spec = self._crash_at
        if spec is not None and spec[0] == name:
            spec[1] -= 1
            if spec[1] <= 0:
                os._exit(137)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Engine:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            stack.push_async_callback(self._close)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        stack, self._stack = self._stack, None
        if self._tg is not None:
            self._tg.cancel_scope.cancel()  # background runs stop; they stay resumable
        self._tg = None
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

    def parser(self) -> WorkflowParser:
        """A parser that knows this engine's task types and plugins."""
        if self._parser is not None:
            return self._parser
        return DefaultWorkflowParser(task_types=self.task_types)

    def load(self, path: str | os.PathLike[str]) -> WorkflowDefinition:
        """Load a workflow file with this engine's custom task types."""
        from ._parse import load

        return load(path, task_types=self.task_types)

    def loads(self, text: str | bytes, *, format: Literal["yaml", "json"] = "yaml",
              filename: str | None = None) -> WorkflowDefinition:
        """Parse a workflow from text with this engine's custom task types."""
        from ._parse import loads

        return loads(text, format=format, filename=filename, task_types=self.task_types)

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
        self.parser().validate(definition)
        instance_id = instance_id or str(uuid.uuid4())
        names = {"id": definition.id, "name": definition.name, "instance_id": instance_id}
        problems: list[Problem] = []
        try:
            resolved = resolve_variables(definition.variables, variables or {}, self.environ,
                                         names)
        except UnresolvedVariables as exc:
            problems.append(Problem(exc.message, path=("variables",)))
            resolved = {}
        except ExprError as exc:
            problems.append(Problem(exc.message, path=("variables",)))
            resolved = {}
        environment: dict[str, str] = {}
        for ref in definition_refs(definition):
            if ref.kind == "var":
                head = ref.parts[0]
                if head in resolved:
                    continue
                if len(ref.parts) == 1 and head in self.environ:
                    environment[head] = self.environ[head]
                elif not problems:
                    problems.append(Problem(
                        f"'${{{ref.text}}}' is not a variable of this workflow nor an "
                        "environment variable (set it with --var NAME=VALUE)"
                        + suggest(head, resolved)))
            elif ref.kind == "env":
                name = ref.parts[0]
                if name in self.environ:
                    environment[name] = self.environ[name]
                else:
                    problems.append(Problem(
                        f"'${{{ref.text}}}': environment variable {name} is not set"))
            elif ref.kind == "secrets" and await self.secrets.get_secret(ref.parts[0]) is None:
                problems.append(Problem(f"'${{{ref.text}}}': no secret named "
                                        f"{ref.parts[0]!r} (set the environment variable "
                                        f"{ref.parts[0]} or pass Engine(secrets=...))"))
        base = os.fspath(workdir) if workdir is not None else self._workdir_of(definition)
        problems.extend(self._check_plugins(definition))
        problems.extend(self._check_subworkflows(definition, base, (definition.id,)))
        if problems:
            raise ValidationError(problems)
        now = self.clock.now()
        # the seed's first steps, Draft -> Validated -> Pending, happen in this call
        created = (StateTransition(S.DRAFT, S.VALIDATED, now, "validated"),
                   StateTransition(S.VALIDATED, S.PENDING, now, f"submitted by {user_id}"
                                   if user_id else "submitted"))
        instance = WorkflowInstance(
            id=instance_id, workflow_id=definition.id, definition=definition,
            state=S.PENDING, created_at=now, created_by=user_id,
            execution_context=ExecutionContext(resolved, {}, environment),
            workdir=base, definition_hash=definition_hash(definition), parent_id=parent_id,
            state_history=created,
        )
        with self.clock.busy():
            await self.store.store_workflow(instance)
        return instance

    def _workdir_of(self, definition: WorkflowDefinition) -> str:
        source = definition.source_path
        return os.path.dirname(source) if source else os.getcwd()

    def _check_plugins(self, definition: WorkflowDefinition) -> list[Problem]:
        out = []
        for i, task in enumerate(definition.tasks):
            kind = task.type.task_template.type if isinstance(task.type, Loop) else task.type
            if isinstance(kind, Plugin) and find_plugin(kind.plugin_name, self.plugins) is None:
                known = ", ".join(sorted(self.plugins)) or "none"
                out.append(Problem(
                    f"task {task.id!r}: unknown plugin {kind.plugin_name!r} (registered: "
                    f"{known}; also searched the 'dagflow.plugins' entry points)",
                    path=("tasks", i, "type", "plugin_name")))
        return out

    def find_workflow(self, workflow_id: str, base: str) -> WorkflowDefinition | None:
        """A subworkflow definition: registered, else a file in ``base`` or the workflow
        directories."""
        found = self.workflows.get(workflow_id)
        if found is not None:
            return found
        for directory in (base, *self.workflow_dirs):
            for ext in (".yaml", ".yml", ".json"):
                path = os.path.join(directory, workflow_id + ext)
                if os.path.isfile(path):
                    return self.load(path)
        return None

    def _check_subworkflows(self, definition: WorkflowDefinition, base: str,
                            chain: tuple[str, ...]) -> list[Problem]:
        out = []
        for i, task in enumerate(definition.tasks):
            kind = task.type.task_template.type if isinstance(task.type, Loop) else task.type
            if not isinstance(kind, Subworkflow) or "${" in kind.workflow_id:
                continue
            where = ("tasks", i, "type", "workflow_id")
            if kind.workflow_id in chain:
                loop = " -> ".join([*chain[chain.index(kind.workflow_id):], kind.workflow_id])
                out.append(Problem(f"subworkflow recursion: {loop}", path=where))
                continue
            try:
                child = self.find_workflow(kind.workflow_id, base)
            except WorkflowError as exc:
                out.append(Problem(f"subworkflow {kind.workflow_id!r} is invalid: {exc}",
                                   path=where))
                continue
            if child is None:
                dirs = ", ".join([base, *self.workflow_dirs])
                out.append(Problem(
                    f"task {task.id!r}: no workflow {kind.workflow_id!r} (registered with "
                    f"Engine(workflows=...) or as {kind.workflow_id}.yaml in {dirs})",
                    path=where))
                continue
            child_base = os.path.dirname(child.source_path or "") or base
            out.extend(self._check_subworkflows(child, child_base, (*chain, child.id)))
        return out

    # ------------------------------------------------------------------ running

    async def start_workflow(self, instance_id: str) -> None:
        """Start a Pending instance in the background (inside ``async with Engine()``).

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It is not Pending.
            RuntimeError: The engine is not entered (``async with``).
        """
        if self._tg is None:
            raise RuntimeError("start_workflow needs a running engine: use "
                               "'async with Engine(...) as engine:' (or await engine.run())")
        instance = await self._load(instance_id)
        if instance.state != S.PENDING:
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.RUNNING), instance_id=instance_id)
        await self._claim(instance_id)  # refused here, not later inside the task group
        run = await self._prepare(instance)
        await self._tg.start(self._drive_started, run, True)

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
        run = await self._prepare(instance)
        await self._drive(run, first_start=True)
        return await self._load(instance.id)

    async def _prepare(self, instance: WorkflowInstance, chain: tuple[str, ...] = ()) -> Run:
        secrets: dict[str, str] = {}
        for ref in definition_refs(instance.definition):
            if ref.kind == "secrets" and ref.parts[0] not in secrets:
                value = await self.secrets.get_secret(ref.parts[0])
                if value is not None:
                    secrets[ref.parts[0]] = value
        seq = await self.store.last_event_seq(instance.id) if instance.state != S.PENDING \
            else 0
        with building(len(instance.definition.tasks)):
            dag = DefaultDagBuilder().build_dag(instance.definition)
            return Run(self, instance, dag, secrets, instance.state, seq, chain)

    async def _drive_started(self, run: Run, first_start: bool, *,
                             task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        # registered before the caller goes on, so that its wait() waits for this run
        self._done.setdefault(run.instance_id, anyio.Event())
        task_status.started()
        try:
            await self._drive(run, first_start=first_start)
        except WorkflowError as exc:
            # nobody awaits a background run: say why it stopped, and keep the engine and
            # the other runs going (the instance stays as last recorded, recoverable)
            text = str(exc)
            logger.error("%s", text if run.instance_id in text
                         else f"instance {run.instance_id} stopped: {text}")
        except Exception:
            logger.exception("instance %s stopped by an unexpected error; it stays as last "
                             "recorded and recover() continues it", run.instance_id)
        finally:
            done = self._done.pop(run.instance_id, None)
            if done is not None:  # the run never got going (its lease was taken)
                done.set()

    async def _running_elsewhere(self, instance_id: str) -> bool:
        """Whether another process holds a live lease on the instance."""
        holder, until = await self.store.lease_of(instance_id)
        return holder is not None and holder != self.owner and until > time.time()

    async def _claim(self, instance_id: str) -> None:
        """Take the instance's lease, or explain who has it.

        Raises:
            WorkflowError: Another live process is running it.
        """
        with self.clock.busy():
            if await self.store.acquire_lease(instance_id, self.owner,
                                              self.settings.lease_seconds):
                return
            holder, until = await self.store.lease_of(instance_id)
        left = max(0.0, until - time.time())
        raise WorkflowError(
            f"instance {instance_id} is being run by {holder} (its lease runs for another "
            f"{left:.0f}s): it cannot be resumed twice; if that process died, try again "
            "once the lease has expired")

    async def _drive(self, run: Run, *, first_start: bool) -> None:
        instance_id = run.instance_id
        if instance_id in self._runs:
            raise InvalidStateTransition(from_state=str(run.state), to_state=str(S.RUNNING),
                                         instance_id=instance_id)
        await self._claim(instance_id)
        self._runs[instance_id] = run
        done = self._done.setdefault(instance_id, anyio.Event())
        try:
            await run.execute(first_start=first_start)
            if run.journal.error is not None:
                # nothing after the failed write was recorded: say so, don't report a state
                raise StorageError(f"instance {instance_id} stopped: the store refused a "
                                   f"write ({run.journal.error}); it stays as last recorded "
                                   "and can be recovered") from run.journal.error
        finally:
            del self._runs[instance_id]
            self._done.pop(instance_id, None)
            done.set()
            run.changed()
            with anyio.CancelScope(shield=True), self.clock.busy():
                try:
                    await self.store.release_lease(instance_id, self.owner)
                except Exception as exc:  # it expires by itself
                    logger.warning("instance %s: cannot release the lease: %s",
                                   instance_id, exc)

    async def _run_child(self, parent: Run, ctx: TaskContext, spec: Subworkflow,
                         chain: tuple[str, ...]) -> WorkflowInstance:
        """Run (or resume, or reuse) the child instance of a Subworkflow task attempt."""
        base = parent.instance.workdir or os.getcwd()
        definition = self.find_workflow(spec.workflow_id, base)
        if definition is None:
            from ._errors import TaskExecutionFailed

            raise TaskExecutionFailed(task_id=ctx.task_id, retryable=False, kind="not_found",
                                      reason=f"no workflow {spec.workflow_id!r}")
        stem = f"{parent.instance_id}.{ctx.task_id}"
        if ctx.loop_index is not None:
            stem += f".{ctx.loop_index}"
        child_id = stem if ctx.attempt == 1 else f"{stem}.a{ctx.attempt}"
        previous = f"{stem}.a{ctx.attempt - 1}" if ctx.attempt > 2 else stem
        # a child that was running when its parent crashed is adopted, not started again
        for candidate in ((previous, child_id) if ctx.attempt > 1 else (child_id,)):
            existing = await self.store.load_workflow(candidate)
            if existing is None:
                continue
            if existing.state in TERMINAL_STATES:
                if candidate == child_id:
                    return existing
                continue
            run = await self._prepare(existing, chain)
            await self._drive(run, first_start=False)
            return await self._load(candidate)
        child_base = os.path.dirname(definition.source_path or "") or base
        instance = await self.create_workflow(
            definition, parent.instance.created_by, dict(spec.inputs), workdir=child_base,
            instance_id=child_id, parent_id=parent.instance_id)
        run = await self._prepare(instance, chain)
        await self._drive(run, first_start=True)
        return await self._load(child_id)

    async def wait(self, instance_id: str, *, poll_seconds: float = 0.2) -> WorkflowInstance:
        """Wait until the instance stops running here (or, run elsewhere, reaches a final
        state) and return it."""
        done = self._done.get(instance_id)
        if done is not None:
            await done.wait()
            return await self._load(instance_id)
        while True:
            instance = await self._load(instance_id)
            if instance.state in TERMINAL_STATES or (
                    instance_id not in self._runs and instance.state in (S.PENDING, S.PAUSED)):
                return instance
            await anyio.sleep(poll_seconds)

    # ------------------------------------------------------------------ control

    def _live(self, instance_id: str) -> Run | None:
        return self._runs.get(instance_id)

    async def pause_workflow(self, instance_id: str) -> None:
        """Let running tasks finish and start nothing new.

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It is not running here.
        """
        run = self._live(instance_id)
        if run is None:
            instance = await self._load(instance_id)
            if instance.state in (S.RUNNING, S.WAITING_APPROVAL) and \
                    await self._running_elsewhere(instance_id):
                await self.store.request_control(instance_id, "pause", "paused by request")
                return
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.PAUSED), instance_id=instance_id)
        run.pause()
        await run.journal.durable(run.record())

    async def resume_workflow(self, instance_id: str) -> None:
        """Continue a Paused instance (here, or in the background if it paused elsewhere).

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It is not Paused.
        """
        run = self._live(instance_id)
        if run is not None:
            run.resume()
            await run.journal.durable(run.record())
            return
        instance = await self._load_trusted(instance_id)
        if instance.state == S.PAUSED and await self._running_elsewhere(instance_id):
            await self.store.request_control(instance_id, "resume", "resumed by request")
            return
        if instance.state not in (S.PAUSED, S.RUNNING, S.WAITING_APPROVAL):
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.RUNNING), instance_id=instance_id)
        if self._tg is None:
            raise RuntimeError("resume_workflow of a stored instance needs 'async with Engine'")
        # Paused: resumed by a person; Running/WaitingApproval: its process died
        await self._claim(instance_id)  # fail here, not in the background, if taken
        run = await self._prepare(instance)
        await self._tg.start(self._drive_started, run, False)

    async def cancel_workflow(self, instance_id: str, reason: str = "cancelled by user"
                              ) -> None:
        """Stop an instance promptly: running tasks are cancelled (process groups killed,
        requests aborted), ``all_done`` cleanup tasks still run.

        Raises:
            WorkflowNotFound: No instance has this id.
            InvalidStateTransition: It already finished.
        """
        run = self._live(instance_id)
        if run is not None:
            run.stop("cancelled", reason)
            return
        instance = await self._load(instance_id)
        if instance.state in TERMINAL_STATES:
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.CANCELLED), instance_id=instance_id)
        if await self._running_elsewhere(instance_id):
            await self.store.request_control(instance_id, "cancel", reason)
            return
        run = await self._prepare(instance)
        run.stopping, run.failure = "cancelled", reason
        await self._drive(run, first_start=False)

    async def interrupt_workflow(self, instance_id: str,
                                 reason: str = "interrupted") -> None:
        """Stop an instance running here so that it can be resumed: running tasks are
        stopped (process groups killed) and run again on resume; the instance is Paused.

        Raises:
            InvalidStateTransition: It is not running in this process.
        """
        run = self._live(instance_id)
        if run is None:
            instance = await self._load(instance_id)
            raise InvalidStateTransition(from_state=str(instance.state),
                                         to_state=str(S.PAUSED), instance_id=instance_id)
        run.interrupt(reason)

    # ------------------------------------------------------------------ reading

    async def _load(self, instance_id: str) -> WorkflowInstance:
        instance = await self.store.load_workflow(instance_id)
        if instance is None:
            raise WorkflowNotFound(instance_id=instance_id)
        return instance

    async def get_status(self, instance_id: str) -> WorkflowInstance:
        """The instance as last recorded.

        Raises:
            WorkflowNotFound: No instance has this id.
        """
        return await self._load(instance_id)

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
        return EventStream(self, instance_id, after, follow, poll_seconds)


def _only(group: BaseExceptionGroup[BaseException], raised: BaseException) -> bool:
    """Whether ``group`` holds ``raised`` and otherwise only cancellations."""
    cancelled = anyio.get_cancelled_exc_class()
    others = group.subgroup(lambda e: not isinstance(e, BaseExceptionGroup | cancelled)
                            and e is not raised)
    return others is None and group.subgroup(lambda e: e is raised) is not None


def _crash_spec(text: str) -> list[Any] | None:
    """``"task-finished:3"`` -> ``["task-finished", 3]`` (``None`` when unset)."""
    name, _, count = text.partition(":")
    if not name:
        return None
    return [name, int(count) if count.isdigit() else 1]
