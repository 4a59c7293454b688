"""deploy/: every Kubernetes manifest and rendered overlay validated offline against the
Kubernetes schemas, the sidecar pattern and hardening asserted, the configs the manifests ship
loaded by the proxy's own parser, the monitoring objects and compose file checked for shape."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from proxy.config.model import Config, load_config, parse_config
from proxy.observability.metrics import Metrics
from tests.unit.kustomize_render import (
    KustomizeError,
    Manifest,
    identity,
    json6902,
    load_documents,
    render,
    strategic_merge,
)

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
OVERLAYS = ("irsa", "pod-identity")
# Native sidecars are on by default from 1.29 (GA in 1.33); also the newest schemas we have.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
CONFIG_MAP = "throttle-proxy-config"
SECURE_CONTAINER = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def rendered(overlay: str) -> dict[tuple[str, str], Manifest]:
    return {identity(m): m for m in render(KUBE / "overlays" / overlay)}


def pod_spec(manifests: dict[tuple[str, str], Manifest]) -> dict[str, Any]:
    return dict(manifests["Deployment", "legacy-app"]["spec"]["template"]["spec"])


def proxy_sidecar(pod: dict[str, Any]) -> dict[str, Any]:
    [sidecar] = [c for c in pod.get("initContainers", []) if c["name"] == "throttle-proxy"]
    return dict(sidecar)


def sidecar_config(manifests: dict[tuple[str, str], Manifest]) -> Config:
    text = manifests["ConfigMap", CONFIG_MAP]["data"]["proxy.yaml"]
    return parse_config(yaml.safe_load(text), source="configmap")


def validate(manifest: Manifest) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def kustomizations() -> Iterator[Path]:
    return (path.parent for path in sorted(KUBE.rglob("kustomization.yaml")))


# --- every file, every rendering, against the schemas ---------------------------------------


def test_every_yaml_file_is_used_by_a_kustomization() -> None:
    used: set[Path] = set()
    for directory in kustomizations():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        used.add(directory / "kustomization.yaml")
        used.update((directory / r).resolve() for r in kustomization.get("resources", []))
        used.update((directory / p["path"]).resolve() for p in kustomization.get("patches", []))
        for generator in kustomization.get("configMapGenerator", []):
            used.update((directory / f).resolve() for f in generator["files"])
    orphans = [p for p in KUBE.rglob("*.yaml") if p.resolve() not in used]
    assert not orphans


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_known_kind_validates_strictly(overlay: str) -> None:
    manifests = rendered(overlay)
    assert {kind for kind, _ in manifests} == {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
    }
    for manifest in manifests.values():
        if (manifest["apiVersion"], manifest["kind"]) not in CRD_KINDS:
            validate(manifest)


def test_every_plain_manifest_file_validates_strictly() -> None:
    files = [*(KUBE / "base").glob("*.yaml")]
    checked = 0
    for path in files:
        for document in load_documents(path):
            if document.get("kind") in (None, "Kustomization") or "apiVersion" not in document:
                continue  # the proxy's own config file, or a kustomization
            validate(document)
            checked += 1
    assert checked == 3


def test_strict_validation_rejects_a_misspelled_field() -> None:
    deployment = copy.deepcopy(rendered("irsa")["Deployment", "legacy-app"])
    deployment["spec"]["template"]["spec"]["initContainers"][0]["restartPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolcy"):
        validate(deployment)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_rendering_equals_kubectl_kustomize(overlay: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = result.stdout
    # kustomize suffixes generated ConfigMap names with a content hash; we do not.
    hashed = set(re.findall(rf"\b{CONFIG_MAP}-[a-z0-9]{{10}}\b", text))
    assert len(hashed) == 1
    text = text.replace(hashed.pop(), CONFIG_MAP)
    theirs = {identity(m): m for m in yaml.safe_load_all(text) if m}
    assert theirs == rendered(overlay)


# --- the pod: native sidecar, hardening, probes, drain ---------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_proxy_is_a_native_sidecar_beside_an_unsigned_app(overlay: str) -> None:
    manifests = rendered(overlay)
    pod = pod_spec(manifests)
    sidecar = proxy_sidecar(pod)
    assert sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in pod["containers"]] == ["app"]
    config = sidecar_config(manifests)
    assert config.listen == ("127.0.0.1", 8080), "the sidecar must not listen beyond the pod"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    proxy_url = f"http://{config.listen[0]}:{config.listen[1]}"
    assert env["HTTP_PROXY"] == env["http_proxy"] == proxy_url
    for name in ("NO_PROXY", "no_proxy"):
        assert {"localhost", "127.0.0.1", ".svc"} <= set(env[name].split(","))
    # The app never holds AWS credentials of its own.
    assert not [name for name in env if name.startswith("AWS_")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_hardened(overlay: str) -> None:
    pod = pod_spec(rendered(overlay))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"] == SECURE_CONTAINER, container["name"]
        resources = container["resources"]
        assert set(resources) == {"requests", "limits"}
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])


def test_probes_hit_the_admin_port_of_the_shipped_config() -> None:
    manifests = rendered("irsa")
    sidecar = proxy_sidecar(pod_spec(manifests))
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    admin = sidecar_config(manifests).admin_listen
    assert admin == ("0.0.0.0", ports["admin"]), "the kubelet probes from outside the pod"
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert sidecar[probe]["httpGet"]["port"] == "admin"
        paths[probe] = sidecar[probe]["httpGet"]["path"]
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }


def test_grace_period_covers_the_drain() -> None:
    manifests = rendered("irsa")
    grace = pod_spec(manifests)["terminationGracePeriodSeconds"]
    assert grace >= sidecar_config(manifests).shutdown_grace + 5


def test_config_map_carries_the_config_mounted_where_the_image_reads_it() -> None:
    manifests = rendered("irsa")
    pod = pod_spec(manifests)
    [volume] = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == CONFIG_MAP
    assert [item["key"] for item in volume["configMap"]["items"]] == ["proxy.yaml"]
    mounts = {m["name"]: m for m in proxy_sidecar(pod)["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/throttle-proxy"
    assert mounts["config"]["readOnly"] is True
    data = manifests["ConfigMap", CONFIG_MAP]["data"]["proxy.yaml"]
    assert data == (KUBE / "base" / "proxy.yaml").read_text(encoding="utf-8")


def test_shipped_configs_load_and_differ_only_in_listen() -> None:
    sidecar = load_config(KUBE / "base" / "proxy.yaml")
    compose = load_config(REPO / "config" / "proxy.container.yaml")
    assert compose.listen == ("0.0.0.0", 8080)
    assert sidecar.listen == ("127.0.0.1", 8080)
    assert vars(sidecar) | {"source": "", "listen": None} == vars(compose) | {
        "source": "",
        "listen": None,
    }


# --- credentials: IRSA and Pod Identity ------------------------------------------------------


def test_irsa_overlay_annotates_the_service_account_with_a_role() -> None:
    manifests = rendered("irsa")
    annotations = manifests["ServiceAccount", "legacy-app"]["metadata"]["annotations"]
    role = annotations["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::111122223333:role/[\w+=,.@-]+", role)
    assert pod_spec(manifests)["serviceAccountName"] == "legacy-app"
    assert not pod_identity_agent_rules(manifests)


def test_pod_identity_overlay_has_no_role_annotation_and_reaches_the_agent() -> None:
    manifests = rendered("pod-identity")
    metadata = manifests["ServiceAccount", "legacy-app"]["metadata"]
    assert "eks.amazonaws.com/role-arn" not in metadata.get("annotations", {})
    [rule] = pod_identity_agent_rules(manifests)
    assert rule["ports"] == [{"protocol": "TCP", "port": 80}]


def pod_identity_agent_rules(manifests: dict[tuple[str, str], Manifest]) -> list[Any]:
    egress = manifests["NetworkPolicy", "legacy-app"]["spec"]["egress"]
    return [
        rule for rule in egress if {"ipBlock": {"cidr": "169.254.170.23/32"}} in rule.get("to", [])
    ]


# --- network policy and monitoring -----------------------------------------------------------


def test_network_policy_admits_monitoring_to_admin_and_lets_out_https_and_dns() -> None:
    manifests = rendered("irsa")
    policy = manifests["NetworkPolicy", "legacy-app"]["spec"]
    labels = manifests["Deployment", "legacy-app"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [ingress] = policy["ingress"]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert ingress["ports"] == [
        {"protocol": "TCP", "port": sidecar_config(manifests).admin_listen[1]}
    ]
    ports = sorted((p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 443), ("UDP", 53)]


def test_pod_monitor_scrapes_the_sidecar_admin_port() -> None:
    manifests = rendered("irsa")
    monitor = manifests["PodMonitor", "throttle-proxy"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = manifests["Deployment", "legacy-app"]["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    port_names = [p["name"] for p in proxy_sidecar(pod_spec(manifests))["ports"]]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"


def prometheus_rule_groups() -> list[Any]:
    [rule] = load_documents(KUBE / "monitoring" / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    return list(rule["spec"]["groups"])


def exported_metric_names() -> set[str]:
    """Series names the proxy exports, as PromQL sees them (counters end in _total)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_prometheus_rule_alerts_on_metrics_the_proxy_exports() -> None:
    exported = exported_metric_names()
    alerts = [rule for group in prometheus_rule_groups() for rule in group["rules"]]
    assert {a["alert"] for a in alerts} == {
        "ThrottleProxySustainedThrottling",
        "ThrottleProxyRetryBudgetExhausted",
        "ThrottleProxyCredentialsExpiringSoon",
        "ThrottleProxyLimiterRejecting",
    }
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        used = set(re.findall(r"\bthrottle_proxy_\w+", alert["expr"]))
        assert used, alert["alert"]
        assert used <= exported, f"{alert['alert']} uses unknown metrics {used - exported}"


