"""Every page names an icon that exists, and /favicon.ico (which browsers ask for anyway) answers with it."""

from __future__ import annotations

import re

from tests.factories import make_recipient


def icon_links(html: str) -> list[str]:
    return re.findall(r'<link rel="icon" href="([^"]+)"', html)


def test_favicon_ico_is_an_icon(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response.mimetype == "image/vnd.microsoft.icon" and response.data[:4] == b"\0\0\1\0"


def test_console_inbox_and_api_docs_pages_link_icons_that_answer(app, client):
    from app.inbox.auth import inbox_path

    make_recipient(external_id="ana")
    client.get(inbox_path(app.config["INBOX_SECRET"], "ana"))
    for path in ("/console/login", "/inbox", "/v1/docs"):
        page = client.get(path)
        links = icon_links(page.get_data(as_text=True))
        assert len(links) == 2, path
        for href in links:
            assert client.get(href).status_code == 200, href
