"""The egress policy: address rules, the guarded network backend, and how it is installed."""

from __future__ import annotations

import threading
import typing
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import pytest

from dagflow._execute._egress import (
    EgressDenied,
    EgressGuard,
    EgressRules,
    make_http_client,
    user_agent,
)
from dagflow._settings import EgressPolicy, EngineSettings

METADATA_FORMS = [
    "169.254.169.254",
    "169.254.0.1",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "::a9fe:a9fe",  # IPv4-compatible (deprecated)
    "64:ff9b::a9fe:a9fe",  # NAT64
    "2002:a9fe:a9fe::1",  # 6to4
    "fe80::1",
    "fe80::1%eth0",
    "fd00:ec2::254",
    "100.100.100.200",
    "::ffff:100.100.100.200",
]


class _Recorder(httpcore.AsyncNetworkBackend):
    """An inner backend that records where the guard connects and never touches the network."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.connects: list[tuple[str, int]] = []
        self.refuse = refuse

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        if host in self.refuse:
            raise httpcore.ConnectError(f"refused by {host}")
        return httpcore.AsyncMockStream([])


class _FixedDns(EgressGuard):
    """A guard whose resolver answers from a table (a DNS server we control)."""

    answers: typing.ClassVar[dict[str, list[str]]] = {}

    @staticmethod
    async def _resolve(host: str, port: int) -> list[str]:
        return _FixedDns.answers[host]


def _rules(**kwargs: Any) -> EgressRules:
    return EgressRules.from_policy(EgressPolicy(**kwargs))


@pytest.mark.parametrize("address", METADATA_FORMS)
def test_link_local_and_metadata_refused_by_default(address: str) -> None:
    """Every form of a link-local or metadata address is refused, naming the setting."""
    with pytest.raises(EgressDenied) as info:
        _rules().check("metadata.example", [address])
    assert info.value.rule == (
        "link-local/cloud metadata address; EgressPolicy.allow_link_local")
    assert f"refused to connect to metadata.example (resolves to {address})" in str(info.value)


@pytest.mark.parametrize("address", METADATA_FORMS)
def test_allow_link_local_lifts_the_ban(address: str) -> None:
    """allow_link_local=True lets the metadata addresses through."""
    _rules(allow_link_local=True).check("metadata.example", [address])


@pytest.mark.parametrize("address", [
    "127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "93.184.216.34",
    "2606:2800:220:1::1", "169.253.255.255", "169.255.0.0",
])
def test_loopback_private_and_public_allowed_by_default(address: str) -> None:
    """The default policy only refuses link-local and metadata addresses."""
    _rules().check("host.example", [address])


def test_every_resolved_address_is_checked() -> None:
    """One bad address among several refuses the host."""
    with pytest.raises(EgressDenied) as info:
        _rules().check("rebind.example", ["93.184.216.34", "169.254.169.254"])
    assert info.value.address == "169.254.169.254"


@pytest.mark.parametrize(("host", "address"), [
    ("localhost", "127.0.0.1"),
    ("x.example", "::ffff:127.0.0.1"),
    ("x.example", "0.0.0.0"),  # the unspecified address reaches this host
    ("x.example", "::"),
    ("internal.corp.example", "93.184.216.34"),
    ("a.b.corp.example", "93.184.216.34"),
    ("Bad.Example.", "93.184.216.34"),
])
def test_deny_refuses_networks_and_hosts(host: str, address: str) -> None:
    """deny refuses CIDR networks (in any address form) and host names or suffixes."""
    rules = _rules(deny=("127.0.0.0/8", "::1", "*.corp.example", "bad.example"))
    with pytest.raises(EgressDenied) as info:
        rules.check(host, [address])
    assert "EgressPolicy.deny" in info.value.rule


def test_deny_suffix_does_not_match_the_bare_domain() -> None:
    """``*.corp.example`` denies subdomains only, not ``corp.example`` or look-alikes."""
    rules = _rules(deny=("*.corp.example",))
    rules.check("corp.example", ["93.184.216.34"])
    rules.check("evilcorp.example", ["93.184.216.34"])


def test_allow_permits_only_listed_hosts_and_networks() -> None:
    """A non-empty allow list refuses everything not listed, loopback included."""
    rules = _rules(allow=("api.example.com", "*.svc.example", "10.0.0.0/8", "2001:db8::/32"))
    rules.check("api.example.com", ["93.184.216.34"])
    rules.check("API.example.com.", ["93.184.216.34"])
    rules.check("db.svc.example", ["192.168.3.4"])
    rules.check("anything.example", ["10.9.8.7"])
    rules.check("v6.example", ["2001:db8::5"])
    for host, address in [("other.example", "93.184.216.34"), ("localhost", "127.0.0.1"),
                          ("svc.example", "93.184.216.34"), ("mixed.example", "10.0.0.1")]:
        addresses = [address, "93.184.216.34"] if host == "mixed.example" else [address]
        with pytest.raises(EgressDenied) as info:
            rules.check(host, addresses)
        assert info.value.rule == "not in EgressPolicy.allow"


def test_allowed_host_still_cannot_reach_metadata() -> None:
    """Allowing a name does not lift the metadata ban for what it resolves to."""
    with pytest.raises(EgressDenied):
        _rules(allow=("api.example.com",)).check("api.example.com", ["169.254.169.254"])


def test_deny_wins_over_allow() -> None:
    """A host both allowed and denied is refused."""
    with pytest.raises(EgressDenied):
        _rules(allow=("10.0.0.0/8",), deny=("10.0.0.5",)).check("h.example", ["10.0.0.5"])


@pytest.mark.anyio
@pytest.mark.parametrize("host", [
    "169.254.169.254", "2852039166", "0xa9fea9fe", "169.254.43518", "0251.0376.43518",
    "::ffff:169.254.169.254", "fd00:ec2::254",
])
async def test_guard_resolves_spellings_then_refuses_without_connecting(host: str) -> None:
    """Integer, hex, octal and short spellings resolve to the real address and are refused."""
    inner = _Recorder()
    guard = EgressGuard(_rules(), inner=inner)
    with pytest.raises(EgressDenied) as info:
        await guard.connect_tcp(host, 80, timeout=1)
    assert "EgressPolicy.allow_link_local" in str(info.value)
    assert inner.connects == []


@pytest.mark.anyio
async def test_guard_connects_to_the_vetted_address() -> None:
    """The guard connects to the address it checked, never to the name (no second lookup)."""
    inner = _Recorder()
    await EgressGuard(_rules(), inner=inner).connect_tcp("localhost", 8080, timeout=1)
    assert len(inner.connects) == 1
    assert inner.connects[0] in {("127.0.0.1", 8080), ("::1", 8080)}


@pytest.mark.anyio
async def test_guard_refuses_a_name_with_any_bad_address() -> None:
    """A DNS answer that mixes a public and a metadata address is refused outright."""
    _FixedDns.answers = {"rebind.example": ["93.184.216.34", "169.254.169.254"]}
    inner = _Recorder()
    with pytest.raises(EgressDenied):
        await _FixedDns(_rules(), inner=inner).connect_tcp("rebind.example", 80)
    assert inner.connects == []


@pytest.mark.anyio
@pytest.mark.parametrize("policy", [
    EgressPolicy(deny=("blocked.example",)),
    EgressPolicy(allow=("other.example",)),
])
async def test_guard_refuses_denied_names_without_resolving(policy: EgressPolicy) -> None:
    """A name refused by deny (or by a names-only allow list) is never looked up."""
    _FixedDns.answers = {}  # a lookup would raise KeyError
    inner = _Recorder()
    guard = _FixedDns(EgressRules.from_policy(policy), inner=inner)
    with pytest.raises(EgressDenied):
        await guard.connect_tcp("blocked.example", 80)
    assert inner.connects == []


@pytest.mark.anyio
async def test_guard_tries_the_next_vetted_address() -> None:
    """When the first address refuses the connection, the next vetted one is tried."""
    _FixedDns.answers = {"dual.example": ["::1", "127.0.0.1"]}
    inner = _Recorder(refuse=("::1",))
    await _FixedDns(_rules(), inner=inner).connect_tcp("dual.example", 80)
    assert inner.connects == [("::1", 80), ("127.0.0.1", 80)]
    inner = _Recorder(refuse=("::1", "127.0.0.1"))
    with pytest.raises(httpcore.ConnectError, match=r"refused by 127\.0\.0\.1"):
        await _FixedDns(_rules(), inner=inner).connect_tcp("dual.example", 80)


@pytest.mark.anyio
async def test_guard_refuses_unix_sockets() -> None:
    """A unix socket path is outside any policy, so it is refused."""
    with pytest.raises(EgressDenied):
        await EgressGuard(_rules()).connect_unix_socket("/var/run/docker.sock")


@pytest.mark.anyio
async def test_guard_is_installed_in_httpx_transport() -> None:
    """Pins the private httpx attribute the guard goes through, and that it is really used."""
    client = make_http_client(EngineSettings())
    try:
        transport = client._transport
        assert isinstance(transport, httpx.AsyncHTTPTransport)
        pool = transport._pool
        assert isinstance(pool, httpcore.AsyncConnectionPool)
        assert isinstance(pool._network_backend, EgressGuard)
        # and through the public API, without the Http handler's own checks
        with pytest.raises(EgressDenied):
            await client.get("http://2852039166/latest/meta-data")
    finally:
        await client.aclose()


def test_make_http_client_refuses_to_run_unguarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """If httpx stops building its pool in ``_pool``, no unguarded client is made."""

    class ChangedTransport(httpx.AsyncHTTPTransport):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._connections = self._pool
            del self._pool

    monkeypatch.setattr(httpx, "AsyncHTTPTransport", ChangedTransport)
    with pytest.raises(RuntimeError, match="egress guard"):
        make_http_client(EngineSettings())


@pytest.fixture
def cookie_server() -> Iterator[str]:
    """A server on 127.0.0.1 that sets a cookie and echoes the Cookie header it got."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (self.headers.get("Cookie") or "-").encode()
            self.send_response(200)
            self.send_header("Set-Cookie", "session=abc; Path=/")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.anyio
async def test_client_keeps_no_cookies_and_ignores_proxy_env(
    cookie_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared client stores no cookies, sends dagflow's User-Agent, ignores HTTP_PROXY."""
    # a proxy would hide the real destination from the guard, so it must not be used
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    client = make_http_client(EngineSettings())
    try:
        first = await client.get(cookie_server)
        second = await client.get(cookie_server)
    finally:
        await client.aclose()
    assert first.status_code == second.status_code == 200
    assert second.text == "-"
    assert len(client.cookies) == 0
    assert first.request.headers["User-Agent"] == user_agent()


@pytest.mark.anyio
async def test_client_does_not_follow_redirects() -> None:
    """follow_redirects is off, so every hop goes back through the caller's checks."""
    client = make_http_client(EngineSettings(http_timeout_seconds=7))
    try:
        assert client.follow_redirects is False
        assert client.timeout == httpx.Timeout(7)
    finally:
        await client.aclose()
