"""A faithful fake of the PagerDuty REST API v2 (log entries, incidents) and V3 webhooks.

What it reproduces (PagerDuty/api-schema openapiv3.json, PagerDuty/developer-docs;
the links are under Sources in docs/connectors/pagerduty.md):

* ``GET /log_entries`` — ``since``/``until`` (ISO 8601; ``since`` inclusive),
  ``is_overview`` (only the important changes: trigger, acknowledge, escalate,
  resolve; ``assign_log_entry`` otherwise too), ``include[]=incidents`` (each
  entry's ``incident`` reference expanded in place into the full, current
  incident, as the Includes guide shows), ``time_zone``, newest first.
* ``GET /incidents`` — ``since``/``until`` on *creation* time (default: the last
  month), ``date_range=all``, ``statuses[]`` (repeatable), ``urgencies[]``,
  ``sort_by`` (``created_at``/``incident_number``/``resolved_at``/``urgency`` with
  ``:asc``/``:desc``).
* Classic pagination: ``offset``, ``limit`` (default 25, max 100), response
  ``{…, "limit", "offset", "more", "total"}`` (``total`` null unless
  ``total=true``); ``offset + limit`` over 10000 is a ``400``.
* ``Authorization: Token token=<key>`` exactly (anything else: ``401`` with
  error code 2006); error envelope ``{"error": {"message", "code", "errors"?}}``.
* ``ratelimit-limit`` / ``ratelimit-remaining`` / ``ratelimit-reset`` (seconds)
  on every answer; the rate-limit fault is ``429 {"error": {"message": "Rate
  Limit Exceeded", "code": 2020}}`` with those headers and no ``Retry-After``.
* V3 webhooks: ``{"event": {id, event_type, resource_type, occurred_at, agent,
  client, data}}`` with ``X-Webhook-Id``, ``X-Webhook-Subscription``,
  ``User-Agent: PagerDuty-Webhook/V3.0`` and ``X-PagerDuty-Signature:
  v1=<hex>[,v1=<hex>…]`` — one signature per live secret, comma-separated.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from ucf.core.timestamps import parse_timestamp
from ucf.fakes.kit import FakeRequest, FakeResponse, Fault, iso_seconds
from ucf.fakes.scenario import (
    Activity,
    MetadataExpectation,
    ProviderFake,
    PushedChange,
    Scenario,
    WebhookDelivery,
    WebhookSample,
    hmac_digest,
)

API: Final = "https://api.pagerduty.com"
WEB: Final = "https://acme.pagerduty.com"
GOOD_KEY: Final = "y_NbAkKc66ryYTWUXYEu"
BAD_KEY: Final = "u+RevokedFakeKey0000"
WEBHOOK_SECRET: Final = "ZWFrZS1wYWdlcmR1dHktd2ViaG9vay1zZWNyZXQtdWNm"  # noqa: S105
OLD_WEBHOOK_SECRET: Final = "cm90YXRlZC1vdXQtcGFnZXJkdXR5LXNlY3JldA"  # noqa: S105
RATE_LIMIT: Final = 960

USERS: Final = (
    ("PXPGF42", "Earline Greenholt"),
    ("PTUXL6G", "Dominic Kiehn"),
    ("PLH1HKV", "Tenex Engineer"),
    ("P0VZKS2", "Rhoda Hickle"),
)
SERVICES: Final = (("PIJ90N7", "Checkout API"), ("PF9KMXH", "Search"), ("P3U7V58", "Website"))
TEAMS: Final = (("PQ9K7I8", "Engineering"), ("PFCVPS0", "Payments"))
PRIORITIES: Final = (
    ("PSO75BM", "P1"),
    ("P53ZZH5", "P2"),
    ("PLPPD1T", "P3"),
    ("P7CS2F4", "P4"),
    ("PQDV3M1", "P5"),
)
TITLES: Final = (
    "The server is on fire.",
    "Checkout latency p99 above 2s",
    "Disk 90% full on db-3",
    "Error rate above 5% on /login",
    "Certificate expires in 7 days",
    "Queue backlog above 10k messages",
)
ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def pd_id(kind: str, number: int, length: int = 7) -> str:
    """A PagerDuty-style id: upper-case letters and digits starting with P (Q for log entries)."""
    digest = hashlib.sha256(f"{kind}-{number}".encode()).digest()
    body = "".join(ALPHABET[b % len(ALPHABET)] for b in digest[: length - 1])
    return ("Q" if kind == "log" else "P") + body


iso = iso_seconds  # PagerDuty's REST timestamps


def reference(kind: str, ident: str, summary: str) -> dict[str, str]:
    paths = {
        "user": "users",
        "service": "services",
        "team": "teams",
        "escalation_policy": "escalation_policies",
    }
    web = {"service": "service-directory"}.get(kind, paths[kind])
    return {
        "id": ident,
        "type": f"{kind}_reference",
        "summary": summary,
        "self": f"{API}/{paths[kind]}/{ident}",
        "html_url": f"{WEB}/{web}/{ident}",
    }


def user_ref(index: int) -> dict[str, str]:
    ident, name = USERS[index % len(USERS)]
    return reference("user", ident, name)


# --------------------------------------------------------------------------- dataset

LogType = Literal[
    "trigger_log_entry",
    "acknowledge_log_entry",
    "assign_log_entry",
    "escalate_log_entry",
    "resolve_log_entry",
]
OVERVIEW: Final = frozenset(
    {"trigger_log_entry", "acknowledge_log_entry", "escalate_log_entry", "resolve_log_entry"}
)


@dataclass
class LogEntry:
    id: str
    type: LogType
    at: datetime
    agent: dict[str, str]
    channel: str


@dataclass
class Incident:
    id: str
    number: int
    title: str
    created: datetime
    service: int
    team: int
    urgency: Literal["high", "low"]
    priority: int | None
    assignee: int
    status: Literal["triggered", "acknowledged", "resolved"] = "triggered"
    acknowledged: tuple[datetime, int] | None = None
    resolved: tuple[datetime, int] | None = None
    log: list[LogEntry] = field(default_factory=list)

    @property
    def updated(self) -> datetime:
        return max(entry.at for entry in self.log)

    def reference(self) -> dict[str, str]:
        return {
            "id": self.id,
            "type": "incident_reference",
            "summary": f"[#{self.number}] {self.title}",
            "self": f"{API}/incidents/{self.id}",
            "html_url": f"{WEB}/incidents/{self.id}",
        }

    def json(self) -> dict[str, Any]:
        service_id, service_name = SERVICES[self.service]
        team_id, team_name = TEAMS[self.team]
        first = self.log[0]
        last_change = self.log[-1]
        priority = None
        if self.priority is not None:
            priority_id, priority_name = PRIORITIES[self.priority]
            priority = {
                "id": priority_id,
                "type": "priority_reference",
                "summary": priority_name,
                "self": f"{API}/priorities/{priority_id}",
            }
        return {
            "id": self.id,
            "type": "incident",
            "summary": f"[#{self.number}] {self.title}",
            "self": f"{API}/incidents/{self.id}",
            "html_url": f"{WEB}/incidents/{self.id}",
            "incident_number": self.number,
            "title": self.title,
            "created_at": iso(self.created),
            "updated_at": iso(self.updated),
            "status": self.status,
            "incident_key": hashlib.md5(self.id.encode(), usedforsecurity=False).hexdigest(),
            "service": reference("service", service_id, service_name),
            "assignments": []
            if self.status == "resolved"
            else [{"at": iso(self.created), "assignee": user_ref(self.assignee)}],
            "assigned_via": "escalation_policy",
            "last_status_change_at": iso(last_change.at),
            "resolved_at": iso(self.resolved[0]) if self.resolved else None,
            "first_trigger_log_entry": {
                "id": first.id,
                "type": "trigger_log_entry_reference",
                "summary": "Triggered through the API",
                "self": f"{API}/log_entries/{first.id}?incident_id={self.id}",
                "html_url": f"{WEB}/incidents/{self.id}/log_entries/{first.id}",
            },
            "alert_counts": {
                "all": 1,
                "triggered": 0 if self.status == "resolved" else 1,
                "resolved": 1 if self.status == "resolved" else 0,
            },
            "is_mergeable": True,
            "incident_type": {"name": "incident_default"},
            "escalation_policy": reference("escalation_policy", "PT20YPA", "Default"),
            "teams": [reference("team", team_id, team_name)],
            "pending_actions": [],
            "acknowledgements": []
            if self.acknowledged is None or self.status != "acknowledged"
            else [
                {"at": iso(self.acknowledged[0]), "acknowledger": user_ref(self.acknowledged[1])}
            ],
            "alert_grouping": None,
            "last_status_change_by": last_change.agent,
            "priority": priority,
            "resolve_reason": None,
            "conference_bridge": None,
            "incidents_responders": [],
            "responder_requests": [],
            "urgency": self.urgency,
        }

    def log_json(self, entry: LogEntry, *, expand: bool) -> dict[str, Any]:
        service_id, service_name = SERVICES[self.service]
        team_id, team_name = TEAMS[self.team]
        summaries = {
            "trigger_log_entry": "Triggered through the API",
            "acknowledge_log_entry": f"Acknowledged by {entry.agent['summary']}",
            "assign_log_entry": f"Assigned to {user_ref(self.assignee)['summary']}.",
            "escalate_log_entry": "Escalated to level 2 by timeout",
            "resolve_log_entry": f"Resolved by {entry.agent['summary']}",
        }
        item: dict[str, Any] = {
            "id": entry.id,
            "type": entry.type,
            "summary": summaries[entry.type],
            "self": f"{API}/log_entries/{entry.id}?incident_id={self.id}",
            "html_url": f"{WEB}/incidents/{self.id}/log_entries/{entry.id}",
            "created_at": iso(entry.at),
            "agent": entry.agent,
            "channel": {"type": entry.channel},
            "service": reference("service", service_id, service_name),
            "incident": self.json() if expand else self.reference(),
            "teams": [reference("team", team_id, team_name)],
            "contexts": [],
        }
        if entry.type == "trigger_log_entry":
            item["event_details"] = {"description": self.title}
        if entry.type == "acknowledge_log_entry":
            item["acknowledgement_timeout"] = 1800
        if entry.type == "assign_log_entry":
            item["assignees"] = [user_ref(self.assignee)]
        return item


class Dataset:
    """An account's incidents laid out around ``now``.

    90 incidents triggered over the last six days, each with its log entries
    (assigned; most acknowledged; many resolved; a few escalated): about 240
    overview entries, three pages at ``limit=100``. Four incidents from a month
    ago sit outside a seven-day initial window.
    """

    def __init__(self, now: datetime, *, count: int = 90) -> None:
        self._incidents = itertools.count(1)
        self._logs = itertools.count(1)
        self.incidents: dict[str, Incident] = {}
        window = timedelta(days=6)
        for index in range(count):
            self.trigger(now - window + window * index / count, index)
        for index in range(4):
            self.trigger(now - timedelta(days=40 + index), index)
        for incident in list(self.incidents.values()):
            self._settle(incident, now)

    def _log(
        self, incident: Incident, kind: LogType, at: datetime, agent: dict[str, str], channel: str
    ) -> None:
        entry = LogEntry(
            pd_id("log", next(self._logs), 14), kind, at.replace(microsecond=0), agent, channel
        )
        incident.log.append(entry)

    def trigger(self, at: datetime, index: int, *, title: str | None = None) -> Incident:
        number = next(self._incidents)
        incident = Incident(
            id=pd_id("incident", number),
            number=1000 + number,
            title=title or TITLES[index % len(TITLES)],
            created=at.replace(microsecond=0),
            service=index % len(SERVICES),
            team=index % len(TEAMS),
            urgency="high" if index % 3 else "low",
            priority=None if index % 6 == 5 else index % 6,
            assignee=index % len(USERS),
        )
        service_id, service_name = SERVICES[incident.service]
        self._log(
            incident, "trigger_log_entry", at, reference("service", service_id, service_name), "api"
        )
        self._log(incident, "assign_log_entry", at, user_ref(incident.assignee), "auto")
        self.incidents[incident.id] = incident
        return incident

    def _settle(self, incident: Incident, now: datetime) -> None:
        """How each historical incident went: acknowledged, escalated, resolved."""
        index = incident.number - 1000
        start = incident.created
        if index % 7 == 3:
            self._log(
                incident,
                "escalate_log_entry",
                start + timedelta(minutes=30),
                reference("service", *SERVICES[incident.service]),
                "timeout",
            )
        if index % 4 != 0:
            self.acknowledge(incident, min(now, start + timedelta(minutes=5)), incident.assignee)
        if index % 3 == 0:
            self.resolve(incident, min(now, start + timedelta(minutes=45)), incident.assignee)

    def acknowledge(self, incident: Incident, at: datetime, by: int) -> None:
        incident.status = "acknowledged"
        incident.acknowledged = (at.replace(microsecond=0), by)
        self._log(incident, "acknowledge_log_entry", at, user_ref(by), "website")

    def resolve(self, incident: Incident, at: datetime, by: int) -> None:
        incident.status = "resolved"
        incident.resolved = (at.replace(microsecond=0), by)
        self._log(incident, "resolve_log_entry", at, user_ref(by), "website")

    def entries(self) -> list[tuple[Incident, LogEntry]]:
        return [(i, e) for i in self.incidents.values() for e in i.log]


# --------------------------------------------------------------------------- the fake


def error(status: int, code: int, message: str, *errors: str) -> FakeResponse:
    body: dict[str, Any] = {"error": {"message": message, "code": code}}
    if errors:
        body["error"]["errors"] = list(errors)
    return FakeResponse.json(body, status)


class PagerDutyFake(ProviderFake):
    """``api.pagerduty.com`` for one account, answering as documented."""

    poll_route = "/log_entries"

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.data = Dataset(now)
        self.now = now
        self.keys = {GOOD_KEY}
        self.remaining = RATE_LIMIT
        self.server.add_route("GET", "/log_entries", self._guard(self._log_entries))
        self.server.add_route("GET", "/incidents", self._guard(self._list_incidents))
        self.server.add_route("GET", "/abilities", self._guard(self._abilities))

    # -- protocol

    def add_activity(self, now: datetime) -> Activity:
        """Two incidents triggered; one open incident acknowledged, another resolved."""
        data = self.data
        self.now = max(self.now, now)
        fresh = [
            data.trigger(now, 1, title="Payment provider timeouts"),
            data.trigger(now, 2, title="Search index lagging by 20 minutes"),
        ]
        open_ = sorted(
            (i for i in data.incidents.values() if i.status == "triggered" and i not in fresh),
            key=lambda i: i.created,
        )
        acked = sorted(
            (i for i in data.incidents.values() if i.status == "acknowledged"),
            key=lambda i: i.created,
        )
        data.acknowledge(open_[-1], now, 3)
        data.resolve(acked[-1], now, 0)
        return Activity(
            new_ids=frozenset(i.id for i in fresh),
            changed_ids=frozenset({open_[-1].id, acked[-1].id}),
        )

    def push_change(self, now: datetime) -> PushedChange:
        """A triggered incident acknowledged: ``incident.acknowledged``, whose
        ``occurred_at`` has the milliseconds the log entry's ``created_at`` leaves out."""
        self.now = max(self.now, now)
        incident = max(
            (i for i in self.data.incidents.values() if i.status == "triggered"),
            key=lambda i: i.created,
        )
        self.data.acknowledge(incident, now, 3)
        data = incident_data(
            ident=incident.id,
            number=incident.number,
            title=incident.title,
            status=incident.status,
            urgency=incident.urgency,
            priority=None if incident.priority is None else PRIORITIES[incident.priority][1],
            assignees=(incident.assignee,),
            service=incident.service,
            team=incident.team,
        )
        payload = webhook_event("incident.acknowledged", data, now, agent=3)
        return PushedChange(incident.id, WebhookSample.of("incident.acknowledged", payload))

    def ids_changed_since(self, moment: datetime) -> frozenset[str]:
        return frozenset(
            i.id for i, e in self.data.entries() if e.type in OVERVIEW and e.at >= moment
        )

    def rate_limit_fault(self, retry_after: int) -> Fault:
        return Fault.rate_limited(
            None,
            headers={
                "ratelimit-limit": str(RATE_LIMIT),
                "ratelimit-remaining": "0",
                "ratelimit-reset": str(retry_after),
            },
            body={"error": {"message": "Rate Limit Exceeded", "code": 2020}},
        )

    # -- plumbing

    def _rate_headers(self) -> dict[str, str]:
        return {
            "ratelimit-limit": str(RATE_LIMIT),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": "60",
        }

    def _guard(
        self, handler: Callable[[FakeRequest], FakeResponse]
    ) -> Callable[[FakeRequest], FakeResponse]:
        def guarded(request: FakeRequest) -> FakeResponse:
            header = request.headers.get("authorization", "")
            if not header.startswith("Token token=") or header[12:] not in self.keys:
                return error(401, 2006, "Authentication failed")
            self.remaining = max(0, self.remaining - 1)
            response = handler(request)
            merged = {**dict(response.header_items()), **self._rate_headers()}
            return FakeResponse(response.status, merged, response.body)

        return guarded

    def _window(self, request: FakeRequest) -> tuple[datetime, datetime] | FakeResponse:
        """``since``/``until``: ``until`` defaults to now, ``since`` to a month before it."""
        now = max(datetime.now(UTC), self.now)
        since_text, until_text = request.param("since"), request.param("until")
        until = now if until_text is None else parse_timestamp(until_text, "iso8601")
        since = (
            (until or now) - timedelta(days=30)
            if since_text is None
            else parse_timestamp(since_text, "iso8601")
        )
        if since is None or until is None or since > until:
            return error(400, 2004, "Invalid time values in 'since' and/or 'until' parameters")
        return since, until

    def _paging(self, request: FakeRequest) -> tuple[int, int] | FakeResponse:
        try:
            offset = int(request.param("offset") or "0")
            limit = int(request.param("limit") or "25")
        except ValueError:
            return error(400, 2001, "Invalid Input Provided", "offset and limit must be integers")
        if offset < 0 or limit < 1:
            return error(400, 2001, "Invalid Input Provided", "offset and limit must be positive")
        limit = min(limit, 100)
        if offset + limit > 10000:
            return error(
                400, 2001, "Invalid Input Provided", "Offset + limit must be less than 10000"
            )
        return offset, limit

    def _page(
        self, request: FakeRequest, key: str, rows: list[dict[str, Any]], offset: int, limit: int
    ) -> FakeResponse:
        total = len(rows) if request.param("total") == "true" else None
        return FakeResponse.json(
            {
                key: rows[offset : offset + limit],
                "limit": limit,
                "offset": offset,
                "more": offset + limit < len(rows),
                "total": total,
            }
        )

    def _log_entries(self, request: FakeRequest) -> FakeResponse:
        window = self._window(request)
        if isinstance(window, FakeResponse):
            return window
        paging = self._paging(request)
        if isinstance(paging, FakeResponse):
            return paging
        since, until = window
        overview = request.param("is_overview") == "true"
        expand = "incidents" in request.query.get("include[]", [])
        chosen = [
            (i, e)
            for i, e in self.data.entries()
            if since <= e.at <= until and (not overview or e.type in OVERVIEW)
        ]
        chosen.sort(key=lambda pair: (pair[1].at, pair[1].id), reverse=True)
        rows = [i.log_json(e, expand=expand) for i, e in chosen]
        return self._page(request, "log_entries", rows, *paging)

    def _list_incidents(self, request: FakeRequest) -> FakeResponse:
        paging = self._paging(request)
        if isinstance(paging, FakeResponse):
            return paging
        incidents = list(self.data.incidents.values())
        if request.param("date_range") != "all":
            window = self._window(request)
            if isinstance(window, FakeResponse):
                return window
            since, until = window
            incidents = [i for i in incidents if since <= i.created <= until]
        statuses = request.query.get("statuses[]")
        if statuses:
            incidents = [i for i in incidents if i.status in statuses]
        urgencies = request.query.get("urgencies[]")
        if urgencies:
            incidents = [i for i in incidents if i.urgency in urgencies]
        field_name, _, direction = (request.param("sort_by") or "created_at:asc").partition(":")
        keys: dict[str, Callable[[Incident], Any]] = {
            "created_at": lambda i: i.created,
            "incident_number": lambda i: i.number,
            "resolved_at": lambda i: (
                i.resolved[0] if i.resolved else datetime.max.replace(tzinfo=UTC)
            ),
            "urgency": lambda i: i.urgency,
        }
        if field_name not in keys:
            return error(
                400, 2001, "Invalid Input Provided", f"sort_by {field_name!r} is not supported"
            )
        incidents.sort(key=keys[field_name], reverse=direction == "desc")
        return self._page(request, "incidents", [i.json() for i in incidents], *paging)

    def _abilities(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse.json(
            {"abilities": ["teams", "urgencies", "read_only_users", "incident_priorities"]}
        )


# --------------------------------------------------------------------------- webhooks


def incident_data(
    *,
    ident: str,
    number: int,
    title: str,
    status: str,
    urgency: str,
    priority: str | None,
    assignees: tuple[int, ...],
    service: int = 0,
    team: int = 0,
) -> dict[str, Any]:
    """The ``data`` of an incident webhook event, as 01-Overview.md's example lays it out."""
    service_id, service_name = SERVICES[service]
    team_id, team_name = TEAMS[team]
    priority_ref = None
    if priority is not None:
        priority_id = {name: pid for pid, name in PRIORITIES}[priority]
        priority_ref = {
            "html_url": f"{WEB}/account/incident_priorities",
            "id": priority_id,
            "self": f"{API}/priorities/{priority_id}",
            "summary": priority,
            "type": "priority_reference",
        }
    return {
        "id": ident,
        "type": "incident",
        "self": f"{API}/incidents/{ident}",
        "html_url": f"{WEB}/incidents/{ident}",
        "number": number,
        "status": status,
        "incident_key": hashlib.md5(ident.encode(), usedforsecurity=False).hexdigest(),
        "created_at": "2024-05-16T09:00:00Z",
        "title": title,
        "service": reference("service", service_id, service_name),
        "assignees": [user_ref(a) for a in assignees],
        "escalation_policy": reference("escalation_policy", "PUS0KTE", "Default"),
        "teams": [reference("team", team_id, team_name)],
        "priority": priority_ref,
        "urgency": urgency,
        "conference_bridge": None,
        "resolve_reason": None,
    }


def webhook_event(
    event_type: str, data: dict[str, Any], at: datetime, *, agent: int | None
) -> dict[str, Any]:
    return {
        "event": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event_type}/{data['id']}/{at}")),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "agent": None if agent is None else user_ref(agent),
            "client": None if agent is None else {"name": "PagerDuty"},
            "data": data,
        }
    }


