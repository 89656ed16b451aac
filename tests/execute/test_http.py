"""The Http task against a real HTTP server on 127.0.0.1, through the guarded client."""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import attrs
import httpx
import pytest

from dagflow._context import Resources, TaskContext
from dagflow._errors import TaskExecutionFailed
from dagflow._execute._egress import make_http_client, user_agent
from dagflow._execute.http import HttpHandler
from dagflow._models import Http, TaskOutput
from dagflow._settings import EgressPolicy, EngineSettings

SECRET = "s3cr3t-T0ken"


@attrs.frozen
class Route:
    """What the server answers on one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = attrs.Factory(dict)
    delay: float = 0.0
    echo: bool = False  # answer with the request as JSON
    send_length: bool = True  # False: no Content-Length, the body ends when the connection does


@attrs.frozen
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


@attrs.define
class Server:
    """A real HTTP/1.0 server in a thread that records requests and answers from routes."""

    port: int = 0
    routes: dict[str, Route] = attrs.Factory(dict)
    requests: list[Recorded] = attrs.Factory(list)
    stop: threading.Event = attrs.Factory(threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The absolute URL of ``path`` on this server."""
        return f"http://{host}:{self.port}{path}"

    def route(self, path: str, **kwargs: Any) -> str:
        """Answer ``path`` with ``Route(**kwargs)``; return its URL."""
        self.routes[path] = Route(**kwargs)
        return self.url(path)

    def paths(self) -> list[str]:
        """The paths requested so far, in order."""
        return [r.path for r in self.requests]


def _handler_class(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            server.requests.append(Recorded(self.command, self.path, list(self.headers.items()),
                                            body))
            route = server.routes.get(path, Route(status=404, body=b"not found"))
            if route.delay:
                server.stop.wait(route.delay)  # woken at teardown, so no thread outlives a test
            payload = route.body
            if route.echo:
                payload = json.dumps({"method": self.command, "path": self.path,
                                      "body": body.decode()}).encode()
            try:
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except OSError:  # the client gave up (timeout/cancel tests)
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early is expected here


@pytest.fixture
def server() -> Iterator[Server]:
    """A recording HTTP server on 127.0.0.1 with a free port."""
    state = Server()
    httpd = _QuietServer(("127.0.0.1", 0), _handler_class(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@asynccontextmanager
async def _context(spec: Http, settings: EngineSettings | None = None,
                   **kwargs: Any) -> AsyncIterator[TaskContext]:
    settings = settings or EngineSettings()
    client = make_http_client(settings)

    async def get_client() -> httpx.AsyncClient:
        return client

    try:
        yield TaskContext(task_id="call", spec=spec, idempotency_key="k1",
                          resources=Resources(settings=settings, http_client=get_client),
                          **kwargs)
    finally:
        await client.aclose()


async def _run(spec: Http, settings: EngineSettings | None = None) -> TaskOutput:
    async with _context(spec, settings) as ctx:
        return await HttpHandler()(ctx)


async def _fail(spec: Http, settings: EngineSettings | None = None) -> TaskExecutionFailed:
    async with _context(spec, settings) as ctx:
        with pytest.raises(TaskExecutionFailed) as info:
            await HttpHandler()(ctx)
    return info.value


def _egress(**kwargs: Any) -> EngineSettings:
    return EngineSettings(egress=EgressPolicy(**kwargs))


@pytest.mark.anyio
async def test_get_returns_body_and_metrics(server: Server) -> None:
    """A 200 text response becomes stdout, with status, duration and size in metrics."""
    url = server.route("/hello", body=b"hi there", headers={"Content-Type": "text/plain"})
    output = await _run(Http(url=url))
    assert output.stdout == "hi there"
    assert output.data is None
    assert output.exit_code is None
    assert output.metrics["status_code"] == 200
    assert output.metrics["response_bytes"] == 8
    assert 0 <= output.metrics["duration_seconds"] < 5
    assert server.requests[0].method == "GET"


@pytest.mark.anyio
async def test_post_sends_body_and_headers(server: Server) -> None:
    """The method, headers and UTF-8 body reach the server unchanged."""
    url = server.route("/items", status=201)
    body = '{"name": "café"}'
    await _run(Http(url=url, method="POST", body=body,
                    headers={"Content-Type": "application/json", "X-Trace": "abc"}))
    request = server.requests[0]
    assert request.method == "POST"
    assert request.body == body.encode("utf-8")
    assert request.header("X-Trace") == ["abc"]
    assert request.header("Content-Type") == ["application/json"]
    assert request.header("User-Agent") == [user_agent()]
    assert user_agent().startswith("dagflow/")


@pytest.mark.anyio
@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/problem+json",
])
async def test_json_response_becomes_data(server: Server, content_type: str) -> None:
    """A JSON body (application/json or +json) is parsed into data."""
    url = server.route("/j", body=b'{"ok": true, "n": [1, 2]}',
                       headers={"Content-Type": content_type})
    output = await _run(Http(url=url))
    assert output.data == {"ok": True, "n": [1, 2]}
    assert output.stdout == '{"ok": true, "n": [1, 2]}'


@pytest.mark.anyio
@pytest.mark.parametrize(("content_type", "body"), [
    ("text/plain", b'{"looks": "like json"}'),
    ("application/json", b"{not json"),
])
async def test_non_json_body_has_no_data(server: Server, content_type: str, body: bytes) -> None:
    """A body that is not declared JSON, or does not parse, leaves data None."""
    url = server.route("/t", body=body, headers={"Content-Type": content_type})
    output = await _run(Http(url=url))
    assert output.data is None
    assert output.stdout == body.decode()


@pytest.mark.anyio
async def test_404_fails_without_retry(server: Server) -> None:
    """A 404 fails the task, not retryable, naming status and URL and keeping the body."""
    url = server.url("/missing")
    error = await _fail(Http(url=url))
    assert error.kind == "http_status"
    assert error.retryable is False
    assert error.reason == f"HTTP 404 Not Found from GET {url}"
    assert error.output.stdout == "not found"
    assert error.output.metrics["status_code"] == 404


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "phrase"), [
    (503, "Service Unavailable"), (429, "Too Many Requests"), (408, "Request Timeout"),
])
async def test_5xx_and_throttling_fail_retryably(server: Server, status: int, phrase: str) -> None:
    """503, 429 and 408 fail the attempt as retryable, naming status and URL."""
    url = server.route("/busy", status=status, body=b"later")
    error = await _fail(Http(url=url, method="DELETE"))
    assert error.kind == "http_status"
    assert error.retryable is True
    assert error.reason == f"HTTP {status} {phrase} from DELETE {url}"


