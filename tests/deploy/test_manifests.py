"""The deployment files, checked without running them: the Kubernetes manifests against Kubernetes' schemas
(kubernetes-validate --strict; no cluster runs here), and compose.yaml's wiring. CI's container stage
(.ci/containers) runs the compose stack itself."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def manifest(kind: str) -> dict:
    (found,) = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc["kind"] == kind]
    return found


def test_every_kubernetes_manifest_validates_strictly_against_the_schemas():
    assert {manifest_path.stem for manifest_path in MANIFESTS} >= {"deployment", "hpa", "pdb", "migrate-job"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") + result.stderr.count("passed") == len(MANIFESTS)


def test_the_api_deployment_probes_readiness_and_liveness_and_drains_on_sigterm():
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "manage.py serve" in " ".join(container["args"]) and container["image"].endswith(":serve")
    assert pod["terminationGracePeriodSeconds"] > 35  # uvicorn's --timeout-graceful-shutdown
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_pdb_hpa_and_service_select_the_api_deployment():
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert manifest("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert manifest("Service")["spec"]["selector"].items() <= labels.items()
    assert (
        manifest("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
        == manifest("Deployment")["metadata"]["name"]
    )


def test_compose_runs_two_torch_free_replicas_behind_nginx_with_official_images_by_default():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "${AISERVER_POSTGRES_IMAGE:-postgres:16}"
    assert services["redis"]["image"] == "${AISERVER_REDIS_IMAGE:-redis:7}"
    assert services["nginx"]["image"] == "${AISERVER_NGINX_IMAGE:-nginx:stable}"
    for replica in ("api1", "api2"):
        assert services[replica]["build"]["target"] == "serve"
        assert "manage.py serve" in services[replica]["command"][0]
    assert services["admin"]["build"]["target"] == services["migrate"]["build"]["target"] == "full"
    nginx_conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server api1:8000" in nginx_conf and "server api2:8000" in nginx_conf
    assert "proxy_next_upstream error timeout" in nginx_conf and "client_max_body_size 10m" in nginx_conf
