"""A faithful fake of Datadog's Events API v2 and monitors API, and its Webhooks integration.

What it reproduces (DataDog/datadog-api-client-python and Datadog's API docs; the
links are under Sources in docs/connectors/datadog.md):

* ``GET /api/v2/events`` — ``filter[query]`` (``source:alert`` is monitor
  alerts; ``tag:value`` terms narrow it), ``filter[from]``/``filter[to]`` (epoch
  milliseconds, ISO 8601 or ``now-15m`` date math; ``from`` inclusive; defaults
  ``now-15m``/``now``), ``sort`` (``timestamp`` oldest first, ``-timestamp``
  newest first, the default), ``page[limit]`` (≤ 1000, default 10) and
  ``page[cursor]``. Response ``{"data": [{id, type: "event", attributes:
  {message, tags, timestamp, attributes: {…monitor alert fields…}}}], "meta":
  {"page": {"after"}, "elapsed", "request_id", "status", "warnings"}, "links":
  {"next"}}``; ``meta.page.after`` and ``links.next`` only while more remain.
  Monitor alert titles carry the monitor's priority (``[P2] [Triggered on
  {host:web-3}] …``) and their status is ``error``, ``warning`` or ``success``.
* ``GET /api/v1/monitor`` — a bare array; ``page`` (0-based) with
  ``page_size`` (≤ 1000, default 100), all monitors unpaginated without
  ``page``; ``group_states``, ``name``, ``monitor_tags``. ``GET /api/v1/validate``.
* Both ``DD-API-KEY`` and ``DD-APPLICATION-KEY`` required (``/validate`` needs only
  the API key); otherwise ``403 {"errors": ["Forbidden"]}``.
* ``X-RateLimit-Limit/-Period/-Remaining/-Reset/-Name`` on every answer; the
  rate-limit fault is ``429 {"errors": ["Too many requests"]}`` with those
  headers (``-Reset`` in seconds) and no ``Retry-After``.
* Webhooks: Datadog signs nothing; deliveries carry the custom header the user
  configured (``Authorization: Bearer <token>``) and the payload template ucf
  recommends, filled in the way the integration fills ``$VARIABLES``.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlencode

from ucf.core.timestamps import parse_timestamp, to_epoch_ms
from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_millis
from ucf.fakes.scenario import (
    Activity,
    MetadataExpectation,
    ProviderFake,
    PushedChange,
    Scenario,
    WebhookDelivery,
    WebhookSample,
)

API_KEY: Final = "9775a026f1ca7d1c6c5af9d94d9595a4"
APP_KEY: Final = "87ce4a24b5553d2e482ea8a8500e71b8ad4554ff"
BAD_API_KEY: Final = "00000000000000000000000000000000"
WEBHOOK_TOKEN: Final = "dd-webhook-FAKE0token0for0the0ucf0battery0x9f"  # noqa: S105
WEB: Final = "https://app.datadoghq.com"
ORG_ID: Final = "415600"
RATE_LIMIT: Final = 1000

Transition = Literal[
    "Triggered", "Re-Triggered", "Warn", "Re-Warn", "Recovered", "No Data", "Re-No Data"
]
STATUS_OF: Final[dict[str, str]] = {
    "Triggered": "error",
    "Re-Triggered": "error",
    "Warn": "warning",
    "Re-Warn": "warning",
    "Recovered": "success",
    "No Data": "warning",
    "Re-No Data": "warning",
}
MONITORS: Final = (
    ("CPU usage high on web hosts", "avg(last_5m):avg:system.cpu.user{role:web} by {host} > 90", 2),
    (
        "Checkout error rate above 5%",
        "sum(last_10m):sum:trace.http.request.errors{service:checkout}.as_count() > 50",
        1,
    ),
    ("Disk almost full", "max(last_5m):max:system.disk.in_use{*} by {host,device} > 0.9", 3),
    (
        "Queue backlog growing",
        "avg(last_15m):avg:rabbitmq.queue.messages{queue:orders} > 10000",
        None,
    ),
    ("Search latency p99", "avg(last_5m):p99:trace.search.request{env:prod} > 2", 4),
    ("Payments API 5xx", "sum(last_5m):sum:payments.http.5xx{env:prod}.as_count() > 20", 1),
    ("Certificate expiry", "avg(last_1h):avg:tls.days_left{*} by {domain} < 7", 5),
    (
        "Memory pressure on workers",
        "avg(last_10m):avg:system.mem.pct_usable{role:worker} by {host} < 0.1",
        3,
    ),
)
SERVICES: Final = ("web", "checkout", "storage", "orders", "search", "payments", "edge", "worker")
HOSTS: Final = ("web-1", "web-2", "web-3", "db-1", "worker-7")


iso_ms = iso_millis


def errors(status: int, *messages: str) -> FakeResponse:
    return FakeResponse.json({"errors": list(messages)}, status)


# --------------------------------------------------------------------------- dataset


@dataclass
class Monitor:
    id: int
    name: str
    query: str
    priority: int | None
    service: str
    created: datetime
    state: str = "OK"
    state_modified: datetime | None = None

    @property
    def tags(self) -> list[str]:
        return ["env:prod", f"service:{self.service}", "team:sre"]

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": "query alert" if "trace." in self.query else "metric alert",
            "query": self.query,
            "message": f"{self.name} @pagerduty-sre @webhook-ucf",
            "tags": self.tags,
            "options": {
                "notify_no_data": False,
                "notify_audit": False,
                "renotify_interval": 0,
                "include_tags": True,
                "new_group_delay": 60,
                "thresholds": {"critical": 90, "warning": 80},
            },
            "priority": self.priority,
            "created": iso_ms(self.created),
            "modified": iso_ms(self.created),
            "creator": {
                "email": "sre@acme.example",
                "handle": "sre@acme.example",
                "name": "SRE Bot",
            },
            "multi": "by {" in self.query,
            "org_id": int(ORG_ID),
            "overall_state": self.state,
            "overall_state_modified": iso_ms(self.state_modified or self.created),
            "restricted_roles": None,
            "deleted": None,
        }


@dataclass
class AlertEvent:
    """One monitor transition as the Events API v2 lists it."""

    id: str
    evt_id: str
    monitor: Monitor
    transition: Transition
    host: str
    at: datetime
    extra_tags: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        prefix = f"[P{self.monitor.priority}] " if self.monitor.priority else ""
        return f"{prefix}[{self.transition} on {{host:{self.host}}}] {self.monitor.name}"

    @property
    def tags(self) -> list[str]:
        return [*self.monitor.tags, f"host:{self.host}", "monitor", *self.extra_tags]

    def json(self) -> dict[str, Any]:
        ms = to_epoch_ms(self.at)
        monitor = self.monitor
        return {
            "id": self.id,
            "type": "event",
            "attributes": {
                "message": (
                    f"%%%\n{monitor.name} on host:{self.host}\n\n"
                    f"[[Monitor Status]({WEB}/monitors/{monitor.id})] · "
                    f"[[Edit Monitor]({WEB}/monitors/{monitor.id}/edit)]\n%%%"
                ),
                "tags": self.tags,
                "timestamp": iso_ms(self.at),
                "attributes": {
                    "aggregation_key": f"{monitor.id}-host:{self.host}",
                    "evt": {"id": self.evt_id, "source_id": 36, "type": "query_alert_monitor"},
                    "hostname": self.host,
                    "monitor": {
                        "created_at": to_epoch_ms(monitor.created) * 1_000_000,
                        "group_status": {"error": 2, "warning": 1, "success": 0}[
                            STATUS_OF[self.transition]
                        ],
                        "groups": [f"host:{self.host}"],
                        "id": monitor.id,
                        "message": f"{monitor.name} @webhook-ucf",
                        "modified": to_epoch_ms(monitor.created) * 1_000_000,
                        "name": monitor.name,
                        "query": monitor.query,
                        "tags": monitor.tags,
                        "templated_name": monitor.name,
                        "type": "query alert",
                    },
                    "monitor_groups": [f"host:{self.host}"],
                    "monitor_id": monitor.id,
                    "priority": "normal",
                    "service": monitor.service,
                    "source_type_name": "Monitor Alert",
                    "sourcecategory": "monitor_alert",
                    "status": STATUS_OF[self.transition],
                    "timestamp": ms,
                    "title": self.title,
                },
            },
        }


class Dataset:
    """An organization's monitors and their alert events, laid out around ``now``.

    Eight monitors cycling between Triggered, Warn and Recovered over the last
    six days (about 190 events, two pages at ``page[limit]=100``); two more
    monitors whose last alerts are a month old.
    """

    def __init__(self, now: datetime, *, cycles: int = 24) -> None:
        self._ids = itertools.count(1)
        self.monitors: dict[int, Monitor] = {}
        self.events: list[AlertEvent] = []
        window = timedelta(days=6)
        for index, (name, query, priority) in enumerate(MONITORS):
            monitor = self.monitor(name, query, priority, SERVICES[index], now - timedelta(days=60))
            for cycle in range(cycles):
                start = (
                    now
                    - window
                    + window * (cycle * len(MONITORS) + index) / (cycles * len(MONITORS))
                )
                host = HOSTS[(index + cycle) % len(HOSTS)]
                self.transition(monitor, "Triggered", host, start)
                if cycle % 5 == 2:
                    self.transition(monitor, "Warn", host, start + timedelta(minutes=3))
                if cycle < cycles - 1 or index % 2:
                    self.transition(monitor, "Recovered", host, start + timedelta(minutes=7))
        for index in range(2):
            monitor = self.monitor(
                f"Legacy cron heartbeat {index}",
                "avg(last_1h):avg:cron.heartbeat{*} < 1",
                3,
                "cron",
                now - timedelta(days=200),
            )
            self.transition(monitor, "No Data", "db-1", now - timedelta(days=40 + index))

    def monitor(
        self, name: str, query: str, priority: int | None, service: str, created: datetime
    ) -> Monitor:
        monitor = Monitor(
            id=152_000_000 + next(self._ids) * 7,
            name=name,
            query=query,
            priority=priority,
            service=service,
            created=created.replace(microsecond=0),
        )
        self.monitors[monitor.id] = monitor
        return monitor

    def transition(
        self, monitor: Monitor, transition: Transition, host: str, at: datetime
    ) -> AlertEvent:
        number = len(self.events) + 1
        event = AlertEvent(
            id="AAAAAY" + uuid.uuid5(uuid.NAMESPACE_OID, f"dd-{number}").hex[:26].upper(),
            evt_id=str(7_263_531_098_754_417 + number),
            monitor=monitor,
            transition=transition,
            host=host,
            at=at.replace(microsecond=(at.microsecond // 1000) * 1000),
        )
        self.events.append(event)
        monitor.state = {"error": "Alert", "warning": "Warn", "success": "OK"}[
            STATUS_OF[transition]
        ]
        if transition == "No Data":
            monitor.state = "No Data"
        monitor.state_modified = event.at
        return event


# --------------------------------------------------------------------------- the fake

_MATH: Final = re.compile(r"now(?:-(\d+)([smhdw]))?")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class DatadogFake(ProviderFake):
    """``api.datadoghq.com`` for one organization, answering as documented."""

    poll_route = "/api/v2/events"

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.data = Dataset(now)
        self.now = now
        self.api_keys = {API_KEY}
        self.app_keys = {APP_KEY}
        self.remaining = RATE_LIMIT
        self._cursors: dict[str, tuple[str, int]] = {}
        self.server.add_route("GET", "/api/v2/events", self._guard(self._events))
        self.server.add_route("GET", "/api/v1/monitor", self._guard(self._monitors))
        self.server.add_route("GET", "/api/v1/validate", self._guard(self._validate, app_key=False))

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """A new monitor triggers; an alerting monitor recovers; a quiet one triggers again."""
        data = self.data
        self.now = max(self.now, now)
        fresh = data.monitor(
            "Login failures spike", "sum(last_5m):sum:auth.failures{*} > 100", 1, "auth", now
        )
        data.transition(fresh, "Triggered", "web-2", now)
        alerting = next(m for m in data.monitors.values() if m.state == "Alert")
        quiet = next(m for m in data.monitors.values() if m.state == "OK")
        data.transition(alerting, "Recovered", "web-1", now)
        data.transition(quiet, "Re-Triggered", "web-3", now)
        return Activity(
            new_ids=frozenset({str(fresh.id)}),
            changed_ids=frozenset({str(alerting.id), str(quiet.id)}),
        )

    def push_change(self, now: datetime) -> PushedChange:
        """An alerting monitor recovers: one event, polled and pushed with its ``$ID``."""
        self.now = max(self.now, now)
        monitor = next(m for m in self.data.monitors.values() if m.state == "Alert")
        event = self.data.transition(monitor, "Recovered", "web-1", now)
        payload = webhook_payload(event, cycle=f"{monitor.id}-1")
        return PushedChange(str(monitor.id), WebhookSample.of("Recovered", payload))

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(str(e.monitor.id) for e in self.data.events if e.at >= moment)

    def rate_limit_fault(self, retry_after: int) -> Fault:
        return Fault.rate_limited(
            None,
            headers=self._rate_headers(remaining=0, reset=retry_after),
            body={"errors": ["Too many requests"]},
        )

    # -- plumbing

    def _rate_headers(self, *, remaining: int, reset: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Period": "60",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Name": "events_list",
        }

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse], *, app_key: bool = True
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            if request.headers.get("dd-api-key") not in self.api_keys:
                return errors(403, "Forbidden")
            if app_key and request.headers.get("dd-application-key") not in self.app_keys:
                return errors(403, "Forbidden")
            self.remaining = max(1, self.remaining - 1)
            response = handler(request)
            headers = {
                **dict(response.header_items()),
                **self._rate_headers(remaining=self.remaining, reset=60 - int(self.now.second)),
            }
            return FakeResponse(response.status, headers, response.body)

        return guarded

    def _moment(self, text: str) -> datetime | None:
        """``filter[from]``/``filter[to]``: epoch ms, ISO 8601, or ``now``/``now-15m``."""
        math = _MATH.fullmatch(text.strip())
        now = max(datetime.now(UTC), self.now)
        if math is not None:
            if math.group(1) is None:
                return now
            return now - timedelta(seconds=int(math.group(1)) * _UNITS[math.group(2)])
        if text.strip().isdigit():
            return parse_timestamp(text.strip(), "unix_ms")
        return parse_timestamp(text, "iso8601")

    def _events(self, request: FakeRequest) -> FakeResponse:
        start = self._moment(request.param("filter[from]") or "now-15m")
        end = self._moment(request.param("filter[to]") or "now")
        if start is None or end is None:
            return errors(
                400,
                "Invalid filter[from] or filter[to]: expected a timestamp in milliseconds, an ISO 8601 date or date math",
            )
        sort = request.param("sort") or "-timestamp"
        if sort not in ("timestamp", "-timestamp"):
            return errors(400, f"Invalid sort: {sort}")
        try:
            limit = int(request.param("page[limit]") or "10")
        except ValueError:
            return errors(400, "page[limit] must be an integer")
        if not 1 <= limit <= 1000:
            return errors(400, "page[limit] must be between 1 and 1000")
        query = (request.param("filter[query]") or "*").strip()
        terms = [t for t in query.split() if t != "*"]
        key = "|".join(
            request.param(name) or ""
            for name in ("filter[query]", "filter[from]", "filter[to]", "sort")
        )
        offset = 0
        cursor = request.param("page[cursor]")
        if cursor is not None:
            issued = self._cursors.get(cursor)
            if issued is None or issued[0] != key:
                return errors(400, "Invalid page[cursor]")
            offset = issued[1]
        chosen = [
            e
            for e in self.data.events
            if start <= e.at <= end and all(self._term(term, e) for term in terms)
        ]
        chosen.sort(key=lambda e: (e.at, e.id), reverse=sort == "-timestamp")
        window = chosen[offset : offset + limit]
        body: dict[str, Any] = {
            "data": [e.json() for e in window],
            "meta": {
                "elapsed": 43,
                "page": {},
                "request_id": f"pddv1ChZ{uuid.uuid4().hex[:16]}",
                "status": "done",
                "warnings": [],
            },
            "links": {},
        }
        if offset + limit < len(chosen):
            after = uuid.uuid4().hex
            self._cursors[after] = (key, offset + limit)
            body["meta"]["page"]["after"] = after
            params = [
                (k, v) for k, values in request.query.items() if k != "page[cursor]" for v in values
            ]
            body["links"]["next"] = request.url_for(
                f"/api/v2/events?{urlencode([*params, ('page[cursor]', after)])}"
            )
        return FakeResponse.json(body)

    @staticmethod
    def _term(term: str, event: AlertEvent) -> bool:
        name, _, value = term.partition(":")
        if name == "source":
            return value in ("alert", "monitor")
        if name in ("status", "@status"):
            return STATUS_OF[event.transition] == value
        if name in ("monitor_id", "@monitor_id"):
            return str(event.monitor.id) == value
        return term in event.tags

    def _monitors(self, request: FakeRequest) -> FakeResponse:
        monitors = sorted(self.data.monitors.values(), key=lambda m: m.id)
        states = request.param("group_states")
        if states and states != "all":
            wanted = {s.strip().lower() for s in states.split(",")}
            monitors = [m for m in monitors if m.state.lower() in wanted]
        name = request.param("name")
        if name:
            monitors = [m for m in monitors if name.lower() in m.name.lower()]
        tags = request.param("monitor_tags")
        if tags:
            monitors = [m for m in monitors if all(t in m.tags for t in tags.split(","))]
        page = request.param("page")
        if page is not None:
            try:
                number = int(page)
                size = int(request.param("page_size") or "100")
            except ValueError:
                return errors(400, "page and page_size must be integers")
            if number < 0 or not 1 <= size <= 1000:
                return errors(400, "page_size must be between 1 and 1000")
            monitors = monitors[number * size : (number + 1) * size]
        return FakeResponse.json([m.json() for m in monitors])

    def _validate(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json({"valid": True})


# --------------------------------------------------------------------------- webhooks

RECOMMENDED_PAYLOAD: Final = """{
  "id": "$ID",
  "alert_id": "$ALERT_ID",
  "alert_cycle_key": "$ALERT_CYCLE_KEY",
  "transition": "$ALERT_TRANSITION",
  "title": "$EVENT_TITLE",
  "alert_title": "$ALERT_TITLE",
  "priority": "$ALERT_PRIORITY",
  "status": "$ALERT_STATUS",
  "scope": "$ALERT_SCOPE",
  "tags": "$TAGS",
  "link": "$LINK",
  "hostname": "$HOSTNAME",
  "last_updated": "$LAST_UPDATED",
  "date": "$DATE",
  "event_type": "$EVENT_TYPE",
  "org": {"id": "$ORG_ID", "name": "$ORG_NAME"},
  "body": "$EVENT_MSG"
}"""
"""The payload template to paste into Datadog's webhook: the fields the descriptor reads."""


