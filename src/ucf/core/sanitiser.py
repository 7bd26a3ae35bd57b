"""Make a signal safe to hand to an AI triage step.

A signal's text comes from people and systems we do not control: an issue body
may carry a pasted token, a Slack message may hide instructions in zero-width
characters, a Confluence page arrives as HTML. The downstream model reads
``sanitisedSummary``; this module produces it, and scrubs everything else the
model or a screen might show.

What happens to each field (every action is listed in ``sanitisationNotes``):

``sanitisedSummary`` — the full text pipeline (:meth:`Sanitiser.clean_text`):
  line breaks unified; control, invisible (zero-width, tag, soft hyphen…) and
  bidi-control characters removed (joiners and variation selectors only where
  they join or select nothing: emoji and Persian words keep theirs); NFKC normalisation so full-width and other
  look-alike forms match our patterns; HTML to plain text (``nh3``, then entity
  decoding, repeated while the result still looks like HTML so a second pass
  finds nothing new); secrets replaced by ``[REDACTED:<kind>]`` (a listed word
  after ``password:`` or ``token:`` that a sentence goes on from is prose, not a
  secret: :func:`_reads_as_prose`); likely prompt
  injection wrapped as ``[flagged: …]``; bounded to ``max_summary_chars`` at a
  word boundary with ``…``.

``summary`` — *scrubbed, not cleaned*: the same line-break, invisible-character
  and secret redaction steps, nothing else. It is the source's own wording,
  which a dashboard may display, so it keeps its HTML (the display layer
  escapes it) and its wording (a human reader is not the injection target),
  but a secret or a Trojan-Source bidi override must not reach any screen.

``raw`` and ``metadata`` strings — scrubbed like ``summary``, recursively, with
  values under secret-looking keys (``token``, ``password``, ``client_secret``…)
  redacted whatever they look like, and the whole structure bounded (string
  length, total characters, members, depth; each metadata list's entries and
  their length) so a hostile payload cannot make the record, or the work,
  unbounded. ``raw`` is not NFKC-normalised nor
  HTML-stripped: it stays the source record, faithful apart from what must go.

Notes are short stable strings, ``[scope:]action[:detail]``; the scope is
absent for ``sanitisedSummary`` and ``summary:``, ``raw:`` or ``metadata:``
otherwise. Counted actions carry their count (``control_chars_removed:3``).
Bounds hit are ``truncated:<what>``: ``summary``, ``input``, ``summary_field``,
``raw_strings:<n>``, ``raw_total``, ``raw_items``, ``raw_depth``, ``metadata``.

Prompt-injection flags are advisory: the phrase stays readable, quoted, and the
note tells the triage step an instruction-like phrase was present. Patterns are
tuned against ordinary engineering text: "act as", "you are now" and role words
are flagged only when aimed at an AI persona ("act as an unrestricted
assistant", "System: you are…"), never in "nginx will act as a proxy", "you are
now subscribed" or an issue template's "System: Ubuntu 22.04". A human asking
to "disregard the previous instructions I sent" is flagged: the phrase is the
attack, whoever writes it.

Not attempted: generic high-entropy strings (commit SHAs look the same),
cross-script homoglyphs (Cyrillic "і" in "іgnore"), secrets split by markup
inside the scrub-only fields.

Every pattern is RE2 (linear time whatever the input), except the character
classes used to drop invisible characters, which use ``re`` because RE2 sees
UTF-8 and cannot name lone surrogates; a single character class is linear in
``re`` too. ``nh3``'s parser is quadratic in the nesting depth of some block
elements, so text entering the pipeline is bounded first (``max_input_chars``).
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import nh3
import re2

from ucf.core.records import datarecord
from ucf.core.secret_shapes import SECRET_SHAPES
from ucf.core.signal_identity import SUMMARY_MAX_CHARS

if TYPE_CHECKING:
    from ucf.core.signal import NormalisedSignal, SanitisedSignal, SignalMetadata

__all__ = [
    "DEFAULT_INJECTION_RULES",
    "DEFAULT_SECRET_FIELDS",
    "DEFAULT_SECRET_RULES",
    "InjectionRule",
    "Sanitiser",
    "SanitiserPolicy",
    "SecretRule",
    "sanitise",
    "without_invisible",
]

ELLIPSIS = "…"
FLAG_OPEN = "[flagged: "
REDACTED = "[REDACTED:{kind}]"

_KIND = re.compile(r"[a-z0-9_]+")


# --------------------------------------------------------------------------- rules


def _has_digit(value: str) -> bool:
    return any(ch.isdigit() for ch in value)


_AUTH_SCHEMES = frozenset(
    "bearer basic token bot ssws apikey oauth digest negotiate ntlm hawk sharedkey dsn".split()
)


def _opaque_credential(value: str) -> bool:
    """An ``Authorization:`` value with a digit that is not just a scheme name."""
    return value.lower() not in _AUTH_SCHEMES and _has_digit(value)


_PROSE_WORDS: Final = frozenset(
    # What a sentence about a credential puts after "password:" or "token:": function
    # words (auxiliaries, negations, articles, pronouns, prepositions, conjunctions)...
    "a an the this that these those it its is are was were be been being has have had"
    " do does did will would shall should can could cannot may might must not no never"
    " also only still now then and or but if when until so for to of in on at by with"
    " without from as per each every all any you your we our they their my"
    " please see here below above same"
    # ...and what tickets say a credential is or needs ("token: expired yesterday").
    " required requires require optional mandatory needed needs need recommended"
    " missing invalid expired expires rotated revoked empty wrong incorrect changed"
    " reset stored provided supplied generated set unset accepted rejected ignored"
    " used sent valid minimum maximum".split()
)
"""The words a labelled value may be and still be read as prose (:func:`_reads_as_prose`).

