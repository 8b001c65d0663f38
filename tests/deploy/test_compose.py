"""docker-compose.yml: it renders, and the stack it describes starts in a safe order."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.deploy import checks
from tests.deploy.conftest import COMPOSE_FILE, ENV_EXAMPLE, run_compose_config


def test_compose_config_is_valid(tmp_path: Path) -> None:
    result = run_compose_config(COMPOSE_FILE, tmp_path, ENV_EXAMPLE.read_text(), quiet=True)
    assert result.returncode == 0, result.stderr


def test_stack_has_every_service_healthcheck_and_start_condition(compose_config: dict) -> None:
    assert checks.compose_problems(compose_config) == []


def test_profiles_hold_the_gpu_worker_and_flower(compose_config: dict) -> None:
    services = compose_config["services"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert services["trainer-gpu"]["profiles"] == ["gpu"]
    assert services["flower"]["profiles"] == ["flower"]
    # ... and `docker compose up` without a profile starts none of them.
    default = {name for name, s in services.items() if not s.get("profiles")}
    assert default >= checks.REQUIRED_SERVICES
    assert not default & {"worker-gpu", "trainer-gpu", "flower"}


def test_brainmri_services_build_the_image_flavour_they_need(compose_config: dict) -> None:
    for name, service in compose_config["services"].items():
        if checks.command_of(service)[:1] != ["brainmri"]:
            continue
        flavour = service["build"]["args"]["TORCH_FLAVOR"]
        assert flavour == ("cuda" if name.endswith("-gpu") else "cpu"), name
        assert service["image"].startswith("brainmri-cuda:" if flavour == "cuda" else "brainmri:")


def test_only_nginx_is_published_beyond_loopback_by_default(compose_config: dict) -> None:
    for name, service in compose_config["services"].items():
        for host_ip, published, _ in checks.published_ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes {published} on {host_ip or '*'}"


# --- the checks catch what they protect ---------------------------------------------------------
def _mutated(config: dict, change) -> dict:
    broken = copy.deepcopy(config)
    change(broken["services"])
    return broken


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.pop("minio-init"), "missing service 'minio-init'"),
        (lambda s: s["worker"].pop("healthcheck"), "worker: long-running service without"),
        (
            lambda s: s["api"]["depends_on"].update({"migrate": {"condition": "service_started"}}),
            "api: waits for 'migrate' to start",
        ),
        (
            lambda s: s["nginx"]["depends_on"].update({"ghost": {"condition": "service_healthy"}}),
            "depends on unknown service 'ghost'",
        ),
        (lambda s: s["redis"].update(command=["redis-server"]), "redis: AOF persistence"),
        (lambda s: s["postgres"].update(volumes=["/srv/pg:/var/lib/postgresql/data"]), "named"),
        (lambda s: s["worker-gpu"].pop("deploy"), "worker-gpu: reserves no NVIDIA GPU"),
        (lambda s: s["flower"].pop("profiles"), "no service in the flower profile"),
        (lambda s: s["minio"].update(image="minio/minio:latest"), "floating tag 'latest'"),
        (lambda s: s["api"].update(ports=["8001:8000"]), "api: must not be published"),
        (
            lambda s: s["migrate"].update(restart="unless-stopped"),
            "waits for 'migrate' to finish; it never does",
        ),
    ],
)
def test_compose_checks_catch_breakage(compose_config: dict, change, expected: str) -> None:
    problems = checks.compose_problems(_mutated(compose_config, change))
    assert any(expected in problem for problem in problems), problems


def test_compose_itself_rejects_an_unknown_dependency(tmp_path: Path) -> None:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    data["services"]["api"]["depends_on"] = {"no-such-service": {"condition": "service_healthy"}}
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data))
    result = run_compose_config(broken, tmp_path, ENV_EXAMPLE.read_text(), quiet=True)
    assert result.returncode != 0
    assert "no-such-service" in result.stderr


def test_compose_refuses_to_run_without_the_credentials_from_env(tmp_path: Path) -> None:
    env = "\n".join(
        line
        for line in ENV_EXAMPLE.read_text().splitlines()
        if not line.startswith("POSTGRES_PASSWORD=")
    )
    result = run_compose_config(COMPOSE_FILE, tmp_path, env, quiet=True)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
