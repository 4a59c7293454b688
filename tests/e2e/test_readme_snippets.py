"""The README's "Point your SDK at the proxy" snippets, run exactly as written (the proxy's
address swapped for the test proxy's) against moto through a real proxy: Python in-process,
the shell block with bash and the AWS CLI, the JavaScript block with Node and the JS SDK v3."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import MotoStack, unsigned_client
from tests.e2e.js_support import JS_DIR, ensure_node, run_node

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED_PROXY = "http://127.0.0.1:8080"


def snippets(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Point your SDK at the proxy", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_every_sdk_has_a_snippet() -> None:
    counts = {lang: len(snippets(lang)) for lang in ("python", "sh", "js", "go", "java")}
    assert counts == {"python": 1, "sh": 1, "js": 1, "go": 1, "java": 1}


def test_boto3_snippet(moto_stack: MotoStack) -> None:
    (code,) = snippets("python")
    exec(compile(code.replace(DOCUMENTED_PROXY, moto_stack.proxy.url), "README", "exec"), {})
    s3 = unsigned_client("s3", moto_stack.proxy.url, s3={"addressing_style": "path"})
    assert s3.get_object(Bucket="readme-boto3", Key="hello.txt")["Body"].read() == b"hello"


def test_aws_cli_snippet(moto_stack: MotoStack, tmp_path: Path) -> None:
    (code,) = snippets("sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the venv's aws
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code.replace(DOCUMENTED_PROXY, moto_stack.proxy.url)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    s3 = unsigned_client("s3", moto_stack.proxy.url, s3={"addressing_style": "path"})
    s3.head_bucket(Bucket="readme-cli")


def test_js_sdk_snippet(moto_stack: MotoStack) -> None:
    node = ensure_node()
    (code,) = snippets("js")
    script = JS_DIR / f"readme-{uuid.uuid4().hex}.mjs"  # in JS_DIR: it finds node_modules
    script.write_text(code.replace(DOCUMENTED_PROXY, moto_stack.proxy.url), encoding="utf-8")
    try:
        run_node(node, script)
    finally:
        script.unlink()
    s3 = unsigned_client("s3", moto_stack.proxy.url, s3={"addressing_style": "path"})
    assert s3.get_object(Bucket="readme-js", Key="hello.txt")["Body"].read() == b"hello"


@pytest.mark.parametrize("language", ["go", "java"])
def test_untested_snippets_say_so(language: str) -> None:
    text = README.read_text(encoding="utf-8").split("## Point your SDK at the proxy", 1)[1]
    before = text.split(f"```{language}\n", 1)[0].rsplit("**", 2)[-1]
    assert "not tested here" in " ".join(before.split())
