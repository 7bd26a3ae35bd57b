"""The dashboard through the real app (httpx over ASGI): login, catalogue, setup, monitoring.

Each test browses like a user would: it reads the pages it is given, takes
the CSRF token and the login nonce from them, follows the setup flow step by
step, and checks what the next page says. Every HTML page and every cookie
seen is kept, so the tests can assert that no credential ever reached one.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from html import unescape
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
import pytest_asyncio

from tests.web.conftest import Web, open_web, web_settings
from tests.web.support import (
    ACME,
    API_KEY,
    CONNECTOR,
    TICKETS,
    TOKEN,
    WEBHOOK_SECRET,
    instance_body,
    sign,
    ticket_event,
)
from ucf.catalogue import builtin_descriptors
from ucf.core.descriptor import ConnectorDescriptor
from ucf.fakes.kit import FakeServer
from ucf.runtime.redaction import mask
from ucf.service import health
from ucf.service.errors import NotFoundError
from ucf.service.poll import rate_gate_for
from ucf.stores.models import InstanceChanges
from ucf.web.dashboard import pages
from ucf.web.dashboard.security import keys_for
from ucf.web.throttle import FREE_FAILURES, FailedAuthThrottle

PROJECT = "team-a"
BASE = f"/projects/{PROJECT}"
CONNECT = f"{BASE}/connectors/{CONNECTOR}/connect"
INSTANCE = f"{BASE}/instances/{CONNECTOR}"
SECRETS = (API_KEY, WEBHOOK_SECRET, TOKEN)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "descriptors"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@dataclass
class Browser:
    """A cookie-keeping client that remembers every page and cookie it was sent."""

    client: httpx.AsyncClient
    seen: list[str] = field(default_factory=list)
    csrf: str = ""

    def _keep(self, response: httpx.Response) -> httpx.Response:
        self.seen.append(response.text)
        self.seen.extend(response.headers.get_list("set-cookie"))
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def get(self, path: str, **params: str) -> httpx.Response:
        return self._keep(await self.client.get(path, params=params or None))

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf", self.csrf)
        return self._keep(await self.client.post(path, data=form))

    async def login(self, token: str = TOKEN, next_path: str = "/") -> httpx.Response:
        page = await self.get("/login", next=next_path)
        nonce = _NONCE.search(page.text)
        assert nonce is not None, page.text
        return await self.post(
            "/login", {"token": token, "nonce": nonce.group(1), "next": next_path}, csrf=False
        )

    def assert_no_secret_seen(self) -> None:
        for text in self.seen:
            for secret in SECRETS:
                assert secret not in text


BrowserFactory = Callable[[], AbstractAsyncContextManager[Browser]]


@pytest.fixture
def browser_factory(web: Web) -> BrowserFactory:
    """Another browser (its own cookie jar) on the same app."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[Browser]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web.app), base_url="http://ucf.test"
        ) as client:
            yield Browser(client)

    return opened


@pytest_asyncio.fixture(loop_scope="function")
async def browser(browser_factory: BrowserFactory) -> AsyncIterator[Browser]:
    async with browser_factory() as opened:
        yield opened


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(loop_scope="function")
async def user(browser: Browser) -> Browser:
    """Logged in, with a CSRF token from a page."""
    response = await browser.login()
    assert response.status_code == 303
    await browser.get(f"{BASE}/connectors")
    assert browser.csrf
    return browser


def cards(html: str) -> dict[str, str]:
    """Connector name → the text of its catalogue card."""
    found: dict[str, str] = {}
    for chunk in html.split('<li class="card connector"')[1:]:
        name = re.search(r'<h2 class="connector__name">([^<]*)</h2>', chunk)
        assert name is not None
        found[unescape(name.group(1))] = chunk.split("</li>")[0]
    return found


def inputs(html: str) -> dict[str, dict[str, str]]:
    """Form controls by name, with their attributes (``tag`` = input or select)."""
    controls: dict[str, dict[str, str]] = {}
    for tag, attributes in re.findall(r"<(input|select)\b([^>]*)>", html):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', attributes))
        for flag in re.findall(r"\s(required|selected)(?=[\s>]|$)", attributes):
            attrs[flag] = ""
        attrs["tag"] = tag
        if "name" in attrs:
            controls[attrs["name"]] = attrs
    return controls


async def connect_acme(user: Browser, web: Web, base_url: str, api_key: str = API_KEY) -> None:
    """Register Acme, then go through the whole setup flow, test included."""
    registered = await web.client.post("/api/connectors", json=ACME)
    assert registered.status_code == 201, registered.text
    step = await user.post(
        f"{CONNECT}/credentials",
        {"credentials.apiKey": api_key, "credentials.webhookSecret": WEBHOOK_SECRET},
    )
    assert step.status_code == 303
    assert step.headers["location"] == f"{CONNECT}?step=configuration"
    step = await user.post(f"{CONNECT}/configuration", {"config.baseUrl": base_url})
    assert step.headers["location"] == f"{CONNECT}?step=test"


# --------------------------------------------------------------------------- login


@pytest.mark.parametrize(
    "path",
    ["/", f"{BASE}/connectors", f"{BASE}/instances", f"{BASE}/signals", CONNECT, INSTANCE],
)
async def test_every_page_sends_a_visitor_without_a_session_to_the_login(
    browser: Browser, path: str
) -> None:
    response = await browser.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