@pytest.mark.anyio
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_travel_with_the_failure(server: Server, status: int) -> None:
    """A 429 or 503 with ``Retry-After: 3`` fails asking the retry to wait 3 s."""
    url = server.route("/throttled", status=status, headers={"Retry-After": "3"})
    error = await _fail(Http(url=url))
    assert error.retryable is True
    assert error.retry_after == 3


@pytest.mark.anyio
async def test_retry_after_http_date_is_seconds_from_the_response(server: Server) -> None:
    """An HTTP-date Retry-After 30 s ahead asks for about 30 s; one in the past for 0."""
    ahead = email.utils.formatdate(time.time() + 30, usegmt=True)
    url = server.route("/later", status=429, headers={"Retry-After": ahead})
    error = await _fail(Http(url=url))
    assert error.retry_after is not None and 29 <= error.retry_after <= 30
    url = server.route("/past", status=503, headers={"Retry-After": "Thu, 01 Jan 1970 "
                                                                      "00:00:00 GMT"})
    assert (await _fail(Http(url=url))).retry_after == 0


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "headers"), [
    (503, {}),  # no header
    (429, {"Retry-After": "in a while"}),  # garbage is ignored
    (404, {"Retry-After": "3"}),  # not retried, so nothing to wait for
])
async def test_retry_after_absent_unless_a_retryable_status_says_so(
        server: Server, status: int, headers: dict[str, str]) -> None:
    """No usable Retry-After on a retryable status leaves retry_after None."""
    url = server.route("/x", status=status, headers=headers)
    assert (await _fail(Http(url=url))).retry_after is None


@pytest.mark.anyio
async def test_idempotency_key_same_on_every_attempt(server: Server) -> None:
    """Two attempts with the same ctx.idempotency_key send the same Idempotency-Key."""
    url = server.route("/pay", status=200)
    async with _context(Http(url=url, method="POST", body="x")) as ctx:
        await HttpHandler()(ctx)
        await HttpHandler()(attrs.evolve(ctx, attempt=2))
    keys = [r.header("Idempotency-Key") for r in server.requests]
    assert keys == [["k1"], ["k1"]]


@pytest.mark.anyio
async def test_user_idempotency_key_kept(server: Server) -> None:
    """A task's own idempotency-key header (any case) is sent instead of the derived one."""
    url = server.route("/pay")
    await _run(Http(url=url, headers={"idempotency-key": "mine", "user-agent": "me/1"}))
    request = server.requests[0]
    assert request.header("Idempotency-Key") == ["mine"]
    assert request.header("User-Agent") == ["me/1"]


