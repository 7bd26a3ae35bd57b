"""Starting points for a new connector: a small blank template, or a copy of one that exists.

``ucf connectors new`` writes these and the dashboard's "New connector" opens
them, so both start from the same descriptor. JSON has no comments and the
language rejects unknown keys (a typo must not pass silently), so the
template explains itself through what the language already has: the
``description``, each field's ``helpText`` and ``placeholder``, and values
that show the usual shape (a GET of ``{{baseUrl}}/items`` filtered by update
time, items under ``$.items``). It validates as written; an author replaces
the example values with their API's.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["copy_descriptor", "starter_descriptor"]


def _title(connector_id: str) -> str:
    return " ".join(word.capitalize() for word in connector_id.split("-")) or "New connector"


def starter_descriptor(connector_id: str, name: str | None = None) -> dict[str, Any]:
    """The blank template: a polled JSON API with an API key, every part at its simplest."""
    return {
        "id": connector_id,
        "name": name or _title(connector_id),
        "description": (
            "What this connector ingests (shown in the catalogue). The values below are an "
            "example of a typical REST API: replace each with your API's; "
            "docs/writing-a-connector.md explains every field."
        ),
        "category": "Custom",
        "icon": "plug",
        "kind": "generic",
        "version": "0.1.0",
        "configFields": [
            {
                "key": "baseUrl",
                "label": "API base URL",
                "type": "url",
                "placeholder": "https://api.example.com/v1",
                "helpText": "Templates read it as {{baseUrl}}.",
            }
        ],
        "auth": {
            "method": "api_key",
            "config": {
                "delivery": "header",
                "paramName": "Authorization",
                "valuePrefix": "Bearer ",
                "credentialFields": [
                    {
                        "key": "apiKey",
                        "label": "API key",
                        "type": "password",
                        "required": True,
                        "helpText": "Sent as 'Authorization: Bearer <key>' on every request.",
                    }
                ],
            },
        },
        "ingestion": {
            "mode": "polling",
            "endpoint": "{{baseUrl}}/items",
            "method": "GET",
            "query": {"sort": "updated_at"},
            "delta": {
                "type": "timestamp_filter",
                "queryParam": "updated_since",
                "format": "iso8601",
            },
            "pagination": {
                "type": "page_number",
                "nextParam": "page",
                "pageSize": 50,
                "pageSizeParam": "per_page",
            },
            "rateLimitRpm": 60,
            "intervalSeconds": 300,
        },
        "fieldMapping": {
            "itemsPath": "$.items[*]",
            "idPath": "$.id",
            "timestampPath": "$.updated_at",
            "summaryTemplate": "{{title}}",
            "signalTypeRules": [
                {"when": "$.state", "operator": "equals", "value": "closed", "then": "item_closed"},
                {
                    "when": "$.created_at",
                    "operator": "equals",
                    "valuePath": "$.updated_at",
                    "then": "item_created",
                },
            ],
            "defaultType": "item_updated",
        },
        "healthCheck": {
            "endpoint": "{{baseUrl}}/me",
            "method": "GET",
            "expectStatus": 200,
            "timeoutMs": 5000,
        },
    }


def copy_descriptor(source: dict[str, Any], connector_id: str) -> dict[str, Any]:
    """A custom copy of a connector ("Customise a copy"): a new id and name, the rest as is.

    Built-in connectors stay read-only; the copy is the author's to change.
    """
    data = copy.deepcopy(source)
    for key in ("builtIn", "createdAt", "updatedAt"):
        data.pop(key, None)
    data["id"] = connector_id
    data["name"] = f"{source.get('name', connector_id)} (custom)"
    return data
