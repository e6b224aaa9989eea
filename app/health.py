"""Liveness and dependency health for load balancers and humans.

``/healthz`` needs no sign-in, so it names which dependency is down and
nothing more: the driver's message (host, port, user) goes to the log only.
"""

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from app.extensions import db
from app.redis_client import get_redis

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


def _database_up() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except Exception as error:  # noqa: BLE001 -- any failure means "down"; why is for the operator's log, not the public answer
        log.warning("healthz: database check failed: %s", _first_line(error))
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 -- a session that cannot even roll back is thrown away
            db.session.invalidate()
        return False


def _redis_up() -> bool:
    try:
        get_redis().ping()
        return True
    except Exception as error:  # noqa: BLE001 -- any failure means "down", as for the database
        log.warning("healthz: Redis check failed: %s", _first_line(error))
        return False


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def health_report(up: dict[str, bool]) -> tuple[dict, int]:
    """``{"database": "ok"|"down", "redis": …, "status": …}`` and the HTTP status a load balancer acts on.

    Without the database nothing can be accepted: 503. Without Redis the API still accepts (routing waits for
    the reaper), so the process stays in rotation with 200 and ``"status": "degraded: redis"``.
    """
    body = {name: ("ok" if is_up else "down") for name, is_up in up.items()}
    down = [name for name, is_up in up.items() if not is_up]
    if not down:
        body["status"] = "ok"
    elif "database" in down:
        body["status"] = "down: " + ", ".join(down)
    else:
        body["status"] = "degraded: " + ", ".join(down)
    return body, (503 if "database" in down else 200)


@bp.get("/healthz")
def healthz():
    body, status = health_report({"database": _database_up(), "redis": _redis_up()})
    return jsonify(body), status
