"""Rendering the deployment files the way CI and users do: docker-compose config, kustomize.

The renders are session fixtures (each tool runs once per overlay). Tools that may be missing
(docker-compose, kubectl/kustomize, make) go through ``need``: a skip on a laptop, a failure in
CI (BRAINMRI_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, need

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
#: Profiles switched on when rendering, so the optional services are checked too.
ALL_PROFILES = "gpu,flower"


# --- docker compose ---------------------------------------------------------------------------
def compose_command() -> list[str] | None:
    """``docker-compose`` (Debian's package, what CI installs) or the ``docker compose`` plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def require_compose() -> list[str]:
    command = compose_command()
    need(command is not None, "docker-compose is not installed (scripts/ensure-test-tools.sh)")
    assert command is not None
    return command


def run_compose_config(
    compose_file: Path, project_dir: Path, env_text: str, *, quiet: bool = False
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of ``compose_file`` with ``env_text`` as the project's .env.

    The project directory is a scratch folder holding only that .env, so a developer's own .env
    in the checkout never leaks in; the environment is scrubbed for the same reason (shell
    variables beat .env in compose's interpolation).
    """
    command = require_compose()
    (project_dir / ".env").write_text(env_text)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(project_dir),
        "COMPOSE_PROFILES": ALL_PROFILES,
    }
    args = [*command, "--project-directory", str(project_dir), "-f", str(compose_file), "config"]
    if quiet:
        args.append("-q")
    return subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=120)


@pytest.fixture(scope="session")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The compose file as compose resolves it, with .env.example as .env and every profile."""
    result = run_compose_config(
        COMPOSE_FILE, tmp_path_factory.mktemp("compose"), ENV_EXAMPLE.read_text()
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# --- kustomize --------------------------------------------------------------------------------
def kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def run_kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    command = kustomize_command()
    need(command is not None, "neither kubectl nor kustomize is installed")
    assert command is not None
    return subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, check=False, timeout=120
    )


def render(directory: Path) -> list[dict]:
    result = run_kustomize(directory)
    assert result.returncode == 0, f"kustomize {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def overlay_dirs() -> list[Path]:
    """The base and every committed overlay: what users apply."""
    overlays = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
    return [K8S / "base", *overlays]


def copy_deploy(destination: Path) -> Path:
    """A scratch copy of deploy/ (kustomize refuses absolute paths, so overlays that combine
    components, and overlays broken on purpose, are built inside a copy)."""
    target = destination / "deploy"
    shutil.copytree(DEPLOY, target, ignore=shutil.ignore_patterns("*.env", "__pycache__"))
    return target


def write_overlay(deploy_copy: Path, name: str, *, resources: list[str], components: list[str]):
    overlay = deploy_copy / "k8s" / "overlays" / name
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": resources,
                "components": components,
            }
        )
    )
    return overlay


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Every overlay rendered, plus the optional components combined the way the docs show."""
    out = {path.name: render(path) for path in overlay_dirs()}
    copy = copy_deploy(tmp_path_factory.mktemp("kustomize"))
    keda = write_overlay(
        copy, "with-keda", resources=["../../base"], components=["../../components/keda"]
    )
    out["with-keda"] = render(keda)
    dev_gpu = write_overlay(
        copy, "dev-with-gpu", resources=["../dev"], components=["../../components/gpu"]
    )
    out["dev-with-gpu"] = render(dev_gpu)
    return out


# --- settings ---------------------------------------------------------------------------------
def setting_env_names() -> list[str]:
    """Every environment variable the Settings object reads (BRAINMRI_* plus TUMOR_THRESH)."""
    from brainmri.cli.settings_doc import env_names
    from brainmri.config import Settings

    return [env for name, field in Settings.model_fields.items() for env in env_names(name, field)]


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Exactly ``values`` as the settings environment (every other setting variable hidden)."""
    hidden = set(setting_env_names()) | {k for k in os.environ if k.startswith("BRAINMRI_")}
    saved = {name: os.environ[name] for name in hidden if name in os.environ}
    try:
        for name in hidden:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        for name in hidden | set(values):
            os.environ.pop(name, None)
        os.environ.update(saved)


def settings_from(values: dict[str, str]):
    """The Settings a process with this environment would build (raises if it would refuse)."""
    from brainmri.config import Settings

    only = {k: v for k, v in values.items() if k.startswith("BRAINMRI_") or k == "TUMOR_THRESH"}
    with environment(only):
        return Settings()
