"""The client's CA bundle loads on a thread, and no handshake starts before it is in."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from pathlib import Path

import certifi
import httpx
import pytest

from ucf.fakes import FakeRequest, FakeResponse, FakeServer, TlsPair, make_tls_pair
from ucf.runtime.http import HttpSettings, create_client, expect_request
from ucf.runtime.ssrf import EgressPolicy
from ucf.runtime.trust import LOAD_THREAD_NAME, BackgroundTrust

SETTINGS = HttpSettings(connect_timeout=2.0, read_timeout=2.0)
LOOPBACK = EgressPolicy(frozenset({"127.0.0.1", "localhost"}))


def _hello(request: FakeRequest) -> FakeResponse:
    return FakeResponse.json({"hello": "world"})


def _slow_where(bundle: Path, seconds: float) -> object:
    def where() -> str:
        time.sleep(seconds)  # on the loading thread: the request is made meanwhile
        return str(bundle)

    return where


def test_the_context_is_the_one_httpx_builds_for_verify_true() -> None:
    """Same settings and the same certificates as ``ssl.create_default_context(cafile=certifi)``."""
    trust = BackgroundTrust(True)
    trust.wait(timeout=30)
    ours, httpx_own = trust.context, httpx.create_ssl_context(verify=True, trust_env=False)
    for setting in (
        "protocol",
        "verify_mode",
        "check_hostname",
        "verify_flags",
        "options",
        "minimum_version",
        "maximum_version",
        "keylog_filename",
        "post_handshake_auth",
    ):
        assert getattr(ours, setting) == getattr(httpx_own, setting), setting
    certificates = ours.get_ca_certs(binary_form=True)
    assert len(certificates) > 100
    assert sorted(certificates) == sorted(httpx_own.get_ca_certs(binary_form=True))


def test_a_callers_context_is_used_as_it_is() -> None:
    own = ssl.create_default_context()
    assert BackgroundTrust(own).context is own
    unverified = BackgroundTrust(False).context
    assert unverified.verify_mode == ssl.CERT_NONE
    assert not unverified.check_hostname


async def test_an_https_request_waits_for_the_bundle_still_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The request is sent while the bundle is still loading (it takes 0.3 s here):
    without the wait its handshake would meet an empty trust store and fail."""
    tls = make_tls_pair(["localhost"])
    bundle = _bundle_of(tls, tmp_path)
    monkeypatch.setattr(certifi, "where", _slow_where(bundle, 0.3))
    with FakeServer(ssl_context=tls.server) as secure:
        secure.add_route("GET", "/hello", _hello)
        async with create_client(SETTINGS, LOOPBACK) as client:
            response = await client.get(f"https://localhost:{secure.port}/hello")
    assert response.json() == {"hello": "world"}


async def test_a_bundle_that_cannot_load_fails_https_requests_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(certifi, "where", _slow_where(tmp_path / "missing.pem", 0.0))
    with FakeServer() as plain:
        plain.add_route("GET", "/hello", _hello)
        async with create_client(SETTINGS, LOOPBACK) as client:
            assert (await client.get(plain.url("/hello"))).json() == {"hello": "world"}
            for _ in range(2):  # every later one too: the error is kept, not swallowed
                # An httpx error, as a failed handshake is: every caller handles those
                # (the SES gateway's certificate fetch, the retries, the poll's error paths).
                with pytest.raises(httpx.ConnectError, match="CA certificates") as failed:
                    await client.get(f"https://localhost:{plain.port}/hello")
                assert isinstance(failed.value.__cause__, FileNotFoundError)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_child_forked_while_the_bundle_loads_has_it_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A fork copies no threads: a child forked while the bundle loads would wait for a
    thread it does not have, and its first HTTPS request would hang for ever."""
    tls = make_tls_pair(["localhost"])
    bundle = _bundle_of(tls, tmp_path)
    monkeypatch.setattr(certifi, "where", _slow_where(bundle, 0.5))
    trust = BackgroundTrust(True)
    assert _forked_child_loads_one_certificate(trust)
    trust.wait(timeout=5)  # and the parent's own load is not disturbed
    assert len(trust.context.get_ca_certs()) == 1


def _loads(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> list[str]:
    """certifi.where, counted: each call is one load of the bundle."""
    calls: list[str] = []

    def where() -> str:
        calls.append(threading.current_thread().name)
        return str(bundle)

    monkeypatch.setattr(certifi, "where", where)
    return calls


async def test_a_client_that_only_speaks_plain_http_never_loads_the_bundle_when_told_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``load_ca_now=False`` (the context's client): a poll worker whose upstream is
    plain http does not parse ~120 certificates it will never use (~15 ms of CPU)."""
    loads = _loads(monkeypatch, Path(certifi.where()))
    with FakeServer() as plain:
        plain.add_route("GET", "/hello", _hello)
        async with create_client(SETTINGS, LOOPBACK, load_ca_now=False) as client:
            expect_request(client, plain.url("/hello"))
            assert (await client.get(plain.url("/hello"))).json() == {"hello": "world"}

    assert loads == []


