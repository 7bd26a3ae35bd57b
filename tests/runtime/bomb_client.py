"""The client side of the decompression-bomb test, run in a process of its own.

``python -m tests.runtime.bomb_client BASE_URL`` polls ``BASE_URL/events`` and
health-checks ``BASE_URL/ping`` the way ``ucf serve`` does (the generic source,
the process's capped client, default limits), then prints one JSON line: the
peak resident memory (``VmHWM``) before and after, and how each ended. Its own
process, so the peak belongs to this work alone; its address space is capped,
so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from datetime import UTC, datetime
from pathlib import Path

from ucf.core.validation import parse_descriptor
from ucf.runtime.auth import build_auth
from ucf.runtime.http import HttpSettings, UpstreamError, create_client
from ucf.runtime.sources import GenericSource, SourceContext
from ucf.runtime.ssrf import EgressPolicy

HEADROOM = 2 << 30  # address space beyond start-up: a regression hits MemoryError, not the host


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


DESCRIPTOR = {
    "id": "bomb-api",
    "name": "Bomb API",
    "description": "an upstream that answers with a decompression bomb",
    "category": "Custom",
    "icon": "x",
    "kind": "generic",
    "version": "1.0.0",
    "auth": {
        "method": "api_key",
        "config": {
            "delivery": "header",
            "paramName": "X-Api-Key",
            "credentialFields": [
                {"key": "apiKey", "label": "Key", "type": "password", "required": True}
            ],
        },
    },
    "ingestion": {
        "mode": "polling",
        "endpoint": "{{baseUrl}}/events",
        "method": "GET",
        "delta": {"type": "timestamp_filter", "queryParam": "since", "format": "iso8601"},
        "rateLimitRpm": 600,
    },
    "fieldMapping": {
        "itemsPath": "$.events",
        "idPath": "$.id",
        "timestampPath": "$.at",
        "summaryTemplate": "{{id}}",
        "signalTypeRules": [],
    },
    "healthCheck": {
        "endpoint": "{{baseUrl}}/ping",
        "method": "GET",
        "expectStatus": 200,
        "timeoutMs": 20000,
    },
}


async def main(base_url: str) -> dict[str, object]:
    descriptor = parse_descriptor(DESCRIPTOR)
    source = GenericSource(descriptor)
    settings = HttpSettings(max_retries=0)
    async with create_client(settings, EgressPolicy(frozenset({"127.0.0.1"}))) as client:
        auth = build_auth(descriptor.auth, {"apiKey": "bomb-key-0123"}, token_client=client)
        context = SourceContext(
            client=client, auth=auth, config={"baseUrl": base_url}, settings=settings
        )
        warm = SourceContext(
            client=client, auth=auth, config={"baseUrl": base_url + "/warm"}, settings=settings
        )
        await source.health_check(warm)  # every import and code path loaded before measuring
        before = status_kib("VmHWM")
        poll_error = "no error"
        try:
            async for _page in source.fetch_delta(context, None, now=datetime.now(UTC)):
                pass
        except UpstreamError as error:
            poll_error = f"{type(error).__name__}: {error}"
        health = await source.health_check(context)
        after = status_kib("VmHWM")
    return {
        "before_kib": before,
        "after_kib": after,
        "poll_error": poll_error,
        "health_ok": health.ok,
        "health_error": health.error,
    }


if __name__ == "__main__":
    size = status_kib("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + HEADROOM, size + HEADROOM))
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
