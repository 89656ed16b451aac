"""Notifications: an email or a webhook POST when a run ends or a gate opens.

The engine builds one :class:`Notification` per notable moment with
:func:`notifications_for` and hands it to :func:`deliver`, which runs every notifier at
once and reports each result (the engine records them as ``NotificationSent`` and
``NotificationFailed`` events). A notification failure is logged and reported; it never
fails the workflow.

Two notifiers come with dagflow:

- :class:`EmailNotifier` sends a plain-text email over SMTP (:class:`SmtpSettings`, or
  ``DAGFLOW_SMTP_*`` through :meth:`SmtpSettings.from_env`) to the ``on_completion`` or
  ``on_failure`` addresses of the workflow's ``notification_config``.
- :class:`WebhookNotifier` POSTs the notification as JSON to ``webhook_url``, through the
  engine's guarded HTTP client (so the egress policy applies), retrying transient failures
  with the same ``Idempotency-Key``.

A host application adds its own channel with any class that has ``async def
notify(self, notification)`` and raises to report a failure. Two optional members
refine what :func:`deliver` reports: ``channel`` (a string; default: the class name) and
``target(notification) -> str`` (where it went; default: ``""``); an optional
``accepts(notification) -> bool`` skips notifications it has nothing to do with, so that
no event is recorded for them::

    class SlackNotifier:
        channel = "slack"

        def __init__(self, hook_url: str) -> None:
            self.hook_url = hook_url

        def accepts(self, notification: Notification) -> bool:
            return notification.kind in ("failed", "approval_required")

        async def notify(self, notification: Notification) -> None:
            text = f"{notification.workflow_name}: {notification.state}"
            async with httpx.AsyncClient() as client:
                response = await client.post(self.hook_url, json={"text": text})
                response.raise_for_status()  # raising reports NotificationFailed

    engine = Engine(notifiers=[SlackNotifier("https://hooks.slack.com/services/...")])
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.utils
import inspect
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

import anyio
import attrs

from .._errors import WorkflowError
from .._events import ApprovalRequired, WorkflowEvent, event_to_dict
from .._models import NotificationConfig, WorkflowInstance
from .._serde import make_converter
from .._settings import SmtpSettings

if TYPE_CHECKING:  # imported where they are used: most runs send no notification
    import smtplib
    from email.message import EmailMessage

    import httpx

__all__ = [
    "EMAIL_KINDS",
    "KINDS",
    "EmailNotifier",
    "Notification",
    "NotificationError",
    "NotificationKind",
    "Notifier",
    "SmtpSettings",
    "WebhookNotifier",
    "deliver",
    "notifications_for",
    "shown_url",
]

logger = logging.getLogger("dagflow")

NotificationKind = Literal["completed", "failed", "cancelled", "rolled_back", "approval_required"]
KINDS: tuple[NotificationKind, ...] = (
    "completed", "failed", "cancelled", "rolled_back", "approval_required",
)
#: The kinds that are emailed (an approval gate is announced by webhook only).
EMAIL_KINDS: tuple[NotificationKind, ...] = ("completed", "failed", "cancelled", "rolled_back")
_TITLES = {"completed": "Completed", "failed": "Failed", "cancelled": "Cancelled",
           "rolled_back": "Rolled back", "approval_required": "Approval required"}
# 408 Request Timeout, 425 Too Early, 429 Too Many Requests: worth another try
_RETRYABLE_4XX = frozenset({408, 425, 429})
# the longest a Retry-After makes a webhook wait: with the default 3 attempts of at most
# 10 s each, a delivery stays inside the minute the engine gives each notifier
_WEBHOOK_RETRY_AFTER_CAP = 10.0


class NotificationError(WorkflowError):
    """A notification could not be delivered.

    Attributes:
        channel: ``"email"``, ``"webhook"``, or a host notifier's channel.
        target: The recipients, or the URL without its query string.
    """

    def __init__(self, message: str, *, channel: str, target: str) -> None:
        self.channel = channel
        self.target = target
        super().__init__(message)


@attrs.frozen(kw_only=True)
class Notification:
    """What happened to a workflow instance, for people and other systems.

    Attributes:
        kind: ``completed``, ``failed``, ``cancelled``, ``rolled_back`` or
            ``approval_required``.
        instance_id: The workflow instance.
        workflow_id: Its definition's id.
        workflow_name: Its definition's name.
        state: The instance's state (``"Failed"``).
        error: Why it failed or was cancelled, if it did.
        at: When it happened (UTC).
        event: The event that caused it, if one.
        summary: JSON-ready details: ``tasks`` (counts by state), ``task_count``,
            ``failed_tasks``, ``duration_seconds``, and for ``approval_required`` the
            gate's ``approval_id``, ``task_id``, ``approvers``, ``min_approvals`` and
            ``expires_at``.
        recipients: Email addresses to notify.
        webhook_url: Where to POST it, if anywhere.
    """

    kind: NotificationKind = attrs.field(validator=attrs.validators.in_(KINDS))
    instance_id: str
    workflow_id: str
    workflow_name: str
    state: str
    at: dt.datetime
    error: str | None = None
    event: WorkflowEvent | None = None
    summary: dict[str, Any] = attrs.Factory(dict)
    recipients: tuple[str, ...] = ()
    webhook_url: str | None = None

    @property
    def idempotency_key(self) -> str:
        """``instance_id:kind:seq`` (seq 0 without an event): the same on every retry."""
        seq = self.event.seq if self.event is not None else 0
        return f"{self.instance_id}:{self.kind}:{seq}"


@runtime_checkable
class Notifier(Protocol):
    """A channel notifications go out on (email, webhook, a host's own)."""

    async def notify(self, notification: Notification) -> None:
        """Deliver ``notification``; raise (any ``Exception``) to report a failure."""
        ...


# --------------------------------------------------------------------------- email


@attrs.frozen
class EmailNotifier:
    """Emails the recipients of a ``completed``, ``failed``, ``cancelled`` or
    ``rolled_back`` notification, in plain text, over SMTP.

    Args:
        smtp: The server to send through.
    """

    channel: ClassVar[str] = "email"
    smtp: SmtpSettings

    def accepts(self, notification: Notification) -> bool:
        """Whether there is an email to send: an emailed kind with recipients."""
        return notification.kind in EMAIL_KINDS and bool(notification.recipients)

    def target(self, notification: Notification) -> str:
        """The recipients, comma-separated."""
        return ", ".join(notification.recipients)

    async def notify(self, notification: Notification) -> None:
        """Send the email (skipped when :meth:`accepts` is false).

        Raises:
            NotificationError: The message could not be built, or the server refused it or
                could not be reached; the message never contains the password.
        """
        if not self.accepts(notification):
            return
        try:
            message = _email_message(notification, self.smtp.sender)
        except (ValueError, TypeError) as exc:  # e.g. a line break in an address
            raise self._error(f"cannot build the email: {exc}", notification) from None
        # abandoned on cancel: smtplib cannot be interrupted, but its own timeout ends it
        await anyio.to_thread.run_sync(self._send, message, notification,
                                       abandon_on_cancel=True)

    def _send(self, message: EmailMessage, notification: Notification) -> None:
        import smtplib  # here: smtplib and ssl are slow to import, and most runs send none
        import ssl

        smtp = self.smtp
        where = f"{smtp.host}:{smtp.port}"
        try:
            conn: smtplib.SMTP
            if smtp.ssl:
                conn = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_seconds,
                                        context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds)
            with conn:
                if smtp.starttls:
                    conn.starttls(context=ssl.create_default_context())
                if smtp.username is not None:
                    conn.login(smtp.username, smtp.password or "")
                refused = conn.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            reason = f"login to {where} as {smtp.username!r} refused: {_smtp_reply(exc)}"
            raise self._error(reason, notification) from None
        except smtplib.SMTPRecipientsRefused as exc:
            reason = f"{where} refused every recipient: {_refusals(exc.recipients)}"
            raise self._error(reason, notification) from None
        except smtplib.SMTPResponseException as exc:
            raise self._error(f"{where} answered {_smtp_reply(exc)}", notification) from None
        except (smtplib.SMTPException, OSError) as exc:
            # OSError covers refused connections, timeouts, DNS and TLS failures
            detail = str(exc) or type(exc).__name__
            raise self._error(f"cannot send through {where}: {detail}", notification) from None
        if refused:
            reason = (f"{where} refused {len(refused)} of {len(notification.recipients)} "
                      f"recipients: {_refusals(refused)}")
            raise self._error(reason, notification)

    def _error(self, reason: str, notification: Notification) -> NotificationError:
        """A NotificationError whose message is scrubbed of the password in every form."""
        text = f"email to {self.target(notification)} failed: {reason}"
        password, user = self.smtp.password, self.smtp.username or ""
        if password:
            forms = [password, *(base64.b64encode(raw.encode()).decode() for raw in (
                password, f"\0{user}\0{password}", f"{user} {password}"))]
            for form in forms:
                text = text.replace(form, "***")
        return NotificationError(text, channel=self.channel, target=self.target(notification))


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    raw = exc.smtp_error
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return f"{exc.smtp_code} {text}".strip()


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{rcpt} ({code} {msg.decode('utf-8', 'replace')})"
                     for rcpt, (code, msg) in refused.items())


