"""User tokens as pure functions: one clock passed in, every refusal named; and the settings that hold the key."""

from __future__ import annotations

import jwt
import pytest

from app.config import ConfigError, from_environment
from app.inbox.tokens import LEEWAY_SECONDS, TokenRefused, sign_user_token, verify_user_token

SECRET = "user-token-secret-for-the-unit-tests-0123456789"
NOW = 1_800_000_000
DAY = 86400


def verify(token, scope="inbox", now=NOW):
    return verify_user_token(token, SECRET, scope, now, DAY)


def refused(token, scope="inbox", now=NOW) -> str:
    with pytest.raises(TokenRefused) as caught:
        verify(token, scope, now)
    return caught.value.reason


def test_a_good_token_names_its_user_scopes_and_expiry():
    verified = verify(sign_user_token(SECRET, "ana", NOW + 60, "inbox stream", issued_at=NOW))
    assert (verified.user_id, verified.scopes, verified.expires_at) == ("ana", {"inbox", "stream"}, NOW + 60)


def test_without_a_scope_claim_a_token_is_good_for_every_scope():
    token = sign_user_token(SECRET, "ana", NOW + 60)
    assert all(verify(token, scope).user_id == "ana" for scope in ("inbox", "stream", "preferences"))


def test_expiry_allows_the_documented_clock_skew_and_no_more():
    token = sign_user_token(SECRET, "ana", NOW)
    assert verify(token, now=NOW + LEEWAY_SECONDS - 1).user_id == "ana"
    assert refused(token, now=NOW + LEEWAY_SECONDS) == "expired"


def test_nbf_or_iat_in_the_future_is_not_yet_valid():
    assert (
        refused(jwt.encode({"sub": "ana", "exp": NOW + 600, "nbf": NOW + 60}, SECRET, algorithm="HS256"))
        == "not_yet_valid"
    )
    assert (
        refused(jwt.encode({"sub": "ana", "exp": NOW + 600, "iat": NOW + 60}, SECRET, algorithm="HS256"))
        == "not_yet_valid"
    )


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"sub": "ana"}, "missing_claim"),
        ({"exp": NOW + 60}, "missing_claim"),
        ({"sub": "", "exp": NOW + 60}, "bad_claim"),
        ({"sub": "a" * 256, "exp": NOW + 60}, "bad_claim"),
        ({"sub": "ana", "exp": "tomorrow"}, "bad_claim"),
        ({"sub": "ana", "exp": True}, "bad_claim"),
        ({"sub": "ana", "exp": NOW + 60, "scope": ["inbox"]}, "bad_claim"),
        ({"sub": "ana", "exp": NOW + 60, "scope": "inbox admin"}, "bad_claim"),
        ({"sub": "ana", "exp": NOW + 60, "scope": "stream"}, "wrong_scope"),
        ({"sub": "ana", "exp": NOW + DAY + 3600}, "too_long_lived"),
    ],
)
def test_bad_claims_are_refused_by_name(claims, reason):
    assert refused(jwt.encode(claims, SECRET, algorithm="HS256")) == reason


def test_other_algorithms_and_alg_none_are_refused_before_the_signature_is_looked_at():
    assert refused(jwt.encode({"sub": "ana", "exp": NOW + 60}, SECRET * 2, algorithm="HS512")) == "wrong_algorithm"
    assert refused(jwt.encode({"sub": "ana", "exp": NOW + 60}, None, algorithm="none")) == "wrong_algorithm"


@pytest.mark.parametrize(
    "token, reason",
    [(None, "missing"), ("", "missing"), ("abc", "malformed"), ("a.b.c", "malformed"), ("\ud800.x.y", "malformed")],
)
def test_malformed_tokens_are_refused_not_errors(token, reason):
    assert refused(token) == reason


def test_a_token_signed_with_another_key_is_refused():
    assert refused(sign_user_token("another-secret-0123456789-0123456789", "ana", NOW + 60)) == "bad_signature"


def base_env(tmp_path, **extra) -> dict:
    return {"HERALD_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "s" * 32, **extra}


def test_the_token_key_defaults_to_one_derived_from_secret_key_and_never_the_link_key(tmp_path):
    config = from_environment(base_env(tmp_path))
    assert len(config["USER_TOKEN_SECRET"]) == 64 and config["USER_TOKEN_SECRET"] != config["INBOX_SECRET"]
    assert from_environment(base_env(tmp_path, HERALD_USER_TOKEN_SECRET="k" * 32))["USER_TOKEN_SECRET"] == "k" * 32


@pytest.mark.parametrize(
    "extra, named",
    [
        ({"HERALD_USER_TOKEN_SECRET": "short"}, "HERALD_USER_TOKEN_SECRET"),
        ({"HERALD_USER_TOKEN_SECRET": "x" * 40, "HERALD_INBOX_SECRET": "x" * 40}, "HERALD_USER_TOKEN_SECRET"),
        ({"HERALD_EMBED_ORIGINS": "https://app.example.com/path"}, "HERALD_EMBED_ORIGINS"),
        ({"HERALD_EMBED_ORIGINS": "app.example.com"}, "HERALD_EMBED_ORIGINS"),
        ({"HERALD_USER_TOKEN_MAX_SECONDS": "0"}, "HERALD_USER_TOKEN_MAX_SECONDS"),
    ],
)
def test_bad_embed_settings_stop_the_start_naming_the_setting(tmp_path, extra, named):
    with pytest.raises(ConfigError, match=named):
        from_environment(base_env(tmp_path, **extra))


def test_embed_origins_are_a_list_of_exact_origins(tmp_path):
    config = from_environment(base_env(tmp_path, HERALD_EMBED_ORIGINS="https://App.example.com, http://127.0.0.1:8001"))
    assert config["EMBED_ORIGINS"] == ("https://app.example.com", "http://127.0.0.1:8001")
