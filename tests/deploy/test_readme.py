"""The README's "Run with Docker" and "Deploy on Kubernetes" commands match the files."""

from __future__ import annotations

import re

import pytest

from tests.conftest import PROJECT_ROOT
from tests.deploy import checks
from tests.deploy.conftest import ENV_EXAMPLE

README = PROJECT_ROOT / "README.md"


def section(name: str) -> str:
    text = README.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert start in text and end in text
    return text.partition(start)[2].partition(end)[0]


def commands(name: str) -> list[str]:
    """Shell lines of the section's code blocks, continuations joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", section(name), re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["docker", "kubernetes"])
def test_sections_exist_and_keep_the_disclaimer(name: str) -> None:
    text = section(name)
    assert text.strip().startswith(
        {"docker": "## Run with Docker", "kubernetes": "## Deploy on Kubernetes"}[name]
    )
    assert "not a medical device" in " ".join(text.split())


def test_docker_commands_match_the_compose_file(compose_config: dict) -> None:
    lines = commands("docker")
    services = compose_config["services"]
    assert "cp .env.example .env" in lines[0]
    assert any(line.startswith("docker compose up -d") for line in lines)
    for line in lines:
        for profile in re.findall(r"--profile (\S+)", line):
            assert any(profile in (s.get("profiles") or []) for s in services.values()), line
        for service in re.findall(r"--scale ([\w-]+)=", line):
            assert service in services, line
        run = re.search(r"docker compose run .*--entrypoint \S+ ([\w-]+)", line)
        if run:
            assert run.group(1) in services, line
    published = {port for _, port, _ in checks.published_ports(services["nginx"])}
    for url in re.findall(r"http://127\.0\.0\.1:(\d+)/", " ".join(lines)):
        assert url in published | {"5555"}, url


def test_docker_key_recipe_reads_the_admin_key_of_env_example() -> None:
    line = next(line for line in commands("docker") if line.startswith("KEY="))
    pattern = re.search(r"s/(.*?)/\\1/p", line)
    assert pattern, line
    regex = pattern.group(1).replace(r"\(", "(").replace(r"\)", ")")
    match = next(m for m in map(re.compile(regex).match, ENV_EXAMPLE.read_text().splitlines()) if m)
    assert f"{match.group(1)}:admin" in ENV_EXAMPLE.read_text()


def test_make_targets_in_the_docker_section_exist() -> None:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for target in re.findall(r"\bmake (\w+)", section("docker")):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_kubernetes_commands_match_the_manifests(rendered: dict) -> None:
    lines = commands("kubernetes")
    for path in re.findall(r"kubectl apply -k (\S+)", " ".join(lines)):
        assert (PROJECT_ROOT / path / "kustomization.yaml").is_file(), path
    dev = rendered["dev"]
    namespace = next(d["metadata"]["namespace"] for d in dev if d["kind"] == "Deployment")
    for line in lines:
        if line.startswith("kubectl -n"):
            assert line.split()[2] == namespace, line
    kinds = {("svc", d["metadata"]["name"]) for d in dev if d["kind"] == "Service"}
    kinds |= {("job", d["metadata"]["name"]) for d in dev if d["kind"] == "Job"}
    for kind, name in re.findall(r"\b(svc|job)/([\w-]+)", " ".join(lines)):
        assert (kind, name) in kinds, f"{kind}/{name}"
    image = re.search(r"docker build -t (\S+) \.", " ".join(lines)).group(1)
    assert image in {c["image"] for _, pod in checks.pod_specs(dev) for c in pod["containers"]}
    key = next(line for line in lines if line.startswith("KEY=")).split("=", 1)[1]
    api = checks.container_environments(dev)["Deployment/api[api]"]
    assert f"{key}:admin" in api["BRAINMRI_API_KEYS"]


def test_paths_named_in_the_sections_exist() -> None:
    text = section("docker") + section("kubernetes")
    named = set(re.findall(r"`((?:deploy|\.env|docker-compose)[\w./*-]*)`", text))
    for path in named - {".env"}:  # .env is the user's copy of .env.example
        matches = list(PROJECT_ROOT.glob(path))
        assert matches, path
