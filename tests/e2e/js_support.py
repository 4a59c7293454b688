"""Node and the committed JS SDK install, for the tests that run the JS SDK v3."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"


def ensure_node() -> str:
    """node, with the committed package-lock installed (`npm ci`, cached in node_modules)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        # `make test` installs them (system-deps); only a machine where apt could not lands here.
        pytest.skip("node and npm are not installed and could not be (`make system-deps`)")
    installed = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_DIR,
            check=True,
            timeout=300,
        )
    return node


def run_node(node: str, script: Path, *args: str) -> str:
    """Run `script` (inside JS_DIR, so it finds node_modules); its stdout."""
    done = subprocess.run(
        [node, str(script), *args],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_job(node: str, job: dict[str, Any]) -> Any:
    """One job of sdk_through_proxy.mjs; its result (the job's failure fails the test)."""
    stdout = run_node(node, JS_DIR / "sdk_through_proxy.mjs", json.dumps(job))
    answer = json.loads(stdout.strip().splitlines()[-1])
    assert answer["ok"], answer
    return answer["result"]
