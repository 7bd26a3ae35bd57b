"""Every knob of a running ucf, read once from the environment (and CLI flags).

The core never reads the environment; this is the one place that does, so
``ucf serve``, ``ucf worker`` and the Lambda handlers agree on what each
variable means.
"""

from __future__ import annotations

import os
import re
import secrets as _random
from collections.abc import Mapping
from dataclasses import field
from datetime import timedelta
from pathlib import Path
from typing import Final
from urllib.parse import SplitResult, urlsplit

from ucf.core.records import datarecord
from ucf.runtime.egress import EgressPolicy
from ucf.runtime.http_settings import HttpSettings
from ucf.stores.models import DEFAULT_DESCRIPTOR_HISTORY
from ucf.stores.url import default_data_dir, resolve_store_url

DEFAULT_POLL_TIMEOUT = timedelta(minutes=5)
DEFAULT_WEBHOOK_SECRET_RETENTION = timedelta(days=30)
DEFAULT_ATTEMPT_TIMEOUT = timedelta(seconds=60)

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret
MIN_TOKEN_LENGTH = 32
"""The admin token opens the API, the dashboard and every credential's rotation: at least
as long as the 32 random characters of the one ucf makes (OWASP: no short shared secrets)."""

SINK_NAMES = ("jsonl", "http", "sqs", "eventbridge")
"""Every sink ucf knows, in the order :attr:`Settings.sinks` lists the configured ones.
A sink's name is its outbox queue's name: each has its own cursor."""


