import pytest

from app.config import ConfigError, from_environment
from app.settings_values import parse_rate


@pytest.mark.parametrize(
    ("text", "per_second"), [("1/second", 1.0), ("600000/minute", 10000.0), ("0", 0.0), ("7200/hour", 2.0)]
)
def test_rates_are_read_as_sends_per_second(text, per_second):
    assert parse_rate("X", text, "0") == per_second


def test_provider_defaults_are_the_documented_ones(tmp_path):
    config = from_environment({}, instance_path=tmp_path)
    assert config["TWILIO_API_BASE"] == "https://api.twilio.com" and config["SMS_RATE"] == 1.0
    assert config["CHANNEL_SLOTS"] == 1
    # No private push service is trusted unless the operator names its host.
    assert config["WEB_PUSH_PRIVATE_HOSTS"] == frozenset()
    listed = from_environment(
        {"HERALD_WEB_PUSH_PRIVATE_HOSTS": " Push.LAN, 10.0.0.7,[fd00::1] "}, instance_path=tmp_path
    )
    assert listed["WEB_PUSH_PRIVATE_HOSTS"] == {"push.lan", "10.0.0.7", "fd00::1"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HERALD_SMS_RATE", "fast"),
        ("HERALD_FCM_RATE", "-1/second"),
        ("TWILIO_API_BASE", "api.twilio.com"),
        ("HERALD_BREAKER_FAIL_MAX", "0"),
        ("HERALD_WEB_PUSH_PRIVATE_HOSTS", "https://push.lan/"),
        ("HERALD_WEB_PUSH_PRIVATE_HOSTS", "push.lan:8080"),
    ],
)
def test_malformed_provider_setting_names_itself(tmp_path, name, value):
    with pytest.raises(ConfigError) as error:
        from_environment({name: value}, instance_path=tmp_path)
    assert name in str(error.value)
