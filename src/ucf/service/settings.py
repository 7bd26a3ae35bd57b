"""Every knob of a running ucf, read once from the environment (and CLI flags).

The core never reads the environment; this is the one place that does, so
``ucf serve``, ``ucf worker`` and the Lambda handlers agree on what each
variable means.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ucf.runtime.http import HttpSettings
from ucf.runtime.ssrf import EgressPolicy
from ucf.stores.url import default_data_dir, resolve_store_url

DEFAULT_POLL_TIMEOUT = timedelta(minutes=5)
DEFAULT_ATTEMPT_TIMEOUT = timedelta(seconds=60)

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    store_url: str
    secret_store_url: str | None = None
    api_token: str | None = None
    egress: EgressPolicy = field(default_factory=lambda: EgressPolicy(frozenset()))
    http: HttpSettings = field(default_factory=HttpSettings)
    webhook_max_bytes: int = 256 * 1024
    webhook_requests_per_minute: int = 100
    signal_retention: timedelta = timedelta(days=30)
    jsonl_sink: Path | None = None
    http_sink: str | None = None
    http_sink_token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer …`` with every POST to ``http_sink``."""
    scheduler: bool = True
    max_concurrent_polls: int = 4
    public_url: str | None = None
    """Where the internet reaches this ucf (``UCF_PUBLIC_URL``, e.g. https://ucf.example.com):
    sources that register their own webhooks (Outlook's Graph subscription) point them at
    ``{public_url}/api/webhooks/{connectorId}/{projectId}``; None: they only poll."""
    poll_timeout: timedelta = DEFAULT_POLL_TIMEOUT
    """The most one poll may spend fetching (all pages, retries and waits included);
    past it the poll ends as failed, keeping what it stored, and frees its slot."""
    poll_interval_override: timedelta | None = None
    """Poll every instance at this interval instead of its descriptor's (``ucf sandbox``
    demos minutes of activity in seconds); None in production."""

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        data_dir: Path | None = None,
        store_url: str | None = None,
    ) -> Settings:
        env = os.environ if environ is None else environ
        directory = (data_dir or default_data_dir(env)).expanduser()
        env_for_store = dict(env)
        env_for_store.setdefault("UCF_DATA_DIR", str(directory))
        return cls(
            data_dir=directory,
            store_url=resolve_store_url(store_url, env_for_store),
            secret_store_url=env.get("UCF_SECRET_STORE") or None,
            api_token=env.get("UCF_API_TOKEN") or None,
            egress=EgressPolicy.from_env(env),
            webhook_max_bytes=int(env.get("UCF_WEBHOOK_MAX_BYTES", 256 * 1024)),
            webhook_requests_per_minute=int(env.get("UCF_WEBHOOK_RPM", 100)),
            signal_retention=timedelta(days=float(env.get("UCF_SIGNAL_RETENTION_DAYS", 30))),
            jsonl_sink=Path(env["UCF_SINK_JSONL"]) if env.get("UCF_SINK_JSONL") else None,
            http_sink=env.get("UCF_SINK_HTTP") or None,
            http_sink_token=env.get("UCF_SINK_HTTP_TOKEN") or None,
            scheduler=env.get("UCF_SCHEDULER", "1") not in ("0", "false", "no"),
            max_concurrent_polls=int(env.get("UCF_MAX_CONCURRENT_POLLS", 4)),
            poll_timeout=_positive_seconds(env, "UCF_POLL_TIMEOUT") or DEFAULT_POLL_TIMEOUT,
            http=HttpSettings(
                attempt_timeout=(
                    _positive_seconds(env, "UCF_HTTP_ATTEMPT_TIMEOUT") or DEFAULT_ATTEMPT_TIMEOUT
                ).total_seconds()
            ),
            poll_interval_override=_positive_seconds(env, "UCF_POLL_INTERVAL_OVERRIDE"),
            public_url=(env.get("UCF_PUBLIC_URL") or "").rstrip("/") or None,
        )

    @property
    def sinks(self) -> tuple[str, ...]:
        """Outbox sinks beyond the signal store itself (which always holds every signal)."""
        names = []
        if self.jsonl_sink is not None:
            names.append("jsonl")
        if self.http_sink is not None:
            names.append("http")
        return tuple(names)


def _positive_seconds(env: Mapping[str, str], name: str) -> timedelta | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86_400:  # also refuses nan and inf
        raise ValueError(f"{name} must be a number of seconds in (0, 86400], got {text!r}")
    return timedelta(seconds=seconds)


class TokenFileError(ValueError):
    """The API token file exists but holds no token (e.g. a crash during first start)."""


def _read_token(path: Path) -> str:
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise TokenFileError(
            f"the API token file {path} is empty; delete it to have a new token made, "
            "or set UCF_API_TOKEN"
        )
    return token


def ensure_api_token(settings: Settings) -> tuple[str, bool]:
    """The management API token: ``UCF_API_TOKEN``, else one made at first start.

    Returns the token and whether it was just created (so it is printed once).
    The token is written to a private temporary file and published with
    ``link()``, so a concurrent first start reads either no file or a whole
    token, never an empty one; the loser of that race reads the winner's.
    """
    if settings.api_token:
        return settings.api_token, False
    path = settings.data_dir / TOKEN_FILE
    if path.exists():
        return _read_token(path), False
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = "ucf_" + _random.token_urlsafe(32)
    draft = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{_random.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return _read_token(path), False
    finally:
        draft.unlink(missing_ok=True)
    return token, True
