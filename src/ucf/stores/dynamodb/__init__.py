"""The DynamoDB store: the brief's single table, on conditional writes.

``dynamodb://TABLE?region=eu-west-1`` in AWS, or
``dynamodb://TABLE?region=us-east-1&endpoint=http://127.0.0.1:8000`` for a
local DynamoDB-compatible server. Credentials come from boto3's usual chain
(environment, profile, instance/Lambda role). Item types and access patterns
are documented in ``docs/storage.md``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from ucf.stores.dynamodb.client import DynamoClient, DynamoTarget, RetryPolicy
from ucf.stores.dynamodb.coordination import (
    DynamoCheckpointStore,
    DynamoLeaseStore,
    DynamoRateLimitStore,
    DynamoRecordStore,
    DynamoSecretLeaseStore,
)
from ucf.stores.dynamodb.registry import DynamoDescriptorRegistry, DynamoInstanceStore
from ucf.stores.dynamodb.signals import DynamoOutbox, DynamoSignalStore
from ucf.stores.dynamodb.table import TTL_ATTRIBUTE, ensure_table
from ucf.stores.errors import StoreConfigError
from ucf.stores.models import (
    StoreOptions,
)
from ucf.stores.protocols import Store

if TYPE_CHECKING:
    from ucf.stores.reports import InitReport

_URL_FORM = (
    "use dynamodb://TABLE?region=eu-west-1 (add &endpoint=http://host:port for a local server)"
)
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_PARAMETERS = frozenset({"region", "endpoint"})


def parse_dynamodb_url(url: str) -> DynamoTarget:
    """The table, region and endpoint a ``dynamodb://`` URL names; nothing is contacted."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "dynamodb":
        raise StoreConfigError(f"{url!r} is not a dynamodb:// URL", _URL_FORM)
    table = parts.netloc
    if not _TABLE_NAME.match(table):
        raise StoreConfigError(
            f"store URL {url!r} names table {table!r}, which DynamoDB does not allow",
            "table names are 3-255 characters of letters, digits, '_', '-' and '.'; " + _URL_FORM,
        )
    if parts.path not in {"", "/"} or parts.fragment:
        raise StoreConfigError(f"store URL {url!r} has a path or fragment", _URL_FORM)
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise StoreConfigError(f"store URL {url!r} has a malformed query", _URL_FORM) from None
    unknown = sorted(set(query) - _PARAMETERS)
    if unknown:
        raise StoreConfigError(
            f"store URL {url!r} has unknown parameter(s) {', '.join(unknown)}",
            "only region and endpoint are understood; " + _URL_FORM,
        )
    values: dict[str, str] = {}
    for name, given in query.items():
        if len(given) != 1 or not given[0]:
            raise StoreConfigError(f"store URL {url!r} gives {name} empty or twice", _URL_FORM)
        values[name] = given[0]
    endpoint = values.get("endpoint")
    if endpoint is not None and urlsplit(endpoint).scheme not in {"http", "https"}:
        raise StoreConfigError(
            f"store URL {url!r}: endpoint {endpoint!r} is not an http(s) URL",
            "use endpoint=http://127.0.0.1:8000 (URL-encode it if it has its own query)",
        )
    return DynamoTarget(table=table, region=values.get("region"), endpoint=endpoint)


class DynamoLifecycle:
    def __init__(self, client: DynamoClient) -> None:
        self.client = client
        self._target = client.target

    @property
    def description(self) -> str:
        return f"DynamoDB table {self._target.table} at {self._target.where}"

    async def init(self) -> InitReport:
        from ucf.stores.reports import InitReport  # ucf store init: never on Lambda

        status = await ensure_table(self.client)
        actions: list[str] = []
        if status.created:
            actions.append(f"created DynamoDB table {self._target.table} with index GSI2")
        if status.ttl_enabled and status.ttl_changed:
            actions.append(f"enabled TTL on {TTL_ATTRIBUTE}")
        if not status.ttl_enabled and status.created:
            actions.append(status.ttl_note)
        return InitReport(backend="dynamodb", location=self.description, actions=tuple(actions))

    async def close(self) -> None:
        self.client.close()


def open_dynamodb_store(
    url: str, options: StoreOptions, *, retry: RetryPolicy | None = None
) -> Store:
    """A store on the table ``url`` names; the table is created by ``init()``."""
    # boto3 builds its client without network access: a missing region fails
    # here, an unreachable endpoint or missing table in ``init()``.
    client = DynamoClient(parse_dynamodb_url(url), retry=retry)
    lifecycle = DynamoLifecycle(client)
    checkpoints = DynamoCheckpointStore(client)
    signals = DynamoSignalStore(client, options.signal_retention, checkpoints)
    return Store(
        lifecycle=lifecycle,
        descriptors=DynamoDescriptorRegistry(client, history=options.descriptor_history),
        instances=DynamoInstanceStore(client),
        checkpoints=checkpoints,
        signals=signals,
        outbox=DynamoOutbox(client, signals),
        leases=DynamoLeaseStore(client),
        rate_limits=DynamoRateLimitStore(client),
        records=DynamoRecordStore(client),
        secret_leases=DynamoSecretLeaseStore(client),
    )


__all__ = ["open_dynamodb_store", "parse_dynamodb_url"]
