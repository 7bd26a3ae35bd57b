"""``ses``: inbound email through Amazon SES, delivered by SNS to ucf's webhook.

SES receives the mail for a verified domain; a receipt rule's SNS action
publishes each message to a topic; ucf is that topic's HTTPS subscription at
``POST /api/webhooks/ses/{projectId}``. Set-up steps: ``docs/connectors/ses.md``.

- :mod:`.sns` — SNS message security (signature, certificate host, topic);
- :mod:`.webhooks` — the gateway's handler (confirmation, notifications);
- :mod:`.notification` and :mod:`.mail` — an SES ``Received`` notification
  and its MIME content as an ``email_received`` signal;
- :mod:`.s3` — large mail read back from an S3 action's bucket;
- :mod:`.source` — the source: push only, its health check.
"""

from __future__ import annotations

import json
from importlib import resources

from ucf.native import NativeConnector
from ucf.native.ses.source import SesSource

DESCRIPTOR = json.loads(
    resources.files("ucf.catalogue").joinpath("ses.json").read_text(encoding="utf-8")
)

GUIDE = resources.files(__name__).joinpath("guide.md").read_text(encoding="utf-8")

connector = NativeConnector(DESCRIPTOR, SesSource, guide=GUIDE)
