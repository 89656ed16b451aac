"""Notifications through the engine: email over a real SMTP server (aiosmtpd) and webhooks
to a real HTTP server; a failing channel is an event, never a failed workflow."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

import dagflow
from dagflow import SmtpSettings, WorkflowState
from dagflow.testing import FakeClock, RecordingHandler, approve_when_pending, fail

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSettings, list[Any]]]:
    """A real SMTP server on 127.0.0.1 that keeps every message."""
    received: list[Any] = []

    class Keep:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpSettings(host="127.0.0.1", port=port, sender="dagflow@ci.example"), received
    controller.stop()


@pytest.fixture
def hooks() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on 127.0.0.1 that records every JSON body posted to it."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", seen
    httpd.shutdown()
    httpd.server_close()


def config(webhook: str | None = None) -> dict[str, Any]:
    return {"notification_config": {"on_completion": ["team@example.com"],
                                    "on_failure": ["oncall@example.com"],
                                    "webhook_url": webhook}}


async def test_completion_email_and_webhooks(make_workflow: Any, smtp: Any, hooks: Any) -> None:
    """A completed run emails on_completion and posts approval_required and completed to
    the webhook; each delivery is a NotificationSent event."""
    settings, mails = smtp
    url, posted = hooks
    wf = make_workflow({"id": "gate", "type": {"type": "Approval",
                                               "approvers": ["alice@example.com"]}},
                       {"id": "ship", "depends_on": ["gate"]},
                       id="release", **config(url))
    async with dagflow.Engine(settings=dagflow.EngineSettings(smtp=settings),
                              plugins={"rec": RecordingHandler()},
                              clock=FakeClock()) as engine:
        import anyio

        async with anyio.create_task_group() as tg:
            tg.start_soon(approve_when_pending, engine, "alice@example.com")
            inst = await engine.run(wf)
        events = [e async for e in engine.stream_events(inst.id)]
    assert inst.state == WorkflowState.COMPLETED
    assert [m.rcpt_tos for m in mails] == [["team@example.com"]]
    assert "release Completed" in mails[0].content.decode()
    assert [p["kind"] for p in posted] == ["approval_required", "completed"]
    assert posted[0]["summary"]["approvers"] == ["alice@example.com"]
    assert posted[1]["instance_id"] == inst.id
    sent = {(e.channel, e.target) for e in events if type(e).__name__ == "NotificationSent"}
    assert ("email", "team@example.com") in sent
    assert any(channel == "webhook" for channel, _ in sent)


async def test_failure_email_goes_to_on_failure(make_workflow: Any, smtp: Any) -> None:
    """A failed run emails on_failure with the error."""
    settings, mails = smtp
    rec = RecordingHandler(results={"build": fail("compiler crashed", retryable=False)})
    wf = make_workflow({"id": "build"}, id="nightly", **config())
    async with dagflow.Engine(settings=dagflow.EngineSettings(smtp=settings),
                              plugins={"rec": rec}) as engine:
        inst = await engine.run(wf)
    assert inst.state == WorkflowState.FAILED
    assert [m.rcpt_tos for m in mails] == [["oncall@example.com"]]
    assert "compiler crashed" in mails[0].content.decode()


async def test_dead_webhook_and_missing_smtp_do_not_fail_the_run(make_workflow: Any) -> None:
    """A webhook endpoint that refuses connections and an unconfigured SMTP server are
    NotificationFailed events; the workflow still completes."""
    dead = f"http://127.0.0.1:{free_port()}/hook"
    wf = make_workflow({"id": "a"}, **config(dead))
    settings = dagflow.EngineSettings(webhook_backoff_seconds=0.01)
    async with dagflow.Engine(plugins={"rec": RecordingHandler()}, environ={},
                              clock=FakeClock(), settings=settings) as engine:
        inst = await engine.run(wf)
        events = [e async for e in engine.stream_events(inst.id)]
    assert inst.state == WorkflowState.COMPLETED
    failed = {e.channel: e.error for e in events if type(e).__name__ == "NotificationFailed"}
    assert "no SMTP server configured" in failed["email"]
    assert "webhook" in failed
