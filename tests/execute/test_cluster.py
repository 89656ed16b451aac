"""Deploy and Scale against the stand-in kubectl in ``tests/execute/bin``.

There is no Kubernetes cluster here: the stand-in logs its argv to ``$KUBECTL_LOG`` and
simulates a little cluster in ``$KUBECTL_STATE``, so these tests pin down exactly which
arguments reach kubectl.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from dagflow._context import Redactor, Resources, TaskContext
from dagflow._errors import TaskExecutionFailed
from dagflow._execute.cluster import (
    DeployHandler,
    KubectlClient,
    ScaleHandler,
    undo_deploy,
    undo_scale,
)
from dagflow._models import Deploy, Scale, TaskOutput
from dagflow._settings import EngineSettings

BIN = Path(__file__).parent / "bin"
STAND_IN = BIN / "kubectl"


@attrs.define
class Cluster:
    """The stand-in's files and the environment that puts it first on PATH."""

    workdir: Path
    log: Path
    state: Path
    environ: dict[str, str]

    def set_state(self, **state: Any) -> None:
        """Replace the simulated cluster's state."""
        self.state.write_text(json.dumps(state))

    def read_state(self) -> dict[str, Any]:
        """The simulated cluster's state now."""
        return dict(json.loads(self.state.read_text()))

    def calls(self) -> list[list[str]]:
        """The argv (without ``kubectl``) of every call so far."""
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]

    def context(self, spec: Any, *, kubectl: str = "kubectl",
                redactor: Redactor | None = None, **environ: str) -> TaskContext:
        """A TaskContext running ``spec`` in ``workdir`` with the stand-in on PATH."""
        return TaskContext(
            task_id="t", spec=spec, workdir=str(self.workdir),
            environ={**self.environ, **environ}, redactor=redactor or Redactor(),
            resources=Resources(settings=EngineSettings(kubectl=kubectl)))


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    """An empty simulated cluster, with the stand-in first on PATH."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KUBECTL_")}
    # this interpreter's directory next: `env python3` in the stand-in starts fast
    environ["PATH"] = os.pathsep.join([str(BIN), os.path.dirname(sys.executable),
                                       environ.get("PATH", "")])
    result = Cluster(workdir=tmp_path, log=tmp_path / "kubectl.log",
                     state=tmp_path / "state.json", environ=environ)
    environ |= {"KUBECTL_LOG": str(result.log), "KUBECTL_STATE": str(result.state)}
    (tmp_path / "manifest.yaml").write_text("kind: Deployment\n")
    result.set_state()
    return result


@pytest.mark.anyio
async def test_deploy_applies_with_single_argument_values(cluster: Cluster) -> None:
    """Deploy lists what exists, then applies the workdir's manifest, each value one argument."""
    cluster.set_state(manifests={"manifest.yaml": ["deployment.apps/app", "service/app"]})
    ctx = cluster.context(Deploy(manifest="manifest.yaml", namespace="production"))

    out = await DeployHandler()(ctx)

    manifest = str(cluster.workdir / "manifest.yaml")
    target = [f"--filename={manifest}", "--namespace=production"]
    assert cluster.calls() == [["get", *target, "--output=name", "--ignore-not-found"],
                               ["apply", *target]]
    cwds = {json.loads(line)["cwd"] for line in cluster.log.read_text().splitlines()}
    assert cwds == {str(cluster.workdir)}
    assert out.stdout == "deployment.apps/app created\nservice/app created\n"
    assert out.data == {
        "manifest": manifest, "namespace": "production", "dry_run": False,
        "undo": {"namespace": "production", "delete": ["deployment.apps/app", "service/app"],
                 "rollout_undo": [], "not_undone": [], "unchanged": []},
    }