async def test_an_expected_https_request_starts_the_load_before_it_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tls = make_tls_pair(["localhost"])
    bundle = _bundle_of(tls, tmp_path)
    loads = _loads(monkeypatch, bundle)
    with FakeServer(ssl_context=tls.server) as secure:
        secure.add_route("GET", "/hello", _hello)
        async with create_client(SETTINGS, LOOPBACK, load_ca_now=False) as client:
            url = f"https://localhost:{secure.port}/hello"
            expect_request(client, url)
            expect_request(client, url)  # once only
            for _ in range(50):  # on its own thread, before any request is made
                if loads:
                    break
                await asyncio.sleep(0.01)
            assert loads == [LOAD_THREAD_NAME]
            response = await client.get(url)

    assert response.json() == {"hello": "world"}
    assert loads == [LOAD_THREAD_NAME]


async def test_an_https_request_nobody_announced_still_loads_the_bundle_and_verifies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Deferring the load never skips it: the first https request loads and waits,
    and a server the bundle does not vouch for is refused as before."""
    tls = make_tls_pair(["localhost"])
    bundle = _bundle_of(tls, tmp_path)
    loads = _loads(monkeypatch, bundle)
    stranger = make_tls_pair(["localhost"])  # another CA
    with (
        FakeServer(ssl_context=tls.server) as secure,
        FakeServer(ssl_context=stranger.server) as unknown,
    ):
        secure.add_route("GET", "/hello", _hello)
        unknown.add_route("GET", "/hello", _hello)
        async with create_client(SETTINGS, LOOPBACK, load_ca_now=False) as client:
            assert loads == []
            response = await client.get(f"https://localhost:{secure.port}/hello")
            with pytest.raises(httpx.ConnectError):
                await client.get(f"https://localhost:{unknown.port}/hello")

    assert response.json() == {"hello": "world"}
    assert loads == [LOAD_THREAD_NAME]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_child_forked_before_a_deferred_load_loads_the_bundle_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tls = make_tls_pair(["localhost"])
    bundle = _bundle_of(tls, tmp_path)
    loads = _loads(monkeypatch, bundle)
    trust = BackgroundTrust(True, load_now=False)
    assert _forked_child_loads_one_certificate(trust)
    assert loads == []  # the parent, told nothing, loaded nothing


def _bundle_of(tls: TlsPair, folder: Path) -> Path:
    """A CA bundle file holding the CA the pair's client trusts (what certifi would name)."""
    bundle = folder / "bundle.pem"
    bundle.write_text(ssl.DER_cert_to_PEM_cert(tls.client.get_ca_certs(binary_form=True)[0]))
    return bundle


def _forked_child_loads_one_certificate(trust: BackgroundTrust) -> bool:
    """Whether a child forked now gets ``trust``'s bundle (one certificate) within 5 s."""
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, and never return into pytest
        code = 1
        try:
            trust.wait(timeout=5)
            code = 0 if len(trust.context.get_ca_certs()) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
