"""Herald as a newcomer runs it: `flask up` exactly as `make run` starts it, then the inbox and the console in Chromium.

No DATABASE_URL, REDIS_URL, SMTP_URL or SECRET_KEY: the launcher makes the
SQLite file, starts the embedded redis-server on its unix socket and the mail
sink, loads the demo data and starts gunicorn/gevent, the RQ workers and the
scheduler. Only the instance folder and the port differ from `make run`, so
two runs can share a machine. Every process it started is stopped at the end,
on failure too: Ctrl-C to the launcher's group, then SIGKILL to anything
still running with this instance folder in its environment.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from app.demo import MARKETER_EMAIL, TEMPLATES, DemoCredentials, credentials_path
from tests.conftest import PROJECT_ROOT, free_port

pytestmark = pytest.mark.slow

LIVE = 2000  # ms: the "within 2 s"
START_TIMEOUT = 120.0
CAMPAIGN_TIMEOUT = 30_000  # ms, per campaign on a shared 2-core machine
# What a fresh shell has: none of the suite's own settings (tests/conftest.py puts them in os.environ).
USER_SETTINGS = ("DATABASE_URL", "REDIS_URL", "SMTP_URL", "SECRET_KEY")
CAMPAIGN_AUDIENCE = ["demo-00002", "demo-00003", "demo-00004"]


@dataclass
class RunningHerald:
    base_url: str
    instance: Path
    output: str
    credentials: DemoCredentials

    @property
    def inbox_link(self) -> str:
        return re.search(r"inbox: (http\S+)", self.output).group(1)


def users_environment(instance: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS and not k.startswith("HERALD_")}
    env.update({"HERALD_INSTANCE_PATH": str(instance), "HERALD_PORT": str(port)})
    return env


def processes_of(instance: Path) -> list[int]:
    """Pids whose environment names this instance: the launcher and everything it started, grandchildren included."""
    marker = f"HERALD_INSTANCE_PATH={instance}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def stop_everything(launcher: subprocess.Popen, instance: Path) -> None:
    """Ctrl-C as a terminal sends it, then SIGKILL for whatever is left (the launcher's children have sessions of their own)."""
    if launcher.poll() is None:
        os.killpg(launcher.pid, signal.SIGINT)
        try:
            launcher.wait(30)
        except subprocess.TimeoutExpired:
            pass
    for pid in processes_of(instance):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if launcher.poll() is None:
        launcher.wait(10)


def wait_for_banner(launcher: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        output = log_path.read_text()
        if "press Ctrl-C" in output:
            return output
        if launcher.poll() is not None:
            pytest.fail(f"flask up exited with {launcher.returncode}:\n{output[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"flask up was not ready within {START_TIMEOUT:.0f} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def herald():
    """`make run`'s `flask up`, in a fresh instance folder (short: it holds the Redis unix socket)."""
    instance = Path(tempfile.mkdtemp(prefix="herald-up-", dir="/tmp")) / "instance"
    port = free_port()
    log_path = instance.parent / "up.log"
    with open(log_path, "w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "up"], cwd=PROJECT_ROOT,
                                    env=users_environment(instance, port), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    try:
        output = wait_for_banner(launcher, log_path)
        credentials = DemoCredentials.from_text(credentials_path(instance).read_text())
        yield RunningHerald(f"http://127.0.0.1:{port}", instance, output, credentials)
    finally:
        stop_everything(launcher, instance)
        leftovers = processes_of(instance)
        shutil.rmtree(instance.parent, ignore_errors=True)
    assert leftovers == [], f"processes outlived the run: {leftovers}"


def send_notification(herald: RunningHerald, user_id: str, title: str) -> None:
    body = {"user_id": user_id, "type": "transactional", "category": "account", "title": title,
            "body": "Sent through the API", "channels": ["in_app"]}
    request = urllib.request.Request(f"{herald.base_url}/v1/notifications", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {herald.credentials.api_key}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def open_inbox(browser_context, link: str) -> Page:
    page = browser_context.new_page()
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.locator("[data-inbox-stream]")).to_have_attribute("data-stream", "open", timeout=10_000)
    return page


def unread(page: Page) -> int:
    return int(page.get_by_test_id("unread-count").inner_text())


def test_a_notification_reaches_both_open_tabs_live_and_a_read_mark_crosses_over(herald, browser: Browser):
    context = browser.new_context(base_url=herald.base_url)
    try:
        first_tab, second_tab = open_inbox(context, herald.inbox_link), open_inbox(context, herald.inbox_link)
        before = unread(second_tab)
        title = f"Payment received {uuid.uuid4().hex[:6]}"

        send_notification(herald, "demo-00001", title)

        for tab in (first_tab, second_tab):
            expect(tab.get_by_test_id("entry-headline").filter(has_text=title)).to_have_count(1, timeout=LIVE)
            expect(tab.get_by_test_id("unread-count")).to_have_text(str(before + 1), timeout=LIVE)
        first_tab.evaluate("window.sameDocument = true")
        second_tab.evaluate("window.sameDocument = true")

        entry = first_tab.get_by_test_id("inbox-entry").filter(has_text=title)
        entry.get_by_role("button", name="Mark as read").click()

        other = second_tab.get_by_test_id("inbox-entry").filter(has_text=title)
        expect(second_tab.get_by_test_id("unread-count")).to_have_text(str(before), timeout=LIVE)
        expect(other).not_to_have_class(re.compile(r"inbox-entry--unread"), timeout=LIVE)
        assert first_tab.evaluate("window.sameDocument") and second_tab.evaluate("window.sameDocument"), \
            "the tabs changed without a reload"
    finally:
        context.close()


def launch_campaign(page: Page, name: str, template_name: str) -> None:
    page.goto("/campaigns/new")
    page.get_by_label("Name").fill(name)
    template = page.get_by_label("Template")
    template.select_option(template.locator("option", has_text=template_name).get_attribute("value"))
    audience = {"all": [{"field": "external_id", "op": "in", "value": CAMPAIGN_AUDIENCE}]}
    page.get_by_label("Audience filter (JSON)").fill(json.dumps(audience))
    for channel in ("In-app", "Email"):
        page.get_by_label(channel, exact=True).check()
    page.get_by_label("Send now").check()
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_test_id("audience-count")).to_have_text(str(len(CAMPAIGN_AUDIENCE)))
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_text("Campaign launched.")).to_be_visible()


def test_the_demo_marketer_sends_every_demo_template_and_nothing_fails(herald, browser: Browser):
    context = browser.new_context(base_url=herald.base_url)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Email").fill(MARKETER_EMAIL)
        page.get_by_label("Password").fill(herald.credentials.marketer_password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("link", name="Campaigns", exact=True)).to_be_visible()

        for name, _kind, _category in TEMPLATES.values():
            launch_campaign(page, f"Demo check: {name}", name)
            expect(page.get_by_test_id("live-status")).to_have_text("finished", timeout=CAMPAIGN_TIMEOUT)
            expect(page.get_by_test_id("count-planned")).to_have_text(str(len(CAMPAIGN_AUDIENCE)))
            expect(page.get_by_test_id("count-failed")).to_have_text("0")
            assert int(page.get_by_test_id("count-sent").inner_text()) > 0, f"{name}: nothing was sent"
    finally:
        context.close()