@pytest.mark.anyio
async def test_dry_run_changes_nothing_and_records_no_undo(cluster: Cluster) -> None:
    """A dry run passes --dry-run=server, records no undo, and undoing it runs nothing."""
    cluster.set_state(manifests={"manifest.yaml": ["deployment.apps/app"]})
    ctx = cluster.context(Deploy(manifest="manifest.yaml", dry_run=True))

    out = await DeployHandler()(ctx)
    await undo_deploy(ctx, out.data)

    manifest = str(cluster.workdir / "manifest.yaml")
    assert cluster.calls() == [["apply", f"--filename={manifest}", "--namespace=default",
                                "--dry-run=server"]]
    assert out.stdout == "deployment.apps/app created (server dry run)\n"
    assert out.data["undo"] is None
    assert cluster.read_state()["existing"] == []


@pytest.mark.anyio
async def test_undo_deploy_deletes_new_objects_and_rolls_back_changed_ones(
        cluster: Cluster) -> None:
    """Undo deletes what Deploy created, rolls workloads back, and leaves the rest."""
    cluster.set_state(
        manifests={"manifest.yaml": ["deployment.apps/app", "statefulset.apps/db",
                                     "service/app", "configmap/cfg", "secret/same"]},
        existing=["deployment.apps/app", "statefulset.apps/db", "configmap/cfg",
                  "secret/same"],
        unchanged=["secret/same"], revisions={"deployment.apps/app": 4})
    ctx = cluster.context(Deploy(manifest="manifest.yaml", namespace="production"))

    out = await DeployHandler()(ctx)
    assert out.data["undo"] == {
        "namespace": "production", "delete": ["service/app"],
        "rollout_undo": [{"name": "deployment.apps/app", "to_revision": 4},
                         {"name": "statefulset.apps/db", "to_revision": None}],
        "not_undone": ["configmap/cfg"], "unchanged": ["secret/same"],
    }
    before = len(cluster.calls())
    await undo_deploy(ctx, out.data)

    assert cluster.calls()[before:] == [
        ["delete", "service/app", "--namespace=production", "--ignore-not-found"],
        ["rollout", "undo", "deployment.apps/app", "--namespace=production",
         "--to-revision=4"],
        ["rollout", "undo", "statefulset.apps/db", "--namespace=production"],
    ]
    assert "service/app" not in cluster.read_state()["existing"]


@pytest.mark.anyio
async def test_scale_records_previous_replicas(cluster: Cluster) -> None:
    """Scale reads the replica count, then sets the new one, recording both."""
    cluster.set_state(replicas={"deployment/app": 3})
    ctx = cluster.context(Scale(resource="deployment/app", replicas=5, namespace="production"))

    out = await ScaleHandler()(ctx)

    assert cluster.calls() == [
        ["get", "deployment/app", "--namespace=production",
         "--output=jsonpath={.spec.replicas}", "--ignore-not-found"],
        ["scale", "deployment/app", "--replicas=5", "--namespace=production"],
    ]
    assert out.data == {"resource": "deployment/app", "namespace": "production",
                        "replicas": 5, "previous_replicas": 3}
    assert cluster.read_state()["replicas"] == {"deployment/app": 5}


@pytest.mark.anyio
async def test_undo_scale_restores_previous_replicas(cluster: Cluster) -> None:
    """Undoing a Scale sets the replica count it found."""
    cluster.set_state(replicas={"deployment/app": 3})
    ctx = cluster.context(Scale(resource="deployment/app", replicas=0, namespace="production"))
    out = await ScaleHandler()(ctx)

    await undo_scale(ctx, out.data)

    assert cluster.calls()[-1] == ["scale", "deployment/app", "--replicas=3",
                                   "--namespace=production"]
    assert cluster.read_state()["replicas"] == {"deployment/app": 3}


@pytest.mark.anyio
async def test_scale_of_missing_resource_fails(cluster: Cluster) -> None:
    """Scaling a resource that does not exist fails before scaling, as not_found."""
    ctx = cluster.context(Scale(resource="deployment/ghost", replicas=2))

    with pytest.raises(TaskExecutionFailed) as info:
        await ScaleHandler()(ctx)

    assert info.value.kind == "not_found"
    assert [argv[0] for argv in cluster.calls()] == ["get"]


