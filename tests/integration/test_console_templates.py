"""Template editor through the Flask test client: create, edit, versions, diff, restore, live preview, save checks."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Template
from tests.factories import make_recipient, make_staff

PASSWORD = "correct horse battery"


@pytest.fixture
def marketer(app, client):
    make_staff(email="mia@example.com", password=PASSWORD, role="marketer")
    client.post("/console/login", data={"email": "mia@example.com", "password": PASSWORD})
    return client


def form(**overrides) -> dict:
    data = {
        "key": "low-balance",
        "name": "Low balance",
        "category": "billing",
        "type": "transactional",
        "default_locale": "en",
        "locales": ["en"],
        "v-en-in_app-title": "Balance low",
        "v-en-in_app-body": "Hi {{ recipient.id }}, top up.",
        "v-en-sms-text": "Balance {{ recipient.attributes.balance }}",
        "action": "save",
    }
    data.update(overrides)
    return data


def field_error(html: str, name: str) -> str:
    match = re.search(rf'id="err-{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no error slot for {name}"
    return match.group(1).strip()


def test_marketer_creates_a_template_as_version_one(marketer):
    response = marketer.post("/console/templates/new", data=form())
    assert response.status_code == 302
    template = db.session.scalar(select(Template).where(Template.key == "low-balance"))
    assert template.current_version == 1 and template.type == "transactional" and template.category == "billing"
    assert template.version(1).variants == {
        "en": {
            "in_app": {"title": "Balance low", "body": "Hi {{ recipient.id }}, top up."},
            "sms": {"text": "Balance {{ recipient.attributes.balance }}"},
        }
    }
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "template.create"))
    assert audit.actor == "mia@example.com" and audit.after["version"] == 1


def test_every_save_is_a_new_immutable_version_and_old_versions_stay_readable(marketer):
    marketer.post("/console/templates/new", data=form())
    template = db.session.scalar(select(Template))
    response = marketer.post(
        f"/console/templates/{template.id}",
        data=form(**{"v-en-sms-text": "Now {{ recipient.attributes.balance }}", "base_version": "1"}),
    )
    assert response.status_code == 302
    db.session.expire_all()
    template = db.session.scalar(select(Template))
    assert template.current_version == 2
    assert template.version(1).variants["en"]["sms"]["text"] == "Balance {{ recipient.attributes.balance }}"
    assert template.version(2).variants["en"]["sms"]["text"] == "Now {{ recipient.attributes.balance }}"
    assert template.version().version == 2
    page = marketer.get(f"/console/templates/{template.id}/versions").get_data(as_text=True)
    assert 'data-testid="version-1"' in page and 'data-testid="version-2"' in page


def test_key_cannot_change_and_a_stale_editor_cannot_overwrite_a_newer_version(marketer):
    marketer.post("/console/templates/new", data=form())
    template = db.session.scalar(select(Template))
    marketer.post(f"/console/templates/{template.id}", data=form(key="renamed", base_version="1"))
    stale = marketer.post(
        f"/console/templates/{template.id}", data=form(base_version="1", **{"v-en-sms-text": "Lost update"})
    )
    assert stale.status_code == 409
    assert "Someone saved a newer version" in stale.get_data(as_text=True)
    db.session.expire_all()
    template = db.session.scalar(select(Template))
    assert template.key == "low-balance" and template.current_version == 2


def test_syntax_error_blocks_the_save_and_names_the_field_and_line(marketer):
    response = marketer.post(
        "/console/templates/new", data=form(**{"v-en-in_app-body": "Hi\nthere {{ recipient.id }\n"})
    )
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "v-en-in_app-body").startswith("Line 2:")
    assert db.session.scalar(select(Template)) is None


def test_variable_outside_recipient_data_notification_blocks_the_save(marketer):
    response = marketer.post("/console/templates/new", data=form(**{"v-en-sms-text": "Hi {{ user.name }}"}))
    assert response.status_code == 422
    assert "Unknown variable &#39;user&#39;" in field_error(response.get_data(as_text=True), "v-en-sms-text")
    assert db.session.scalar(select(Template)) is None


def test_half_filled_channel_and_duplicate_key_are_refused_next_to_the_field(marketer):
    response = marketer.post("/console/templates/new", data=form(**{"v-en-push-title": "Only a title"}))
    assert response.status_code == 422
    assert "Required" in field_error(response.get_data(as_text=True), "v-en-push-body")
    marketer.post("/console/templates/new", data=form())
    again = marketer.post("/console/templates/new", data=form())
    assert again.status_code == 422 and "exists already" in again.get_data(as_text=True)


def test_locales_are_added_and_removed_without_saving(marketer):
    page = marketer.post("/console/templates/new", data=form(action="add_locale", new_locale="pt-BR")).get_data(
        as_text=True
    )
    assert 'name="locales" value="pt-BR"' in page and 'name="v-pt-BR-sms-text"' in page
    assert db.session.scalar(select(Template)) is None
    page = marketer.post(
        "/console/templates/new", data=form(locales=["en", "pt-BR"], remove_locale="pt-BR", action="")
    ).get_data(as_text=True)
    assert 'value="pt-BR"' not in page
    refused = marketer.post("/console/templates/new", data=form(action="add_locale", new_locale="portuguese")).get_data(
        as_text=True
    )
    assert "A locale looks like en or pt-BR." in refused


def test_saved_locales_each_keep_their_variants(marketer):
    marketer.post(
        "/console/templates/new",
        data=form(locales=["en", "pt"], **{"v-pt-sms-text": "Saldo {{ recipient.attributes.balance }}"}),
    )
    template = db.session.scalar(select(Template))
    assert template.version().variants["pt"] == {"sms": {"text": "Saldo {{ recipient.attributes.balance }}"}}


def test_preview_renders_for_the_chosen_recipient_with_segments_and_push_size(marketer):
    make_recipient(external_id="ana", locale="en", attributes={"balance": 12})
    body = form(
        preview_user="ana",
        sample_data='{"amount": 5}',
        **{
            "v-en-sms-text": "Balance {{ recipient.attributes.balance }} · add {{ data.amount }}",
            "v-en-push-title": "Low",
            "v-en-push-body": "Only {{ recipient.attributes.balance }} left",
        },
    )
    html = marketer.post("/console/templates/preview", data=body, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'data-testid="preview-recipient">ana<' in html
    assert "Balance 12 · add 5" in html
    assert "Only 12 left" in html
    # "·" is not GSM-7, so the SMS is UCS-2.
    assert re.search(r'data-testid="sms-segments">\s*1 segment · UCS-2 · 18 characters', html)
    apns = int(re.search(r"APNs (\d+) bytes", html).group(1))
    assert 60 < apns < 4096 and "too big" not in html


def test_preview_shows_undefined_variables_and_syntax_errors_next_to_the_field_with_the_line(marketer):
    make_recipient(external_id="ana", attributes={})
    body = form(
        preview_user="ana",
        **{
            "v-en-in_app-body": "Hello\n\n{{ recipient.attributes.nickname }}",
            "v-en-sms-text": "{% if %}",
        },
    )
    html = marketer.post("/console/templates/preview", data=body).get_data(as_text=True)
    assert field_error(html, "v-en-in_app-body") == "Line 3: &#39;dict object&#39; has no attribute &#39;nickname&#39;"
    assert field_error(html, "v-en-sms-text").startswith("Line 1: ")
    assert field_error(html, "v-en-in_app-title") == ""


def test_preview_lays_out_the_email_variant_as_a_mail_and_other_channels_as_messages(marketer):
    """The email layout (subject, sandboxed HTML frame, text part) follows the registry's previews_as_mail."""
    make_recipient(external_id="ana", attributes={"balance": 12})
    html = marketer.post(
        "/console/templates/preview",
        data=form(
            preview_user="ana",
            **{
                "v-en-email-subject": "Balance {{ recipient.attributes.balance }}",
                "v-en-email-html": "<p>Only {{ recipient.attributes.balance }}</p>",
                "v-en-email-text": "Plain 12",
            },
        ),
    ).get_data(as_text=True)
    email = re.search(r'data-testid="preview-email">(.*?)</section>', html, re.S).group(1)
    assert '<p class="preview-subject"><strong>Balance 12</strong></p>' in email
    assert re.search(r'<iframe class="preview-html" sandbox="" [^>]*srcdoc="&lt;p&gt;Only 12&lt;/p&gt;"', email)
    assert '<pre class="preview-text">Plain 12</pre>' in email
    sms = re.search(r'data-testid="preview-sms">(.*?)</section>', html, re.S).group(1)
    assert "<iframe" not in sms and 'data-testid="preview-sms-text">Balance 12<' in sms


