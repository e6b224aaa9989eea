"""`flask up`: everything Herald needs, in one terminal.

Order: embedded Redis (when ``REDIS_URL`` is unset), a local SMTP sink (when
``SMTP_URL`` is unset), migrations, demo data, then the role commands a
production supervisor runs -- ``flask web``'s gunicorn, ``flask worker critical high``,
``flask worker`` and ``flask scheduler`` -- each in a session of its own so
the terminal's Ctrl-C reaches only this process, which then stops them in
order: children first, embedded Redis last. A child that dies on its own
stops everything with exit code 1.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import click
from aiosmtpd.controller import Controller
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask.cli import with_appcontext

from app import demo
from app.config import PROJECT_ROOT, QUEUE_NAMES, WEBHOOK_QUEUE
from app.embedded_redis import redis_answers, start_redis_server, unix_socket_path
from app.extensions import db
from app.inbox.auth import inbox_url
from app.mail_sink import smtp_url, start_mail_sink
from app.web import gunicorn_argv

HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.2


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived: stop everything and exit 0."""


def echo(message: str) -> None:
    click.echo(f"herald: {message}")


@dataclass
class Child:
    name: str
    process: subprocess.Popen


@dataclass
class Services:
    """Everything `flask up` started, so that stopping can find it all."""

    children: list[Child] = field(default_factory=list)
    redis_server: subprocess.Popen | None = None
    mail_sink: Controller | None = None

    def start_child(self, name: str, args: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, start_new_session=True)
        self.children.append(Child(name, process))

    def exited_child(self) -> Child | None:
        return next((child for child in self.children if child.process.poll() is not None), None)

    def stop(self) -> None:
        _stop_processes([child.process for child in self.children], whole_group=True)
        if self.mail_sink is not None:
            self.mail_sink.stop()
        if self.redis_server is not None:
            _stop_processes([self.redis_server], whole_group=False)