def _email_message(notification: Notification, sender: str) -> EmailMessage:
    """The plain-text email for ``notification``."""
    n = notification
    title = _TITLES[n.kind]
    short_id = n.instance_id if len(n.instance_id) <= 12 else n.instance_id[:8] + "..."
    subject = f"[dagflow] {n.workflow_name} {title} (instance {short_id})"
    from email.message import EmailMessage

    message = EmailMessage()
    # a line break in a header would end it early: flatten, never inject
    message["Subject"] = " ".join(subject.split())
    message["From"] = sender
    message["To"] = ", ".join(n.recipients)
    message["Date"] = email.utils.format_datetime(_aware(n.at))
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = email.utils.make_msgid("dagflow", domain=domain)
    message.set_content(_email_body(n, title))
    return message


def _email_body(n: Notification, title: str) -> str:
    name = n.workflow_name if n.workflow_name == n.workflow_id else (
        f"{n.workflow_name} ({n.workflow_id})")
    lines = [f"Workflow {name}: {title.lower()}.", "",
             f"Instance:  {n.instance_id}", f"State:     {n.state}"]
    if n.error:
        lines.append(f"Error:     {n.error}")
    lines.append(f"At:        {_aware(n.at).isoformat()}")
    duration = n.summary.get("duration_seconds")
    if isinstance(duration, int | float):
        lines.append(f"Duration:  {_human_duration(duration)}")
    counts = n.summary.get("tasks")
    if isinstance(counts, Mapping) and counts:
        lines.append("Tasks:     " + ", ".join(f"{state} {count}"
                                               for state, count in counts.items()))
    failed = n.summary.get("failed_tasks")
    if failed:
        lines.append("Failed:    " + ", ".join(str(task) for task in failed))
    lines += ["", "To look:", f"  dagflow status {n.instance_id}",
              f"  dagflow events {n.instance_id}", "", "-- dagflow"]
    return "\n".join(lines) + "\n"


