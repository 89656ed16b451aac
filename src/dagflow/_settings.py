"""The engine's knobs, in one frozen object: ``Engine(settings=EngineSettings(...))``."""

from __future__ import annotations

import attrs

__all__ = ["EgressPolicy", "EngineSettings"]


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
    checkpoint_key: str | None = None
