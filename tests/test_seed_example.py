"""The seed's example workflow runs to Completed through the real ``dagflow run``.

There is no Kubernetes cluster, Docker daemon or npm project here: kubectl, docker and npm
are stand-in programs that record their argv. The example's two URLs point at the
internet; the test runs a copy with them pointed at a real HTTP server on 127.0.0.1 (the
file is otherwise unchanged).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

BIN = Path(__file__).resolve().parent / "execute" / "bin"
DAGFLOW = [sys.executable, "-m", "dagflow"]


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 that answers 200 and records each request."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append({"method": self.command, "path": self.path,
                         "headers": dict(self.headers),
                         "body": self.rfile.read(length).decode()})
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def standins(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """A PATH whose kubectl, docker and npm are recording stand-ins."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(BIN / "kubectl", bin_dir / "kubectl")
    for name in ("docker", "npm"):
        shutil.copy(BIN / "standin", bin_dir / name)
    kubectl_log, standin_log = tmp_path / "kubectl.jsonl", tmp_path / "standin.jsonl"
    env = dict(os.environ)
    python_dir = os.path.dirname(sys.executable)
    env.update(PATH=os.pathsep.join([str(bin_dir), python_dir, env.get("PATH", "")]),
               KUBECTL_LOG=str(kubectl_log), STANDIN_LOG=str(standin_log),
               CI_COMMIT_SHA="abc123", DAGFLOW_STORE="memory://")
    return env, kubectl_log, standin_log


def test_seed_example_runs_to_completed(seed_example: Path, tmp_path: Path,
                                        server: tuple[str, list[dict[str, Any]]],
                                        standins: tuple[dict[str, str], Path, Path]) -> None:
    """`dagflow run --auto-approve` runs all nine tasks of the seed example to Completed."""
    base, requests = server
    env, kubectl_log, standin_log = standins
    text = seed_example.read_text(encoding="utf-8")
    text = text.replace("https://app.example.com", base).replace(
        "https://hooks.slack.com", base)
    workflow = tmp_path / "deploy-with-approval.yaml"
    workflow.write_text(text, encoding="utf-8")
    (tmp_path / "manifest.yaml").write_text("kind: Deployment\n", encoding="utf-8")
    done = subprocess.run([*DAGFLOW, "run", str(workflow), "--auto-approve", "--json"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    instance = json.loads(done.stdout)
    assert instance["state"] == "Completed"
    assert {k: v["state"] for k, v in instance["task_states"].items()} == dict.fromkeys(
        ["validate-manifest", "run-tests", "build-image", "push-image", "request-approval",
         "deploy", "health-check", "smoke-tests", "notify-success"], "Completed")
    calls = [json.loads(line) for line in standin_log.read_text().splitlines()]
    assert [(c["cmd"], c["argv"]) for c in calls] == [
        ("npm", ["test"]),
        ("docker", ["build", "-t", "app:abc123", "."]),
        ("docker", ["push", "app:abc123"]),
    ]
    assert all(c["cwd"] == str(tmp_path) for c in calls)  # the workflow file's directory
    kubectl = [json.loads(line)["argv"] for line in kubectl_log.read_text().splitlines()]
    assert ["apply", "--dry-run=client", "-f", "manifest.yaml"] in kubectl
    assert ["rollout", "status", "deployment/app", "-n", "production"] in kubectl
    applied = [argv for argv in kubectl if argv[0] == "apply" and "--dry-run=client" not in argv]
    assert applied and "--namespace=production" in applied[0]
    assert [r["method"] + " " + r["path"] for r in requests] == [
        "GET /health", "POST /services/XXX"]
    assert json.loads(requests[1]["body"]) == {"text": "Deployment abc123 successful!"}
    assert requests[0]["headers"]["User-Agent"] == "Workflow-Engine/1.0"
    assert requests[0]["headers"]["Idempotency-Key"]


def test_seed_example_waits_at_the_gate_without_auto_approve(
        seed_example: Path, tmp_path: Path, standins: tuple[dict[str, str], Path, Path]
) -> None:
    """Without --auto-approve the run stops at the gate and prints how to approve it;
    Ctrl-C then leaves the instance paused (exit 130) with the command to resume it."""
    env, _, _ = standins
    shutil.copy(seed_example, tmp_path / "wf.yaml")
    with subprocess.Popen([*DAGFLOW, "run", str(tmp_path / "wf.yaml")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "dagflow approve" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=20)
    text = "".join(lines)
    assert "approval required for 'request-approval': alice@example.com, bob@example.com" \
        in text
    assert "dagflow approve apr_" in text and "--as EMAIL" in text
    assert proc.returncode == 130, errors
    assert "is paused; continue it with:  dagflow resume" in rest