@pytest.mark.anyio
async def test_undo_scale_without_previous_count_says_it_cannot(cluster: Cluster) -> None:
    """With no previous count recorded, undo_scale raises cannot_undo and runs nothing."""
    ctx = cluster.context(Scale(resource="app", replicas=2))
    data = {"resource": "app", "namespace": "default", "replicas": 2, "previous_replicas": None}

    with pytest.raises(TaskExecutionFailed) as info:
        await undo_scale(ctx, data)

    assert (info.value.kind, info.value.retryable) == ("cannot_undo", False)
    assert cluster.calls() == []


BAD_NAMESPACES = ["--kubeconfig=/evil", "a b", "-n", "Production", "a" * 64, "", "ns\n"]


@pytest.mark.anyio
@pytest.mark.parametrize("namespace", BAD_NAMESPACES)
@pytest.mark.parametrize("make", [
    lambda ns: Deploy(manifest="manifest.yaml", namespace=ns),
    lambda ns: Scale(resource="deployment/app", replicas=1, namespace=ns),
], ids=["Deploy", "Scale"])
async def test_option_like_namespace_is_refused(
        cluster: Cluster, namespace: str, make: Callable[[str], Any]) -> None:
    """A namespace that is not a Kubernetes name is refused before kubectl runs."""
    with pytest.raises(TaskExecutionFailed) as info:
        await (DeployHandler() if isinstance(make(namespace), Deploy) else ScaleHandler())(
            cluster.context(make(namespace)))

    assert (info.value.kind, info.value.retryable) == ("invalid_value", False)
    assert not cluster.log.exists()


@pytest.mark.anyio
@pytest.mark.parametrize("resource", ["--all", "-A", "deployment/--all", "app --all",
                                      "deployment/", "Deployment/app"])
async def test_option_like_resource_is_refused(cluster: Cluster, resource: str) -> None:
    """A resource like --all is refused before kubectl runs."""
    with pytest.raises(TaskExecutionFailed) as info:
        await ScaleHandler()(cluster.context(Scale(resource=resource, replicas=1)))

    assert (info.value.kind, info.value.retryable) == ("invalid_value", False)
    assert not cluster.log.exists()


@pytest.mark.anyio
@pytest.mark.parametrize("manifest", ["-", "--filename=/etc/passwd", "-k"])
async def test_option_like_manifest_is_refused(cluster: Cluster, manifest: str) -> None:
    """A manifest starting with '-' (an option, or stdin) is refused before kubectl runs."""
    with pytest.raises(TaskExecutionFailed) as info:
        await DeployHandler()(cluster.context(Deploy(manifest=manifest)))

    assert info.value.kind == "invalid_value"
    assert not cluster.log.exists()


@pytest.mark.anyio
async def test_client_checks_values_again(cluster: Cluster) -> None:
    """KubectlClient refuses bad values itself, including names in a tampered undo record."""
    client = KubectlClient(environ=cluster.environ)
    attempts = [
        client.apply("-", "default", dry_run=False, cwd=str(cluster.workdir)),
        client.get_replicas("--all", "default"),
        client.scale("app", "--namespace=kube-system", 1),
        client.scale("app", "default", -1),
        client.undo_apply("manifest.yaml", "default", {"delete": ["--all"]}, cwd="."),
        client.undo_apply("manifest.yaml", "default",
                          {"rollout_undo": [{"name": "app", "to_revision": "1 --x"}]}, cwd="."),
    ]
    for attempt in attempts:
        with pytest.raises(TaskExecutionFailed) as info:
            await attempt
        assert info.value.kind == "invalid_value"
    assert not cluster.log.exists()


