"""Logs never contain credentials: each way a secret reaches a log line is masked."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.secret_examples import SHAPE_EXAMPLES
from ucf.core.sanitiser import without_invisible
from ucf.fakes import FakeResponse, FakeServer
from ucf.runtime.http import HttpSettings, create_client
from ucf.runtime.redaction import (
    HTTP_LIBRARY_LOGGERS,
    MASK,
    RedactionFilter,
    SecretRegistry,
    _literal,
    _rules,
    install_redaction,
    mask,
    redact,
    url_forms,
)
from ucf.runtime.ssrf import EgressPolicy

GITHUB_PAT = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK_BOT = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
LINEAR_KEY = "lin_api_" + "0123456789abcdefghijABCDEFGHIJ0123456789"
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Authorization: Bearer opaque-token-0123456789", "opaque-token-0123456789"),
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("DD-API-KEY: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
        ("DD-APPLICATION-KEY: fedcba9876543210fedcba98", "fedcba9876543210fedcba98"),
        ("X-Api-Key: k-1234567890abcdef", "k-1234567890abcdef"),
        ("Cookie: session=abcdef1234567890", "session=abcdef1234567890"),
        ("{'Authorization': 'token abcdef1234567890', 'Accept': 'x'}", "abcdef1234567890"),
        ("[(b'Set-Cookie', b'sid=0123456789abcdef; Path=/')]", "sid=0123456789abcdef"),
        (
            "GET https://api.trello.com/1/boards?key=trellokey1234567890&token=ATTA0123456789abcdef",
            "trellokey1234567890",
        ),
        (
            "GET https://api.trello.com/1/boards?key=trellokey1234567890&token=ATTA0123456789abcdef",
            "ATTA0123456789abcdef",
        ),
        ("GET /x?api_key=abc123def456ghi789&page=2", "abc123def456ghi789"),
        ("GET /x?apiKey=abc123def456ghi789", "abc123def456ghi789"),
        ("GET /x?access_token=abc123def456ghi789", "abc123def456ghi789"),
        (
            "POST body grant_type=refresh_token&refresh_token=r0123456789abc&client_secret=cs0123456789",
            "r0123456789abc",
        ),
        (
            "POST body grant_type=refresh_token&refresh_token=r0123456789abc&client_secret=cs0123456789",
            "cs0123456789",
        ),
        ("GET /s3?X-Amz-Signature=deadbeef0123456789&X-Amz-Credential=AKIDX", "deadbeef0123456789"),
        ("GET /x?password=hunter2", "hunter2"),
        (
            "GET /login?next=%2Fcb%3Fclient_secret%3DAbcdefgh12345678Xyz%26state%3Dabc",
            "Abcdefgh12345678Xyz",
        ),
        ("redirect_uri=https%3A%2F%2Fa.test%2Fcb%3Fx%3D1%26api_key%3Dsk_abcdef123456", "sk_abcdef"),
        (
            'token response {"access_token": "at-0123456789abcdef", "expires_in": 3600}',
            "at-0123456789abcdef",
        ),
        ("connecting to https://svc:p4ssw0rd@db.example.com/x", "p4ssw0rd"),
        (f"using {GITHUB_PAT} for octo", GITHUB_PAT),
        (f"slack said {SLACK_BOT}", SLACK_BOT),
        (f"linear {LINEAR_KEY}", LINEAR_KEY),
        (f"aws {AWS_KEY} in env", AWS_KEY),
        ("bearer abcdefghijklmnop0123", "abcdefghijklmnop0123"),
    ],
)
def test_secret_is_masked(line: str, secret: str) -> None:
    redacted = redact(line, SecretRegistry())
    assert secret not in redacted
    assert MASK in redacted


@pytest.mark.parametrize("kind", sorted(SHAPE_EXAMPLES))
def test_every_provider_secret_shape_is_masked_in_logs(kind: str) -> None:
    secret = SHAPE_EXAMPLES[kind]
    redacted = redact(f"upstream said {secret} in an error", SecretRegistry())
    assert secret not in redacted
    assert redacted == f"upstream said {mask(secret)} in an error"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (
            "GET https://a.test/?u=https%3A%2F%2Fb%2F%3Fnext%3Dhttps%253A%252F%252Fc%252F"
            "%253Fpassword%253Dhunter2%2526x%253D1",
            "hunter2",
        ),
        (
            "GET https://a.test/?u=https%3A%2F%2Fb%2F%3Fnext%3D%252Fcb%253Faccess_token%253D"
            "Abcdefgh12345678xyz%2526state%253Dabc",
            "Abcdefgh12345678",
        ),
        # Signed URLs and long URL passwords were masked in logs already; kept so.
        ("GET /c/b?sv=2019-02-02&sr=b&sig=Z%2FRHIX5Xcg0Mq2rqI3OlWTjEg2tYkboXr1P9ZUX", "Z%2FRHIX"),
        ("GET /k?X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr%2F%2F%2F%2Fw", "IQoJb3JpZ2lu"),
        ("GET /k?x-goog-signature=11ae9c61ca84dd0bec319f7d52a38029e5873caa", "11ae9c61ca84dd"),
        (
            "GET /o?X-Goog-Credential=GOOG1EZ6C3Q4R4CKJHXY7WLJ2N5MPPA3UF2K4VB%2F20181026%2Fauto",
            "GOOG1EZ6C3Q4",
        ),
        (
            "GET /o?X-Goog-Credential=example%40example-project.iam.gserviceaccount.com%2F2018",
            "example-project.iam",
        ),
        ("GET /c/b?sp=r&sig=Xk3%ZZ9mQ0vBx7Lp2sT4uYw8zR1nE%3D", "Xk3%ZZ9mQ0"),
        ("GET /c/b?sp=r&sig=abc%ZZdef&x=1", "abc%ZZdef"),
        ("clone https://deploy:" + "Xy7" * 100 + "@git.example.com/r.git", "Xy7Xy7"),
    ],
)
def test_a_secret_in_a_url_nested_twice_or_a_signed_url_is_masked(line: str, secret: str) -> None:
    """A URL in a URL in a query escapes its "?", "&" and "=" twice (%253F, %2526, %253D):
    no rule saw a parameter there, and the value was logged whole."""
    redacted = redact(line, SecretRegistry())

    assert secret not in redacted
    assert MASK in redacted


@pytest.mark.parametrize("hidden", ["\u200b", "\u2060", "\ufeff", "\u00ad", "\u202e", "\ufe0f"])
def test_a_secret_split_by_an_invisible_character_is_masked_whole(hidden: str) -> None:
    """A token or a parameter name split by a character shown as nothing was seen by no
    rule (or by one up to the split only): the sanitiser removes them from signals, the
    log filter did not, and the line showed the secret whole to whoever read it."""
    token = GITHUB_PAT[:20] + hidden + GITHUB_PAT[20:]
    lines = [
        f"upstream said {token} in an error",
        f"GET /x?pass{hidden}word=hunter2&page=2",
        f"Author{hidden}ization: Bearer opaque-token-0123456789",
    ]

    redacted = [redact(line, SecretRegistry()) for line in lines]

    assert redacted == [
        f"upstream said {mask(GITHUB_PAT)} in an error",
        f"GET /x?password={MASK}&page=2",
        f"Authorization: {MASK}6789",
    ]


def test_a_log_line_keeps_the_joiners_of_emoji_and_words_that_need_them() -> None:
    line = "deploy by 👩\u200d💻 in کتاب\u200cها ❤\ufe0f"

    assert redact(line, SecretRegistry()) == line


@pytest.mark.parametrize(
    "line",
    [
        'HTTP Request: GET https://api.github.com/repos/o/r/issues?page=2&per_page=100 "HTTP/1.1 200 OK"',
        "token endpoint returned 500; basic authentication disabled",
        "polled 240 items in 3 pages (rate-limit waits: 1)",
        "x-ratelimit-reset: 1700000000",
    ],
)
def test_ordinary_log_lines_are_left_alone(line: str) -> None:
    assert redact(line, SecretRegistry()) == line


def test_mask_keeps_last_four_of_long_secrets_only() -> None:
    assert mask("0123456789abcdef") == f"{MASK}cdef"
    assert mask("short-pw") == MASK
    assert mask(f"{MASK}cdef") == f"{MASK}cdef"  # masking twice changes nothing
    assert mask(f"{MASK}0123456789abcdef") == f"{MASK}cdef"  # only looks masked


def test_registered_secret_is_masked_wherever_it_appears() -> None:
    registry = SecretRegistry()
    registry.add("plain-looking-credential-42")
    registry.add("pw")  # too short to mask safely: ignored rather than mangling prose
    text = "upstream echoed plain-looking-credential-42 back; pw ok"
    assert redact(text, registry) == f"upstream echoed {MASK}l-42 back; pw ok"


def test_short_registered_secret_is_masked_completely() -> None:
    registry = SecretRegistry()
    registry.add("s3cret!")
    assert redact("value=s3cret! end", registry) == f"value={MASK} end"


def test_a_short_registered_secret_is_masked_as_a_whole_word_only() -> None:
    """A password ``test`` leaks when a line quotes it, not when a line says ``tests``."""
    registry = SecretRegistry()
    registry.add("client")
    registry.add("test")
    registry.add("#s3!")
    line = "login as client with test: 3 clients, client_id=x, tests/unit, retest"
    assert redact(line, registry) == (
        f"login as {MASK} with {MASK}: 3 clients, client_id=x, tests/unit, retest"
    )
    assert redact("secret(test) 'client' [#s3!] x#s3!y", registry) == (
        f"secret({MASK}) '{MASK}' [{MASK}] x{MASK}y"
    )


def test_a_short_registered_secret_is_masked_after_an_escape_that_ends_in_a_letter() -> None:
    """``%22`` (a quote in a logged URL) and ``\\n`` (a newline in logged JSON) end in a
    word character, but the secret after them is still a word of its own."""
    registry = SecretRegistry()
    registry.add("hunter2")
    url = "GET /search?q=%7B%22pw%22%3A%22hunter2%22%7D and /path%2Fhunter2"
    assert (
        redact(url, registry) == f"GET /search?q=%7B%22pw%22%3A%22{MASK}%22%7D and /path%2F{MASK}"
    )
    assert redact('{"note": "first\\nhunter2\\thunter2"}', registry) == (
        f'{{"note": "first\\n{MASK}\\t{MASK}"}}'
    )
    assert redact("nhunter2 %hunter2s xhunter2", registry) == "nhunter2 %hunter2s xhunter2"


def test_a_long_registered_secret_is_masked_even_inside_a_word() -> None:
    registry = SecretRegistry()
    registry.add("123456789:AAbbCCddEEff")
    assert redact("GET /bot123456789:AAbbCCddEEffx/getUpdates", registry) == (
        f"GET /bot{MASK}EEffx/getUpdates"
    )


def test_a_value_found_after_another_that_fails_its_word_rule_is_masked() -> None:
    """``abcd`` occurs first but inside a word; the long value starting in it is masked."""
    registry = SecretRegistry()
    registry.add("abcd")
    registry.add("cdefghijklmnop")
    assert redact("xabcdefghijklmnop", registry) == f"xab{MASK}mnop"


def test_values_added_after_the_set_was_built_are_masked_before_and_after_it_is_rebuilt() -> None:
    registry = SecretRegistry()
    registry.add("first-credential-value-000")
    assert redact("x first-credential-value-000", registry) == f"x {MASK}-000"
    added = [f"later-credential-value-{n:03d}" for n in range(150)]  # past two rebuilds
    for number, value in enumerate(added):
        registry.add(value)
        assert redact(f"y {value} z", registry) == f"y {MASK}{value[-4:]} z", number
    line = " ".join(["first-credential-value-000", *added])
    assert "credential-value" not in redact(line, registry)


def test_a_line_with_a_lone_surrogate_is_still_searched() -> None:
    registry = SecretRegistry()
    registry.add("plain-looking-credential-42")
    assert redact("\ud800 plain-looking-credential-42", registry) == f"\ud800 {MASK}l-42"


_ALPHABET = "ab-_%2\\n é"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(_ALPHABET, min_size=4, max_size=14), max_size=8),
    st.text(_ALPHABET, max_size=60),
)
def test_the_registry_masks_what_one_pattern_of_every_value_masks(
    values: list[str], text: str
) -> None:
    """The RE2 set only narrows the values to those present; masking is the word rules'
    pattern over every registered value, as before the set."""
    registry = SecretRegistry()
    for value in values[: len(values) // 2]:
        registry.add(value)
    registry.redact("")  # the set is built: the values added next are looked for one by one
    for value in values[len(values) // 2 :]:
        registry.add(value)
    longest_first = sorted(set(values), key=len, reverse=True)
    expected = (
        re.compile("|".join(_literal(v) for v in longest_first)).sub(
            lambda m: mask(m.group(0)), text
        )
        if longest_first
        else text
    )
    assert registry.redact(text) == expected


def test_a_line_found_clean_is_masked_once_its_secret_is_registered() -> None:
    """Lines with nothing to mask are remembered (access lines repeat); a new secret forgets."""
    registry = SecretRegistry()
    line = "POST /hooks/a 200 via relay-credential-0042"
    assert redact(line, registry) == line
    assert line in registry.clean
    registry.add("relay-credential-0042")
    assert redact(line, registry) == f"POST /hooks/a 200 via {MASK}0042"


def test_a_line_with_a_secret_is_never_remembered() -> None:
    registry = SecretRegistry()
    registry.add("plain-looking-credential-42")
    for line in ("x plain-looking-credential-42", f"Authorization: Bearer {GITHUB_PAT}"):
        assert redact(line, registry) != line
        assert redact(line, registry) != line
    assert registry.clean == set()


def test_redaction_is_idempotent() -> None:
    line = f"Authorization: Bearer {GITHUB_PAT} GET /x?token=abc0123456789xyz"
    once = redact(line, SecretRegistry())
    assert redact(once, SecretRegistry()) == once


# --------------------------------------------------------------------------- logging


@pytest.fixture
def clean_filters() -> Iterator[None]:
    """Install redaction for one test, then put every logger/handler back as it was."""
    places = [logging.getLogger(), *logging.getLogger().handlers]
    places += [logging.getLogger(name) for name in HTTP_LIBRARY_LOGGERS]
    before = {id(p): list(p.filters) for p in places}
    yield
    for place in [logging.getLogger(), *logging.getLogger().handlers, *places]:
        if id(place) in before:
            place.filters[:] = before[id(place)]
        else:
            place.filters[:] = [f for f in place.filters if not isinstance(f, RedactionFilter)]


def test_filter_redacts_message_args_and_traceback(
    caplog: pytest.LogCaptureFixture, clean_filters: None
) -> None:
    logger = logging.getLogger("ucf.test.redaction")
    registry = SecretRegistry()
    registry.add("registered-secret-value-1234")
    install_redaction(logger, registry)
    with caplog.at_level(logging.INFO, logger="ucf.test.redaction"):
        logger.info(
            "calling %s with %s",
            "https://x/?token=abcdef0123456789",
            "registered-secret-value-1234",
        )
        try:
            raise RuntimeError(f"upstream rejected {GITHUB_PAT}")
        except RuntimeError:
            logger.exception("poll failed")
    assert "abcdef0123456789" not in caplog.text
    assert "registered-secret-value-1234" not in caplog.text
    assert GITHUB_PAT not in caplog.text
    assert "RuntimeError: upstream rejected" in caplog.text  # the traceback survived, masked
    assert "calling https://x/?token=" in caplog.text


async def test_httpx_and_httpcore_logs_go_through_redaction(
    caplog: pytest.LogCaptureFixture, clean_filters: None
) -> None:
    install_redaction()
    with FakeServer() as server:
        server.add_route(
            "GET",
            "/1/boards",
            lambda _: FakeResponse.json([], headers={"Set-Cookie": "dsc=cookie0123456789abcdef"}),
        )
        with (
            caplog.at_level(logging.DEBUG, logger="httpx"),
            caplog.at_level(logging.DEBUG, logger="httpcore"),
        ):
            policy = EgressPolicy(frozenset({"127.0.0.1"}))
            async with create_client(HttpSettings(), policy) as client:
                await client.get(
                    server.url("/1/boards?key=trellokey1234567890&token=ATTAtoken0123456789"),
                    headers={"Authorization": f"Bearer {GITHUB_PAT}"},
                )
    text = caplog.text
    assert "HTTP Request: GET" in text  # httpx's INFO line was captured…
    assert "receive_response_headers" in text  # …and httpcore's DEBUG traces
    for secret in (
        "trellokey1234567890",
        "ATTAtoken0123456789",
        "cookie0123456789abcdef",
        GITHUB_PAT,
    ):
        assert secret not in text


def test_installing_twice_adds_one_filter(clean_filters: None) -> None:
    logger = logging.getLogger("ucf.test.twice")
    first = install_redaction(logger)
    second = install_redaction(logger)
    assert first is second
    assert sum(isinstance(f, RedactionFilter) for f in logger.filters) == 1
    assert sum(isinstance(f, RedactionFilter) for f in logging.getLogger("httpx").filters) == 1


def test_secret_registry_stays_bounded_and_keeps_the_newest_values() -> None:
    from ucf.runtime.redaction import SecretRegistry

    registry = SecretRegistry(capacity=3)
    for n in range(5):
        registry.add(f"rotated-token-{n:04d}")
    assert len(registry) == 3
    assert registry.redact("rotated-token-0000") == "rotated-token-0000"  # evicted
    assert "rotated-token-0004" not in registry.redact("x rotated-token-0004 y")


_PIECES = [
    *SHAPE_EXAMPLES.values(),
    *(example[: len(example) // 2] for example in SHAPE_EXAMPLES.values()),
    "Bearer ",
    "Basic ",
    "token=",
    "?api_key=",
    "&Client_Secret=",
    "\u212aEY=",  # KELVIN SIGN: case-folds to k in both Python's re and RE2
    "ſig=",  # LATIN SMALL LETTER LONG S folds to s
    "state=all&",
    "https://user:pass@",
    "Authorization: ",
    "'authorization': '",
    "(b'set-cookie', b'",
    '"password": "',
    "é",
    "ß",
    "_",
    "-",
    " ",
    "\ud800",
    "\n",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=6)), max_size=12))
def test_skipping_rules_that_cannot_match_changes_nothing(parts: list[str]) -> None:
    """Each rule runs only when its cheap test (a literal, or RE2 for the token shapes)
    says it can match: the answer is the one every rule run on every text gives."""
    text = "".join(parts)
    reference = without_invisible(text)  # as redact reads it: see its docstring
    for pattern, replace, _possible in _rules():
        reference = pattern.sub(replace, reference)
    assert redact(text, SecretRegistry()) == reference


def test_a_poll_url_compiles_only_the_rules_its_cheap_tests_let_through() -> None:
    """Each rule's pattern is compiled when a text first needs it: a page URL (a cold
    start's first redaction) compiles the header-line rule alone, not all nine."""
    probe = (
        "from ucf.runtime.redaction import _rules, redact\n"
        "url = 'https://api.example.com/issues?state=all&per_page=100&since=2026-12-01T00:00:00Z'\n"
        "assert redact(url) == url\n"
        "print(sum(rule[0]._compiled is not None for rule in _rules()), len(_rules()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.split() == ["1", "9"]


def test_a_registered_value_with_a_lone_surrogate_does_not_break_later_lines() -> None:
    """JSON can carry ``"\\ud800"`` into a credential; RE2 cannot index it. Building the
    set with it raised, and the set is built again by the next line: every log line of
    the process raised from then on."""
    registry = SecretRegistry()
    registry.add("\ud800-typed-into-a-try-out")
    for n in range(70):  # past a rebuild of the set
        registry.add(f"later-credential-value-{n:03d}")
    line = "a \ud800-typed-into-a-try-out b later-credential-value-069 c"
    assert redact(line, registry) == f"a {MASK}-out b {MASK}-069 c"
    assert redact("an ordinary line", registry) == "an ordinary line"


def test_a_registered_value_is_masked_in_the_forms_a_url_carries_it() -> None:
    """A key sent as ``?access=…`` goes out percent-encoded, and httpx logs that URL: the
    typed text alone was never found in the line."""
    registry = SecretRegistry()
    secret = "Zm9v+YmFy/cXV4==&p@ss word"
    registry.add(secret)
    for form in (
        quote_plus(secret),
        quote(secret, safe=""),
        quote(secret),
        quote(secret, safe="!$&'()*+,;=:@/"),
    ):
        line = f"HTTP Request: GET https://api.example/x?since=1&access={form} 401"
        assert form not in redact(line, registry)
        assert redact(line, registry).startswith("HTTP Request: GET https://api.example/x?since=1&")
    assert redact("nothing secret here", registry) == "nothing secret here"


def test_a_value_lent_to_a_try_out_is_masked_while_it_runs_and_forgotten_after() -> None:
    """Typed into a try-out or a connection test: masked in every line while it runs, in
    its URL forms too; afterwards the word is prose again and the registry as it was."""
    registry = SecretRegistry()
    registry.add("stored-instance-token-0001")
    with registry.lent():
        registry.add("quartz")
        registry.add("typed key+/with=escapes-0123")
        assert registry.redact("a quartz clock") == f"a {MASK} clock"
        assert "escapes" not in registry.redact(
            f"GET /x?k={quote_plus('typed key+/with=escapes-0123')}"
        )
    assert registry.redact("a quartz clock") == "a quartz clock"
    assert len(registry) == len(url_forms("stored-instance-token-0001"))
    assert MASK in registry.redact("x stored-instance-token-0001 y")


def test_values_lent_to_try_outs_never_evict_a_stored_instances_value() -> None:
    """The registry keeps at most ``capacity`` values, the oldest going first. A value
    lent to a try-out counted toward it: with the registry full of stored instances'
    values (a long-running server's is), each typed value evicted the oldest of them,
    which stayed unmasked after the try-out gave its own back, until the secret store
    handed it out again (a gateway caches an instance's secrets, a poll in progress
    holds its credentials)."""
    registry = SecretRegistry(capacity=4)
    stored = [f"stored-instance-token-{n:04d}" for n in range(4)]
    for value in stored:
        registry.add(value)
    with registry.lent():
        for n in range(3):
            registry.add(f"typed-in-the-editor-{n:04d}")
        assert all(MASK in registry.redact(value) for value in stored)
        assert MASK in registry.redact("typed-in-the-editor-0002")

    assert all(MASK in registry.redact(value) for value in stored)
    assert registry.redact("typed-in-the-editor-0002") == "typed-in-the-editor-0002"
    assert len(registry) == 4
    registry.add("stored-instance-token-0004")  # a stored value still makes room
    assert registry.redact(stored[0]) == stored[0]
    assert MASK in registry.redact("stored-instance-token-0004")


def test_a_lent_value_given_back_after_the_set_was_built_is_no_longer_masked() -> None:
    """Found through the RE2 set (built by a line inside the block), not the recent list."""
    registry = SecretRegistry()
    with registry.lent():
        registry.add("garnet")
        assert registry.redact("a garnet ring") == f"a {MASK} ring"
        for n in range(70):  # past a rebuild of the set, which then holds "garnet"
            registry.add(f"lent-credential-value-{n:03d}")
        assert registry.redact("a garnet ring") == f"a {MASK} ring"
    assert registry.redact("a garnet ring lent-credential-value-069") == (
        "a garnet ring lent-credential-value-069"
    )
    assert len(registry) == 0


def test_a_value_also_used_outside_the_try_out_stays_masked() -> None:
    """An instance's poll uses the same token as the try: the try's end must not unmask it,
    whichever registered it first."""
    registry = SecretRegistry()
    registry.add("kept-before-the-try-0001")
    with registry.lent():
        registry.add("kept-before-the-try-0001")
        registry.add("used-by-a-poll-meanwhile-0002")
        registry.add("used-by-a-poll-meanwhile-0002")  # twice in the block: one loan
        with registry.lent():  # another try-out lending the same value
            registry.add("used-by-a-poll-meanwhile-0002")
        assert MASK in registry.redact("used-by-a-poll-meanwhile-0002")  # the first still runs
    assert registry.redact("used-by-a-poll-meanwhile-0002") == "used-by-a-poll-meanwhile-0002"
    with registry.lent():
        registry.add("used-by-a-poll-meanwhile-0002")
        registry.add("kept-added-outside-too-0003")
        async_poll = threading.Thread(target=registry.add, args=("kept-added-outside-too-0003",))
        async_poll.start()  # another thread: outside the block's context
        async_poll.join()
    assert registry.redact("kept-before-the-try-0001") != "kept-before-the-try-0001"
    assert registry.redact("kept-added-outside-too-0003") != "kept-added-outside-too-0003"
    assert registry.redact("used-by-a-poll-meanwhile-0002") == "used-by-a-poll-meanwhile-0002"


def test_a_lent_value_that_is_stored_after_all_is_kept_when_the_block_ends() -> None:
    """A typed connection test that refreshes the instance's stored OAuth tokens stores
    the new ones: they are the instance's, masked after the test as before it."""
    registry = SecretRegistry()
    with registry.lent():
        registry.add("refreshed-access-token+/0005")
        registry.add("typed-draft-value-0006")
        registry.keep(["refreshed-access-token+/0005", "2030-01-01T00:00:00+00:00"])
    assert MASK in registry.redact("a refreshed-access-token+/0005 b")
    assert "refreshed" not in registry.redact(f"?t={quote_plus('refreshed-access-token+/0005')}")
    assert registry.redact("typed-draft-value-0006") == "typed-draft-value-0006"
    assert registry.redact("at 2030-01-01T00:00:00+00:00") == "at 2030-01-01T00:00:00+00:00"


async def test_a_task_the_try_out_starts_lends_through_it() -> None:
    registry = SecretRegistry()

    async def auth_flow() -> None:
        registry.add("sent-by-a-child-task-0004")

    with registry.lent():
        await asyncio.create_task(auth_flow())
        assert MASK in registry.redact("sent-by-a-child-task-0004")
    assert len(registry) == 0


def test_a_value_lent_to_a_block_that_raises_stays_masked_in_the_error_logged_after_it() -> None:
    """An error out of a try-out or a connection test (a native connector's, a bug's) is
    logged by the web layer once the block has ended: a typed value it quotes was given
    back by then and reached the log line in clear. Such a block's values are kept."""
    registry = SecretRegistry()

    def failing_try() -> None:
        with registry.lent():
            registry.add("typed-for-a-failing-try-0005")
            raise RuntimeError("the upstream refused typed-for-a-failing-try-0005")

    with pytest.raises(RuntimeError) as raised:
        failing_try()
    assert "typed-for-a-failing-try-0005" not in registry.redact(str(raised.value))
    with registry.lent():  # another try lends it again: still kept after it
        registry.add("typed-for-a-failing-try-0005")
    assert "typed-for-a-failing-try-0005" not in registry.redact(str(raised.value))


def test_a_kept_value_that_is_a_url_form_of_a_lent_one_stays_masked_after_the_loan() -> None:
    """A stored credential ``a%2Bb…`` (a key handed out already percent-encoded) is the
    URL form of a typed ``a+b…``: giving the typed one back unregistered the stored one."""
    registry = SecretRegistry()
    registry.add("stored%2Bkey-0006")
    with registry.lent():
        registry.add("stored+key-0006")
    assert registry.redact("GET /x?k=stored%2Bkey-0006") == f"GET /x?k={MASK}0006"
    assert registry.redact("typed stored+key-0006") == "typed stored+key-0006"
