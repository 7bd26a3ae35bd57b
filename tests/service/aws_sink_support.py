"""An AWS account on loopback for the SQS and EventBridge sinks: moto's standalone server,
and a proxy in front of it that fails chosen entries of a batch call the way AWS reports it.

moto accepts every entry of a good ``SendMessageBatch`` or ``PutEvents``; AWS may
fail some entries of a call and take the others (``Failed`` with ``SenderFault``
in SQS's answer, ``ErrorCode`` per entry and ``FailedEntryCount`` in
EventBridge's). :class:`EntryFailureProxy` produces exactly those answers: the
chosen entries are taken out of the request, the rest go to moto, and the two
answers are merged in the documented shapes.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

FailureRule = Callable[[dict[str, Any]], str | None]
"""A request entry → the error code to fail it with, or None to let it through."""


class EntryFailureProxy:
    """Fails the entries ``rule`` picks, at most ``times`` calls each; forwards all else."""

    def __init__(self, upstream: str, rule: FailureRule, *, times: int = 1) -> None:
        self.rule = rule
        self.times = times
        self.forwarded_entries: list[dict[str, Any]] = []
        self.delay = 0.0
        """Seconds each batch call takes before it is answered (a slow queue or bus)."""
        self._failed_so_far: dict[str, int] = {}
        self._lock = threading.Lock()
        parts = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = self.headers.get("X-Amz-Target", "")
                if target in ("AmazonSQS.SendMessageBatch", "AWSEvents.PutEvents"):
                    status, headers, data = proxy._batch(self, target, json.loads(body))
                else:
                    status, headers, data = proxy._forward(self, body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._upstream = parts
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _forward(
        self, handler: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self._upstream.hostname or "127.0.0.1", self._upstream.port, timeout=10
        )
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "content-length"}
        try:
            connection.request("POST", handler.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _key(self, entry: dict[str, Any]) -> str:
        return json.dumps(entry, sort_keys=True)

    def _batch(
        self, handler: BaseHTTPRequestHandler, target: str, request: dict[str, Any]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.delay:
            time.sleep(self.delay)
        entries: list[dict[str, Any]] = request["Entries"]
        failing: dict[int, str] = {}
        with self._lock:
            for index, entry in enumerate(entries):
                code = self.rule(entry)
                key = self._key({k: v for k, v in entry.items() if k != "Id"})
                if code and self._failed_so_far.get(key, 0) < self.times:
                    self._failed_so_far[key] = self._failed_so_far.get(key, 0) + 1
                    failing[index] = code
            passing = [e for i, e in enumerate(entries) if i not in failing]
            self.forwarded_entries += passing
        if passing:
            status, headers, data = self._forward(
                handler, json.dumps({**request, "Entries": passing}).encode()
            )
            if status != 200:
                return status, headers, data
            answer = json.loads(data)
        else:
            headers = [("Content-Type", "application/x-amz-json-1.1")]
            answer = {"Successful": [], "Failed": []} if "SQS" in target else {"Entries": []}
        if "SQS" in target:
            answer.setdefault("Failed", [])
            for index, code in failing.items():
                answer["Failed"].append(
                    {
                        "Id": entries[index]["Id"],
                        "SenderFault": not code.startswith("Internal"),
                        "Code": code,
                        "Message": f"injected {code}",
                    }
                )
        else:
            results = iter(answer.get("Entries", []))
            answer["Entries"] = [
                {"ErrorCode": failing[i], "ErrorMessage": f"injected {failing[i]}"}
                if i in failing
                else next(results)
                for i in range(len(entries))
            ]
            answer["FailedEntryCount"] = answer.get("FailedEntryCount", 0) + len(failing)
        return 200, headers, json.dumps(answer).encode()

    def __enter__(self) -> EntryFailureProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def drain_queue(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message of the queue, received and deleted one call at a time, in the order
    SQS hands them out (a FIFO group's next message comes only after the last is deleted)."""
    found: list[dict[str, Any]] = []
    while True:
        reply = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            VisibilityTimeout=30,
        )
        batch = reply.get("Messages", [])
        if not batch:
            return found
        found += batch
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
