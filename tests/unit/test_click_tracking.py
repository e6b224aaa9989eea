"""Click tracking's pure parts: signed tokens, which links are rewritten, and how."""

from __future__ import annotations

from app.channels import Message
from app.delivery.tracking import (
    click_token,
    read_click_token,
    rewrite_html,
    rewrite_text,
    track,
    trackable,
    tracked_message,
)

SECRET = "a-secret-of-some-length"
BASE = "https://herald.example"


def message(channel="email", content=None, data=None) -> Message:
    return Message(
        delivery_id=1,
        recipient_id=1,
        notification_id="n" * 32,
        channel=channel,
        idempotency_key="k",
        recipient_external_id="ana",
        notification_type="marketing",
        category="promo",
        priority="normal",
        content=content or {},
        data=data or {},
    )


def original(url: str) -> str:
    """The URL a tracked link leads to (the token is the last path segment)."""
    return read_click_token(SECRET, url.rsplit("/c/", 1)[1]).url


def test_a_token_leads_back_to_its_notification_channel_and_url():
    click = read_click_token(SECRET, click_token(SECRET, "n" * 32, "email", "https://shop.example/a?b=1&c=2"))
    assert (click.notification_id, click.channel, click.url) == ("n" * 32, "email", "https://shop.example/a?b=1&c=2")


def test_tampered_foreign_or_non_web_tokens_are_refused():
    token = click_token(SECRET, "n" * 32, "email", "https://shop.example/")
    assert read_click_token(SECRET, token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert read_click_token("another-secret-entirely", token) is None
    assert read_click_token(SECRET, "not-a-token") is None
    # Even a token Herald signed cannot redirect to a script or a local file.
    assert read_click_token(SECRET, click_token(SECRET, "n" * 32, "email", "javascript:alert(1)")) is None


def test_only_absolute_web_links_that_are_not_heralds_own_are_tracked():
    assert trackable("https://shop.example/sale", BASE)
    assert trackable("http://shop.example/sale", BASE)
    for url in (
        "/orders/1",
        "mailto:help@shop.example",
        "tel:+15550100",
        "myapp://orders/1",
        "#top",
        f"{BASE}/unsubscribe/abc",
        f"{BASE}/c/abc",
    ):
        assert not trackable(url, BASE), url
    assert trackable(f"{BASE}/inbox", BASE)
    assert not trackable("https://shop.example/" + "a" * 1100, BASE), "too long to track within a push payload"


def test_html_links_are_rewritten_with_their_escaping_respected():
    markup = (
        '<link rel="stylesheet" href="https://cdn.example/mail.css">'
        '<a class="button" href="https://shop.example/s?a=1&amp;b=2">Sale</a> <A HREF=\'https://shop.example/x\'>x</A> '
        '<a href="mailto:help@shop.example">help</a>'
    )
    rewritten = rewrite_html(markup, lambda url: "TRACK(" + url + ")")
    assert rewritten == (
        '<link rel="stylesheet" href="https://cdn.example/mail.css">'
        '<a class="button" href="TRACK(https://shop.example/s?a=1&amp;b=2)">Sale</a> '
        "<A HREF='TRACK(https://shop.example/x)'>x</A> <a href=\"TRACK(mailto:help@shop.example)\">help</a>"
    )


def test_text_links_leave_sentence_punctuation_outside():
    text = "See https://shop.example/sale. Or (https://shop.example/faq), thanks!"
    assert (
        rewrite_text(text, lambda url: f"<{url}>")
        == "See <https://shop.example/sale>. Or (<https://shop.example/faq>), thanks!"
    )


def test_email_parts_and_push_deep_links_go_through_herald():
    tracked = tracked_message(
        message(
            content={
                "subject": "https://not.a.link.example in a subject stays",
                "html": '<a href="https://shop.example/sale">Sale</a> <a href="https://herald.example/unsubscribe/t">Unsubscribe</a>',
                "text": "Sale: https://shop.example/sale",
            },
            data={"url": "https://shop.example/sale", "deep_link": "myapp://sale", "order": 42},
        ),
        SECRET,
        BASE + "/",
    )

    assert tracked.content["subject"] == "https://not.a.link.example in a subject stays"
    html_link = tracked.content["html"].split('"')[1]
    assert html_link.startswith(f"{BASE}/c/") and original(html_link) == "https://shop.example/sale"
    assert 'href="https://herald.example/unsubscribe/t"' in tracked.content["html"]
    assert original(tracked.content["text"].removeprefix("Sale: ")) == "https://shop.example/sale"
    assert original(tracked.data["url"]) == "https://shop.example/sale"
    assert tracked.data["deep_link"] == "myapp://sale" and tracked.data["order"] == 42
    assert read_click_token(SECRET, tracked.data["url"].rsplit("/", 1)[1]).channel == "email"


def test_sms_is_never_rewritten_and_the_setting_turns_tracking_off():
    config = {"TRACK_CLICKS": True, "SECRET_KEY": SECRET, "BASE_URL": BASE}
    sms = message("sms", content={"text": "Sale: https://shop.example/sale"})
    assert track(sms, config) is sms
    email = message("email", content={"text": "Sale: https://shop.example/sale"})
    assert track(email, config).content["text"] != email.content["text"]
    assert track(email, {**config, "TRACK_CLICKS": False}) is email


def test_batch_signed_tokens_are_itsdangerous_tokens_byte_for_byte():
    """The key is derived once per worker (app.delivery.signed), yet old links and new ones read either way."""
    from itsdangerous import URLSafeSerializer

    from app.delivery.unsubscribe import SALT as UNSUBSCRIBE_SALT
    from app.delivery.unsubscribe import read_unsubscribe_token, unsubscribe_token

    reference = URLSafeSerializer(SECRET, salt="herald-click")
    for url in ("https://shop.example/spring", "https://a.example/" + "a" * 300, "https://zoë.example/ñ?q=✓"):
        token = click_token(SECRET, "n1", "email", url)
        assert token == reference.dumps(["n1", "email", url])
        assert read_click_token(SECRET, reference.dumps(["n1", "email", url])).url == url
    token = unsubscribe_token(SECRET, "Zoë-1", "promo")
    assert token == URLSafeSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps({"u": "Zoë-1", "c": "promo"})
    assert read_unsubscribe_token(SECRET, token) == ("Zoë-1", "promo")
    assert read_unsubscribe_token("another-secret", token) is None
    assert read_click_token(SECRET, token) is None  # another salt: never a click
