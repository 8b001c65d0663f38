"""Dockerfile and .dockerignore: hadolint-style static checks (no Docker engine needed)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PROJECT_ROOT
from tests.deploy import checks

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"


def test_dockerfile_passes_the_lint_checks() -> None:
    assert checks.dockerfile_problems(DOCKERFILE.read_text()) == []


def test_dockerignore_keeps_everything_but_the_sources_out() -> None:
    copied = checks.dockerfile_copy_sources(DOCKERFILE.read_text())
    assert "deploy/docker/healthcheck.py" in copied
    assert checks.dockerignore_problems(DOCKERIGNORE.read_text(), copied) == []


def test_compose_builds_targets_and_arguments_the_dockerfile_has(compose_config: dict) -> None:
    text = DOCKERFILE.read_text()
    stages = {name for _, name, _ in checks.dockerfile_stages(text)}
    declared = {
        rest.split("=")[0]
        for instruction, rest in checks.dockerfile_instructions(text)
        if instruction == "ARG"
    }
    for name, service in compose_config["services"].items():
        build = service.get("build")
        if build:
            assert build["target"] in stages, name
            assert set(build.get("args") or {}) <= declared, name
    # Both flavours are handled, and anything else is refused.
    assert re.search(r"\bcpu\)", text) and re.search(r"\bcuda\)", text)
    assert "TORCH_FLAVOR must be cpu or cuda" in text


def test_kubernetes_runs_as_the_image_user(rendered: dict) -> None:
    uid = checks.dockerfile_user(DOCKERFILE.read_text())
    for doc, pod in checks.pod_specs(rendered["base"]):
        if any(checks.is_brainmri(c) for c in pod["containers"]):
            assert pod["securityContext"]["runAsUser"] == uid, doc["metadata"]["name"]


def test_image_installs_the_pins_from_pyproject() -> None:
    """The dependency layer reads pyproject.toml; no second list of pins can drift."""
    text = DOCKERFILE.read_text()
    assert "tomllib" in text and '["project"]["dependencies"]' in text
    assert not (PROJECT_ROOT / "requirements.txt").exists() or "requirements.txt" in text


# --- the checks catch what they protect ---------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("USER 10001:10001", "USER root", "numeric non-root UID"),
        ("USER 10001:10001\n", "", "sets no USER"),
        ("HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK"),
        ("python:3.11.7-slim-bookworm", "python:latest", "floating tag 'latest'"),
        ("python:3.11.7-slim-bookworm", "python", "has no tag"),
        ("python:3.11.7-slim-bookworm", "python:slim", "names no version"),
        ("# syntax=docker/dockerfile:1.12", "# syntax=docker/dockerfile:1", "version-pinned"),
        (
            'ENTRYPOINT ["tini", "--"]',
            'ADD https://example.com/tini /tini\nENTRYPOINT ["tini", "--"]',
            "ADD of a remote source",
        ),
        ("EXPOSE 8000", "ENV BRAINMRI_S3_SECRET_KEY=hunter2\nEXPOSE 8000", "must not be baked"),
        ("ARG APP_UID=10001", "ARG GITHUB_TOKEN\nARG APP_UID=10001", "must not be baked"),
        ("--no-install-recommends ", "", "apt-get install without"),
        ("WORKDIR /build\n", "WORKDIR /build\nCOPY shared ./shared\n", "source is copied before"),
        (
            'CMD ["brainmri", "serve", "--host", "0.0.0.0", "--port", "8000"]',
            "CMD brainmri serve",
            "shell form",
        ),
    ],
)
def test_dockerfile_checks_catch_breakage(old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    problems = checks.dockerfile_problems(text.replace(old, new, 1))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ".env reaches the build context"),
        ("*\n!pyproject.toml\n!README.md\n!shared/\n!services/\n", "healthcheck.py is left out"),
        ("*\n!*\n", ".git reaches the build context"),
        ("*\n!pyproject.toml\n!README.md\n!services/\n", "config.py is left out"),
    ],
)
def test_dockerignore_check_catches_breakage(text: str, expected: str) -> None:
    problems = checks.dockerignore_problems(text, ["deploy/docker/healthcheck.py"])
    assert any(expected in problem for problem in problems), problems


def test_dockerignore_matching_follows_docker_rules() -> None:
    rules = "*\n!shared/\n**/__pycache__\n!deploy/docker/healthcheck.py\n"
    assert checks.dockerignored(rules, ".env")
    assert not checks.dockerignored(rules, "shared/brainmri/config.py")
    assert checks.dockerignored(rules, "shared/brainmri/__pycache__/config.cpython-311.pyc")
    assert not checks.dockerignored(rules, "deploy/docker/healthcheck.py")
    assert checks.dockerignored(rules, "deploy/native.env")
