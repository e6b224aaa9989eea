"""The OpenAPI 3.1 document, generated from the pydantic schemas that validate requests.

The operations themselves (paths, scopes, parameters, schemas) are declared in app/api/operations.py.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic.json_schema import models_json_schema

from app import schemas
from app.api.operations import OPERATIONS
from app.api.scopes import SCOPES
from app.inbox import embed_schemas

REF = "#/components/schemas/{model}"
SECURITY_DESCRIPTION = (
    "An API key from `flask create-api-key NAME --scope …` or the console, sent as `Authorization: Bearer <key>`. "
    "Each key holds scopes; each operation names the one it needs, and a key without it gets 403 naming the "
    "missing scope. Scopes: " + "; ".join(f"`{name}`: {meaning}" for name, meaning in SCOPES.items()) + "."
)

NOT_FOUND = {
    "description": "no such user, notification or device (ids over their maximum length included)",
    "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
}


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(schemas.ErrorResponse)}}}


def _request_body(model) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


@lru_cache(maxsize=4)
def build_openapi(base_url: str) -> dict:
    definitions = _schema_definitions()
    paths: dict = {}
    for method, path, scope, summary, parameters, request_model, responses in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(
            method, path, scope, summary, parameters, request_model, responses
        )
    paths.update(_embed_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald API",
            "version": "1.0.0",
            "description": "Send notifications, manage recipients, preferences, devices and inboxes. "
            "Values are taken as the JSON type they are sent as, or refused (400). "
            "No string anywhere may contain U+0000, which PostgreSQL cannot store: 400 in a "
            "body, 404 in a path.",
        },
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {
            "schemas": definitions,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": SECURITY_DESCRIPTION},
                "userToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": embed_schemas.USER_TOKEN_DESCRIPTION,
                },
            },
        },
    }


def _schema_definitions() -> dict:
    """Every model the operations name: request bodies as they validate, responses as they serialize."""
    models = {model for op in OPERATIONS for model in [op[5], *op[6].values()] if model is not None} | set(
        embed_schemas.MODELS
    )
    requests = {op[5] for op in OPERATIONS} | {op[4] for op in embed_schemas.OPERATIONS}
    _, definitions = models_json_schema(
        [
            (model, "validation" if model in requests else "serialization")
            for model in sorted(models, key=lambda m: m.__name__)
        ],
        ref_template=REF,
    )
    return definitions.get("$defs", {})


def _operation(method, path, scope, summary, parameters, request_model, responses) -> dict:
    """One API-key operation, with the answers every one of them can give (401, 403, 429, and 404 on a path id)."""
    operation = {
        "summary": summary,
        "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "description": f"Needs an API key with the `{scope}` scope.",
        "security": [{"bearer": [scope]}],
        "parameters": parameters,
        "responses": {
            status: {
                "description": status,
                **({"content": {"application/json": {"schema": _ref(model)}}} if model else {}),
            }
            for status, model in responses.items()
        },
    }
    operation["responses"]["401"] = _error_response("missing or unknown API key")
    operation["responses"].setdefault("429", _error_response("the API key's rate limit is spent; see Retry-After"))
    if any(parameter["in"] == "path" for parameter in parameters):
        operation["responses"].setdefault("404", NOT_FOUND)
    operation["responses"]["403"] = _error_response(
        f"the API key lacks the `{scope}` scope (named in error.missing_scope)"
    )
    if request_model is not None:
        operation["requestBody"] = _request_body(request_model)
    return operation


def _embed_paths() -> dict:
    """The ``<herald-inbox>`` component's endpoints: a user token (``userToken``), not an API key; CORS per HERALD_EMBED_ORIGINS."""
    paths: dict = {}
    for method, path, summary, parameters, request_model, responses in embed_schemas.OPERATIONS:
        operation = {
            "summary": summary,
            "operationId": f"{method}_{path.strip('/').replace('/', '_').replace('-', '_')}",
            "tags": ["embedded inbox"],
            "description": "For the `<herald-inbox>` component and host products: needs a user token with the `inbox` "
            "scope. Browsers on an origin in `HERALD_EMBED_ORIGINS` may call it (CORS, without cookies).",
            "security": [{"userToken": ["inbox"]}],
            "parameters": parameters,
            "responses": {
                status: {"description": status, "content": {"application/json": {"schema": _ref(model)}}}
                for status, model in responses.items()
            },
        }
        operation["responses"]["401"] = {
            "description": "no user token, or one Herald refuses; error.reason says why",
            "content": {"application/json": {"schema": _ref(embed_schemas.TokenErrorResponse)}},
        }
        if request_model is not None:
            operation["requestBody"] = _request_body(request_model)
        paths[path] = {method: operation}
    return paths
