"""Every health probe in the deployment files points at a route that exists.

The API's routes come from the application itself (``create_app``), nginx's from its config.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.deploy import checks
from tests.deploy.conftest import DEPLOY, settings_from


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The real application on scratch embedded storage (lifespan not run: no model needed)."""
    from brainmri_api.main import create_app

    data_dir = tmp_path_factory.mktemp("probe-app")
    settings = settings_from({"BRAINMRI_DATA_DIR": str(data_dir)}).model_copy(
        update={"api_keys": ""}
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


def missing_routes(client: TestClient, paths: set[str]) -> list[str]:
    """Paths that are no GET route of the app (404/405, or absent from the OpenAPI schema)."""
    documented = {
        path for path, operations in client.app.openapi()["paths"].items() if "get" in operations
    }
    return sorted(
        path
        for path in paths
        if path not in documented or client.get(path).status_code in (404, 405)
    )


def healthcheck_script():
    spec = importlib.util.spec_from_file_location(
        "brainmri_healthcheck", DEPLOY / "docker" / "healthcheck.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_api_probe_exists(api: TestClient, compose_config: dict) -> None:
    paths = set(checks.compose_api_probe_paths(compose_config))
    assert paths == {"/healthz"}
    assert missing_routes(api, paths) == []


@pytest.mark.parametrize("variant", ["base", "dev", "gpu"])
def test_kubernetes_api_probes_exist(api: TestClient, rendered: dict, variant: str) -> None:
    api_paths, nginx_paths = checks.probe_paths(rendered[variant])
    assert {"/healthz", "/readyz"} <= api_paths
    assert missing_routes(api, api_paths) == []
    proxy = (DEPLOY / "nginx" / "api-proxy.inc").read_text()
    assert nginx_paths and nginx_paths <= checks.nginx_exact_locations(proxy)


def test_compose_nginx_probe_is_an_nginx_location(compose_config: dict) -> None:
    test = compose_config["services"]["nginx"]["healthcheck"]["test"]
    url = next(word for word in test if word.startswith("http"))
    proxy = (DEPLOY / "nginx" / "api-proxy.inc").read_text()
    assert url.split("8080", 1)[1] in checks.nginx_exact_locations(proxy)


def test_image_healthcheck_probes_an_existing_route(api: TestClient) -> None:
    script = healthcheck_script()
    assert missing_routes(api, {script.LIVENESS_PATH}) == []
    serve = ["/opt/venv/bin/python", "/opt/venv/bin/brainmri", "serve", "--port", "8001"]
    assert script.api_url(serve) == "http://127.0.0.1:8001/healthz"


def test_route_check_catches_a_typo(api: TestClient) -> None:
    assert missing_routes(api, {"/healthz", "/readiness", "/health"}) == ["/health", "/readiness"]


# --- the image's role-aware healthcheck ---------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/opt/venv/bin/python", "/opt/venv/bin/brainmri", "serve", "--host", "0.0.0.0"], "serve"),
        (["tini", "--", "brainmri", "worker", "--queues", "predict"], "worker"),
        (["/opt/venv/bin/python", "-m", "brainmri.cli.main", "trainer"], "trainer"),
        (["brainmri", "beat"], "beat"),
        (["brainmri", "db", "upgrade"], None),
        (["/usr/local/bin/brainmri-healthcheck"], None),
        (["sh", "-c", "echo brainmri serve"], None),
    ],
)
def test_healthcheck_recognises_the_role(argv: list[str], role: str | None) -> None:
    assert healthcheck_script().role_of(argv) == role


def test_healthcheck_finds_the_service_process(tmp_path: Path) -> None:
    script = healthcheck_script()
    for pid, argv in (
        (1, ["tini", "--", "brainmri", "worker"]),
        (7, ["brainmri", "worker"]),
        (12, ["brainmri-healthcheck"]),
        (3, ["brainmri", "serve"]),
    ):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir()
    assert script.service_argv(tmp_path) == ["tini", "--", "brainmri", "worker"]


def test_healthcheck_reports_an_unreachable_api() -> None:
    problem = healthcheck_script().check_url("http://127.0.0.1:9/healthz")
    assert problem and "127.0.0.1:9" in problem