Small and fixed on purpose: each is one more word a real password could be and be
shown. None is a password people use (``secret``, ``admin``, ``changeme``,
``letmein``, ``welcome``, ``default``, ``test`` are not here, nor any noun)."""

_NEGATION_STEMS: Final = frozenset(
    "aren can couldn didn doesn don hadn hasn haven isn shouldn wasn weren won wouldn".split()
)
"""``doesn`` in ``password: doesn't work``: a stem, prose only with its ``'t``."""

_PROSE_VALUE: Final = re.compile(
    # The word (a negation's stem with its 't), then the sentence going on: the cut
    # mark after a space (the sanitiser's own cut at the word's end, see
    # :meth:`Sanitiser._cut`), or a word in lower case after spaces (a comma or
    # semicolon may come first), maybe quoted by the injection stage ("[flagged: "),
    # so a second pass reads it as the first did. The cut mark glued to the word is
    # not: a cut that went through a word glues it so (the mapping's at 500
    # characters, a source's preview), and "password: the…" was "password:
    # theWalrus42!". Every repetition is bounded: the look costs the same anywhere.
    r"([a-z]{1,16})(['’]t)?"
    r"(?:[ \t]{1,8}…|[,;]?[ \t]{1,8}(?:\[flagged: )?[a-z]{1,40}(?![A-Za-z0-9_]))"
)


def _reads_as_prose(text: str, start: int, end: int) -> bool:
    """Whether the value ``text[start:end]`` a label names is a sentence's next word.

    It is when it comes after a colon and spaces (not quoted, not after ``=``), it is,
    exactly and in lower case, one of :data:`_PROSE_WORDS` (or a negation,
    ``doesn't``), and the same line goes on with a word in lower case: ``token:
    required for every call``. So ``password: required`` alone, a value at the end of
    its line (``token: must``), ``password=is`` or ``token: "required" for``, one
    followed by anything but a lower-case word (``password: is Hunter2``), one glued to
    a cut mark (``password: the…``, maybe ``theWalrus42!`` cut), and any
    value with a capital, a digit or a symbol stay redacted. Only the listed word is ever left: what
    follows it was never part of the value.
    """
    value = text[start:end]
    # A secret, nearly always: one look settles it (the word alone, or with a curly
    # "'t" or, the ASCII "'" ending the value, a negation's stem).
    if not (value in _PROSE_WORDS or value in _NEGATION_STEMS or value.endswith("’t")):
        return False
    # After a colon only, as a sentence puts it: after "=" (password=a, ?token=…) the
    # value is assigned, and a quoted one is a value whatever it says.
    if not text[max(0, start - 9) : start].rstrip(" \t").endswith(":"):
        return False
    found = _PROSE_VALUE.match(text, start)
    if found is None:
        return False
    word, negation = found.group(1, 2)
    # The word is the whole value (the password rule's ends before an ASCII "'", not
    # before a "’"): never a part of it.
    if end not in (found.end(1), found.end(2)):
        return False
    return word in (_NEGATION_STEMS if negation else _PROSE_WORDS)


@datarecord(slots=False)
class SecretRule:
    """One shape of secret. Group 1, when the pattern has one, is the secret part.

    ``accept`` takes a second look where a regex alone would flag prose; it sees
    the secret part and says whether it really looks like a credential.

    ``leaves_prose`` is for a rule that finds a value by its label (``password:``,
    ``token=``): a sentence about the credential puts a word after the label
    (``password: must be at least 12 characters``), and that word is left when it
    reads as one (see :func:`_reads_as_prose`). Never for a rule whose whole match
    is the secret: only a label's value can be a sentence's next word.
    """

    kind: str
    pattern: str
    accept: Callable[[str], bool] | None = None
    leaves_prose: bool = False


@datarecord(slots=False)
class InjectionRule:
    """One family of prompt-injection phrasing, neutralised as ``[flagged: …]``.

    ``defang`` rewrites the quoted text when quoting alone is not enough: a chat
    template token like ``<|im_start|>`` can still be tokenised as a control
    token by a self-hosted model, so it is broken apart.
    """

    kind: str
    pattern: str
    defang: Callable[[str], str] | None = None


# Where a credential's name starts and what follows it: a word boundary and ":" or "=",
# or, in a URL carried percent-encoded inside another one's query (a login's
# "next=%2Fcallback%3Fclient_secret%3D…", a redirect_uri), the escapes of "?" or "&"
# before the name and of "=" or ":" after it. Read only as plain text, such a
# credential passed whole: the name ran on from "%3F" (no word boundary) and "%3D"
# was no separator.
_KEY_START: Final = r"(?:\b|%3f|%26)"
_KEY_END: Final = r"(?:[:=]|%3a|%3d)"
# The same one level further down: a URL nested in a nested URL's query is escaped twice,
# so "?", "&", "=" and ":" arrive as %253F, %2526, %253D and %253A, and every escape of
# its values as %25XX (a lone "%XX" is no part of such a value).
_KEY_START_TWICE: Final = r"(?:%253f|%2526)"
_KEY_END_TWICE: Final = r"(?:%253a|%253d)"
_CREDENTIAL_NAMES: Final = (
    r"(?:api[_-]?key|api[_-]?token|access[_-]?token|refresh[_-]?token|auth[_-]?token"
    r"|id[_-]?token|session[_-]?token|client[_-]?secret|app[_-]?secret|secret[_-]?key"
    r"|signing[_-]?secret|webhook[_-]?secret|private[_-]?token|oauth[_-]?token|x-api-key"
    r"|dd-api-key|dd-application-key|token)"
)
_VALUE_ESCAPE: Final = r"%(?:[013-9A-Fa-f][0-9A-Fa-f]|2[1-57-9A-Fa-f])"
"""A percent-escape a token's value may hold: any but %20 (a space) and %26 ("&")."""
_VALUE_ESCAPE_TWICE: Final = r"%25(?:[013-9A-Fa-f][0-9A-Fa-f]|2[1-57-9A-Fa-f])"
"""The same escaped a second time (%252F): any but %2520 and %2526."""
_QUERY_CHARACTER: Final = r"[A-Za-z0-9._~!*()+/-]"
"""What a query value keeps unescaped (encodeURIComponent's, Python's quote's, "+")."""
_SIGNED_URL_PARAMETERS: Final = (
    r"(?:sig|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature"
    r"|x-goog-credential)"
)
"""The query parameters that make a URL its own credential: Azure Storage's SAS
signature (``sig``), AWS Signature Version 4's presigned-URL signature, credential
scope and session token, and Google Cloud Storage's V4 signature and credential (an
HMAC key's access id, as ``X-Amz-Credential`` holds AWS's, or a service account's
address). Whoever holds such a URL has its access until it expires (``se=``,
``X-Amz-Expires``, ``X-Goog-Expires``)."""
_SIGNED_VALUE: Final = r"[A-Za-z0-9_/+-]|[.@][A-Za-z0-9_-]"
"""A signed URL parameter's value: base64 or hex, and the dots and ``@`` of a Cloud
Storage credential's service account (``a@p.iam.gserviceaccount.com``), never a
sentence's last stop."""
_SIGNED_ESCAPE: Final = r"%(?:[013-9A-Za-z_/+-]|2[1-57-9A-Za-z_/+-])"
"""A percent sign in such a value, followed by what is no escape too (``sig=abc%ZZdef``,
hand-edited or garbled: the value stopped there, and was left whole when fewer than 16
characters came before), only not ``%20`` (a space) or ``%26`` (``&``), the end of a
nested URL's value."""
_SIGNED_ESCAPE_TWICE: Final = r"%25(?:[013-9A-Za-z_/+-]|2[1-57-9A-Za-z_/+-])"
"""The same one level further down: anything but ``%2520`` and ``%2526``."""
_AUTH_HEADER = r"(?i:\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?"

DEFAULT_SECRET_RULES: tuple[SecretRule, ...] = (
    # Multi-line blob first, so the keys inside it are not reported piecemeal; a
    # block cut short (a truncated summary) is redacted to the end of the text.
    SecretRule(
        "private_key",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)",
    ),
    # A signed URL's signature (before the shapes: an X-Amz-Credential's value starts
    # with the access key id, whose own marker would end the value there). Its value is
    # base64 or hex, escaped once in a query, twice in a URL nested in a nested one.
    SecretRule(
        "signed_url",
        r"(?i:" + _KEY_START + _SIGNED_URL_PARAMETERS + r"(?:=|%3d))"
        r"((?:" + _SIGNED_VALUE + r"|" + _SIGNED_ESCAPE + r"){16,}(?:=|%3[Dd])*)",
    ),
    SecretRule(
        "signed_url",
        r"(?i:" + _KEY_START_TWICE + _SIGNED_URL_PARAMETERS + r"%253d)"
        r"((?:" + _SIGNED_VALUE + r"|" + _SIGNED_ESCAPE_TWICE + r"){16,}(?:=|%253[Dd])*)",
    ),
    # Provider token shapes, shared with the log filter (see ucf.core.secret_shapes).
    *(SecretRule(shape.kind, shape.pattern, shape.accept) for shape in SECRET_SHAPES),
    # scheme://user:password@host — only the password goes, however long: a bound let a
    # password of 257 characters or more pass whole (RE2 stays linear without one).
    SecretRule(
        "url_password",
        r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:@/?#\[\]]+:([^\s@/?#\[\]]+)@",
    ),
    SecretRule("bearer_token", _AUTH_HEADER + r"bearer\s+)([A-Za-z0-9._~+/-]+=*)"),
    SecretRule("basic_auth", _AUTH_HEADER + r"basic\s+)([A-Za-z0-9+/]+=*)"),
    # A bare "Bearer <token>" outside a header: only when it looks random.
    SecretRule("bearer_token", r"(?i:\bbearer\s+)([A-Za-z0-9._~+/-]{16,}=*)", accept=_has_digit),
    # Any other scheme (Linear's bare key, PagerDuty's "Token token=…", …).
    SecretRule(
        "authorization_header",
        _AUTH_HEADER + r"(?:(?:" + "|".join(sorted(_AUTH_SCHEMES)) + r")\s+)?)"
        r"([^\s\"',;\[\]]{8,})",
        accept=_opaque_credential,
    ),
    SecretRule(
        "aws_secret_access_key",
        r"(?i:"
        + _KEY_START
        + r"(?:aws_?)?secret_?access_?key\b[\"']?\s*"
        + _KEY_END
        + r"\s*[\"']?)"
        # Escaped "/", "+" and "=", once in a query or twice in a URL nested in one.
        r"((?:[A-Za-z0-9/+]|%(?:25)?2[BbFf]){30,}(?:(?:%(?:25)?3[Dd]){1,2}|={0,2}))",
    ),
    SecretRule(
        "password",
        r"(?i:\b(?:password|passwd|pwd)\b[\"']?\s*[:=]\s*)"
        r"(\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"'&;,\[\]]{1,200})",
        leaves_prose=True,
    ),
    # The same in a URL nested in another's query ("next=%2Fcb%3Fpassword%3Dhunter2"),
    # once or twice escaped: read as plain text, "%3D" was no "=", and "%3Fpassword"
    # no word; the value ends at the escape of "&" or a space, as a query's does.
    SecretRule(
        "password",
        r"(?i:(?:%3f|%26)(?:password|passwd|pwd)(?:%3a|%3d))"
        r"((?:" + _QUERY_CHARACTER + r"|" + _VALUE_ESCAPE + r"){1,200})",
    ),
    SecretRule(
        "password",
        r"(?i:" + _KEY_START_TWICE + r"(?:password|passwd|pwd)" + _KEY_END_TWICE + r")"
        r"((?:" + _QUERY_CHARACTER + r"|" + _VALUE_ESCAPE_TWICE + r"){1,200})",
    ),
    SecretRule(
        "credential",
        r"(?i:" + _KEY_START + _CREDENTIAL_NAMES + r"\b[\"']?\s*[:=]\s*[\"']?)"
        # Percent-escapes too: in a query or a form body a token's "+", "/" and "=" are
        # sent as %2B, %2F and %3D (Google's refresh tokens start "1%2F%2F"), and the value
        # stopped at the first one: left whole when fewer than 8 characters came before.
        # Not %26 ("&", the next parameter of an encoded query) or %20 (a space): no
        # token holds them, and the rest of a nested URL or a sentence was taken too.
        r"((?:[A-Za-z0-9._~+/-]|" + _VALUE_ESCAPE + r"){8,}=*)",
        leaves_prose=True,
    ),
    SecretRule(
        "credential",
        # After an escaped ":" or "=" the text is a query's, where "+" is a space (one in
        # a token travels as %2B): "q=rotate+an+access+token%3A+step+by+step" took the
        # search's words for a token. Spaces as "+" or %20 may come before the value.
        r"(?i:" + _KEY_START + _CREDENTIAL_NAMES + r"\b(?:%22|%27)?(?:\+|%20)*(?:%3a|%3d)"
        r"(?:\+|%20)*(?:%22|%27)?)"
        r"((?:[A-Za-z0-9._~/-]|" + _VALUE_ESCAPE + r"){8,}(?:=|%3[Dd])*)",
    ),
    SecretRule(
        "credential",
        # In a URL nested twice (a login's next= inside a redirect_uri) every escape is
        # escaped again: "%253Faccess_token%253D…%2526", its value's "/" as %252F.
        r"(?i:"
        + _KEY_START_TWICE
        + _CREDENTIAL_NAMES
        + r"\b(?:%2522|%2527)?(?:\+|%2520)*"
        + _KEY_END_TWICE
        + r"(?:\+|%2520)*(?:%2522|%2527)?)"
        r"((?:[A-Za-z0-9._~/-]|" + _VALUE_ESCAPE_TWICE + r"){8,}(?:=|%253[Dd])*)",
    ),
)

# Keys (compared lower-case without '-' and '_') whose string values in ``raw``
# are credentials whatever they look like, e.g. Slack's url_verification
# ``token`` or Notion's ``verification_token``.
DEFAULT_SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "accesstoken",
        "apikey",
        "apitoken",
        "authorization",
        "authtoken",
        "bearertoken",
        "clientsecret",
        "cookie",
        "ddapikey",
        "ddapplicationkey",
        "idtoken",
        "passwd",
        "password",
        "privatekey",
        "refreshtoken",
        "secret",
        "secretaccesskey",
        "sessiontoken",
        "setcookie",
        "signingsecret",
        "token",
        "verificationtoken",
        "webhooksecret",
        "xapikey",
    }
)


def _defang_chat_token(text: str) -> str:
    return text.replace("<|", "< |").replace("|>", "| >")


_APOS = "['’]"
_NEG = rf"(?:do\s+not|don{_APOS}?t|never)"
_AUDIENCE = r"(?:the\s+)?(?:users?|humans?|operators?)\b"

