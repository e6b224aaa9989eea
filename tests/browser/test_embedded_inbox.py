"""<herald-inbox> on a host product's page served from another origin, in Chromium, against gunicorn + gevent.

The host page is a second tiny HTTP server: on the origin listed in
HERALD_EMBED_ORIGINS (another loopback port, see tests/conftest.py), and on
127.0.0.2, which is not listed. Notifications go through the real /v1 API and
Herald's worker (``run_jobs``); the live server streams them to the component.
"""

from __future__ import annotations

import html
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from app.inbox.tokens import sign_user_token
from tests.conftest import free_port
from tests.factories import make_recipient

LIVE = 3000  # ms: "within a second" plus slack for a loaded CI machine

HOST_PAGE = """<!doctype html>
<html><head><title>Acme</title></head>
<body>
  <nav style="display: flex; justify-content: space-between; padding: 1rem">Acme
    <script src="{herald}/static/js/herald-inbox.js"></script>
    <herald-inbox server="{herald}" token="{token}"></herald-inbox>
  </nav>
  <script>
    // What a host does: on tokenExpired, fetch a new token from its own backend and set it.
    window.expiredReasons = [];
    document.querySelector("herald-inbox").addEventListener("tokenExpired", (event) => {{
      window.expiredReasons.push(event.detail.reason);
      if (window.answerWith) {{ event.target.token = window.answerWith; window.answerWith = null; }}
    }});
  </script>
</body></html>"""


def host_server(address: str, port: int, herald: str) -> ThreadingHTTPServer:
    class HostPage(BaseHTTPRequestHandler):
        def do_GET(self):
            token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            body = HOST_PAGE.format(herald=herald, token=html.escape(token)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((address, port), HostPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def hosts(app, live_server):
    """(listed origin, unlisted origin) each serving the host page."""
    listed = app.config["EMBED_ORIGINS"][0]
    servers = [
        host_server("127.0.0.1", urlsplit(listed).port, live_server),
        host_server("127.0.0.2", free_port(), live_server),
    ]
    yield listed, f"http://127.0.0.2:{servers[1].server_address[1]}"
    for server in servers:
        server.shutdown()
        server.server_close()


def token_for(app, user_id: str, seconds: int = 300, secret: str | None = None) -> str:
    return sign_user_token(secret or app.config["USER_TOKEN_SECRET"], user_id, int(time.time()) + seconds)


def send(api, user_id: str, title: str) -> None:
    body = {"user_id": user_id, "type": "transactional", "title": title, "body": "Body", "channels": ["in_app"]}
    assert api.post("/v1/notifications", json=body).status_code == 202


def in_shadow(page: Page, testid: str):
    return page.locator("herald-inbox").get_by_test_id(testid)  # Playwright's locators pierce open shadow roots


def test_the_component_lists_live_marks_read_archives_and_asks_the_host_for_a_new_token(
    app, api, run_jobs, hosts, page: Page, live_server
):
    make_recipient(external_id="ana")
    listed, _ = hosts
    page.goto(f"{listed}/?token={token_for(app, 'ana')}")
    component = page.locator("herald-inbox")
    expect(component).to_have_attribute("data-state", "ready")
    expect(component).to_have_attribute("data-stream", "open")
    expect(in_shadow(page, "herald-badge")).to_be_hidden()

    send(api, "ana", "Your order shipped")
    send(api, "ana", "Payment received")
    run_jobs()
    expect(in_shadow(page, "herald-badge")).to_have_text("2", timeout=LIVE)  # live, without a reload
    in_shadow(page, "herald-bell").click()
    entries = in_shadow(page, "herald-entry")
    expect(entries).to_have_count(2)
    expect(entries.first.get_by_test_id("herald-headline")).to_have_text("Payment received")

    entries.filter(has_text="Payment received").get_by_role("button", name="Mark as read").click()
    expect(in_shadow(page, "herald-badge")).to_have_text("1")
    entries.filter(has_text="Payment received").get_by_role("button", name="Archive").click()
    expect(entries).to_have_count(1)
    expect(entries.first).to_contain_text("Your order shipped")
    with page.context.expect_page() as opened:
        in_shadow(page, "herald-preferences").click()
    preferences = opened.value
    expect(preferences).to_have_url(f"{live_server}/inbox/preferences")  # signed in by the token, which left the URL
    expect(preferences.get_by_role("heading", name="Notification preferences")).to_be_visible()
    expect(preferences.get_by_test_id("pause-everything")).to_be_visible()
    preferences.close()

    # An expired token: "sign in again", and the host hears tokenExpired.
    component.evaluate("(el, t) => { el.token = t; }", token_for(app, "ana", seconds=-60))
    expect(component).to_have_attribute("data-state", "expired")
    expect(in_shadow(page, "herald-signin-again")).to_be_visible()
    expect(in_shadow(page, "herald-badge")).to_be_hidden()
    assert len(page.evaluate("window.expiredReasons")) == 1
    # The host sets a new token: the component is back, badge and list from Herald.
    component.evaluate("(el, t) => { el.setAttribute('token', t); }", token_for(app, "ana"))
    expect(component).to_have_attribute("data-state", "ready")
    expect(in_shadow(page, "herald-badge")).to_have_text("1")
    expect(in_shadow(page, "herald-signin-again")).to_be_hidden()

    # Herald refuses a token (another key): the event names Herald's reason, and the host's answer is taken.
    foreign = token_for(app, "ana", secret="a-key-this-herald-never-had-0123456789")
    page.evaluate("(t) => { window.answerWith = t; }", token_for(app, "ana"))
    component.evaluate("(el, t) => { el.token = t; }", foreign)
    expect(component).to_have_attribute("data-state", "ready")
    assert page.evaluate("window.expiredReasons")[-1] == "bad_signature"
    send(api, "ana", "After the refresh")
    run_jobs()
    expect(in_shadow(page, "herald-badge")).to_have_text("2", timeout=LIVE)  # the new stream is live


def test_a_page_on_an_origin_not_listed_is_refused_by_cors(app, hosts, page: Page, live_server):
    make_recipient(external_id="ana")
    _, unlisted = hosts
    good = token_for(app, "ana")
    page.goto(f"{unlisted}/?token={good}")
    expect(page.locator("herald-inbox")).to_have_attribute("data-state", "error")
    expect(in_shadow(page, "herald-error")).to_have_text("Herald cannot be reached right now.")
    outcome = page.evaluate(
        """async ([url, token]) => {
        try { await fetch(url, {headers: {Authorization: `Bearer ${token}`}, credentials: "omit"}); return "read"; }
        catch (error) { return "refused"; } }""",
        [f"{live_server}/inbox/api/notifications", good],
    )
    assert outcome == "refused"
