"""Notifications against a real SMTP server and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import attrs
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

import dagflow
from dagflow._approval.notify import (
    EmailNotifier,
    Notification,
    NotificationError,
    Notifier,
    SmtpSettings,
    WebhookNotifier,
    deliver,
    notifications_for,
    shown_url,
)
from dagflow._errors import WorkflowError
from dagflow._events import ApprovalRequired, WorkflowFailed
from dagflow._execute._egress import make_http_client, user_agent
from dagflow._models import (
    Command,
    NotificationConfig,
    TaskDefinition,
    TaskState,
    TaskStatus,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowState,
)
from dagflow._serde import make_converter
from dagflow._settings import EgressPolicy, EngineSettings

PASSWORD = "hunter2-Sup3rSecret"
TOKEN = "tok-9f8e7d6c5b4a"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
INSTANCE_ID = "1a2b3c4d-0000-4000-8000-00000000abcd"


# --------------------------------------------------------------------------- fixtures


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class Mail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def body(self) -> str:
        """The plain-text body."""
        part = self.message.get_body(("plain",))
        assert isinstance(part, EmailMessage)
        return str(part.get_content())


@attrs.define
class Inbox:
    """An aiosmtpd handler that keeps every message."""

    mails: list[Mail] = attrs.Factory(list)
    logins: list[str] = attrs.Factory(list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(Mail(envelope.mail_from, tuple(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = auth_data.login == b"bot" and auth_data.password == PASSWORD.encode()
        self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)


@attrs.frozen
class SmtpServer:
    """A running aiosmtpd server and what it received."""

    port: int
    inbox: Inbox

    def settings(self, **kwargs: Any) -> SmtpSettings:
        """SmtpSettings pointing at this server."""
        return SmtpSettings(host="127.0.0.1", port=self.port, sender="dagflow@ci.example",
                            timeout_seconds=5, **kwargs)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 that accepts AUTH (without TLS) as bot/PASSWORD."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(),
                            authenticator=inbox.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield SmtpServer(controller.port, inbox)
    finally:
        controller.stop()


@attrs.frozen
class Hit:
    """One request the HTTP server received."""

    path: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class HttpServer:
    """A real HTTP server in a thread; each path answers from a script of statuses."""

    port: int = 0
    scripts: dict[str, list[int]] = attrs.Factory(dict)
    delay: float = 0.0
    hits: list[Hit] = attrs.Factory(list)
    stop: threading.Event = attrs.Factory(threading.Event)

    def route(self, path: str, *statuses: int) -> str:
        """Answer ``path`` with these statuses in turn (the last one repeats); its URL."""
        self.scripts[path.split("?", 1)[0]] = list(statuses)
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def http() -> Iterator[HttpServer]:
    """A recording HTTP server on 127.0.0.1 with a free port."""
    state = HttpServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            state.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()},
                                  body))
            script = state.scripts.get(path, [404])
            status = script.pop(0) if len(script) > 1 else script[0]
            if state.delay:
                state.stop.wait(state.delay)  # woken at teardown
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the client gave up (timeout tests)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Quiet(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    httpd = Quiet(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@attrs.define
class Sleeps:
    """An injected ``sleep`` that records its delays and does not wait."""

    delays: list[float] = attrs.Factory(list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.lowlevel.checkpoint()


@asynccontextmanager
async def _webhook(settings: EngineSettings | None = None,
                   **kwargs: Any) -> AsyncIterator[tuple[WebhookNotifier, Sleeps]]:
    """A WebhookNotifier on a guarded client (closed afterwards) and its recorded sleeps."""
    client = make_http_client(settings or EngineSettings())
    sleeps = Sleeps()

    async def factory() -> httpx.AsyncClient:
        return client

    try:
        yield WebhookNotifier(factory, sleep=sleeps, **kwargs), sleeps
    finally:
        await client.aclose()


def _instance(state: WorkflowState = WorkflowState.COMPLETED, error: str | None = None,
              **task_states: TaskStatus) -> WorkflowInstance:
    definition = WorkflowDefinition(
        id="deploy", name="deploy-with-approval",
        tasks=(TaskDefinition(id="build", type=Command(command="true")),))
    task_states = task_states or {"build": TaskStatus.COMPLETED, "test": TaskStatus.COMPLETED,
                                  "lint": TaskStatus.SKIPPED}
    return WorkflowInstance(
        id=INSTANCE_ID, workflow_id="deploy", definition=definition, state=state,
        created_at=T0, started_at=T0, completed_at=T0 + dt.timedelta(seconds=75),
        error=error,
        task_states={k: TaskState(task_id=k, state=v) for k, v in task_states.items()})


def _notification(**kwargs: Any) -> Notification:
    fields: dict[str, Any] = {
        "kind": "failed", "instance_id": INSTANCE_ID, "workflow_id": "deploy",
        "workflow_name": "deploy-with-approval", "state": "Failed", "at": T0,
        "error": "task build: exit code 2", "recipients": ("ops@example.com",),
    }
    fields.update(kwargs)
    return Notification(**fields)


# --------------------------------------------------------------------------- email


@pytest.mark.anyio
async def test_completion_email_reaches_recipients(smtp: SmtpServer) -> None:
    """A completed run emails on_completion with subject, state, duration and task counts."""
    config = NotificationConfig(on_completion=("a@example.com", "b@example.com"),
                                on_failure=("ops@example.com",))
    note = notifications_for(_instance(), config, kind="completed")
    assert note is not None
    await EmailNotifier(smtp.settings()).notify(note)
    [mail] = smtp.inbox.mails
    assert mail.rcpt_tos == ("a@example.com", "b@example.com")
    assert mail.mail_from == "dagflow@ci.example"
    assert mail.message["Subject"] == (
        "[dagflow] deploy-with-approval Completed (instance 1a2b3c4d...)")
    assert mail.message["To"] == "a@example.com, b@example.com"
    body = mail.body
    assert "State:     Completed" in body
    assert "Duration:  1 min 15 s" in body
    assert "Tasks:     Completed 2, Skipped 1" in body
    assert f"dagflow status {INSTANCE_ID}" in body
    assert "Error:" not in body


@pytest.mark.anyio
async def test_failure_email_names_the_error(smtp: SmtpServer) -> None:
    """A failed run emails on_failure only, with the error and the failed tasks."""
    config = NotificationConfig(on_completion=("a@example.com",),
                                on_failure=("ops@example.com",))
    instance = _instance(WorkflowState.FAILED, "task build: exit code 2",
                         build=TaskStatus.FAILED, test=TaskStatus.CANCELLED)
    note = notifications_for(instance, config, kind="failed")
    assert note is not None
    await EmailNotifier(smtp.settings()).notify(note)
    [mail] = smtp.inbox.mails
    assert mail.rcpt_tos == ("ops@example.com",)
    assert mail.message["Subject"] == (
        "[dagflow] deploy-with-approval Failed (instance 1a2b3c4d...)")
    assert "State:     Failed" in mail.body
    assert "Error:     task build: exit code 2" in mail.body
    assert "Failed:    build" in mail.body
    assert "Tasks:     Cancelled 1, Failed 1" in mail.body


@pytest.mark.anyio
async def test_email_logs_in_with_username_and_password(smtp: SmtpServer) -> None:
    """With a username and the right password the server accepts the login and the mail."""
    await EmailNotifier(smtp.settings(username="bot", password=PASSWORD)).notify(
        _notification())
    assert smtp.inbox.logins == ["bot"]
    assert len(smtp.inbox.mails) == 1


@pytest.mark.anyio
async def test_refused_login_error_hides_the_password(smtp: SmtpServer) -> None:
    """A refused login raises NotificationError naming the user, never the password."""
    wrong = "Wr0ng-" + PASSWORD
    with pytest.raises(NotificationError) as info:
        await EmailNotifier(smtp.settings(username="nobody", password=wrong)).notify(
            _notification())
    text = str(info.value)
    assert "login to 127.0.0.1" in text and "'nobody'" in text and "535" in text
    assert wrong not in text and PASSWORD not in text
    assert isinstance(info.value, WorkflowError)
    assert info.value.channel == "email" and info.value.target == "ops@example.com"
    assert smtp.inbox.mails == []


@pytest.mark.anyio
async def test_smtp_server_down_raises_without_password() -> None:
    """A closed SMTP port gives NotificationError with the address, not the password."""
    settings = SmtpSettings(host="127.0.0.1", port=_free_port(), username="bot",
                            password=PASSWORD, timeout_seconds=2)
    with pytest.raises(NotificationError) as info:
        await EmailNotifier(settings).notify(_notification())
    assert "cannot send through 127.0.0.1:" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(settings) and "'***'" in repr(settings)


def test_engine_settings_repr_shows_no_secret() -> None:
    """An engine's settings may be logged: their repr hides the checkpoint key, the SMTP
    password and the connection URLs (which may carry passwords), and names the rest."""
    settings = dagflow.EngineSettings(
        checkpoint_key="k3y-s3cret", smtp=SmtpSettings(host="mail", username="bot",
                                                      password=PASSWORD),
        connections={"warehouse": f"postgresql://bot:{PASSWORD}@db/wh"})
    shown = repr(settings)
    assert "k3y-s3cret" not in shown and PASSWORD not in shown
    assert "checkpoint_key='***'" in shown and "connections=['warehouse']" in shown
    assert settings.connections["warehouse"].endswith("@db/wh")  # the value is kept


@pytest.mark.anyio
async def test_email_skipped_without_recipients() -> None:
    """No recipients (or an approval_required notification) sends nothing and succeeds."""
    notifier = EmailNotifier(SmtpSettings(host="127.0.0.1", port=_free_port()))
    await notifier.notify(_notification(recipients=()))
    await notifier.notify(_notification(kind="approval_required"))
    assert not notifier.accepts(_notification(recipients=()))


@pytest.mark.anyio
async def test_header_injection_is_refused() -> None:
    """A line break in a recipient is a NotificationError, not an extra header."""
    notifier = EmailNotifier(SmtpSettings(host="127.0.0.1", port=_free_port()))
    with pytest.raises(NotificationError, match="cannot build the email"):
        await notifier.notify(_notification(recipients=("a@example.com\r\nBcc: x@evil",)))


def test_smtp_settings_from_env_reads_every_variable() -> None:
    """Every DAGFLOW_SMTP_* variable is read; none without a host."""
    assert SmtpSettings.from_env({}) is None
    assert SmtpSettings.from_env({"DAGFLOW_SMTP_HOST": "  ", "DAGFLOW_SMTP_PORT": "x"}) is None
    settings = SmtpSettings.from_env({
        "DAGFLOW_SMTP_HOST": "mail.example.com", "DAGFLOW_SMTP_PORT": "587",
        "DAGFLOW_SMTP_SENDER": "ci@example.com", "DAGFLOW_SMTP_USERNAME": "bot",
        "DAGFLOW_SMTP_PASSWORD": PASSWORD, "DAGFLOW_SMTP_STARTTLS": "Yes",
        "DAGFLOW_SMTP_SSL": "0"})
    assert settings == SmtpSettings(host="mail.example.com", port=587, sender="ci@example.com",
                                    username="bot", password=PASSWORD, starttls=True)
    assert PASSWORD not in repr(settings)
    assert SmtpSettings.from_env({"DAGFLOW_SMTP_HOST": "m"}) == SmtpSettings(host="m")
    ssl_only = SmtpSettings.from_env({"DAGFLOW_SMTP_HOST": "m", "DAGFLOW_SMTP_SSL": "true"})
    assert ssl_only is not None and ssl_only.ssl and ssl_only.port == 465


@pytest.mark.parametrize(("env", "named"), [
    ({"DAGFLOW_SMTP_PORT": "smtp"}, "DAGFLOW_SMTP_PORT"),
    ({"DAGFLOW_SMTP_PORT": "70000"}, "DAGFLOW_SMTP_PORT"),
    ({"DAGFLOW_SMTP_STARTTLS": "maybe"}, "DAGFLOW_SMTP_STARTTLS"),
    ({"DAGFLOW_SMTP_SSL": "2"}, "DAGFLOW_SMTP_SSL"),
    ({"DAGFLOW_SMTP_SSL": "1", "DAGFLOW_SMTP_STARTTLS": "1"}, "DAGFLOW_SMTP_STARTTLS"),
    ({"DAGFLOW_SMTP_PASSWORD": PASSWORD}, "DAGFLOW_SMTP_USERNAME"),
])
def test_smtp_settings_from_env_rejects_bad_values(env: dict[str, str], named: str) -> None:
    """A bad value is a ValueError naming the variable (and never quoting the password)."""
    with pytest.raises(ValueError, match=named) as info:
        SmtpSettings.from_env({"DAGFLOW_SMTP_HOST": "mail.example.com", **env})
    assert PASSWORD not in str(info.value)


# --------------------------------------------------------------------------- webhook


@pytest.mark.anyio
async def test_webhook_posts_every_field_and_header(http: HttpServer) -> None:
    """The JSON body carries every field and the event; the headers are set."""
    url = http.route("/hook", 204)
    event = WorkflowFailed(seq=7, instance_id=INSTANCE_ID, timestamp=T0, error="boom")
    note = _notification(webhook_url=url, event=event, summary={"task_count": 3})
    async with _webhook() as (notifier, sleeps):
        await notifier.notify(note)
    [hit] = http.hits
    assert json.loads(hit.body) == {
        "kind": "failed", "instance_id": INSTANCE_ID, "workflow_id": "deploy",
        "workflow_name": "deploy-with-approval", "state": "Failed",
        "error": "task build: exit code 2", "at": "2024-05-01T12:00:00+00:00",
        "summary": {"task_count": 3},
        "event": {"type": "WorkflowFailed", "seq": 7, "instance_id": INSTANCE_ID,
                  "timestamp": "2024-05-01T12:00:00+00:00", "error": "boom"},
    }
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["user-agent"] == user_agent()
    assert hit.headers["idempotency-key"] == f"{INSTANCE_ID}:failed:7"
    assert sleeps.delays == []


@pytest.mark.anyio
async def test_webhook_retries_503_then_succeeds(http: HttpServer) -> None:
    """A 503 is retried after the backoff with the same Idempotency-Key; the 200 ends it."""
    note = _notification(webhook_url=http.route("/flaky", 503, 503, 200))
    async with _webhook(attempts=4, backoff_seconds=0.5) as (notifier, sleeps):
        await notifier.notify(note)
    assert len(http.hits) == 3
    assert {hit.headers["idempotency-key"] for hit in http.hits} == {f"{INSTANCE_ID}:failed:0"}
    assert len({hit.body for hit in http.hits}) == 1
    assert sleeps.delays == [0.5, 1.0]


@pytest.mark.anyio
async def test_dead_webhook_fails_after_every_attempt() -> None:
    """A closed port is retried with doubling backoff, then a NotificationError names why."""
    url = f"http://127.0.0.1:{_free_port()}/hook"
    async with _webhook() as (notifier, sleeps):
        with pytest.raises(NotificationError) as info:
            await notifier.notify(_notification(webhook_url=url))
    assert sleeps.delays == [1.0, 2.0]
    assert "failed after 3 attempts: ConnectError" in str(info.value)
    assert info.value.channel == "webhook" and info.value.target == url


@pytest.mark.anyio
async def test_webhook_500_forever_fails_without_leaking_the_query(http: HttpServer) -> None:
    """A 500 on every attempt fails naming the status; the URL's query string is not shown."""
    url = http.route(f"/hook?token={TOKEN}", 500)
    async with _webhook(attempts=2) as (notifier, sleeps):
        with pytest.raises(NotificationError) as info:
            await notifier.notify(_notification(webhook_url=url))
    assert len(http.hits) == 2 and sleeps.delays == [1.0]
    text = str(info.value)
    assert f"http://127.0.0.1:{http.port}/hook failed after 2 attempts: HTTP 500" in text
    assert TOKEN not in text and TOKEN not in info.value.target


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "tries"), [(400, 1), (404, 1), (408, 3), (429, 3)])
async def test_webhook_retries_only_transient_4xx(http: HttpServer, status: int,
                                                  tries: int) -> None:
    """400 and 404 fail at once; 408 and 429 are tried again."""
    note = _notification(webhook_url=http.route("/hook", status))
    async with _webhook() as (notifier, _):
        with pytest.raises(NotificationError, match=f"HTTP {status}"):
            await notifier.notify(note)
    assert len(http.hits) == tries


