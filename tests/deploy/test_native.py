"""`make worker|trainer|beat`: native processes against the compose stack's published ports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from tests.conftest import PROJECT_ROOT, need
from tests.deploy import checks
from tests.deploy.conftest import DEPLOY, ENV_EXAMPLE, settings_from

NATIVE_ENV = DEPLOY / "native.env"
TARGETS = {
    "worker": "brainmri worker --queues predict,evaluate",
    "trainer": "brainmri trainer",
    "beat": "brainmri beat",
}


def env_file(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if re.match(r"^[A-Z][A-Z0-9_]*=", line)
    )


def recipe(target: str) -> str:
    """The shell line `make <target>` would run (dry run: nothing is installed or started)."""
    need(shutil.which("make") is not None, "make is not installed")
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line for line in result.stdout.splitlines() if "brainmri " in line][-1]


@pytest.mark.parametrize(("target", "command"), TARGETS.items())
def test_make_targets_start_the_native_service(target: str, command: str) -> None:
    line = recipe(target)
    assert command in line
    assert "deploy/native.env" in line
    makefile = (PROJECT_ROOT / "Makefile").read_text().splitlines()
    phony = next(line for line in makefile if line.startswith(".PHONY"))
    assert target in phony.split()


def shell_environment(target: str, **extra: str) -> dict[str, str]:
    """The environment the recipe hands to brainmri, with `exec brainmri` swapped for `env`."""
    line = recipe(target)
    prefix = line[: line.index("exec ")]
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}
    result = subprocess.run(
        ["bash", "-c", prefix + "env"],
        cwd=PROJECT_ROOT,
        env=base,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return env_file(result.stdout)


def test_native_env_is_used_when_no_broker_is_configured() -> None:
    environment = shell_environment("worker")
    settings = settings_from(environment)
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.resolved_object_store_url == "s3://brainmri"


def test_a_configured_broker_keeps_its_own_settings() -> None:
    environment = shell_environment("trainer", BRAINMRI_BROKER_URL="redis://gpu-box:6379/1")
    assert environment["BRAINMRI_BROKER_URL"] == "redis://gpu-box:6379/1"
    assert "BRAINMRI_DATABASE_URL" not in environment


def test_native_env_matches_the_compose_stack(compose_config: dict) -> None:
    native = env_file(NATIVE_ENV.read_text())
    example = env_file(ENV_EXAMPLE.read_text())
    services = compose_config["services"]

    def published(service: str, target: str) -> tuple[str, str]:
        ports = checks.published_ports(services[service])
        return next((ip, port) for ip, port, t in ports if t == target)

    db = urlsplit(native["BRAINMRI_DATABASE_URL"])
    assert (db.hostname, str(db.port)) == published("postgres", "5432")
    assert (db.username, db.password, db.path) == (
        example["POSTGRES_USER"],
        example["POSTGRES_PASSWORD"],
        f"/{example['POSTGRES_DB']}",
    )
    broker = urlsplit(native["BRAINMRI_BROKER_URL"])
    assert (broker.hostname, str(broker.port)) == published("redis", "6379")
    assert tuple(native["BRAINMRI_S3_ENDPOINT"].split(":")) == published("minio", "9000")
    assert native["BRAINMRI_S3_ACCESS_KEY"] == example["MINIO_ROOT_USER"]
    assert native["BRAINMRI_S3_SECRET_KEY"] == example["MINIO_ROOT_PASSWORD"]
    in_stack = services["worker"]["environment"]
    for same in ("BRAINMRI_OBJECT_STORE_URL", "BRAINMRI_ALLOWED_ROOTS"):
        assert native[same] == in_stack[same], same


def test_native_env_is_shell_safe() -> None:
    for name, value in env_file(NATIVE_ENV.read_text()).items():
        assert re.fullmatch(r"[A-Za-z0-9_:/@.,+\-]*", value), f"{name} needs quoting"