@pytest.mark.anyio
async def test_redirect_followed(server: Server) -> None:
    """A redirect to another path is followed, and the final response is the output."""
    server.route("/old", status=302, headers={"Location": "/new"})
    server.route("/new", body=b"moved here")
    output = await _run(Http(url=server.url("/old")))
    assert output.stdout == "moved here"
    assert server.paths() == ["/old", "/new"]
    assert server.requests[1].header("Idempotency-Key") == ["k1"]


@pytest.mark.anyio
async def test_redirect_rechecked_against_policy(server: Server) -> None:
    """A redirect to a host the policy denies is refused before the second request."""
    server.route("/old", status=307, headers={"Location": server.url("/new", host="localhost")})
    server.route("/new", body=b"should not be reached")
    error = await _fail(Http(url=server.url("/old")), _egress(deny=("localhost",)))
    assert error.kind == "egress_denied"
    assert error.retryable is False
    assert "refused to connect to localhost (denied by EgressPolicy.deny 'localhost')" in (
        error.reason)
    assert server.paths() == ["/old"]


@pytest.mark.anyio
async def test_redirect_to_metadata_refused(server: Server) -> None:
    """A redirect to the cloud metadata service is refused, whatever the first host was."""
    url = server.route("/r", status=301,
                       headers={"Location": "http://169.254.169.254/latest/meta-data"})
    with anyio.fail_after(2):
        error = await _fail(Http(url=url))
    assert error.kind == "egress_denied"
    assert "refused to connect to 169.254.169.254 (link-local/cloud metadata address; " \
        "EgressPolicy.allow_link_local)" in error.reason
    assert "http://169.254.169.254/latest/meta-data" in error.reason


@pytest.mark.anyio
async def test_too_many_redirects(server: Server) -> None:
    """A redirect loop stops after EgressPolicy.max_redirects hops."""
    url = server.route("/loop", status=302, headers={"Location": "/loop"})
    error = await _fail(Http(url=url), _egress(max_redirects=2))
    assert error.kind == "too_many_redirects"
    assert error.retryable is False
    assert len(server.requests) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://169.254.43518/",
    "http://0251.0376.43518/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://[fe80::1]/",
    "https://169.254.169.254/",
])
async def test_metadata_addresses_refused_in_every_spelling(url: str) -> None:
    """Link-local and metadata addresses are refused, however spelled, before connecting."""
    started = time.monotonic()
    error = await _fail(Http(url=url))
    assert time.monotonic() - started < 1
    assert error.kind == "egress_denied"
    assert error.retryable is False
    assert "EgressPolicy.allow_link_local" in error.reason


@pytest.mark.anyio
async def test_hostname_resolving_to_denied_network_refused(server: Server) -> None:
    """A name is checked by the addresses it resolves to (localhost vs a 127.0.0.0/8 deny)."""
    url = server.route("/x")
    error = await _fail(Http(url=server.url("/x", host="localhost")),
                        _egress(deny=("127.0.0.0/8",)))
    assert error.kind == "egress_denied"
    assert "denied by EgressPolicy.deny '127.0.0.0/8'" in error.reason
    error = await _fail(Http(url=url), _egress(deny=("127.0.0.0/8",)))
    assert error.kind == "egress_denied"
    assert server.requests == []


@pytest.mark.anyio
async def test_allowlist_refuses_everything_else(server: Server) -> None:
    """With allow set, loopback is refused unless listed (by name or by network)."""
    url = server.route("/x", body=b"ok")
    error = await _fail(Http(url=url), _egress(allow=("example.invalid",)))
    assert error.kind == "egress_denied"
    assert "refused to connect to 127.0.0.1 (not in EgressPolicy.allow)" in error.reason
    assert server.requests == []
    assert (await _run(Http(url=url), _egress(allow=("127.0.0.0/8",)))).stdout == "ok"
    named = server.url("/x", host="localhost")
    assert (await _run(Http(url=named), _egress(allow=("localhost",)))).stdout == "ok"


@pytest.mark.anyio
async def test_loopback_allowed_by_default(server: Server) -> None:
    """The default policy reaches loopback by address and by the name localhost."""
    server.route("/x", body=b"ok")
    assert (await _run(Http(url=server.url("/x", host="localhost")))).stdout == "ok"
    assert (await _run(Http(url=server.url("/x")))).stdout == "ok"


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["ftp://127.0.0.1/file", "file:///etc/passwd"])
async def test_non_http_scheme_refused(url: str) -> None:
    """Only http and https URLs are requested."""
    error = await _fail(Http(url=url))
    assert error.kind == "egress_denied"
    assert "only http and https" in error.reason
    assert error.retryable is False


