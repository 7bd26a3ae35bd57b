"""Forwarding one request from a fault-injecting test proxy to the real server behind it.

The dynalite and moto proxies decide per request whether to answer with an
injected fault; everything else passes through here unchanged.
"""

from __future__ import annotations

import http.client
from http.server import BaseHTTPRequestHandler
from urllib.parse import SplitResult

_HOP_HEADERS = {"content-length", "transfer-encoding", "connection"}


def forward_post(handler: BaseHTTPRequestHandler, upstream: SplitResult, body: bytes) -> None:
    """POST ``body`` to ``upstream`` at the handler's path and relay the answer."""
    connection = http.client.HTTPConnection(
        upstream.hostname or "127.0.0.1", upstream.port, timeout=10
    )
    try:
        connection.request("POST", handler.path, body=body, headers=dict(handler.headers))
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    handler.send_response(response.status)
    for name, value in response.getheaders():
        if name.lower() not in _HOP_HEADERS:
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
