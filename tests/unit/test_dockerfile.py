"""The Dockerfile, checked without a Docker engine: hadolint, and its install steps kept in line
with pyproject.toml, the config files and the Kubernetes manifests that run the image."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from proxy.config.model import Config, load_config

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DEPLOYMENT = REPO / "deploy" / "kubernetes" / "base" / "deployment.yaml"
COMPOSE = REPO / "deploy" / "compose.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form CMD/ENTRYPOINT (fails on shell form)."""
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec form"
        return [str(item) for item in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; `stage` counts FROMs from 0."""
    instructions: list[Instruction] = []
    pending = ""
    stage = -1
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), arguments.strip(), stage))
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def proxy_container() -> dict[str, Any]:
    deployment = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))
    pod = deployment["spec"]["template"]["spec"]
    [container] = [c for c in pod["initContainers"] if c["name"] == "throttle-proxy"]
    return dict(container)


def admin_routes() -> set[str]:
    """Paths registered with `router.add_get` anywhere in the proxy package."""
    routes: set[str] = set()
    for source in (REPO / "proxy").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                routes.add(str(node.args[0].value))
    return routes


def run_hadolint(dockerfile_text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", "-"],
        input=dockerfile_text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_passes() -> None:
    result = run_hadolint(DOCKERFILE.read_text(encoding="utf-8"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_an_unpinned_base_image() -> None:
    # The lint step can fail: an unpinned tag is a finding (DL3007).
    result = run_hadolint('FROM python:latest\nCMD ["python"]\n')
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_parse_dockerfile_joins_continuations_and_counts_stages() -> None:
    parsed = parse_dockerfile('# c\nFROM a AS b\nRUN x \\\n    && y\n\nFROM c\nCMD ["z"]\n')
    assert [(i.keyword, i.stage) for i in parsed] == [
        ("FROM", 0),
        ("RUN", 0),
        ("FROM", 1),
        ("CMD", 1),
    ]
    assert parsed[1].arguments == "x && y"
    assert parsed[3].exec_form() == ["z"]


def test_two_stages_on_a_pinned_slim_python_that_satisfies_requires_python(
    instructions: list[Instruction], pyproject: dict[str, Any]
) -> None:
    bases = [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(bases) == 2
    requires = SpecifierSet(pyproject["project"]["requires-python"])
    for base in bases:
        match = re.fullmatch(r"python:(\d+\.\d+(?:\.\d+)?)-slim", base)
        assert match, f"base image {base!r} is not a version-pinned python slim tag"
        assert match.group(1) in requires


def test_builder_builds_the_wheel_the_way_pip_install_dot_does(
    instructions: list[Instruction],
) -> None:
    builder = [i for i in instructions if i.stage == 0]
    runs = [shlex.split(i.arguments) for i in builder if i.keyword == "RUN"]
    assert any(cmd[:2] == ["pip", "wheel"] and cmd[-1] == "." for cmd in runs)


def test_runtime_installs_only_the_built_wheel_without_compilers(
    instructions: list[Instruction], pyproject: dict[str, Any]
) -> None:
    runtime = final_stage(instructions)
    runs = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    for forbidden in ("gcc", "build-essential", "apt-get install", "pip wheel", "python -m build"):
        assert forbidden not in runs
    install = re.search(r"pip install (.*?)(?:&&|$)", runs)
    assert install, "the runtime stage installs nothing"
    words = install.group(1).split()
    assert "--no-cache-dir" in words
    assert "--no-index" in words, "the runtime stage must not fetch from an index"
    # Wheel file names use the normalized distribution name.
    wheel_name = re.sub(r"[-_.]+", "_", pyproject["project"]["name"]).lower()
    assert f"/wheels/{wheel_name}-*.whl" in words
    copies = [i.arguments for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=builder /wheels /wheels"], "only wheels come from the builder"


def test_build_context_holds_what_the_package_build_needs(
    instructions: list[Instruction], pyproject: dict[str, Any]
) -> None:
    sources = [
        source
        for i in instructions
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
        for source in i.arguments.split()[:-1]
    ]
    assert "pyproject.toml" in sources
    assert pyproject["project"]["readme"] in sources
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in sources
    assert (REPO / "pyproject.toml").is_file()
    assert (REPO / "proxy").is_dir()
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "**" in ignore, ".dockerignore should exclude everything by default"
    for source in sources:
        assert f"!{source}" in ignore, f"{source} is excluded from the build context"


def test_runs_as_the_numeric_non_root_user_kubernetes_expects(
    instructions: list[Instruction],
) -> None:
    user = only(final_stage(instructions), "USER").arguments
    uid, _, gid = user.partition(":")
    # runAsNonRoot can only be verified against a numeric USER.
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    security = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))["spec"]["template"]["spec"][
        "securityContext"
    ]
    assert security["runAsUser"] == int(uid)
    assert security["runAsGroup"] == int(gid)


def test_command_is_the_console_script_reading_the_mounted_config(
    instructions: list[Instruction], pyproject: dict[str, Any]
) -> None:
    runtime = final_stage(instructions)
    command = only(runtime, "ENTRYPOINT").exec_form() + only(runtime, "CMD").exec_form()
    assert command[0] in pyproject["project"]["scripts"]
    assert command[1:3] == ["run", "--config"]
    config_path = command[3]
    mounts = {m["name"]: m["mountPath"] for m in proxy_container()["volumeMounts"]}
    assert f"{mounts['config']}/proxy.yaml" == config_path
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    targets = [v.split(":")[1] for v in compose["services"]["proxy"]["volumes"]]
    assert config_path in targets
    # Kubernetes keeps the image's command, so the config path is defined in one place.
    assert "command" not in proxy_container()
    assert "args" not in proxy_container()


def test_exposed_ports_are_the_proxy_and_admin_ports(instructions: list[Instruction]) -> None:
    exposed = {int(p) for p in only(final_stage(instructions), "EXPOSE").arguments.split()}
    defaults = Config()
    container = load_config(REPO / "config" / "proxy.container.yaml")
    assert exposed == {defaults.listen[1], defaults.admin_listen[1]}
    assert exposed == {container.listen[1], container.admin_listen[1]}


def test_healthcheck_asks_the_admin_port_for_an_endpoint_it_serves(
    instructions: list[Instruction],
) -> None:
    healthcheck = only(final_stage(instructions), "HEALTHCHECK").arguments
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python", "slim images have no curl"
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", command[-1])
    assert match
    assert int(match.group(1)) == Config().admin_listen[1]
    assert match.group(2) == "/healthz"
    assert {"/healthz", "/readyz", "/metrics"} <= admin_routes()


def test_image_tags_follow_the_package_version(pyproject: dict[str, Any]) -> None:
    version = pyproject["project"]["version"]
    assert proxy_container()["image"].endswith(f"/throttle-proxy:{version}")
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert compose["services"]["proxy"]["image"] == f"throttle-proxy:{version}"