def _human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


# --------------------------------------------------------------------------- webhook


def shown_url(url: str) -> str:
    """``url`` safe to show: ``scheme://host[:port]/path``, without credentials, query
    string or fragment (where tokens tend to live)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:  # an unbalanced IPv6 bracket, a port out of range
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


@attrs.frozen
class WebhookNotifier:
    """POSTs each notification as JSON to its ``webhook_url``.

    The body is ``{"kind", "instance_id", "workflow_id", "workflow_name", "state",
    "error", "at", "summary", "event"}`` (``event`` as in ``dagflow events --json``, or
    ``null``), sent with ``Idempotency-Key: <instance_id>:<kind>:<event seq or 0>``, the
    same on every attempt so the receiver can drop duplicates.

    A 2xx status is success. Connection errors, timeouts, 5xx, 408, 425 and 429 are tried
    again, up to ``attempts`` in all, waiting ``backoff_seconds * 2**(n-1)`` before retry
    n, or longer when the response's ``Retry-After`` (seconds or an HTTP-date) asks for
    it, up to 10 s. Any other status, an invalid URL and an egress refusal fail at once.
    Redirects are not followed.

    Args:
        client_factory: Returns the shared HTTP client (the engine's, from
            ``make_http_client``, so the egress policy applies); not closed here.
        attempts: Tries in all, at least 1.
        backoff_seconds: The wait before the first retry; it doubles each time.
        timeout_seconds: The limit of each attempt, whatever the client's own timeouts.
        sleep: Waits between attempts (inject the engine clock's ``sleep``).
        converter: Turns the event into JSON data (default: ``make_converter()``).
    """

    channel: ClassVar[str] = "webhook"
    client_factory: Callable[[], Awaitable[httpx.AsyncClient]]
    attempts: int = attrs.field(default=3, kw_only=True, validator=attrs.validators.ge(1))
    backoff_seconds: float = attrs.field(default=1.0, kw_only=True,
                                         validator=attrs.validators.ge(0))
    timeout_seconds: float = attrs.field(default=10.0, kw_only=True,
                                         validator=attrs.validators.gt(0))
    sleep: Callable[[float], Awaitable[None]] = attrs.field(default=anyio.sleep, kw_only=True)
    converter: Any = attrs.field(default=None, kw_only=True)

    def accepts(self, notification: Notification) -> bool:
        """Whether the notification has a ``webhook_url``."""
        return bool(notification.webhook_url)

    def target(self, notification: Notification) -> str:
        """The URL without credentials, query string or fragment."""
        return shown_url(notification.webhook_url or "")

    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body for ``notification``."""
        n = notification
        converter = self.converter if self.converter is not None else make_converter()
        return {
            "kind": n.kind, "instance_id": n.instance_id, "workflow_id": n.workflow_id,
            "workflow_name": n.workflow_name, "state": n.state, "error": n.error,
            "at": _aware(n.at).isoformat(), "summary": n.summary,
            "event": None if n.event is None else event_to_dict(converter, n.event),
        }

    async def notify(self, notification: Notification) -> None:
        """POST the notification, retrying transient failures (skipped without a URL).

        Raises:
            NotificationError: Naming the last status or cause and the attempts made,
                with the URL shown as ``scheme://host/path`` only.
        """
        url = notification.webhook_url
        if not url:
            return
        import httpx

        from .._execute._egress import EgressDenied, check_scheme, user_agent
        from .._execute._retry import backoff_retrying, backoff_wait, retry_on

        shown = shown_url(url)
        try:
            check_scheme(httpx.URL(url))
        except (httpx.InvalidURL, EgressDenied) as exc:
            raise self._error(f"webhook URL {shown} refused: {_scrub(exc, url, shown)}",
                              notification) from None
        body = json.dumps(self.payload(notification), default=str).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": user_agent(),
                   "Idempotency-Key": notification.idempotency_key}
        client = await self.client_factory()
        loop = backoff_retrying(
            attempts=self.attempts,
            wait=backoff_wait(initial=self.backoff_seconds, multiplier=2, maximum=None,
                              retry_after_cap=_WEBHOOK_RETRY_AFTER_CAP),
            sleep=self.sleep,
            retry=retry_on(_Transient),
        )
        try:
            await loop(self._post, client, url, body, headers, notification)
        except _Transient as exc:
            raise self._error(f"webhook POST {shown} failed after {self.attempts} "
                              f"attempt{'s' if self.attempts != 1 else ''}: {exc}",
                              notification) from None

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes,
                    headers: dict[str, str], notification: Notification) -> None:
        """One attempt: return on 2xx, raise :class:`_Transient` to be tried again, or
        :class:`NotificationError` to give up."""
        import httpx

        from .._execute._egress import EgressDenied
        from .._execute._retry import parse_retry_after

        shown = shown_url(url)
        try:
            with anyio.fail_after(self.timeout_seconds):
                request = client.build_request("POST", url, content=body, headers=headers)
                response = await client.send(request, stream=True)
                await response.aclose()  # the answer's body is of no use
        except TimeoutError:
            raise _Transient(f"timed out after {self.timeout_seconds:g} s") from None
        except EgressDenied as exc:  # the policy will not change between attempts
            raise self._error(f"webhook POST {shown} {exc}", notification) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol,
                httpx.LocalProtocolError) as exc:
            raise self._error(f"cannot POST to {shown}: {_scrub(exc, url, shown)}",
                              notification) from None
        except httpx.HTTPError as exc:  # connect/read errors and httpx's own timeouts
            raise _Transient(f"{type(exc).__name__}: {_scrub(exc, url, shown)}") from None
        status = response.status_code
        if response.is_success:
            return
        cause = f"HTTP {status} {response.reason_phrase}".strip()
        if status < 500 and status not in _RETRYABLE_4XX:
            raise self._error(f"webhook POST {shown} failed: {cause} (not retried)",
                              notification)
        raise _Transient(cause, retry_after=parse_retry_after(
            response.headers.get("Retry-After"), date=response.headers.get("Date")))

    def _error(self, message: str, notification: Notification) -> NotificationError:
        return NotificationError(message, channel=self.channel, target=self.target(notification))


