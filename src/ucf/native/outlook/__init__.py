"""Outlook mail through Microsoft Graph as a native connector.

Graph needs what a descriptor cannot say: delta links that are followed and
stored verbatim, a restart window when Graph forgets a delta token, a choice
between a user's rotating refresh token and app-only client credentials, and
change-notification subscriptions that must be created, renewed and verified
by ``clientState``. See ``docs/connectors/outlook.md``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ucf.native import NativeConnector
from ucf.native.outlook.source import OutlookSource

__all__ = ["OutlookSource", "connector"]


def _descriptor() -> dict[str, Any]:
    text = resources.files("ucf.catalogue").joinpath("outlook.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


GUIDE = resources.files(__name__).joinpath("guide.md").read_text(encoding="utf-8")

connector = NativeConnector(_descriptor(), OutlookSource, guide=GUIDE)
