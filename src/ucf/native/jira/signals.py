"""Jira issues, comments and webhook events as signals: one identity for one change.

A change reaches ucf twice when an instance both polls and receives webhooks,
so the poll and the webhook must name it the same way; the store then keeps
one signal. The identity is the issue id plus the *version* the change made:

* an issue's creation — ``created`` (an issue is created once: the poll that
  reads it after an edit within :data:`SAME_CHANGE`, an automation's, still calls
  it created, and the creation's webhook carries it as it was);
* any other issue change — the issue's ``fields.updated`` after it (normalised
  to UTC milliseconds, because Jira writes the site's offset: ``…+0530``);
* a comment — ``comment:<comment id>:<comment updated>``; Jira bumps the
  issue's ``updated`` to the comment's time, and the poll recognises that;
* a deletion — ``deleted`` (an issue is deleted once).

Which signal type a polled issue is comes from its latest change: created at
its update time → ``issue_created``; a changelog entry at its update time
with a ``status`` item → ``issue_status_changed``; a comment at its update
time → ``issue_commented``; anything else → ``issue_updated``. A transition
made with a comment (a transition screen's comment field) writes a changelog
entry and a comment within milliseconds of each other, in either order: both
at the update time are both signals, the change and the comment, as the
``jira:issue_updated`` delivery that carries both names them. A webhook
names the same thing directly (``webhookEvent``, the ``changelog`` of the
delivery, ``issue_event_type_name``). Jira's documentation of the payloads:
https://developer.atlassian.com/cloud/jira/platform/webhooks/ and of the
issue fields: https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/ .

Everything here works on the parsed JSON (no model per item): it is the poll's
hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ucf.native import ItemError, MappedSignal, MappingResult, Priority, build_signal
from ucf.native.jira.adf import plain_text

__all__ = [
    "CONNECTOR_ID",
    "CREATED",
    "PRIORITIES",
    "SAME_CHANGE",
    "IssueEvent",
    "classify",
    "comment_version",
    "issue_signal",
    "jira_time",
    "normalise_issues",
    "version_of",
]

CONNECTOR_ID: Final = "jira"

PRIORITIES: Final[Mapping[str, Priority]] = {
    # Jira Cloud's default priority scheme.
    "highest": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "lowest": "low",
    # The older default scheme many sites still use.
    "blocker": "critical",
    "critical": "critical",
    "major": "high",
    "minor": "low",
    "trivial": "low",
}

SAME_CHANGE: Final = timedelta(seconds=1)
"""How close a changelog entry or comment must be to ``updated`` to be the change that set it."""

CREATED: Final = "created"
"""The version of an issue's creation, whatever ``updated`` the poll or the webhook read."""

IssueEvent = str
"""One of the five signal types this connector emits."""


def jira_time(value: Any) -> datetime | None:
    """A Jira timestamp (``2026-04-25T18:35:13.605+0530``) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # Jira always writes an offset; a zone-less time cannot be placed
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+0100 lies before datetime's first day in UTC
        return None


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version_of(moment: datetime) -> str:
    """The version text of an issue change: its update time, UTC, milliseconds."""
    return _iso(moment)


def comment_version(comment: Mapping[str, Any]) -> tuple[str, datetime] | None:
    """``comment:<id>:<updated>`` and that time, or None for a comment without them."""
    comment_id = comment.get("id")
    updated = jira_time(comment.get("updated")) or jira_time(comment.get("created"))
    if comment_id is None or updated is None:
        return None
    return f"comment:{comment_id}:{_iso(updated)}", updated


def _name(person: Any) -> str | None:
    if isinstance(person, dict):
        name = person.get("displayName") or person.get("accountId")
        return str(name) if name else None
    return None


def _related(key: Any, fields: Mapping[str, Any]) -> list[str]:
    related = [str(key)] if key else []
    parent = fields.get("parent")
    if isinstance(parent, dict) and parent.get("key"):
        related.append(str(parent["key"]))
    links = fields.get("issuelinks")
    if isinstance(links, list):
        for link in links:
            if not isinstance(link, dict):
                continue
            for side in ("outwardIssue", "inwardIssue"):
                other = link.get(side)
                if isinstance(other, dict) and other.get("key"):
                    related.append(str(other["key"]))
    return related


def _tags(fields: Mapping[str, Any]) -> list[str]:
    tags = [str(label) for label in fields.get("labels") or () if isinstance(label, str)]
    for component in fields.get("components") or ():
        if isinstance(component, dict) and component.get("name"):
            tags.append(str(component["name"]))
    return tags


def _priority(fields: Mapping[str, Any]) -> Priority | None:
    priority = fields.get("priority")
    if isinstance(priority, dict):
        name = priority.get("name")
        if isinstance(name, str):
            return PRIORITIES.get(name.strip().lower())
    return None


def issue_signal(
    issue: Mapping[str, Any],
    *,
    project_id: str,
    signal_type: str,
    version: str,
    timestamp: datetime,
    raw: dict[str, Any],
    comment: Mapping[str, Any] | None = None,
) -> MappedSignal:
    """One signal about ``issue`` (and ``comment``, for ``issue_commented``)."""
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        fields = {}
    key = issue.get("key") or issue.get("id")
    title = fields.get("summary")
    summary = f"{key} {title}" if isinstance(title, str) and title else str(key)
    people = [_name(fields.get("reporter")), _name(fields.get("assignee"))]
    if comment is not None:
        people.append(_name(comment.get("author")))
    return build_signal(
        source=CONNECTOR_ID,
        project_id=project_id,
        item_id=str(issue.get("id")),
        version=version,
        timestamp=timestamp,
        signal_type=signal_type,
        summary=summary,
        raw=raw,
        priority=_priority(fields),
        participants=[p for p in people if p],
        related_tickets=_related(key, fields),
        tags=_tags(fields),
    )


def _has_status(items: Any) -> bool:
    """Whether a changelog entry's items change the status (``fieldId``, else ``field``)."""
    if not isinstance(items, list):
        return False
    return any(
        isinstance(item, dict) and (item.get("fieldId") or item.get("field")) == "status"
        for item in items
    )


