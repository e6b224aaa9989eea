import pytest
from pydantic import ValidationError

from app.delivery.endpoints import push_endpoint_problem
from app.delivery.unsubscribe import read_unsubscribe_token, unsubscribe_token
from app.device_schemas import DeviceCreate
from app.schemas import NotificationCreate, UserUpsert


def fields_of(error: ValidationError) -> set[str]:
    return {".".join(map(str, e["loc"])) for e in error.errors()}


def test_unknown_channel_and_type_are_named():
    with pytest.raises(ValidationError) as error:
        NotificationCreate.model_validate({"user_id": "u", "type": "spam", "channels": ["fax"], "body": "x"})
    assert fields_of(error.value) == {"type", "channels.0"}


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError) as error:
        NotificationCreate.model_validate(
            {"user_id": "u", "type": "marketing", "channels": ["in_app"], "body": "x", "chanels": []}
        )
    assert fields_of(error.value) == {"chanels"}


def test_content_is_required():
    with pytest.raises(ValidationError):
        NotificationCreate.model_validate({"user_id": "u", "type": "marketing", "channels": ["in_app"]})


@pytest.mark.parametrize("phone", ["4155551234", "+1415555", "+999999999999", "+1 (415) 555-2671"])
def test_non_e164_phone_is_rejected(phone):
    with pytest.raises(ValidationError) as error:
        UserUpsert.model_validate({"phone": phone})
    assert fields_of(error.value) == {"phone"}


def test_valid_user_fields_are_normalised():
    user = UserUpsert.model_validate(
        {"phone": "+14155552671", "timezone": "Asia/Singapore", "email": "Ana@Example.COM"}
    )
    assert (user.phone, user.timezone, user.email) == ("+14155552671", "Asia/Singapore", "ana@example.com")


def test_bad_time_zone_is_rejected():
    with pytest.raises(ValidationError) as error:
        UserUpsert.model_validate({"timezone": "Mars/Olympus"})
    assert "unknown IANA time zone" in str(error.value)


def test_device_token_must_match_platform():
    with pytest.raises(ValidationError):
        DeviceCreate.model_validate({"platform": "ios", "token": "not-hex"})
    with pytest.raises(ValidationError):
        DeviceCreate.model_validate({"platform": "web", "token": "abc"})
    assert DeviceCreate.model_validate({"platform": "ios", "token": "a" * 64}).token == "a" * 64


@pytest.mark.parametrize(
    "url",
    [
        "http://push.example.com/x",
        "https://localhost/x",
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://169.254.169.254/latest",
        "https://[::1]/x",
        "https://printer.local/x",
        "https://intranet/x",
    ],
)
def test_private_or_plaintext_push_endpoints_are_refused(url):
    assert push_endpoint_problem(url) is not None


def test_public_https_push_endpoint_is_fine_and_a_private_one_only_when_the_operator_lists_its_host():
    assert push_endpoint_problem("https://fcm.googleapis.com/fcm/send/abc") is None
    own = frozenset({"127.0.0.1", "push.lan"})
    assert push_endpoint_problem("http://127.0.0.1:8080/push", own) is None
    assert push_endpoint_problem("https://push.lan/x", own) is None
    assert push_endpoint_problem("ftp://push.lan/x", own) is not None
    for other in ("http://localhost:8080/push", "https://10.0.0.8/x", "https://[::1]/x", "https://printer.local/x"):
        assert push_endpoint_problem(other, own) is not None, other


def test_unsubscribe_token_round_trips_and_rejects_forgery():
    token = unsubscribe_token("s" * 32, "ana", "promotions")
    assert read_unsubscribe_token("s" * 32, token) == ("ana", "promotions")
    assert read_unsubscribe_token("t" * 32, token) is None
    assert read_unsubscribe_token("s" * 32, token[:-2] + "xx") is None
