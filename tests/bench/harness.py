"""Shared pieces of the benchmarks: real servers and workers as processes, a bounded load generator."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.web import gunicorn_argv
from tests.conftest import PROJECT_ROOT, free_port, start_worker, stop_worker, wait_for_port


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def summary(latencies_s: list[float]) -> str:
    ms = [v * 1000 for v in latencies_s]
    return f"p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms, mean {statistics.fmean(ms):.1f} ms"


@contextmanager
def gunicorn(env: dict, workers: int = 2, target: str = "wsgi:app"):
    """`target` served as `flask web` serves Herald (app/gunicorn_config.py: gevent, 2,000 connections per worker)."""
    port = free_port()
    argv = gunicorn_argv("127.0.0.1", port, workers)[:-1] + ["--log-level", "warning", target]
    process = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        base = f"http://127.0.0.1:{port}"
        # A worker answers only once it has imported the app: on a busy machine that took 25 s (4 s of CPU).
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
        time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(40)  # app/gunicorn_config.py gives open requests 25 s
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def workers(env: dict, queue_sets: list[list[str]]):
    processes = [start_worker(queues, env) for queues in queue_sets]
    try:
        time.sleep(1.5)
        yield processes
    finally:
        for process in processes:
            stop_worker(process, timeout=20)


def post_load(url: str, headers: dict, bodies: list[dict], concurrency: int) -> tuple[float, list[float], list[int]]:
    """POST every body with `concurrency` keep-alive connections; return (seconds, latencies, status codes)."""

    async def run():
        latencies, codes = [], []
        queue: asyncio.Queue = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:

            async def worker():
                while not queue.empty():
                    body = queue.get_nowait()
                    started = time.perf_counter()
                    try:
                        response = await client.post(url, json=body)
                    except httpx.TransportError:
                        codes.append(0)  # counted, not hidden: the caller reports the error rate
                        continue
                    latencies.append(time.perf_counter() - started)
                    codes.append(response.status_code)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started, latencies, codes

    # Its own thread and loop: Playwright's sync API may already run a loop in this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


def http_post(path: str, port: int, headers: dict, body: bytes) -> bytes:
    """One HTTP/1.1 keep-alive POST, as bytes on the wire (for :func:`raw_load`)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


def raw_load(port: int, requests: list[bytes], concurrency: int) -> dict:
    """Send pre-built requests over `concurrency` keep-alive sockets; a client thin enough not to be the bottleneck.

    httpx spends ~1 ms of CPU per request, on the cores the servers need; this one writes bytes built beforehand
    and reads the status line and Content-Length, no more. Returns seconds, latencies, status codes and the CPU
    this process spent meanwhile (``client_cpu``, a fraction of the wall time).
    """

    async def run():
        latencies, codes, pending = [], [], list(reversed(requests))

        async def connection():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while pending:
                    request = pending.pop()
                    started = time.perf_counter()
                    try:
                        codes.append(await _exchange(reader, writer, request))
                    except (OSError, asyncio.IncompleteReadError):
                        codes.append(0)  # counted, not hidden; reconnect and go on
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        continue
                    latencies.append(time.perf_counter() - started)
            finally:
                writer.close()

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(connection() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "latencies": latencies,
            "codes": codes,
            "client_cpu": (time.process_time() - cpu) / seconds,
        }

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()
