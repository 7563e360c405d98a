"""Deployment artefacts: the Dockerfile (hadolint), the Kustomize base and overlays (rendered with
`kubectl kustomize`, validated against the Kubernetes schemas of PyPI kubernetes-validate) and the
Envoy gateway config (parsed into Envoy's v3 API protos from PyPI xds-protos, then checked for
routing). Nothing here builds an image or starts a cluster or Envoy: see docs/deployment.md.
Each test skips, saying which tool is missing, when a tool is absent."""

from __future__ import annotations

import base64
import importlib
import inspect
import pkgutil
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML missing: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
RENDERED = ["base", "overlays/cpu", "overlays/gpu", "monitoring"]
SERVER_OVERLAYS = ["overlays/cpu", "overlays/gpu"]
# Custom resources whose schemas kubernetes-validate does not ship (Prometheus Operator).
CUSTOM_KINDS = {"PodMonitor"}
# Oldest and newest Kubernetes minors validated: 1.30 has every field used (gRPC probes GA 1.27).
K8S_VERSIONS = ["1.30", "1.37"]
ENVOY_YAML = K8S / "base" / "envoy.yaml"
SESSION_HEADER = "x-affectline-session"


def tool(name: str) -> str:
    """A dev tool installed in this venv or on PATH, else the test skips with the reason."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not found (dev extra or system package); this check did not run")
    return found


@cache
def _kubectl() -> str | None:
    """kubectl with Kustomize >= 5 (`labels:` in kustomization.yaml needs Kustomize 4.1+), else None.
    Debian's kubernetes-client is 1.20 with Kustomize 2: too old, so it is not installed for us."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    found = re.search(r'"kustomizeVersion":\s*"v(\d+)', out.stdout)
    return kubectl if found and int(found.group(1)) >= 5 else None


