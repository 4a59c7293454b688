"""The Go peer, awslabs' aws-sigv4-proxy, as a benchmark hop (built from ../shared/peers).

Build it once with `../shared/peers/build-aws-sigv4-proxy.sh /tmp/aws-sigv4-proxy` (Debian's
golang-go is enough; the binary and its source stay out of this repository). It signs with
the example keys from the environment, for the service and region given, and sends to the
loopback upstream over plain HTTP with the AWS host name signed, as the proxy does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bench.harness import ACCESS_KEY, SECRET_KEY, ChildProcess, free_port, pinned

DEFAULT_BINARY = Path("/tmp/aws-sigv4-proxy")


def peer_binary() -> Path | None:
    """$AWS_SIGV4_PROXY, /tmp/aws-sigv4-proxy, or aws-sigv4-proxy on PATH; None if absent."""
    named = os.environ.get("AWS_SIGV4_PROXY")
    for candidate in (named, str(DEFAULT_BINARY), shutil.which("aws-sigv4-proxy")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def peer_process(
    binary: Path,
    workdir: Path,
    *,
    service: str,
    region: str,
    sign_host: str,
    upstream_port: int,
    cpu: int | None,
) -> tuple[ChildProcess, int]:
    """The peer listening on a free loopback port, pinned to `cpu`."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-such-credentials"),
        "AWS_CONFIG_FILE": str(workdir / "no-such-config"),
    }
    command = [
        str(binary),
        "--port",
        f"127.0.0.1:{port}",
        "--name",
        service,
        "--region",
        region,
        "--sign-host",
        sign_host,
        "--host",
        f"127.0.0.1:{upstream_port}",
        "--upstream-url-scheme",
        "http",
    ]
    child = ChildProcess(
        pinned(command, cpu), ready_port=port, env=env, log_path=workdir / "peer.log"
    )
    return child, port
