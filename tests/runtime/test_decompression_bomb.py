"""A hostile upstream's decompression bomb costs a poll and a health check almost nothing.

The fake answers both the poll endpoint and the health check with half a
megabyte of gzip that inflates to 512 MiB — or, stacked (``Content-Encoding:
gzip, gzip``), with 1 KB that does the same. The client runs in its own
process (``bomb_client``), which reports its peak resident memory before and
after: both requests must end with a clear error and cost under 100 MiB.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ucf.fakes import FakeRequest, FakeResponse, FakeServer
from ucf.runtime.decoding import DECODE_STEP, EncodingRefused, inflater_for
from ucf.runtime.http import HttpSettings, MalformedResponse, create_client, fetch
from ucf.runtime.ssrf import EgressPolicy

ROOT = Path(__file__).resolve().parents[2]
INFLATED = 512 << 20
BUDGET_KIB = 100 * 1024


def gzip_of_zeros(size: int) -> bytes:
    """A gzip member of ``size`` zero bytes, built in milliseconds.

    After a full flush, deflate forgets everything, so every 1 MiB of zeros
    compresses to the same bytes: compress one, repeat it, and write the
    header and trailer (CRC-32, length) by hand.
    """
    chunk = bytes(1 << 20)
    assert size % len(chunk) == 0
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    crc = 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * (size // len(chunk)) + end + struct.pack("<II", crc, size & 0xFFFFFFFF)


def _answering(response: FakeResponse) -> Callable[[FakeRequest], FakeResponse]:
    return lambda _request: response


@pytest.fixture(scope="module")
def bombs() -> Iterator[FakeServer]:
    single = gzip_of_zeros(INFLATED)
    stacked = gzip.compress(single)
    one = FakeResponse(headers={"Content-Encoding": "gzip"}, body=single)
    two = FakeResponse(headers={"Content-Encoding": "gzip, gzip"}, body=stacked)
    warm = FakeResponse(
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        body=gzip.compress(b'{"ok": true}'),
    )
    with FakeServer() as server:
        for prefix, bomb in (("/single", one), ("/stacked", two)):
            server.add_route("GET", f"{prefix}/events", _answering(bomb))
            server.add_route("GET", f"{prefix}/ping", _answering(bomb))
            server.add_route("GET", f"{prefix}/warm/ping", _answering(warm))
        yield server


def run_client(base_url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.runtime.bomb_client", base_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_gzip_bomb_ends_poll_and_health_check_as_too_large_within_100_mib(
    bombs: FakeServer,
) -> None:
    report = run_client(bombs.url("/single"))

    assert report["after_kib"] - report["before_kib"] < BUDGET_KIB, report
    assert "ResponseTooLarge" in report["poll_error"]
    assert "response too large" in report["poll_error"]
    assert "once gzip-decoded" in report["poll_error"]
    assert report["health_ok"] is False
    assert "response too large" in report["health_error"]


def test_stacked_codings_are_refused_by_poll_and_health_check_within_100_mib(
    bombs: FakeServer,
) -> None:
    report = run_client(bombs.url("/stacked"))

    assert report["after_kib"] - report["before_kib"] < BUDGET_KIB, report
    assert "MalformedResponse" in report["poll_error"]
    assert "stacked content-codings (gzip, gzip) are refused" in report["poll_error"]
    assert report["health_ok"] is False
    assert "stacked content-codings" in report["health_error"]


# --------------------------------------------------------------------------- decoding


def test_each_decoding_step_is_bounded_whatever_the_ratio() -> None:
    inflater = inflater_for(["gzip"])
    assert inflater is not None
    body = gzip_of_zeros(64 << 20)
    sizes = [len(piece) for piece in inflater.feed(body[:4096])]
    assert sizes
    assert max(sizes) <= DECODE_STEP
    total = sum(sizes)
    for start in range(4096, len(body), 4096):
        total += sum(len(piece) for piece in inflater.feed(body[start : start + 4096]))
    total += sum(len(piece) for piece in inflater.finish())
    assert total == 64 << 20  # bounded steps, nothing lost


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["gzip, gzip"], "stacked content-codings (gzip, gzip)"),
        (["gzip", "deflate"], "stacked content-codings (gzip, deflate)"),
        (["br"], "unsupported Content-Encoding 'br'"),
        (["zstd"], "unsupported Content-Encoding 'zstd'"),
    ],
)
def test_stacked_and_unboundable_codings_are_refused(header: list[str], expected: str) -> None:
    with pytest.raises(EncodingRefused) as caught:
        inflater_for(header)
    assert expected in str(caught.value)


@pytest.mark.parametrize("header", [[], ["identity"], [" Identity "]])
def test_identity_needs_no_decoder(header: list[str]) -> None:
    assert inflater_for(header) is None


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(b'{"items": [1, 2, 3]}')),
        ("x-gzip", gzip.compress(b'{"items": [1, 2, 3]}')),
        ("deflate", zlib.compress(b'{"items": [1, 2, 3]}')),
        ("deflate", zlib.compress(b'{"items": [1, 2, 3]}')[2:-4]),  # raw deflate, as IIS sends
    ],
    # Named, not shown: gzip stamps the current time into its header, and ids made
    # of the bytes would differ between pytest-xdist's workers, which must agree.
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw"],
)
async def test_compressed_answers_decode_as_before(coding: str, body: bytes) -> None:
    with FakeServer() as server:
        server.add_route(
            "GET", "/items", lambda _: FakeResponse(headers={"Content-Encoding": coding}, body=body)
        )
        settings = HttpSettings()
        async with create_client(settings, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
            response = await fetch(
                client, client.build_request("GET", server.url("/items")), settings=settings
            )
        (seen,) = server.requests_to("/items")
    assert response.json() == {"items": [1, 2, 3]}
    assert "content-encoding" not in response.headers  # decoded here, not again by httpx
    assert seen.headers["accept-encoding"] == "gzip, deflate"  # only what can be bounded


async def test_brotli_answer_is_refused_with_its_name() -> None:
    with FakeServer() as server:
        server.add_route(
            "GET", "/items", lambda _: FakeResponse(headers={"Content-Encoding": "br"}, body=b"x")
        )
        settings = HttpSettings()
        async with create_client(settings, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
            with pytest.raises(MalformedResponse, match="unsupported Content-Encoding 'br'"):
                await fetch(
                    client, client.build_request("GET", server.url("/items")), settings=settings
                )