@cache
def _render(path: str) -> tuple[dict, ...]:
    kubectl = _kubectl()
    if not kubectl:
        pytest.skip("kubectl with Kustomize >= 5 not found (kubectl >= 1.27 from the Kubernetes releases; "
                    "Debian's kubernetes-client 1.20 is too old): manifests not rendered or validated")
    out = subprocess.run([kubectl, "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(path: str) -> list[dict]:
    return list(_render(path))


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def server_container(docs: list[dict]) -> dict:
    return one(docs, "Deployment", "affectline-server")["spec"]["template"]["spec"]["containers"][0]


# --- Dockerfile ---------------------------------------------------------------------------------

def test_dockerfile_has_no_hadolint_findings():
    out = subprocess.run([tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_dockerfile_targets_run_affectline_serve_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    stages = {m.group(2): m.group(1) for m in re.finditer(r"^FROM (\S+) AS (\S+)$", text, re.M)}
    assert {"client", "wheel", "cpu", "gpu"} <= stages.keys()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text and stages["cpu"] == "${PYTHON_IMAGE}"
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-cudnn-runtime-", text, re.M)
    assert "npm ci" in text and "node scripts/build.mjs" in text
    pin = re.search(r'gpu = \["(onnxruntime-gpu==[^"]+)"\]', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pin in text, "the gpu image installs the `gpu` extra's onnxruntime-gpu pin"
    for target in ("cpu", "gpu"):
        body = text.split(f" AS {target}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.search(r"^USER 10001:10001$", body, re.M), f"{target}: numeric non-root USER"
        assert "HEALTHCHECK" in body and "/healthz" in body
        assert re.search(r"^EXPOSE 50051 8080$", body, re.M)
        assert "AFFECTLINE_HOST=0.0.0.0" in body and "AFFECTLINE_DATA_DIR=/var/lib/affectline" in body
        assert 'VOLUME ["/var/lib/affectline"]' in body
        assert 'ENTRYPOINT ["affectline"]' in body and 'CMD ["serve"]' in body


def test_dockerignore_lets_only_the_sources_into_the_build_context():
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*", "deny by default: no venv, data dir, keys or artefacts in the context"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for src in sources.split():
            assert src.split("/")[0] in allowed, f"COPY {src} is outside the .dockerignore allow-list"
    assert "client_js/node_modules" in lines and "server/affectline/static/app" in lines


# --- Kubernetes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", RENDERED)
def test_kustomization_renders(path):
    kinds = {d["kind"] for d in render(path)}
    expected = {"ConfigMap"} if path == "monitoring" else {
        "Namespace", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job",
        "NetworkPolicy", "ConfigMap", "Secret"}
    assert expected <= kinds, expected - kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", RENDERED)
def test_rendered_documents_pass_strict_schema_validation(path, version):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate missing (dev extra)")
    skipped = []
    for doc in render(path):
        try:
            kv.validate(doc, version, strict=True)  # = `kubernetes-validate --strict -k VERSION`
        except kv.SchemaNotFoundError:
            skipped.append(doc["kind"])
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc}")
    # Only the Prometheus Operator's PodMonitor goes unvalidated (no schema is bundled for it).
    assert set(skipped) <= CUSTOM_KINDS, skipped


@pytest.mark.parametrize("path", SERVER_OVERLAYS)
def test_server_probes_and_graceful_drain(path):
    from affectline.app import AffectlineServer

    docs = render(path)
    deploy = one(docs, "Deployment", "affectline-server")
    c = server_container(docs)
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["grpc"] == {"port": 50051}  # grpc.health.v1 on the native port
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"grpc": 50051, "http": 8080}
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = int(deploy["metadata"]["annotations"]["affectline.io/drain-seconds"])
    # gRPC grace and Hypercorn's graceful timeout (the same 5 s in app.py), then the final commit.
    grace_s = inspect.signature(AffectlineServer.stop).parameters["grace_s"].default
    assert drain >= 2 * grace_s
    assert deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > int(pre_stop[1]) + drain
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("path", SERVER_OVERLAYS)
def test_server_is_locked_down_and_configured_from_configmap_and_secrets(path):
    docs = render(path)
    pod = one(docs, "Deployment", "affectline-server")["spec"]["template"]["spec"]
    c = server_container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys()
    config = one(docs, "ConfigMap", "affectline-config")["data"]
    assert config["AFFECTLINE_HOST"] == "0.0.0.0"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    data_volume = mounts[config["AFFECTLINE_DATA_DIR"]]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == data_volume)
    # Every Secret and ConfigMap the pod reads is in the rendering (names carry kustomize's hash).
    names = {d["metadata"]["name"] for d in docs if d["kind"] in ("Secret", "ConfigMap")}
    refs = [e.get("configMapRef", e.get("secretRef")) for e in c["envFrom"]]
    assert all(r["name"] in names for r in refs), refs
    referenced = {r["name"].rsplit("-", 1)[0] for r in refs}
    assert {"affectline-config", "affectline-kek", "affectline-database", "affectline-api-keys"} == referenced


def test_gpu_overlay_asks_for_one_gpu_on_gpu_nodes_and_cpu_overlay_does_not():
    gpu = render("overlays/gpu")
    pod = one(gpu, "Deployment", "affectline-server")["spec"]["template"]["spec"]
    c = server_container(gpu)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"])
    assert pod["nodeSelector"]
    assert c["image"].endswith("-gpu")
    cpu = render("overlays/cpu")
    cpu_pod = one(cpu, "Deployment", "affectline-server")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(cpu_pod) and server_container(cpu)["image"].endswith("-cpu")


@pytest.mark.parametrize("path", SERVER_OVERLAYS)
def test_hpa_scales_on_a_metric_the_adapter_rules_derive_from_our_metrics(path):
    from prometheus_client import generate_latest

    from affectline.metrics import Metrics

    hpa = one(render(path), "HorizontalPodAutoscaler", "affectline-server")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "affectline-server"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    adapter = one(render("monitoring"), "ConfigMap", "prometheus-adapter")
    rules = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    rule = next(r for r in rules if r["name"]["as"] == metric["pods"]["metric"]["name"])
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    m = Metrics.create()
    m.frames.labels(face_present="true").inc()  # labelled series appear once used
    exposed = generate_latest(m.registry).decode()
    assert re.search(rf"^{series}\{{", exposed, re.M), f"{series} is not one of our metrics"
    assert re.match(rule["name"]["matches"], series)
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_network_policies_let_only_the_gateway_and_prometheus_in_and_only_postgres_redis_and_dns_out():
    docs = render("overlays/cpu")
    server_labels = one(docs, "Deployment", "affectline-server")["spec"]["template"]["metadata"]["labels"]
    gateway_labels = one(docs, "Deployment", "affectline-gateway")["spec"]["template"]["metadata"]["labels"]
    deny = one(docs, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    policy = one(docs, "NetworkPolicy", "affectline-server")["spec"]
    selector = policy["podSelector"]["matchLabels"]
    assert selector.items() <= server_labels.items(), "the policy selects the server pods"
    assert not selector.items() <= gateway_labels.items()
    gateway_rule, prometheus_rule = policy["ingress"]
    assert gateway_rule["from"][0]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert {p["port"] for p in gateway_rule["ports"]} == {50051, 8080}
    assert "namespaceSelector" in prometheus_rule["from"][0]
    assert {p["port"] for p in prometheus_rule["ports"]} == {8080}
    assert {p["port"] for rule in policy["egress"] for p in rule["ports"]} == {5432, 6379, 53}  # 6379: AFFECTLINE_REDIS_URL
    gateway = one(docs, "NetworkPolicy", "affectline-gateway")["spec"]
    assert any(t.get("podSelector", {}).get("matchLabels", {}).items() <= server_labels.items()
               for rule in gateway["egress"] for t in rule.get("to", []))


def test_secrets_are_placeholders_that_fail_closed():
    docs = render("base")
    secrets = {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in docs if d["kind"] == "Secret"}
    assert set(secrets) == {"affectline-kek", "affectline-database", "affectline-api-keys", "affectline-gateway-tls"}
    for secret in secrets.values():
        for key, value in secret["data"].items():
            assert "REPLACE" in base64.b64decode(value).decode(), f"{key}: not a placeholder"
    kek = base64.b64decode(secrets["affectline-kek"]["data"]["AFFECTLINE_KEK"]).decode()
    assert not re.fullmatch(r"[0-9a-fA-F]{64}", kek), "the server must refuse the placeholder KEK"
    assert secrets["affectline-gateway-tls"]["type"] == "kubernetes.io/tls"


def test_migration_job_runs_db_upgrade_with_the_server_image():
    docs = render("overlays/cpu")
    job = one(docs, "Job", "affectline-migrate")["spec"]["template"]["spec"]
    c = job["containers"][0]
    assert c["args"] == ["db", "upgrade"] and c["image"] == server_container(docs)["image"]
    assert any(e.get("secretRef", {}).get("name", "").startswith("affectline-database") for e in c["envFrom"])
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and job["restartPolicy"] == "Never"


def test_server_service_is_headless_and_pdb_selects_the_server():
    docs = render("overlays/cpu")
    labels = one(docs, "Deployment", "affectline-server")["spec"]["template"]["metadata"]["labels"]
    svc = one(docs, "Service", "affectline-server")["spec"]
    assert svc["clusterIP"] == "None" and svc["selector"].items() <= labels.items()
    assert {p["name"]: p["port"] for p in svc["ports"]} == {"grpc": 50051, "http": 8080}
    pdb = one(docs, "PodDisruptionBudget", "affectline-server")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items() and pdb["maxUnavailable"] == 1


# --- Envoy --------------------------------------------------------------------------------------

def envoy_config() -> dict:
    return yaml.safe_load(ENVOY_YAML.read_text())


def _any_types(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["@type"]} if "@type" in node else set()
        return found.union(*(_any_types(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_any_types(v) for v in node))
    return set()


def _deprecated_fields(msg, path: str = "") -> list[str]:
    """Fields set in `msg` (recursively, through Any) that Envoy's protos mark deprecated."""
    from google.protobuf import any_pb2, symbol_database

    found = []
    if isinstance(msg, any_pb2.Any):
        inner = symbol_database.Default().GetSymbol(msg.TypeName())()
        msg.Unpack(inner)
        return _deprecated_fields(inner, path)
    for field, value in msg.ListFields():
        where = f"{path}.{field.name}"
        if field.GetOptions().deprecated:
            found.append(where)
        if field.message_type is None:
            continue
        if field.is_repeated and not field.message_type.GetOptions().map_entry:
            for i, item in enumerate(value):
                found += _deprecated_fields(item, f"{where}[{i}]")
        elif not field.is_repeated:
            found += _deprecated_fields(value, where)
    return found


def test_envoy_config_parses_into_envoy_v3_bootstrap_protos():
    """Strict proto3-JSON parse of the whole file into envoy.config.bootstrap.v3.Bootstrap: every
    field name, type, enum value and typed_config @type must exist in Envoy's API. Not checked:
    protoc-gen-validate rules (required fields, ranges), cross-references, and whether the Envoy
    binary of the image (v1.34) has each extension compiled in."""
    pytest.importorskip("envoy.config.bootstrap.v3.bootstrap_pb2", reason="xds-protos missing (dev extra)")
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from google.protobuf import json_format

    config = envoy_config()
    for type_url in _any_types(config):  # register each typed_config's message (its whole package)
        package = importlib.import_module(type_url.split("/", 1)[1].rsplit(".", 1)[0])
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.endswith("_pb2"):
                importlib.import_module(f"{package.__name__}.{info.name}")
    bootstrap = json_format.ParseDict(config, bootstrap_pb2.Bootstrap())
    assert len(bootstrap.static_resources.clusters) == len(config["static_resources"]["clusters"])
    assert _deprecated_fields(bootstrap) == []


def test_envoy_terminates_tls_and_hashes_sessions_onto_the_server_clusters():
    config = envoy_config()
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    listeners = {ln["name"]: ln for ln in config["static_resources"]["listeners"]}
    public = listeners["public_tls"]["filter_chains"][0]
    tls = public["transport_socket"]
    assert tls["name"] == "envoy.transport_sockets.tls"
    context = tls["typed_config"]["common_tls_context"]
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
    hcm = public["filters"][0]["typed_config"]
    assert hcm["codec_type"] == "AUTO"
    routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"]]
    routes += [r for ln in listeners.values() for f in ln["filter_chains"][0]["filters"]
               for vh in f["typed_config"]["route_config"]["virtual_hosts"] for r in vh["routes"]]
    for r in routes:
        if "route" in r:
            assert r["route"]["cluster"] in clusters, f"route to unknown cluster {r['route']['cluster']}"
    upstream = {"affectline_grpc", "affectline_http"}
    for name in upstream:
        c = clusters[name]
        assert (c["type"], c["lb_policy"]) == ("STRICT_DNS", "RING_HASH") and c["health_checks"]
    assert "http2_protocol_options" in str(clusters["affectline_grpc"]["typed_extension_protocol_options"])
    assert "grpc_health_check" in clusters["affectline_grpc"]["health_checks"][0]
    public_routes = [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"] if "route" in r]
    for r in public_routes:
        assert r["route"]["hash_policy"] == [{"header": {"header_name": SESSION_HEADER}}], r["match"]
        # Retries only on the read-only AnalyticsService.
        assert ("retry_policy" in r["route"]) == (r["match"]["prefix"] == "/affectline.v1.AnalyticsService/"), r
    assert {r["route"]["cluster"] for r in public_routes} == upstream
    assert any(r["match"].get("grpc") == {} and r["route"]["cluster"] == "affectline_grpc" for r in public_routes)
    assert any(r["match"].get("prefix") == "/metrics" and "direct_response" in r for r in routes)


def test_envoy_config_matches_the_manifests():
    """Envoy's upstream address and ports are the headless Service's, and the gateway Deployment
    mounts the TLS Secret where the config reads it and opens the port it listens on."""
    config = envoy_config()
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    listeners = {ln["name"]: ln for ln in config["static_resources"]["listeners"]}
    context = listeners["public_tls"]["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
    docs = render("overlays/cpu")
    svc = one(docs, "Service", "affectline-server")
    ports = {p["port"] for p in svc["spec"]["ports"]}
    for name in ("affectline_grpc", "affectline_http"):
        (address,) = [e["endpoint"]["address"]["socket_address"]
                      for ep in clusters[name]["load_assignment"]["endpoints"] for e in ep["lb_endpoints"]]
        assert address["address"] == svc["metadata"]["name"] and address["port_value"] in ports
    gateway = one(docs, "Deployment", "affectline-gateway")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in gateway["containers"][0]["volumeMounts"]}
    cert = context["tls_certificates"][0]["certificate_chain"]["filename"]
    tls_volume = next(v for v in gateway["volumes"] if v["name"] == mounts[str(Path(cert).parent)])
    assert tls_volume["secret"]["secretName"].startswith("affectline-gateway-tls")
    container_ports = {p["containerPort"] for p in gateway["containers"][0]["ports"]}
    assert listeners["public_tls"]["address"]["socket_address"]["port_value"] in container_ports
    envoy_cm = one(docs, "ConfigMap", "affectline-gateway-envoy")
    assert envoy_cm["data"]["envoy.yaml"] == ENVOY_YAML.read_text()
