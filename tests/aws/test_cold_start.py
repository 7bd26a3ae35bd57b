"""Importing a handler module does no work: the cold start happens on the first invocation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("fastapi", "boto3", "botocore", "httpx", "pydantic", "mangum", "ucf.service.context")


@pytest.mark.parametrize("module", ["api", "schedule", "poll_worker", "delivery"])
def test_importing_a_handler_loads_no_framework_store_or_aws_sdk(module: str) -> None:
    probe = (
        "import json, sys\n"
        f"import ucf.aws.handlers.{module} as handler\n"
        "assert callable(handler.handler)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert json.loads(loaded.stdout) == []