@pytest.mark.anyio
async def test_webhook_to_metadata_address_is_refused(http: HttpServer) -> None:
    """The egress guard refuses 169.254.169.254 and denied hosts before connecting."""
    async with _webhook() as (notifier, sleeps):
        with pytest.raises(NotificationError) as info:
            await notifier.notify(_notification(webhook_url="http://169.254.169.254/latest"))
    assert "refused to connect to 169.254.169.254" in str(info.value)
    assert "EgressPolicy" in str(info.value) and sleeps.delays == []
    denied = EngineSettings(egress=EgressPolicy(deny=("127.0.0.1",)))
    async with _webhook(denied) as (notifier, _):
        with pytest.raises(NotificationError, match=r"refused to connect .*EgressPolicy\.deny"):
            await notifier.notify(_notification(webhook_url=http.route("/hook", 200)))
    assert http.hits == []


@pytest.mark.anyio
async def test_webhook_refuses_other_schemes() -> None:
    """A file:// webhook URL is refused without a request."""
    async with _webhook() as (notifier, _):
        with pytest.raises(NotificationError, match="only http and https"):
            await notifier.notify(_notification(webhook_url="file:///etc/passwd"))


@pytest.mark.anyio
async def test_webhook_attempt_is_bounded_by_its_timeout(http: HttpServer) -> None:
    """A server slower than timeout_seconds counts as a failed attempt."""
    http.delay = 5
    note = _notification(webhook_url=http.route("/slow", 200))
    async with _webhook(attempts=2, timeout_seconds=0.2) as (notifier, _):
        with anyio.fail_after(3):
            with pytest.raises(NotificationError, match=r"timed out after 0\.2 s"):
                await notifier.notify(note)
    assert len(http.hits) == 2