def webhook_payload(event: AlertEvent, *, cycle: str) -> dict[str, Any]:
    """``RECOMMENDED_PAYLOAD`` with its ``$VARIABLES`` filled as the integration fills them."""
    monitor = event.monitor
    ms = str(to_epoch_ms(event.at))
    return {
        "id": event.evt_id,
        "alert_id": str(monitor.id),
        "alert_cycle_key": cycle,
        "transition": event.transition,
        "title": event.title,
        "alert_title": monitor.name,
        "priority": f"P{monitor.priority}" if monitor.priority else "",
        "status": f"{monitor.query.split(':', 1)[-1]} over host:{event.host}",
        "scope": f"host:{event.host}",
        "tags": ",".join(event.tags),
        "link": f"{WEB}/event/event?id={event.evt_id}",
        "hostname": event.host,
        "last_updated": ms,
        "date": ms,
        "event_type": "query_alert_monitor",
        "org": {"id": ORG_ID, "name": "Acme"},
        "body": f"%%%\n{monitor.name} on host:{event.host}\n%%%",
    }


def sign_delivery(
    sample: WebhookSample, *, url: str, token: str = WEBHOOK_TOKEN
) -> WebhookDelivery:
    """Datadog signs nothing: the only proof is the custom header the user configured."""
    headers = {
        "Content-Type": "application/json",
        **sample.headers,
        "Authorization": f"Bearer {token}",
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


class DatadogScenario(Scenario):
    connector_id = "datadog"
    polling_signal_types = frozenset({"monitor_triggered", "monitor_resolved", "monitor_warning"})
    webhook_signal_types = frozenset(
        {"monitor_triggered", "monitor_resolved", "monitor_warning", "monitor_no_data"}
    )

    # Monitor ids are 152000000 + 7n for the n-th monitor (see Dataset.monitor). A poll
    # maps every alert event; the battery keeps each monitor's last one, from cycle 23
    # on host HOSTS[(index + 23) % 5].
    metadata = (
        # Index 0, "CPU usage high on web hosts", P2: still alerting on db-1.
        MetadataExpectation(
            item_id="152000007",
            priority="high",
            tags=("env:prod", "service:web", "team:sre", "host:db-1", "monitor"),
        ),
        # Index 1, "Checkout error rate above 5%", P1: recovered on worker-7.
        MetadataExpectation(
            item_id="152000014",
            priority="critical",
            tags=("env:prod", "service:checkout", "team:sre", "host:worker-7", "monitor"),
        ),
        # Index 3, "Queue backlog growing": no priority set, so none in the title.
        MetadataExpectation(
            item_id="152000028",
            tags=("env:prod", "service:orders", "team:sre", "host:web-2", "monitor"),
        ),
    )

    def __init__(self) -> None:
        self._data = Dataset(datetime.now(UTC), cycles=2)

    def fake(self, now: datetime) -> DatadogFake:
        return DatadogFake(now)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url}

    def credentials(self) -> dict[str, str]:
        return {"apiKey": API_KEY, "appKey": APP_KEY, "webhookToken": WEBHOOK_TOKEN}

    def bad_credentials(self) -> dict[str, str]:
        return {"apiKey": BAD_API_KEY, "appKey": APP_KEY, "webhookToken": WEBHOOK_TOKEN}

    @property
    def webhook_secret(self) -> str:
        return WEBHOOK_TOKEN

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        monitors = list(self._data.monitors.values())
        expected: tuple[tuple[Transition, str], ...] = (
            ("Triggered", "monitor_triggered"),
            ("Re-Triggered", "monitor_triggered"),
            ("Recovered", "monitor_resolved"),
            ("Warn", "monitor_warning"),
            ("Re-No Data", "monitor_no_data"),
        )
        samples = []
        for index, (transition, signal_type) in enumerate(expected):
            event = AlertEvent(
                id=f"AAAAAYWEBHOOK{index}",
                evt_id=str(7_400_000_000_000_000 + index),
                monitor=monitors[index % 3],
                transition=transition,
                host=HOSTS[index],
                at=now,
            )
            payload = webhook_payload(event, cycle=f"{event.monitor.id}-{index // 2}")
            samples.append(WebhookSample.of(transition, payload, expected_types=(signal_type,)))
        return samples

    def unknown_event_sample(self) -> WebhookSample:
        monitor = next(iter(self._data.monitors.values()))
        event = AlertEvent(
            id="AAAAAYRENOTIFY",
            evt_id="7400000000000099",
            monitor=monitor,
            transition="Triggered",
            host="web-1",
            at=datetime.now(UTC),
        )
        payload = webhook_payload(event, cycle=f"{monitor.id}-9")
        payload["transition"] = "Renotify"
        payload["title"] = payload["title"].replace("[Triggered", "[Renotify")
        return WebhookSample.of("Renotify", payload)

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``datadog`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "datadog":
        raise LookupError(f"ucf.fakes.datadog has no scenario for {connector_id!r}")
    return DatadogScenario()