DEFAULT_INJECTION_RULES: tuple[InjectionRule, ...] = (
    InjectionRule(
        "ignore_previous_instructions",
        r"(?i:\b(?:ignore|disregard|forget|override|bypass)\s+"
        r"(?:(?:all|any|each|every|the|your|my|of|these|those)\s+){0,3}"
        r"(?:previous|prior|above|earlier|preceding|former|foregoing|original|initial|existing)\s+"
        r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines)\b"
        r"|\b(?:ignore|disregard|forget)\s+everything\s+(?:above|before|prior|previously)\b)",
    ),
    InjectionRule(
        "system_prompt_manipulation",
        r"(?i:\b(?:ignore|disregard|forget|override|bypass|reveal|repeat|leak|disclose|show\s+me)\s+"
        r"(?:(?:the|your|my|this|any|all|of)\s+){0,2}"
        r"(?:system|developer|hidden|initial|original|secret)\s+(?:prompts?|messages?|instructions?)\b)",
    ),
    InjectionRule(
        "role_reassignment",
        r"(?i:\b(?:you\s+are\s+now|you\s+are\s+no\s+longer|from\s+now\s+on,?\s+you\s+(?:are|will\s+be)"
        r"|(?:act|behave|respond|roleplay|role-play)\s+as|pretend\s+(?:to\s+be|(?:that\s+)?you\s+are))\s+"
        r"(?:(?:a|an|the|my|your)\s+)?(?:[a-z0-9-]+\s+){0,2}"
        r"(?:assistant|chat-?bot|chatgpt|gpt-?[0-9][0-9.a-z-]*|language\s+model|dan"
        r"|jailbroken|unrestricted|unfiltered|uncensored)\b"
        r"|\byou\s+are\s+now\s+in\s+(?:developer|god|dan|jailbreak|jailbroken|unrestricted)\s+mode\b"
        r"|\byou\s+are\s+no\s+longer\s+(?:bound|restricted|limited)\s+by\b)",
    ),
    InjectionRule(
        "role_prefix",
        r"(?im:^[ \t>*_#\[(-]*(?:system|assistant|developer|human|ai)[ \t*_\])]*:[ \t*_]*"
        rf"(?:you|your|ignore|disregard|forget|from\s+now\s+on|new\s+instructions?|always|never"
        rf"|do\s+not|don{_APOS}?t|respond|reply|answer|pretend|act\s+as|override|reveal)\b)",
    ),
    InjectionRule(
        "chat_template_token",
        r"(?i:<\|[a-z0-9_]{1,32}\|>|\[/?inst\]|<</?sys>>|<(?:start|end)_of_turn>)",
        defang=_defang_chat_token,
    ),
    InjectionRule(
        "system_prompt_delimiter",
        r"(?i:\b(?:begin|end|start)(?:\s+of)?\s+(?:the\s+)?system\s+(?:prompts?|messages?|instructions?)\b"
        r"|\bsystem\s+(?:prompt|instructions?)\s+(?:begins?|ends?|starts?)\b"
        r"|</?(?:system|system_prompt)>)",
    ),
    InjectionRule(
        "concealment",
        rf"(?i:\b{_NEG}\s+(?:tell|inform)\s+{_AUDIENCE}"
        rf"|\b{_NEG}\s+(?:mention|reveal|disclose|say)\s+(?:this|that|it|anything)\s+to\s+{_AUDIENCE}"
        rf"|\b{_NEG}\s+let\s+{_AUDIENCE}\s+know\b"
        rf"|\bkeep\s+(?:this|it)\s+(?:a\s+)?secret\s+from\s+{_AUDIENCE})",
    ),
)


# --------------------------------------------------------------------------- policy


@datarecord(slots=False)
class SanitiserPolicy:
    """The bounds and rule sets one sanitiser applies.

    The raw bounds keep the work per signal linear in a bounded size, whatever
    the payload does. They count characters, not bytes: 200 000 characters of
    CJK text are 600 KB, more than a DynamoDB item holds, and the ingest cuts
    such a signal's raw further (:class:`~ucf.service.ingest.SignalIngestor`).
    """

    max_summary_chars: int = SUMMARY_MAX_CHARS
    max_input_chars: int = 10_000
    max_raw_string_chars: int = 10_000
    max_raw_total_chars: int = 200_000
    max_raw_items: int = 10_000
    max_raw_depth: int = 32
    max_metadata_items: int = 100
    """Entries kept of each metadata list (participants, relatedTickets, tags)."""
    max_metadata_chars: int = 256
    """Characters kept of each metadata entry: names, labels, ticket keys and URLs.
    With the items bound, the metadata of a signal is at most ~300 KB even in
    four-byte characters, so the ingest can always make a signal fit a DynamoDB
    item by cutting its ``raw``."""
    max_html_passes: int = 4
    secret_fields: frozenset[str] = DEFAULT_SECRET_FIELDS
    extra_secret_rules: tuple[SecretRule, ...] = ()
    extra_injection_rules: tuple[InjectionRule, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "max_summary_chars",
            "max_input_chars",
            "max_raw_string_chars",
            "max_raw_total_chars",
            "max_raw_items",
            "max_raw_depth",
            "max_metadata_items",
            "max_metadata_chars",
            "max_html_passes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"SanitiserPolicy.{name} must be at least 1")
        if self.max_input_chars < self.max_summary_chars:
            raise ValueError("SanitiserPolicy.max_input_chars must be >= max_summary_chars")
        for rule in self.extra_secret_rules:
            if _anchors_to_text_edge(rule.pattern):
                raise ValueError(
                    f"secret rule {rule.kind!r} anchors to the start or end of the text "
                    "(^, $, \\A or \\z); secrets are found inside longer text, so use \\b"
                )


def _anchors_to_text_edge(pattern: str) -> bool:
    """Whether ``pattern`` uses ``^``, ``$``, ``\\A`` or ``\\z`` (outside a character class).

    Such a rule matches a string on its own but not the same string inside the
    line-joined text that the one-scan checks search.
    """
    escaped = in_class = quoted = False
    for char in pattern:
        if quoted:  # \Q…\E: literal text up to the first \E (backslashes do not pair)
            quoted = not (escaped and char == "E")
            escaped = char == "\\"
            continue
        if escaped:
            escaped = False
            if char == "Q" and not in_class:
                quoted = True
            elif char in "Az" and not in_class:
                return True
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "^$":
            return True
    return False


# --------------------------------------------------------------------------- notes


class _Notes:
    """Ordered, de-duplicated notes; counted notes add up across strings."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, int | None] = {}

    def flag(self, note: str) -> None:
        self._entries.setdefault(note, None)

    def count(self, note: str, n: int) -> None:
        if n > 0:
            self._entries[note] = (self._entries.get(note) or 0) + n

    def render(self) -> list[str]:
        return [note if n is None else f"{note}:{n}" for note, n in self._entries.items()]


# --------------------------------------------------------------------------- characters

# Code points that are invisible or reorder text: every format character (Cf),
# plus invisible letters and marks used to hide text. Bidi controls are split
# out because they signal a Trojan-Source style attack rather than noise.
_BIDI_RANGES = ((0x061C, 0x061C), (0x200E, 0x200F), (0x202A, 0x202E), (0x2066, 0x2069))
_EXTRA_INVISIBLE_RANGES = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels: invisible, "not recommended" by Unicode
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x2065, 0x2065),  # unassigned, default ignorable (shown as nothing)
    (0x3164, 0x3164),  # Hangul filler
    (0xFFA0, 0xFFA0),  # half-width Hangul filler
    (0xFFF0, 0xFFF8),  # unassigned, default ignorable
    # Tags, supplementary variation selectors ("emoji smuggling") and the rest of the
    # block, unassigned but default ignorable: all shown as nothing.
    (0xE0000, 0xE0FFF),
)
# Joiners and variation selectors, removed by their neighbours (:func:`_without_stray_joiners`):
# kept in emoji (❤️, 👩‍💻, 🏳️‍🌈), in Persian's and Indic scripts' words, removed where
# they hide inside ASCII (a token or a phrase split by them showed whole and passed).
_JOINER_RANGES = ((0x200C, 0x200D), (0xFE00, 0xFE0F))
# Unicode assigns format characters only in these planes; a test checks all of them.
_FORMAT_SCAN_RANGES = ((0x0000, 0x1FFFF), (0xE0000, 0xE0FFF))
_NEWLINES = ("\r\n", "\r", "\x85", "\u2028", "\u2029")
# The format characters (Cf) of those planes but the bidi controls, as ranges, per
# version of Unicode's data (``unicodedata.unidata_version``): Python 3.11 has 14.0.0,
# 3.12 15.0.0, 3.13 15.1.0. Reading them from ``unicodedata`` scans ~200 000 code
# points (~10 ms of a cold start); another version is scanned. A test holds the running
# version's row equal to the scan.
_FORMAT_CHARACTERS_15: Final = (
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200D),
    (0x2060, 0x2064),
    (0x206A, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),  # Egyptian hieroglyph format controls: 0x13438 last before 15.0
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
_FORMAT_CHARACTERS: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    "14.0.0": tuple(
        (0x13430, 0x13438) if low == 0x13430 else (low, high) for low, high in _FORMAT_CHARACTERS_15
    ),
    "15.0.0": _FORMAT_CHARACTERS_15,
    "15.1.0": _FORMAT_CHARACTERS_15,
}
# What of the above can occur in ASCII text: C0 controls but \t and \n (so \r too), DEL.
_ASCII_HIDDEN = ((0x00, 0x08), (0x0B, 0x1F), (0x7F, 0x7F))
_VISIBLE_ASCII: Final = bytes(
    c for c in range(128) if not any(a <= c <= b for a, b in _ASCII_HIDDEN)
)
# Not text at all; what ``html_to_text`` turns into U+FFFD (RE2 cannot read them).
_LONE_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    parts = []
    for low, high in ranges:
        parts.append(
            re.escape(chr(low)) if low == high else f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        )
    return "[" + "".join(parts) + "]"


def _merge(points: Iterable[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for point in sorted(set(points)):
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1] = (ranges[-1][0], point)
        else:
            ranges.append((point, point))
    return ranges


def _format_characters() -> list[tuple[int, int]]:
    """The format characters but bidi controls: this Unicode version's table, else a scan."""
    known = _FORMAT_CHARACTERS.get(unicodedata.unidata_version)
    return list(known) if known is not None else _scan_format_characters()


def _scan_format_characters() -> list[tuple[int, int]]:
    """The format characters (Cf) but bidi controls, as ``unicodedata`` has them."""
    bidi = {p for low, high in _BIDI_RANGES for p in range(low, high + 1)}
    return _merge(
        p
        for low, high in _FORMAT_SCAN_RANGES
        for p in range(low, high + 1)
        if unicodedata.category(chr(p)) == "Cf" and p not in bidi
    )


@functools.cache
def _character_classes() -> tuple[
    re2._Regexp[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]
]:
    """(any, control, invisible, bidi) — built once per process from ``unicodedata``.

    The three classes whose matches are removed are Python patterns (they must see lone
    surrogates); the test for any of them, the hot one, is RE2's (see ``_re2_union``)."""
    invisible = {p for low, high in _format_characters() for p in range(low, high + 1)}
    invisible.update(p for low, high in _EXTRA_INVISIBLE_RANGES for p in range(low, high + 1))
    joiners = {p for low, high in _JOINER_RANGES for p in range(low, high + 1)}
    invisible -= joiners  # removed by their neighbours instead
    # C0 and C1 controls except \t and \n, DEL, and lone surrogates (not text at all).
    control = [(0x00, 0x08), (0x0B, 0x1F), (0x7F, 0x9F), (0xD800, 0xDFFF)]
    classes = (control, _merge(invisible), list(_BIDI_RANGES))
    # The fast-path test also looks for the line breaks _tidy turns into "\n", and for
    # joiners (which _tidy may remove).
    union = _merge(
        [
            0x2028,
            0x2029,
            *joiners,
            *(p for ranges in classes for low, high in ranges for p in range(low, high + 1)),
        ]
    )
    patterns = [re.compile(_char_class(ranges)) for ranges in classes]
    return _re2_union(union), patterns[0], patterns[1], patterns[2]


def _re2_union(ranges: list[tuple[int, int]]) -> re2._Regexp[str]:
    """The union class for RE2, which reads UTF-8: lone surrogates cannot be in its text
    (searching text that holds one raises ``UnicodeEncodeError``), so not in its class."""
    parts = []
    for low, high in ranges:
        for start, end in ((low, min(high, 0xD7FF)), (max(low, 0xE000), high)):
            if start <= end:
                parts.append(f"\\x{{{start:x}}}-\\x{{{end:x}}}")
    return _re2("[" + "".join(parts) + "]", "hidden characters", capture=False)


_JOINER_RUN: Final = re.compile(
    "[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in _JOINER_RANGES) + "]+"
)
_KEYCAP: Final = "\u20e3"
_ZERO_WIDTH_JOINERS: Final = frozenset("\u200c\u200d")


