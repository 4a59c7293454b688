"""A ProxyServer on loopback in front of the scripted fake, for the fault and report tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import botocore.session
from botocore.parsers import create_parser

from proxy.app.server import ProxyServer
from proxy.config.model import parse_config
from proxy.credentials.base import Credentials
from tests.fakes.scripted_upstream import ScriptedUpstream

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DDB = "dynamodb.us-east-1.amazonaws.com"
EC2 = "ec2.us-east-1.amazonaws.com"
FAULT_HEADER = "x-throttle-proxy-fault"
_DDB_MODEL = botocore.session.get_session().get_service_model("dynamodb")
_PUT_ITEM = _DDB_MODEL.operation_model("PutItem")
THROTTLE_30 = {
    "name": "ddb-put-30",
    "service": "dynamodb",
    "operations": ["PutItem"],
    "probability": 0.3,
    "kind": "throttle",
}


class ExampleCredentials:
    async def get(self) -> Credentials:
        return Credentials(KEY_ID, SECRET, provider="static")


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Rig:
    upstream: ScriptedUpstream
    server: ProxyServer
    url: str
    admin_url: str
    session: aiohttp.ClientSession

    def sample(self, name: str, **labels: str) -> float:
        return self.server.metrics.registry.get_sample_value(name, labels) or 0.0

    async def put_item(self, host: str = DDB) -> Answer:
        async with self.session.post(
            f"{self.url}/",
            data=b'{"TableName":"t","Item":{"k":{"S":"v"}}}',
            headers={
                "Host": host,
                "X-Amz-Target": "DynamoDB_20120810.PutItem",
                "Content-Type": "application/x-amz-json-1.0",
            },
        ) as answer:
            return Answer(answer.status, dict(answer.headers), await answer.read())

    async def describe_instances(self) -> Answer:
        async with self.session.post(
            f"{self.url}/",
            data=b"Action=DescribeInstances&Version=2016-11-15",
            headers={"Host": EC2, "Content-Type": "application/x-www-form-urlencoded"},
        ) as answer:
            return Answer(answer.status, dict(answer.headers), await answer.read())


@asynccontextmanager
async def rig(
    extra: Mapping[str, Any],
    *,
    identity_routes: Mapping[str, Mapping[str, str]] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Rig]:
    """`identity_routes`: more routes to the fake, host -> the route's own `credentials`."""
    upstream = ScriptedUpstream()
    async with upstream.running() as upstream_url:
        routes: list[dict[str, Any]] = [
            {"host": host, "upstream": upstream_url} for host in (DDB, EC2)
        ]
        for host, credentials in (identity_routes or {}).items():
            routes.append({"host": host, "upstream": upstream_url, "credentials": credentials})
        config = parse_config(
            {
                "listen": "127.0.0.1:0",
                "admin_listen": "127.0.0.1:0",
                "log_level": "warning",
                "routes": routes,
                # Roomy: an answer the fake gives at once can still take a loaded machine
                # hundreds of milliseconds (a 300 ms read timeout turned one into a 504).
                # Tests of timeouts set a short one of their own.
                "upstream": {"connect_timeout": "1s", "read_timeout": "5s"},
                **extra,
            }
        )
        server = ProxyServer(config, credentials=ExampleCredentials(), env=env)
        addresses = await server.start()
        host, port = addresses.proxy
        admin_host, admin_port = addresses.admin
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                yield Rig(
                    upstream,
                    server,
                    f"http://{host}:{port}",
                    f"http://{admin_host}:{admin_port}",
                    session,
                )
        finally:
            await server.close()


def botocore_error_code(answer: Answer) -> str:
    """The error code botocore's own DynamoDB parser reads from the answer."""
    parsed = create_parser("json").parse(
        {"status_code": answer.status, "headers": answer.headers, "body": answer.body},
        _PUT_ITEM.output_shape,
    )
    return str(parsed["Error"]["Code"])