def _stop_processes(processes: list[subprocess.Popen], whole_group: bool) -> None:
    """SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL what is left.

    With ``whole_group`` the signals go to each child's process group, which it
    leads (start_new_session), so gunicorn's workers cannot outlive it.
    """
    send = _signal_group if whole_group else _signal_process
    running = [process for process in processes if process.poll() is None]
    for process in running:
        send(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            echo(f"pid {process.pid} did not stop within {STOP_TIMEOUT:.0f} s; killing it")
    for process in processes:
        send(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _signal_process(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _request_stop(signum, _frame) -> None:
    # A second Ctrl-C (make forwards one too) must not interrupt the orderly stop,
    # which ends within STOP_TIMEOUT anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise StopRequested(signal.Signals(signum).name)


def check_port_free(port: int, setting: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                message = f"port {port} is in use; stop what uses it or set {setting} to another port"
                raise click.ClickException(message) from None
            raise


def start_embedded_redis(services: Services, instance_path: Path, redis_url: str) -> None:
    try:
        socket_path = unix_socket_path(redis_url)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if redis_answers(socket_path):
        echo(f"reusing the Redis already answering on {socket_path}")
        return
    services.redis_server = start_redis_server(instance_path / "redis", unix_socket=socket_path, new_session=True)
    echo(f"started Redis on {socket_path}")


def schema_is_current() -> bool:
    """True when the database is at the newest migration; checked without Alembic's env.py, in a few ms."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # it narrates every connection it inspects
    heads = set(ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_heads())
    with db.engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads()) == heads


def run_migrations(env: dict[str, str]) -> None:
    """Run `flask db upgrade` in a child: Alembic's logging setup would otherwise take over this process's logging."""
    if schema_is_current():
        return
    echo("upgrading the database schema")
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise click.ClickException(f"database migration failed: {lines[-1]}")


def seed_demo_data(instance_path: Path) -> None:
    if demo.demo_loaded():
        echo("demo data already loaded")
    else:
        started = time.monotonic()
        demo.load_demo(instance_path)
        echo(f"loaded demo data in {time.monotonic() - started:.1f} s")
    db.session.remove()
    db.engine.dispose()


def child_commands(config: dict) -> list[tuple[str, list[str]]]:
    """Name and argv of every child: the role commands a production supervisor runs (on loopback unless
    HERALD_HOST says otherwise, as the container image's ``demo`` role does).

    The web role is the gunicorn command line ``flask web`` would exec, started directly: going through
    ``flask web`` would load the app once more only to read three settings, which on two busy cores added
    ~6 s to every start. A short graceful timeout keeps Ctrl-C quick; inbox streams end at once anyway.
    """
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    stop_soon = ["--shutdown-timeout", "5"]
    commands = [
        ("web", gunicorn_argv(config["HOST"], config["PORT"], config["WEB_WORKERS"], graceful_timeout=5)),
        ("worker-urgent", flask + ["worker", "critical", "high", *stop_soon]),
    ]
    commands += [
        (f"worker-{n}", flask + ["worker", *QUEUE_NAMES, *stop_soon]) for n in range(1, config["RQ_WORKERS"] + 1)
    ]
    commands.append(
        ("worker-webhooks", flask + ["worker", WEBHOOK_QUEUE, *stop_soon])
    )  # a slow endpoint never holds up a send
    commands.append(("scheduler", flask + ["scheduler"]))
    return commands


def child_environment(config: dict, mail_url: str | None) -> dict[str, str]:
    """The launcher's own environment, pinned to the resources it resolved, so every child agrees."""
    env = {
        **os.environ,
        "HERALD_INSTANCE_PATH": config["INSTANCE_PATH"],
        "REDIS_URL": config["REDIS_URL"],
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("HERALD_BASE_URL", f"http://127.0.0.1:{config['PORT']}")
    if mail_url:
        env["SMTP_URL"] = mail_url
    return env


def wait_until_healthy(services: Services, port: int) -> None:
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + HEALTH_TIMEOUT
    last_answer = "no answer"
    while time.monotonic() < deadline:
        exited = services.exited_child()
        if exited is not None:
            raise click.ClickException(f"{exited.name} exited with code {exited.process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last_answer = f"HTTP {error.code}: {error.read(300).decode(errors='replace')}"
        except OSError as error:
            last_answer = str(error)
        time.sleep(POLL_INTERVAL)
    raise click.ClickException(f"Herald did not become healthy within {HEALTH_TIMEOUT:.0f} s ({url}: {last_answer})")


def supervise(services: Services) -> int:
    """Block until a child dies (return 1) or a signal raises StopRequested."""
    while True:
        exited = services.exited_child()
        if exited is not None:
            echo(
                f"{exited.name} (pid {exited.process.pid}) exited unexpectedly with code "
                f"{exited.process.returncode}; stopping everything"
            )
            return 1
        time.sleep(POLL_INTERVAL)


def print_banner(base_url: str, config: dict, mail_directory: Path | None, demo_user: str | None) -> None:
    instance_path = Path(config["INSTANCE_PATH"])
    click.echo("")
    echo(f"Herald is running at {base_url}")
    demo.echo_credentials(instance_path)
    if demo_user is not None:
        echo(f"demo user {demo_user}'s inbox: {inbox_url(base_url, config['INBOX_SECRET'], demo_user)}")
    if mail_directory is not None:
        echo(f"outgoing mail is kept in {mail_directory}")
    echo(f"sign in at {base_url}/console/login; press Ctrl-C to stop everything")


def start_all(services: Services, config: dict, load_demo: bool, mail_port: int) -> None:
    instance_path = Path(config["INSTANCE_PATH"])
    check_port_free(config["PORT"], "HERALD_PORT (or --port)")
    if mail_port and config["SMTP_URL"] is None:
        check_port_free(mail_port, "--mail-port")
    if config["REDIS_EMBEDDED"]:
        start_embedded_redis(services, instance_path, config["REDIS_URL"])
    mail_directory = None
    if config["SMTP_URL"] is None:
        mail_directory = instance_path / "mail"
        services.mail_sink = start_mail_sink(mail_directory, port=mail_port)
        echo(f"SMTP sink listening on {smtp_url(services.mail_sink)}")
    env = child_environment(config, smtp_url(services.mail_sink) if services.mail_sink else None)
    run_migrations(env)
    if load_demo:
        # The demo's webhook endpoint is Herald's own request log, on this loopback host: allowed explicitly.
        env.setdefault("HERALD_WEBHOOK_ALLOWED_HOSTS", urlparse(env["HERALD_BASE_URL"]).hostname or "")
        seed_demo_data(instance_path)
    for name, args in child_commands(config):
        services.start_child(name, args, env)
    wait_until_healthy(services, config["PORT"])
    print_banner(env["HERALD_BASE_URL"], config, mail_directory, demo.DEMO_INBOX_USER if load_demo else None)


@click.command("up")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the web server on 127.0.0.1 (default: HERALD_PORT, else 5000).",
)
@click.option("--no-demo", is_flag=True, help="Do not load the demo data.")
@click.option("--mail-port", type=int, default=0, help="Port of the local SMTP sink (default: a free one).")
@with_appcontext
def up(port: int | None, no_demo: bool, mail_port: int) -> None:
    """Run web, workers, scheduler and (if needed) an embedded Redis and an SMTP sink together.

    Settings read from the environment (all optional; see the README):

    \b
      HERALD_PORT           web port (default 5000; --port wins)
      HERALD_WEB_WORKERS    gunicorn gevent workers (default 2)
      HERALD_RQ_WORKERS     RQ workers on all queues, besides one for critical/high (default 2)
      HERALD_INSTANCE_PATH  local state: SQLite file, secret, Redis socket, mail (default ./instance)
      HERALD_BASE_URL       absolute links (default http://127.0.0.1:PORT)
      DATABASE_URL          default sqlite:///INSTANCE/herald.db; postgresql://... also works
      REDIS_URL             unset: an embedded redis-server on unix://INSTANCE/redis.sock
      SMTP_URL              unset: a local mail sink writing INSTANCE/mail/*.eml
      SECRET_KEY            default: generated into INSTANCE/secret_key
    """
    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    services = Services()
    exit_code = 0
    config = dict(current_app.config)
    if port is not None:
        config["PORT"] = port
    try:
        start_all(services, config, load_demo=not no_demo, mail_port=mail_port)
        exit_code = supervise(services)
    except StopRequested as stop:
        echo(f"{stop} received; stopping")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services.stop()
    echo("stopped")
    sys.exit(exit_code)