async def test_the_admin_token_opens_a_session_in_an_httponly_strict_cookie(
    browser: Browser,
) -> None:
    response = await browser.login(next_path=f"{BASE}/signals")
    assert response.status_code == 303
    assert response.headers["location"] == f"{BASE}/signals"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "ucf_session=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert (await browser.get(f"{BASE}/signals")).status_code == 200
    browser.assert_no_secret_seen()


async def test_a_wrong_token_is_refused_and_opens_no_session(browser: Browser) -> None:
    for wrong in ("nope", TOKEN[:-1], TOKEN + "x", ""):
        response = await browser.login(token=wrong)
        assert response.status_code == 401
        assert "not this server" in response.text
        assert not any("ucf_session=" in c for c in response.headers.get_list("set-cookie"))
    assert (await browser.get(f"{BASE}/connectors")).status_code == 303


async def test_a_login_form_sent_from_elsewhere_is_refused(browser: Browser) -> None:
    """Login CSRF: a form without the nonce of this browser's login page opens nothing."""
    response = await browser.post("/login", {"token": TOKEN, "nonce": "forged"}, csrf=False)
    assert response.status_code == 403
    assert not any("ucf_session=" in c for c in response.headers.get_list("set-cookie"))


async def test_forged_or_foreign_session_cookies_are_not_a_session(
    browser: Browser, web: Web
) -> None:
    now = web.state.context.clock()
    foreign, _ = keys_for("another-servers-token").new_session(now)
    genuine, _ = keys_for(TOKEN).new_session(now)
    payload, mac = genuine.split(".")
    # A different MAC: replacing its end with "AA" is no change when it already ends so
    # (one session in 1024; seen once in CI).
    tampered = mac[:-2] + ("AA" if mac[-2:] != "AA" else "BE")
    for value in ("garbage", foreign, f"{payload}.{tampered}", f"e30.{mac}"):
        browser.client.cookies.set("ucf_session", value)
        assert (await browser.get(f"{BASE}/connectors")).status_code == 303
    browser.client.cookies.set("ucf_session", genuine)
    assert (await browser.get(f"{BASE}/connectors")).status_code == 200


async def test_a_non_ascii_cookie_is_no_session_rather_than_a_server_error(
    browser: Browser, web: Web
) -> None:
    """Cookies arrive as latin-1 text; comparing such text to a MAC raised a TypeError (500)."""
    genuine, _ = keys_for(TOKEN).new_session(web.state.context.clock())
    payload, mac = genuine.split(".")
    for value in ("\u00e9.\u00e9", f"{payload}.{mac[:-1]}\u00ff", f"{payload}\u00e9.{mac}"):
        cookie = f"ucf_session={value}".encode("latin-1")
        response = await browser.client.get(f"{BASE}/connectors", headers={b"Cookie": cookie})
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/login")
    with_flash = f"ucf_session={genuine}; ucf_flash=\u00e9.\u00e9".encode("latin-1")
    page = await browser.client.get(f"{BASE}/connectors", headers={b"Cookie": with_flash})
    assert page.status_code == 200, page.text


async def test_login_only_returns_to_pages_of_this_site(browser: Browser) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        browser.client.cookies.clear()
        response = await browser.login(next_path=target)
        assert response.headers["location"] == "/"


async def test_a_form_sent_after_the_session_ended_returns_to_its_page_after_login(
    user: Browser,
) -> None:
    """The login after an expired session led to the default project's catalogue: a user
    in the middle of a setup had to find the project and the connector again."""
    page = f"{CONNECT}?step=configuration"
    user.client.cookies.delete("ucf_session")
    sent = await user.client.post(
        f"{CONNECT}/configuration",
        data={"csrf": user.csrf, "config.baseUrl": "https://acme.test"},
        headers={"Referer": f"http://ucf.test{page}"},
    )
    assert sent.status_code == 303
    assert sent.headers["location"] == "/login?next=" + quote(page, safe="/")
    back = await user.login(next_path=page)
    assert back.headers["location"] == page
    user.client.cookies.delete("ucf_session")
    foreign = await user.client.post(
        f"{CONNECT}/configuration",
        data={"csrf": user.csrf},
        headers={"Referer": "https://evil.example/projects/x"},
    )
    assert foreign.headers["location"] == "/login"


async def test_a_form_sent_from_a_page_drawn_by_a_post_returns_to_a_page_that_exists(
    user: Browser, web: Web
) -> None:
    """A setup step refused at 422 is drawn at its form's POST-only address, the Referer
    of the next form sent from it: the login after an expired session returned there,
    to a 404. It returns to the page above it, which a GET reaches."""
    assert (await web.client.post("/api/connectors", json=ACME)).status_code == 201
    refused = await user.post(f"{CONNECT}/configuration", {"config.baseUrl": "not a url"})
    assert refused.status_code == 422
    user.client.cookies.delete("ucf_session")
    cases = {
        f"http://ucf.test{CONNECT}/configuration": CONNECT,
        f"http://ucf.test{BASE}/oauth-apps/{CONNECTOR}": f"{BASE}/oauth-apps",
        f"http://ucf.test{INSTANCE}/reconnect": INSTANCE,
        "http://ucf.test/logout": "/",
        "http://ucf.test//evil.example/x": "/",
    }
    for referer, page in cases.items():
        sent = await user.client.post(
            f"{CONNECT}/configuration",
            data={"csrf": user.csrf, "config.baseUrl": "https://acme.test"},
            headers={"Referer": referer},
        )
        assert sent.status_code == 303
        assert sent.headers["location"] == "/login?next=" + quote(page, safe="/"), referer
    back = await user.login(next_path=CONNECT)
    assert back.headers["location"] == CONNECT
    assert (await user.get(CONNECT)).status_code == 200


