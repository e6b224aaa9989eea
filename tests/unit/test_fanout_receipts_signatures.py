import base64
import socket

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.channels.base import Outcome, Result
from app.delivery.endpoints import resolved_address_problem
from app.delivery.fanout import combine
from app.delivery.receipts import SENDGRID_FINAL, TWILIO_FINAL, receipt_transition, sendgrid_suppression_reason
from app.delivery.signatures import sendgrid_signature_valid, twilio_signature, twilio_signature_valid

OK = Result(Outcome.DISPATCHED, "fcm", provider_message_id="m1")
GONE = Result(Outcome.TOKEN_GONE, "apns", error_code="Unregistered")
DOWN = Result(Outcome.TRANSIENT, "fcm", error_code="UNAVAILABLE", retry_after=5, provider_fault=True)
WAIT = Result(Outcome.WAIT, "apns", error_code="circuit_open", retry_after=30)
BIG = Result(Outcome.PERMANENT, "apns", error_code="payload_too_large")


def test_one_device_reached_makes_the_delivery_a_success_and_still_reports_the_dead_token():
    result = combine("push", [(1, GONE), (2, OK), (3, DOWN)])
    assert result.outcome is Outcome.DISPATCHED and result.provider_message_id == "m1"
    assert result.dead_devices == ((1, "apns: Unregistered"),)
    assert (
        "device 1: apns token_gone Unregistered (deactivated)" in result.detail and "device 2: fcm ok" in result.detail
    )


def test_nobody_reached_but_a_transient_failure_retries_the_whole_delivery():
    result = combine("push", [(1, GONE), (2, DOWN), (3, WAIT)])
    assert (result.outcome, result.retry_after, result.dead_devices) == (
        Outcome.TRANSIENT,
        5,
        ((1, "apns: Unregistered"),),
    )


def test_only_waiting_devices_wait_and_all_dead_devices_are_token_gone():
    assert combine("push", [(1, WAIT), (2, GONE)]).outcome is Outcome.WAIT
    assert combine("push", [(1, GONE), (2, GONE)]).outcome is Outcome.TOKEN_GONE
    assert combine("push", [(1, BIG), (2, GONE)]).outcome is Outcome.PERMANENT


def test_no_active_device_is_a_permanent_failure():
    assert combine("push", []).error_code == "no_active_device"


def test_only_a_dispatched_delivery_is_settled_by_a_receipt():
    assert receipt_transition("DISPATCHED", "delivered", TWILIO_FINAL) == "DELIVERED"
    assert receipt_transition("DISPATCHED", "undelivered", TWILIO_FINAL) == "FAILED"
    assert receipt_transition("DISPATCHED", "sent", TWILIO_FINAL) is None
    assert receipt_transition("DELIVERED", "failed", TWILIO_FINAL) is None
    assert receipt_transition("PENDING", "delivered", TWILIO_FINAL) is None
    assert receipt_transition("DISPATCHED", "bounce", SENDGRID_FINAL) == "FAILED"


def test_hard_bounces_and_complaints_suppress_soft_blocks_do_not():
    assert sendgrid_suppression_reason({"event": "bounce", "type": "bounce"}) == "hard bounce (sendgrid)"
    assert sendgrid_suppression_reason({"event": "spamreport"}) == "complaint (sendgrid)"
    assert sendgrid_suppression_reason({"event": "bounce", "type": "blocked"}) is None
    assert sendgrid_suppression_reason({"event": "delivered"}) is None


def test_twilio_signature_matches_twilios_documented_example():
    # The vector from https://www.twilio.com/docs/usage/security (and twilio-php RequestValidatorTest).
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature(url, params, "12345") == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_signature_valid(url, params, "12345", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not twilio_signature_valid(url, params + [("Body", "x")], "12345", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_sendgrid_signature_covers_timestamp_and_body():
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    signature = base64.b64encode(key.sign(b"1700000000" + b"[]", ec.ECDSA(hashes.SHA256()))).decode()
    assert sendgrid_signature_valid(public, "1700000000", b"[]", signature)
    assert not sendgrid_signature_valid(public, "1700000001", b"[]", signature)
    assert not sendgrid_signature_valid(public, "1700000000", b"[{}]", signature)
    assert not sendgrid_signature_valid(public, "1700000000", b"[]", "not base64!")


def fake_resolver(*addresses):
    def resolve(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]

    return resolve


def test_a_public_name_that_resolves_to_a_private_address_is_refused():
    assert resolved_address_problem("push.example.com", resolve=fake_resolver("93.184.216.34")) is None
    assert "non-public" in resolved_address_problem(
        "push.example.com", resolve=fake_resolver("93.184.216.34", "10.0.0.5")
    )
    assert "non-public" in resolved_address_problem("rebind.example.com", resolve=fake_resolver("127.0.0.1"))
    own = frozenset({"push.lan.example"})  # HERALD_WEB_PUSH_PRIVATE_HOSTS: the operator's own push service
    assert resolved_address_problem("push.lan.example", own, resolve=fake_resolver("10.0.0.5")) is None
    assert "non-public" in resolved_address_problem("meta.example.com", own, resolve=fake_resolver("169.254.169.254"))


def test_a_host_that_does_not_resolve_is_refused():
    def fail(*args, **kwargs):
        raise socket.gaierror("no such host")

    assert "does not resolve" in resolved_address_problem("nowhere.example", resolve=fail)
