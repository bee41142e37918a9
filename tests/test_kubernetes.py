"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas (strict: no unknown fields), the
Deployment reads the settings `make cluster` runs with, and every Secret it references has a key in the example."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from gateway.cluster import CONFIGMAP, LOCAL_KEYS, shared_settings
from gateway.config import describe_settings

KUBERNETES_VERSION = "1.29.0"  # the newest schema kubernetes-validate ships; the manifests use only GA APIs
MANIFESTS = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
# settings the PostgreSQL and Redis stores bring (issue 24 parts A and B); they are fields of Settings once merged
def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and path.name != "kustomization.yaml":
                found.append((path.name, doc))
    return found


def by_kind(kind: str) -> dict:
    [doc] = [d for _, d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize(("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v.get("kind"))
def test_manifest_is_valid_kubernetes(name: str, doc: dict) -> None:
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.29"


def test_every_kind_the_deployment_needs_is_there() -> None:
    kinds = sorted(d["kind"] for _, d in documents())
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget", "Secret",
                     "Service", "Service"]
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    assert "secret.example.yaml" not in listed  # the real Secret is made outside the repository
    assert sorted(listed) == sorted(p.name for p in MANIFESTS.glob("*.yaml")
                                    if p.name not in {"kustomization.yaml", "secret.example.yaml", "migrate-job.yaml"})


def test_a_bad_manifest_is_refused() -> None:
    """The validation is real: an unknown field and a wrong type are both errors in strict mode."""
    deployment = by_kind("Deployment")
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    wrong = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)


def test_deployment_probes_and_settings() -> None:
    deployment = by_kind("Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # a degraded shared store restarts nothing
    assert container["envFrom"] == [{"configMapRef": {"name": by_kind("ConfigMap")["metadata"]["name"]}}]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = by_kind("ConfigMap")["data"]
    assert ports == {"http": int(settings["UCGW_PORT"]), "admin": int(settings["UCGW_ADMIN_PORT"])}
    secret_keys = set(by_kind("Secret")["stringData"])
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert {r["name"] for r in refs} == {by_kind("Secret")["metadata"]["name"]}
    assert {r["key"] for r in refs} <= secret_keys
    assert {e["name"] for e in container["env"]} >= {"UCGW_JWT_SECRET", "UCGW_CURSOR_SECRET", "UCGW_AUDIT_HMAC_KEY",
                                                     "UCGW_DATABASE_URL", "UCGW_REDIS_URL"}
    selector = by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_configmap_holds_settings_and_no_secret() -> None:
    """Every key is a gateway setting, none is a secret, and the cluster launcher reads the same data."""
    data = by_kind("ConfigMap")["data"]
    known = {env for env, _, _ in describe_settings()}
    assert set(data) <= known, sorted(set(data) - known)
    assert not {"UCGW_JWT_SECRET", "UCGW_CURSOR_SECRET", "UCGW_AUDIT_HMAC_KEY", "UCGW_WEBHOOK_SECRET",
                "UCGW_DATABASE_URL", "UCGW_REDIS_URL"} & set(data)
    assert shared_settings(CONFIGMAP) == {k: v for k, v in data.items() if k not in LOCAL_KEYS}


def test_example_secret_holds_only_placeholders() -> None:
    for value in by_kind("Secret")["stringData"].values():
        assert "REPLACE-ME" in value