def test_push_payload_over_4096_bytes_is_flagged(marketer):
    make_recipient(external_id="ana")
    html = marketer.post(
        "/console/templates/preview",
        data=form(
            preview_user="ana",
            sample_data='{"blob": "%s"}' % ("x" * 4000),
            **{
                "v-en-push-title": "Hi",
                "v-en-push-body": "Body",
            },
        ),
    ).get_data(as_text=True)
    assert "too big" in html


def test_preview_without_a_recipient_asks_for_one_and_unknown_ids_are_named(marketer):
    html = marketer.post("/console/templates/preview", data=form()).get_data(as_text=True)
    assert "Choose a recipient" in html
    html = marketer.post("/console/templates/preview", data=form(preview_user="ghost")).get_data(as_text=True)
    assert "No recipient has user id &#39;ghost&#39;" in html
    html = marketer.post("/console/templates/preview", data=form(preview_user="ghost", sample_data="[1]")).get_data(
        as_text=True
    )
    assert "must be a JSON object" in field_error(html, "sample_data")


def test_recipient_search_suggests_user_ids_by_prefix(marketer):
    for user in ("ana", "anabel", "bob", "an%"):
        make_recipient(external_id=user)
    html = marketer.get("/console/templates/recipients?preview_user=an").get_data(as_text=True)
    assert re.findall(r'value="([^"]+)"', html) == ["an%", "ana", "anabel"]
    html = marketer.get("/console/templates/recipients?preview_user=an%25").get_data(as_text=True)
    assert re.findall(r'value="([^"]+)"', html) == ["an%"]