@pytest.mark.anyio
@pytest.mark.parametrize("send_length", [True, False])
async def test_response_over_limit_refused(server: Server, send_length: bool) -> None:
    """A body over max_response_bytes fails, whether or not its length is declared."""
    url = server.route("/big", body=b"x" * 5000, send_length=send_length)
    error = await _fail(Http(url=url), EngineSettings(max_response_bytes=1000))
    assert error.kind == "response_too_large"
    assert error.retryable is False
    assert "1000 bytes" in error.reason
    ok = await _run(Http(url=url), EngineSettings(max_response_bytes=5000))
    assert ok.metrics["response_bytes"] == 5000


@pytest.mark.anyio
async def test_decompressed_size_is_capped(server: Server) -> None:
    """The cap applies to the decoded body, so a small gzip bomb is refused too."""
    bomb = gzip.compress(b"0" * 200_000)
    url = server.route("/bomb", body=bomb, headers={"Content-Encoding": "gzip"})
    error = await _fail(Http(url=url), EngineSettings(max_response_bytes=len(bomb) * 10))
    assert error.kind == "response_too_large"


@pytest.mark.anyio
async def test_closed_port_is_retryable_connection_failure() -> None:
    """Nothing listening: a retryable connection failure naming the host, no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await _fail(Http(url=f"http://127.0.0.1:{port}/x"))
    assert error.kind == "connection"
    assert error.retryable is True
    assert f"connection to 127.0.0.1:{port}" in error.reason
    assert "Traceback" not in error.reason


@pytest.mark.anyio
async def test_slow_response_is_timeout_failure(server: Server) -> None:
    """A server slower than http_timeout_seconds fails the attempt as a retryable timeout."""
    url = server.route("/slow", delay=2, body=b"late")
    started = time.monotonic()
    error = await _fail(Http(url=url), EngineSettings(http_timeout_seconds=0.3))
    assert time.monotonic() - started < 1.5
    assert error.kind == "timeout"
    assert error.retryable is True
    assert "ReadTimeout" in error.reason
    assert url in error.reason


@pytest.mark.anyio
async def test_cancel_aborts_request_promptly(server: Server) -> None:
    """Cancelling the task's scope aborts a slow request within a second."""
    url = server.route("/slow", delay=2, body=b"late")
    started = time.monotonic()
    async with _context(Http(url=url)) as ctx:
        with anyio.move_on_after(0.2) as scope:
            await HttpHandler()(ctx)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 1


@pytest.mark.anyio
async def test_secret_echoed_by_server_redacted(server: Server) -> None:
    """A secret the server echoes back is *** in stdout and data."""
    url = server.route("/echo", echo=True, headers={"Content-Type": "application/json"})
    async with _context(Http(url=url, method="POST", body=f"token={SECRET}")) as ctx:
        ctx.redactor.add(SECRET)
        output = await HttpHandler()(ctx)
    assert server.requests[0].body == f"token={SECRET}".encode()
    assert SECRET not in (output.stdout or "")
    assert "token=***" in (output.stdout or "")
    assert output.data["body"] == "token=***"


@pytest.mark.anyio
async def test_secret_in_url_not_in_reason(server: Server) -> None:
    """Neither a secret in the query nor the URL's password appears in a failure reason."""
    url = f"http://bob:hunter2@127.0.0.1:{server.port}/missing?token={SECRET}"
    async with _context(Http(url=url)) as ctx:
        ctx.redactor.add(SECRET)
        with pytest.raises(TaskExecutionFailed) as info:
            await HttpHandler()(ctx)
    reason = info.value.reason
    assert SECRET not in reason
    assert "hunter2" not in reason
    assert "bob" not in reason
    assert reason == f"HTTP 404 Not Found from GET http://127.0.0.1:{server.port}/missing?token=***"


@pytest.mark.anyio
async def test_invalid_header_is_request_failure(server: Server) -> None:
    """A header value httpx cannot encode fails as a non-retryable request error."""
    url = server.route("/x")
    error = await _fail(Http(url=url, headers={"X-Name": "naïve ☃"}))
    assert error.kind == "request"
    assert error.retryable is False
    assert server.requests == []


def test_handler_is_busy() -> None:
    """The handler does real work, so a FakeClock must not jump ahead while it runs."""
    assert HttpHandler.busy is True