def sign_delivery(
    sample: WebhookSample,
    *,
    url: str,
    secrets: tuple[str, ...] = (OLD_WEBHOOK_SECRET, WEBHOOK_SECRET),
) -> WebhookDelivery:
    """PagerDuty's headers; one ``v1=`` signature per live secret (mid-rotation by default)."""
    signature = ",".join("v1=" + hmac_digest(secret, sample.body) for secret in secrets)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-Webhook-Id": str(uuid.uuid4()),
        "X-Webhook-Subscription": "PY1OJ3X",
        **sample.headers,
        "X-PagerDuty-Signature": signature,
    }
    return WebhookDelivery(sample.name, url, sample.body, headers, sample.expected_types)


class PagerDutyScenario(Scenario):
    connector_id = "pagerduty"
    polling_signal_types = frozenset(
        {"incident_triggered", "incident_acknowledged", "incident_resolved", "incident_updated"}
    )
    webhook_signal_types = frozenset(
        {"incident_triggered", "incident_acknowledged", "incident_resolved", "incident_updated"}
    )
    # Dataset incidents n = index + 1 (see Dataset.trigger and Dataset._settle). A poll
    # maps every log entry; the battery keeps each incident's last, its trigger entry,
    # whose expanded incident is the current one.
    metadata = (
        # Index 0: P1, Checkout API / Engineering, acknowledged by its assignee Earline.
        MetadataExpectation(
            item_id=pd_id("incident", 1),
            priority="critical",
            participants=("Earline Greenholt",),
            tags=("Checkout API", "Engineering"),
        ),
        # Index 1: P2, Search / Payments, assigned to and acknowledged by Dominic.
        MetadataExpectation(
            item_id=pd_id("incident", 2),
            priority="high",
            participants=("Dominic Kiehn",),
            tags=("Search", "Payments"),
        ),
        # Index 5: no priority, so urgency decides (high); resolved by Dominic, which
        # empties the assignments; Website / Payments.
        MetadataExpectation(
            item_id=pd_id("incident", 6),
            priority="high",
            participants=("Dominic Kiehn",),
            tags=("Website", "Payments"),
        ),
        # The webhook's triggered incident: P1, assigned to Dominic, no agent (automatic).
        MetadataExpectation(
            item_id="PWEBHK1",
            priority="critical",
            participants=("Dominic Kiehn",),
            tags=("Checkout API", "Engineering"),
        ),
    )

    def fake(self, now: datetime) -> PagerDutyFake:
        return PagerDutyFake(now)

    def config(self, base_url: str) -> dict[str, str]:
        return {"baseUrl": base_url}

    def credentials(self) -> dict[str, str]:
        return {"apiKey": GOOD_KEY, "webhookSecret": WEBHOOK_SECRET}

    def bad_credentials(self) -> dict[str, str]:
        return {"apiKey": BAD_KEY, "webhookSecret": WEBHOOK_SECRET}

    @property
    def webhook_secret(self) -> str:
        return WEBHOOK_SECRET

    def webhook_samples(self) -> list[WebhookSample]:
        now = datetime.now(UTC)
        triggered = incident_data(
            ident="PWEBHK1",
            number=4242,
            title="Checkout API 5xx above 2%",
            status="triggered",
            urgency="high",
            priority="P1",
            assignees=(1,),
        )
        samples = [
            ("incident.triggered", triggered, None, ("incident_triggered",)),
            (
                "incident.acknowledged",
                {**triggered, "id": "PWEBHK2", "status": "acknowledged", "priority": None},
                1,
                ("incident_acknowledged",),
            ),
            (
                "incident.priority_updated",
                {**triggered, "id": "PWEBHK3", "urgency": "low"},
                2,
                ("incident_updated",),
            ),
            (
                "incident.resolved",
                {**triggered, "id": "PWEBHK4", "status": "resolved", "assignees": []},
                0,
                ("incident_resolved",),
            ),
        ]
        return [
            WebhookSample.of(
                name, webhook_event(name, data, now, agent=agent), expected_types=types
            )
            for name, data, agent, types in samples
        ]

    def unknown_event_sample(self) -> WebhookSample:
        now = datetime.now(UTC)
        service_id, service_name = SERVICES[1]
        payload = {
            "event": {
                "id": "01BRB6ZP4M6T8ZG4X6BP63ZB9O",
                "event_type": "service.updated",
                "resource_type": "service",
                "occurred_at": iso(now),
                "agent": None,
                "client": None,
                "data": {
                    **reference("service", service_id, service_name),
                    "alert_creation": "create_alerts_and_incidents",
                    "teams": [reference("team", *TEAMS[0])],
                    "type": "service",
                },
            }
        }
        return WebhookSample.of("service.updated", payload)

    def sign(self, sample: WebhookSample, *, url: str, at: datetime) -> WebhookDelivery:
        return sign_delivery(sample, url=url)


def scenario(connector_id: str) -> Scenario:
    """The scenario of ``pagerduty`` (see :mod:`ucf.fakes.scenario`)."""
    if connector_id != "pagerduty":
        raise LookupError(f"ucf.fakes.pagerduty has no scenario for {connector_id!r}")
    return PagerDutyScenario()
