"""deploy/loadtest/: the compose rig (app → sidecar → stand-in → moto) checked for shape, its
two configs loaded by the proxy's own parser. No container engine runs here; the chain itself
runs end to end in tests/e2e/test_loadtest_standin.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxy.config.model import Config, load_config

REPO = Path(__file__).resolve().parents[2]
LOADTEST = REPO / "deploy" / "loadtest"
EXAMPLE_KEY_IDS = {"AKIAIOSFODNN7EXAMPLE", "AKIDEXAMPLE"}


def services() -> dict[str, Any]:
    compose = yaml.safe_load((LOADTEST / "compose.yaml").read_text(encoding="utf-8"))
    assert set(compose["secrets"]) == {"admin-token"}
    found: dict[str, Any] = compose["services"]
    return found


def mounted_config(service: dict[str, Any]) -> Config:
    mount = next(v for v in service["volumes"] if v.endswith(":/etc/throttle-proxy/proxy.yaml:ro"))
    return load_config(LOADTEST / mount.split(":")[0])


def test_the_rig_is_app_sidecar_standin_moto() -> None:
    rig = services()
    assert set(rig) == {"moto", "standin", "sidecar", "app"}
    standin, sidecar, app = rig["standin"], rig["sidecar"], rig["app"]
    context = (LOADTEST / standin["build"]["context"]).resolve()
    assert (context / standin["build"]["dockerfile"]).resolve() == REPO / "Dockerfile"
    assert sidecar["image"] == standin["image"]
    standin_config, sidecar_config = mounted_config(standin), mounted_config(sidecar)
    (to_moto,) = standin_config.routes
    assert (to_moto.host, to_moto.upstream) == ("*.amazonaws.com", "http://moto:5000")
    (to_standin,) = sidecar_config.routes
    assert to_standin.upstream == f"http://standin:{standin_config.listen[1]}"
    proxy_url = f"http://sidecar:{sidecar_config.listen[1]}"
    assert app["environment"]["HTTP_PROXY"] == app["environment"]["http_proxy"] == proxy_url
    assert app["depends_on"]["sidecar"]["condition"] == "service_healthy"
    assert sidecar["depends_on"]["standin"]["condition"] == "service_healthy"
    assert not [name for name in app["environment"] if name.startswith("AWS_") and "KEY" in name]


def test_the_standin_enforces_like_aws_and_answers_once() -> None:
    config = mounted_config(services()["standin"])
    assert config.limit_policy.mode == "enforce"
    assert config.limit_policy.max_wait == 0.0
    assert config.include_default_limits is True
    assert config.retry.max_attempts == 1  # retrying is the app's business, as with AWS
    assert config.fault_seed is not None
    assert {rule.kind for rule in config.faults} >= {"internal", "latency"}
    assert config.listen[0] == "0.0.0.0"
    assert config.admin_token_file == "/run/secrets/admin-token"  # where compose mounts it


def test_every_container_is_hardened_and_publishes_only_loopback() -> None:
    for name, service in services().items():
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
        for variable, value in (service.get("environment") or {}).items():
            if variable == "AWS_ACCESS_KEY_ID":
                assert value in EXAMPLE_KEY_IDS, name


def test_the_admin_token_is_never_committed() -> None:
    assert (LOADTEST / ".gitignore").read_text().split() == ["admin-token"]