def _latest_history(issue: Mapping[str, Any]) -> tuple[datetime, Any] | None:
    changelog = issue.get("changelog")
    histories = changelog.get("histories") if isinstance(changelog, dict) else None
    if not isinstance(histories, list):
        return None
    latest: tuple[datetime, Any] | None = None
    for history in histories:
        if not isinstance(history, dict):
            continue
        created = jira_time(history.get("created"))
        if created is not None and (latest is None or created > latest[0]):
            latest = (created, history.get("items"))
    return latest


def _latest_comment(fields: Mapping[str, Any]) -> tuple[datetime, Mapping[str, Any]] | None:
    block = fields.get("comment")
    comments = block.get("comments") if isinstance(block, dict) else None
    if not isinstance(comments, list):
        return None
    latest: tuple[datetime, Mapping[str, Any]] | None = None
    for comment in comments:
        if not isinstance(comment, dict):
            continue
        found = comment_version(comment)
        if found is not None and (latest is None or found[1] > latest[0]):
            latest = (found[1], comment)
    return latest


def classify(issue: Mapping[str, Any], updated: datetime) -> tuple[str, Mapping[str, Any] | None]:
    """A polled issue's signal type (see the module doc), and the comment it is about."""
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        fields = {}
    created = jira_time(fields.get("created"))
    if created is not None and abs(updated - created) <= SAME_CHANGE:
        return "issue_created", None
    history = _latest_history(issue)
    comment = _latest_comment(fields)
    history_at = history[0] if history is not None else None
    comment_at = comment[0] if comment is not None else None
    if (
        comment is not None
        and comment_at is not None
        and abs(updated - comment_at) <= SAME_CHANGE
        and (history_at is None or comment_at >= history_at)
    ):
        return "issue_commented", comment[1]
    if history is not None and history_at is not None and abs(updated - history_at) <= SAME_CHANGE:
        return ("issue_status_changed" if _has_status(history[1]) else "issue_updated"), None
    return "issue_updated", None


def _raw_issue(
    issue: Mapping[str, Any], text: str, comment: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The issue as the signal's ``raw``, shaped like a webhook payload's: without the
    changelog (it only chose the type) and the issue's whole comment list (every signal
    would carry every comment again; a comment signal carries its comment), with the
    rich text as plain text beside it. Smaller raw, less for the sanitiser to scan."""
    raw = {key: value for key, value in issue.items() if key != "changelog"}
    fields = raw.get("fields")
    if isinstance(fields, dict) and "comment" in fields:
        raw["fields"] = {key: value for key, value in fields.items() if key != "comment"}
    if comment is not None:
        raw["comment"] = comment
    raw["plainText"] = text
    return raw


def normalise_issues(items: list[Any], *, project_id: str) -> MappingResult:
    """A page of ``/rest/api/3/search/jql`` issues as signals (one per issue version)."""
    result = MappingResult()
    for index, issue in enumerate(items):
        if not isinstance(issue, dict) or issue.get("id") is None:
            result.errors.append(ItemError(index, "not a Jira issue (no id)"))
            continue
        fields = issue.get("fields")
        updated = jira_time(fields.get("updated")) if isinstance(fields, dict) else None
        if updated is None:
            result.errors.append(
                ItemError(index, "the issue has no readable fields.updated", str(issue["id"]))
            )
            continue
        signal_type, comment = classify(issue, updated)
        if comment is not None:
            result.signals.append(_comment_signal(issue, comment, project_id))
            # A transition (or edit) made with this comment: its own signal too.
            history = _latest_history(issue)
            if history is not None and abs(updated - history[0]) <= SAME_CHANGE:
                signal_type = "issue_status_changed" if _has_status(history[1]) else "issue_updated"
            else:
                continue
        elif signal_type != "issue_created":
            found = _latest_comment(fields) if isinstance(fields, dict) else None
            if found is not None and abs(updated - found[0]) <= SAME_CHANGE:
                result.signals.append(_comment_signal(issue, found[1], project_id))
        if signal_type == "issue_created":
            assert isinstance(fields, dict)  # ``updated`` was read from them
            version, timestamp = CREATED, jira_time(fields.get("created")) or updated
        else:
            version, timestamp = version_of(updated), updated
        text = plain_text(fields.get("description")) if isinstance(fields, dict) else ""
        result.signals.append(
            issue_signal(
                issue,
                project_id=project_id,
                signal_type=signal_type,
                version=version,
                timestamp=timestamp,
                raw=_raw_issue(issue, text, None),
            )
        )
    return result


def _comment_signal(
    issue: Mapping[str, Any], comment: Mapping[str, Any], project_id: str
) -> MappedSignal:
    found = comment_version(comment)
    assert found is not None  # only comments that have one are ever chosen
    version, timestamp = found
    return issue_signal(
        issue,
        project_id=project_id,
        signal_type="issue_commented",
        version=version,
        timestamp=timestamp,
        raw=_raw_issue(issue, plain_text(comment.get("body")), comment),
        comment=comment,
    )
