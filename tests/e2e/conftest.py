"""E2e fixtures and the client's side of a proxy process.

`moto_stack`: one moto server (signature checking on) and one proxy process in front of it, per
module. `stack`: fakes served on the test's event loop and proxy processes started off it.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig

from tests.fakes import serve
from tests.servers import MotoServer, ProxyProcess, credential_env, moto_server, proxy_process


@dataclass
class MotoStack:
    moto: MotoServer
    proxy: ProxyProcess
    key_id: str
    secret: str


def moto_routes(moto_url: str) -> list[dict[str, str]]:
    """Every AWS host goes to moto; path-prefix routes exercise the third way in."""
    return [
        {"path_prefix": "/via-route/ec2", "upstream": moto_url, "service": "ec2"},
        {"path_prefix": "/via-route/s3", "upstream": moto_url, "service": "s3"},
        {"path_prefix": "/via-route/dynamodb", "upstream": moto_url, "service": "dynamodb"},
        {"path_prefix": "/via-route/sqs", "upstream": moto_url, "service": "sqs"},
        {"path_prefix": "/via-route/sts", "upstream": moto_url, "service": "sts"},
        {"host": "*.amazonaws.com", "upstream": moto_url},
    ]


@pytest.fixture(scope="module")
def moto_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoStack]:
    tmp: Path = tmp_path_factory.mktemp("moto-stack")
    with moto_server() as moto:
        key_id, secret = moto.create_admin_user()
        moto.enable_auth()
        env = credential_env(tmp, {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret})
        config = {
            "region": "us-east-1",
            "log_level": "debug",
            "routes": moto_routes(moto.url),
            "retry": {"max_attempts": 1},
        }
        with proxy_process(tmp, config, env=env) as proxy:
            yield MotoStack(moto, proxy, key_id, secret)


def proxy_config(upstream: str) -> dict[str, object]:
    """Every AWS host goes to `upstream`; one attempt, so a bad signature is not retried."""
    return {
        "region": "us-east-1",
        "routes": [{"host": "*.amazonaws.com", "upstream": upstream}],
        "retry": {"max_attempts": 1},
    }


class E2eStack:
    """Fakes served on this event loop and proxy processes started off it, all closed at the end.

    The proxy is started in a thread: the fakes it calls while starting must keep answering.
    """

    def __init__(self, exits: contextlib.AsyncExitStack) -> None:
        self._exits = exits

    async def serve(self, app: web.Application) -> str:
        """Serve a fake until the test ends; returns its base URL."""
        return await self._exits.enter_async_context(serve(app))

    async def start_proxy(
        self,
        tmp: Path,
        config: Mapping[str, object],
        env: Mapping[str, str],
        args: tuple[str, ...] = (),
    ) -> ProxyProcess:
        """`python -m proxy run` with `env`, listening; stopped (off the loop) at the end."""
        running = proxy_process(tmp, config, env=env, args=args)
        proxy = await asyncio.to_thread(running.__enter__)
        self._exits.push_async_callback(asyncio.to_thread, running.__exit__, None, None, None)
        return proxy


@pytest.fixture
async def stack() -> AsyncIterator[E2eStack]:
    async with contextlib.AsyncExitStack() as exits:
        yield E2eStack(exits)


def unsigned_client(service: str, proxy_url: str, **config: Any) -> Any:
    """An app's boto3 client for `service` in us-east-1 that signs nothing and sends everything
    through the proxy as its HTTP proxy; one attempt, so every failure shows."""
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=f"http://{service}.us-east-1.amazonaws.com",
        config=BotoConfig(
            signature_version=UNSIGNED,
            retries={"max_attempts": 1},
            proxies={"http": proxy_url},
            **config,
        ),
    )


def _caller_arn(proxy_url: str) -> str:
    arn: str = unsigned_client("sts", proxy_url).get_caller_identity()["Arn"]
    return arn


async def caller_arn(proxy: ProxyProcess) -> str:
    """An app's unsigned GetCallerIdentity through the proxy; moto's answer names the signer."""
    return await asyncio.to_thread(_caller_arn, proxy.url)


def _admin_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def admin_get(proxy: ProxyProcess, path: str) -> tuple[int, str]:
    """GET an admin endpoint (/healthz, /readyz): (status, body)."""
    return await asyncio.to_thread(_admin_get, proxy.admin_url + path)


def assert_secrets_not_logged(proxy: ProxyProcess, *secrets: str) -> None:
    log_text = proxy.log_text()
    for secret in secrets:
        assert secret not in log_text
