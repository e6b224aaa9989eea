"""The commands a newcomer types: `flask inbox-link`, `flask up --help`, `flask up --port`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

from tests.conftest import PROJECT_ROOT


def test_inbox_link_prints_a_signed_url_that_opens_that_users_inbox(app, runner, client):
    result = runner.invoke(args=["inbox-link", "ana maria"])

    assert result.exit_code == 0, result.output
    link = urlsplit(result.output.strip())
    assert f"{link.scheme}://{link.netloc}" == app.config["BASE_URL"]
    assert link.path == "/inbox" and link.query.startswith("user=ana%20maria&token=")
    opened = client.get(f"/inbox?{link.query}")
    assert opened.status_code in (302, 303) and opened.headers["Location"].endswith("/inbox")
    assert client.get("/inbox").status_code == 200


def test_a_tampered_inbox_link_opens_nothing(runner, client):
    link = urlsplit(runner.invoke(args=["inbox-link", "ana"]).output.strip())

    assert client.get(f"/inbox?{link.query.replace('user=ana', 'user=bob')}").status_code in (401, 403)


def test_up_help_lists_the_settings_that_matter(runner):
    result = runner.invoke(args=["up", "--help"])

    assert result.exit_code == 0
    for setting in (
        "--port",
        "HERALD_PORT",
        "HERALD_WEB_WORKERS",
        "HERALD_RQ_WORKERS",
        "HERALD_INSTANCE_PATH",
        "DATABASE_URL",
        "REDIS_URL",
        "SMTP_URL",
    ):
        assert setting in result.output


def test_up_port_is_the_port_it_serves_on(tmp_path):
    """--port wins over HERALD_PORT: a busy --port stops start-up with one line naming it, before anything starts."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("HERALD_")
    }
    env.update({"HERALD_INSTANCE_PATH": str(tmp_path / "instance"), "HERALD_PORT": "1"})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "up", "--no-demo", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr + result.stdout
    assert not (tmp_path / "instance" / "redis.sock").exists()