def test_diff_between_any_two_versions_is_a_table_per_changed_field(marketer):
    marketer.post("/console/templates/new", data=form())
    template = db.session.scalar(select(Template))
    marketer.post(
        f"/console/templates/{template.id}",
        data=form(base_version="1", **{"v-en-sms-text": "Balance is {{ recipient.attributes.balance }}"}),
    )
    marketer.post(
        f"/console/templates/{template.id}",
        data=form(
            base_version="2",
            **{"v-en-sms-text": "Balance is {{ recipient.attributes.balance }}", "v-en-in_app-title": "Top up"},
        ),
    )
    html = marketer.get(f"/console/templates/{template.id}/diff?a=1&b=3").get_data(as_text=True)
    assert re.findall(r'data-testid="diff-field">([^<]+)<', html) == ["en · In-app · title", "en · SMS · text"]
    assert "<code>Balance is {{ recipient.attributes.balance }}</code>" in html
    assert "diff-line--replace" in html
    same = marketer.get(f"/console/templates/{template.id}/diff?a=2&b=2").get_data(as_text=True)
    assert 'data-testid="diff-empty"' in same
    assert marketer.get(f"/console/templates/{template.id}/diff?a=1&b=9").status_code == 404


def test_restore_saves_the_old_content_as_a_new_version(marketer):
    marketer.post("/console/templates/new", data=form())
    template = db.session.scalar(select(Template))
    marketer.post(f"/console/templates/{template.id}", data=form(base_version="1", **{"v-en-sms-text": "Changed"}))
    response = marketer.post(f"/console/templates/{template.id}/versions/1/restore")
    assert response.status_code == 302
    db.session.expire_all()
    template = db.session.scalar(select(Template))
    assert template.current_version == 3
    assert template.version(3).variants == template.version(1).variants
    assert template.version(2).variants["en"]["sms"]["text"] == "Changed"
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "template.restore")).after == {"version": 3}


def test_editor_keeps_channels_it_does_not_show(marketer):
    from tests.factories import make_template

    template = make_template(
        key="web", variants={"en": {"sms": {"text": "Hi"}, "web_push": {"title": "W", "body": "B"}}}
    )
    marketer.post(
        f"/console/templates/{template.id}",
        data={
            "name": "Web",
            "category": "general",
            "type": "marketing",
            "default_locale": "en",
            "locales": ["en"],
            "v-en-sms-text": "Hi again",
            "base_version": "1",
        },
    )
    db.session.expire_all()
    assert db.session.get(Template, template.id).version(2).variants["en"] == {
        "sms": {"text": "Hi again"},
        "web_push": {"title": "W", "body": "B"},
    }


def test_pages_need_a_signed_in_staff_member(client, app):
    assert client.get("/console/templates").status_code == 302
    assert (
        client.post("/console/templates/preview", data=form(), headers={"HX-Request": "true"})
        .headers["HX-Redirect"]
        .startswith("/console/login")
    )


def test_list_edit_and_version_pages_render(marketer):
    marketer.post("/console/templates/new", data=form())
    template = db.session.scalar(select(Template))
    assert "low-balance" in marketer.get("/console/templates").get_data(as_text=True)
    page = marketer.get(f"/console/templates/{template.id}").get_data(as_text=True)
    assert 'hx-trigger="input changed delay:300ms, load"' in page and "Balance low" in page
    assert marketer.get("/console/templates/new").status_code == 200
    assert marketer.get("/console/templates/999").status_code == 404
