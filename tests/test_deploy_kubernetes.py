"""deploy/kubernetes/ checked offline: every manifest against the Kubernetes schemas, then what schemas
cannot say: the generated configuration names exactly the StatefulSets' pods by their DNS names and
ports, each group's PodDisruptionBudget keeps a majority, and the probes point at routes that exist.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import requests
import yaml

from pygmy.ops.kubernetes import kubernetes_toml, member_host
from support.cluster import Cluster

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests need: the pod-index label (the pod's ordinal) arrived in 1.28.
KUBERNETES_VERSION = "1.28"
BACKENDS = ("catalog", "order")


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def resources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def ports(c: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c["ports"]}


def config() -> dict[str, Any]:
    return tomllib.loads((MANIFESTS / "pygmy.toml").read_text())


def test_every_file_in_the_kustomization_is_listed_and_exists() -> None:
    listed = set(kustomization()["resources"]) | {"kustomization.yaml"}
    assert {p.name for p in MANIFESTS.glob("*.yaml")} == listed


@pytest.mark.parametrize("doc", resources(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_every_manifest_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_mounted_configuration_is_what_pygmy_k8s_config_generates_for_these_statefulsets() -> None:
    replicas = {find("StatefulSet", kind)["spec"]["replicas"] for kind in BACKENDS}
    assert len(replicas) == 1, "both groups have the same size in the generated configuration"
    namespace = kustomization()["namespace"]
    assert (MANIFESTS / "pygmy.toml").read_text() == kubernetes_toml(replicas.pop(), namespace)
    assert kustomization()["configMapGenerator"][0]["files"] == ["pygmy.toml"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_each_statefulset_pod_is_the_node_its_dns_name_and_ordinal_say(kind: str) -> None:
    namespace = kustomization()["namespace"]
    sts = find("StatefulSet", kind)
    service = find("Service", sts["spec"]["serviceName"])
    # Members must find each other before any is ready: a ready replica needs an elected leader.
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == labels == sts["spec"]["selector"]["matchLabels"]
    nodes = [n for n in config()["nodes"] if n["kind"] == kind]
    assert [n["id"] for n in nodes] == list(range(sts["spec"]["replicas"]))
    for n in nodes:
        assert n["host"] == member_host(kind, n["id"], namespace, "cluster.local")
        assert n["host"].split(".")[:3] == [f"{sts['metadata']['name']}-{n['id']}", service["metadata"]["name"], namespace]
    c = container(sts)
    assert c["args"] == ["serve", kind, "$(PYGMY_NODE_ID)"]
    env = {e["name"]: e for e in c["env"]}
    assert env["PYGMY_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert ports(c) == {"http": nodes[0]["port"], "raft": nodes[0]["raft_port"]}
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports(c)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]] == config()["data_dir"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_disruption_budget_never_lets_a_group_lose_its_majority(kind: str) -> None:
    sts = find("StatefulSet", kind)
    pdb = find("PodDisruptionBudget", kind)
    replicas = sts["spec"]["replicas"]
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    spec = pdb["spec"]
    may_go = replicas - spec["minAvailable"] if "minAvailable" in spec else spec["maxUnavailable"]
    majority = replicas // 2 + 1
    assert replicas - may_go >= majority, f"{kind}: evictions may leave {replicas - may_go} of {replicas}"
    assert may_go >= 1, f"{kind}: the budget blocks every drain"


def workloads() -> list[tuple[str, dict[str, Any]]]:
    return [("catalog", find("StatefulSet", "catalog")), ("order", find("StatefulSet", "order")),
            ("frontend", find("Deployment", "frontend"))]


@pytest.mark.parametrize("kind", ["catalog", "order", "frontend"])
def test_secrets_and_configuration_come_from_objects_that_exist(kind: str) -> None:
    workload = dict(workloads())[kind]
    secret = find("Secret", "pygmy-secrets")
    env = {e["name"]: e for e in container(workload)["env"]}
    for variable in ("PYGMY_ADMIN_TOKEN", "PYGMY_CLUSTER_SECRET"):
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "pygmy-secrets" and ref["key"] in secret["stringData"]
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == kustomization()["configMapGenerator"][0]["name"]
    assert env["PYGMY_CONFIG"]["value"].startswith(
        next(m["mountPath"] for m in container(workload)["volumeMounts"] if m["name"] == "config")
    )


def test_the_frontend_service_and_deployment_serve_the_configured_frontend() -> None:
    front = [n for n in config()["nodes"] if n["kind"] == "frontend"]
    assert len(front) == 1
    c = container(find("Deployment", "frontend"))
    assert c["args"] == ["serve", "frontend", str(front[0]["id"])]
    assert ports(c) == {"http": front[0]["port"]}
    service = find("Service", "frontend")
    assert front[0]["host"].startswith(f"{service['metadata']['name']}.{kustomization()['namespace']}.svc.")
    assert service["spec"]["ports"][0]["port"] == front[0]["port"]


@pytest.mark.parametrize("kind", ["catalog", "order", "frontend"])
def test_the_probes_point_at_routes_a_running_node_of_that_kind_answers(kind: str, cluster: Cluster) -> None:
    """Against real nodes: a liveness probe without a secret gets 200, a readiness probe 200 once ready."""
    c = container(dict(workloads())[kind])
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] == "http" and "httpHeaders" not in get  # the kubelet sends no secret
        resp = requests.get(cluster.url(kind, 0) + get["path"], timeout=5)
        assert resp.status_code == 200, (kind, probe, get["path"], resp.text)
