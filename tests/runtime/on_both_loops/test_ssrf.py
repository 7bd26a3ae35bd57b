"""The SSRF guard: a descriptor's URL cannot reach inside, however it is spelled.

Address rules are checked as a table; the enforcement is checked end to end
through the real client against real loopback servers, with an injected
resolver standing in for DNS answers we cannot get offline (public-looking
names, rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import httpcore
import httpx
import pytest

from ucf.fakes import FakeRequest, FakeResponse, FakeServer, Fault, make_tls_pair
from ucf.runtime.http import HttpSettings, create_client, fetch
from ucf.runtime.ssrf import (
    EgressDenied,
    EgressPolicy,
    GuardedNetworkBackend,
    forbidden_reason,
    system_resolver,
)

SETTINGS = HttpSettings(connect_timeout=2.0, read_timeout=2.0)


def _hello(request: FakeRequest) -> FakeResponse:
    return FakeResponse.json({"host": request.headers.get("host")})


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    server = FakeServer()
    server.add_route("GET", "/hello", _hello)
    with server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeServer) -> None:
    upstream.reset()


class ScriptedDNS:
    """A stand-in resolver whose successive answers per name are scripted (the last repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = answers
        self.calls: dict[str, int] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        script = self._answers[host]
        index = self.calls.get(host, 0)
        self.calls[host] = index + 1
        return script[min(index, len(script) - 1)]


# --------------------------------------------------------------------------- address rules


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("::ffff:127.0.0.1", "embedding 127.0.0.1, loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::10.0.0.1", "embedding 10.0.0.1"),
        ("2002:a00:1::1", "embedding 10.0.0.1"),  # 6to4
        ("64:ff9b::a00:1", "embedding 10.0.0.1"),  # NAT64
        ("fec0::1", "site-local"),
        ("192.0.2.1", "private"),  # documentation range
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    found = forbidden_reason(ipaddress.ip_address(address))
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "140.82.112.6",
        "2606:4700::6810:84e5",
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_allow_list_accepts_names_ips_and_cidrs_from_env() -> None:
    policy = EgressPolicy.from_env(
        {"UCF_ALLOW_HOSTS": " API.Local. , 10.0.0.5, 192.168.0.0/16,[::1] ,"}
    )
    assert policy.name_allowed("api.local")
    assert not policy.name_allowed("other.local")
    assert policy.address_allowed(ipaddress.ip_address("10.0.0.5"))
    assert not policy.address_allowed(ipaddress.ip_address("10.0.0.6"))
    assert policy.address_allowed(ipaddress.ip_address("192.168.44.1"))
    assert policy.address_allowed(ipaddress.ip_address("::1"))


def test_empty_env_allows_only_the_public_internet() -> None:
    policy = EgressPolicy.from_env({})
    with pytest.raises(EgressDenied):
        policy.check_address("localhost", ipaddress.ip_address("127.0.0.1"))


@pytest.mark.parametrize("entry", ["http://localhost", "localhost:8080", "bad host"])
def test_malformed_allow_list_entry_is_a_clear_error(entry: str) -> None:
    with pytest.raises(ValueError, match="UCF_ALLOW_HOSTS entry"):
        EgressPolicy.from_env({"UCF_ALLOW_HOSTS": entry})


def test_refusal_names_host_and_reason_but_not_the_path() -> None:
    error = EgressDenied("metadata.example", "cloud metadata endpoint", "169.254.169.254")
    assert "metadata.example (169.254.169.254)" in str(error)
    assert "cloud metadata endpoint" in str(error)
    assert "UCF_ALLOW_HOSTS" in str(error)


# --------------------------------------------------------------------------- enforcement


async def test_loopback_fake_is_refused_without_allow_list(upstream: FakeServer) -> None:
    async with create_client(SETTINGS, EgressPolicy()) as client:
        with pytest.raises(EgressDenied, match="loopback"):
            await client.get(upstream.url("/hello"))
    assert upstream.requests == []


async def test_allow_listed_loopback_fake_is_reachable(upstream: FakeServer) -> None:
    async with create_client(SETTINGS, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
        response = await client.get(upstream.url("/hello"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "spelling", ["2130706433", "0x7f000001", "127.1", "[::ffff:127.0.0.1]", "localhost"]
)
async def test_odd_spellings_of_loopback_are_still_loopback(
    upstream: FakeServer, spelling: str
) -> None:
    async with create_client(SETTINGS, EgressPolicy()) as client:
        with pytest.raises(EgressDenied):
            await client.get(f"http://{spelling}:{upstream.port}/hello")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://a/"])
async def test_non_http_schemes_are_refused(url: str) -> None:
    async with create_client(SETTINGS, EgressPolicy()) as client:
        with pytest.raises(EgressDenied, match="is not http") as caught:
            await client.get(url)
    assert "UCF_ALLOW_HOSTS" not in str(caught.value)  # no allow-list can open these


async def test_metadata_host_name_is_refused_whatever_it_resolves_to() -> None:
    resolver = ScriptedDNS({"metadata.google.internal": [["93.184.216.34"]]})
    async with create_client(SETTINGS, EgressPolicy(), resolver=resolver) as client:
        with pytest.raises(EgressDenied, match="metadata host name"):
            await client.get("http://metadata.google.internal/computeMetadata/v1/")
    assert resolver.calls == {}  # refused before any lookup


async def test_public_looking_name_resolving_to_loopback_is_refused(upstream: FakeServer) -> None:
    resolver = ScriptedDNS({"api.innocent.example": [["127.0.0.1"]]})
    async with create_client(SETTINGS, EgressPolicy(), resolver=resolver) as client:
        with pytest.raises(EgressDenied, match=r"api\.innocent\.example \(127\.0\.0\.1\)"):
            await client.get(f"http://api.innocent.example:{upstream.port}/hello")
    assert upstream.requests == []


async def test_name_with_any_internal_answer_is_refused(upstream: FakeServer) -> None:
    resolver = ScriptedDNS({"mixed.example": [["93.184.216.34", "10.0.0.7"]]})
    async with create_client(SETTINGS, EgressPolicy(), resolver=resolver) as client:
        with pytest.raises(EgressDenied, match=r"10\.0\.0\.7"):
            await client.get(f"http://mixed.example:{upstream.port}/hello")


async def test_connection_goes_to_the_checked_address_with_the_original_host_header(
    upstream: FakeServer,
) -> None:
    resolver = ScriptedDNS({"api.partner.example": [["127.0.0.1"]]})
    policy = EgressPolicy(frozenset({"127.0.0.1/32"}))
    async with create_client(SETTINGS, policy, resolver=resolver) as client:
        response = await client.get(f"http://api.partner.example:{upstream.port}/hello")
    assert response.json() == {"host": f"api.partner.example:{upstream.port}"}


async def test_dns_rebinding_to_an_internal_address_is_refused_on_the_next_connection() -> None:
    # 127.0.0.2 plays a public API the operator allowed; 127.0.0.1 plays the
    # internal service the rebinding answer points at.
    with FakeServer(host="127.0.0.2") as public, FakeServer() as internal:
        public.add_route("GET", "/hello", _hello)
        internal.add_route("GET", "/hello", _hello)
        resolver = ScriptedDNS({"rebind.example": [["127.0.0.2"], ["127.0.0.1"]]})
        policy = EgressPolicy(frozenset({"127.0.0.2"}))
        async with create_client(SETTINGS, policy, resolver=resolver) as client:
            first = await client.get(
                f"http://rebind.example:{public.port}/hello", headers={"Connection": "close"}
            )
            assert first.status_code == 200
            with pytest.raises(EgressDenied, match=r"127\.0\.0\.1"):
                await client.get(f"http://rebind.example:{public.port}/hello")
        assert resolver.calls == {"rebind.example": 2}
        assert internal.requests == []


async def test_tls_verifies_the_url_host_while_connecting_to_the_resolved_ip() -> None:
    tls = make_tls_pair(["api.partner.example"])
    with FakeServer(ssl_context=tls.server) as secure:
        secure.add_route("GET", "/hello", _hello)
        resolver = ScriptedDNS({"api.partner.example": [["127.0.0.1"]]})
        policy = EgressPolicy(frozenset({"127.0.0.1"}))
        async with create_client(SETTINGS, policy, resolver=resolver, verify=tls.client) as client:
            response = await client.get(f"https://api.partner.example:{secure.port}/hello")
            assert response.json() == {"host": f"api.partner.example:{secure.port}"}
            # Same server by IP: the certificate does not name it, so TLS refuses.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://127.0.0.1:{secure.port}/hello")


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://files.internal/dump"])
async def test_redirect_to_a_non_http_scheme_is_refused(
    upstream: FakeServer, location: str
) -> None:
    upstream.inject(Fault.redirect(location), path="/hello")
    policy = EgressPolicy(frozenset({"127.0.0.1"}))
    async with create_client(SETTINGS, policy) as client:
        with pytest.raises(EgressDenied, match="is not http"):
            await fetch(
                client, client.build_request("GET", upstream.url("/hello")), settings=SETTINGS
            )


# --------------------------------------------------------------------------- the resolver


async def test_the_system_resolver_answers_addresses_of_the_name() -> None:
    """The loop's own ``getaddrinfo`` (``localhost`` resolves offline, from the hosts file)."""
    answers = await system_resolver("localhost", 443)
    assert answers
    assert all(ipaddress.ip_address(answer).is_loopback for answer in answers)


async def test_a_name_the_resolver_does_not_answer_in_time_is_a_connect_timeout() -> None:
    async def silent(host: str, port: int) -> list[str]:
        await asyncio.sleep(30)
        raise AssertionError("the lookup was not timed out")

    backend = GuardedNetworkBackend(EgressPolicy(), resolver=silent)
    with pytest.raises(httpcore.ConnectTimeout, match=r"resolving slow\.example timed out"):
        await backend.connect_tcp("slow.example", 443, timeout=0.05)


async def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    backend = GuardedNetworkBackend(EgressPolicy())
    with pytest.raises(httpcore.ConnectError, match=r"could not resolve nowhere\.invalid"):
        await backend.connect_tcp("nowhere.invalid", 443, timeout=5)
