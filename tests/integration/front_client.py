"""Raw-socket clients for the front's tests: what a real (or hostile) client puts on the wire,
byte for byte, and the proxy's answers read back with their framing."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from dataclasses import dataclass

from tests.servers import ProxyProcess

EC2 = "ec2.us-east-1.amazonaws.com"
S3 = "s3.us-east-1.amazonaws.com"


@dataclass
class Answer:
    status: int
    head: str
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


async def read_answer(reader: asyncio.StreamReader, within: float = 5.0) -> Answer:
    """One response (Content-Length or chunked framing), skipping 1xx interim answers."""
    while True:
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)).decode()
        status = int(head.split(" ", 2)[1])
        if not 100 <= status < 200:
            break
    answer = Answer(status, head, b"")
    length = answer.header("Content-Length")
    if length is not None:
        answer.body = await asyncio.wait_for(reader.readexactly(int(length)), within)
    elif (answer.header("Transfer-Encoding") or "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        answer.body = b"".join(parts)
    return answer


async def exchange(proxy: ProxyProcess, raw: bytes, within: float = 5.0) -> Answer:
    """Send `raw` on a new connection and read one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(raw)
        await writer.drain()
        return await read_answer(reader, within)
    finally:
        writer.close()


def describe(action: str = "DescribeInstances", extra: str = "") -> bytes:
    return (
        f"GET /?Action={action}&Version=2016-11-15 HTTP/1.1\r\nHost: {EC2}\r\n{extra}\r\n"
    ).encode()


def metric(proxy: ProxyProcess, name: str, **labels: str) -> float:
    """One sample from the proxy's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    want = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if match and match.group(1) == name and (match.group(2) or "") == want:
            return float(match.group(3))
    return 0.0


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the proxy closes the connection (EOF or reset) within `within` seconds;
    whatever it wrote before closing is read and dropped."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True
