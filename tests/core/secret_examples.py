"""One well-formed, fake example of every provider secret shape.

Both places that hide secrets — the sanitiser (signals) and the log filter —
are tested with every example here, so a shape cannot be hidden in one and
leak through the other. Values are assembled at run time so no secret scanner
mistakes this file for a leak.
"""

from __future__ import annotations

from typing import Final

SHAPE_EXAMPLES: Final[dict[str, str]] = {
    "jwt": (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        + "eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        + "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    ),
    "github_token": "ghp_" + "R8x2Kq9LmZ4vT7wYb3NcHs6JdP1fGa5Ue0Ao",
    "gitlab_token": "glpat-" + "xY9zAb1Cd2Ef3Gh4Ij5K",
    "slack_token": "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack_webhook_url": "hooks.slack.com/services/"
    + "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "aws_access_key_id": "ABIA" + "IOSFODNN7EXAMPLE",
    "linear_api_key": "lin_api_" + "Xy12Ab34Cd56Ef78Gh90Ij12Kl34Mn56Op78Qr90",
    "stripe_key": "rk_live_" + "51H8xYzAbCdEfGhIjKlMnOpQr",
    "webhook_secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "anthropic_api_key": "sk-ant-" + "api03-Ab3dEf6hIj9kLm2nOp5qRs8tUv",
    "openai_api_key": "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "google_api_key": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "npm_token": "npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "atlassian_api_token": "ATATT" + "3xFfGF0T0aBcDeFgHiJkLmNoPqRsTuVwXyZ",
    "notion_token": "ntn_" + "4581732516913ZsX0aPqRtYuIoPlKjHgFdSaMnBvCxZ0q1",
    "sendgrid_api_key": "SG."
    + "ngeVfQFYQlKU0ufo8x5d1A.TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr",
    "asana_token": "1/" + "1200000000000001:" + "0123456789abcdef0123456789abcdef",
    "sentry_token": "sntrys_" + "eyJpYXQiOjE3MDAwMDAwMDAuMCwidXJsIjoiaHR0cHM6Ly9zZW50cnkuaW8ifQ",
}
"""Shape kind → an example of it, as it would appear in text."""