def test_shown_url_drops_credentials_query_and_fragment() -> None:
    """Only scheme://host[:port]/path is ever shown."""
    assert shown_url(f"https://u:{PASSWORD}@h.example:8443/a/b?t={TOKEN}#x") == (
        "https://h.example:8443/a/b")
    assert shown_url("http://[::1]/x") == "http://[::1]/x"
    assert shown_url("http://[::1/x") == "<invalid URL>"


# --------------------------------------------------------------------------- delivery


@attrs.define
class Recorder:
    """A host notifier that records what it was given."""

    seen: list[Notification] = attrs.Factory(list)
    channel: str = "slack"

    async def notify(self, notification: Notification) -> None:
        self.seen.append(notification)

    def target(self, notification: Notification) -> str:
        return "#ops"


class Broken:
    """A host notifier that always fails, quoting the webhook URL it should not."""

    async def notify(self, notification: Notification) -> None:
        raise RuntimeError(f"cannot reach {notification.webhook_url}")


class Hanging:
    """A host notifier that never returns."""

    async def notify(self, notification: Notification) -> None:
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_deliver_runs_every_notifier_and_reports_each(
        smtp: SmtpServer, http: HttpServer, caplog: pytest.LogCaptureFixture) -> None:
    """Failing notifiers neither raise nor stop the others; each result is reported."""
    note = _notification(webhook_url=http.route(f"/hook?token={TOKEN}", 500))
    recorder = Recorder()
    results: list[tuple[str, str, str | None]] = []

    async def on_result(channel: str, target: str, error: str | None) -> None:
        results.append((channel, target, error))

    async with _webhook(attempts=2) as (webhook, _):
        notifiers: list[Notifier] = [EmailNotifier(smtp.settings()), webhook, recorder, Broken()]
        await deliver(notifiers, note, on_result=on_result)
    by_channel = {channel: (target, error) for channel, target, error in results}
    assert set(by_channel) == {"email", "webhook", "slack", "Broken"}
    assert by_channel["email"] == ("ops@example.com", None)
    assert by_channel["slack"] == ("#ops", None)
    target, error = by_channel["webhook"]
    assert target == f"http://127.0.0.1:{http.port}/hook"
    assert error is not None and "HTTP 500" in error
    assert by_channel["Broken"] == ("", f"cannot reach http://127.0.0.1:{http.port}/hook")
    assert len(smtp.inbox.mails) == 1 and recorder.seen == [note]
    assert "webhook notification" in caplog.text and "Broken notification" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in repr(results)


