"""Atlassian Document Format (ADF) as plain text.

Jira Cloud's REST API v3 and its webhooks carry rich text (an issue's
``description``, a comment's ``body``) as an ADF document, a tree of nodes:
https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/ .
Signals carry plain text, so block nodes become lines, ``text`` nodes their
text, and inline nodes without text (mentions, emoji, status lozenges, cards)
the text a reader sees in Jira.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["plain_text"]

_BLOCKS: Final = frozenset(
    {
        "paragraph",
        "heading",
        "blockquote",
        "codeBlock",
        "listItem",
        "bulletList",
        "orderedList",
        "panel",
        "rule",
        "table",
        "tableRow",
        "tableCell",
        "tableHeader",
        "mediaSingle",
        "mediaGroup",
        "expand",
        "nestedExpand",
        "taskList",
        "taskItem",
        "decisionList",
        "decisionItem",
    }
)


def _inline(node: dict[str, Any]) -> str:
    """What Jira shows for an inline node that has no ``text`` of its own."""
    attrs = node.get("attrs")
    if not isinstance(attrs, dict):
        return ""
    kind = node.get("type")
    if kind == "mention":
        text = attrs.get("text") or attrs.get("id") or ""
        return str(text) if str(text).startswith("@") else f"@{text}"
    if kind == "emoji":
        return str(attrs.get("text") or attrs.get("shortName") or "")
    if kind in ("inlineCard", "blockCard", "embedCard"):
        return str(attrs.get("url") or "")
    if kind in ("status", "date"):
        return str(attrs.get("text") or attrs.get("timestamp") or "")
    return ""


def _walk(node: Any, lines: list[str], line: list[str]) -> None:
    if isinstance(node, list):
        for child in node:
            _walk(child, lines, line)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "text":
        text = node.get("text")
        if isinstance(text, str):
            line.append(text)
        return
    if kind == "hardBreak":
        lines.append("".join(line))
        line.clear()
        return
    content = node.get("content")
    if kind in _BLOCKS:
        if line:
            lines.append("".join(line))
            line.clear()
        _walk(content, lines, line)
        if line:
            lines.append("".join(line))
            line.clear()
        return
    if content is None:
        line.append(_inline(node))
        return
    _walk(content, lines, line)


def plain_text(document: Any) -> str:
    """The text of an ADF document (or of a plain string, as Jira's v2 API sends it).

    Never raises: anything that is not a document is empty text.
    """
    if isinstance(document, str):
        return document
    if not isinstance(document, dict):
        return ""
    lines: list[str] = []
    line: list[str] = []
    _walk(document.get("content"), lines, line)
    if line:
        lines.append("".join(line))
    return "\n".join(text.rstrip() for text in lines).strip()
