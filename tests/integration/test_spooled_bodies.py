"""Non-S3 bodies past max_buffered_body through a real proxy listener: spooled to disk while
hashed, signed (checked with botocore's signer), replayed byte for byte on every retry, the
file removed however the request ends; past max_body a 413 in the service's own format, before
any 100 Continue."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from proxy.app.server import ProxyServer
from proxy.config.model import parse_config
from proxy.credentials.base import Credentials
from tests.fakes.open_files import open_files_under
from tests.fakes.scripted_upstream import (
    SCRIPT_HEADER,
    ScriptedUpstream,
    error,
    ok,
    signature_is_valid,
)
from tests.polling import eventually
from tests.servers import proxy_process

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DDB = "dynamodb.us-east-1.amazonaws.com"
SQS = "sqs.us-east-1.amazonaws.com"
BUFFERED = 64 * 1024
MAX_BODY = 1024 * 1024


class ExampleCredentials:
    async def get(self) -> Credentials:
        return Credentials("AKIDEXAMPLE", SECRET, provider="static")


@dataclass
class Rig:
    upstream: ScriptedUpstream
    url: str
    port: int
    spool: Path
    session: aiohttp.ClientSession

    def spooled_files(self) -> list[str]:
        """Spool files in use (open, nameless) or left behind (named) in the spool dir."""
        return open_files_under(self.spool) + [str(path) for path in self.spool.iterdir()]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    upstream = ScriptedUpstream()
    async with upstream.running() as upstream_url:
        config = parse_config(
            {
                "listen": "127.0.0.1:0",
                "admin_listen": "127.0.0.1:0",
                "routes": [{"host": host, "upstream": upstream_url} for host in (DDB, SQS)],
                "retry": {"base_delay": "5ms", "throttle_base_delay": "5ms", "max_backoff": "20ms"},
                "max_buffered_body": BUFFERED,
                "max_body": MAX_BODY,
                "spool_dir": str(tmp_path),
            }
        )
        server = ProxyServer(config, credentials=ExampleCredentials())
        host, port = (await server.start()).proxy
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            yield Rig(upstream, f"http://{host}:{port}", port, tmp_path, session)
        await server.close()


def batch_write(size: int) -> bytes:
    blob = os.urandom(size // 2).hex()
    return json.dumps({"RequestItems": {"t": [{"PutRequest": {"Item": {"v": {"S": blob}}}}]}})[
        :size
    ].encode()


def ddb_headers(script: str) -> dict[str, str]:
    return {
        "Host": DDB,
        "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
        "Content-Type": "application/x-amz-json-1.0",
        SCRIPT_HEADER: script,
    }


async def test_a_spooled_body_is_signed_and_replayed_on_every_retry(rig: Rig) -> None:
    body = batch_write(600 * 1024)  # over max_buffered_body, under max_body
    rig.upstream.script(
        "spool",
        error(400, "ProvisionedThroughputExceededException", "json"),
        error(500, "InternalServerError", "json"),
        ok(b"{}"),
    )
    async with rig.session.post(rig.url, data=body, headers=ddb_headers("spool")) as answer:
        assert answer.status == 200, await answer.read()
        assert answer.headers["x-throttle-proxy-attempts"] == "3"
    attempts = rig.upstream.attempts_of("spool")
    assert [a.body == body for a in attempts] == [True, True, True]
    for attempt in attempts:
        assert signature_is_valid(attempt, SECRET)
    assert rig.spooled_files() == []


async def test_a_chunked_body_past_the_buffer_goes_to_disk_and_out_with_a_length(rig: Rig) -> None:
    body = batch_write(300 * 1024)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 10_000):
            yield body[start : start + 10_000]

    rig.upstream.script("chunked", ok(b"{}"))
    async with rig.session.post(rig.url, data=pieces(), headers=ddb_headers("chunked")) as answer:
        assert answer.status == 200, await answer.read()
    (attempt,) = rig.upstream.attempts_of("chunked")
    assert attempt.body == body
    assert attempt.header("Content-Length") == str(len(body))
    assert signature_is_valid(attempt, SECRET)
    assert rig.spooled_files() == []


@pytest.mark.parametrize(
    ("host", "headers", "marker"),
    [
        (DDB, {"X-Amz-Target": "DynamoDB_20120810.BatchWriteItem"}, b'"__type"'),
        (SQS, {"Content-Type": "application/x-www-form-urlencoded"}, b"<ErrorResponse"),
    ],
    ids=["json", "query"],
)
async def test_over_max_body_is_413_in_the_service_format_before_100_continue(
    rig: Rig, host: str, headers: dict[str, str], marker: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST / HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {MAX_BODY + 1}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert b"100 Continue" not in answer
    assert b"x-throttle-proxy-error: body-too-large" in answer.lower()
    assert marker in answer
    assert b"RequestEntityTooLarge" in answer


async def test_a_client_gone_mid_body_leaves_no_spool_file(rig: Rig) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in ddb_headers("gone").items())
    writer.write(f"POST / HTTP/1.1\r\n{head}Content-Length: {MAX_BODY}\r\n\r\n".encode())
    writer.write(b"x" * (BUFFERED * 4))
    await writer.drain()
    assert await eventually(lambda: len(rig.spooled_files()) == 1, 5)
    writer.close()
    await writer.wait_closed()
    assert await eventually(lambda: rig.spooled_files() == [], 5)
    assert rig.upstream.attempts_of("gone") == []


def test_a_killed_proxy_leaves_no_spool_file(tmp_path: Path) -> None:
    """SIGKILL (an OOM kill, an eviction) runs no cleanup: the spool file must have no name in
    spool_dir to begin with, or every such death leaves a body on disk that no budget counts."""
    spool = tmp_path / "spool"
    spool.mkdir()
    config = {
        # Nothing listens upstream: the body never gets that far.
        "routes": [{"host": "*.amazonaws.com", "upstream": "http://127.0.0.1:9"}],
        "max_buffered_body": BUFFERED,
        "max_body": MAX_BODY,
        "spool_dir": str(spool),
    }
    with (
        proxy_process(tmp_path, config) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock,
    ):
        head = "".join(f"{k}: {v}\r\n" for k, v in ddb_headers("killed").items())
        sock.sendall(f"POST / HTTP/1.1\r\n{head}Content-Length: {MAX_BODY}\r\n\r\n".encode())
        sock.sendall(b"x" * (BUFFERED * 4))
        deadline = time.monotonic() + 10
        while not open_files_under(spool, proxy.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert open_files_under(spool, proxy.proc.pid)  # the body is being spooled
        proxy.proc.kill()
        proxy.proc.wait(10)
    assert list(spool.iterdir()) == []
