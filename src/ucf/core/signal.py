"""The signal contract shared with the downstream triage pipeline.

``NormalisedSignal`` and ``SanitisedSignal`` are the existing pipeline's shapes,
camelCase on the wire. They must not drift: downstream code needs zero changes.

The dedup key and the signal id are derived once (:mod:`ucf.core.signal_identity`,
re-exported here), so that every source — polled, pushed, native or generic —
agrees on what "the same signal" means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ucf.core.signal_identity import PRIORITIES as PRIORITIES
from ucf.core.signal_identity import SUMMARY_MAX_CHARS as SUMMARY_MAX_CHARS
from ucf.core.signal_identity import UNKNOWN_SIGNAL_TYPE as UNKNOWN_SIGNAL_TYPE
from ucf.core.signal_identity import Priority as Priority
from ucf.core.signal_identity import dedup_key as dedup_key
from ucf.core.signal_identity import iso_utc as iso_utc
from ucf.core.signal_identity import signal_id as signal_id


class _WireModel(BaseModel):
    """camelCase on the wire; Python attribute names stay snake_case."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )


class SignalMetadata(_WireModel):
    """What the connector's mapping could say about the item beyond its summary."""

    priority: Priority | None = Field(
        default=None,
        description="The item's urgency, mapped onto four levels; absent when the source has "
        "none or no mapping rule matched",
    )
    participants: list[str] = Field(
        default_factory=list,
        description="People involved (authors, assignees, responders), as the source names "
        "them (logins, e-mail addresses or display names); always present, may be empty",
    )
    related_tickets: list[str] = Field(
        default_factory=list,
        alias="relatedTickets",
        description="Keys or URLs of tickets the item refers to (e.g. 'ENG-42'); always "
        "present, may be empty",
    )
    tags: list[str] = Field(
        default_factory=list,
        description="Labels, components or categories from the source; always present, may "
        "be empty",
    )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {} if self.priority is None else {"priority": self.priority}
        wire["participants"] = list(self.participants)
        wire["relatedTickets"] = list(self.related_tickets)
        wire["tags"] = list(self.tags)
        return wire


class NormalisedSignal(_WireModel):
    """One thing that happened in a tool, in the pipeline's vocabulary."""

    id: str = Field(
        description="ULID (26 characters, Crockford base32). Deterministic: the same version of "
        "the same item (or the same webhook delivery) always gets the same id, so it is the key "
        "to deduplicate on when a sink delivers a signal twice"
    )
    source: str = Field(
        description="Id of the connector that produced the signal: 'github-issues', 'linear', "
        "'jira', 'outlook', 'ses', or any descriptor's id"
    )
    timestamp: str = Field(
        description="When the item changed at the source (not when ucf saw it): ISO 8601, UTC, "
        "with a Z suffix and milliseconds, e.g. '2025-03-01T12:00:00.000Z'"
    )
    type: str = Field(
        description="What happened, in the connector's vocabulary (e.g. 'issue_created', "
        "'issue_commented'); 'unknown' when no rule of the mapping matched"
    )
    summary: str = Field(
        max_length=SUMMARY_MAX_CHARS,
        description=f"One line for people, at most {SUMMARY_MAX_CHARS} characters",
    )
    raw: dict[str, Any] = Field(
        description="The source's own item (API object or webhook payload) as received, for "
        "steps that need more than the mapped fields; in a SanitisedSignal, secrets in it are "
        "redacted and long strings bounded"
    )
    project_id: str = Field(
        alias="projectId", description="The project whose connector instance produced the signal"
    )
    metadata: SignalMetadata | None = Field(
        default=None,
        description="Absent when the connector's mapping has no metadata part",
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON object the pipeline consumes.

        Written out by hand rather than ``model_dump``: it runs once per signal on
        every ingest path, and a test holds it equal to ``model_dump(mode="json",
        by_alias=True, exclude_none=True)``. ``raw`` is shared, not copied: it
        holds JSON values already, and the wire object is serialised at once.
        """
        wire: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "timestamp": self.timestamp,
            "type": self.type,
            "summary": self.summary,
            "raw": self.raw,
            "projectId": self.project_id,
        }
        if self.metadata is not None:
            wire["metadata"] = self.metadata.to_wire()
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> NormalisedSignal:
        """The model view of a wire object that ucf itself built (trusted: not re-validated).

        The inverse of :meth:`to_wire`; untrusted input goes through
        ``model_validate`` instead.
        """
        metadata = wire.get("metadata")
        return cls.model_construct(
            id=wire["id"],
            source=wire["source"],
            timestamp=wire["timestamp"],
            type=wire["type"],
            summary=wire["summary"],
            raw=wire["raw"],
            project_id=wire["projectId"],
            metadata=None
            if metadata is None
            else SignalMetadata.model_construct(
                priority=metadata.get("priority"),
                participants=metadata["participants"],
                related_tickets=metadata["relatedTickets"],
                tags=metadata["tags"],
            ),
        )


class SanitisedSignal(NormalisedSignal):
    """A signal made safe to hand to an AI triage step."""

    sanitised: Literal[True] = Field(
        default=True, description="Always true: the sanitiser has run on this signal"
    )
    sanitised_summary: str = Field(
        alias="sanitisedSummary",
        description="The summary made safe for an AI step: secrets redacted as "
        "'[REDACTED:<kind>]', markup stripped, prompt-injection attempts wrapped as "
        "'[flagged: …]', bounded in length",
    )
    sanitisation_notes: list[str] = Field(
        default_factory=list,
        alias="sanitisationNotes",
        description="What the sanitiser changed, one short stable note per kind of change: "
        "'[scope:]action[:detail]', the scope absent for sanitisedSummary and 'summary:', "
        "'raw:' or 'metadata:' otherwise, counted actions with their count (e.g. "
        "'redacted:github_token', 'raw:redacted:secret_field:2', 'truncated:summary'); empty "
        "when nothing needed doing",
    )

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        wire["sanitised"] = True
        wire["sanitisedSummary"] = self.sanitised_summary
        wire["sanitisationNotes"] = list(self.sanitisation_notes)
        return wire


SIGNAL_SCHEMAS: dict[str, type[NormalisedSignal]] = {
    "normalised": NormalisedSignal,
    "sanitised": SanitisedSignal,
}
"""``ucf schema --signal NAME`` → the model; published as ``schema/NAME-signal.schema.json``."""


def signal_json_schema(name: str) -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of ``NormalisedSignal`` or ``SanitisedSignal``.

    Generated from the models, so it cannot drift from what ucf sends; a test
    holds the committed files under ``schema/`` equal to it.
    """
    model = SIGNAL_SCHEMAS[name]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://ucf.dev/schema/{name}-signal.schema.json"
    schema["title"] = model.__name__
    schema["description"] = (
        (model.__doc__ or "").strip()
        + " camelCase on the wire. Every ucf sink (HTTP, JSONL, SQS, EventBridge) delivers "
        "SanitisedSignal objects; see docs/pipeline.md."
    )
    return schema