@datarecord(slots=False)
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
    descriptor_history: int = DEFAULT_DESCRIPTOR_HISTORY
    """``UCF_DESCRIPTOR_HISTORY``: earlier versions kept per connector (at least 1)."""
    webhook_secret_retention: timedelta = DEFAULT_WEBHOOK_SECRET_RETENTION
    """``UCF_WEBHOOK_SECRET_RETENTION_DAYS``: how long an instance keeps a webhook secret
    its connector no longer verifies with, once the version that stopped was saved (a
    restore within it finds deliveries verified); the scheduler's daily job deletes it
    after (:meth:`ucf.service.instances.InstanceService.retire_webhook_secrets`)."""
    jsonl_sink: Path | None = None
    http_sink: str | None = None
    http_sink_token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer …`` with every POST to ``http_sink``."""
    sqs_sink: str | None = None
    """``UCF_SINK_SQS``: the URL of an SQS queue (standard or FIFO), one message per signal."""
    eventbridge_sink: str | None = None
    """``UCF_SINK_EVENTBRIDGE``: an EventBridge bus name or ARN, one event per signal."""
    eventbridge_endpoint: str | None = None
    """``AWS_ENDPOINT_URL_EVENTS``, honoured as an alias of the SDKs' own
    ``AWS_ENDPOINT_URL_EVENTBRIDGE`` (which boto3 reads itself and which wins)."""
    scheduler: bool = True
    max_concurrent_polls: int = 4
    public_url: str | None = None
    """Where the internet reaches this ucf (``UCF_PUBLIC_URL``, e.g. https://ucf.example.com):
    sources that register their own webhooks (Outlook's Graph subscription) point them at
    ``{public_url}/api/webhooks/{connectorId}/{projectId}``; None: they only poll."""
    poll_timeout: timedelta = DEFAULT_POLL_TIMEOUT
    """The most one poll may spend fetching (all pages, retries and waits included);
    past it the poll ends as failed, keeping what it stored, and frees its slot."""
    public_introspection: bool | None = None
    """``/metrics``, ``/docs``, ``/openapi.json`` open to anyone (``UCF_PUBLIC_INTROSPECTION``);
    None: ``ucf serve`` decides by its bind address (public on loopback only)."""
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
            webhook_max_bytes=_positive_int(env, "UCF_WEBHOOK_MAX_BYTES", 256 * 1024),
            webhook_requests_per_minute=_positive_int(env, "UCF_WEBHOOK_RPM", 100),
            signal_retention=_retention(env),
            descriptor_history=_positive_int(
                env, "UCF_DESCRIPTOR_HISTORY", DEFAULT_DESCRIPTOR_HISTORY
            ),
            webhook_secret_retention=_days(
                env, "UCF_WEBHOOK_SECRET_RETENTION_DAYS", DEFAULT_WEBHOOK_SECRET_RETENTION
            ),
            jsonl_sink=Path(env["UCF_SINK_JSONL"]) if env.get("UCF_SINK_JSONL") else None,
            http_sink=check_sink_url(env["UCF_SINK_HTTP"]) if env.get("UCF_SINK_HTTP") else None,
            http_sink_token=env.get("UCF_SINK_HTTP_TOKEN") or None,
            sqs_sink=_queue_url(env.get("UCF_SINK_SQS", "").strip()),
            eventbridge_sink=_event_bus(env.get("UCF_SINK_EVENTBRIDGE", "").strip()),
            eventbridge_endpoint=None
            if env.get("AWS_ENDPOINT_URL_EVENTBRIDGE")
            else env.get("AWS_ENDPOINT_URL_EVENTS") or None,
            scheduler=_switch(env, "UCF_SCHEDULER") is not False,
            max_concurrent_polls=_positive_int(env, "UCF_MAX_CONCURRENT_POLLS", 4),
            poll_timeout=_positive_seconds(env, "UCF_POLL_TIMEOUT") or DEFAULT_POLL_TIMEOUT,
            http=HttpSettings(
                attempt_timeout=(
                    _positive_seconds(env, "UCF_HTTP_ATTEMPT_TIMEOUT") or DEFAULT_ATTEMPT_TIMEOUT
                ).total_seconds()
            ),
            poll_interval_override=_positive_seconds(env, "UCF_POLL_INTERVAL_OVERRIDE"),
            public_url=_public_url(env.get("UCF_PUBLIC_URL", "")),
            public_introspection=_switch(env, "UCF_PUBLIC_INTROSPECTION"),
        )

    @property
    def sinks(self) -> tuple[str, ...]:
        """Outbox sinks beyond the signal store itself (which always holds every signal)."""
        configured = {
            "jsonl": self.jsonl_sink,
            "http": self.http_sink,
            "sqs": self.sqs_sink,
            "eventbridge": self.eventbridge_sink,
        }
        return tuple(name for name in SINK_NAMES if configured[name] is not None)


_EVENT_BUS = re.compile(
    r"[.\-_A-Za-z0-9/]{1,256}|arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[.\-_A-Za-z0-9/]{1,256}"
)


def check_sink_url(url: str) -> str:
    """``url`` if it can be POSTed to, else a ``ValueError`` naming the fix (not the URL,
    which may carry credentials). Checked with the other settings: checked only when the
    deliverer started, ``UCF_SINK_HTTP=ftp://…`` stopped ``ucf serve`` with a traceback
    after it had bound its port, where a wrong ``UCF_SINK_SQS`` is one line."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "the HTTP sink URL must be an absolute http:// or https:// URL "
            "(e.g. UCF_SINK_HTTP=https://pipeline.internal/signals)"
        )
    return url


def _queue_url(text: str) -> str | None:
    """``UCF_SINK_SQS``: SQS addresses a queue by URL; a name or an ARN is a common slip."""
    if not text:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path.strip("/"):
        raise ValueError(
            "UCF_SINK_SQS must be the queue's URL, e.g. "
            "https://sqs.eu-west-1.amazonaws.com/123456789012/signals.fifo "
            "(aws sqs get-queue-url --queue-name NAME prints it), not its name or ARN"
        )
    return text


def _event_bus(text: str) -> str | None:
    """``UCF_SINK_EVENTBRIDGE``: a bus name (``default`` is the account's own) or its ARN."""
    if not text:
        return None
    if not _EVENT_BUS.fullmatch(text):
        raise ValueError(
            "UCF_SINK_EVENTBRIDGE must be an event bus name (e.g. default, or signals) or its "
            "ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME)"
        )
    return text


def _public_parts(text: str, source: str) -> SplitResult:
    """``text`` split, if it can name where ucf is reached: http(s), a host, a port that
    is a port, no user name or password (every webhook URL shown would carry them); a
    :class:`ValueError` naming ``source`` otherwise (an unclosed ``[::1`` said only
    "Invalid IPv6 URL", and ``:99999`` or ``:abc`` were taken)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - read for its ValueError: out of range, or not a number
    except ValueError:
        raise ValueError(f"{source} must be an http(s) URL, got {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{source} must be an http(s) URL, got {text!r}")
    if "@" in parts.netloc:
        raise ValueError(
            f"{source} must not hold a user name or password: every webhook URL ucf shows "
            "is built on it"
        )
    return parts


_PREFIX: Final = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)*")
"""A path prefix ``ucf serve`` can be served under: segments of unreserved characters,
none of them ``.`` or ``..`` (a browser resolves those away, so ``/ucf/..`` would lead
every link out of ucf)."""


def served_public_url(text: str, source: str = "--public-url") -> str:
    """The public URL ``ucf serve`` is reached at, without its trailing ``/``; a
    :class:`ValueError` naming ``source`` unless it is an http(s) URL without a query
    or a fragment (either would end up inside every webhook URL).

    A path (``https://tools.example.com/ucf`` behind a proxy that takes ``/ucf`` off)
    is the prefix the dashboard is served under (:func:`served_root_path`); the URLs
    ucf hands to providers are built on the whole URL, prefix included.
    """
    parts = _public_parts(text.strip(), source)
    if parts.query or parts.fragment:
        raise ValueError(
            f"{source} must have no query or fragment, got {text!r}: the webhook URLs ucf "
            "hands out are built on it"
        )
    path = parts.path.rstrip("/")
    if not _PREFIX.fullmatch(path):
        raise ValueError(
            f"{source} must have a plain path prefix (letters, digits and -._~ between "
            f"slashes, no '.' or '..' segment, e.g. /ucf), got {text!r}: the dashboard "
            "is served under it"
        )
    return f"{parts.scheme}://{parts.netloc}{path}"


def served_root_path(public_url: str | None) -> str:
    """The path prefix of a public URL (``/ucf`` of ``https://tools.example.com/ucf``),
    ``""`` at a host's root: ASGI's ``root_path`` for ``ucf serve``.

    Only plain prefixes get here (:func:`served_public_url`): ``root_path`` is compared
    with the request's decoded path and sent as ASCII bytes, so a prefix with escapes
    or other characters would never match, or stop uvicorn.
    """
    if not public_url:
        return ""
    return urlsplit(public_url).path.rstrip("/")


def _public_url(text: str) -> str | None:
    """``UCF_PUBLIC_URL`` as every process reads it: an http(s) URL without its trailing
    ``/``, or None when unset; a :class:`ValueError` naming it otherwise.

    ``ucf serve`` checks its own further (:func:`served_public_url`: a plain path). A
    path is kept here, because behind API Gateway a REST API's stage or a custom domain's
    base path is part of the webhook URLs (``UCF_API_BASE_PATH``). Read as it was,
    with only ``/`` stripped, ``https://ucf.example.com/?`` made every URL ucf hands
    out ``https://ucf.example.com/?/api/webhooks/…`` (the Outlook subscriptions the
    schedule function and ``ucf worker`` create among them), and a query, a fragment
    or another scheme was taken as well.
    """
    text = text.strip()
    if not text:
        return None
    parts = _public_parts(text, "UCF_PUBLIC_URL")
    if parts.query or parts.fragment:
        raise ValueError(
            f"UCF_PUBLIC_URL must have no query or fragment, got {text!r}: the webhook "
            "URLs ucf hands out are built on it"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off"})


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    """A yes/no variable; unset, empty or ``auto`` is None (the caller decides)."""
    text = env.get(name, "").strip().lower()
    if text in ("", "auto"):
        return None
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError(f"{name} must be one of 1, 0, true, false, yes, no or auto, got {text!r}")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    """A count or limit of at least 1, refused by name otherwise.

    Read with a bare ``int()`` these said only "invalid literal for int() with base
    10: 'x'", without the variable; a 0 stopped ``ucf serve`` with a traceback
    (``UCF_MAX_CONCURRENT_POLLS``) or was taken, refusing every webhook delivery
    (``UCF_WEBHOOK_RPM``, ``UCF_WEBHOOK_MAX_BYTES``).
    """
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {text!r}")
    return value


MAX_RETENTION_DAYS = 3650  # the SAM template's SignalRetentionDays bound


def _number_within(env: Mapping[str, str], name: str, upper: float, unit: str) -> float | None:
    """A number in (0, ``upper``], refused by name otherwise (also nan and inf); None unset."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= upper:
        raise ValueError(f"{name} must be a number of {unit} in (0, {upper}], got {text!r}")
    return value


def _retention(env: Mapping[str, str]) -> timedelta:
    """``UCF_SIGNAL_RETENTION_DAYS``: how long signals are kept, (0, 3650] days.

    A negative number was taken, and the hourly purge deletes every signal older
    than *now minus it*: all of them, including the ones just stored.
    """
    days = _number_within(env, "UCF_SIGNAL_RETENTION_DAYS", MAX_RETENTION_DAYS, "days")
    return timedelta(days=30 if days is None else days)


def _days(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """A number of days in (0, 3650], refused by name otherwise; ``default`` unset."""
    days = _number_within(env, name, MAX_RETENTION_DAYS, "days")
    return default if days is None else timedelta(days=days)


def _positive_seconds(env: Mapping[str, str], name: str) -> timedelta | None:
    seconds = _number_within(env, name, 86_400, "seconds")
    return None if seconds is None else timedelta(seconds=seconds)


class ApiTokenError(ValueError):
    """The admin API token cannot be used; the message says what to do."""


class TokenFileError(ApiTokenError):
    """The API token file exists but holds no token (e.g. a crash during first start)."""


class WeakApiToken(ApiTokenError):
    """``UCF_API_TOKEN`` is too short to resist guessing."""


def check_api_token(token: str, source: str = "UCF_API_TOKEN") -> str:
    """``token`` if it is long enough; else :class:`WeakApiToken` naming ``source``."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise WeakApiToken(
            f"{source} is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} "
            "random ones (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or unset it and ucf makes one"
        )
    return token


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
    A ``UCF_API_TOKEN`` shorter than :data:`MIN_TOKEN_LENGTH` is refused
    (:class:`WeakApiToken`).
    The token is written to a private temporary file and published with
    ``link()``, so a concurrent first start reads either no file or a whole
    token, never an empty one; the loser of that race reads the winner's.
    """
    if settings.api_token:
        return check_api_token(settings.api_token), False
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
