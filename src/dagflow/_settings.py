"""The engine's configuration, in one frozen object: ``Engine(settings=EngineSettings(...))``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import attrs

__all__ = ["EgressPolicy", "EngineSettings", "SmtpSettings"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@attrs.frozen
class EgressPolicy:
    """Where Http tasks (and webhooks) may connect.

    The default allows everything except link-local and cloud metadata addresses
    (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200), in every spelling,
    checked after DNS resolution and again for every redirect. Loopback and private
    networks are allowed. Set ``allow`` to permit only the listed hosts and networks.

    Attributes:
        allow: If non-empty, only these hosts (``api.example.com``, ``*.example.com``)
            and networks (``10.0.0.0/8``) are reachable.
        deny: Hosts and networks refused on top of the defaults.
        allow_link_local: Lift the built-in link-local/metadata ban (not recommended).
        max_redirects: Redirects followed per request, each one checked.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_link_local: bool = False
    max_redirects: int = 5


def _hide(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen
class SmtpSettings:
    """Where emails are sent from.

    Attributes:
        host: The SMTP server.
        port: Its port.
        sender: The ``From`` address.
        username: Log in as this user, if set.
        password: The login password (``repr`` shows ``'***'``).
        starttls: Upgrade the connection with STARTTLS before logging in.
        ssl: Connect with TLS from the start (SMTPS, usually port 465).
        timeout_seconds: Timeout of each network operation.
    """

    host: str = attrs.field(validator=attrs.validators.min_len(1))
    port: int = attrs.field(default=25, validator=[attrs.validators.ge(1),
                                                   attrs.validators.le(65535)])
    sender: str = "dagflow@localhost"
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=_hide)
    starttls: bool = False
    ssl: bool = False
    timeout_seconds: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if self.starttls and self.ssl:
            raise ValueError("SmtpSettings: set starttls or ssl, not both")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
        """Read ``DAGFLOW_SMTP_HOST``, ``_PORT``, ``_SENDER``, ``_USERNAME``,
        ``_PASSWORD``, ``_STARTTLS`` and ``_SSL`` (booleans: true/false, 1/0, yes/no).

        Without ``DAGFLOW_SMTP_PORT`` the port is 465 when ``DAGFLOW_SMTP_SSL`` is true,
        else 25.

        Args:
            environ: The variables (default: ``os.environ``).

        Returns:
            The settings, or ``None`` when ``DAGFLOW_SMTP_HOST`` is unset or empty.

        Raises:
            ValueError: A variable has a bad value; the message names it.
        """
        env = os.environ if environ is None else environ
        host = env.get("DAGFLOW_SMTP_HOST", "").strip()
        if not host:
            return None
        use_ssl = _env_bool(env, "DAGFLOW_SMTP_SSL")
        starttls = _env_bool(env, "DAGFLOW_SMTP_STARTTLS")
        if use_ssl and starttls:
            raise ValueError("DAGFLOW_SMTP_SSL and DAGFLOW_SMTP_STARTTLS are both true: "
                             "set one (SSL for SMTPS on 465, STARTTLS for 587)")
        port_text = env.get("DAGFLOW_SMTP_PORT", "").strip()
        port = 465 if use_ssl else 25
        if port_text:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(
                    f"DAGFLOW_SMTP_PORT must be a port number (1-65535), got {port_text!r}")
            port = int(port_text)
        username = env.get("DAGFLOW_SMTP_USERNAME") or None
        password = env.get("DAGFLOW_SMTP_PASSWORD") or None
        if password is not None and username is None:
            raise ValueError("DAGFLOW_SMTP_PASSWORD is set but DAGFLOW_SMTP_USERNAME is not")
        return cls(host=host, port=port, username=username, password=password,
                   sender=env.get("DAGFLOW_SMTP_SENDER", "").strip() or "dagflow@localhost",
                   starttls=starttls, ssl=use_ssl)


def _env_bool(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or not text:
        return False
    raise ValueError(f"{name} must be true or false (1/0, yes/no), got {env[name]!r}")


def _urls(urls: Mapping[str, str]) -> dict[str, str]:
    return dict(urls)


def _paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[str, ...]:
    return tuple(os.fspath(path) for path in paths)


@attrs.frozen
class EngineSettings:
    """Engine-wide settings; every field has a safe default.

    Attributes:
        max_output_bytes: Most bytes of stdout (and, separately, stderr) kept per task
            attempt; the rest is dropped and ``metrics["stdout_truncated_bytes"]`` says how
            much.
        http_timeout_seconds: Connect/read/write timeout of one HTTP request.
        max_response_bytes: Largest HTTP response body read.
        egress: Where Http tasks may connect.
        kubectl: The kubectl executable for Deploy and Scale (a path or a name on PATH).
        auto_approve: Approve every gate at once as ``system`` (``dagflow run
            --auto-approve``); for tests and local runs.
        kill_grace_seconds: After a timeout or cancel, how long a process group gets
            after SIGTERM before SIGKILL.
        checkpoint_interval_seconds: Overrides the workflow's own interval when set.
        approval_poll_seconds: How often a waiting gate looks for decisions made by other
            processes.
        lease_seconds: How long a process's claim on a running instance lasts without
            renewal (renewed every third of it); after that another process may recover
            the instance.
        control_poll_seconds: How often a running instance looks for cancel, pause and
            resume requests made by other processes (``dagflow cancel ID``).
        webhook_attempts: How many times a notification webhook is tried (5xx, 429 and
            connection errors are retried; the same Idempotency-Key each time).
        webhook_backoff_seconds: Real seconds before the first webhook retry, doubling.
        checkpoint_key: HMAC key for the checksums of stored rows and checkpoints (default:
            ``$DAGFLOW_CHECKPOINT_KEY``, else plain SHA-256, which detects corruption but
            not deliberate tampering by someone who can write to the database).
        connections: Query connection name -> database URL (``repr`` shows the names
            only: URLs may hold passwords).
        workflow_dirs: Directories searched for ``<workflow_id>.yaml|.yml|.json`` by
            Subworkflow tasks (besides the parent workflow file's directory).
        smtp: Where emails go (:class:`~dagflow.SmtpSettings`; default:
            ``$DAGFLOW_SMTP_*``).
    """

    max_output_bytes: int = 1024 * 1024
    http_timeout_seconds: float = 30.0
    max_response_bytes: int = 16 * 1024 * 1024
    egress: EgressPolicy = EgressPolicy()
    kubectl: str = "kubectl"
    auto_approve: bool = False
    kill_grace_seconds: float = 2.0
    checkpoint_interval_seconds: float | None = None
    approval_poll_seconds: float = 0.5
    lease_seconds: float = 30.0
    control_poll_seconds: float = 0.25
    webhook_attempts: int = 3
    webhook_backoff_seconds: float = 1.0
    checkpoint_key: str | None = attrs.field(
        default=None, repr=lambda key: "None" if key is None else "'***'")
    connections: Mapping[str, str] = attrs.field(factory=dict, converter=_urls, hash=False,
                                                 repr=lambda urls: repr(sorted(urls)))
    workflow_dirs: tuple[str, ...] = attrs.field(default=(), converter=_paths)
    smtp: SmtpSettings | None = None