def _without_stray_joiners(text: str) -> tuple[str, int]:
    """``text`` without the joiners and variation selectors that join nothing, and how
    many went.

    They are shown as nothing. Removed as every format character is, emoji fell apart
    (👩‍💻, "woman technologist", became 👩💻) and Persian and Indic words were
    misspelt (ZWNJ and ZWJ are part of their spelling); kept, variation selectors
    (never format characters) split a token (``ghp_…\ufe0f…``) that was then shown
    whole but redacted nowhere. So a run of them stays only where it belongs: after a
    character that is neither ASCII, nor becomes ASCII under NFKC (full-width letters),
    nor a space, and, for a run with a joiner, before one too; or as an emoji keycap's
    (``1️⃣``: a digit, ``#`` or ``*``, U+FE0F, U+20E3). Neighbours are read after every
    other hidden character is gone, and a run is decided whole, so a second pass keeps
    what the first kept.
    """
    if _JOINER_RUN.search(text) is None:
        return text, 0
    removed = 0

    def decided(found: re.Match[str]) -> str:
        nonlocal removed
        run = found.group()
        start, end = found.span()
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        if _joins(run, before, after):
            return run
        removed += len(run)
        return ""

    return _JOINER_RUN.sub(decided, text), removed


def _joins(run: str, before: str, after: str) -> bool:
    if _plain(before):
        return run == "\ufe0f" and after == _KEYCAP and before in "0123456789#*"
    return not _ZERO_WIDTH_JOINERS.intersection(run) or not _plain(after)


def _plain(char: str) -> bool:
    """No character (a text's edge), a space, or ASCII as written or under NFKC."""
    return (
        not char
        or char.isascii()
        or char.isspace()
        or unicodedata.normalize("NFKC", char).isascii()
    )


def _truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary when one is near, ending in ``…``."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if space >= limit // 2:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


