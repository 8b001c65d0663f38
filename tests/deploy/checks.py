"""Static checks of the deployment files, each a function that returns the problems it finds.

The tests run every check twice: on the committed files (no problems) and on a copy broken on
purpose (the problem is reported), so a check that quietly stopped checking fails too.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# --- settings variables -----------------------------------------------------------------------
#: BRAINMRI_* variables that exist but are not service settings (the test suite's own).
NOT_SETTINGS = frozenset({"BRAINMRI_REQUIRE_SERVICES", "BRAINMRI_REAL_DATA"})
SETTING_TOKEN = re.compile(r"(?<![A-Za-z0-9_])BRAINMRI_[A-Z0-9_]*[A-Z0-9]")


def unknown_setting_names(text: str, known: Iterable[str]) -> set[str]:
    """BRAINMRI_* names in ``text`` that no setting reads (a typo configures nothing)."""
    return set(SETTING_TOKEN.findall(text)) - set(known) - NOT_SETTINGS


def names_missing_from_env_file(text: str, names: Iterable[str]) -> list[str]:
    """Names without a ``NAME=`` line, set or commented out (``# NAME=default``)."""
    return [n for n in names if not re.search(rf"^[ \t]*(#[ \t]*)?{re.escape(n)}=", text, re.M)]


def names_missing_from_table(readme: str, names: Iterable[str]) -> list[str]:
    start, end = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
    table = readme.partition(start)[2].partition(end)[0]
    return [name for name in names if f"`{name}`" not in table]


# --- docker compose ---------------------------------------------------------------------------
REQUIRED_SERVICES = frozenset(
    {"api", "worker", "trainer", "beat", "postgres", "redis", "minio", "minio-init", "migrate"}
    | {"nginx"}
)
BRAINMRI_NEEDS = {
    "migrate": "service_completed_successfully",
    "minio-init": "service_completed_successfully",
    "redis": "service_healthy",
}


def command_of(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


def has_healthcheck(service: dict) -> bool:
    check = service.get("healthcheck") or {}
    test = check.get("test")
    return bool(test) and not check.get("disable") and test not in (["NONE"], "NONE")


def depends_on(service: dict) -> dict[str, str | None]:
    """Dependency -> condition (None for the short syntax, which waits for nothing)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw)
    return {name: (spec or {}).get("condition") for name, spec in raw.items()}


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) of every published port, in v1's or v2's rendering."""
    ports = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published = port.get("published")
            if published is not None:
                ports.append((port.get("host_ip", ""), str(published), str(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            ports.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            ports.append(("", parts[0], parts[1]))
    return ports


def mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of every volume, in v1's (short) or v2's (long) rendering."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            out.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            parts = str(volume).split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return out


def image_problem(image: str) -> str | None:
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return f"image {image!r} has no tag"
    if tag == "latest":
        return f"image {image!r} uses the floating tag 'latest'"
    return None


def compose_problems(config: dict) -> list[str]:
    services: dict[str, dict] = config.get("services") or {}
    named_volumes = set(config.get("volumes") or {})
    problems = [f"missing service {name!r}" for name in sorted(REQUIRED_SERVICES - set(services))]
    for name, service in services.items():
        if not is_one_shot(service) and not has_healthcheck(service):
            problems.append(f"{name}: long-running service without a healthcheck")
        if "image" in service:
            problem = image_problem(str(service["image"]))
            if problem:
                problems.append(f"{name}: {problem}")
        elif "build" not in service:
            problems.append(f"{name}: neither image nor build")
        for dependency, condition in depends_on(service).items():
            if dependency not in services:
                problems.append(f"{name}: depends on unknown service {dependency!r}")
                continue
            if condition in (None, "service_started"):
                problems.append(f"{name}: waits for {dependency!r} to start, not to be ready")
            if condition == "service_healthy" and not has_healthcheck(services[dependency]):
                problems.append(f"{name}: waits for {dependency!r} healthy; it has no healthcheck")
            if condition == "service_completed_successfully" and not is_one_shot(
                services[dependency]
            ):
                problems.append(f"{name}: waits for {dependency!r} to finish; it never does")
        command = command_of(service)
        if command[:1] == ["brainmri"] and command[1:2] != ["db"]:
            conditions = depends_on(service)
            for dependency, wanted in BRAINMRI_NEEDS.items():
                if conditions.get(dependency) != wanted:
                    problems.append(f"{name}: must wait for {dependency!r} ({wanted})")
    problems += _compose_roles(services, named_volumes)
    return problems


def _compose_roles(services: dict[str, dict], named_volumes: set[str]) -> list[str]:
    problems = []

    def service(name: str) -> dict:
        return services.get(name) or {}

    if command_of(service("migrate"))[:3] != ["brainmri", "db", "upgrade"]:
        problems.append("migrate: must run `brainmri db upgrade`")
    if depends_on(service("migrate")).get("postgres") != "service_healthy":
        problems.append("migrate: must wait for postgres to be healthy")
    if published_ports(service("api")):
        problems.append("api: must not be published (only nginx may reach it)")
    nginx_ports = published_ports(service("nginx"))
    if not any(published == "8000" for _, published, _ in nginx_ports):
        problems.append("nginx: must publish the README's port 8000")
    if depends_on(service("nginx")).get("api") != "service_healthy":
        problems.append("nginx: must wait for the api to be healthy")
    redis = " ".join(command_of(service("redis")))
    if "--appendonly yes" not in redis or "--appendfsync always" not in redis:
        problems.append("redis: AOF persistence (--appendonly yes --appendfsync always) is off")
    init = " ".join(command_of(service("minio-init")))
    for bucket in ("brainmri", "datasets"):
        if f"local/{bucket}" not in init:
            problems.append(f"minio-init: does not create the bucket {bucket!r}")
    for name, path in (
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
        ("minio", "/data"),
    ):
        sources = [source for source, target in mounts(service(name)) if target == path]
        if not sources or sources[0] not in named_volumes:
            problems.append(f"{name}: {path} is not on a named volume")
    gpu = [
        (name, s)
        for name, s in services.items()
        if "gpu" in (s.get("profiles") or []) and command_of(s)[:2] == ["brainmri", "worker"]
    ]
    if not gpu:
        problems.append("no `brainmri worker` service in the gpu profile")
    for name, s in gpu:
        devices = (
            s.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices") or []
        )
        if not any(
            d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or []) for d in devices
        ):
            problems.append(f"{name}: reserves no NVIDIA GPU")
        if (s.get("environment") or {}).get("BRAINMRI_DEVICE") != "cuda":
            problems.append(f"{name}: BRAINMRI_DEVICE is not cuda")
    if not any("flower" in (s.get("profiles") or []) for s in services.values()):
        problems.append("no service in the flower profile")
    return problems


def compose_api_probe_paths(config: dict) -> list[str]:
    """Paths of the URLs the api service's healthcheck fetches."""
    test = (config["services"]["api"].get("healthcheck") or {}).get("test") or []
    words = shlex.split(test) if isinstance(test, str) else test
    return [re.sub(r"^https?://[^/]+", "", w) for w in words if re.match(r"https?://", str(w))]


# --- Kubernetes -------------------------------------------------------------------------------
#: Custom resources whose schema kubernetes-validate does not ship (components/keda).
CRD_KINDS = frozenset(
    {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}
)
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"})
#: Secrets the docs tell users to create themselves (components/keda).
EXTERNAL_SECRETS = frozenset({"brainmri-keda-redis"})
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def schema_problems(docs: list[dict], version: str) -> list[str]:
    import kubernetes_validate

    problems = []
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{_id(doc)} (k8s {version}): {str(exc).splitlines()[0]}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{_id(doc)}: no schema for {doc.get('apiVersion')} in k8s {version}")
    return problems


def _id(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_specs(docs: list[dict]) -> Iterator[tuple[dict, dict]]:
    for doc in docs:
        if doc.get("kind") in WORKLOADS:
            yield doc, doc["spec"]["template"]["spec"]


def containers(pod: dict) -> list[dict]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _named(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def _data_keys(doc: dict) -> set[str]:
    return set(doc.get("data") or {}) | set(doc.get("stringData") or {})


def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def reference_problems(docs: list[dict]) -> list[str]:
    """Every name one manifest uses for another (ConfigMap, Secret, Service, port, ...) exists."""
    problems = []
    config_maps, secrets = _named(docs, "ConfigMap"), _named(docs, "Secret")
    accounts = _named(docs, "ServiceAccount")
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] not in CLUSTER_SCOPED}
    if len(namespaces) != 1 or None in namespaces:
        problems.append(f"resources are spread over namespaces {sorted(map(str, namespaces))}")

    def need(kind: str, name: str, key: str | None, where: str) -> None:
        table = config_maps if kind == "ConfigMap" else secrets
        if kind == "Secret" and name in EXTERNAL_SECRETS:
            return
        if name not in table:
            problems.append(f"{where}: {kind} {name!r} does not exist")
        elif key is not None and key not in _data_keys(table[name]):
            problems.append(f"{where}: {kind} {name!r} has no key {key!r}")

    templates = []
    for doc, pod in pod_specs(docs):
        where = _id(doc)
        labels = doc["spec"]["template"].get("metadata", {}).get("labels", {})
        templates.append((where, labels, pod))
        account = pod.get("serviceAccountName")
        if account and account not in accounts:
            problems.append(f"{where}: ServiceAccount {account!r} does not exist")
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        claims = {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates") or []}
        for volume in volumes.values():
            if "configMap" in volume:
                need("ConfigMap", volume["configMap"]["name"], None, where)
            if "secret" in volume:
                need("Secret", volume["secret"]["secretName"], None, where)
        for container in containers(pod):
            here = f"{where}[{container['name']}]"
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    need("ConfigMap", source["configMapRef"]["name"], None, here)
                if "secretRef" in source:
                    need("Secret", source["secretRef"]["name"], None, here)
            for env in container.get("env") or []:
                ref = env.get("valueFrom") or {}
                if "configMapKeyRef" in ref:
                    need(
                        "ConfigMap",
                        ref["configMapKeyRef"]["name"],
                        ref["configMapKeyRef"]["key"],
                        here,
                    )
                if "secretKeyRef" in ref:
                    need("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"], here)
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes and mount["name"] not in claims:
                    problems.append(f"{here}: mounts unknown volume {mount['name']!r}")
            port_names = {p.get("name") for p in container.get("ports") or []}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                action = (container.get(probe) or {}).get("httpGet") or (
                    container.get(probe) or {}
                ).get("tcpSocket")
                if (
                    action
                    and isinstance(action.get("port"), str)
                    and action["port"] not in port_names
                ):
                    problems.append(f"{here}: {probe} uses unknown port {action['port']!r}")

    services = _named(docs, "Service")
    for name, service in services.items():
        selector = service["spec"].get("selector") or {}
        matched = [pod for _, labels, pod in templates if _selects(selector, labels)]
        if not matched:
            problems.append(f"Service/{name}: selects no pods")
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort")
            if isinstance(target, str) and not any(
                target in {p.get("name") for c in containers(pod) for p in c.get("ports") or []}
                for pod in matched
            ):
                problems.append(f"Service/{name}: targetPort {target!r} is no container port")
    for ingress in _named(docs, "Ingress").values():
        for rule in ingress["spec"].get("rules") or []:
            for path in rule.get("http", {}).get("paths") or []:
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                if service is None:
                    problems.append(f"{_id(ingress)}: Service {backend['name']!r} does not exist")
                    continue
                names = {p.get("name") for p in service["spec"].get("ports") or []}
                numbers = {p.get("port") for p in service["spec"].get("ports") or []}
                port = backend.get("port") or {}
                if port.get("name") not in names and port.get("number") not in numbers:
                    problems.append(f"{_id(ingress)}: Service {backend['name']!r} has no such port")
    workloads = {(d["kind"], d["metadata"]["name"]) for d in docs if d.get("kind") in WORKLOADS}
    for hpa in _named(docs, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) not in workloads:
            problems.append(f"{_id(hpa)}: scales missing {target['kind']}/{target['name']}")
    for scaled in _named(docs, "ScaledObject").values():
        target = scaled["spec"]["scaleTargetRef"]
        if (target.get("kind", "Deployment"), target["name"]) not in workloads:
            problems.append(f"{_id(scaled)}: scales missing {target['name']}")
        auths = _named(docs, "TriggerAuthentication")
        for trigger in scaled["spec"].get("triggers") or []:
            ref = (trigger.get("authenticationRef") or {}).get("name")
            if ref and ref not in auths:
                problems.append(f"{_id(scaled)}: TriggerAuthentication {ref!r} does not exist")
    for auth in _named(docs, "TriggerAuthentication").values():
        for ref in auth["spec"].get("secretTargetRef") or []:
            need("Secret", ref["name"], ref["key"], _id(auth))
    for pdb in _named(docs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"].get("matchLabels") or {}
        if not any(_selects(selector, labels) for _, labels, _ in templates):
            problems.append(f"{_id(pdb)}: selects no pods")
    return problems


def is_brainmri(container: dict) -> bool:
    return command_of(container)[:1] == ["brainmri"]


def serve_containers(docs: list[dict]) -> list[tuple[str, dict]]:
    return [
        (f"{_id(doc)}[{c['name']}]", c)
        for doc, pod in pod_specs(docs)
        for c in containers(pod)
        if command_of(c)[:2] == ["brainmri", "serve"]
    ]


def _http_path(container: dict, probe: str) -> str | None:
    return ((container.get(probe) or {}).get("httpGet") or {}).get("path")


def workload_problems(docs: list[dict]) -> list[str]:
    problems = []
    for doc, pod in pod_specs(docs):
        where = _id(doc)
        if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
            problems.append(f"{where}: pod may run as root (securityContext.runAsNonRoot)")
        for container in containers(pod):
            here = f"{where}[{container['name']}]"
            problem = image_problem(str(container.get("image", "")))
            if problem:
                problems.append(f"{here}: {problem}")
            resources = container.get("resources") or {}
            for section, keys in (("requests", ("cpu", "memory")), ("limits", ("cpu", "memory"))):
                for key in keys:
                    if key not in (resources.get(section) or {}):
                        problems.append(f"{here}: no resources.{section}.{key}")
            if (container.get("securityContext") or {}).get(
                "allowPrivilegeEscalation"
            ) is not False:
                problems.append(f"{here}: allowPrivilegeEscalation is not false")
    serving = serve_containers(docs)
    if not serving:
        problems.append("no container runs `brainmri serve`")
    for here, container in serving:
        if _http_path(container, "readinessProbe") != "/readyz":
            problems.append(f"{here}: readinessProbe is not GET /readyz")
        if _http_path(container, "livenessProbe") != "/healthz":
            problems.append(f"{here}: livenessProbe is not GET /healthz")
    deployments = _named(docs, "Deployment")
    for name in ("api", "worker-cpu", "trainer", "beat"):
        if name not in deployments:
            problems.append(f"Deployment {name!r} is missing")
    for name in ("beat", "trainer"):
        spec = (deployments.get(name) or {}).get("spec") or {}
        if spec.get("replicas") != 1 or (spec.get("strategy") or {}).get("type") != "Recreate":
            problems.append(f"Deployment/{name}: must have replicas 1 and strategy Recreate")
    hpas = [h for h in _named(docs, "HorizontalPodAutoscaler").values()]
    scaled = list(_named(docs, "ScaledObject").values())
    if not any(h["spec"]["scaleTargetRef"]["name"] == "worker-cpu" for h in hpas) and not any(
        s["spec"]["scaleTargetRef"]["name"] == "worker-cpu" for s in scaled
    ):
        problems.append("nothing autoscales Deployment/worker-cpu")
    jobs = _named(docs, "Job")
    if not any(
        command_of(c)[:3] == ["brainmri", "db", "upgrade"]
        for job in jobs.values()
        for c in containers(job["spec"]["template"]["spec"])
    ):
        problems.append("no Job runs `brainmri db upgrade`")
    return problems


_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti)?$")


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes binary quantity ("512Mi", "3Gi") in bytes."""
    match = _QUANTITY.match(str(quantity))
    if match is None:
        raise ValueError(f"unsupported quantity {quantity!r}")
    power = {None: 0, "Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4}[match.group(2)]
    return int(match.group(1)) * 1024**power


def scratch_space_problems(docs: list[dict], defaults: dict[str, int]) -> list[str]:
    """The API's /tmp must hold the worst case of its concurrent upload decodes.

    Each decode child may unpack a DICOM zip of up to BRAINMRI_ZIP_MAX_TOTAL_BYTES while the
    upload (up to BRAINMRI_MAX_UPLOAD_BYTES) is spooled next to it; an emptyDir that goes over
    its sizeLimit gets the pod evicted, so a too-small one lets any key holder evict the API.
    ``defaults`` holds the settings' defaults by variable name, for variables left unset.
    """
    problems = []
    environments = container_environments(docs)
    for doc, pod in pod_specs(docs):
        for container in containers(pod):
            if command_of(container)[:2] != ["brainmri", "serve"]:
                continue
            here = f"{_id(doc)}[{container['name']}]"
            env = {**{k: str(v) for k, v in defaults.items()}, **environments.get(here, {})}
            need = int(env["BRAINMRI_UPLOAD_SANDBOX_PROCESSES"]) * (
                int(env["BRAINMRI_ZIP_MAX_TOTAL_BYTES"]) + int(env["BRAINMRI_MAX_UPLOAD_BYTES"])
            )
            mounts_at_tmp = [
                m["name"] for m in container.get("volumeMounts") or [] if m["mountPath"] == "/tmp"
            ]
            volume = next((v for v in pod.get("volumes") or [] if v["name"] in mounts_at_tmp), {})
            limit = (volume.get("emptyDir") or {}).get("sizeLimit")
            if limit is None:
                problems.append(f"{here}: /tmp is not an emptyDir with a sizeLimit")
            elif quantity_bytes(limit) < need:
                problems.append(
                    f"{here}: /tmp sizeLimit {limit} < {need} bytes that concurrent zip uploads "
                    "may unpack (processes x (zip total + upload))"
                )
    return problems


def gpu_problems(docs: list[dict]) -> list[str]:
    """A GPU overlay: a CUDA worker that asks for a GPU and may land on tainted GPU nodes."""
    problems = []
    gpu_workers = [
        (doc, pod, c)
        for doc, pod in pod_specs(docs)
        for c in containers(pod)
        if command_of(c)[:2] == ["brainmri", "worker"]
        and "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
    ]
    if not gpu_workers:
        problems.append("no `brainmri worker` container with an nvidia.com/gpu limit")
    for doc, pod, container in gpu_workers:
        where = _id(doc)
        if not pod.get("nodeSelector") and not pod.get("affinity"):
            problems.append(f"{where}: no nodeSelector/affinity for GPU nodes")
        if not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or []):
            problems.append(f"{where}: does not tolerate the nvidia.com/gpu taint")
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        if env.get("BRAINMRI_DEVICE") != "cuda":
            problems.append(f"{where}: BRAINMRI_DEVICE is not cuda")
        if "cuda" not in str(container.get("image")):
            problems.append(f"{where}: not the CUDA image")
    return problems


def _decoded(secret: dict) -> dict[str, str]:
    data = {
        k: base64.b64decode("".join(str(v).split())).decode()
        for k, v in (secret.get("data") or {}).items()
    }
    data.update(secret.get("stringData") or {})
    return data


def container_environments(docs: list[dict]) -> dict[str, dict[str, str]]:
    """The environment of every brainmri container, resolved from its ConfigMaps and Secrets."""
    config_maps, secrets = _named(docs, "ConfigMap"), _named(docs, "Secret")
    out = {}
    for doc, pod in pod_specs(docs):
        for container in containers(pod):
            if not is_brainmri(container):
                continue
            env: dict[str, str] = {}
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    env.update(config_maps[source["configMapRef"]["name"]].get("data") or {})
                if "secretRef" in source:
                    env.update(_decoded(secrets[source["secretRef"]["name"]]))
            for item in container.get("env") or []:
                if "value" in item:
                    env[item["name"]] = str(item["value"])
            out[f"{_id(doc)}[{container['name']}]"] = env
    return out


def probe_paths(docs: list[dict]) -> tuple[set[str], set[str]]:
    """HTTP probe paths of (brainmri API containers, nginx containers)."""
    api, nginx = set(), set()
    for _, pod in pod_specs(docs):
        for container in containers(pod):
            paths = {
                _http_path(container, probe)
                for probe in ("startupProbe", "livenessProbe", "readinessProbe")
            } - {None}
            if command_of(container)[:2] == ["brainmri", "serve"]:
                api |= paths
            elif "nginx" in str(container.get("image")):
                nginx |= paths
    return api, nginx


# --- nginx ------------------------------------------------------------------------------------
def nginx_directives(text: str) -> list[tuple[str, list[str]]]:
    """(name, arguments) of every simple directive and block opener, comments removed."""
    body = re.sub(r"#[^\n]*", "", text)
    out = []
    for statement in re.split(r"[;{}]", body):
        words = shlex.split(statement.strip(), posix=True) if statement.strip() else []
        if words:
            out.append((words[0], words[1:]))
    return out


def nginx_value(text: str, name: str) -> str | None:
    values = [args[0] for directive, args in nginx_directives(text) if directive == name and args]
    return values[-1] if values else None


def nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)


def nginx_seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value)
    if not match:
        raise ValueError(f"not an nginx time: {value!r}")
    return int(match.group(1)) * units[match.group(2) or "s"]


#: Room on top of BRAINMRI_MAX_UPLOAD_BYTES for multipart framing and form fields, at most.
MULTIPART_SLACK = 16 * 1024**2


def nginx_problems(text: str, *, max_upload_bytes: int, legacy_wait_seconds: float) -> list[str]:
    problems = []
    if text.count("{") != text.count("}"):
        problems.append("unbalanced braces")
    body = nginx_value(text, "client_max_body_size")
    if body is None:
        problems.append("no client_max_body_size (nginx's default 1m rejects uploads)")
    else:
        size = nginx_size(body)
        if not max_upload_bytes < size <= max_upload_bytes + MULTIPART_SLACK:
            problems.append(
                f"client_max_body_size {body} does not match BRAINMRI_MAX_UPLOAD_BYTES "
                f"({max_upload_bytes}) plus up to {MULTIPART_SLACK} bytes of multipart slack"
            )
    read = nginx_value(text, "proxy_read_timeout")
    if read is None or nginx_seconds(read) <= legacy_wait_seconds:
        problems.append(
            f"proxy_read_timeout {read} does not outlast the {legacy_wait_seconds} s wait"
        )
    for name in ("client_body_timeout", "client_header_timeout"):
        value = nginx_value(text, name)
        if value is None or nginx_seconds(value) > 60:
            problems.append(f"{name} {value}: a stalled client may hold a connection for long")
    if nginx_value(text, "proxy_request_buffering") == "off":
        problems.append("proxy_request_buffering off: slow uploads would reach uvicorn")
    return problems


def nginx_exact_locations(text: str) -> set[str]:
    return {
        args[1] for name, args in nginx_directives(text) if name == "location" and args[:1] == ["="]
    }


# --- Dockerfile -------------------------------------------------------------------------------
SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|TOKEN|API_?KEYS?|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I
)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            instruction, _, args = full.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def dockerfile_stages(text: str) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(base image, stage name, instructions) per FROM, with ARG defaults substituted."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    for instruction, rest in dockerfile_instructions(text):
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) > 2 and words[1].lower() == "as" else None
            stages.append((image, name, []))
        elif stages:
            stages[-1][2].append((instruction, rest))
    return stages


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    first = text.splitlines()[0] if text else ""
    if not re.fullmatch(r"# syntax=docker/dockerfile:\d+\.\d+(\.\d+)?", first.strip()):
        problems.append("first line is not a version-pinned `# syntax=docker/dockerfile:X.Y`")
    stages = dockerfile_stages(text)
    if not stages:
        return [*problems, "no FROM"]
    names = set()
    for image, name, _ in stages:
        if image not in names:
            problem = image_problem(image)
            if problem:
                problems.append(f"FROM {problem}")
            elif not re.search(r":\S*\d", image):
                problems.append(f"FROM {image}: the tag names no version")
        if name:
            names.add(name)
    instructions = dockerfile_instructions(text)
    for instruction, rest in instructions:
        if instruction == "ADD" and re.search(r"(https?|git)://|\.git\b", rest):
            problems.append(f"ADD of a remote source ({rest}): use a checked download in RUN")
        if instruction in ("ENV", "ARG"):
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split("=")[0]]:
                if SECRET_NAME.search(key):
                    problems.append(f"{instruction} {key}: secrets must not be baked into images")
        if (
            instruction == "RUN"
            and "apt-get install" in rest
            and ("--no-install-recommends" not in rest or "rm -rf /var/lib/apt/lists" not in rest)
        ):
            problems.append("apt-get install without --no-install-recommends and list cleanup")
        if instruction == "RUN" and re.search(r"\bsudo\b|curl[^|]*\|\s*(ba)?sh", rest):
            problems.append(f"RUN {rest[:40]}...: sudo or a piped installer")
    final = stages[-1][2]
    users = [rest for instruction, rest in final if instruction == "USER"]
    if not users:
        problems.append("the final stage sets no USER (it would run as root)")
    elif users[-1].split(":")[0] in ("root", "0") or not users[-1].split(":")[0].isdigit():
        problems.append(f"USER {users[-1]}: must be a numeric non-root UID (runAsNonRoot)")
    checks = [rest for instruction, rest in final if instruction == "HEALTHCHECK"]
    if not checks or checks[-1].upper() == "NONE":
        problems.append("the final stage has no HEALTHCHECK")
    for instruction in ("ENTRYPOINT", "CMD"):
        values = [rest for i, rest in final if i == instruction]
        if values and not values[-1].startswith("["):
            problems.append(f"{instruction} in shell form: signals would not reach the service")
    order = [(i, rest) for i, rest in instructions if i in ("COPY", "RUN")]
    copy_pyproject = _first(order, lambda i, r: i == "COPY" and "pyproject.toml" in _sources(r))
    install_deps = _first(order, lambda i, r: i == "RUN" and PIP_REQUIREMENTS.search(r))
    install_project = _first(order, lambda i, r: i == "RUN" and "--no-deps" in r)
    copy_source = _first(
        order,
        lambda i, r: (
            i == "COPY"
            and any(s in (".", "./") or s.startswith(("shared", "services")) for s in _sources(r))
        ),
    )
    if None in (copy_pyproject, install_deps, install_project):
        problems.append("layer order: COPY pyproject.toml, install dependencies, then the project")
    elif not copy_pyproject < install_deps < install_project:
        problems.append("layer order: dependencies must install before the project source")
    if copy_source is not None and install_deps is not None and copy_source < install_deps:
        problems.append("the source is copied before the dependencies install (no layer caching)")
    return problems


PIP_REQUIREMENTS = re.compile(r"pip\"?\s+install\b[^;&|]*\s-r\s")


def _sources(copy_args: str) -> list[str]:
    """The source operands of a COPY/ADD (everything but flags and the destination)."""
    return [w for w in copy_args.split() if not w.startswith("--")][:-1]


def _first(items: list[tuple[str, str]], predicate: Any) -> int | None:
    return next((n for n, (i, r) in enumerate(items) if predicate(i, r)), None)


def dockerfile_user(text: str) -> int:
    final = dockerfile_stages(text)[-1][2]
    return int([rest for instruction, rest in final if instruction == "USER"][-1].split(":")[0])


def dockerfile_copy_sources(text: str) -> list[str]:
    sources = []
    for instruction, rest in dockerfile_instructions(text):
        if instruction in ("COPY", "ADD") and "--from=" not in rest:
            sources += _sources(rest)
    return sources


# --- .dockerignore ----------------------------------------------------------------------------
def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        if part in ("**", "**/"):
            out += "(.*/)?" if part == "**/" else ".*"
        elif part == "*":
            out += "[^/]*"
        elif part == "?":
            out += "[^/]"
        else:
            out += re.escape(part)
    return re.compile(out)


def dockerignored(text: str, path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching pattern wins)."""
    excluded = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for line in text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = _ignore_regex(pattern.lstrip("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


MUST_STAY_OUT = (
    ".env",
    ".venv",
    ".git",
    "var",
    "runs",
    "data",
    "tests",
    ".pytest_cache",
    "brainmri.egg-info",
    "shared/brainmri/__pycache__/x.pyc",
)
MUST_GO_IN = (
    "pyproject.toml",
    "README.md",
    "shared/brainmri/config.py",
    "services/api/brainmri_api/main.py",
)


def dockerignore_problems(text: str, copied: Iterable[str] = ()) -> list[str]:
    problems = [
        f"{p} reaches the build context" for p in MUST_STAY_OUT if not dockerignored(text, p)
    ]
    problems += [
        f"{p} is left out of the build context"
        for p in (*MUST_GO_IN, *copied)
        if dockerignored(text, p)
    ]
    return problems


# --- network policies ------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    """Where a connection comes from: a pod's labels in a namespace (``labels`` empty for a
    client outside any pod, e.g. the Ingress controller's own namespace)."""

    namespace: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _labels_match(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector: ``{}`` matches everything; only ``matchLabels`` is used here."""
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions: extend this check before using them")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(rule_peer: dict, source: Peer, namespace: str) -> bool:
    pods, namespaces = rule_peer.get("podSelector"), rule_peer.get("namespaceSelector")
    if pods is None and namespaces is None:
        return False  # an ipBlock: these checks speak of pods only
    if namespaces is None and source.namespace != namespace:
        return False  # a bare podSelector means this namespace
    if namespaces is not None and not _labels_match(namespaces, source.namespace_labels):
        return False
    return pods is None or _labels_match(pods, source.labels)


def _port_matches(rule_port: dict, port: int, name: str | None) -> bool:
    wanted = rule_port.get("port")
    return rule_port.get("protocol", "TCP") == "TCP" and (
        wanted is None or wanted == port or (name is not None and wanted == name)
    )


def ingress_allowed(docs: list[dict], pod_labels: dict[str, str], port: int, source: Peer) -> bool:
    """Whether ``source`` may open TCP ``port`` on a pod with ``pod_labels`` in the rendered
    namespace, by the NetworkPolicy rules: a pod no policy selects takes everything; a selected
    pod takes what some selecting policy's ingress rule lets in."""
    namespace = next(d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace"))
    name = next(  # the port's name on the target pod, which a policy may use instead
        (
            p.get("name")
            for doc, pod in pod_specs(docs)
            if pod_labels.items()
            <= (doc["spec"]["template"]["metadata"].get("labels") or {}).items()
            for c in containers(pod)
            for p in c.get("ports") or []
            if p["containerPort"] == port
        ),
        None,
    )
    selecting = [
        d
        for d in docs
        if d.get("kind") == "NetworkPolicy"
        and "Ingress" in (d["spec"].get("policyTypes") or ["Ingress"])
        and _labels_match(d["spec"]["podSelector"], pod_labels)
    ]
    if not selecting:
        return True
    return any(
        (not rule.get("from") or any(_peer_matches(p, source, namespace) for p in rule["from"]))
        and (not rule.get("ports") or any(_port_matches(p, port, name) for p in rule["ports"]))
        for policy in selecting
        for rule in policy["spec"].get("ingress") or []
    )


def open_ports(docs: list[dict]) -> dict[str, list[str]]:
    """Per workload, what a pod in another namespace may reach: its declared container ports
    that are open, or ``"undeclared ports"`` when nothing isolates a pod (any port it listens
    on, declared or not, would take the connection)."""
    outsider = Peer("elsewhere", {"app": "anything"})
    found: dict[str, list[str]] = {}
    for doc, pod in pod_specs(docs):
        labels = doc["spec"]["template"]["metadata"].get("labels") or {}
        ports = [p["containerPort"] for c in containers(pod) for p in c.get("ports") or []]
        reachable = [str(port) for port in ports if ingress_allowed(docs, labels, port, outsider)]
        if ingress_allowed(docs, labels, UNDECLARED_PORT, outsider):
            reachable.append("undeclared ports")
        if reachable:
            found[doc["metadata"]["name"]] = reachable
    return found


#: A port no container declares: open to a stranger only where nothing isolates the pod.
UNDECLARED_PORT = 54321