def test_prometheus_rule_groups_equal_the_plain_rule_file() -> None:
    alerts_file = REPO / "deploy" / "prometheus" / "alerts.yaml"
    if not alerts_file.is_file():
        pytest.skip("deploy/prometheus/alerts.yaml does not exist yet")
    plain = yaml.safe_load(alerts_file.read_text(encoding="utf-8"))
    assert prometheus_rule_groups() == plain["groups"]


# --- compose ---------------------------------------------------------------------------------


def test_compose_runs_the_built_proxy_beside_the_legacy_app() -> None:
    compose_file = REPO / "deploy" / "compose.yaml"
    services = yaml.safe_load(compose_file.read_text(encoding="utf-8"))["services"]
    proxy, app = services["proxy"], services["legacy-app"]
    context = (compose_file.parent / proxy["build"]["context"]).resolve()
    assert (context / proxy["build"]["dockerfile"]).resolve() == REPO / "Dockerfile"
    config_mount = next(v for v in proxy["volumes"] if v.endswith("/proxy.yaml:ro"))
    config = load_config(compose_file.parent / config_mount.split(":")[0])
    assert config.listen[0] == "0.0.0.0", "the app reaches the proxy over the compose network"
    # Published ports stay on the host's loopback: it is a signer.
    assert all(port.startswith("127.0.0.1:") for port in proxy["ports"])
    assert proxy["read_only"] is True
    assert proxy["cap_drop"] == ["ALL"]
    grace = re.fullmatch(r"(\d+)s", proxy["stop_grace_period"])
    assert grace
    assert int(grace.group(1)) >= config.shutdown_grace + 5
    proxy_url = f"http://proxy:{config.listen[1]}"
    assert app["environment"]["HTTP_PROXY"] == app["environment"]["http_proxy"] == proxy_url
    assert app["depends_on"]["proxy"]["condition"] == "service_healthy"
    assert not [name for name in app["environment"] if name.startswith("AWS_")]


