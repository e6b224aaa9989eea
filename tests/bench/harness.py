"""Shared pieces of the benchmarks: real servers and workers as processes, a bounded load generator."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

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
def gunicorn(env: dict, workers: int = 2):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            str(workers),
            "--worker-connections",
            "2000",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "wsgi:app",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)


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
