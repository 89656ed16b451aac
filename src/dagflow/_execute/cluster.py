"""Deploy and Scale: their task handlers, their undo steps, and the kubectl ClusterClient.

Both task types act on a cluster through a :class:`~dagflow.ClusterClient`: the host's own
(``Resources.cluster``) or, by default, :class:`KubectlClient`, which runs the ``kubectl``
named by ``EngineSettings.kubectl`` with an argv list, never through a shell.

Values never turn into options (CONTRACT §4; GitPython CVE-2022-24439). A namespace, a
resource or a manifest path may come from ``${...}``, which the parser cannot check, so the
handlers check them after interpolation and the client checks them again before kubectl runs.
Each value travels inside one ``--flag=value`` argument. Names that kubectl itself printed
are checked the same way before they are passed back to it.

Rollback needs no ``rollback:`` for these types. :func:`undo_scale` restores the previous
replica count, and :func:`undo_deploy` deletes what the Deploy created and rolls back the
workloads it changed. :meth:`KubectlClient.apply` says what is left as it was.

There is no Kubernetes cluster in the test suite. The tests put a stand-in ``kubectl``
(``tests/execute/bin/kubectl``) first on PATH. It records its argv (one JSON line per call in
``$KUBECTL_LOG``) and prints canned answers, so the tests check exactly which arguments
reach kubectl, but not how a real API server answers them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio
import attrs

from .._context import Redactor, TaskContext
from .._errors import TaskExecutionFailed
from .._models import Deploy, Scale, TaskOutput

if TYPE_CHECKING:
    from .._protocols import ClusterClient

__all__ = [
    "DeployHandler",
    "KubectlClient",
    "ScaleHandler",
    "cluster_client",
    "undo_deploy",
    "undo_scale",
]

# The same rules as the parser's (_parse/_validate.py), which skips values with ${...} in them.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_RESOURCE = re.compile(r"(?:[a-z0-9][a-z0-9.-]*/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_REVISION = re.compile(r"[0-9]{1,18}")
_ROLLOUT_KINDS = {"deployment", "daemonset", "statefulset"}
_ROLLOUT_GROUPS = {"", "apps", "extensions"}  # a CRD called "deployment.example.com" is not one
_REVISION_PATH = r"jsonpath={.metadata.annotations.deployment\.kubernetes\.io/revision}"
_TAIL_CHARS = 2000

_T = TypeVar("_T")


def _refuse(what: str, value: object, rule: str) -> TaskExecutionFailed:
    return TaskExecutionFailed(reason=f"refusing {what} {value!r}: {rule}", retryable=False,
                               kind="invalid_value")


def _check_namespace(namespace: object) -> str:
    """``namespace`` if it is a Kubernetes DNS label, else raise ``invalid_value``."""
    if isinstance(namespace, str) and len(namespace) <= 63 and _NAMESPACE.fullmatch(namespace):
        return namespace
    raise _refuse("namespace", namespace, "not a Kubernetes name (lowercase letters, digits "
                  "and '-', at most 63)")


def _check_resource(resource: object) -> str:
    """``resource`` if it looks like ``deployment/app`` or ``app``, else raise."""
    if isinstance(resource, str) and len(resource) <= 253 and _RESOURCE.fullmatch(resource):
        return resource
    raise _refuse("resource", resource, "not a Kubernetes resource name (like 'deployment/app')")


def _check_manifest(manifest: object) -> str:
    """``manifest`` if it is a path that kubectl cannot read as an option or as stdin."""
    if isinstance(manifest, str) and manifest and not manifest.startswith("-") \
            and "\0" not in manifest:
        return manifest
    raise _refuse("manifest", manifest, "a manifest path must be non-empty and must not start "
                  "with '-'")


def _check_count(value: object, what: str = "replica count") -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _refuse(what, value, "must be a whole number >= 0")


def _names(text: str) -> list[str]:
    """The object names in ``kubectl ... --output=name`` output (``deployment.apps/app``)."""
    return [line.strip() for line in text.splitlines() if _RESOURCE.fullmatch(line.strip())]


def _applied(text: str) -> list[tuple[str, str]]:
    """``(name, operation)`` per ``deployment.apps/app configured`` line of kubectl apply."""
    pairs = []
    for line in text.splitlines():
        parts = line.split()
        if parts and _RESOURCE.fullmatch(parts[0]):
            pairs.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return pairs


def _kind(name: str) -> tuple[str, str]:
    """``("deployment", "apps")`` for ``deployment.apps/app``."""
    kind, _, group = name.partition("/")[0].partition(".")
    return kind, group


def _rollout_capable(name: str) -> bool:
    kind, group = _kind(name)
    return kind in _ROLLOUT_KINDS and group in _ROLLOUT_GROUPS


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]


@attrs.frozen
class KubectlClient:
    """The default :class:`~dagflow.ClusterClient`: runs ``kubectl`` as a subprocess.

    Every value is one ``--flag=value`` argument and is checked against Kubernetes name
    rules first (``invalid_value``, not retryable). A non-zero exit raises
    :class:`~dagflow.TaskExecutionFailed` of kind ``cluster`` (retryable) with the end of
    stderr; a kubectl that cannot be found or started raises kind ``kubectl_not_found``
    (not retryable).

    Attributes:
        kubectl: The executable: a path, or a name looked up on ``environ["PATH"]``.
        environ: kubectl's environment (``KUBECONFIG``, ``PATH`` ...); ``None`` inherits
            this process's.
    """

    kubectl: str = "kubectl"
    environ: Mapping[str, str] | None = None

    async def apply(self, manifest: str, namespace: str, *, dry_run: bool,
                    cwd: str) -> dict[str, Any]:
        """Apply ``manifest`` to ``namespace`` and return what undoing it needs.

        With ``dry_run`` this runs ``kubectl apply --dry-run=server``, which changes nothing
        and returns only ``{"output": ...}``. Otherwise it first lists which objects of the
        manifest exist, and the revision of each existing Deployment. Then it applies the
        manifest and sorts every object kubectl reports into the record:

        - ``delete``: objects kubectl reports ``created`` that did not exist before; undo
          deletes them.
        - ``rollout_undo``: existing Deployments, DaemonSets and StatefulSets that kubectl
          reports ``configured``, as ``{"name": ..., "to_revision": ...}``. For a
          Deployment this is the revision it had before, so undo returns to exactly that
          revision and running it twice does no harm. DaemonSets and StatefulSets have
          ``None``, which means "the previous revision". That is one step too far if the
          apply did not change their pod template, and a second run rolls forward again.
        - ``not_undone``: objects changed in ways that undo cannot reverse, which it leaves
          as they are: existing objects with no rollout history (Services, ConfigMaps ...),
          and objects that appeared between the listing and the apply.
        - ``unchanged``: objects kubectl reports ``unchanged``. Undo has nothing to do.

        The record also has ``namespace`` and ``output`` (kubectl's stdout, which
        :class:`DeployHandler` turns into the task's stdout). If the apply fails halfway,
        nothing is recorded and the objects already applied stay.

        Args:
            manifest: A file or directory path for ``--filename`` (relative to ``cwd``).
            namespace: The namespace for ``--namespace``.
            dry_run: Ask the API server to check the manifest without applying it.
            cwd: The directory kubectl runs in.

        Returns:
            The record described above, JSON-ready.

        Raises:
            TaskExecutionFailed: A value was refused, or kubectl failed.
        """
        target = [f"--filename={_check_manifest(manifest)}",
                  f"--namespace={_check_namespace(namespace)}"]
        if dry_run:
            return {"output": await self._run(["apply", *target, "--dry-run=server"], cwd=cwd)}
        existed = set(_names(await self._run(
            ["get", *target, "--output=name", "--ignore-not-found"], cwd=cwd)))
        revisions = {name: await self._revision(name, namespace, cwd)
                     for name in sorted(existed) if _kind(name)[0] == "deployment"
                     and _rollout_capable(name)}
        output = await self._run(["apply", *target], cwd=cwd)
        record: dict[str, Any] = {"namespace": namespace, "delete": [], "rollout_undo": [],
                                  "not_undone": [], "unchanged": [], "output": output}
        for name, operation in _applied(output):
            if operation == "unchanged":
                record["unchanged"].append(name)
            elif name not in existed and operation == "created":
                record["delete"].append(name)
            elif name in existed and operation == "configured" and _rollout_capable(name):
                record["rollout_undo"].append({"name": name, "to_revision": revisions.get(name)})
            else:
                record["not_undone"].append(name)
        return record

    async def undo_apply(self, manifest: str, namespace: str, record: Mapping[str, Any], *,
                         cwd: str) -> None:
        """Undo an :meth:`apply`: delete what it created, roll back what it changed.

        Deletion comes first because ``--ignore-not-found`` makes it safe to repeat.
        ``not_undone`` and ``unchanged`` objects are left as they are. Every name in the
        record is checked again, because the record comes back from storage.

        Args:
            manifest: The manifest given to :meth:`apply` (not read again).
            namespace: The namespace given to :meth:`apply`.
            record: What :meth:`apply` returned.
            cwd: The directory kubectl runs in.

        Raises:
            TaskExecutionFailed: The record is malformed (``cannot_undo``), a name in it
                was refused, or kubectl failed.
        """
        ns = f"--namespace={_check_namespace(namespace)}"
        names = [_check_resource(name) for name in _list(record, "delete")]
        rollbacks = _list(record, "rollout_undo")
        if not all(isinstance(entry, Mapping) for entry in rollbacks):
            raise _malformed("rollout_undo", rollbacks)
        if names:
            await self._run(["delete", *names, ns, "--ignore-not-found"], cwd=cwd)
        for entry in rollbacks:
            args = ["rollout", "undo", _check_resource(entry.get("name")), ns]
            revision = entry.get("to_revision")
            if revision is not None:
                args.append(f"--to-revision={_check_count(revision, 'revision')}")
            await self._run(args, cwd=cwd)

    async def get_replicas(self, resource: str, namespace: str) -> int | None:
        """The replica count of ``resource``, or ``None`` if it does not exist.

        Raises:
            TaskExecutionFailed: A value was refused, kubectl failed, or it printed
                something that is not a number.
        """
        text = (await self._run(
            ["get", _check_resource(resource), f"--namespace={_check_namespace(namespace)}",
             "--output=jsonpath={.spec.replicas}", "--ignore-not-found"])).strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise TaskExecutionFailed(
                reason=f"kubectl printed {text[:80]!r} as the replica count of {resource}",
                retryable=False, kind="cluster") from None

    async def scale(self, resource: str, namespace: str, replicas: int) -> None:
        """Set the replica count of ``resource``.

        Raises:
            TaskExecutionFailed: A value was refused, or kubectl failed.
        """
        await self._run(["scale", _check_resource(resource),
                         f"--replicas={_check_count(replicas)}",
                         f"--namespace={_check_namespace(namespace)}"])

    async def _revision(self, name: str, namespace: str, cwd: str) -> int | None:
        """The Deployment's rollout revision, from the annotation its controller keeps."""
        text = (await self._run(["get", name, f"--namespace={namespace}",
                                 f"--output={_REVISION_PATH}", "--ignore-not-found"],
                                cwd=cwd)).strip()
        return int(text) if _REVISION.fullmatch(text) else None

    async def _run(self, args: list[str], *, cwd: str | None = None) -> str:
        """Run kubectl with ``args``; its stdout, or TaskExecutionFailed."""
        env = dict(self.environ) if self.environ is not None else None
        search = (env if env is not None else os.environ).get("PATH", os.defpath)
        # looked up here, on kubectl's own PATH, to say clearly when it is missing
        path = shutil.which(self.kubectl, path=search)
        if path is None:
            raise TaskExecutionFailed(
                reason=f"kubectl not found: {self.kubectl!r} is not an executable file or on "
                       "PATH (set EngineSettings.kubectl)",
                retryable=False, kind="kubectl_not_found")
        try:
            # stdin closed: kubectl must never wait for an answer (auth prompts, -f -)
            result = await anyio.run_process([path, *args], cwd=cwd, env=env, check=False,
                                             stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise TaskExecutionFailed(reason=f"cannot run {path}: {exc.strerror or exc}",
                                      retryable=False, kind="kubectl_not_found") from exc
        stdout = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace")
            raise TaskExecutionFailed(
                reason=f"kubectl {shlex.join(args)} exited with code {result.returncode}: "
                       f"{_tail(stderr or stdout)}",
                retryable=True, kind="cluster",
                output=TaskOutput(stdout=stdout, stderr=stderr, exit_code=result.returncode))
        return stdout


def _malformed(key: str, value: object) -> TaskExecutionFailed:
    return TaskExecutionFailed(reason=f"malformed undo record: {key!r} is {value!r}",
                               retryable=False, kind="cannot_undo")


def _list(record: Mapping[str, Any], key: str) -> list[Any]:
    """``record[key]`` if it is a list (missing: empty), else ``cannot_undo``."""
    value = record.get(key, [])
    if isinstance(value, list | tuple):
        return list(value)
    raise _malformed(key, value)


def cluster_client(ctx: TaskContext) -> ClusterClient:
    """The client a Deploy or Scale task uses.

    Args:
        ctx: The task's context.

    Returns:
        ``ctx.resources.cluster`` if the host gave one, else a :class:`KubectlClient` for
        ``ctx.settings.kubectl`` with the task's environment.
    """
    if ctx.resources.cluster is not None:
        return ctx.resources.cluster
    return KubectlClient(kubectl=ctx.settings.kubectl, environ=ctx.environ)


@contextlib.contextmanager
def _redacting(redactor: Redactor) -> Iterator[None]:
    """Re-raise a TaskExecutionFailed with secrets taken out of its reason and output."""
    try:
        yield
    except TaskExecutionFailed as exc:
        if not redactor:
            raise
        output = exc.output
        if isinstance(output, TaskOutput):
            output = attrs.evolve(output, stdout=_maybe(redactor, output.stdout),
                                  stderr=_maybe(redactor, output.stderr))
        # from None: the original carries the unredacted text
        raise TaskExecutionFailed(task_id=exc.task_id, reason=redactor.text(exc.reason),
                                  retryable=exc.retryable, output=output,
                                  kind=exc.kind) from None


def _maybe(redactor: Redactor, text: str | None) -> str | None:
    return None if text is None else redactor.text(text)


def _spec(ctx: TaskContext, kind: type[_T]) -> _T:
    if not isinstance(ctx.spec, kind):
        raise TypeError(f"expected a {kind.__name__} spec, got {type(ctx.spec).__name__}")
    return ctx.spec


def _resolve(workdir: str, manifest: str) -> str:
    """``manifest`` as an absolute path (a relative one is inside ``workdir``)."""
    return os.path.abspath(os.path.join(workdir, manifest))


def _data(data: object, *keys: str) -> Mapping[str, Any]:
    """``data`` if it is a mapping with ``keys``, else ``cannot_undo``."""
    if isinstance(data, Mapping) and all(k in data for k in keys):
        return data
    raise TaskExecutionFailed(reason=f"cannot undo: the task's data lacks {', '.join(keys)}",
                              retryable=False, kind="cannot_undo")


@attrs.frozen
class DeployHandler:
    """Runs Deploy tasks: applies a manifest and records how to undo it.

    A relative ``manifest`` is found in the task's working directory. The output's
    ``stdout`` is what kubectl printed (redacted). Its ``data`` is ``{"manifest": <the
    resolved path>, "namespace": ..., "dry_run": ..., "undo": <the client's record, without
    "output">}``. ``undo`` is ``None`` for a dry run, which changes nothing.
    """

    busy: ClassVar[bool] = True

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        """Run one attempt.

        Args:
            ctx: The task's context; ``ctx.spec`` is an interpolated :class:`Deploy`.

        Returns:
            The task's output, as described above.

        Raises:
            TaskExecutionFailed: A value was refused (``invalid_value``), or the cluster
                client failed.
        """
        spec = _spec(ctx, Deploy)
        with _redacting(ctx.redactor):
            namespace = _check_namespace(spec.namespace)
            manifest = _resolve(ctx.workdir, _check_manifest(spec.manifest))
            record = dict(await cluster_client(ctx).apply(
                manifest, namespace, dry_run=spec.dry_run, cwd=ctx.workdir))
        output = record.pop("output", None)
        return TaskOutput(
            stdout=ctx.redactor.text(output) if isinstance(output, str) else None,
            data={"manifest": manifest, "namespace": namespace, "dry_run": spec.dry_run,
                  "undo": None if spec.dry_run else record})


@attrs.frozen
class ScaleHandler:
    """Runs Scale tasks: reads the replica count, then sets the new one.

    A resource that does not exist fails the attempt (kind ``not_found``, retryable, since
    an earlier Deploy may still be creating it), so a completed Scale always knows the count
    to restore. ``data`` is ``{"resource", "namespace", "replicas", "previous_replicas"}``.
    """

    busy: ClassVar[bool] = True

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        """Run one attempt.

        Args:
            ctx: The task's context; ``ctx.spec`` is an interpolated :class:`Scale`.

        Returns:
            The task's output, as described above.

        Raises:
            TaskExecutionFailed: A value was refused (``invalid_value``), the resource was
                not found (``not_found``), or the cluster client failed.
        """
        spec = _spec(ctx, Scale)
        with _redacting(ctx.redactor):
            resource = _check_resource(spec.resource)
            namespace = _check_namespace(spec.namespace)
            replicas = _check_count(spec.replicas)
            client = cluster_client(ctx)
            previous = await client.get_replicas(resource, namespace)
            if previous is None:
                raise TaskExecutionFailed(
                    reason=f"{resource} not found in namespace {namespace}", retryable=True,
                    kind="not_found")
            await client.scale(resource, namespace, replicas)
        return TaskOutput(
            stdout=f"{resource} in {namespace}: {previous} -> {replicas} replicas\n",
            data={"resource": resource, "namespace": namespace, "replicas": replicas,
                  "previous_replicas": previous})


async def undo_deploy(ctx: TaskContext, data: Mapping[str, Any]) -> None:
    """Undo a completed Deploy, for the engine's rollback.

    A dry run changed nothing, so there is nothing to undo. Otherwise this calls the
    client's ``undo_apply`` with the recorded manifest, namespace and record (see
    :meth:`KubectlClient.apply` for what is undone and what is left).

    Args:
        ctx: A context for the Deploy task (its resources, environment, working directory).
        data: The ``data`` of the Deploy's output.

    Raises:
        TaskExecutionFailed: ``data`` is not a Deploy's (``cannot_undo``), or undoing failed.
    """
    with _redacting(ctx.redactor):
        data = _data(data, "manifest", "namespace", "undo")
        if data.get("dry_run"):
            return
        record = data["undo"]
        if not isinstance(record, Mapping):
            raise TaskExecutionFailed(reason="cannot undo: the Deploy recorded no undo record",
                                      retryable=False, kind="cannot_undo")
        await cluster_client(ctx).undo_apply(
            _check_manifest(data["manifest"]), _check_namespace(data["namespace"]), record,
            cwd=ctx.workdir)


async def undo_scale(ctx: TaskContext, data: Mapping[str, Any]) -> None:
    """Undo a completed Scale by setting the replica count it found, for the rollback.

    The count is restored even if something else (an autoscaler) changed it since. A Scale
    with no previous count (from a host's ClusterClient that reported none) cannot be
    undone. This raises ``cannot_undo`` instead of pretending, so the rollback says which
    step it could not do.

    Args:
        ctx: A context for the Scale task (its resources and environment).
        data: The ``data`` of the Scale's output.

    Raises:
        TaskExecutionFailed: There is no previous count or ``data`` is not a Scale's
            (``cannot_undo``), or scaling failed.
    """
    with _redacting(ctx.redactor):
        data = _data(data, "resource", "namespace", "previous_replicas")
        previous = data["previous_replicas"]
        if previous is None:
            raise TaskExecutionFailed(
                reason=f"cannot undo scaling {data['resource']}: its previous replica count "
                       "is unknown", retryable=False, kind="cannot_undo")
        await cluster_client(ctx).scale(_check_resource(data["resource"]),
                                        _check_namespace(data["namespace"]),
                                        _check_count(previous))
