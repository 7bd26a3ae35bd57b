"""ucf under a path prefix (``root_path``): nothing the dashboard hands the browser leads
to the host's root, and the URLs handed to providers stay built on the public URL.

The browser walk behind a real proxy is tests/browser/test_prefix_browser.py; these
read the templates and scripts themselves (a new root-relative link fails here, on
every template, not only on the pages a walk visits) and the app in-process, as
uvicorn runs it with ``--root-path /ucf`` (``path`` holds the prefix, the routes
match without it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest_asyncio

from tests.web.conftest import web_settings
from tests.web.support import ACME, PROJECT, TOKEN, instance_body
from ucf.fakes.kit import FakeServer
from ucf.web import create_app
from ucf.web.dashboard.rendering import STATIC, TEMPLATES

PREFIX: Final = "/ucf"
PUBLIC: Final = "https://tools.example.com/ucf"

_URL_ATTRIBUTE = re.compile(r"""\b(href|src|action|formaction|poster)\s*=\s*(["'])(.*?)\2""", re.S)
ELSEWHERE: Final = frozenset(
    {
        "{{ descriptor.docs_url }}",  # the provider's documentation
        "{{ app.docs_url }}",  # the provider's OAuth app console
        "{{ target }}",  # the provider's consent page, or a page of ours already prefixed
    }
)
"""URL attributes that are not a path of this app: they never get the prefix."""


_REFRESH_URL = re.compile(r"""content\s*=\s*(["'])\d+\s*;\s*url=(.*?)\1""", re.S | re.I)
"""A ``<meta http-equiv="refresh">``'s target (the OAuth pages send the browser on)."""


def _template_urls() -> list[tuple[str, str]]:
    found = []
    for path in sorted(TEMPLATES.glob("*.html")):
        text = path.read_text(encoding="utf-8")
        found += [(path.name, match.group(3)) for match in _URL_ATTRIBUTE.finditer(text)]
        found += [(path.name, match.group(2)) for match in _REFRESH_URL.finditer(text)]
    return found


def test_no_template_links_to_the_hosts_root() -> None:
    """Behind a proxy at /ucf, a link to ``/projects/…`` leaves ucf: every path of the app
    in a template starts with ``{{ root }}`` (the prefix, "" at a host's root)."""
    urls = _template_urls()
    assert len(urls) > 60  # the attributes are found at all
    assert ("onward.html", "{{ target }}") in urls  # and the meta refresh
    wrong = [
        (name, url)
        for name, url in urls
        if not url.startswith("{{ root }}")
        and not url.startswith(("#", "data:"))
        and url not in ELSEWHERE
    ]
    assert wrong == []


_PATH_LITERAL = re.compile(r"""(["'])(/[a-z][\w/.-]*)\1""")
_USES = re.compile(r"""(ROOT \+ |\bpost\()\s*$""")


def test_no_script_calls_the_hosts_root() -> None:
    """The dashboard's own scripts name the app's paths only after ``ROOT + `` (the
    ``data-root`` of the page) or through the editor's ``post()``, which adds it."""
    scripts = sorted(STATIC.glob("*.js"))
    assert {path.name for path in scripts} >= {"dashboard.js", "editor.js"}
    wrong = []
    for path in scripts:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("//"):
                continue
            for found in _PATH_LITERAL.finditer(line):
                if not _USES.search(line[: found.start()]):
                    wrong.append(f"{path.name}:{number}: {line.strip()}")
            if "fetch(" in line and not re.search(r"fetch\((ROOT \+|window\.location\.href)", line):
                wrong.append(f"{path.name}:{number}: {line.strip()}")
    assert wrong == []
    assert "fetch(ROOT + path" in (STATIC / "editor.js").read_text(encoding="utf-8")


@pytest_asyncio.fixture(loop_scope="function")
async def under_prefix(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app as uvicorn serves it with ``--root-path /ucf`` behind a proxy at
    ``PUBLIC``: the client's paths go to ``http://ucf.test/ucf/…`` (its base URL), and
    httpx keeps the prefix in ``path``, as uvicorn does."""
    app = create_app(web_settings(tmp_path), public_url=PUBLIC)
    transport = httpx.ASGITransport(app=app, root_path=PREFIX)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://ucf.test" + PREFIX) as client,
    ):
        yield client


def _cookie_paths(response: httpx.Response) -> dict[str, str]:
    paths = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        found = re.search(r"(?i);\s*path=([^;]*)", header)
        paths[name] = found.group(1) if found else ""
    return paths


async def test_login_redirects_and_cookies_stay_under_the_prefix(
    under_prefix: httpx.AsyncClient,
) -> None:
    client = under_prefix
    home = await client.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == PREFIX + "/login?next=/"

    form = await client.get("/login", params={"next": "/projects/x/signals"})
    assert form.status_code == 200
    assert f'action="{PREFIX}/login"' in form.text
    assert f'data-root="{PREFIX}"' in form.text
    assert f'href="{PREFIX}/static/dashboard/dashboard.css?v=' in form.text
    assert _cookie_paths(form) == {"ucf_login": PREFIX + "/login"}
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce is not None

    logged_in = await client.post(
        "/login",
        data={"token": TOKEN, "nonce": nonce.group(1), "next": "/projects/x/signals"},
    )
    assert logged_in.status_code == 303
    assert logged_in.headers["location"] == PREFIX + "/projects/x/signals"
    assert _cookie_paths(logged_in) == {"ucf_session": PREFIX, "ucf_login": PREFIX + "/login"}

    page = await client.get("/projects/x/signals")
    assert page.status_code == 200
    assert f'action="{PREFIX}/logout"' in page.text
    paths = re.findall(r'(?:href|action|src)="(/[^"]*)"', page.text)
    assert paths
    assert [path for path in paths if not path.startswith(PREFIX + "/")] == []


async def test_a_form_sent_after_the_session_ended_returns_to_its_page_under_the_prefix(
    under_prefix: httpx.AsyncClient,
) -> None:
    """The login after it returns to the page the form was on: its ``Referer`` holds the
    prefix, the route has none; a page of another application on the host is no return."""
    sent = await under_prefix.post(
        f"/projects/{PROJECT}/instances/acme/test",
        data={"csrf": "x"},
        headers={"referer": f"http://ucf.test{PREFIX}/projects/{PROJECT}/instances"},
    )
    elsewhere = await under_prefix.post(
        f"/projects/{PROJECT}/instances/acme/test",
        data={"csrf": "x"},
        headers={"referer": f"http://ucf.test/other-app/projects/{PROJECT}/instances"},
    )

    assert sent.headers["location"] == f"{PREFIX}/login?next=/projects/{PROJECT}/instances"
    assert elsewhere.headers["location"] == f"{PREFIX}/login"


async def test_provider_urls_are_the_public_urls_and_the_api_answers_under_the_prefix(
    under_prefix: httpx.AsyncClient, acme: FakeServer
) -> None:
    client = under_prefix
    auth = {"Authorization": f"Bearer {TOKEN}"}
    anonymous = await client.get("/api/connectors")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"

    assert (await client.post("/api/connectors", json=ACME, headers=auth)).is_success
    made = await client.post(
        f"/api/projects/{PROJECT}/instances",
        json=instance_body(acme.base_url),
        headers=auth,
    )
    assert made.status_code == 201, made.text
    shared = f"{PUBLIC}/api/webhooks/{ACME['id']}/{PROJECT}"
    assert made.json()["sharedWebhookUrl"] == shared  # once, not /ucf/ucf/…
    assert made.json()["webhookUrl"].startswith(shared + "/")

    docs = await client.get("/docs", headers=auth)
    assert f"'{PREFIX}/openapi.json'" in docs.text or f'"{PREFIX}/openapi.json"' in docs.text
    document = await client.get("/openapi.json", headers=auth)
    assert document.json()["servers"] == [{"url": PREFIX}]


async def test_an_oauth_consent_under_the_prefix_returns_to_the_public_callback_and_on_into_ucf(
    under_prefix: httpx.AsyncClient,
) -> None:
    """Connect with Slack from the setup page under ``/ucf``: the redirect URI given to the
    provider is the public URL's (once, not ``/ucf/ucf``), the cookie binding the consent
    to this browser is sent back to the callback under the prefix, and the page after the
    consent sends the browser on under ``/ucf``."""
    from tests.web.test_dashboard import Browser
    from tests.web.test_oauth import consent, onward_target, slack_config
    from ucf.fakes.slack import CLIENT_ID, CLIENT_SECRET, SlackFake

    user = Browser(under_prefix)
    assert (await user.login()).status_code == 303
    registered = await under_prefix.put(
        "/api/connectors/slack/oauth-client",
        json={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert registered.status_code == 204, registered.text
    connect = f"/projects/{PROJECT}/connectors/slack/connect"
    with SlackFake(datetime.now(UTC)) as slack:
        await user.get(connect)
        settings = {f"config.{k}": v for k, v in slack_config(slack).items()}
        configured = await user.post(f"{connect}/configuration", settings)
        assert configured.headers["location"].startswith(f"{PREFIX}{connect}?step=")
        opened = await user.post(f"{connect}/oauth")
        assert opened.status_code == 200, opened.text
        assert _cookie_paths(opened)["ucf_oauth"] == PREFIX + "/oauth/callback"
        authorize = onward_target(opened)
        assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [PUBLIC + "/oauth/callback"]

        back = urlsplit(await consent(authorize))
        assert f"{back.scheme}://{back.netloc}{back.path}" == PUBLIC + "/oauth/callback"
        done = await user.get(f"/oauth/callback?{back.query}")  # with the binding cookie

    assert done.status_code == 200, done.text
    assert onward_target(done).startswith(f"{PREFIX}{connect}/oauth-return?ticket=")
    assert f'href="{PREFIX}{connect}/oauth-return?ticket=' in done.text