@pytest.mark.anyio
async def test_kubectl_failure_reports_stderr(cluster: Cluster) -> None:
    """A kubectl that exits non-zero fails the attempt, retryably, with its stderr."""
    ctx = cluster.context(Deploy(manifest="manifest.yaml"), KUBECTL_FAIL="apply")

    with pytest.raises(TaskExecutionFailed) as info:
        await DeployHandler()(ctx)

    assert (info.value.kind, info.value.retryable) == ("cluster", True)
    assert "exited with code 1: error: simulated failure" in info.value.reason
    assert isinstance(info.value.output, TaskOutput)
    assert info.value.output.exit_code == 1


@pytest.mark.anyio
async def test_failure_is_redacted(cluster: Cluster) -> None:
    """Secrets in kubectl's arguments and stderr do not reach the failure."""
    ctx = cluster.context(Deploy(manifest="hunter2.yaml"), KUBECTL_FAIL="hunter2",
                          redactor=Redactor(["hunter2"]))

    with pytest.raises(TaskExecutionFailed) as info:
        await DeployHandler()(ctx)

    assert info.value.output.stderr.startswith("error: simulated failure")
    assert "hunter2" not in str(info.value) + repr(info.value.output)


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["path", "PATH"])
async def test_missing_kubectl_fails_clearly(cluster: Cluster, where: str) -> None:
    """A kubectl that is not there fails at once, not retryably, saying how to fix it."""
    if where == "path":
        ctx = cluster.context(Deploy(manifest="manifest.yaml"),
                              kubectl=str(cluster.workdir / "no-kubectl"))
    else:
        ctx = cluster.context(Deploy(manifest="manifest.yaml"), PATH=str(cluster.workdir))

    with pytest.raises(TaskExecutionFailed) as info:
        await DeployHandler()(ctx)

    assert (info.value.kind, info.value.retryable) == ("kubectl_not_found", False)
    assert "EngineSettings.kubectl" in info.value.reason


@pytest.mark.anyio
async def test_settings_kubectl_path_is_used(cluster: Cluster) -> None:
    """settings.kubectl names the executable even when it is not on PATH."""
    cluster.set_state(replicas={"app": 1})
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    ctx = cluster.context(Scale(resource="app", replicas=2), kubectl=str(STAND_IN), PATH=path)

    out = await ScaleHandler()(ctx)

    assert out.data["previous_replicas"] == 1
    assert len(cluster.calls()) == 2


@attrs.define
class RecordingCluster:
    """A host's ClusterClient that remembers what it was asked."""

    calls: list[tuple[Any, ...]] = attrs.Factory(list)

    async def apply(self, manifest: str, namespace: str, *, dry_run: bool,
                    cwd: str) -> dict[str, Any]:
        self.calls.append(("apply", manifest, namespace, dry_run, cwd))
        return {"token": 1}

    async def undo_apply(self, manifest: str, namespace: str, record: Mapping[str, Any], *,
                         cwd: str) -> None:
        self.calls.append(("undo_apply", manifest, namespace, dict(record), cwd))

    async def get_replicas(self, resource: str, namespace: str) -> int | None:
        return None

    async def scale(self, resource: str, namespace: str, replicas: int) -> None:
        self.calls.append(("scale", resource, namespace, replicas))


@pytest.mark.anyio
async def test_host_cluster_client_is_used(cluster: Cluster) -> None:
    """A ClusterClient in Resources replaces kubectl, and its record comes back to undo."""
    host = RecordingCluster()
    ctx = attrs.evolve(cluster.context(Deploy(manifest="m.yaml", namespace="web")),
                       resources=Resources(cluster=host))

    out = await DeployHandler()(ctx)
    await undo_deploy(ctx, out.data)

    manifest = str(cluster.workdir / "m.yaml")
    workdir = str(cluster.workdir)
    assert out.stdout is None
    assert host.calls == [("apply", manifest, "web", False, workdir),
                          ("undo_apply", manifest, "web", {"token": 1}, workdir)]
    assert not cluster.log.exists()
