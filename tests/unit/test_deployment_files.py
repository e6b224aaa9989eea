"""Dockerfile, compose.yaml and the image's entrypoint agree with the code, so they cannot drift from it.

Every command compose.yaml runs goes through the real entrypoint script (with a stand-in ``flask`` that
records its arguments) and is then parsed by the real Flask CLI: the command must exist and accept those
arguments. Every variable compose or the image sets is one app/config.py reads. Containers cannot run on
the development machine (docs/operations.md says why), so this is what is checked here.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from flask.cli import ScriptInfo
from flask.cli import cli as flask_cli

from app.config import QUEUE_NAMES
from tests.conftest import PROJECT_ROOT

ENTRYPOINT = PROJECT_ROOT / "deploy" / "entrypoint.sh"
CONFIG_SOURCE = (PROJECT_ROOT / "app" / "config.py").read_text()
IMAGE = "herald:latest"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def herald_services(compose) -> dict[str, dict]:
    return {name: service for name, service in compose["services"].items() if service.get("image") == IMAGE}


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split per FROM."""
    text = re.sub(r"\\\n", " ", (PROJECT_ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def instruction(stage: list[str], name: str) -> list[str]:
    return [line[len(name) + 1 :].strip() for line in stage if line.upper().startswith(name + " ")]


def flask_argv_of_role(role: list[str], tmp_path: Path) -> list[list[str]]:
    """Run the entrypoint with ROLE; return the argv of every `flask` it ran (a stand-in that records them)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "flask"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\037" "$@" >> {log}\necho >> {log}\n')
    stub.chmod(0o755)
    log.write_text("")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *role], env=env, capture_output=True, text=True, timeout=10, check=False
    )
    assert result.returncode == 0, result.stderr
    return [line.rstrip("\037").split("\037") for line in log.read_text().splitlines() if line]


def parse_with_flask_cli(argv: list[str]) -> tuple[str, dict]:
    """Resolve ``flask --app wsgi ARGV`` to its command and parse ARGV as that command would (without running it).

    Returns the command's name and parsed parameters; a missing command or a refused argument fails.
    """
    assert argv[:2] == ["--app", "wsgi"], argv
    wsgi_app = importlib.import_module("wsgi").app
    info = ScriptInfo(create_app=lambda: wsgi_app)
    with click.Context(flask_cli, info_name="flask", obj=info) as parent:
        command, args = flask_cli, list(argv[2:])
        while isinstance(command, click.Group):
            name = args.pop(0)
            found = command.get_command(parent, name)
            assert found is not None, f"`flask {' '.join(argv[2:])}`: no command {name!r}"
            command = found
        with command.make_context(command.name, args, parent=parent) as context:
            return command.name, dict(context.params)


def test_every_command_compose_runs_exists_in_the_flask_cli_with_those_arguments(app, herald_services, tmp_path):
    assert herald_services, "compose.yaml runs no Herald service"
    for name, service in herald_services.items():
        calls = flask_argv_of_role(service["command"], tmp_path)
        assert calls, f"{name}: the entrypoint ran no flask command"
        for argv in calls:
            command, params = parse_with_flask_cli(argv)
            if command == "worker":
                unknown = set(params["queues"]) - set(QUEUE_NAMES)
                assert not unknown, f"{name}: unknown queues {unknown}"


def test_the_entrypoint_roles_are_the_flask_role_commands(app, tmp_path):
    expected = {
        ("web",): [["--app", "wsgi", "web"]],
        ("worker", "critical", "high"): [["--app", "wsgi", "worker", "critical", "high"]],
        ("scheduler",): [["--app", "wsgi", "scheduler"]],
        ("migrate",): [["--app", "wsgi", "db", "upgrade"], ["--app", "wsgi", "seed-demo", "--when-enabled"]],
        ("demo",): [["--app", "wsgi", "up"]],
        ("flask", "create-api-key", "shop", "--rate-limit", "100/second"): [
            ["--app", "wsgi", "create-api-key", "shop", "--rate-limit", "100/second"]
        ],
    }
    for role, calls in expected.items():
        assert flask_argv_of_role(list(role), tmp_path) == calls, role
        for argv in calls:
            parse_with_flask_cli(argv)


def test_an_unknown_role_is_one_clear_line_and_exit_64(tmp_path):
    result = subprocess.run(["sh", str(ENTRYPOINT), "wbe"], capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode == 64
    assert "unknown role 'wbe'" in result.stderr


def test_every_variable_compose_and_the_image_set_is_a_setting_app_config_reads(herald_services):
    stages = dockerfile_stages()
    image_env = " ".join(instruction(stages[-1], "ENV"))
    names = set(re.findall(r"\b((?:HERALD|SMTP|DATABASE|REDIS|SECRET)_[A-Z_]+)=", image_env))
    for service in herald_services.values():
        names |= set(service["environment"])
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "HERALD_INSTANCE_PATH", "HERALD_HOST"} <= names
    unread = sorted(name for name in names if not re.search(rf"[\"']{name}[\"']", CONFIG_SOURCE))
    assert unread == [], f"set by compose.yaml or the Dockerfile but not read by app/config.py: {unread}"


def test_the_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck_and_no_build_tools_in_the_image():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", text)
    final = stages[-1]
    users = instruction(final, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = instruction(final, "HEALTHCHECK")
    assert healthcheck and "healthcheck" in healthcheck[0]
    assert instruction(final, "ENTRYPOINT") == ['["tini", "--", "herald-entrypoint"]']
    final_text = " ".join(final)
    for tool in ("gcc", "build-essential", "make ", "pip install", "-dev "):
        assert tool not in final_text, f"the final stage installs {tool.strip()}"
    assert any("--from=build" in line for line in instruction(final, "COPY"))


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = shutil.which("hadolint") or str(Path(os.__file__).parents[3] / "bin" / "hadolint")
    if not Path(hadolint).exists():
        hadolint = str(PROJECT_ROOT / ".venv" / "bin" / "hadolint")
    result = subprocess.run(
        [hadolint, str(PROJECT_ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_production_layout(compose, herald_services):
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "scheduler"} <= set(services)
    for name in ("postgres", "redis"):
        assert services[name].get("healthcheck"), f"{name} has no health check"
    commands = {name: service["command"] for name, service in herald_services.items()}
    webs = [name for name, command in commands.items() if command == ["web"]]
    assert len(webs) == 2
    published = [services[name]["ports"][0].split(":")[0] for name in webs]
    assert len(set(published)) == 2, "each web process needs its own published port"
    for name in webs:
        assert services[name]["healthcheck"]["test"] == ["CMD", "herald-entrypoint", "healthcheck"]
    assert ["worker", "critical", "high"] in commands.values()
    general = [name for name, command in commands.items() if command == ["worker"]]
    assert len(general) == 2
    assert commands["migrate"] == ["migrate"] and commands["scheduler"] == ["scheduler"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in herald_services.items():
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
            assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    volumes = set(compose["volumes"])
    assert {"postgres-data", "redis-data"} <= volumes
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert herald_services["migrate"]["environment"]["HERALD_DEMO_DATA"] == "${HERALD_DEMO_DATA:-0}"