def _words_within(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, with no word cut in two: the one the
    limit goes through is left out. A text with no space, tab or line break before the
    limit is one word, cut there (a long URL keeps its start)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if text[limit] in _WORD_ENDS:
        return head
    end = max(head.rfind(end) for end in _WORD_ENDS)
    return head if end < 0 else head[: end + 1]


_WORD_ENDS: Final = (" ", "\t", "\n", "\r")


def _without_cut_run(text: str) -> str:
    """``text`` without its last run of characters a secret may hold (all but whitespace
    and punctuation that delimits: the start of a token, of a password in a URL…).

    A ``<`` in the last word goes with what follows it: the cut went through a tag, a
    comment or a CDATA section there (``<``, ``<sp``, ``<![``), which, without its end,
    was not taken for markup and stayed as text; the run before it was glued to it, and
    the markup's removal would have joined it to what came after the cut."""
    end = len(text)
    while end and not text[end - 1].isspace():
        end -= 1
    opened = text.rfind("<", end)
    if opened >= 0:
        text = text[:opened]
    unfinished = _UNFINISHED_SECRET.search(text, max(0, len(text) - _UNFINISHED_REACH))
    if unfinished is not None:
        text = text[: unfinished.start(unfinished.lastindex or 0)]
    end = len(text)
    while end and not (text[end - 1].isspace() or text[end - 1] in _RUN_ENDS):
        end -= 1
    return text[:end]


_RUN_ENDS: Final = frozenset(",;|\"'<>()[]{}`")

_UNFINISHED_SECRET: Final = re.compile(
    # A URL's user and password: only the "@" after them makes them one (``url_password``).
    r"(\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s@/?#\[\]]{0,513})\Z"
    # A quoted password, only one once its closing quote is there (``password``).
    r"|(?i:\b(?:password|passwd|pwd)\b[\"']?\s*[:=]\s*)(\"[^\"\n]{0,200}|'[^'\n]{0,200})\Z"
    # An Authorization header's value, needing 8 characters (``authorization_header``).
    r"|" + _AUTH_HEADER + r"(?:[A-Za-z]+\s+)?)([^\s\"',;\[\]]{0,200})\Z"
)
"""What a secret rule recognises only with what follows it (an "@", a closing quote,
enough characters), at the end of a cut text: a cut through it leaves what is kept
unrecognised, and it may hold the characters a run ends at (``_RUN_ENDS``): a password
``Tr0ub4dor,x9Qz`` cut short kept ``Tr0ub4dor,`` in clear. It is left out from its
start, the scheme or the quote (at most its rule's own bound)."""

_UNFINISHED_REACH: Final = 600
"""How far from the end :data:`_UNFINISHED_SECRET` may start (its longest match, a URL's
scheme, user and password, is 537 characters): the search stays linear in a long text."""


def _cut_input(text: str, limit: int) -> str:
    """Bound the pipeline's input, cutting at whitespace so no token is split in two."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    window = max(0, limit - 1024)
    space = max(head.rfind(" ", window), head.rfind("\n", window))
    return head[:space] if space > 0 else head


# --------------------------------------------------------------------------- HTML

_HTML_TAGS = sorted(
    set(nh3.ALLOWED_TAGS)
    | set(nh3.CLEAN_CONTENT_TAGS)
    | set(
        "html head body title meta link base script style iframe frame frameset object embed applet "
        "form input button select option optgroup textarea label fieldset legend svg math noscript "
        "template font marquee blink xmp plaintext listing main section dialog picture source video "
        "audio track canvas param address output progress meter".split()
    )
)
# Text is treated as HTML only when it has a real element, comment, doctype or
# entity; "Vec<u8>" or "a < b" in an issue title is prose and stays as written.
_HTML_GATE = (
    r"(?i:<(?:/?(?:" + "|".join(_HTML_TAGS) + r")(?:[\s/>]|\z)|!--|!doctype|!\[cdata\[)"
    r"|&(?:#[0-9]{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,31});)"
)
# Tags become invisible, so the line breaks they imply are put back first:
# blocks start and end a line, list items and rows start one, cells are spaced.
_BLOCK_TAGS = (
    "p|div|ul|ol|table|thead|tbody|tfoot|h[1-6]|blockquote|pre|hr|section|article|header"
    "|footer|nav|aside|main|address|dl|details|summary|figure|figcaption|caption|title|form"
)
_LINE_BREAK = r"(?i:<(?:br|li|dt|dd|tr|/?(?:" + _BLOCK_TAGS + r"))\b)"
_CELL_BREAK = r"(?i:<(?:td|th)\b)"


# --------------------------------------------------------------------------- compiled rules

_MARKER = r"(\[flagged: [^\]]*\])"


def _re2(pattern: str, what: str, *, capture: bool = True) -> re2._Regexp[str]:
    options = re2.Options()
    options.never_capture = not capture
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise ValueError(f"{what}: pattern does not compile under RE2: {pattern!r}") from exc


def _check_kind(kind: str, what: str) -> None:
    if not _KIND.fullmatch(kind):
        raise ValueError(f"{what} kind {kind!r} must be lower-case letters, digits and '_'")


def _check_not_empty(regex: re2._Regexp[str], what: str) -> None:
    """Refuse a rule that matches empty text (``x*``, ``(?:acme_…)?``): it would match
    between every two characters of every string, so every signal would take the slow
    path to have nothing marked. Empty matches that need a context (``\\b(?:…)?``) are
    skipped where the rules mark text."""
    if regex.fullmatch("") is not None:
        raise ValueError(f"{what} matches empty text; make the part it looks for required")


class _CompiledSecret:
    __slots__ = ("_accept", "_grouped", "_prose", "_regex", "kind", "marker")

    def __init__(self, rule: SecretRule) -> None:
        _check_kind(rule.kind, "secret rule")
        self.kind = rule.kind
        self.marker = REDACTED.format(kind=rule.kind)
        self._regex = _re2(rule.pattern, f"secret rule {rule.kind!r}")
        _check_not_empty(self._regex, f"secret rule {rule.kind!r}")
        self._grouped = self._regex.groups >= 1
        self._accept = rule.accept
        self._prose = rule.leaves_prose

    def redact(self, text: str) -> tuple[str, int]:
        hits = 0

        def replace(match: re2._Match[str]) -> str:
            nonlocal hits
            whole = match.group(0)
            if self._grouped and match.start(1) >= 0:
                offset = match.start()
                start, end = match.start(1) - offset, match.end(1) - offset
            else:
                start, end = 0, len(whole)
            secret = whole[start:end]
            if (
                not secret  # an empty match (at a \b, say) holds no secret
                or secret.startswith("[REDACTED:")
                or (self._accept and not self._accept(secret))
                or (
                    self._prose
                    and _reads_as_prose(match.string, match.start() + start, match.start() + end)
                )
            ):
                return whole
            hits += 1
            return whole[:start] + self.marker + whole[end:]

        return self._regex.sub(replace, text), hits


class _CompiledInjection:
    __slots__ = ("_defang", "_phrase", "_regex", "kind")

    def __init__(self, rule: InjectionRule) -> None:
        _check_kind(rule.kind, "injection rule")
        self.kind = rule.kind
        what = f"injection rule {rule.kind!r}"
        self._phrase = _re2(rule.pattern, what, capture=False)
        _check_not_empty(self._phrase, what)
        # An existing marker is consumed whole, so quoting is never nested.
        self._regex = _re2(f"{_MARKER}|(?:{_closed(rule.pattern)})", what)
        self._defang = rule.defang

    def neutralise(self, text: str) -> tuple[str, bool]:
        found = False

        def replace(match: re2._Match[str]) -> str:
            nonlocal found
            whole = match.group(0)
            if not whole:  # an empty match (at a \b, say) quotes no phrase
                return whole
            if match.start(1) >= 0:  # already quoted; still report what it quotes
                found = found or self._phrase.search(whole[len(FLAG_OPEN) : -1]) is not None
                return whole
            found = True
            quoted = self._defang(whole) if self._defang else whole
            return f"{FLAG_OPEN}{quoted}]"

        return self._regex.sub(replace, text), found


def _closed(pattern: str) -> str:
    """``pattern``, to be put inside a group: with the ``\\E`` RE2 supplies at its end
    when a ``\\Q`` is left open (literal text to the end of the pattern). Inside
    ``(?:…)``, or joined with other rules, the open quote would take their text too."""
    escaped = quoted = False
    for char in pattern:  # \Q…\E as RE2 reads it: see _anchors_to_text_edge
        if quoted:
            quoted = not (escaped and char == "E")
            escaped = char == "\\"
        elif escaped:
            escaped, quoted = False, char == "Q"
        else:
            escaped = char == "\\"
    return pattern + "\\E" if quoted else pattern


def _detector(patterns: Iterable[str], what: str) -> re2._Regexp[str]:
    """One pass that says whether any rule could match, so clean text costs one scan."""
    return _re2("|".join(f"(?:{_closed(p)})" for p in patterns), what, capture=False)


_LONG_BOUND: Final = re.compile(r"\{(\d+),\d{3,}\}")


def _gate(pattern: str) -> str:
    """A pattern found wherever ``pattern`` is (and perhaps elsewhere), cheaper to compile.

    RE2 compiles a counted repetition ``x{1,256}`` as 256 copies of ``x``: the
    two such rules among the built-in secrets made most of their detector's
    ~6 ms compile. A detector only decides whether the exact rules run (any
    hit takes the full path, which redacts nothing the rules do not match), so
    its bounds of 100 and more are dropped (``x{1,}`` matches wherever ``x{1,256}``
    does). Only for the built-in patterns, whose long bounds all stand outside
    character classes (a test holds each gate to match what its rule matches):
    in an added rule's ``[{1,256}]`` the rewrite would change the class.
    """
    return _LONG_BOUND.sub(r"{\1,}", pattern)


_UNANCHORED: Final[Any] = re2._Anchor.UNANCHORED  # type: ignore[attr-defined]
_NO_MATCH: Final = (-1, -1)


def _found(regexp: re2._Regexp[str], data: bytes) -> bool:
    """``regexp.search(text) is not None`` for ``data = text.encode()``, asked of the
    compiled program itself.

    The fast path only asks whether a detector matches at all. ``search`` answers
    with a match object, after a generator, position clamping and an offset map
    from UTF-8 bytes back to characters: about a microsecond of each scan's, five
    scans a delivery. This runs the same ``RE2::Match`` (unanchored, over the whole
    UTF-8 text, as ``search`` calls it for a whole ``str``), and lets one encoding
    of a text serve several programs. A test holds the two answers equal.
    """
    program: Any = regexp._regexp  # type: ignore[attr-defined]
    return bool(program.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)


class _AnyOf:
    """Whether any of several patterns matches: the answer of one alternation of them.

    A text has a match of ``(?:a)|(?:b)`` exactly when it has one of ``a`` or
    of ``b``, so searching each in turn answers as the alternation would,
    from programs compiled anyway, for a few more (cheap) scans.
    """

    __slots__ = ("_patterns",)

    def __init__(self, *patterns: re2._Regexp[str]) -> None:
        self._patterns = patterns

    def search(self, text: str) -> re2._Match[str] | None:
        for pattern in self._patterns:
            found = pattern.search(text)
            if found is not None:
                return found
        return None

    def found(self, text: str) -> bool:
        """``search(text) is not None``, the text encoded once for every pattern."""
        data = text.encode()
        return any(_found(pattern, data) for pattern in self._patterns)


# --------------------------------------------------------------------------- sanitiser


@datarecord(frozen=False, slots=False)
class _Scope:
    """Where notes go, and the prefix that says which field they are about."""

    notes: _Notes
    prefix: str

    def flag(self, note: str) -> None:
        self.notes.flag(self.prefix + note)

    def count(self, note: str, n: int) -> None:
        self.notes.count(self.prefix + note, n)


_COMPILED: Final = (
    "_secrets",
    "_secret_detector",
    "_injections",
    "_injection_detector",
    "_summary_detector",
    "_page_summary_detector",
    "_html_gate",
    "_line_break",
    "_cell_break",
    "_spaces",
    "_line_edges",
    "_blank_lines",
    "_any_hidden",
    "_control",
    "_invisible",
    "_bidi",
)
"""The sanitiser's compiled patterns (properties, each compiled once on first use)."""


class Sanitiser:
    """Applies one :class:`SanitiserPolicy`. Every pattern is compiled once per
    instance (on first use); calls keep no other state on the instance, so one
    sanitiser serves every thread."""

    def __init__(self, policy: SanitiserPolicy = SanitiserPolicy()) -> None:  # noqa: B008 - frozen
        self.policy = policy
        self._secret_rules = (*DEFAULT_SECRET_RULES, *policy.extra_secret_rules)
        self._injection_rules = (*DEFAULT_INJECTION_RULES, *policy.extra_injection_rules)
        self._html = nh3.Cleaner(tags=set())
        self._secret_fields = frozenset(
            name.lower().replace("-", "").replace("_", "") for name in policy.secret_fields
        )
        self._secret_field_marker = REDACTED.format(kind="secret_field")
        self._secret_key_cache: dict[str, bool] = {}
        # The page path reads raw as JSON text and finds secret-named keys in it with one
        # pattern (see ``_secret_key_detector``), which it can build for ASCII names only.
        self._raw_as_json = all(name and name.isascii() for name in self._secret_fields)
        self._raw_json_limit = min(policy.max_raw_string_chars, policy.max_raw_items)
        # The page path's raw depth, summary length and joined length limits, once.
        self._metadata_limits = (policy.max_metadata_items, policy.max_metadata_chars)
        self._page_limits = (
            policy.max_raw_depth,
            min(SUMMARY_MAX_CHARS, policy.max_summary_chars, policy.max_input_chars),
            policy.max_raw_total_chars,
        )
        # Summaries are scanned joined by a line break when no rule can tell that from the
        # text's edges (built-in rules anchor only as (?m)^ or \z after [\s\S]*?; added
        # secret rules may not anchor at all, added injection rules may).
        self._summaries_joinable = not any(
            _anchors_to_text_edge(rule.pattern) for rule in policy.extra_injection_rules
        )
        if policy.extra_secret_rules or policy.extra_injection_rules:
            self._compile()  # an added rule that does not compile fails here, not mid-poll

    def _compile(self) -> None:
        """Compile every pattern now (the properties below otherwise do it on first use)."""
        for name in _COMPILED:
            getattr(self, name)

    # The patterns are compiled on first use: the built-in rules are about fifty RE2
    # programs (tens of ms), and a process that never sanitises (a Lambda scheduling
    # polls or delivering stored signals) should not pay for them. The hidden-character
    # classes come from a scan of ~200 000 code points, made once per process. After
    # the first use each is a plain attribute of the instance.

    @functools.cached_property
    def _secrets(self) -> tuple[_CompiledSecret, ...]:
        return tuple(_CompiledSecret(rule) for rule in self._secret_rules)

    @functools.cached_property
    def _secret_detector(self) -> re2._Regexp[str]:
        built_in = len(DEFAULT_SECRET_RULES)  # the first rules: see __init__
        return _detector(
            (
                _gate(rule.pattern) if index < built_in else rule.pattern
                for index, rule in enumerate(self._secret_rules)
            ),
            "secret rules",
        )

    @functools.cached_property
    def _injections(self) -> tuple[_CompiledInjection, ...]:
        return tuple(_CompiledInjection(rule) for rule in self._injection_rules)

    @functools.cached_property
    def _injection_detector(self) -> re2._Regexp[str]:
        return _detector((r.pattern for r in self._injection_rules), "injection rules")

    @functools.cached_property
    def _summary_detector(self) -> _AnyOf:
        # Markup, injection phrases or secrets: the three detectors' programs, not a fourth
        # of them all (the secret rules' counted repetitions make it the largest to
        # compile, ~10 ms that a cold start would pay a second time).
        return _AnyOf(self._html_gate, self._injection_detector, self._secret_detector)

    @functools.cached_property
    def _page_summary_detector(self) -> _AnyOf:
        # The page path's summaries: markup or injection phrases. A secret in a summary
        # is found by the scan of the joined texts, which hold every summary scanned
        # here (see sanitise_wires), so the secret program is not run on it twice.
        return _AnyOf(self._html_gate, self._injection_detector)

    @functools.cached_property
    def _html_gate(self) -> re2._Regexp[str]:
        return _re2(_HTML_GATE, "html gate", capture=False)

    @functools.cached_property
    def _line_break(self) -> re2._Regexp[str]:
        return _re2(_LINE_BREAK, "line break", capture=False)

    @functools.cached_property
    def _cell_break(self) -> re2._Regexp[str]:
        return _re2(_CELL_BREAK, "cell break", capture=False)

    @functools.cached_property
    def _spaces(self) -> re2._Regexp[str]:
        return _re2(r"[ \t]+", "spaces", capture=False)

    @functools.cached_property
    def _line_edges(self) -> re2._Regexp[str]:
        return _re2(r" ?\n ?", "line edges", capture=False)

    @functools.cached_property
    def _blank_lines(self) -> re2._Regexp[str]:
        return _re2(r"\n{3,}", "blank lines", capture=False)

    @functools.cached_property
    def _any_hidden(self) -> re2._Regexp[str]:
        return _character_classes()[0]

    @functools.cached_property
    def _control(self) -> re.Pattern[str]:
        return _character_classes()[1]

    @functools.cached_property
    def _invisible(self) -> re.Pattern[str]:
        return _character_classes()[2]

    @functools.cached_property
    def _bidi(self) -> re.Pattern[str]:
        return _character_classes()[3]

    # ---------------------------------------------------------------- signals

    def sanitise(self, signal: NormalisedSignal) -> SanitisedSignal:
        """The signal as the triage step may see it; the input is left untouched."""
        from ucf.core.signal import NormalisedSignal, SanitisedSignal  # see _signal_model()

        wire_metadata = None if signal.metadata is None else signal.metadata.to_wire()
        if self._unchanged(signal.summary, signal.raw, wire_metadata):
            # Nothing to clean, scrub, cut or redact: keep the fields as they are.
            return SanitisedSignal.model_construct(
                **{name: getattr(signal, name) for name in NormalisedSignal.model_fields},
                sanitised=True,
                sanitised_summary=signal.summary,
                sanitisation_notes=[],
            )
        clean, notes = self.clean_text(signal.summary)
        fields = _FieldPass(self, redact=False)
        summary, raw, metadata = self._walk(fields, signal)
        if fields.needs_redaction():
            fields = _FieldPass(self, redact=True)
            summary, raw, metadata = self._walk(fields, signal)
        return SanitisedSignal(
            id=signal.id,
            source=signal.source,
            timestamp=signal.timestamp,
            type=signal.type,
            summary=summary,
            raw=raw,
            project_id=signal.project_id,
            metadata=metadata,
            sanitised_summary=clean,
            sanitisation_notes=notes + fields.notes.render(),
        )

    def sanitise_wire(self, wire: dict[str, Any]) -> dict[str, Any]:
        """:meth:`sanitise` on a wire object the mapper built; the wire object it returns.

        Every ingest goes through here, so the common case (nothing to change)
        never builds a model: it is a copy with the three sanitiser fields added.
        """
        if self._unchanged(wire["summary"], wire["raw"], wire.get("metadata")):
            return _as_sanitised(wire)
        return self.sanitise(_signal_model().from_wire(wire)).to_wire()

    def sanitise_wires(self, wires: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`sanitise_wire` on a page of wire objects, the common case in a few scans.

        The per-signal fast path scans each signal's strings joined, twice
        (hidden characters, secrets); here the strings of the whole page are
        joined and each scan runs once, and each ``raw`` is read as its JSON
        text (see :meth:`_raw_text`) rather than walked string by string.
        Whenever a page scan finds anything, the signals are checked one by one
        instead (a hit in the join may belong to any of them), so the answer is
        always :meth:`sanitise_wire`'s, signal by signal.
        """
        candidates = self._scan_texts(wires)
        joined = "\n".join([c for c in candidates if c is not None])
        if self._has_hidden(joined):
            return [self.sanitise_wire(wire) for wire in wires]
        # No lone surrogate is left (_has_hidden saw them): every text encodes to UTF-8.
        summaries = [w["summary"] for w, c in zip(wires, candidates, strict=True) if c is not None]
        # Markup and injection phrases per summary; secrets in the scan of the joined texts
        # below, where each summary left here stands between line breaks: a secret rule
        # cannot anchor to a text's edges (the policy refuses one that does; the built-in
        # private key's [\s\S]*?\z runs on to the end of the join), so one found in a
        # summary alone is found there too, and that signal then takes the full path.
        detector = self._page_summary_detector
        dropped = False
        if not (self._summaries_joinable and not detector.found("\n".join(summaries))):
            for index, (wire, text) in enumerate(zip(wires, candidates, strict=True)):
                if text is not None and detector.found(wire["summary"]):
                    candidates[index] = None
                    dropped = True
        if dropped:  # the secret scan reads the texts left (the usual case: all of them)
            joined = "\n".join([c for c in candidates if c is not None])
        if _found(self._secret_detector, joined.encode()):
            for index, text in enumerate(candidates):
                if text is not None and self._secret_detector.search(text) is not None:
                    candidates[index] = None
        return [
            _as_sanitised(wire)
            if text is not None
            else self.sanitise(_signal_model().from_wire(wire)).to_wire()
            for wire, text in zip(wires, candidates, strict=True)
        ]

    def _scan_texts(self, wires: Sequence[dict[str, Any]]) -> list[str | None]:
        """Per signal, the text whose scans decide it (None: it needs the full path).

        Either ``raw``'s JSON text then the summary and metadata strings, or, when
        ``raw`` cannot be read as plain JSON text, every string joined as
        :meth:`_plain_strings` collects them. The keys of all the JSON texts are
        searched at once; a secret-named one sends the page back to the walk.
        """
        if not self._raw_as_json:
            return [self._joined_strings(wire) for wire in wires]
        texts: list[str | None] = []
        raws: list[str] = []
        # _raw_text then _with_fields for each signal, with what they look up once per
        # page looked up here (a poll runs this for every item: ~0.5 µs less each).
        dumps = self._plain_json
        json_limit = self._raw_json_limit
        depth_limit, summary_limit, total_limit = self._page_limits
        metadata_items, metadata_chars = self._metadata_limits
        is_normalized = unicodedata.is_normalized
        for wire in wires:
            raw = wire["raw"]
            text: str | None = None
            if raw.__class__ is dict:
                try:
                    text = dumps(raw).decode()
                except TypeError:  # orjson.JSONEncodeError is a TypeError
                    text = None
            if text is not None and len(text) <= json_limit:
                if "\\" in text:
                    for escaped, char in _PROSE_ESCAPES:
                        text = text.replace(escaped, char)
                    if "\\" in text:
                        text = None
                if (
                    text is not None
                    and text.count("{") + text.count("[") > depth_limit
                    and not _depth_at_most(text, depth_limit)
                ):
                    text = None
            else:
                text = None
            if text is None:
                texts.append(self._joined_strings(wire))
                continue
            raws.append(text)
            summary = wire["summary"]
            if len(summary) > summary_limit:
                texts.append(None)
                continue
            metadata = wire.get("metadata")
            if metadata is None:
                joined = text + "\n" + summary
            else:
                strings = [text, summary]
                strings += metadata["participants"]
                strings += metadata["relatedTickets"]
                strings += metadata["tags"]
                joined = "\n".join(strings)
                # Few entries and few characters in all are within every metadata bound;
                # only a signal past that pays for the check entry by entry.
                entries = len(strings) - 2
                if (
                    entries > metadata_items
                    or len(joined) - len(text) - len(summary) - entries > metadata_chars
                ) and not self._metadata_within_bounds(metadata):
                    texts.append(None)
                    continue
            if len(joined) > total_limit or (
                not summary.isascii() and not is_normalized("NFKC", summary)
            ):
                texts.append(None)
                continue
            texts.append(joined)
        if raws and _found(self._secret_key_detector, "\n".join(raws).encode()):
            return [self._joined_strings(wire) for wire in wires]
        return texts

    def _scan_text(
        self, summary: str, raw: dict[Any, Any], metadata: dict[str, Any] | None
    ) -> str | None:
        """One signal's :meth:`_scan_texts`."""
        text = self._raw_text(raw) if self._raw_as_json else None
        if text is not None and self._secret_key_detector.search(text) is None:
            return self._with_fields(text, summary, metadata)
        strings = self._plain_strings(summary, raw, metadata)
        return None if strings is None else "\n".join(strings)

    def _joined_strings(self, wire: dict[str, Any]) -> str | None:
        strings = self._plain_strings(wire["summary"], wire["raw"], wire.get("metadata"))
        return None if strings is None else "\n".join(strings)

    def _raw_text(self, raw: dict[Any, Any]) -> str | None:
        """``raw`` as compact JSON text with every string standing in it verbatim, else None.

        orjson writes only plain JSON data (it refuses non-str keys, subclasses,
        lone surrogates, integers past 64 bits: the walk takes those) and
        escapes only ``"``, ``\\`` and control characters. Line breaks and tabs
        (the escapes prose brings) are put back as the characters themselves;
        a text with any other escape left takes the walk. So every key and
        string value stands verbatim between quotes, and a quote, like the
        line break of the plain join, is a non-word character and no line or
        text edge: each string's matches are matches in the text (no rule may
        anchor to a text edge; see :meth:`_unchanged`). Every limit the walk
        checks is proven by the text: a string's length, the item count and the
        total by its length, the nesting depth by its brackets (see
        :func:`_depth_at_most`). Anything but a plain dict is left to the walk.
        """
        if raw.__class__ is not dict:
            return None
        try:
            text = self._plain_json(raw).decode()
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return None
        if len(text) > self._raw_json_limit:
            return None
        if "\\" in text:
            for escaped, char in _PROSE_ESCAPES:
                text = text.replace(escaped, char)
            # An escaped backslash loses at most its second half to a replacement
            # above, so any escape but these three leaves a backslash behind.
            if "\\" in text:
                return None
        if not _depth_at_most(text, self.policy.max_raw_depth):
            return None
        return text

    def _with_fields(self, raw: str, summary: str, metadata: dict[str, Any] | None) -> str | None:
        """``raw``'s text with the summary and metadata strings, or None as
        :meth:`_plain_strings` fails (over-long, not NFKC, past the total)."""
        policy = self.policy
        if len(summary) > min(SUMMARY_MAX_CHARS, policy.max_summary_chars, policy.max_input_chars):
            return None
        strings = [raw, summary]
        if metadata is not None:
            if not self._metadata_within_bounds(metadata):
                return None
            strings += metadata["participants"]
            strings += metadata["relatedTickets"]
            strings += metadata["tags"]
        text = "\n".join(strings)
        # At least the walk's count (each string of raw costs its quotes in the text).
        if len(text) > policy.max_raw_total_chars:
            return None
        if not summary.isascii() and not unicodedata.is_normalized("NFKC", summary):
            return None
        return text

    @functools.cached_property
    def _plain_json(self) -> Callable[[Any], bytes]:
        """orjson's writer, refusing (TypeError) anything but plain JSON data.

        Imported on first use, like the patterns: ~15 ms that a process which
        never sanitises (a Lambda scheduling polls) should not pay.
        """
        import orjson  # on first use: see the docstring

        option = (
            orjson.OPT_PASSTHROUGH_SUBCLASS
            | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS
        )
        return functools.partial(orjson.dumps, option=option)

    @functools.cached_property
    def _secret_key_detector(self) -> re2._Regexp[str]:
        """Any secret-named key in backslash-free JSON text: ``"`` + a name + ``":``.

        A key is secret-named when lower-cased and stripped of ``-`` and ``_`` it
        is one of the (ASCII) names; so its text is the name's letters, each
        matched without case (RE2 folds ``K``, the Kelvin sign, to ``k`` as
        ``str.lower`` does, and folds a few more: a false alarm costs only the
        walk), with any run of ``-`` and ``_`` around them.
        """
        names = (
            "[-_]*".join(re.escape(char) for char in name) for name in sorted(self._secret_fields)
        )
        return _re2(
            '(?i:"[-_]*(?:' + "|".join(names) + ')[-_]*":)', "secret field names", capture=False
        )

    def _unchanged(
        self, summary: str, raw: dict[Any, Any], metadata: dict[str, Any] | None
    ) -> bool:
        """Whether sanitising would change nothing and note nothing, proven with four scans.

        Most signals carry no markup, no hidden characters, no secrets, no
        injection phrases, no secret-named fields and nothing over a limit; for
        them one pass collecting strings and a few scans replace the per-string
        pipeline. Anything else (or any doubt) takes the full path, which is
        the reference (a hypothesis test holds the two equal).
        """
        joined = self._scan_text(summary, raw, metadata)
        if joined is None:
            return False
        # Hidden characters first: lone surrogates among them cannot even be
        # handed to RE2 (it reads UTF-8); the full path removes them.
        if self._has_hidden(joined):
            return False
        # The summary on its own, as its pipeline sees it: markup, injection
        # phrases and secrets, whatever anchors a rule uses.
        if self._summary_detector.search(summary) is not None:
            return False
        # Every other string in one scan. They are joined by a line break, which
        # no rule needs and which ``\b`` treats like a text edge, so a match in
        # any one string is a match in the join (and in a whole page joined,
        # :meth:`sanitise_wires`). Added rules may not anchor to the text's ends
        # (the policy checks); the built-in private key's
        # ``…[\s\S]*?(?:END…|\z)`` runs on to the end of the join instead.
        return self._secret_detector.search(joined) is None

    def _metadata_within_bounds(self, metadata: dict[str, Any]) -> bool:
        """Whether no metadata list is longer, and no entry of one, than the policy keeps."""
        items, chars = self._metadata_limits
        for values in (metadata["participants"], metadata["relatedTickets"], metadata["tags"]):
            if len(values) > items or (values and max(map(len, values)) > chars):
                return False
        return True

    def _plain_strings(
        self, summary: str, raw: dict[Any, Any], metadata: dict[str, Any] | None
    ) -> list[str] | None:
        """The signal's strings when every check but the scans passes, else None.

        Fails on anything the walk would change: an over-long summary, limits
        on raw, a secret-named field, a summary NFKC would rewrite.
        """
        policy = self.policy
        if len(summary) > min(SUMMARY_MAX_CHARS, policy.max_summary_chars, policy.max_input_chars):
            return None
        strings: list[str] = [summary]
        if not _collect_plain(raw, strings, self, 0, [policy.max_raw_items]):
            return None
        if metadata is not None:
            if not self._metadata_within_bounds(metadata):
                return None
            strings += metadata["participants"]
            strings += metadata["relatedTickets"]
            strings += metadata["tags"]
        # The joined length, counted without joining (more than the walk counts: safe).
        if sum(map(len, strings)) + len(strings) - 1 > policy.max_raw_total_chars:
            return None
        if not summary.isascii() and not unicodedata.is_normalized("NFKC", summary):
            return None
        return strings

    def _has_hidden(self, text: str) -> bool:
        """Any character ``_tidy`` would remove or rewrite."""
        if text.isascii():  # C0 controls but \t and \n, and DEL: what is left of the
            # text once every visible character is deleted (a C loop, ~7x the regex).
            return bool(text.encode("ascii").translate(None, _VISIBLE_ASCII))
        try:
            return self._any_hidden.search(text) is not None
        except UnicodeEncodeError:  # a lone surrogate: hidden itself, unreadable to RE2
            return True

    @staticmethod
    def _walk(
        fields: _FieldPass, signal: NormalisedSignal
    ) -> tuple[str, dict[str, Any], SignalMetadata | None]:
        return (
            fields.summary(signal.summary),
            fields.raw(signal.raw),
            fields.metadata(signal.metadata),
        )

    def clean_text(self, text: str) -> tuple[str, list[str]]:
        """The ``sanitisedSummary`` pipeline: plain, visible, secret-free, bounded text.

        Text beyond ``max_input_chars`` is cut first, at whitespace, because the
        HTML parser is quadratic in nesting depth; the output is cut again to
        ``max_summary_chars`` at the end.
        """
        notes = _Notes()
        scope = _Scope(notes, "")
        cut = False
        if len(text) > self.policy.max_input_chars:
            text, cut = _cut_input(text, self.policy.max_input_chars), True
            scope.flag("truncated:input")
        text = self._nfkc(self._tidy(text, scope), scope)
        text = self._strip_html(text, scope)
        text = self._redact(text, scope)
        text = self._neutralise(text, scope)
        if cut and len(text) < 2 * self.policy.max_summary_chars:
            # That cut may have gone through a word, maybe a token too little of which is
            # left to be recognised: where no word ends in its last 1 024 characters, and
            # also at a space or a control character of the raw text that is no word's
            # end once tidied (a space inside a tag or a comment, FS, US, VT, FF: gone).
            # What came before it shrank (invisible characters, markup, a long secret's
            # marker) and brought the last word within reach of the kept part: it is left
            # out, whole or not (the raw text cannot tell).
            shorter = _without_cut_run(text)
            if shorter != text:
                # A word after "password:" left as prose may have lost the words it went
                # on with: alone at the end now, it is redacted, as a second pass would.
                shorter = self._redact(shorter, scope)
            text = shorter
        if len(text) > self.policy.max_summary_chars:
            text = self._cut(text, self.policy.max_summary_chars)
            scope.flag("truncated:summary")
        return text, notes.render()

    def _cut(self, text: str, limit: int) -> str:
        """``text`` cut to ``limit`` (:func:`_truncate`), read by a second pass as by this one.

        The cut mark glued to a word reads as a cut through it (:data:`_PROSE_VALUE`):
        a word after ``password:`` left as prose, kept last, would be redacted by the
        next pass. A space goes before the mark then (``token: required …``): the cut
        was at the word's end, and it reads so.
        """
        cut = _truncate(text, limit)
        if cut == text or self._secret_detector.search(cut) is None:
            return cut
        quiet = _Scope(_Notes(), "")
        if self._redact(cut, quiet) == cut:
            return cut
        spaced = cut[:-1] + " " + ELLIPSIS
        if len(spaced) <= limit and self._redact(spaced, quiet) == spaced:
            return spaced
        return cut

    def html_to_text(self, text: str) -> str:
        """HTML as plain text, the way ``sanitisedSummary`` converts it (no other stage).

        For native connectors whose source text is HTML (an email's only body
        part): they keep readable text in ``raw`` instead of markup.

        A lone surrogate (a body declared UTF-7 or ``unicode_escape`` decodes
        into one) becomes U+FFFD first, as an undecodable byte does: RE2, which
        reads UTF-8, cannot search text that holds one.
        """
        if not text.isascii():
            text = _LONE_SURROGATE.sub("\ufffd", text)
        return self._strip_html(text, _Scope(_Notes(), ""))

    # ---------------------------------------------------------------- text stages

    def _tidy(self, text: str, scope: _Scope) -> str:
        if not self._has_hidden(text):  # the common case: one scan
            return text
        unified = text
        for newline in _NEWLINES:
            unified = unified.replace(newline, "\n")
        if unified != text:
            scope.flag("newlines_normalised")
            text = unified
        for note, pattern in (
            ("control_chars_removed", self._control),
            ("invisible_chars_removed", self._invisible),
            ("bidi_controls_removed", self._bidi),
        ):
            text, removed = pattern.subn("", text)
            scope.count(note, removed)
        text, removed = _without_stray_joiners(text)
        scope.count("invisible_chars_removed", removed)
        return text

    def _nfkc(self, text: str, scope: _Scope) -> str:
        """NFKC, except that ``…`` is kept: our own truncation mark must survive a second pass."""
        if unicodedata.is_normalized("NFKC", text):
            return text
        normal = ELLIPSIS.join(unicodedata.normalize("NFKC", part) for part in text.split(ELLIPSIS))
        if normal != text:
            scope.flag("unicode_normalised")
        return normal

    def _strip_html(self, text: str, scope: _Scope) -> str:
        """HTML to plain text, repeated while entities decode into more markup.

        Escaped markup (``&lt;b&gt;``) decodes into markup, so one pass would
        leave work, and perhaps a token split by a tag, for the next sanitiser.
        Past ``max_html_passes`` (hostile nesting like ``&amp;amp;amp;lt;``) what
        still looks like markup is defused with a space, so the result is
        stable all the same.
        """
        stripped_any = False
        for _ in range(self.policy.max_html_passes):
            if self._html_gate.search(text) is None:
                break
            spaced = self._line_break.sub(lambda m: "\n" + m.group(0), text)
            spaced = self._cell_break.sub(lambda m: " " + m.group(0), spaced)
            plain = html.unescape(self._html.clean(spaced))
            # Decoded entities are tidied (a hidden character is worth a note) and
            # normalised quietly: an &nbsp; becoming a space is part of "to plain text".
            plain = self._collapse(self._nfkc(self._tidy(plain, scope), _Scope(_Notes(), "")))
            if plain == text:
                break
            text, stripped_any = plain, True
        else:
            text = self._html_gate.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)
        if stripped_any:
            scope.flag("html_stripped")
        return text

    def _collapse(self, text: str) -> str:
        text = self._spaces.sub(" ", text)
        text = self._line_edges.sub("\n", text)
        return self._blank_lines.sub("\n\n", text).strip()

    def _redact(self, text: str, scope: _Scope) -> str:
        if self._secret_detector.search(text) is None:
            return text
        for rule in self._secrets:
            text, hits = rule.redact(text)
            if hits:
                scope.flag(f"redacted:{rule.kind}")
        return text

    def _is_secret_field(self, key: str) -> bool:
        known = self._secret_key_cache.get(key)
        if known is None:
            known = key.lower().replace("-", "").replace("_", "") in self._secret_fields
            if len(self._secret_key_cache) < 4096:  # keys repeat across signals; bound it
                self._secret_key_cache[key] = known
        return known

    def _neutralise(self, text: str, scope: _Scope) -> str:
        if self._injection_detector.search(text) is None:
            return text
        for rule in self._injections:
            text, found = rule.neutralise(text)
            if found:
                scope.flag(f"injection_neutralised:{rule.kind}")
        return text


class _FieldPass:
    """One walk over the fields a screen or a model may show besides the summary.

    Run first with ``redact=False``: it tidies every string and keeps them, so a
    single detector scan over all of them says whether any secret rule can
    match. Only then (rarely) is the walk repeated with redaction, which keeps
    the common case at one RE2 call per signal instead of one per string.
    """

    def __init__(self, sanitiser: Sanitiser, *, redact: bool) -> None:
        policy = sanitiser.policy
        self._s = sanitiser
        self._policy = policy
        self._redact = redact
        self.notes = _Notes()
        self.seen: list[str] = []
        self._items_left = policy.max_raw_items
        self._chars_left = policy.max_raw_total_chars
        self._summary = _Scope(self.notes, "summary:")
        self._raw = _Scope(self.notes, "raw:")
        self._metadata = _Scope(self.notes, "metadata:")

    def needs_redaction(self) -> bool:
        # Strings are joined by a line break, which no rule needs and ``\b``
        # treats like a text edge, so a match in any one string is a match in
        # the join (see ``Sanitiser._unchanged`` on anchors).
        return self._s._secret_detector.search("\n".join(self.seen)) is not None

    def _text(self, text: str, scope: _Scope) -> str:
        text = self._s._tidy(text, scope)
        if self._redact:
            return self._s._redact(text, scope)
        self.seen.append(text)
        return text

    def summary(self, text: str) -> str:
        text = self._text(text, self._summary)
        if len(text) > SUMMARY_MAX_CHARS:
            self.notes.flag("truncated:summary_field")
            text = self._s._cut(text, SUMMARY_MAX_CHARS)
        return text

    def metadata(self, metadata: SignalMetadata | None) -> SignalMetadata | None:
        if metadata is None:
            return None
        return metadata.model_copy(
            update={
                "participants": self._metadata_list(metadata.participants),
                "related_tickets": self._metadata_list(metadata.related_tickets),
                "tags": self._metadata_list(metadata.tags),
            }
        )

    def _metadata_list(self, values: list[str]) -> list[str]:
        """The list scrubbed and bounded: a path may pick any list out of a payload, and
        an unbounded one made signals no store keeps (DynamoDB: 400 KB an item)."""
        items, chars = self._policy.max_metadata_items, self._policy.max_metadata_chars
        if len(values) > items:
            self.notes.flag("truncated:metadata")
            values = values[:items]
        kept = []
        for value in values:
            # Scrubbed (and redacted) before the cut, so no secret is cut in two; cut
            # first to a few times the bound, so the redaction's work stays bounded too.
            # That cut must not leave half a token where the kept part can reach it, too
            # short for its shape to be recognised: it is made once the text is tidied
            # (a linear pass; invisible and control characters before it moved it into
            # the kept part), and at a word's end (a redaction marker is shorter than a
            # long secret before it, a JWT's).
            cut = through_word = False
            if len(value) > chars * 4:
                tidied = self._s._tidy(value, self._metadata)
                value = _words_within(tidied, chars * 4)
                cut = len(value) < len(tidied)
                through_word = (
                    cut and tidied[len(value)] not in _WORD_ENDS and value[-1:] not in _WORD_ENDS
                )
            text = self._text(value, self._metadata)
            if through_word and len(text) < 2 * chars:
                # A one-word entry is cut where the limit falls, maybe through a token too
                # little of which is left to be recognised. It stayed out of reach of the
                # kept part unless the redaction shortened what is before it (a long
                # secret's marker): then that word's remains are left out.
                text = _without_cut_run(text)
            # Measured after the scrub too: a redaction marker is longer than a short
            # secret ("pwd=a"), and an entry past the bound would be cut by the next
            # pass, so the result would be neither bounded nor stable.
            if cut or len(value) > chars or len(text) > chars:
                self.notes.flag("truncated:metadata")
                if len(text) > chars:
                    text = self._s._cut(text, chars)
                elif cut:  # a word left out whole may leave it within the bound
                    text = text[: chars - 1].rstrip() + ELLIPSIS
            kept.append(text)
        return kept

    def raw(self, value: dict[Any, Any], depth: int = 0) -> dict[Any, Any]:
        if depth >= self._policy.max_raw_depth:
            self.notes.flag("truncated:raw_depth")
            return {}
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if not self._take_item():
                break
            clean_key = self._raw_string(key) if isinstance(key, str) else key
            if clean_key in out:
                self._raw.flag("duplicate_key_dropped")
                continue
            # The name as stored decides, not as sent: "\x1faccess_token" or a full-width
            # "ＴＯＫＥＮ" is stored as a secret's name, so its value must be redacted too.
            if (
                isinstance(clean_key, str)
                and isinstance(item, str)
                and item
                and self._s._is_secret_field(clean_key)
            ):
                if not item.startswith("[REDACTED:"):
                    self._raw.flag("redacted:secret_field")
                out[clean_key] = self._charge(self._s._secret_field_marker)
            else:
                out[clean_key] = self._raw_value(item, depth + 1)
        return out

    def _raw_value(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self._raw_string(value)
        if isinstance(value, dict):
            return self.raw(value, depth)
        if isinstance(value, list | tuple):
            if depth >= self._policy.max_raw_depth:
                self.notes.flag("truncated:raw_depth")
                return []
            items = []
            for item in value:
                if not self._take_item():
                    break
                items.append(self._raw_value(item, depth + 1))
            return items
        return value  # numbers, booleans, None: nothing to hide

    def _raw_string(self, text: str) -> str:
        if self._chars_left <= 0:
            self.notes.flag("truncated:raw_total")
            return ""
        # Scrub the whole string before cutting it, so a cut never leaves half a secret.
        text = self._text(text, self._raw)
        limit = min(self._policy.max_raw_string_chars, self._chars_left)
        if len(text) > limit:
            text = self._s._cut(text, limit)
            if limit == self._policy.max_raw_string_chars:
                self.notes.count("truncated:raw_strings", 1)
            else:
                self.notes.flag("truncated:raw_total")
        return self._charge(text)

    def _charge(self, text: str) -> str:
        self._chars_left -= len(text)
        return text

    def _take_item(self) -> bool:
        if self._items_left <= 0:
            self.notes.flag("truncated:raw_items")
            return False
        self._items_left -= 1
        return True


_PROSE_ESCAPES: Final = (("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t"))
"""JSON escapes put back in a raw's text: line breaks and tabs, what issue bodies hold."""

_NOT_BRACKETS: Final = str.maketrans("", "", ",:0123456789+-.eEtrufalsn")
"""What JSON holds outside strings besides brackets (orjson writes no whitespace)."""


def _depth_at_most(text: str, limit: int) -> bool:
    """Whether the backslash-free JSON ``text`` nests fewer than ``limit`` containers deep
    below its outermost one, as the walk counts levels (the outermost is level 0).

    With no more brackets than ``limit`` that is plain. Otherwise the strings are
    dropped (every quote delimits one), then the brackets: each round removes the
    innermost ``{}`` then ``[]`` pairs, at most two levels, so the depth is at
    most twice the rounds it takes to remove them all.
    """
    if text.count("{") + text.count("[") <= limit:
        return True
    brackets = "".join(text.split('"')[::2]).translate(_NOT_BRACKETS)
    rounds = 0
    while brackets:
        fewer = brackets.replace("{}", "").replace("[]", "")
        rounds += 1
        if fewer == brackets or 2 * rounds > limit:
            return False
        brackets = fewer
    return True


def _signal_model() -> type[NormalisedSignal]:
    """The signal model, imported by the first signal that takes the full path: the fast
    path works on wire objects, so a process whose signals all pass it (a Lambda API
    function's first delivery) loads neither the models nor, for them, pydantic."""
    from ucf.core.signal import NormalisedSignal

    return NormalisedSignal


def _as_sanitised(wire: dict[str, Any]) -> dict[str, Any]:
    """A copy of a wire object the fast path proved clean, with the sanitiser's fields."""
    out = dict(wire)
    out["sanitised"] = True
    out["sanitisedSummary"] = wire["summary"]
    out["sanitisationNotes"] = []
    return out


def _collect_plain(
    value: dict[Any, Any], into: list[str], sanitiser: Sanitiser, depth: int, budget: list[int]
) -> bool:
    """Gather the strings of ``raw`` (keys too); False at anything the walk would change.

    That is: depth or item limits, an over-long string, a non-empty string
    under a secret-named key. ``budget`` is the remaining item count, shared.
    """
    if depth >= sanitiser.policy.max_raw_depth:
        return False
    limit = sanitiser.policy.max_raw_string_chars
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        node, level = stack.pop()
        if level >= sanitiser.policy.max_raw_depth:
            return False
        if isinstance(node, dict):
            pairs: Any = node.items()
        else:
            pairs = ((None, item) for item in node)
        for key, item in pairs:
            budget[0] -= 1
            if budget[0] < 0:
                return False
            if isinstance(key, str):
                if len(key) > limit:
                    return False
                into.append(key)
            if isinstance(item, str):
                if len(item) > limit:
                    return False
                if item and isinstance(key, str) and sanitiser._is_secret_field(key):
                    return False
                into.append(item)
            elif isinstance(item, dict | list | tuple):
                stack.append((item, level + 1))
    return True


_DEFAULT = Sanitiser()


def sanitise(signal: NormalisedSignal) -> SanitisedSignal:
    """Sanitise with the default policy."""
    return _DEFAULT.sanitise(signal)


def without_invisible(text: str) -> str:
    """``text`` without the characters the sanitiser removes as shown as nothing:
    invisible (zero-width, tags, soft hyphen…) and bidi-control characters, and joiners
    and variation selectors that join or select nothing (:func:`_without_stray_joiners`).

    For the log filter (:mod:`ucf.runtime.redaction`), so that a token split by a
    U+200B, hidden in a log line exactly as in a signal, is seen whole by its rules.
    Controls and line breaks are left: a log line's are its own business.
    """
    if text.isascii() or _shown_as_nothing().isdisjoint(text):  # nearly every line
        return text
    _, _, invisible, bidi = _character_classes()
    return _without_stray_joiners(bidi.sub("", invisible.sub("", text)))[0]


@functools.cache
def _shown_as_nothing() -> frozenset[str]:
    """Every character :func:`without_invisible` may remove (about 4 200), so one pass over
    a line says it has none: the three removal passes cost about three times as much on
    every non-ASCII line, and a class scan with ``re`` half as much again."""
    ranges = (*_format_characters(), *_EXTRA_INVISIBLE_RANGES, *_BIDI_RANGES, *_JOINER_RANGES)
    return frozenset(chr(point) for low, high in ranges for point in range(low, high + 1))


def html_to_text(text: str) -> str:
    """HTML as plain text with the default policy (see :meth:`Sanitiser.html_to_text`)."""
    return _DEFAULT.html_to_text(text)
