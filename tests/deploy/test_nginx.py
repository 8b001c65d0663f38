"""nginx in front of the API: limits that match the settings, one shared configuration."""

from __future__ import annotations

import pytest

from brainmri.config import Settings
from tests.deploy import checks
from tests.deploy.conftest import DEPLOY

NGINX = DEPLOY / "nginx"
PROXY = NGINX / "api-proxy.inc"
DEFAULTS = Settings.model_fields


def limits() -> dict:
    return {
        "max_upload_bytes": DEFAULTS["max_upload_bytes"].default,
        "legacy_wait_seconds": DEFAULTS["legacy_wait_seconds"].default,
    }


def test_limits_and_timeouts_match_the_api_settings() -> None:
    assert checks.nginx_problems(PROXY.read_text(), **limits()) == []


@pytest.mark.parametrize("name", ["compose.conf", "k8s.conf"])
def test_both_front_doors_include_the_shared_limits(name: str) -> None:
    text = (NGINX / name).read_text()
    assert checks.nginx_value(text, "include") == "/etc/nginx/conf.d/api-proxy.inc"
    assert checks.nginx_value(text, "listen") == "8080"
    assert text.count("{") == text.count("}")
    upstreams = [args for d, args in checks.nginx_directives(text) if d == "upstream"]
    assert upstreams == [["brainmri_api"]], "api-proxy.inc proxies to upstream brainmri_api"


def test_compose_mounts_the_configuration_where_it_is_included(compose_config: dict) -> None:
    volumes = dict(
        (target, source) for source, target in checks.mounts(compose_config["services"]["nginx"])
    )
    assert volumes["/etc/nginx/conf.d/default.conf"].endswith("deploy/nginx/compose.conf")
    assert volumes["/etc/nginx/conf.d/api-proxy.inc"].endswith("deploy/nginx/api-proxy.inc")
    ports = checks.published_ports(compose_config["services"]["nginx"])
    assert [target for _, _, target in ports] == ["8080"]


def test_compose_upstream_is_the_api_service(compose_config: dict) -> None:
    server = [
        args
        for d, args in checks.nginx_directives((NGINX / "compose.conf").read_text())
        if d == "server" and args
    ]
    host, _, port = server[0][0].partition(":")
    assert host in compose_config["services"]
    assert [port] == compose_config["services"]["api"]["expose"]


def test_get_metrics_is_not_published_but_post_metrics_is() -> None:
    text = PROXY.read_text()
    assert "/metrics" in checks.nginx_exact_locations(text)
    assert "limit_except POST" in " ".join(
        f"{d} {' '.join(a)}" for d, a in checks.nginx_directives(text)
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("client_max_body_size 72m;", "client_max_body_size 1m;", "does not match"),
        ("client_max_body_size 72m;", "client_max_body_size 0;", "does not match"),
        ("client_max_body_size 72m;", "", "no client_max_body_size"),
        ("proxy_read_timeout 90s;", "proxy_read_timeout 60s;", "does not outlast"),
        ("client_body_timeout 30s;", "client_body_timeout 10m;", "stalled client"),
        ("proxy_request_buffering on;", "proxy_request_buffering off;", "slow uploads"),
        ("location / {", "location / {{", "unbalanced braces"),
    ],
)
def test_nginx_checks_catch_breakage(old: str, new: str, expected: str) -> None:
    text = PROXY.read_text()
    assert old in text
    problems = checks.nginx_problems(text.replace(old, new), **limits())
    assert any(expected in problem for problem in problems), problems