@pytest.mark.anyio
async def test_deliver_skips_notifiers_with_nothing_to_do() -> None:
    """Without recipients or a URL, email and webhook are not tried and not reported."""
    results: list[tuple[str, str, str | None]] = []
    email_notifier = EmailNotifier(SmtpSettings(host="127.0.0.1", port=_free_port()))
    async with _webhook() as (webhook, _):
        await deliver([email_notifier, webhook], _notification(recipients=()),
                      on_result=lambda *result: results.append(result))
    assert results == []


@pytest.mark.anyio
async def test_deliver_survives_a_failing_on_result_and_a_hanging_notifier(
        caplog: pytest.LogCaptureFixture) -> None:
    """A raising on_result is logged; a hanging notifier is cut off at timeout_seconds."""
    calls: list[tuple[str, str | None]] = []

    def on_result(channel: str, target: str, error: str | None) -> None:
        calls.append((channel, error))
        raise RuntimeError("store is down")

    with anyio.fail_after(3):
        await deliver([Hanging(), Recorder()], _notification(), on_result=on_result,
                      timeout_seconds=0.1)
    assert sorted(calls) == [("Hanging", "Hanging notification timed out after 0.1 s"),
                             ("slack", None)]
    assert "store is down" in caplog.text


@pytest.mark.anyio
async def test_password_never_logged_nor_reported(
        smtp: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    """A refused SMTP login is logged and reported without the password in any form."""
    caplog.set_level(logging.DEBUG, logger="dagflow")
    results: list[tuple[str, str, str | None]] = []
    settings = smtp.settings(username="bot", password=PASSWORD + "x")
    await deliver([EmailNotifier(settings)], _notification(),
                  on_result=lambda *result: results.append(result))
    [(channel, _, error)] = results
    assert channel == "email" and error is not None and "refused" in error
    dagflow_logs = "\n".join(r.getMessage() for r in caplog.records if r.name == "dagflow")
    assert "login to 127.0.0.1" in dagflow_logs
    assert PASSWORD not in dagflow_logs and PASSWORD not in error


# --------------------------------------------------------------------------- building


def test_notifications_for_picks_recipients_by_kind() -> None:
    """on_completion for completed, on_failure for failure kinds, nobody for approvals."""
    config = NotificationConfig(on_completion=("done@x",), on_failure=("ops@x",),
                                webhook_url="http://hook.example/n")
    instance = _instance()
    for kind, recipients in [("completed", ("done@x",)), ("failed", ("ops@x",)),
                             ("cancelled", ("ops@x",)), ("rolled_back", ("ops@x",)),
                             ("approval_required", ())]:
        note = notifications_for(instance, config, kind=kind)  # type: ignore[arg-type]
        assert note is not None and note.kind == kind
        assert note.recipients == recipients
        assert note.webhook_url == "http://hook.example/n"
    assert notifications_for(instance, None, kind="completed") is None
    assert notifications_for(instance, NotificationConfig(), kind="failed") is None
    emails_only = NotificationConfig(on_completion=("done@x",))
    assert notifications_for(instance, emails_only, kind="failed") is None
    assert notifications_for(instance, emails_only, kind="approval_required") is None


def test_notifications_for_summarises_the_instance() -> None:
    """Counts by state leave out loop iterations; duration and error come from the instance."""
    instance = _instance(WorkflowState.FAILED, "task b failed", a=TaskStatus.COMPLETED,
                         b=TaskStatus.FAILED, each=TaskStatus.COMPLETED,
                         **{"each[0]": TaskStatus.COMPLETED, "each[1]": TaskStatus.FAILED})
    event = WorkflowFailed(seq=9, instance_id=INSTANCE_ID, timestamp=T0, error="ignored")
    note = notifications_for(instance, NotificationConfig(on_failure=("ops@x",)),
                             kind="failed", event=event)
    assert note is not None
    assert note.summary == {"tasks": {"Completed": 2, "Failed": 1}, "task_count": 3,
                            "failed_tasks": ["b"], "duration_seconds": 75.0}
    assert note.error == "task b failed" and note.state == "Failed"
    assert note.at == T0 and note.event is event
    assert note.workflow_name == "deploy-with-approval" and note.workflow_id == "deploy"
    assert note.idempotency_key == f"{INSTANCE_ID}:failed:9"


def test_approval_required_summary_names_the_gate() -> None:
    """An ApprovalRequired event puts the approval id and approvers in the summary."""
    instance = attrs.evolve(_instance(WorkflowState.WAITING_APPROVAL), completed_at=None)
    event = ApprovalRequired(seq=4, instance_id=INSTANCE_ID, timestamp=T0 + dt.timedelta(
        seconds=30), task_id="gate", approvers=("lead@x",), approval_id="ap-123",
        expires_at=T0 + dt.timedelta(hours=1), min_approvals=1)
    config = NotificationConfig(webhook_url="http://hook.example/n")
    note = notifications_for(instance, config, kind="approval_required", event=event)
    assert note is not None and note.error is None and note.recipients == ()
    assert note.summary["approval_id"] == "ap-123"
    assert note.summary["approvers"] == ["lead@x"]
    assert note.summary["task_id"] == "gate"
    assert note.summary["expires_at"] == "2024-05-01T13:00:00+00:00"
    assert note.summary["duration_seconds"] == 30.0
    payload = WebhookNotifier(lambda: None, converter=make_converter()).payload(  # type: ignore[arg-type,return-value]
        note)
    assert json.loads(json.dumps(payload))["event"]["approval_id"] == "ap-123"


def test_notifiers_fit_the_protocol_and_kinds_are_checked() -> None:
    """The built-in and host notifiers are Notifiers; an unknown kind is refused."""
    settings = SmtpSettings(host="localhost")
    notifiers: list[Notifier] = [EmailNotifier(settings), Recorder(), Broken()]
    assert all(isinstance(n, Notifier) for n in notifiers)
    assert not isinstance(object(), Notifier)
    with pytest.raises(ValueError, match="kind"):
        _notification(kind="exploded")
    with pytest.raises(ValueError, match="starttls or ssl"):
        SmtpSettings(host="h", starttls=True, ssl=True)
