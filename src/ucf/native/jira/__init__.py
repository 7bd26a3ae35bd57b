"""Jira Cloud as a native ucf connector (id ``jira``).

Polls the JQL search (``/rest/api/3/search/jql``), receives admin webhooks
signed with ``X-Hub-Signature``, signs in with an API token or OAuth 2.0
(3LO). The descriptor (catalogue card, setup form, credentials) is
``ucf/catalogue/jira.json``; ``docs/connectors/jira.md`` is the user's guide.
"""

from __future__ import annotations

import json
from importlib import resources

from ucf.native import NativeConnector
from ucf.native.jira.source import JiraSource

__all__ = ["DESCRIPTOR", "GUIDE", "JiraSource", "connector"]

DESCRIPTOR = json.loads(
    resources.files("ucf.catalogue").joinpath("jira.json").read_text(encoding="utf-8")
)

GUIDE = resources.files(__name__).joinpath("guide.md").read_text(encoding="utf-8")

connector = NativeConnector(DESCRIPTOR, JiraSource, guide=GUIDE)
