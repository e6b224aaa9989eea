"""User tokens (JWT HS256) on the inbox pages, the stream and the component's JSON endpoints, and their CORS rules.

Every refusal is a 401 whose JSON names the reason; the HMAC link keeps working
beside the tokens; the JSON endpoints never count Herald's cookies.
"""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.inbox.auth import SESSION_EXPIRES, user_token
from app.inbox.tokens import sign_user_token
from app.models import Recipient
from tests.factories import make_recipient
from tests.integration.test_inbox_pages import delivered
from tests.integration.test_stream import Stream, fast_heartbeat  # noqa: F401  (fixture)

HOST = "https://app.example.com"
FOREIGN_SECRET = "a-secret-this-herald-never-had-0123456789"


def token(app, user_id="ana", minutes=5, **claims) -> str:
    now = int(time.time())
    payload = {"sub": user_id, "exp": now + minutes * 60, "iat": now, **claims}
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, app.config["USER_TOKEN_SECRET"], algorithm="HS256"
    )


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def refused_tokens(app) -> dict[str, str]:
    """reason -> a token refused for it (for the ``inbox`` scope)."""
    now = int(time.time())
    secret = app.config["USER_TOKEN_SECRET"]
    header, payload, _sig = token(app).split(".")
    unsigned = jwt.api_jws.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    return {
        "expired": token(app, exp=now - 60, iat=now - 600),
        "not_yet_valid": token(app, nbf=now + 600),
        "wrong_algorithm": jwt.encode({"sub": "ana", "exp": now + 300}, secret + secret, algorithm="HS512"),
        "wrong_algorithm_none": f"{unsigned}.{payload}.",
        "bad_signature": jwt.encode({"sub": "ana", "exp": now + 300}, FOREIGN_SECRET, algorithm="HS256"),
        "wrong_scope": token(app, scope="stream preferences"),
        "malformed": "not-a-jwt",
        "malformed_parts": f"{header}.{payload}",
        "missing_claim": jwt.encode({"sub": "ana"}, secret, algorithm="HS256"),
        "too_long_lived": token(app, minutes=60 * 48),
    }


def reason_of(name: str) -> str:
    return name.split("_none")[0].split("_parts")[0]


@pytest.fixture
def ana(app):
    return make_recipient(external_id="ana")


@pytest.fixture
def embed_origin(app, monkeypatch):
    monkeypatch.setitem(app.config, "EMBED_ORIGINS", (HOST,))


# --- refusals, one per reason, on each place a token is accepted ----------------------------------------

REASONS = [
    "expired",
    "not_yet_valid",
    "wrong_algorithm",
    "wrong_algorithm_none",
    "bad_signature",
    "wrong_scope",
    "malformed",
    "malformed_parts",
    "missing_claim",
    "too_long_lived",
]


