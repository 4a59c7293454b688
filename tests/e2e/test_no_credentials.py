"""A proxy process with nothing in the chain: it starts, is alive, not ready, and says why.

The route sends AWS hosts to a loopback port nothing listens on, so even a proxy that tried to
send the request anyway could not leave the machine (it would answer 502, not 503).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import E2eStack, admin_get, proxy_config, unsigned_client
from tests.servers import ProxyProcess, chain_env, free_port

PROVIDERS_IN_ORDER = [
    "env",
    "assume-role",
    "web-identity",
    "shared-credentials-file",
    "credential-process",
    "config-file",
    "container",
    "imds",
]


async def settled_readyz(proxy: ProxyProcess) -> tuple[int, str]:
    """/readyz once the first load has finished (before that it says 'not loaded yet')."""
    deadline = time.monotonic() + 5.0
    while True:
        status, text = await admin_get(proxy, "/readyz")
        if "not loaded yet" not in text or time.monotonic() > deadline:
            return status, text
        await asyncio.sleep(0.05)


def _unsigned_sts_call(proxy_url: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        unsigned_client("sts", proxy_url).get_caller_identity()
    return caught.value


async def test_no_credentials_anywhere(stack: E2eStack, tmp_path: Path) -> None:
    env = chain_env(tmp_path)
    nowhere = f"http://127.0.0.1:{free_port()}"
    proxy = await stack.start_proxy(tmp_path, proxy_config(nowhere), env)

    assert await admin_get(proxy, "/healthz") == (200, "ok\n")
    status, readyz = await settled_readyz(proxy)
    assert status == 503
    prefix = "no-credentials: no credentials: "
    assert readyz.startswith(prefix), readyz
    reasons = readyz[len(prefix) :].strip().split("; ")
    assert [reason.split(": ", 1)[0] for reason in reasons] == PROVIDERS_IN_ORDER
    by_provider = dict(reason.split(": ", 1) for reason in reasons)
    assert by_provider["env"] == "AWS_ACCESS_KEY_ID not set"
    assert by_provider["shared-credentials-file"] == f"{tmp_path / 'no-credentials'} not found"
    assert by_provider["config-file"] == f"{tmp_path / 'no-config'} not found"
    assert by_provider["container"].endswith("not set")
    assert by_provider["imds"] == "disabled by AWS_EC2_METADATA_DISABLED"

    error = await asyncio.to_thread(_unsigned_sts_call, proxy.url)
    answer = error.response
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-throttle-proxy-error"] == "no-credentials"
    # The SDK parses the proxy's answer as an STS error carrying the same text as /readyz.
    assert answer["Error"]["Code"] == "NoCredentials"
    assert f"no-credentials: {answer['Error']['Message']}\n" == readyz

    # Still alive, still explaining, and no process exit while waiting for credentials.
    assert await admin_get(proxy, "/healthz") == (200, "ok\n")
    assert (await admin_get(proxy, "/readyz"))[0] == 503
    assert proxy.proc.poll() is None
