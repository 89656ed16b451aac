"""The Http task: one request through the engine's guarded client, redirects followed here.

A 2xx response completes the task with the body as ``stdout`` (and as ``data`` when it is
JSON); anything else fails the attempt with a :class:`~dagflow.TaskExecutionFailed` whose
``kind`` says what happened:

=====================  =========  ==================================================
kind                   retryable  when
=====================  =========  ==================================================
``http_status``        5xx, 408,  the final response is not 2xx (the output keeps
                       425, 429   its body)
``egress_denied``      no         the egress policy or the scheme refused a hop
``too_many_redirects`` no         more than ``EgressPolicy.max_redirects`` hops
``response_too_large`` no         the body exceeds ``max_response_bytes``
``timeout``            yes        connect, read or write took longer than
                                  ``http_timeout_seconds``
``connection``         yes        the host does not resolve, refuses, or breaks the
                                  connection
``bad_response``       yes        the body cannot be decoded (bad gzip, ...)
``request``            no         the URL or a header cannot be sent at all
=====================  =========  ==================================================

A retryable ``http_status`` failure whose response has a ``Retry-After`` header (seconds
or an HTTP-date) carries it as ``retry_after`` seconds: the retry waits at least that
long, up to the policy's ``max_delay_ms``.

Every reason is passed through the task's redactor, and URLs in reasons lose their
``user:password@`` part.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any

import httpx

from .._context import TaskContext
from .._errors import TaskExecutionFailed
from .._models import Http, TaskOutput
from ._egress import (
    EgressDenied,
    ResponseTooLarge,
    check_scheme,
    read_body,
    response_text,
    user_agent,
)
from ._retry import parse_retry_after

__all__ = ["HttpHandler"]

_RETRYABLE_4XX = frozenset({408, 425, 429})
_USERINFO = re.compile(r"(//)[^/?#]*@")


class HttpHandler:
    """Runs Http tasks: sends ``spec.method`` to ``spec.url`` and judges the response.

    Adds ``Idempotency-Key: <ctx.idempotency_key>`` (the same on every attempt, so the
    receiver can deduplicate retries) and ``User-Agent: dagflow/<version>`` unless the
    task sets them. Redirects are followed here, up to ``EgressPolicy.max_redirects``,
    each hop checked for its scheme and connected through the egress guard again.
    """

    busy = True

    def __repr__(self) -> str:
        return "<HttpHandler>"

    async def __call__(self, ctx: TaskContext) -> TaskOutput:
        """Run one attempt of the Http task ``ctx.spec`` (already interpolated).

        Args:
            ctx: The attempt's context; ``ctx.resources.http_client()`` gives the client.

        Returns:
            ``TaskOutput(stdout=<body>, data=<JSON body or None>, metrics={status_code,
            duration_seconds, response_bytes})``, secrets redacted.

        Raises:
            TaskExecutionFailed: For a non-2xx status or any failure in the table above.
        """
        spec: Http = ctx.spec
        client = await ctx.resources.http_client()
        request = _build_request(client, ctx)
        shown_url = _display_url(spec.url, ctx)  # the URL as written, not as httpx re-encodes it
        max_redirects = ctx.settings.egress.max_redirects
        redirects = 0
        started = time.perf_counter()
        while True:
            try:
                check_scheme(request.url)
                response, body = await _exchange(client, request, ctx.settings.max_response_bytes)
            except EgressDenied as exc:
                raise _failure(ctx, "egress_denied", f"{exc}: {request.method} {shown_url}",
                               retryable=False) from exc
            except ResponseTooLarge as exc:
                raise _failure(ctx, "response_too_large",
                               f"{exc}: {request.method} {shown_url}", retryable=False) from exc
            except httpx.TimeoutException as exc:
                cause = f"{type(exc).__name__} after {ctx.settings.http_timeout_seconds:g} s"
                raise _failure(ctx, "timeout", f"{request.method} {shown_url} timed out "
                               f"({cause}; EngineSettings.http_timeout_seconds)") from exc
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                raise _failure(ctx, "request", f"cannot send {request.method} {shown_url}: "
                               f"{exc}", retryable=False) from exc
            except httpx.DecodingError as exc:
                raise _failure(ctx, "bad_response", f"cannot decode the response to "
                               f"{request.method} {shown_url}: {exc}") from exc
            except httpx.HTTPError as exc:
                where = f"{request.url.host}:{request.url.port or _default_port(request.url)}"
                raise _failure(ctx, "connection", f"{request.method} {shown_url} failed: "
                               f"connection to {where}: {str(exc) or type(exc).__name__}") from exc
            if body is None and response.next_request is not None:
                redirects += 1
                if redirects > max_redirects:
                    raise _failure(
                        ctx, "too_many_redirects", f"more than {max_redirects} redirects "
                        f"(EgressPolicy.max_redirects) from {spec.method} "
                        f"{_display_url(spec.url, ctx)}", retryable=False)
                request = response.next_request
                shown_url = _display_url(str(request.url), ctx)
                continue
            break
        output = _output(ctx, response, body or b"", time.perf_counter() - started)
        if not response.is_success:
            code = response.status_code
            retryable = code >= 500 or code in _RETRYABLE_4XX
            raise TaskExecutionFailed(
                reason=ctx.redactor.text(
                    f"HTTP {code} {response.reason_phrase} from {request.method} {shown_url}"
                ),
                kind="http_status",
                retryable=retryable,
                output=output,
                retry_after=_retry_after(response) if retryable else None,
            )
        return output


def _build_request(client: httpx.AsyncClient, ctx: TaskContext) -> httpx.Request:
    spec: Http = ctx.spec
    headers = dict(spec.headers)
    names = {name.lower() for name in headers}
    if ctx.idempotency_key and "idempotency-key" not in names:
        headers["Idempotency-Key"] = ctx.idempotency_key
    if "user-agent" not in names:
        headers["User-Agent"] = user_agent()
    try:
        return client.build_request(
            spec.method.upper(),
            spec.url,
            headers=headers,
            content=None if spec.body is None else spec.body.encode("utf-8"),
        )
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
        # ValueError covers UnicodeEncodeError (header values must be ASCII/Latin-1);
        # from None: httpx's message may quote the whole URL, secrets and all
        raise _failure(ctx, "request", f"cannot build {spec.method} "
                       f"{_display_url(spec.url, ctx)}: {exc}", retryable=False) from None


async def _exchange(
    client: httpx.AsyncClient, request: httpx.Request, max_bytes: int
) -> tuple[httpx.Response, bytes | None]:
    """Send one hop; the body is ``None`` when the response is a redirect to follow."""
    response = await client.send(request, stream=True)
    try:
        if response.next_request is not None:
            return response, None
        return response, await read_body(response, max_bytes)
    finally:
        await response.aclose()


def _output(ctx: TaskContext, response: httpx.Response, body: bytes,
            duration: float) -> TaskOutput:
    text = response_text(response, body)
    return TaskOutput(
        stdout=ctx.redactor.text(text),
        exit_code=None,
        data=ctx.redactor.data(_json_body(response, text)),
        metrics={
            "status_code": response.status_code,
            "duration_seconds": duration,
            "response_bytes": len(body),
        },
    )


def _json_body(response: httpx.Response, text: str) -> Any:
    """The parsed body when the Content-Type says JSON and it parses, else ``None``."""
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None


def _display_url(url: str, ctx: TaskContext) -> str:
    """``url`` for messages: without ``user:password@`` and with secrets redacted."""
    try:
        parts = urllib.parse.urlsplit(url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        shown = _USERINFO.sub(r"\1", url)
    return ctx.redactor.text(shown)


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds the response's ``Retry-After`` asks for (either form), if any."""
    headers = response.headers
    return parse_retry_after(headers.get("Retry-After"), date=headers.get("Date"))


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _failure(ctx: TaskContext, kind: str, reason: str, *,
             retryable: bool = True) -> TaskExecutionFailed:
    return TaskExecutionFailed(reason=ctx.redactor.text(reason), kind=kind, retryable=retryable)
