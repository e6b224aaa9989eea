"""The inbox sign-in token: HMAC-SHA256 of the user id with INBOX_SECRET, checked in constant time."""

import hashlib
import hmac

import pytest

from app.inbox import auth
from app.inbox.auth import token_is_valid, user_token

SECRET = "inbox-secret-for-tests"


def test_token_is_lowercase_hex_hmac_sha256_of_the_user_id():
    expected = hmac.new(SECRET.encode(), b"ana", hashlib.sha256).hexdigest()
    assert user_token(SECRET, "ana") == expected and expected == expected.lower() and len(expected) == 64


def test_the_right_token_opens_only_its_own_user():
    token = user_token(SECRET, "ana")
    assert token_is_valid(SECRET, "ana", token)
    assert not token_is_valid(SECRET, "bob", token)
    assert not token_is_valid(SECRET, "ana ", token)


def test_a_token_made_with_another_secret_is_refused():
    assert not token_is_valid(SECRET, "ana", user_token("some-other-secret", "ana"))


@pytest.mark.parametrize("token", ["", "0" * 64, "ana", None, "é" * 64, "\ud800", user_token(SECRET, "ana")[:-1]])
def test_malformed_tokens_are_refused_not_errors(token):
    assert not token_is_valid(SECRET, "ana", token)


def test_uppercase_hex_is_not_the_documented_form():
    assert not token_is_valid(SECRET, "ana", user_token(SECRET, "ana").upper())


def test_an_empty_user_id_never_signs_in():
    assert not token_is_valid(SECRET, "", user_token(SECRET, ""))


def test_comparison_goes_through_compare_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert token_is_valid(SECRET, "ana", user_token(SECRET, "ana"))
    assert len(calls) == 1