@pytest.mark.parametrize("name", REASONS)
def test_the_json_endpoints_refuse_a_bad_token_with_401_naming_the_reason(app, client, ana, name):
    response = client.get("/inbox/api/notifications", headers=bearer(refused_tokens(app)[name]))
    assert response.status_code == 401
    assert response.json["error"]["reason"] == reason_of(name), response.json
    assert response.json["error"]["code"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize("name", REASONS)
def test_the_stream_refuses_a_bad_token_in_the_query_or_the_header(app, client, ana, name):
    bad = refused_tokens(app)[name]
    needs_stream = name != "wrong_scope" or None
    bad = bad if needs_stream else token(app, scope="inbox")
    for response in (client.get(f"/inbox/stream?access_token={bad}"), client.get("/inbox/stream", headers=bearer(bad))):
        assert response.status_code == 401 and response.mimetype == "application/json"
        assert response.json["error"]["reason"] == reason_of(name)


@pytest.mark.parametrize("name", ["expired", "wrong_algorithm_none", "bad_signature", "malformed"])
def test_the_pages_refuse_a_bad_token_and_open_no_session(app, client, ana, name):
    response = client.get(f"/inbox?access_token={refused_tokens(app)[name]}", headers={"Accept": "application/json"})
    assert response.status_code == 401 and response.json["error"]["reason"] == reason_of(name)
    assert client.get("/inbox").status_code == 401


def test_a_person_opening_an_expired_link_reads_why_on_a_page(app, client, ana):
    response = client.get(f"/inbox?access_token={refused_tokens(app)['expired']}", headers={"Accept": "text/html"})
    assert response.status_code == 401 and "has expired" in response.get_data(as_text=True)


def test_without_a_token_the_json_endpoints_answer_401_missing_even_with_an_inbox_session(app, client, ana):
    assert client.get(f"/inbox?user=ana&token={user_token(app.config['INBOX_SECRET'], 'ana')}").status_code == 303
    assert client.get("/inbox").status_code == 200  # the HMAC link still signs in
    response = client.get("/inbox/api/notifications")
    assert response.status_code == 401 and response.json["error"]["reason"] == "missing"
    assert client.post("/inbox/api/read-all").json["error"]["reason"] == "missing"


def test_a_token_signed_with_the_inbox_link_secret_is_refused(app, client, ana):
    foreign = jwt.encode({"sub": "ana", "exp": int(time.time()) + 60}, app.config["INBOX_SECRET"], algorithm="HS256")
    assert client.get("/inbox/api/notifications", headers=bearer(foreign)).json["error"]["reason"] == "bad_signature"


# --- what a good token does -------------------------------------------------------------------------


def test_a_good_token_lists_marks_read_and_archives_only_its_own_users_entries(app, client, ana):
    bob = make_recipient(external_id="bob")
    first, second = delivered(ana, minutes_ago=2, title="First"), delivered(ana, minutes_ago=1, title="Second")
    bobs = delivered(bob, title="Bob's")
    auth = bearer(token(app))

    page = client.get("/inbox/api/notifications", headers=auth).json
    assert [e["headline"] for e in page["entries"]] == ["Second", "First"] and page["unread_count"] == 2
    assert page["entries"][0]["ids"] == [second.id] and page["entries"][0]["unread"] is True

    assert client.post("/inbox/api/read", json={"ids": [first.id, bobs.id]}, headers=auth).json == {
        "marked_read": 1,
        "unread_count": 1,
    }
    assert client.post("/inbox/api/archive", json={"ids": [second.id]}, headers=auth).json == {
        "archived": 1,
        "unread_count": 0,
    }
    page = client.get("/inbox/api/notifications", headers=auth).json
    assert [(e["headline"], e["unread"]) for e in page["entries"]] == [("First", False)]
    bob_page = client.get("/inbox/api/notifications", headers=bearer(token(app, "bob"))).json
    assert bob_page["unread_count"] == 1


def test_read_all_through_the_json_endpoint(app, client, ana):
    delivered(ana, title="One"), delivered(ana, title="Two")
    assert client.post("/inbox/api/read-all", headers=bearer(token(app))).json == {"marked_read": 2, "unread_count": 0}


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "ids"),
        ({"ids": "x"}, "ids"),
        ({"ids": []}, "ids"),
        ({"ids": ["ZZ"]}, "ids.0"),
        ({"ids": [1]}, "ids.0"),
        ({"ids": ["a" * 32], "x": 1}, "x"),
    ],
)
def test_bad_ids_are_a_400_naming_the_field(app, client, ana, body, field):
    response = client.post("/inbox/api/read", json=body, headers=bearer(token(app)))
    assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == field


def test_bad_query_values_are_a_400_naming_the_field(app, client, ana):
    auth = bearer(token(app))
    for query, field in (("limit=0", "limit"), ("unread_only=yes", "unread_only"), ("cursor=nope", "cursor")):
        response = client.get(f"/inbox/api/notifications?{query}", headers=auth)
        assert response.status_code == 400 and response.json["error"]["fields"][0]["field"] == field


def test_a_token_for_an_unknown_user_makes_the_recipient_as_the_link_does(app, client):
    assert client.get("/inbox/api/notifications", headers=bearer(token(app, "newcomer"))).json["unread_count"] == 0


def test_a_page_opened_with_a_token_gets_a_session_limited_to_its_scope_and_lifetime(app, client, ana):
    response = client.get(f"/inbox/preferences?access_token={token(app, scope='preferences')}")
    assert response.status_code == 303 and response.headers["Location"].endswith("/inbox/preferences")
    assert client.get("/inbox/preferences").status_code == 200
    assert client.get("/inbox").status_code == 401  # the token did not grant the inbox
    with client.session_transaction() as session:
        session[SESSION_EXPIRES] = int(time.time()) - 1
    assert client.get("/inbox/preferences").status_code == 401  # the session ends with the token