async def test_behind_a_proxy_a_form_sent_from_the_public_url_returns_to_its_page(
    tmp_path: Path,
) -> None:
    """Behind a proxy that sends its own Host (nginx's default), the Referer names the
    public URL's host, never the Host the app sees: the login always led to the default
    project's catalogue there. Another host still returns nowhere."""
    env = {"UCF_PUBLIC_URL": "https://ucf.example.com"}
    async with (
        open_web(web_settings(tmp_path, **env)) as web,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web.app), base_url="http://127.0.0.1:8080"
        ) as client,
    ):
        user = Browser(client)
        assert (await user.login()).status_code == 303
        await user.get(INSTANCE)
        client.cookies.delete("ucf_session")
        for referer, location in (
            (f"https://ucf.example.com{BASE}/instances", f"/login?next={BASE}/instances"),
            (f"https://ucf.example.org{BASE}/instances", "/login"),
        ):
            sent = await client.post(
                f"{CONNECT}/configuration", data={"csrf": user.csrf}, headers={"Referer": referer}
            )
            assert sent.status_code == 303
            assert sent.headers["location"] == location


async def test_logging_out_ends_the_session(user: Browser) -> None:
    response = await user.post("/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert (await user.get(f"{BASE}/connectors")).status_code == 303


async def test_a_copied_session_cookie_dies_when_its_session_logs_out(
    user: Browser, browser_factory: BrowserFactory
) -> None:
    """OWASP: logout invalidates the session on the server, not only in this browser."""
    copied = user.client.cookies["ucf_session"]
    async with browser_factory() as thief:
        thief.client.cookies.set("ucf_session", copied)
        assert (await thief.get(f"{BASE}/connectors")).status_code == 200
        assert (await user.post("/logout")).status_code == 303
        after = await thief.get(f"{BASE}/connectors")
        assert after.status_code == 303
        assert after.headers["location"].startswith("/login")
        metrics = await thief.client.get("/metrics")
        assert metrics.status_code == 401
    fresh = await user.login()
    assert fresh.status_code == 303  # logging in again opens a new session
    assert (await user.get(f"{BASE}/connectors")).status_code == 200


async def test_wrong_tokens_at_the_login_are_slowed_down(browser: Browser, web: Web) -> None:
    clock = FakeClock()
    web.state.auth_throttle = FailedAuthThrottle(monotonic=clock)
    for _ in range(FREE_FAILURES + 1):
        assert (await browser.login(token="x" * 40)).status_code == 401
    closed = await browser.login()
    assert closed.status_code == 429
    assert closed.headers["retry-after"] == "1"
    assert "try again in 1 s" in closed.text
    assert not any("ucf_session=" in c for c in closed.headers.get_list("set-cookie"))
    clock.now += 1.5
    assert (await browser.login()).status_code == 303


# --------------------------------------------------------------------------- catalogue


async def test_catalogue_shows_every_connector_with_icon_description_and_connect(
    user: Browser,
) -> None:
    page = await user.get(f"{BASE}/connectors")
    shown = cards(page.text)
    shipped = [ConnectorDescriptor.model_validate(d) for d in builtin_descriptors()]
    assert set(shown) == {d.name for d in shipped}
    for descriptor in shipped:
        card = shown[descriptor.name]
        assert 'class="tile' in card
        assert descriptor.category.replace("&", "&amp;") in card
        assert "Not configured" in card
        assert f'href="{BASE}/connectors/{descriptor.id}/connect"' in card
    assert '<svg viewBox="0 0 24 24"' in shown["GitHub Issues"]  # a vendored brand icon
    assert "tile--mono" in shown["Slack"]  # no Simple Icon: a monogram


async def test_catalogue_search_by_name_and_category_filter(user: Browser) -> None:
    found = cards((await user.get(f"{BASE}/connectors", q="GitHub")).text)
    assert set(found) == {"GitHub Issues", "GitHub Pull Requests"}
    documents = cards((await user.get(f"{BASE}/connectors", category="Documents")).text)
    assert set(documents) == {"Confluence", "Notion"}
    both = cards((await user.get(f"{BASE}/connectors", category="Documents", q="notion")).text)
    assert set(both) == {"Notion"}
    none = await user.get(f"{BASE}/connectors", q="no-such-tool-anywhere")
    assert cards(none.text) == {}
    assert "No connector matches" in none.text


async def test_connected_connectors_are_marked_connected_in_their_project_only(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    await connect_acme(user, web, acme.base_url)
    assert (await user.post(f"{CONNECT}/confirm")).status_code == 303
    mine = cards((await user.get(f"{BASE}/connectors")).text)
    assert "Connected" in mine["Acme Tickets"]
    assert "status--on" in mine["Acme Tickets"]
    assert f'href="{INSTANCE}"' in mine["Acme Tickets"]
    assert "Not configured" in mine["Slack"]
    other = cards((await user.get("/projects/another/connectors")).text)
    assert "Not configured" in other["Acme Tickets"]


async def test_pages_escape_what_descriptors_say(user: Browser, web: Web) -> None:
    hostile = copy.deepcopy(ACME)
    hostile["id"] = "hostile"
    hostile["name"] = "<script>alert(1)</script>"
    hostile["description"] = '<img src=x onerror="alert(2)">'
    assert (await web.client.post("/api/connectors", json=hostile)).status_code == 201
    page = await user.get(f"{BASE}/connectors")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x" not in page.text


# --------------------------------------------------------------------------- setup flow


@pytest.mark.parametrize(
    "descriptor",
    [ConnectorDescriptor.model_validate(d) for d in builtin_descriptors()],
    ids=lambda d: d.id,
)
async def test_setup_forms_have_exactly_the_descriptors_fields(
    user: Browser, descriptor: ConnectorDescriptor
) -> None:
    connect = f"{BASE}/connectors/{descriptor.id}/connect"
    page = await user.get(connect)
    assert page.status_code == 200
    controls = inputs(page.text)
    credentials = {n: a for n, a in controls.items() if n.startswith("credentials.")}
    # No OAuth app is registered: the fields of ``auth`` (an alternative's come with its consent).
    fields = descriptor.credential_fields(descriptor.auth)
    assert set(credentials) == {f"credentials.{f.key}" for f in fields}
    for f in fields:
        control = credentials[f"credentials.{f.key}"]
        assert control["type"] == {"password": "password", "url": "url", "text": "text"}[f.type]
        assert control.get("value", "") == ""
        assert ("required" in control) == f.required
        assert f'<label for="{control["id"]}">{f.label}' in unescape(page.text)
        if f.help_text:
            assert f.help_text in unescape(page.text)

    filled = {
        f"credentials.{f.key}": f"value-of-{f.key}-0123456789"
        for f in descriptor.credential_fields()
    }
    step = await user.post(f"{connect}/credentials", filled)
    assert step.status_code == 303, step.text
    page = await user.get(connect, step="configuration")
    controls = inputs(page.text)
    config = {n: a for n, a in controls.items() if n.startswith("config.")}
    settings = descriptor.setup_config_fields()
    assert set(config) == {f"config.{s.key}" for s in settings}
    for setting in settings:
        control = config[f"config.{setting.key}"]
        if setting.type == "select":  # the default is the selected option, not a value attribute
            assert f'<option value="{setting.default}" selected>' in page.text
        else:
            assert control.get("value", "") == (setting.default or "")
        if setting.placeholder:
            assert control["placeholder"] == setting.placeholder
        if setting.help_text:
            assert setting.help_text in unescape(page.text)
    user.seen.clear()  # the values above were typed, not secrets of anyone


async def test_configuration_step_draws_defaults_placeholders_help_and_select_options(
    user: Browser, web: Web
) -> None:
    custom = copy.deepcopy(ACME)
    custom["configFields"] = [
        {"key": "baseUrl", "label": "API base URL", "type": "url", "placeholder": "https://acme"},
        {
            "key": "region",
            "label": "Region",
            "type": "select",
            "options": ["eu", "us", "ap"],
            "default": "us",
            "helpText": "Where your Acme account lives",
        },
        {"key": "pageSize", "label": "Page size", "type": "number", "default": "50"},
    ]
    assert (await web.client.post("/api/connectors", json=custom)).status_code == 201
    await user.post(f"{CONNECT}/credentials", {"credentials.apiKey": API_KEY})
    page = await user.get(CONNECT, step="configuration")
    controls = inputs(page.text)
    assert controls["config.baseUrl"]["type"] == "url"
    assert controls["config.baseUrl"]["placeholder"] == "https://acme"
    assert controls["config.region"]["tag"] == "select"
    assert re.findall(r'<option value="(\w+)"', page.text) == ["eu", "us", "ap"]
    assert '<option value="us" selected>' in page.text
    assert "Where your Acme account lives" in page.text
    assert controls["config.pageSize"]["type"] == "number"
    assert controls["config.pageSize"]["value"] == "50"

    wrong = await user.post(
        f"{CONNECT}/configuration", {"config.baseUrl": "ftp://x", "config.region": "mars"}
    )
    assert wrong.status_code == 422
    assert "must be an http(s) URL" in wrong.text
    assert "must be one of" in unescape(wrong.text)
    assert 'value="ftp://x"' in wrong.text  # settings are not secret: kept as typed


async def test_a_missing_required_credential_is_reported_on_its_field(
    user: Browser, web: Web
) -> None:
    assert (await web.client.post("/api/connectors", json=ACME)).status_code == 201
    response = await user.post(
        f"{CONNECT}/credentials", {"credentials.webhookSecret": WEBHOOK_SECRET}
    )
    assert response.status_code == 422
    assert "&#39;API key&#39; is required" in response.text
    assert 'aria-invalid="true"' in response.text
    # The secret that was typed is kept (masked) and never written back into the input.
    assert mask(WEBHOOK_SECRET) in response.text
    user.assert_no_secret_seen()


async def test_a_setup_step_drawn_before_the_connector_dropped_a_setting_says_why(
    user: Browser, web: Web
) -> None:
    """The step posts a setting the connector has since dropped: its refusal has no field
    on the page any more, so it is listed above the form instead of nowhere."""
    with_team = copy.deepcopy(ACME)
    with_team["configFields"].append({"key": "team", "label": "Team", "required": False})
    assert (await web.client.post("/api/connectors", json=with_team)).status_code == 201
    step = await user.post(
        f"{CONNECT}/credentials",
        {"credentials.apiKey": API_KEY, "credentials.webhookSecret": WEBHOOK_SECRET},
    )
    assert step.status_code == 303
    assert (await web.client.put(f"/api/connectors/{ACME['id']}", json=ACME)).status_code == 200
    response = await user.post(
        f"{CONNECT}/configuration",
        {"config.baseUrl": "https://acme.example", "config.team": "red"},
    )
    assert response.status_code == 422
    assert "config.team: unknown setting (known: baseUrl)" in response.text


async def test_a_long_credential_survives_the_setup_steps_in_cookies_a_browser_keeps(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    """The draft rode in one cookie; browsers drop a cookie over 4096 bytes without a word
    (RFC 6265 §6.1), so a long key or a consent's tokens were lost and the setup began
    again. Each cookie now stays under the limit; past what a page can carry, the user is
    told to use the API."""
    long_key = "k" * 5000 + "-end7"
    await connect_acme(user, web, acme.base_url, api_key=long_key)
    sizes = [len(text.split(";")[0].encode()) for text in user.seen if text.startswith("ucf_setup")]
    assert len(sizes) >= 2  # split
    assert max(sizes) <= 4096, sizes
    review = await user.get(CONNECT, step="test")
    assert mask(long_key) in review.text  # the draft came back whole
    assert long_key not in review.text

    huge = await user.post(f"{CONNECT}/credentials", {"credentials.apiKey": "k" * 100_000})
    assert huge.status_code == 413
    assert "Connect through the API instead" in huge.text
    assert "k" * 1000 not in huge.text
    again = await user.get(CONNECT, step="test")
    assert mask(long_key) in again.text  # the last draft that fit is kept


async def test_connecting_tests_the_connection_and_stores_credentials_masked(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    await connect_acme(user, web, acme.base_url)
    review = await user.get(CONNECT, step="test")
    assert mask(API_KEY) in review.text
    assert acme.base_url in review.text

    tested = await user.post(f"{CONNECT}/test")
    assert tested.headers["location"] == f"{CONNECT}?step=test"
    result = await user.get(CONNECT, step="test")
    assert "Connection works" in result.text
    assert "health--healthy" in result.text
    assert " ms" in result.text
    with pytest.raises(NotFoundError):  # nothing stored before Confirm
        await web.state.context.instances.get(PROJECT, CONNECTOR)

    confirmed = await user.post(f"{CONNECT}/confirm")
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == INSTANCE
    page = await user.get(INSTANCE)
    assert "Acme Tickets is connected" in page.text
    assert "Healthy" in page.text  # the setup's check is the first observation
    assert mask(API_KEY) in page.text
    assert f"/api/webhooks/{CONNECTOR}/{PROJECT}" in page.text

    instance = await web.state.context.instances.get(PROJECT, CONNECTOR)
    assert instance.to_json()["credentials"] == {
        "apiKey": mask(API_KEY),
        "webhookSecret": mask(WEBHOOK_SECRET),
    }
    stored = await web.state.context.instances.credentials(instance.record)
    assert stored == {"apiKey": API_KEY, "webhookSecret": WEBHOOK_SECRET}
    for path in (f"{BASE}/instances", f"{BASE}/connectors", f"{INSTANCE}/disconnect"):
        assert (await user.get(path)).status_code == 200
    user.assert_no_secret_seen()


async def test_a_refused_key_shows_a_secret_free_error_in_the_test_step(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    wrong_key = "acme-wrong-key-0f9e8d7c6b5a"
    await connect_acme(user, web, acme.base_url, api_key=wrong_key)
    await user.post(f"{CONNECT}/test")
    result = await user.get(CONNECT, step="test")
    assert "Connection failed" in result.text
    assert "health--error" in result.text
    assert "401" in result.text
    assert "Continue without a passing test" in result.text
    assert all(wrong_key not in text for text in user.seen)


async def test_the_draft_cannot_be_read_by_another_session(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    await connect_acme(user, web, acme.base_url)
    draft = user.client.cookies.get("ucf_setup", path=CONNECT)
    assert draft
    assert API_KEY not in draft
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web.app), base_url="http://ucf.test"
    ) as other_client:
        other = Browser(other_client)
        await other.login()
        other.client.cookies.set("ucf_setup", draft, path=CONNECT)
        page = await other.get(CONNECT)
        assert page.status_code == 200
        assert mask(API_KEY) not in page.text
        assert 'name="credentials.apiKey"' in page.text  # starts over at step 1


# --------------------------------------------------------------------------- monitoring


async def test_csrf_token_missing_or_wrong_is_refused_with_403(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    await connect_acme(user, web, acme.base_url)
    await user.post(f"{CONNECT}/confirm")
    for action, data in (
        ("disconnect", {}),
        ("enabled", {"enabled": "0"}),
        ("poll", {}),
        ("test", {}),
    ):
        missing = await user.post(f"{INSTANCE}/{action}", data, csrf=False)
        assert missing.status_code == 403, action
        forged = await user.post(f"{INSTANCE}/{action}", {**data, "csrf": "x" * 43}, csrf=False)
        assert forged.status_code == 403, action
    record = await web.state.context.instances.record(PROJECT, CONNECTOR)
    assert record.enabled
    assert (await user.post("/logout", {}, csrf=False)).status_code == 403


async def test_monitoring_shows_health_counts_and_webhook_url_and_polls_now(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    await connect_acme(user, web, acme.base_url)
    await user.post(f"{CONNECT}/test")
    await user.post(f"{CONNECT}/confirm")

    polled = await user.post(f"{INSTANCE}/poll", {"back": f"{BASE}/instances"})
    assert polled.headers["location"] == f"{BASE}/instances"
    listing = await user.get(f"{BASE}/instances")
    assert f"{TICKETS} new signals" in listing.text
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>([^<]*)</dd>", listing.text))
    assert facts["Received 24 h"] == str(TICKETS)
    assert facts["Signals 7 d"] == str(TICKETS)
    assert facts["Consecutive failures"] == "0"
    assert "health--healthy" in listing.text
    assert f"http://ucf.test/api/webhooks/{CONNECTOR}/{PROJECT}" in listing.text

    signals = await user.get(f"{BASE}/signals")
    for n in range(1, TICKETS + 1):
        assert f"Ticket {n}" in signals.text
    filtered = await user.get(f"{BASE}/signals", type="no_such_type")
    assert "Ticket 1" not in filtered.text
    assert "No signals match these filters" in filtered.text

    tested = await user.post(f"{INSTANCE}/test")
    assert tested.headers["location"] == INSTANCE
    assert "Connection test passed" in (await user.get(INSTANCE)).text
    user.assert_no_secret_seen()


async def test_an_instance_that_cannot_sign_in_says_so_on_its_page_and_keeps_its_settings_form(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    """An edit of its connector left the instance without a credential it now needs: its
    page looked like a working one's, and only its failing polls told. The page says what
    is missing; the edit form saves settings, and a rotated key, as the API does, and
    the page goes on saying what is missing until it is given."""
    changed = copy.deepcopy(ACME)
    changed["auth"]["config"]["credentialFields"].append(
        {"key": "accountId", "label": "Account id", "type": "text", "required": True}
    )
    assert (await web.client.post("/api/connectors", json=ACME)).status_code == 201
    body = instance_body(acme.base_url)
    made = await web.client.post(f"/api/projects/{PROJECT}/instances", json=body)
    assert made.status_code == 201, made.text
    assert "cannot sign in" not in unescape((await user.get(INSTANCE)).text)
    assert (await web.client.put(f"/api/connectors/{CONNECTOR}", json=changed)).is_success
    said = "cannot sign in with the stored credentials: 'Account id' is required"
    assert said in unescape((await user.get(INSTANCE)).text)
    base_url = acme.base_url
    saved = await user.post(f"{INSTANCE}/edit", {"action": "save", "config.baseUrl": base_url})
    assert saved.status_code == 303, saved.text
    rotated = await user.post(  # taken (a reconnect's tokens would be lost otherwise)
        f"{INSTANCE}/edit",
        {"action": "save", "config.baseUrl": base_url, "credentials.apiKey": "k-0af3c9e1"},
    )
    assert rotated.status_code == 303, rotated.text
    assert said in unescape((await user.get(INSTANCE)).text)  # and still said
    completed = await user.post(
        f"{INSTANCE}/edit",
        {"action": "save", "config.baseUrl": base_url, "credentials.accountId": "a-1"},
    )
    assert completed.status_code == 303, completed.text
    assert "cannot sign in" not in unescape((await user.get(INSTANCE)).text)


async def test_an_instance_without_its_webhook_secret_says_its_deliveries_are_refused(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    """The gateway refuses every delivery to an instance that has no secret to verify it
    with; the page said to give the provider "the webhook secret you stored" all the same,
    and only the server log said why every delivery failed."""
    created = await web.client.post("/api/connectors", json=ACME)
    assert created.status_code == 201, created.text
    body = instance_body(acme.base_url, with_secret=False)
    made = await web.client.post(f"/api/projects/{PROJECT}/instances", json=body)
    assert made.status_code == 201, made.text
    hook = urlsplit(made.json()["webhookUrl"]).path
    refused = await web.anonymous.post(hook, content=b"{}")
    assert refused.status_code == 401
    page = (await user.get(INSTANCE)).text
    assert "you stored" not in page
    assert "every delivery to this URL is refused" in page
    assert f'href="{INSTANCE}/edit"' in page

    added = await web.client.patch(
        f"/api/projects/{PROJECT}/instances/{CONNECTOR}",
        json={"credentials": {"webhookSecret": WEBHOOK_SECRET}},
    )
    assert added.status_code == 200, added.text
    page = (await user.get(INSTANCE)).text
    assert "with the webhook secret you stored" in page
    assert "every delivery to this URL is refused" not in page


async def test_the_instance_page_shows_its_last_verified_delivery_and_the_refused_ones(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    """Webhook deliveries had no figure on the page: a webhook-only instance said "Last
    sync: never" while its signals arrived, and deliveries refused for a wrong secret
    were counted (``deliveryFailures``) but shown nowhere while its polls failed."""
    created = await web.client.post("/api/connectors", json=ACME)
    assert created.status_code == 201, created.text
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert made.status_code == 201, made.text
    hook = urlsplit(made.json()["webhookUrl"]).path

    def facts(page: str) -> dict[str, str]:
        found = re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", page)
        return {k: " ".join(re.sub(r"<[^>]+>", "", v).split()) for k, v in found}

    assert facts((await user.get(INSTANCE)).text)["Last verified delivery"] == "never"
    forged = sign(ticket_event("T-1"), delivery="d-forged", secret="not-the-secret")
    refused = await web.anonymous.post(hook, content=forged.body, headers=forged.headers)
    assert refused.status_code == 401
    shown = facts((await user.get(INSTANCE)).text)
    assert shown["Refused since"] == "1 failed verification"

    genuine = sign(ticket_event("T-2"), delivery="d-genuine")
    taken = await web.anonymous.post(hook, content=genuine.body, headers=genuine.headers)
    assert taken.status_code == 200, taken.text
    shown = facts((await user.get(INSTANCE)).text)
    assert shown["Last verified delivery"] == "just now"
    assert "Refused since" not in shown


async def test_the_instance_page_shows_the_poll_interval_the_scheduler_uses(
    acme: FakeServer, tmp_path: Path
) -> None:
    """With UCF_POLL_INTERVAL_OVERRIDE (the sandbox sets 5 s) every instance polls that
    often; the page said the descriptor's interval (an hour here) all the same."""
    for override, shown in ((None, "every 1 h"), ("5", "every 5 s (UCF_POLL_INTERVAL_OVERRIDE)")):
        env = {"UCF_POLL_INTERVAL_OVERRIDE": override} if override else {}
        data_dir = tmp_path / (override or "default")
        async with (
            open_web(web_settings(data_dir, **env)) as web,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=web.app), base_url="http://ucf.test"
            ) as client,
        ):
            created = await web.client.post("/api/connectors", json=ACME)
            assert created.status_code == 201, created.text
            body = instance_body(acme.base_url)
            made = await web.client.post(f"/api/projects/{PROJECT}/instances", json=body)
            assert made.status_code == 201, made.text
            user = Browser(client)
            assert (await user.login()).status_code == 303
            page = (await user.get(INSTANCE)).text
            polling = re.search(r"<dt>Polling</dt><dd>(.*?)</dd>", page)
            assert polling is not None, page
            assert " ".join(re.sub(r"<[^>]+>", "", polling.group(1)).split()) == shown


async def test_a_test_that_could_not_run_says_so_instead_of_failed(
    user: Browser, web: Web, acme: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await connect_acme(user, web, acme.base_url)
    await user.post(f"{CONNECT}/confirm")
    # The instance's rateLimitRpm bucket spent, at a moment that stands still (no
    # refill), and no time to wait for a token.
    context = web.state.context
    moment = context.clock()
    monkeypatch.setattr(context, "clock", lambda: moment)
    gate = rate_gate_for(context, PROJECT, await context.connectors.get(CONNECTOR))
    assert gate is not None
    while await gate.acquire_within(0):
        pass
    no_wait = functools.partial(health.test_connection, token_wait=timedelta(0))
    monkeypatch.setattr(pages, "test_connection", no_wait)

    tested = await user.post(f"{INSTANCE}/test")
    assert tested.headers["location"] == INSTANCE
    page = unescape((await user.get(INSTANCE)).text)
    assert "Connection test did not run." in page
    assert "rateLimitRpm" in page
    assert "Connection test failed" not in page


async def test_the_webhook_note_names_the_credential_deliveries_are_verified_with(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    """It said "the webhook secret you stored" whatever the field was called (Slack's
    Signing secret, Trello's API key secret)."""
    descriptor = copy.deepcopy(ACME)
    [field] = [
        f for f in descriptor["auth"]["config"]["credentialFields"] if f["key"] == "webhookSecret"
    ]
    field["label"] = "Signing secret"
    assert (await web.client.post("/api/connectors", json=descriptor)).status_code == 201
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert made.status_code == 201, made.text
    page = (await user.get(INSTANCE)).text
    assert "with the signing secret you stored" in page


async def test_a_password_in_a_url_setting_stored_before_the_refusal_is_not_on_the_pages(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    created = await web.client.post("/api/connectors", json=ACME)
    assert created.status_code == 201, created.text
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances", json=instance_body(acme.base_url)
    )
    assert made.status_code == 201, made.text
    port = acme.base_url.rsplit(":", 1)[1]
    context = web.state.context
    await context.store.instances.update(
        PROJECT,
        CONNECTOR,
        InstanceChanges(config={"baseUrl": f"http://ana:pw-0af3c9e1@127.0.0.1:{port}"}),
        now=context.clock(),
    )
    for path in (INSTANCE, f"{INSTANCE}/edit"):
        page = unescape((await user.get(path)).text)
        assert "pw-0af3c9e1" not in page, path
        assert f"http://••••@127.0.0.1:{port}" in page, path


async def test_a_failed_connection_test_says_what_failed_and_the_health_it_left(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    """The message read "Connection test failed (HTTP 401): error.", the health label
    taken for a reason."""
    created = await web.client.post("/api/connectors", json=ACME)
    assert created.status_code == 201, created.text
    body = instance_body(acme.base_url)
    body["credentials"]["apiKey"] = "a-revoked-key"
    made = await web.client.post(f"/api/projects/{PROJECT}/instances", json=body)
    assert made.status_code == 201, made.text

    tested = await user.post(f"{INSTANCE}/test")
    assert tested.headers["location"] == INSTANCE
    page = unescape((await user.get(INSTANCE)).text)
    assert "Connection test failed (HTTP 401). Health: Error." in page
    assert ": error." not in page


async def test_disabling_stops_polls_and_enabling_resumes(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    await connect_acme(user, web, acme.base_url)
    await user.post(f"{CONNECT}/confirm")
    off = await user.post(f"{INSTANCE}/enabled", {"enabled": "0"})
    assert off.status_code == 303
    page = await user.get(INSTANCE)
    assert 'aria-checked="false"' in page.text
    assert not (await web.state.context.instances.record(PROJECT, CONNECTOR)).enabled
    polls_before = len(acme.requests_to("/tickets"))
    await user.post(f"{INSTANCE}/poll")
    assert "disabled; enable it to poll" in (await user.get(INSTANCE)).text
    assert len(acme.requests_to("/tickets")) == polls_before
    await user.post(f"{INSTANCE}/enabled", {"enabled": "1"})
    assert (await web.state.context.instances.record(PROJECT, CONNECTOR)).enabled
    assert 'aria-checked="true"' in (await user.get(INSTANCE)).text


async def test_disconnect_asks_first_then_removes_the_instance(
    user: Browser, web: Web, acme: FakeServer
) -> None:
    await connect_acme(user, web, acme.base_url)
    await user.post(f"{CONNECT}/confirm")
    confirm = await user.get(f"{INSTANCE}/disconnect")
    assert "Disconnect Acme Tickets from project" in confirm.text
    assert f'action="{INSTANCE}/disconnect"' in confirm.text
    assert (await web.state.context.instances.record(PROJECT, CONNECTOR)) is not None

    done = await user.post(f"{INSTANCE}/disconnect")
    assert done.headers["location"] == f"{BASE}/instances"
    listing = await user.get(f"{BASE}/instances")
    assert "Acme Tickets is disconnected" in listing.text
    assert "Nothing is connected" in listing.text
    with pytest.raises(NotFoundError):
        await web.state.context.instances.get(PROJECT, CONNECTOR)
    assert "Not configured" in cards((await user.get(f"{BASE}/connectors")).text)["Acme Tickets"]
    gone = await user.get(INSTANCE)
    assert gone.status_code == 404
    assert "text/html" in gone.headers["content-type"]


# --------------------------------------------------------------------------- the page itself


async def test_pages_forbid_inline_scripts_and_framing(user: Browser) -> None:
    page = await user.get(f"{BASE}/connectors")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []
    assert " style=" not in page.text
    assert " on" + "click=" not in page.text


async def test_a_mistyped_dashboard_address_is_a_page_not_json(user: Browser) -> None:
    response = await user.get(f"{BASE}/no-such-page")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "There is no page at" in response.text
    api = await user.get("/api/no-such-route")
    assert api.headers["content-type"] == "application/json"


async def test_static_files_are_served_only_from_the_dashboards_folder(browser: Browser) -> None:
    css = await browser.get("/static/dashboard/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = await browser.get("/static/dashboard/dashboard.js")
    assert js.headers["content-type"].startswith("text/javascript")
    for path in ("/static/dashboard/../templates/base.html", "/static/dashboard/nope.css"):
        assert (await browser.get(path)).status_code == 404


# --------------------------------------------------------------------------- handed-over secrets


async def test_a_handed_over_token_waits_on_the_instance_page_until_confirmed(
    user: Browser, web: Web
) -> None:
    descriptor = json.loads((FIXTURES / "notion.json").read_text())
    descriptor["auth"]["config"]["credentialFields"][0]["required"] = False
    assert (await web.client.post("/api/connectors", json=descriptor)).status_code == 201
    made = await web.client.post(
        f"/api/projects/{PROJECT}/instances",
        json={"connectorId": descriptor["id"], "credentials": {}},
    )
    own = made.json()["webhookUrl"]
    page_path = f"{BASE}/instances/{descriptor['id']}"
    page = await user.get(page_path)
    assert own in unescape(page.text)  # the instance's own URL is the one shown
    assert "Secrets waiting" not in page.text
    assert "you stored" not in page.text  # Notion hands its secret over: none to give it

    token = "secret_notion_verification_token_for_the_page_42"
    shake = await web.anonymous.post(own, json={"verification_token": token})
    assert shake.status_code == 200
    page = await user.get(page_path)
    assert "Secrets waiting for your confirmation" in page.text
    assert token in page.text  # in full: it has to be pasted into Notion's Verify dialog
    found = re.search(r'action="([^"]+/pending-secrets/[0-9a-f]{16})/confirm"', page.text)
    assert found is not None
    confirm = unescape(found.group(1)) + "/confirm"

    forged = await user.post(confirm, {"csrf": "not-this-sessions"})
    assert forged.status_code == 403
    confirmed = await user.post(confirm)
    assert confirmed.status_code == 303
    instance = (
        await web.client.get(f"/api/projects/{PROJECT}/instances/{descriptor['id']}")
    ).json()
    assert instance["credentials"] == {"verificationToken": mask(token)}
    assert instance["pendingSecrets"] == []

    stranger = "secret_from_someone_else_entirely_0000"
    assert (await web.anonymous.post(own, json={"verification_token": stranger})).status_code == 200
    page = await user.get(page_path)
    assert "Differs from the secret already confirmed" in page.text
    assert "Confirm and replace" in page.text
    still = (await web.client.get(f"/api/projects/{PROJECT}/instances/{descriptor['id']}")).json()
    assert still["credentials"] == {"verificationToken": mask(token)}
    assert [p["differsFromConfirmed"] for p in still["pendingSecrets"]] == [True]
