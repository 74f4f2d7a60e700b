"""ops/deploy agrees with the Kubernetes schemas and with the service's documented contracts.

Every manifest under ops/deploy/k8s is validated offline, in strict mode (unknown fields are errors),
against the JSON schemas that the `kubernetes-validate` package ships, for one pinned Kubernetes
version. The ServiceMonitor is a custom resource of the Prometheus Operator, absent from those
schemas: it is checked against an embedded subset of its CRD schema instead. The other tests hold the
manifests and the systemd unit to docs/configuration.md, docs/http.md and docs/benchmarks.md.
"""
from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from kubernetes_validate.utils import ValidationError, validate

from stream_app.core.program import default_program_text, parse_program

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "ops" / "deploy"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "systemd" / "loyalty-worker.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "loyalty-worker.env.example"
DOCS = ROOT / "docs"

#: The Kubernetes version the manifests are written for (schemas of kubernetes-validate).
KUBERNETES_VERSION = "1.33.0"

_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_LABEL_SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "required": ["key", "operator"], "additionalProperties": False,
            "properties": {"key": {"type": "string"}, "operator": {"type": "string"},
                           "values": {"type": "array", "items": {"type": "string"}}}}},
    },
}
#: The part of the monitoring.coreos.com/v1 ServiceMonitor CRD schema (prometheus-operator) that
#: servicemonitor.yaml uses; anything else is rejected, so a new field has to be added here knowingly.
SERVICE_MONITOR_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                 "properties": {
                     "jobLabel": {"type": "string"},
                     "selector": _LABEL_SELECTOR,
                     "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                         "any": {"type": "boolean"},
                         "matchNames": {"type": "array", "items": {"type": "string"}}}},
                     "endpoints": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "additionalProperties": False, "properties": {
                             "port": {"type": "string"},
                             "path": {"type": "string", "pattern": "^/"},
                             "scheme": {"enum": ["http", "https"]},
                             "interval": {"type": "string", "pattern": _DURATION},
                             "scrapeTimeout": {"type": "string", "pattern": _DURATION}}}}}},
    },
}
#: Kinds that are not in the Kubernetes schemas, with the schema they are checked against instead.
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SCHEMA}


# -- reading -----------------------------------------------------------------------------------------

def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@functools.cache
def documents() -> list[tuple[str, dict]]:
    """(file name, object) of every YAML document of every manifest (parsed once; copy before changing)."""
    found = [(path.name, doc) for path in manifest_files()
             for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc is not None]
    assert found, f"no manifests in {K8S}"
    return found


