"""Webhook retries honour Retry-After, waiting on the injected clock (a real HTTP server)."""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import httpx
import pytest

from dagflow._approval.notify import Notification, NotificationError, WebhookNotifier
from dagflow._execute._egress import make_http_client
from dagflow._settings import EngineSettings
from dagflow.testing import FakeClock

Answer = tuple[int, dict[str, str]]


@attrs.define
class Server:
    """A real HTTP server in a thread that answers POSTs from a script."""

    port: int = 0
    script: list[Answer] = attrs.Factory(list)
    hits: int = 0

    def answer(self, *answers: Answer) -> str:
        """Answer with these (status, headers) in turn, the last one repeating; the URL."""
        self.script = list(answers)
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def server() -> Iterator[Server]:
    """A scripted HTTP server on 127.0.0.1 with a free port."""
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.hits += 1
            status, headers = state.script.pop(0) if len(state.script) > 1 else state.script[0]
            self.send_response(status)  # adds Date: now
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Quiet(ThreadingHTTPServer):
        daemon_threads = True

    httpd = Quiet(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@asynccontextmanager
async def _webhook(clock: FakeClock, **kwargs: Any) -> AsyncIterator[WebhookNotifier]:
    """A WebhookNotifier sleeping on ``clock``, over a guarded client closed afterwards."""
    client = make_http_client(EngineSettings())

    async def factory() -> httpx.AsyncClient:
        return client

    try:
        yield WebhookNotifier(factory, sleep=clock.sleep, **kwargs)
    finally:
        await client.aclose()


def _note(url: str) -> Notification:
    return Notification(kind="failed", instance_id="i-1", workflow_id="deploy",
                        workflow_name="deploy", state="Failed",
                        at=dt.datetime(2024, 5, 1, tzinfo=dt.UTC), webhook_url=url)


@pytest.mark.anyio
async def test_webhook_waits_as_long_as_retry_after_asks(server: Server) -> None:
    """A 503 with ``Retry-After: 2`` waits 2 s on the clock (not the 1 s backoff), in no
    real time, then delivers."""
    url = server.answer((503, {"Retry-After": "2"}), (204, {}))
    clock = FakeClock()
    async with _webhook(clock) as notifier:
        started = time.monotonic()
        await notifier.notify(_note(url))
        elapsed = time.monotonic() - started
    assert server.hits == 2
    assert clock.monotonic() >= 2
    assert clock.monotonic() == 2
    assert elapsed < 0.5


@pytest.mark.anyio
async def test_webhook_reads_an_http_date_retry_after(server: Server) -> None:
    """A 429 whose Retry-After is a date 5 s after the response's Date waits about 5 s."""
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    url = server.answer((429, {"Retry-After": when}), (200, {}))
    clock = FakeClock()
    async with _webhook(clock) as notifier:
        await notifier.notify(_note(url))
    assert server.hits == 2 and 4 <= clock.monotonic() <= 5


@pytest.mark.anyio
async def test_webhook_keeps_its_backoff_when_retry_after_is_shorter(server: Server) -> None:
    """``Retry-After: 0`` after the first and second failures still waits 1 s, then 2 s."""
    url = server.answer((503, {"Retry-After": "0"}), (503, {"Retry-After": "0"}), (200, {}))
    clock = FakeClock()
    async with _webhook(clock) as notifier:
        await notifier.notify(_note(url))
    assert server.hits == 3 and clock.monotonic() == 1 + 2


@pytest.mark.anyio
async def test_webhook_retry_after_is_capped(server: Server) -> None:
    """A day-long Retry-After waits 10 s per retry, then fails naming the last status."""
    url = server.answer((503, {"Retry-After": "86400"}))
    clock = FakeClock()
    async with _webhook(clock) as notifier:
        with pytest.raises(NotificationError,
                           match="failed after 3 attempts: HTTP 503 Service Unavailable"):
            await notifier.notify(_note(url))
    assert server.hits == 3 and clock.monotonic() == 10 + 10


@pytest.mark.anyio
async def test_webhook_ignores_retry_after_on_a_status_it_does_not_retry(
        server: Server) -> None:
    """A 400 fails at once, whatever its Retry-After says."""
    url = server.answer((400, {"Retry-After": "5"}))
    clock = FakeClock()
    async with _webhook(clock) as notifier:
        with pytest.raises(NotificationError, match=r"HTTP 400 Bad Request \(not retried\)"):
            await notifier.notify(_note(url))
    assert server.hits == 1 and clock.monotonic() == 0