class _Transient(Exception):
    """A webhook attempt failed in a way worth another try; ``str()`` is the cause.

    Attributes:
        retry_after: Seconds the receiver's ``Retry-After`` asked for, if it did.
    """

    def __init__(self, cause: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(cause)


def _scrub(exc: BaseException, url: str, shown: str) -> str:
    """The exception's text with the full URL (query-string secrets and all) replaced."""
    text = str(exc) or type(exc).__name__
    return text.replace(url, shown)


# --------------------------------------------------------------------------- delivery


async def deliver(
    notifiers: Sequence[Notifier],
    notification: Notification,
    *,
    on_result: Callable[[str, str, str | None], Awaitable[None] | None],
    timeout_seconds: float | None = None,
    busy: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> None:
    """Send ``notification`` through every notifier that accepts it, all at once.

    One notifier failing (or hanging past ``timeout_seconds``) never stops the others.
    Failures are logged as warnings on the ``dagflow`` logger.

    Args:
        notifiers: The channels; one whose ``accepts(notification)`` is false is skipped
            and reported nowhere.
        notification: What to send.
        on_result: Called once per notifier tried with ``(channel, target, error)``:
            ``error`` is ``None`` on success. It may be a coroutine function; if it raises,
            that is logged too.
        timeout_seconds: The limit of each notifier, if any.
        busy: Marks each delivery as real work (the engine clock's ``busy``): a fake
            clock does not jump while a request is in flight, but does while a delivery
            waits on that clock to try again.

    Returns:
        After every notifier finished; it never raises (cancellation excepted).
    """
    async with anyio.create_task_group() as tg:
        for notifier in notifiers:
            try:
                accepts = getattr(notifier, "accepts", None)
                wanted = accepts is None or bool(accepts(notification))
            except Exception as exc:
                logger.warning("notifier %r failed to say whether it accepts a notification: %s",
                               notifier, exc)
                wanted = True  # so that the failure is reported rather than lost
            if wanted:
                tg.start_soon(_deliver_one, notifier, notification, on_result,
                              timeout_seconds, busy)


async def _deliver_one(
    notifier: Notifier,
    notification: Notification,
    on_result: Callable[[str, str, str | None], Awaitable[None] | None],
    timeout_seconds: float | None,
    busy: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> None:
    channel, target = _describe(notifier, notification)
    error: str | None = None
    try:
        with anyio.fail_after(timeout_seconds), busy():
            await notifier.notify(notification)
    except TimeoutError:
        error = f"{channel} notification timed out after {timeout_seconds:g} s"
    except Exception as exc:  # a host notifier may raise anything; report, never crash
        error = str(exc) or type(exc).__name__
    if error is not None:
        url = notification.webhook_url
        if url:  # a host notifier may quote the URL, token and all
            error = error.replace(url, shown_url(url))
        logger.warning("%s notification for instance %s (%s) to %s failed: %s", channel,
                       notification.instance_id, notification.kind, target or "-", error)
    try:
        result = on_result(channel, target, error)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("recording the %s notification result for instance %s failed",
                         channel, notification.instance_id)


def _describe(notifier: Notifier, notification: Notification) -> tuple[str, str]:
    """The notifier's channel name and target, falling back to its class name and ''."""
    channel = getattr(notifier, "channel", None)
    if not isinstance(channel, str) or not channel:
        channel = type(notifier).__name__
    target = ""
    describe = getattr(notifier, "target", None)
    if callable(describe):
        try:
            target = str(describe(notification))
        except Exception as exc:
            logger.warning("%s notifier failed to describe its target: %s", channel, exc)
    return channel, target


# --------------------------------------------------------------------------- building


def notifications_for(
    instance: WorkflowInstance,
    config: NotificationConfig | None,
    *,
    kind: NotificationKind,
    event: WorkflowEvent | None = None,
    at: dt.datetime | None = None,
) -> Notification | None:
    """Build the notification of ``kind`` for ``instance``, if ``config`` asks for one.

    Recipients are ``config.on_completion`` for ``completed``, ``config.on_failure`` for
    ``failed``, ``cancelled`` and ``rolled_back``, and nobody for ``approval_required``;
    every kind goes to ``config.webhook_url``.

    Args:
        instance: The instance, as it is now.
        config: The workflow's ``notification_config``.
        kind: What happened.
        event: The event that caused it (``ApprovalRequired`` for ``approval_required``
            fills in the gate's details).
        at: When (default: the event's timestamp, else the instance's ``completed_at``,
            else now).

    Returns:
        The notification, or ``None`` when nobody is to hear about this kind.
    """
    if config is None:
        return None
    if kind == "completed":
        recipients = config.on_completion
    elif kind == "approval_required":
        recipients = ()
    else:
        recipients = config.on_failure
    if not recipients and not config.webhook_url:
        return None
    when = at or (event.timestamp if event is not None else None) or instance.completed_at
    when = _aware(when or dt.datetime.now(dt.UTC))
    error = None
    if kind in ("failed", "cancelled", "rolled_back"):
        error = instance.error or getattr(event, "error", None) or getattr(event, "reason", None)
    return Notification(
        kind=kind, instance_id=instance.id, workflow_id=instance.workflow_id,
        workflow_name=instance.definition.name, state=str(instance.state), at=when,
        error=error or None, event=event, summary=_summary(instance, event, when),
        recipients=tuple(recipients), webhook_url=config.webhook_url,
    )


def _summary(instance: WorkflowInstance, event: WorkflowEvent | None,
             at: dt.datetime) -> dict[str, Any]:
    """Task counts by state (loop iterations ``x[0]`` left out), duration and gate."""
    counts: dict[str, int] = {}
    failed: list[str] = []
    for key, task in instance.task_states.items():
        if "[" in key:
            continue
        counts[str(task.state)] = counts.get(str(task.state), 0) + 1
        if task.state == "Failed":
            failed.append(key)
    duration = None
    if instance.started_at is not None:
        end = _aware(instance.completed_at or at)
        duration = max(0.0, (end - _aware(instance.started_at)).total_seconds())
    summary: dict[str, Any] = {
        "tasks": dict(sorted(counts.items())), "task_count": sum(counts.values()),
        "failed_tasks": sorted(failed), "duration_seconds": duration,
    }
    if isinstance(event, ApprovalRequired):
        summary.update(
            approval_id=event.approval_id, task_id=event.task_id,
            approvers=list(event.approvers), min_approvals=event.min_approvals,
            expires_at=None if event.expires_at is None else event.expires_at.isoformat())
    return summary