def one(kind: str, name: str | None = None) -> dict:
    matches = [d for _, d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def statefulset() -> dict:
    return one("StatefulSet")


def pod_spec() -> dict:
    return statefulset()["spec"]["template"]["spec"]


def container() -> dict:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def container_env() -> dict[str, dict]:
    """The worker's environment: ConfigMap entries (envFrom) overlaid by `env` entries, as {name: source}.

    A source is {"value": ...} or the entry's `valueFrom`.
    """
    env: dict[str, dict] = {}
    for source in container().get("envFrom", []):
        data = one("ConfigMap", source["configMapRef"]["name"])["data"]
        env.update({key: {"value": value} for key, value in data.items()})
    for entry in container()["env"]:
        env[entry["name"]] = {"value": entry["value"]} if "value" in entry else entry["valueFrom"]
    return env


def env_value(name: str) -> str:
    source = container_env()[name]
    assert "value" in source, f"{name} is not a literal value"
    return source["value"]


def documented_variables() -> set[str]:
    """The variables of docs/configuration.md's table (first column)."""
    text = (DOCS / "configuration.md").read_text("utf-8")
    names = set(re.findall(r"^\| `(LOYALTY_[A-Z0-9_]+)` \|", text, re.MULTILINE))
    assert "LOYALTY_BROKER" in names and "LOYALTY_DATA_DIR" in names
    return names


def documented_default(name: str) -> str:
    text = (DOCS / "configuration.md").read_text("utf-8")
    match = re.search(rf"^\| `{name}` \| `([^`]*)` \|", text, re.MULTILINE)
    assert match, f"no default for {name} in configuration.md"
    return match.group(1)


def documented_get_endpoints() -> set[str]:
    return set(re.findall(r"^## GET (\S+)$", (DOCS / "http.md").read_text("utf-8"), re.MULTILINE))


def loyalty_names(text: str) -> set[str]:
    return set(re.findall(r"\bLOYALTY_[A-Z0-9_]+\b", text))


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as {section: [(key, value), ...]}: repeated keys are kept, in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"line {number} is outside any section"
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"line {number} is not Key=value"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [value for k, value in section if k == key]


def env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile: KEY=value lines (optionally double-quoted values); comments skipped."""
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"not KEY=value: {line!r}"
            values[key] = value.removeprefix('"').removesuffix('"')
    return values


def quantity(text: str) -> float:
    """A Kubernetes resource quantity (the suffixes these manifests use) as a number of units."""
    factors = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "": 1}
    number, suffix = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|m|)", str(text)).groups()
    return float(number) * factors[suffix]


def check_object(doc: dict) -> None:
    """Validate one object: Kubernetes schema (strict), or the embedded schema of a custom resource."""
    custom = CUSTOM_RESOURCES.get((doc.get("apiVersion"), doc.get("kind")))
    if custom is not None:
        jsonschema.validate(doc, custom)
    else:
        validate(doc, KUBERNETES_VERSION, strict=True)


# -- schema validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("file", "doc"), documents(),
                         ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in documents()])
def test_manifest_is_valid_for_the_pinned_kubernetes_version(file: str, doc: dict) -> None:
    check_object(doc)


def test_only_the_service_monitor_bypasses_the_kubernetes_schemas() -> None:
    custom = [(d["apiVersion"], d["kind"]) for _, d in documents() if (d["apiVersion"], d["kind"]) in CUSTOM_RESOURCES]
    assert custom == [("monitoring.coreos.com/v1", "ServiceMonitor")]


BROKEN_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "broken"},
    "spec": {"replicas": "2", "selector": {"matchLabels": {"app": "x"}},
             "template": {"metadata": {"labels": {"app": "x"}},
                          "spec": {"containers": [{"name": "x", "image": "x"}]}}},
}


def test_the_validator_rejects_a_deployment_with_a_string_replica_count() -> None:
    with pytest.raises(ValidationError, match="is not of type 'integer'"):
        check_object(BROKEN_DEPLOYMENT)
    fixed = copy.deepcopy(BROKEN_DEPLOYMENT)
    fixed["spec"]["replicas"] = 2
    check_object(fixed)


@pytest.mark.parametrize("breakage", ["string replicas", "misspelled field", "numeric annotation"])
def test_the_validator_rejects_a_broken_copy_of_the_statefulset(breakage: str) -> None:
    broken = copy.deepcopy(statefulset())
    if breakage == "string replicas":
        broken["spec"]["replicas"] = "3"
    elif breakage == "misspelled field":
        broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    else:
        broken["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = 6066
    with pytest.raises(ValidationError):
        check_object(broken)


@pytest.mark.parametrize("breakage", ["numeric port", "no selector", "bad interval", "unknown field"])
def test_the_service_monitor_check_rejects_a_broken_copy(breakage: str) -> None:
    broken = copy.deepcopy(one("ServiceMonitor"))
    endpoint = broken["spec"]["endpoints"][0]
    if breakage == "numeric port":
        endpoint["port"] = 6066
    elif breakage == "no selector":
        del broken["spec"]["selector"]
    elif breakage == "bad interval":
        endpoint["interval"] = "30 seconds"
    else:
        endpoint["scrapeTimout"] = "10s"
    with pytest.raises(jsonschema.ValidationError):
        check_object(broken)


def test_kustomization_ties_every_manifest_and_sets_the_placeholder_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    images = {image["name"]: image for image in kustomization["images"]}
    assert container()["image"] in images, "the container's image must be the name kustomize replaces"
    assert images[container()["image"]]["newName"] and images[container()["image"]]["newTag"]
    assert one("Namespace")["metadata"]["name"] == kustomization["namespace"]
    assert all("namespace" not in d["metadata"] for _, d in documents()), "the kustomization sets namespaces"


# -- consistency with the code's contracts -------------------------------------------------------------

def deployment_texts() -> dict[str, str]:
    paths = [*manifest_files(), K8S / "kustomization.yaml", UNIT, ENV_EXAMPLE, DEPLOY / "Containerfile",
             DOCS / "deployment.md"]
    return {path.relative_to(ROOT).as_posix(): path.read_text("utf-8") for path in paths}


def test_every_variable_in_the_deployment_is_documented() -> None:
    known = documented_variables()
    for name, text in deployment_texts().items():
        unknown = loyalty_names(text) - known
        assert not unknown, f"{name} uses variables not in docs/configuration.md: {sorted(unknown)}"


def test_the_variable_check_catches_an_unknown_variable() -> None:
    assert loyalty_names("LOYALTY_DATA_DIR=/x\nLOYALTY_DATADIR=/y") - documented_variables() == {"LOYALTY_DATADIR"}


def test_every_setting_the_worker_gets_is_a_documented_variable() -> None:
    names = {n for n in container_env() if n.startswith("LOYALTY_")}
    assert {"LOYALTY_DATA_DIR", "LOYALTY_WEB_HOST", "LOYALTY_WORKER_NAME", "LOYALTY_RULES"} <= names
    assert names <= documented_variables()
    assert set(container_env()) - names == {"POD_NAME", "POD_NAMESPACE"}


def test_no_variable_is_set_both_in_the_configmap_and_in_the_statefulset() -> None:
    from_configmap = set(one("ConfigMap", "loyalty-worker-settings")["data"])
    assert not from_configmap & {entry["name"] for entry in container()["env"]}


def test_probe_and_scrape_paths_are_documented_endpoints() -> None:
    endpoints = documented_get_endpoints()
    assert {"/health", "/ready", "/metrics"} <= endpoints
    worker = container()
    assert worker["livenessProbe"]["httpGet"]["path"] == "/health"
    assert worker["startupProbe"]["httpGet"]["path"] == "/health"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    annotations = statefulset()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    paths = {annotations["prometheus.io/path"]} | {e["path"] for e in one("ServiceMonitor")["spec"]["endpoints"]}
    assert paths == {"/metrics"}


def test_the_web_port_is_the_configured_one_everywhere() -> None:
    env = container_env()
    port = int(env["LOYALTY_WEB_PORT"]["value"] if "LOYALTY_WEB_PORT" in env
               else documented_default("LOYALTY_WEB_PORT"))
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert list(ports.values()) == [port]

    def resolve(value: int | str) -> int:
        return ports[value] if isinstance(value, str) else value

    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert resolve(container()[probe]["httpGet"]["port"]) == port, probe
    for _, service in (d for d in documents() if d[1]["kind"] == "Service"):
        for service_port in service["spec"]["ports"]:
            assert resolve(service_port["targetPort"]) == port == service_port["port"]
    assert int(statefulset()["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == port
    assert env_value("LOYALTY_WEB_BIND") == "0.0.0.0"


def _mount_holding(path: str) -> dict:
    mounts = [m for m in container()["volumeMounts"] if Path(path).is_relative_to(m["mountPath"])]
    assert len(mounts) == 1, f"{path} must be below exactly one volume mount"
    return mounts[0]


def test_the_data_dir_is_on_the_persistent_volume_claim() -> None:
    assert env_value("LOYALTY_STORE") == "rocksdb://"
    mount = _mount_holding(env_value("LOYALTY_DATA_DIR"))
    claims = [t["metadata"]["name"] for t in statefulset()["spec"]["volumeClaimTemplates"]]
    assert mount["name"] in claims
    assert mount["name"] not in {v["name"] for v in pod_spec()["volumes"]}, "not an emptyDir or other volume"


def test_the_program_file_is_the_mounted_configmap_and_is_the_packaged_program() -> None:
    rules = Path(env_value("LOYALTY_RULES"))
    mount = _mount_holding(str(rules))
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mount["name"])
    item = next(i for i in volume["configMap"]["items"] if i["path"] == str(rules.relative_to(mount["mountPath"])))
    text = one("ConfigMap", volume["configMap"]["name"])["data"][item["key"]]
    assert parse_program(text) == parse_program(default_program_text())


def test_the_sasl_password_is_a_mounted_secret_file_and_every_secret_reference_exists() -> None:
    password = Path(env_value("LOYALTY_KAFKA_SASL_PASSWORD_FILE"))
    mount = _mount_holding(str(password))
    assert mount.get("readOnly") is True
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mount["name"])
    secret = one("Secret", volume["secret"]["secretName"])
    item = next(i for i in volume["secret"]["items"] if i["path"] == str(password.relative_to(mount["mountPath"])))
    assert item["key"] in secret["stringData"]
    refs = {name: source["secretKeyRef"] for name, source in container_env().items() if "secretKeyRef" in source}
    assert {"LOYALTY_ADMIN_TOKEN", "LOYALTY_READ_TOKEN", "LOYALTY_KAFKA_SASL_USERNAME"} <= set(refs)
    for ref in refs.values():
        assert ref["key"] in one("Secret", ref["name"])["stringData"], ref
    assert "LOYALTY_KAFKA_SASL_PASSWORD" not in container_env(), "the password goes as a file only"


def test_worker_identity_comes_from_the_pod_and_its_headless_service() -> None:
    env = container_env()
    assert env["POD_NAME"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["LOYALTY_WORKER_NAME"]["fieldRef"]["fieldPath"] == "metadata.name"
    service = one("Service", statefulset()["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert env_value("LOYALTY_WEB_HOST") == f"$(POD_NAME).{service['metadata']['name']}.$(POD_NAMESPACE).svc"
    names = [e["name"] for e in container()["env"]]
    assert names.index("POD_NAME") < names.index("LOYALTY_WEB_HOST"), "$(VAR) needs VAR defined before"
    assert names.index("POD_NAMESPACE") < names.index("LOYALTY_WEB_HOST")


def test_replicas_do_not_exceed_the_partitions() -> None:
    assert 2 <= statefulset()["spec"]["replicas"] <= int(env_value("LOYALTY_PARTITIONS"))


def _selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def test_services_budget_and_monitor_select_the_workers() -> None:
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert _selects(statefulset()["spec"]["selector"]["matchLabels"], pod_labels)
    for _, service in (d for d in documents() if d[1]["kind"] == "Service"):
        assert _selects(service["spec"]["selector"], pod_labels), service["metadata"]["name"]
    assert _selects(one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    monitor = one("ServiceMonitor")["spec"]
    monitored = [d for _, d in documents()
                 if d["kind"] == "Service" and _selects(monitor["selector"]["matchLabels"], d["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in monitored] == [statefulset()["spec"]["serviceName"]]
    port_names = {p["name"] for p in monitored[0]["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} <= port_names


def test_pods_stop_gracefully_and_run_locked_down() -> None:
    spec = pod_spec()
    assert spec["terminationGracePeriodSeconds"] >= 45, "the worker needs up to 30 s after SIGTERM"
    assert spec["enableServiceLinks"] is False, "service links inject LOYALTY_* look-alike variables"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    context = container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    budget = one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1


def benchmark_peak_rss_mib() -> float:
    """The service's peak RSS in the throughput table of docs/benchmarks.md's last run."""
    text = (DOCS / "benchmarks.md").read_text("utf-8").split("### Throughput", 1)[1]
    row = next(line for line in text.splitlines() if line.startswith("| service |"))
    rss = [cell.strip() for cell in row.split("|") if cell.strip().endswith(" MiB")]
    assert len(rss) == 1, row
    return float(rss[0].removesuffix(" MiB").replace(",", ""))


def test_resources_cover_the_benchmarked_peak_memory() -> None:
    resources = container()["resources"]
    peak = benchmark_peak_rss_mib() * 2**20
    assert 400 * 2**20 < peak < 2**30, "the benchmark figure the sizing in deployment.md was derived from"
    assert quantity(resources["requests"]["memory"]) >= peak
    assert quantity(resources["limits"]["memory"]) >= 2 * peak
    for kind in ("cpu", "memory"):
        assert quantity(resources["requests"][kind]) <= quantity(resources["limits"][kind]), kind
    assert quantity(resources["requests"]["cpu"]) >= 1, "one worker keeps one core busy (benchmarks.md)"


def test_the_container_recipe_runs_as_the_pods_user() -> None:
    text = (DEPLOY / "Containerfile").read_text("utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    user = re.search(r"^USER (\d+):(\d+)$", text, re.MULTILINE)
    context = pod_spec()["securityContext"]
    assert user and (int(user[1]), int(user[2])) == (context["runAsUser"], context["runAsGroup"])
    assert re.search(r'^ENTRYPOINT \["loyalty"\]$', text, re.MULTILINE) and container()["command"][0] == "loyalty"


# -- systemd -------------------------------------------------------------------------------------------

def test_the_unit_file_has_the_sections_and_keys_it_relies_on() -> None:
    sections = unit_sections(UNIT.read_text("utf-8"))
    assert set(sections) == {"Unit", "Service", "Install"}
    service = dict(sections["Service"])
    expected = {"Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                "EnvironmentFile": "/etc/loyalty/worker.env", "User": "loyalty"}
    assert {k: service.get(k) for k in expected} == expected
    assert service["ExecStart"].split()[1:] == ["worker"] and service["ExecStart"].startswith("/")
    assert int(service["LimitNOFILE"]) >= 65536
    assert int(service["TimeoutStopSec"].removesuffix("s")) >= 45, "the worker needs up to 30 s after SIGTERM"
    assert dict(sections["Install"])["WantedBy"] == "multi-user.target"


def test_the_unit_parser_rejects_a_line_that_is_not_a_key() -> None:
    with pytest.raises(AssertionError, match="line 2"):
        unit_sections("[Service]\nRestart on-failure\n")
    with pytest.raises(AssertionError, match="outside any section"):
        unit_sections("Restart=on-failure\n")


def test_the_unit_can_write_the_data_dir_and_passes_the_password_as_a_file() -> None:
    service = unit_sections(UNIT.read_text("utf-8"))["Service"]
    env = env_file(ENV_EXAMPLE.read_text("utf-8"))
    writable = [Path(p.lstrip("-")) for value in unit_values(service, "ReadWritePaths") for p in value.split()]
    assert any(Path(env["LOYALTY_DATA_DIR"]).is_relative_to(p) for p in writable)
    assert env["LOYALTY_STORE"] == "rocksdb://"
    assert "LOYALTY_KAFKA_SASL_PASSWORD" not in env and "LOYALTY_KAFKA_SASL_PASSWORD_FILE" not in env
    credential, _, source = unit_values(service, "LoadCredential")[0].partition(":")
    assert source.startswith("/")
    assert f"LOYALTY_KAFKA_SASL_PASSWORD_FILE=%d/{credential}" in unit_values(service, "Environment")


def _systemd_verify(unit_text: str, directory: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze verify` of the unit, its ExecStart program replaced by one that exists here."""
    program = re.search(r"^ExecStart=(\S+)", unit_text, re.MULTILINE)[1]
    path = directory / UNIT.name
    path.write_text(unit_text.replace(f"ExecStart={program}", f"ExecStart={sys.executable}"), "utf-8")
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed; the section/key tests above still run")
def test_systemd_accepts_the_unit_without_warnings_and_flags_a_broken_one(tmp_path: Path) -> None:
    text = UNIT.read_text("utf-8")
    result = _systemd_verify(text, tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    broken = _systemd_verify(text.replace("ProtectSystem=strict", "ProtectSystem=stricter"), tmp_path)
    assert "ProtectSystem" in broken.stdout + broken.stderr or "protect system" in broken.stderr


def test_the_environment_file_example_sets_what_differs_per_worker() -> None:
    env = env_file(ENV_EXAMPLE.read_text("utf-8"))
    for name in ("LOYALTY_WEB_HOST", "LOYALTY_WORKER_NAME", "LOYALTY_DATA_DIR", "LOYALTY_BROKER"):
        assert env.get(name), name
    assert env["LOYALTY_WEB_HOST"] not in ("127.0.0.1", "localhost")
    shared = ("LOYALTY_APP_ID", "LOYALTY_TOPIC_PREFIX", "LOYALTY_PARTITIONS", "LOYALTY_REPLICATION", "LOYALTY_STORE",
              "LOYALTY_KAFKA_SECURITY_PROTOCOL", "LOYALTY_KAFKA_SASL_MECHANISM")
    settings = one("ConfigMap", "loyalty-worker-settings")["data"]
    assert {n: env[n] for n in shared} == {n: settings[n] for n in shared}, "the two routes describe one cluster"


# -- documentation ------------------------------------------------------------------------------------

def test_deployment_md_is_linked_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "[docs/deployment.md](docs/deployment.md)" in readme
    assert "](deployment.md)" in (DOCS / "scaling.md").read_text("utf-8")
    text = (DOCS / "deployment.md").read_text("utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (DOCS / target).resolve().exists(), f"deployment.md links to missing {target}"