def test_the_inbox_page_takes_a_bearer_header(app, client, ana):
    delivered(ana, title="Hello from a header")
    assert "Hello from a header" in client.get("/inbox", headers=bearer(token(app))).get_data(as_text=True)


@pytest.mark.usefixtures("fast_heartbeat")
def test_a_stream_opened_with_a_token_streams_and_ends_when_the_token_does(app, ana):
    short = sign_user_token(app.config["USER_TOKEN_SECRET"], "ana", int(time.time()) + 2, "stream")
    stream = Stream(app.test_client(), f"/inbox/stream?access_token={short}")
    try:
        assert stream.response.status_code == 200
        seen = stream.read_until(lambda chunk: "token_expired" in chunk, timeout=6)
        assert seen[-1].startswith("event:token_expired")
        with pytest.raises(StopIteration):
            stream.read_until(lambda chunk: True, timeout=1)
    finally:
        stream.close()


# --- CORS -------------------------------------------------------------------------------------------


def test_a_listed_origin_gets_cors_headers_and_a_working_preflight(app, client, ana, embed_origin):
    preflight = client.options(
        "/inbox/api/read",
        headers={
            "Origin": HOST,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == HOST
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    answer = client.get("/inbox/api/notifications", headers={"Origin": HOST, **bearer(token(app))})
    assert answer.headers["Access-Control-Allow-Origin"] == HOST and "Origin" in answer.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in answer.headers
    refused = client.get("/inbox/api/notifications", headers={"Origin": HOST})
    assert (
        refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == HOST
    )  # the component can read why


def test_an_origin_not_listed_gets_no_cors_headers(app, client, ana, embed_origin):
    for origin in (
        "https://evil.example.com",
        "https://app.example.com.evil.example",
        "null",
        "http://app.example.com",
    ):
        preflight = client.options(
            "/inbox/api/read", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        answer = client.get("/inbox/api/notifications", headers={"Origin": origin, **bearer(token(app))})
        assert (
            "Access-Control-Allow-Origin" not in preflight.headers
            and "Access-Control-Allow-Origin" not in answer.headers
        )


def test_cors_headers_stay_off_the_rest_of_herald(app, client, ana, embed_origin):
    assert "Access-Control-Allow-Origin" not in client.get("/inbox", headers={"Origin": HOST}).headers
    assert "Access-Control-Allow-Origin" not in client.get("/healthz", headers={"Origin": HOST}).headers


def test_another_authorization_scheme_leaves_the_inbox_session_in_charge(app, client, ana):
    """A proxy's Basic auth in front of Herald must not turn every inbox page into a 401."""
    assert client.get(f"/inbox?user=ana&token={user_token(app.config['INBOX_SECRET'], 'ana')}").status_code == 303
    assert client.get("/inbox", headers={"Authorization": "Basic YW5hOnB3"}).status_code == 200
    response = client.get("/inbox/api/notifications", headers={"Authorization": "Basic YW5hOnB3"})
    assert response.status_code == 401 and response.json["error"]["reason"] == "missing"


def test_first_calls_for_a_new_user_arriving_together_make_one_recipient(app, live_server):
    """The component's list and stream (or two tabs) may be the first Herald hears of a user; neither may fail."""
    user_id = f"together-{time.time_ns()}"
    auth = bearer(token(app, user_id))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: httpx.get(f"{live_server}/inbox/api/notifications", headers=auth, timeout=30), range(8))
        )
    assert [a.status_code for a in answers] == [200] * 8, [a.text[:200] for a in answers]
    assert db.session.scalar(select(func.count()).select_from(Recipient).where(Recipient.external_id == user_id)) == 1


def test_flask_user_token_prints_a_token_this_herald_accepts(app, runner, client):
    result = runner.invoke(args=["user-token", "ana", "--minutes", "2", "--scope", "inbox"])
    assert result.exit_code == 0, result.output
    assert client.get("/inbox/api/notifications", headers=bearer(result.output.strip())).status_code == 200
    assert client.get(f"/inbox/stream?access_token={result.output.strip()}").json["error"]["reason"] == "wrong_scope"
    refused = runner.invoke(args=["user-token", "ana", "--scope", "admin"])
    assert refused.exit_code != 0 and "scope may hold only" in refused.output
