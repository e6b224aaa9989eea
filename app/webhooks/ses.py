"""Amazon SES bounces, complaints and deliveries, through a signed SNS subscription.

``POST /webhooks/email/ses`` is the HTTPS endpoint of an SNS topic that SES publishes to. Every
message's signature is checked (:mod:`app.delivery.sns`) with the certificate at its SigningCertURL,
which must be an ``https://sns.<region>.amazonaws.com`` URL, and its TopicArn must be listed in
``SES_SNS_TOPIC_ARNS``; otherwise 403 and nothing changes. A SubscriptionConfirmation is confirmed
by fetching its SubscribeURL (again only on an SNS host). A notification goes the way SendGrid's
events do (:mod:`app.webhooks.email`): a hard bounce or a complaint suppresses the address, a
bounce or a delivery settles the message SES named.
"""

from __future__ import annotations

import json
import logging

import httpx
from flask import abort, current_app, jsonify, request

from app.channels.email import SmtpEmail
from app.delivery import sns
from app.delivery.receipts import SES_FINAL, ses_event
from app.extensions import db
from app.webhooks.blueprint import bp
from app.webhooks.receipts import settle, suppress

log = logging.getLogger(__name__)

CERT_TIMEOUT = 5.0
_certificates: dict[str, bytes] = {}  # SigningCertURL -> PEM; SNS rotates rarely, so a few per process
MAX_CERTIFICATES = 16


def _certificate(url: str) -> bytes | None:
    if url not in _certificates:
        try:
            response = httpx.get(url, timeout=CERT_TIMEOUT, follow_redirects=False)
        except httpx.HTTPError as error:
            log.warning("SNS signing certificate %s could not be fetched: %s", url, error)
            return None
        if response.status_code != 200:
            return None
        if len(_certificates) >= MAX_CERTIFICATES:
            _certificates.clear()
        _certificates[url] = response.content
    return _certificates[url]


def _verified_message() -> dict:
    """The SNS message of this request, or a 400/403 abort."""
    try:
        message = json.loads(request.get_data())
    except ValueError:
        abort(400, "body is not JSON")
    if not isinstance(message, dict):
        abort(400, "body must be an SNS message object")
    config = current_app.config
    if message.get("TopicArn") not in config.get("SES_SNS_TOPIC_ARNS", ()):
        abort(403, "TopicArn is not one of SES_SNS_TOPIC_ARNS")
    test_prefix = config.get("SNS_TEST_CERT_PREFIX")
    cert_url = message.get("SigningCertURL")
    if not sns.aws_url(cert_url, test_prefix):
        abort(403, "SigningCertURL is not an https URL on an sns.<region>.amazonaws.com host")
    certificate = _certificate(cert_url)
    if certificate is None:
        abort(503, "the SNS signing certificate could not be fetched")
    if not sns.signature_valid(message, certificate):
        abort(403, "bad SNS signature")
    return message


@bp.post("/email/ses")
def ses_events():
    message = _verified_message()
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        return _confirm(message)
    if kind != "Notification":
        return jsonify({"type": kind})
    try:
        notification = json.loads(message.get("Message") or "")
    except ValueError:
        abort(400, "Message is not an SES notification (JSON)")
    if not isinstance(notification, dict):
        abort(400, "Message is not an SES notification (JSON)")
    event = ses_event(notification)
    channel = SmtpEmail.name
    for address, reason in event.suppress:
        suppress(channel, address, reason)
    settled = bool(
        event.message_id
        and settle(
            channel, event.message_id, event.kind, SES_FINAL, error_code=f"ses_{event.kind}", detail=event.detail
        )
    )
    db.session.commit()
    return jsonify({"type": event.kind, "suppressed": len(event.suppress), "settled": settled})


def _confirm(message: dict):
    url = message.get("SubscribeURL")
    if not sns.aws_url(url, current_app.config.get("SNS_TEST_CERT_PREFIX")):
        abort(403, "SubscribeURL is not an https URL on an sns.<region>.amazonaws.com host")
    try:
        response = httpx.get(url, timeout=CERT_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as error:
        abort(502, f"confirming the subscription failed: {type(error).__name__}")
    if response.status_code != 200:
        abort(502, f"confirming the subscription failed: SNS answered {response.status_code}")
    log.info("confirmed the SNS subscription to %s", message.get("TopicArn"))
    return jsonify({"type": "SubscriptionConfirmation", "confirmed": True})
