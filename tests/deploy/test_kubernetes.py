"""deploy/k8s: every overlay renders, passes the Kubernetes schemas, and its references hold."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from brainmri.config import Settings
from tests.deploy import checks
from tests.deploy.conftest import K8S, copy_deploy, overlay_dirs, run_kustomize

#: The oldest Kubernetes minor still in provider support, and a current one.
K8S_VERSIONS = ("1.30", "1.32")
VARIANTS = ("base", "dev", "gpu", "with-keda", "dev-with-gpu")


def test_the_expected_overlays_exist() -> None:
    assert {path.name for path in overlay_dirs()} == {"base", "dev", "gpu"}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_pass_schema_validation(rendered: dict, variant: str, version: str) -> None:
    assert checks.schema_problems(rendered[variant], version) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_references_resolve(rendered: dict, variant: str) -> None:
    assert checks.reference_problems(rendered[variant]) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_workloads_have_probes_resources_and_the_right_shape(rendered: dict, variant: str) -> None:
    assert checks.workload_problems(rendered[variant]) == []


#: The settings the scratch-space check reads, at their defaults.
SCRATCH_DEFAULTS = {
    f"BRAINMRI_{name.upper()}": Settings.model_fields[name].default
    for name in ("upload_sandbox_processes", "zip_max_total_bytes", "max_upload_bytes")
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_api_scratch_space_holds_its_concurrent_zip_uploads(
    rendered: dict, variant: str
) -> None:
    assert checks.scratch_space_problems(rendered[variant], SCRATCH_DEFAULTS) == []


def test_scratch_space_check_catches_a_small_tmp_and_a_raised_limit(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["base"])
    api = next(pod for doc, pod in checks.pod_specs(docs) if doc["metadata"]["name"] == "api")
    tmp = next(v for v in api["volumes"] if v["name"] == "tmp")
    tmp["emptyDir"]["sizeLimit"] = "1Gi"  # what it was: two zip uploads could evict the pod
    assert any(
        "/tmp sizeLimit 1Gi" in p for p in checks.scratch_space_problems(docs, SCRATCH_DEFAULTS)
    )
    docs = copy.deepcopy(rendered["base"])
    _container(docs, "api", "api").setdefault("env", []).append(
        {"name": "BRAINMRI_UPLOAD_SANDBOX_PROCESSES", "value": "8"}
    )
    assert checks.scratch_space_problems(docs, SCRATCH_DEFAULTS)


@pytest.mark.parametrize("variant", ["gpu", "dev-with-gpu"])
def test_gpu_overlays_schedule_cuda_workers_on_gpu_nodes(rendered: dict, variant: str) -> None:
    assert checks.gpu_problems(rendered[variant]) == []
    trainer = next(
        c
        for doc, pod in checks.pod_specs(rendered[variant])
        if doc["metadata"]["name"] == "trainer"
        for c in pod["containers"]
    )
    assert "cuda" in trainer["image"]
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_base_has_no_gpu_and_no_in_cluster_infrastructure(rendered: dict) -> None:
    docs = rendered["base"]
    assert checks.gpu_problems(docs)  # no GPU worker in the base
    names = {doc["metadata"]["name"] for doc, _ in checks.pod_specs(docs)}
    assert not names & {"postgres", "redis", "minio"}, "the base expects external services"


def test_dev_runs_postgres_redis_with_aof_and_minio(rendered: dict) -> None:
    pods = {doc["metadata"]["name"]: pod for doc, pod in checks.pod_specs(rendered["dev"])}
    assert {"postgres", "redis", "minio", "minio-init"} <= set(pods)
    redis_args = " ".join(pods["redis"]["containers"][0]["args"])
    assert "--appendonly yes" in redis_args and "--appendfsync always" in redis_args
    bucket_job = " ".join(pods["minio-init"]["containers"][0]["args"])
    assert "local/brainmri" in bucket_job and "local/datasets" in bucket_job
    images = {
        c["image"] for doc, pod in checks.pod_specs(rendered["dev"]) for c in pod["containers"]
    }
    assert "brainmri:dev" in images, "dev runs the locally built image"


def test_keda_component_replaces_the_cpu_autoscaler(rendered: dict) -> None:
    kinds = {doc["kind"] for doc in rendered["with-keda"]}
    assert "ScaledObject" in kinds
    assert "HorizontalPodAutoscaler" not in kinds, "KEDA owns the HPA; two would fight"
    scaled = next(d for d in rendered["with-keda"] if d["kind"] == "ScaledObject")
    lists = {t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    assert lists == {"predict", "evaluate"}


def test_ingress_limits_match_the_nginx_sidecar(rendered: dict) -> None:
    proxy = (K8S.parent / "nginx" / "api-proxy.inc").read_text()
    ingress = next(d for d in rendered["base"] if d["kind"] == "Ingress")
    annotations = ingress["metadata"]["annotations"]
    body = checks.nginx_value(proxy, "client_max_body_size")
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == body
    read = checks.nginx_seconds(checks.nginx_value(proxy, "proxy_read_timeout") or "0")
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= read


def test_nginx_sidecar_serves_the_rendered_configuration(rendered: dict) -> None:
    docs = rendered["base"]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and "default.conf" in d["data"])
    assert (
        config_map["data"]["api-proxy.inc"] == (K8S.parent / "nginx" / "api-proxy.inc").read_text()
    )
    listen = checks.nginx_value(config_map["data"]["default.conf"], "listen")
    api = next(pod for doc, pod in checks.pod_specs(docs) if doc["metadata"]["name"] == "api")
    nginx = next(c for c in api["containers"] if c["name"] == "nginx")
    assert [p["containerPort"] for p in nginx["ports"]] == [int(listen or 0)]
    mount = next(m for m in nginx["volumeMounts"] if m["name"] == "nginx-conf")
    assert mount["mountPath"] == "/etc/nginx/conf.d"


# --- the checks catch what they protect ---------------------------------------------------------
def _container(docs: list[dict], workload: str, container: str) -> dict:
    return next(
        c
        for doc, pod in checks.pod_specs(docs)
        if doc["metadata"]["name"] == workload
        for c in pod["containers"]
        if c["name"] == container
    )


def _workload(docs: list[dict], name: str) -> dict:
    return next(d for d in docs if d["metadata"]["name"] == name and d["kind"] == "Deployment")


@pytest.mark.parametrize(
    ("change", "check", "expected"),
    [
        (
            lambda d: _container(d, "api", "api")["envFrom"][0]["configMapRef"].update(name="x"),
            checks.reference_problems,
            "ConfigMap 'x' does not exist",
        ),
        (
            lambda d: next(x for x in d if x["kind"] == "Service")["spec"].update(
                selector={"app.kubernetes.io/component": "nobody"}
            ),
            checks.reference_problems,
            "selects no pods",
        ),
        (
            lambda d: _container(d, "api", "api")["readinessProbe"]["httpGet"].update(port="web"),
            checks.reference_problems,
            "readinessProbe uses unknown port 'web'",
        ),
        (
            lambda d: next(x for x in d if x["kind"] == "HorizontalPodAutoscaler")["spec"][
                "scaleTargetRef"
            ].update(name="workers"),
            checks.reference_problems,
            "scales missing Deployment/workers",
        ),
        (
            lambda d: _container(d, "api", "api")["readinessProbe"]["httpGet"].update(
                path="/healthz"
            ),
            checks.workload_problems,
            "readinessProbe is not GET /readyz",
        ),
        (
            lambda d: _container(d, "worker-cpu", "worker").pop("resources"),
            checks.workload_problems,
            "no resources.requests.cpu",
        ),
        (
            lambda d: _workload(d, "beat")["spec"].update(replicas=2),
            checks.workload_problems,
            "Deployment/beat: must have replicas 1",
        ),
        (
            lambda d: _container(d, "trainer", "trainer").update(image="brainmri:latest"),
            checks.workload_problems,
            "floating tag 'latest'",
        ),
        (
            lambda d: d[:] and d.remove(next(x for x in d if x["kind"] == "Job")),
            checks.workload_problems,
            "no Job runs `brainmri db upgrade`",
        ),
    ],
)
def test_kubernetes_checks_catch_breakage(rendered: dict, change, check, expected: str) -> None:
    docs = copy.deepcopy(rendered["base"])
    change(docs)
    problems = check(docs)
    assert any(expected in problem for problem in problems), problems


def test_schema_validation_catches_a_misspelt_field(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["base"])
    container = _container(docs, "api", "api")
    container["readinesProbe"] = container.pop("readinessProbe")
    problems = checks.schema_problems(docs, K8S_VERSIONS[-1])
    assert any("readinesProbe" in problem for problem in problems), problems


def test_gpu_check_catches_a_worker_without_toleration(rendered: dict) -> None:
    docs = copy.deepcopy(rendered["gpu"])
    pod = next(p for d, p in checks.pod_specs(docs) if d["metadata"]["name"] == "worker-gpu")
    pod.pop("tolerations")
    assert any("tolerate" in p for p in checks.gpu_problems(docs))


def test_kustomize_fails_on_a_broken_overlay(tmp_path: Path) -> None:
    deploy = copy_deploy(tmp_path)
    kustomization = deploy / "k8s" / "base" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("beat.yaml", "beet.yaml"))
    result = run_kustomize(deploy / "k8s" / "overlays" / "dev")
    assert result.returncode != 0
    assert "beet.yaml" in result.stderr


# --- network policies ------------------------------------------------------------------------
NETWORK_VARIANTS = ("base", "dev", "gpu", "with-keda", "dev-with-gpu")
API = {"app.kubernetes.io/name": "brainmri", "app.kubernetes.io/component": "api"}
NGINX_PORT, UVICORN_PORT = 8080, 8000


@pytest.mark.parametrize("variant", NETWORK_VARIANTS)
def test_only_the_api_port_is_open_to_other_namespaces(rendered: dict, variant: str) -> None:
    """Workers, trainer, beat, migration and (in dev) the databases take nothing from outside
    the namespace; the API takes clients on nginx's port, not on uvicorn's."""
    assert checks.open_ports(rendered[variant]) == {"api": [str(NGINX_PORT)]}


@pytest.mark.parametrize("variant", NETWORK_VARIANTS)
def test_prometheus_in_monitoring_reads_uvicorn_directly(rendered: dict, variant: str) -> None:
    docs = rendered[variant]
    prometheus = checks.Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
    assert checks.ingress_allowed(docs, API, UVICORN_PORT, prometheus)
    elsewhere = checks.Peer("default", {"app.kubernetes.io/name": "prometheus"})
    assert not checks.ingress_allowed(docs, API, UVICORN_PORT, elsewhere)
    # Not even a pod of brainmri's own namespace bypasses nginx.
    worker = checks.Peer("brainmri", {"app.kubernetes.io/name": "brainmri"})
    assert not checks.ingress_allowed(docs, API, UVICORN_PORT, worker)


@pytest.mark.parametrize("variant", ["dev", "dev-with-gpu"])
def test_dev_databases_take_connections_from_brainmri_pods_only(
    rendered: dict, variant: str
) -> None:
    docs = rendered[variant]
    services = {
        "postgres": (
            {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/component": "database"},
            5432,
        ),
        "redis": (
            {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "broker"},
            6379,
        ),
        "minio": (
            {"app.kubernetes.io/name": "minio", "app.kubernetes.io/component": "object-store"},
            9000,
        ),
    }
    environments = checks.container_environments(docs)
    stranger = checks.Peer("brainmri", {"app.kubernetes.io/name": "debug-shell"})
    for doc, _ in checks.pod_specs(docs):
        labels = doc["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/name") != "brainmri":
            continue
        me = checks.Peer("brainmri", labels)
        # Every brainmri pod reaches what its connection settings name.
        for key, env in environments.items():
            if key.startswith(f"{doc['kind']}/{doc['metadata']['name']}["):
                assert "@postgres:5432/" in env["BRAINMRI_DATABASE_URL"], key
                assert env["BRAINMRI_BROKER_URL"].startswith("redis://redis:6379/"), key
                assert env["BRAINMRI_S3_ENDPOINT"] == "minio:9000", key
        for service, (target, port) in services.items():
            assert checks.ingress_allowed(docs, target, port, me), (
                doc["metadata"]["name"],
                service,
            )
    bucket_job = checks.Peer(
        "brainmri",
        {"app.kubernetes.io/name": "minio", "app.kubernetes.io/component": "object-store-init"},
    )
    assert checks.ingress_allowed(docs, *services["minio"], bucket_job)
    for target, port in services.values():
        assert not checks.ingress_allowed(docs, target, port, stranger)


def test_the_network_check_notices_a_missing_default_deny(rendered: dict) -> None:
    docs = [
        doc
        for doc in copy.deepcopy(rendered["dev"])
        if doc["metadata"]["name"] != "default-deny-ingress"
    ]
    opened = checks.open_ports(docs)
    assert opened["worker-cpu"] == ["undeclared ports"]
    assert {"worker-cpu", "trainer", "beat", "migrate"} <= set(opened)
    assert "redis" not in opened  # its own policy still isolates it
    broad = copy.deepcopy(rendered["base"])
    policy = next(d for d in broad if d["metadata"]["name"] == "api-ingress")
    policy["spec"]["ingress"][1].pop("from")  # the metrics port open to everyone
    assert checks.open_ports(broad)["api"] == [str(UVICORN_PORT), str(NGINX_PORT)]
