import pytest

from app.config import ConfigError, from_environment


def test_defaults_use_instance_folder_sqlite_and_embedded_redis(tmp_path):
    config = from_environment({}, instance_path=tmp_path)
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'herald.db'}"
    assert config["REDIS_URL"] == f"unix://{tmp_path / 'redis.sock'}"
    assert config["REDIS_EMBEDDED"] is True


def test_secret_key_is_generated_once_and_kept(tmp_path):
    first = from_environment({}, instance_path=tmp_path)["SECRET_KEY"]
    second = from_environment({}, instance_path=tmp_path)["SECRET_KEY"]
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_api_rate_limit_defaults_to_6000_a_minute_and_reads_the_setting(tmp_path):
    assert from_environment({}, instance_path=tmp_path)["API_RATE_LIMIT"] == "6000/minute"
    assert (
        from_environment({"HERALD_API_RATE_LIMIT": " 50/second "}, instance_path=tmp_path)["API_RATE_LIMIT"]
        == "50/second"
    )


def test_postgres_url_gets_the_psycopg2_driver(tmp_path):
    config = from_environment({"DATABASE_URL": "postgresql://u@127.0.0.1/db"}, instance_path=tmp_path)
    assert config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL must be sqlite"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL"),
        ("HERALD_BASE_URL", "example.com", "HERALD_BASE_URL"),
        ("SECRET_KEY", "short", "SECRET_KEY"),
        ("SMTP_URL", "localhost:25", "SMTP_URL"),
        ("HERALD_MARKETING_CAP_PER_HOUR", "many", "HERALD_MARKETING_CAP_PER_HOUR"),
        ("HERALD_API_RATE_LIMIT", "lots", "HERALD_API_RATE_LIMIT"),
        ("HERALD_API_RATE_LIMIT", "0/minute", "HERALD_API_RATE_LIMIT"),
        ("HERALD_API_RATE_LIMIT", "10/second;100/minute", "HERALD_API_RATE_LIMIT"),
    ],
)
def test_malformed_setting_names_itself_in_one_line(tmp_path, name, value, message):
    with pytest.raises(ConfigError) as error:
        from_environment({name: value}, instance_path=tmp_path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_default_base_url_follows_herald_port(tmp_path):
    assert from_environment({"HERALD_PORT": "5123"}, instance_path=tmp_path)["BASE_URL"] == "http://127.0.0.1:5123"
    assert from_environment({}, instance_path=tmp_path)["BASE_URL"] == "http://127.0.0.1:5000"
    explicit = {"HERALD_PORT": "5123", "HERALD_BASE_URL": "https://herald.example.com"}
    assert from_environment(explicit, instance_path=tmp_path)["BASE_URL"] == "https://herald.example.com"
