"""The one place HTTP leaves dagflow: a client whose every connection obeys the egress policy.

Http tasks (and webhooks) get their client from :func:`make_http_client`. The policy is
enforced where the socket is opened, not on the URL text, because a URL can spell an
address in many ways (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``,
``[::ffff:169.254.169.254]``) and a name can resolve to anything, differently each time.
So :class:`EgressGuard`, an httpcore network backend, resolves the host itself, checks
*every* address it resolves to, and then connects to one of those vetted addresses: there
is no second lookup that a rebinding DNS server could answer differently.

httpx builds its connection pool without a ``network_backend=`` argument, so
:func:`make_http_client` swaps the transport's pool for one that has the guard (a private
attribute of httpx; ``tests/execute/test_egress.py`` fails loudly if that changes, and so
does :func:`make_http_client` itself rather than run unguarded).

Redirects are never followed by the client (``follow_redirects=False``): the caller
follows them one hop at a time, calling :func:`check_scheme` on each; every hop then
connects through the guard again.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import socket
import typing
from collections.abc import Iterable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from importlib import metadata

import anyio
import attrs
import httpcore
import httpx

from .._errors import WorkflowError
from .._settings import EgressPolicy, EngineSettings

__all__ = [
    "EgressDenied",
    "EgressGuard",
    "EgressRules",
    "ResponseTooLarge",
    "check_scheme",
    "make_http_client",
    "read_body",
    "response_text",
    "user_agent",
]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")

# Link-local (where clouds put their metadata services) and the metadata addresses
# outside it: AWS's IPv6 endpoint and Alibaba Cloud's 100.100.100.200.
_LINK_LOCAL: tuple[_IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in ("169.254.0.0/16", "100.100.100.200/32", "fe80::/10", "fd00:ec2::254/128")
)
_LINK_LOCAL_RULE = "link-local/cloud metadata address; EgressPolicy.allow_link_local"
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


class EgressDenied(WorkflowError):
    """The egress policy refused a connection or a URL.

    Attributes:
        host: The host as written in the URL (or the refused URL's scheme).
        rule: Which rule refused it, naming the setting that would change that.
    """

    def __init__(self, *, host: str, rule: str, address: str | None = None) -> None:
        self.host = host
        self.rule = rule
        self.address = address
        via = f" (resolves to {address})" if address and address != host else ""
        super().__init__(f"refused to connect to {host}{via} ({rule})")


class ResponseTooLarge(WorkflowError):
    """A response body is larger than ``EngineSettings.max_response_bytes``.

    Attributes:
        limit: The cap, in bytes.
    """

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"response body larger than {limit} bytes (EngineSettings.max_response_bytes)"
        )


def check_scheme(url: httpx.URL) -> None:
    """Refuse any URL that is not ``http`` or ``https``.

    Raises:
        EgressDenied: For any other scheme (``ftp``, ``file``, ``gopher``, ...).
    """
    if url.scheme not in ALLOWED_SCHEMES:
        raise EgressDenied(
            host=f"{url.scheme}://{url.host}" if url.host else f"{url.scheme}:",
            rule="only http and https URLs are allowed",
        )


def _normalize_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _related_addresses(address: _IPAddress) -> tuple[_IPAddress, ...]:
    """``address`` and every address a connection to it may really reach."""
    related: list[_IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        value = int(address)
        if address.ipv4_mapped is not None:
            related.append(address.ipv4_mapped)
        elif value >> 32 == 0 and value > 1:  # deprecated IPv4-compatible ::a.b.c.d
            related.append(ipaddress.IPv4Address(value))
        elif address in _NAT64:
            related.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
        elif address.sixtofour is not None:
            related.append(address.sixtofour)
    # the unspecified address (0.0.0.0, ::) connects to this host, like loopback
    if any(a.is_unspecified for a in related):
        related.extend(_LOOPBACK)
    return tuple(related)


def _parse_address(text: str) -> _IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)


@attrs.frozen
class _HostPattern:
    """``api.example.com`` (exactly that host) or ``*.example.com`` (its subdomains)."""

    pattern: str

    def matches(self, host: str) -> bool:
        if self.pattern.startswith("*."):
            return host.endswith(self.pattern[1:])
        return host == self.pattern


@attrs.frozen
class EgressRules:
    """An :class:`~dagflow.EgressPolicy`, parsed once into networks and host patterns.

    Attributes:
        policy: The policy these rules came from.
    """

    policy: EgressPolicy
    _allow_nets: tuple[_IPNetwork, ...]
    _allow_hosts: tuple[_HostPattern, ...]
    _deny_nets: tuple[_IPNetwork, ...]
    _deny_hosts: tuple[_HostPattern, ...]

    @classmethod
    def from_policy(cls, policy: EgressPolicy) -> EgressRules:
        """Parse ``policy``.

        An entry that is an address or a CIDR network is a network; anything else is a
        host name pattern.
        """
        allow_nets, allow_hosts = _split_entries(policy.allow)
        deny_nets, deny_hosts = _split_entries(policy.deny)
        return cls(policy, allow_nets, allow_hosts, deny_nets, deny_hosts)

    def check_name(self, host: str) -> None:
        """Refuse ``host`` by name alone, before it is resolved.

        A denied name is thus never even looked up (DNS lookups can leak data too).

        Raises:
            EgressDenied: ``host`` matches ``deny``, or ``allow`` lists no networks and
                ``host`` matches none of its names.
        """
        name = _normalize_host(host)
        for pattern in self._deny_hosts:
            if pattern.matches(name):
                rule = f"denied by EgressPolicy.deny {pattern.pattern!r}"
                raise EgressDenied(host=host, rule=rule)
        if self.policy.allow and not self._allow_nets and not self._host_allowed(name):
            raise EgressDenied(host=host, rule="not in EgressPolicy.allow")

    def check(self, host: str, addresses: Iterable[str]) -> None:
        """Refuse ``host`` unless the policy permits it and *every* address it resolved to.

        Args:
            host: The host as written in the URL (a name or an address literal).
            addresses: What ``host`` resolved to.

        Raises:
            EgressDenied: Naming the host, the refused address and the rule.
        """
        self.check_name(host)
        host_allowed = self._host_allowed(_normalize_host(host))
        for text in addresses:
            related = _related_addresses(_parse_address(text))
            if not self.policy.allow_link_local and any(
                addr in net for addr in related for net in _LINK_LOCAL
            ):
                raise EgressDenied(host=host, address=text, rule=_LINK_LOCAL_RULE)
            for net in self._deny_nets:
                if any(addr in net for addr in related):
                    raise EgressDenied(
                        host=host, address=text, rule=f"denied by EgressPolicy.deny {str(net)!r}"
                    )
            if self.policy.allow and not host_allowed and not any(
                addr in net for addr in related for net in self._allow_nets
            ):
                raise EgressDenied(host=host, address=text, rule="not in EgressPolicy.allow")

    def _host_allowed(self, name: str) -> bool:
        return any(pattern.matches(name) for pattern in self._allow_hosts)


def _split_entries(
    entries: Iterable[str],
) -> tuple[tuple[_IPNetwork, ...], tuple[_HostPattern, ...]]:
    nets: list[_IPNetwork] = []
    hosts: list[_HostPattern] = []
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.append(_HostPattern(_normalize_host(entry)))
    return tuple(nets), tuple(hosts)


class EgressGuard(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only where the egress policy allows.

    Args:
        rules: The policy to enforce.
        inner: The backend that opens the vetted connections (default:
            ``httpcore.AnyIOBackend``, which runs on asyncio and trio).
    """

    def __init__(
        self, rules: EgressRules, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.rules = rules
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    def __repr__(self) -> str:
        return f"<EgressGuard policy={self.rules.policy!r}>"

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, check every address, then connect to a vetted one.

        Raises:
            EgressDenied: The policy refuses the host or one of its addresses.
            httpcore.ConnectError: The host does not resolve or refuses the connection
                (httpx turns it into ``httpx.ConnectError``).
            httpcore.ConnectTimeout: Resolving and connecting took longer than ``timeout``.
        """
        try:
            with anyio.fail_after(timeout):
                self.rules.check_name(host)
                addresses = await self._resolve(host, port)
                self.rules.check(host, addresses)
                failures: list[httpcore.ConnectError] = []
                # connecting to the address just checked leaves no second lookup for a
                # rebinding DNS server to answer differently
                for address in addresses:
                    try:
                        return await self._inner.connect_tcp(
                            address, port, timeout=None, local_address=local_address,
                            socket_options=socket_options,
                        )
                    except httpcore.ConnectError as exc:
                        failures.append(exc)
                raise failures[-1]  # _resolve never returns an empty list
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc

    @staticmethod
    async def _resolve(host: str, port: int) -> list[str]:
        try:
            infos = await anyio.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        # getaddrinfo turns integer, hex, octal and short spellings into the real address
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Always refused: a socket path is outside any egress policy."""
        raise EgressDenied(host=path, rule="unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Sleep through the inner backend."""
        await self._inner.sleep(seconds)


@functools.cache
def user_agent() -> str:
    """``dagflow/<version>`` (``dagflow/dev`` when dagflow is not installed)."""
    try:
        version = metadata.version("dagflow")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"dagflow/{version}"


def make_http_client(settings: EngineSettings) -> httpx.AsyncClient:
    """Build the client every outgoing dagflow request goes through.

    The client enforces ``settings.egress`` on every connection (see
    :class:`EgressGuard`), times out after ``settings.http_timeout_seconds`` per
    connect/read/write, never follows redirects itself, ignores proxy environment
    variables (a proxy would hide the real destination from the guard) and keeps no
    cookies (it is shared by every workflow). Close it with ``await client.aclose()``.

    Args:
        settings: The engine's settings.

    Returns:
        A new ``httpx.AsyncClient``.

    Raises:
        RuntimeError: The installed httpx no longer has the attribute the guard is
            installed through; dagflow refuses to run without its egress policy.
    """
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    transport = httpx.AsyncHTTPTransport(limits=limits, retries=0)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError(
            "httpx.AsyncHTTPTransport no longer has a _pool attribute: "
            "dagflow cannot install its egress guard"
        )
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=EgressGuard(EgressRules.from_policy(settings.egress)),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        # the client is shared across workflows: one task's cookies must not reach another
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        headers={"User-Agent": user_agent()},
    )


async def read_body(response: httpx.Response, max_bytes: int) -> bytes:
    """Read a streamed response's (decoded) body, refusing more than ``max_bytes``.

    Args:
        response: A response from ``client.send(..., stream=True)``.
        max_bytes: The cap.

    Returns:
        The body.

    Raises:
        ResponseTooLarge: The declared or actual body is larger than ``max_bytes``.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ResponseTooLarge(limit=max_bytes)
    chunks: list[bytes] = []
    size = 0
    with anyio.CancelScope() as scope:
        # aiter_bytes decompresses, so the cap also bounds a gzip bomb's output
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                # Leaving the loop early would abandon httpx's nested async generators
                # half-way (trio warns when they are collected); a cancellation raised
                # at the next network read ends every one of them from the inside.
                scope.cancel()
                continue
            chunks.append(chunk)
    if size > max_bytes:
        raise ResponseTooLarge(limit=max_bytes)
    return b"".join(chunks)


def response_text(response: httpx.Response, body: bytes) -> str:
    """``body`` decoded with the response's charset (UTF-8 when absent or unknown)."""
    encoding = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    return body.decode(encoding, errors="replace")
