"""Liveness and dependency health for load balancers and humans."""
from flask import Blueprint, jsonify
from sqlalchemy import text

from app.extensions import db
from app.redis_client import get_redis

bp = Blueprint("health", __name__)


def _check_database() -> str | None:
    try:
        db.session.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure means "down", with its reason
        db.session.rollback()
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def _check_redis() -> str | None:
    try:
        get_redis().ping()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


@bp.get("/healthz")
def healthz():
    problems = {"database": _check_database(), "redis": _check_redis()}
    body = {name: ("ok" if problem is None else {"status": "down", "error": problem}) for name, problem in problems.items()}
    down = [name for name, problem in problems.items() if problem]
    body["status"] = "ok" if not down else "down: " + ", ".join(down)
    return jsonify(body), (503 if down else 200)
