"""Scoped API keys: every /v1 route needs one scope; a key without it gets 403 naming that scope."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import select

from app.api.auth import PUBLIC_ENDPOINTS
from app.api.keys import create_api_key, find_active_key
from app.api.scopes import ALL_SCOPES, DEFAULT_SCOPES, openapi_path
from app.extensions import db
from app.models import ApiKey
from tests.conftest import PROJECT_ROOT
from tests.factories import make_recipient

# The contract, written out by hand: a route added without a row here (or without a scope) fails below.
ROUTE_SCOPES = {
    ("PUT", "/v1/users/{user_id}"): "users:write",
    ("GET", "/v1/users/{user_id}"): "users:read",
    ("DELETE", "/v1/users/{user_id}"): "users:erase",
    ("GET", "/v1/users/{user_id}/preferences"): "users:read",
    ("PUT", "/v1/users/{user_id}/preferences"): "users:write",
    ("POST", "/v1/users/{user_id}/devices"): "users:write",
    ("DELETE", "/v1/users/{user_id}/devices/{device_id}"): "users:write",
    ("PATCH", "/v1/users/{user_id}/attributes"): "users:write",
    ("POST", "/v1/users:batch"): "users:write",
    ("POST", "/v1/notifications"): "notifications:send",
    ("GET", "/v1/notifications/{notification_id}"): "notifications:read",
    ("GET", "/v1/users/{user_id}/notifications"): "notifications:read",
    ("PATCH", "/v1/notifications/{notification_id}/read"): "notifications:write",
    ("POST", "/v1/users/{user_id}/notifications/read-all"): "notifications:write",
    # topics and bulk sends (issue 17)
    ("POST", "/v1/notifications/bulk"): "notifications:send",
    ("PUT", "/v1/topics/{key}"): "topics:write",
    ("GET", "/v1/topics/{key}"): "topics:read",
    ("PUT", "/v1/topics/{key}/subscribers"): "topics:write",
    ("DELETE", "/v1/topics/{key}/subscribers"): "topics:write",
    ("GET", "/v1/topics/{key}/subscribers"): "topics:read",
    ("GET", "/v1/users/{user_id}/topics"): "topics:read",
    ("GET", "/v1/webhook-endpoints"): "webhooks:manage",
    ("POST", "/v1/webhook-endpoints"): "webhooks:manage",
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): "webhooks:manage",
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): "webhooks:manage",
    ("DELETE", "/v1/webhook-endpoints/{endpoint_id}"): "webhooks:manage",
    ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"): "webhooks:manage",
    ("GET", "/v1/workflows"): "workflows:read",
    ("PUT", "/v1/workflows/{key}"): "workflows:write",
    ("GET", "/v1/workflows/{key}"): "workflows:read",
    ("DELETE", "/v1/workflows/{key}"): "workflows:write",
    ("GET", "/v1/workflow-runs/{run_id}"): "notifications:read",
    ("POST", "/v1/workflow-runs/{run_id}/cancel"): "notifications:send",
    ("POST", "/v1/workflow-runs/cancel"): "notifications:send",
}


def concrete(path: str) -> str:
    return path.format(user_id="ana", device_id=1, notification_id="0" * 32, key="team", endpoint_id=1, run_id=1)


def test_every_v1_route_is_in_the_scope_table_and_the_openapi_document(app, client):
    routes = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/") and rule.endpoint not in PUBLIC_ENDPOINTS
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == set(ROUTE_SCOPES)
    document = client.get("/v1/openapi.json").json
    for (method, path), scope in ROUTE_SCOPES.items():
        operation = document["paths"][path][method.lower()]
        assert operation["security"] == [{"bearer": [scope]}], (method, path)
        assert "403" in operation["responses"]
    assert set(ALL_SCOPES) <= set(document["components"]["securitySchemes"]["bearer"]["description"].split("`"))


@pytest.mark.parametrize(("method", "path"), sorted(ROUTE_SCOPES))
def test_a_key_without_the_routes_scope_gets_403_naming_it_and_one_with_only_that_scope_gets_through(
    client, method, path
):
    make_recipient(external_id="ana", email="ana@example.com")
    scope = ROUTE_SCOPES[(method, path)]
    others = [name for name in ALL_SCOPES if name != scope]
    lacking = create_api_key("lacking", scopes=others)[1]
    holding = create_api_key("holding", scopes=[scope])[1]
    body = {"json": {}} if method in {"PUT", "POST", "PATCH"} else {}

    refused = client.open(concrete(path), method=method, headers={"Authorization": f"Bearer {lacking}"}, **body)
    assert refused.status_code == 403
    assert refused.json["error"]["code"] == "insufficient_scope"
    assert refused.json["error"]["missing_scope"] == scope and scope in refused.json["error"]["message"]

    allowed = client.open(concrete(path), method=method, headers={"Authorization": f"Bearer {holding}"}, **body)
    assert allowed.status_code not in (401, 403), allowed.json


def test_erasure_needs_its_own_scope_and_a_refused_erasure_deletes_nothing(client):
    make_recipient(external_id="ana", email="ana@example.com")
    default_key = create_api_key("default")[1]
    assert client.get("/v1/users/ana", headers={"Authorization": f"Bearer {default_key}"}).status_code == 200
    refused = client.delete("/v1/users/ana", headers={"Authorization": f"Bearer {default_key}"})
    assert refused.status_code == 403 and refused.json["error"]["missing_scope"] == "users:erase"
    assert (
        client.get("/v1/users/ana", headers={"Authorization": f"Bearer {default_key}"}).json["email"]
        == "ana@example.com"
    )


def test_cli_grants_the_scopes_named_and_by_default_all_but_erasure(runner):
    result = runner.invoke(
        args=["create-api-key", "sender", "--scope", "notifications:send", "--scope", "users:read,users:write"]
    )
    assert result.exit_code == 0, result.output
    assert find_active_key(result.output.strip().splitlines()[-1]).scopes == {
        "notifications:send",
        "users:read",
        "users:write",
    }
    result = runner.invoke(args=["create-api-key", "plain"])
    assert result.exit_code == 0 and "users:erase" not in result.output
    assert find_active_key(result.output.strip().splitlines()[-1]).scopes == set(DEFAULT_SCOPES)
    result = runner.invoke(args=["create-api-key", "privacy-tool", "--scope", "all"])
    assert find_active_key(result.output.strip().splitlines()[-1]).scopes == set(ALL_SCOPES)


def test_cli_refuses_an_unknown_scope_and_creates_nothing(runner):
    result = runner.invoke(args=["create-api-key", "x", "--scope", "admin:everything"])
    assert result.exit_code == 2 and "unknown scope 'admin:everything'" in result.output
    assert db.session.scalar(select(ApiKey)) is None


def test_migration_0011_gives_keys_made_before_scopes_every_scope(test_env, tmp_path):
    database = tmp_path / "old.db"
    env = {**test_env, "DATABASE_URL": f"sqlite:///{database}"}

    def flask(*args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-2000:]

    flask("db", "upgrade", "0009")
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO api_keys (name, prefix, key_hash, rate_limit, created_at) "
            "VALUES ('old', 'hk_old', ?, '10/second', '2026-01-01 00:00:00')",
            ("a" * 64,),
        )
    flask("db", "upgrade", "0011")
    with sqlite3.connect(database) as conn:
        [(scopes,)] = conn.execute("SELECT scopes FROM api_keys").fetchall()
    # Every scope that existed then; webhooks:manage came later and, like erasure today, is granted only by name.
    assert scopes.split() == [
        s for s in ALL_SCOPES if s != "webhooks:manage" and not s.startswith(("topics:", "workflows:"))
    ]
    flask("db", "upgrade", "0014_topics")  # a key that could read and change users can do the same with topics
    with sqlite3.connect(database) as conn:
        [(scopes,)] = conn.execute("SELECT scopes FROM api_keys").fetchall()
    assert sorted(scopes.split()) == sorted(
        s for s in ALL_SCOPES if s != "webhooks:manage" and not s.startswith("workflows:")
    )
    flask("db", "upgrade", "0015_workflows")  # a key that could send anything may define workflows
    with sqlite3.connect(database) as conn:
        [(scopes,)] = conn.execute("SELECT scopes FROM api_keys").fetchall()
    assert sorted(scopes.split()) == sorted(s for s in ALL_SCOPES if s != "webhooks:manage")