# --- the renderer the tests above rely on ----------------------------------------------------


def test_strategic_merge_merges_named_lists_and_deletes_on_null() -> None:
    base: Manifest = {
        "metadata": {"name": "x", "annotations": {"a": "1", "b": "2"}},
        "containers": [{"name": "one", "image": "i:1"}, {"name": "two", "image": "i:2"}],
        "args": ["a", "b"],
    }
    strategic_merge(
        base,
        {
            "metadata": {"annotations": {"a": None, "c": "3"}},
            "containers": [{"name": "two", "image": "i:3"}, {"name": "three", "image": "i:4"}],
            "args": ["c"],
        },
    )
    assert base["metadata"]["annotations"] == {"b": "2", "c": "3"}
    assert [(c["name"], c["image"]) for c in base["containers"]] == [
        ("one", "i:1"),
        ("two", "i:3"),
        ("three", "i:4"),
    ]
    assert base["args"] == ["c"], "lists without a merge key are replaced"


def test_json6902_adds_appends_replaces_and_removes() -> None:
    document: Manifest = {"spec": {"egress": [{"a": 1}], "x~/y": 1, "keep": 2}}
    json6902(
        document,
        [
            {"op": "add", "path": "/spec/egress/-", "value": {"b": 2}},
            {"op": "add", "path": "/spec/egress/0", "value": {"c": 3}},
            {"op": "replace", "path": "/spec/x~0~1y", "value": 5},
            {"op": "remove", "path": "/spec/keep"},
        ],
    )
    assert document == {"spec": {"egress": [{"c": 3}, {"a": 1}, {"b": 2}], "x~/y": 5}}
    with pytest.raises(KustomizeError, match="replace"):
        json6902(document, [{"op": "replace", "path": "/spec/missing", "value": 1}])


def test_renderer_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        render(tmp_path)
    (tmp_path / "sa.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n")
    (tmp_path / "patch.yaml").write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [sa.yaml]\npatches:\n  - path: patch.yaml\n"
    )
    with pytest.raises(KustomizeError, match="no resource matches"):
        render(tmp_path)
