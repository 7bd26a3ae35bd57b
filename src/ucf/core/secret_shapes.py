"""The shapes of provider credentials, in one list for everything that hides secrets.

Two places must recognise a token by its looks: the sanitiser redacts them
from signals before the triage pipeline sees them (:mod:`ucf.core.sanitiser`),
and the log filter masks them in every log line (:mod:`ucf.runtime.redaction`).
They used to keep a list each, and the lists drifted: Sentry's ``sntrys_``
tokens were masked in logs but reached signals, ``whsec_`` and ``AIza`` keys
the other way round. Both now read :data:`SECRET_SHAPES`, so a shape added here
is hidden everywhere, and the tests run every shape through both.

Only self-identifying shapes belong here: a prefix or structure no prose has.
Secrets recognised by their context (``Authorization:`` headers, ``password=``,
``?api_key=``) are each consumer's business, because a log line and an issue
comment put them in different contexts.

Every pattern must compile under both RE2 (the sanitiser runs user-facing text
through RE2 for linear time) and Python's ``re`` (the log filter), and must not
use capturing groups: the whole match is the secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ucf.core.records import datarecord

__all__ = ["SECRET_SHAPES", "SecretShape", "has_digit_and_upper"]


def has_digit_and_upper(value: str) -> bool:
    """Random keys mix digits and capitals; prose like ``sk-learn-style`` does not."""
    return any(ch.isdigit() for ch in value) and any(ch.isupper() for ch in value)


@datarecord
class SecretShape:
    """One self-identifying credential format.

    ``accept`` takes a second look where the pattern alone would catch prose;
    it sees the matched text and says whether it really looks like a credential.
    ``source`` is where the provider documents the format.
    """

    kind: str
    pattern: str
    source: str
    accept: Callable[[str], bool] | None = None


SECRET_SHAPES: Final[tuple[SecretShape, ...]] = (
    # header.payload.signature, base64url; the header is JSON, so it starts "eyJ".
    SecretShape(
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
        "https://datatracker.ietf.org/doc/html/rfc7519#section-3",
    ),
    # Classic, OAuth, user-to-server, server-to-server and refresh tokens; fine-grained PATs.
    SecretShape(
        "github_token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
        "https://github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/",
    ),
    SecretShape(
        "gitlab_token",
        r"\bglpat-[A-Za-z0-9_-]{20,}",
        "https://docs.gitlab.com/security/tokens/#token-prefixes",
    ),
    # Bot, user, app, refresh and configuration tokens; app-level tokens.
    SecretShape(
        "slack_token",
        r"\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxapp-[A-Za-z0-9-]{10,}",
        "https://api.slack.com/concepts/token-types",
    ),
    # An incoming-webhook URL is its own credential: whoever has it may post.
    SecretShape(
        "slack_webhook_url",
        r"\bhooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{10,}",
        "https://api.slack.com/messaging/webhooks",
    ),
    # Long-term and temporary key ids, and the ABIA/ACCA forms of AWS's other partitions.
    SecretShape(
        "aws_access_key_id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html",
    ),
    SecretShape(
        "linear_api_key",
        r"\blin_(?:api|oauth)_[A-Za-z0-9]{16,}",
        "https://linear.app/developers/graphql#authentication",
    ),
    SecretShape(
        "stripe_key",
        r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}",
        "https://docs.stripe.com/keys",
    ),
    # Standard Webhooks / Svix / Stripe signing secrets.
    SecretShape(
        "webhook_secret",
        r"\bwhsec_[A-Za-z0-9+/=_-]{16,}",
        "https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md",
    ),
    SecretShape(
        "anthropic_api_key",
        r"\bsk-ant-[A-Za-z0-9_-]{20,}",
        "https://docs.anthropic.com/en/api/overview#authentication",
    ),
    SecretShape(
        "openai_api_key",
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        "https://platform.openai.com/docs/api-reference/authentication",
        accept=has_digit_and_upper,
    ),
    SecretShape(
        "google_api_key",
        r"\bAIza[0-9A-Za-z_-]{35}",
        "https://cloud.google.com/docs/authentication/api-keys",
    ),
    SecretShape(
        "npm_token",
        r"\bnpm_[A-Za-z0-9]{36}",
        "https://github.blog/changelog/2021-09-23-npm-has-a-new-access-token-format/",
    ),
    SecretShape(
        "atlassian_api_token",
        r"\bATATT[A-Za-z0-9_=-]{20,}",
        "https://support.atlassian.com/atlassian-account/docs/manage-api-tokens-for-your-atlassian-account/",
    ),
    # Internal integration tokens: "secret_" until September 2024, "ntn_" since.
    SecretShape(
        "notion_token",
        r"\b(?:secret|ntn)_[A-Za-z0-9]{40,}",
        "https://developers.notion.com/docs/authorization",
    ),
    SecretShape(
        "sendgrid_api_key",
        r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",
        "https://www.twilio.com/docs/sendgrid/ui/account-and-settings/api-keys",
    ),
    # Personal access tokens: "1/<user gid>:<32 hex>" (v1) or "2/<user gid>/<app gid>:<hex>".
    SecretShape(
        "asana_token",
        r"\b[0-9]/[0-9]{10,20}(?:/[0-9]{10,20})?:[0-9a-f]{32}\b",
        "https://developers.asana.com/docs/personal-access-token",
    ),
    # Organization tokens (sntrys_) and user auth tokens (sntryu_).
    SecretShape(
        "sentry_token",
        r"\bsntry[su]_[A-Za-z0-9+/=_]{20,}",
        "https://docs.sentry.io/account/auth-tokens/",
    ),
)
"""Every self-identifying shape, most specific first (``sk-ant-`` before ``sk-``)."""
