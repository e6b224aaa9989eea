"""Email provider APIs: settings, the shared-frame split, SES notifications read -- the pure parts."""

from __future__ import annotations

import pytest

from app.channels.email_api.common import frame
from app.config import ConfigError, from_environment
from app.delivery.receipts import ses_event


def test_email_provider_defaults_to_smtp_and_the_real_endpoints(tmp_path):
    config = from_environment({}, instance_path=tmp_path)
    assert config["EMAIL_PROVIDER"] == "smtp" and config["EMAIL_DOMAIN_RATE"] == 0.0
    assert config["SENDGRID_API_URL"] == "https://api.sendgrid.com"
    assert config["POSTMARK_API_URL"] == "https://api.postmarkapp.com"
    assert config["SES_ENDPOINT_URL"] is None and config["SNS_TEST_CERT_PREFIX"] is None


def test_ses_defaults_to_its_starting_quota_per_sending_domain(tmp_path):
    config = from_environment({"EMAIL_PROVIDER": "SES", "SES_SNS_TOPIC_ARNS": "arn:a, arn:b"}, instance_path=tmp_path)
    assert (config["EMAIL_PROVIDER"], config["EMAIL_DOMAIN_RATE"]) == ("ses", 14.0)
    assert config["SES_SNS_TOPIC_ARNS"] == ("arn:a", "arn:b")
    limited = from_environment(
        {"EMAIL_PROVIDER": "ses", "HERALD_EMAIL_DOMAIN_RATE": "600/minute"}, instance_path=tmp_path
    )
    assert limited["EMAIL_DOMAIN_RATE"] == 10.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMAIL_PROVIDER", "mailgun"),
        ("SENDGRID_API_URL", "api.sendgrid.com"),
        ("SES_ENDPOINT_URL", "email.eu-west-1"),
        ("HERALD_EMAIL_DOMAIN_RATE", "fast"),
        ("HERALD_SNS_TEST_CERT_PREFIX", "https://sns.evil.example/"),
    ],
)
def test_a_bad_email_api_setting_names_itself(tmp_path, name, value):
    with pytest.raises(ConfigError) as error:
        from_environment({name: value}, instance_path=tmp_path)
    assert name in str(error.value)


def test_frame_keeps_what_recipients_share_and_the_differing_middle_per_recipient():
    found = frame(["<p>Hi Ann, sale!</p>", "<p>Hi Bo, sale!</p>", "<p>Hi Ann, sale!</p>"])
    assert (found.prefix, found.suffix, found.parts) == ("<p>Hi ", ", sale!</p>", ("Ann", "Bo", "Ann"))
    assert not found.shared
    alike = frame(["same", "same"])
    assert alike.shared and alike.prefix + alike.parts[0] + alike.suffix == "same"
    nested = frame(["ab", "aab"])  # prefix and suffix never overlap
    assert [nested.prefix + part + nested.suffix for part in nested.parts] == ["ab", "aab"]


def test_ses_event_reads_hard_and_soft_bounces_complaints_and_configuration_set_events():
    hard = ses_event(
        {
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "Ana <ANA@x.com>"}]},
            "mail": {"messageId": "m1"},
        }
    )
    assert (hard.kind, hard.message_id, hard.suppress) == ("bounce", "m1", (("ana@x.com", "hard bounce (ses)"),))
    soft = ses_event({"eventType": "Bounce", "bounce": {"bounceType": "Transient", "bouncedRecipients": []}})
    assert soft.kind == "bounce" and soft.suppress == ()
    complaint = ses_event(
        {"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "b@x.com"}]}}
    )
    assert complaint.suppress == (("b@x.com", "complaint (ses)"),)
    assert ses_event({"notificationType": "Delivery", "mail": {}}).message_id is None
