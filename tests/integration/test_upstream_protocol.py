"""The pooled client's own Protocol against loopback servers: TLS, flow control on a streamed
body the consumer is slow to take, and the one re-armed timer on a reused connection."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.upstream.connection import HIGH_WATER, UpstreamConnection, open_tcp
from proxy.upstream.http1 import Http1Pool, Origin

BODY = b"0123456789abcdef" * 4096  # 64 KiB


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def answer_each(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: int
) -> None:
    """Answer `answers` requests with BODY (chunked when the path says so), then go silent."""
    try:
        for _ in range(answers):
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /chunked"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                writer.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(BODY), BODY))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY))
            await writer.drain()
        await reader.read()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_requests_over_tls_reuse_one_connection(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await answer_each(reader, writer, 10)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    origin = Origin("https", "127.0.0.1", server.sockets[0].getsockname()[1])
    pool = Http1Pool(
        size=2,
        connect_timeout=5.0,
        read_timeout=5.0,
        ssl_context=ssl.create_default_context(cafile=str(cert)),
    )
    try:
        for path in ("/plain", "/chunked", "/plain"):
            answer = await pool.request(origin, "GET", path, [("Host", "127.0.0.1")], None)
            assert answer.status == 200
            assert await answer.read(1 << 20) == BODY
            answer.release()
        assert connections == 1
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


async def test_an_unverified_tls_upstream_is_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer, 1)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    origin = Origin("https", "127.0.0.1", server.sockets[0].getsockname()[1])
    pool = Http1Pool(
        size=2, connect_timeout=5.0, read_timeout=5.0, ssl_context=ssl.create_default_context()
    )
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await pool.request(origin, "GET", "/", [("Host", "127.0.0.1")], None)
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def flood() -> AsyncIterator[tuple[Origin, list[int]]]:
    """A server that sends a 256 MiB body as fast as the client takes it; `sent[0]` counts
    the bytes its transport has handed to the kernel so far."""
    sent = [0]
    total = 256 << 20
    piece = b"x" * (1 << 20)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            while sent[0] < total:
                writer.write(piece)
                await writer.drain()
                sent[0] += len(piece)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()  # its buffer is full: a graceful close would never end

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1]), sent
    server.close()
    await server.wait_closed()


async def test_a_slow_consumer_stops_the_upstream_instead_of_buffering(
    flood: tuple[Origin, list[int]],
) -> None:
    origin, sent = flood
    pool = Http1Pool(
        size=1, connect_timeout=5.0, read_timeout=5.0, ssl_context=ssl.create_default_context()
    )
    try:
        answer = await pool.request(origin, "GET", "/", [("Host", "h")], None)
        pieces = answer.iter_chunks()
        first = await anext(pieces)
        assert first
        await asyncio.sleep(0.5)  # the consumer stalls: the server must be held back
        # Kernel socket buffers on loopback take a few MiB; reading on regardless would have
        # taken all 256 MiB by now. A slow machine only sends less, never more.
        assert sent[0] < 64 << 20
        received = len(first)
        async for part in pieces:
            received += len(part)
            if received >= 32 << 20:
                break  # it flows again once the consumer reads
        assert received >= 32 << 20
        answer.release()
    finally:
        await pool.close()


async def test_an_upstream_that_stops_reading_cannot_flood_the_buffer_while_we_send() -> None:
    # It answers at once and keeps sending while our 256 MiB request body waits in `drain`:
    # the receive buffer stays near HIGH_WATER instead of taking everything it sends.
    handlers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(writer)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4000000000\r\n\r\n")
        try:
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()  # its buffer is full: a graceful close would never end

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    connections: list[UpstreamConnection] = []

    async def opening(
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        protocol_factory: Callable[[], UpstreamConnection],
    ) -> UpstreamConnection:
        connection = await open_tcp(origin, ssl_context, protocol_factory)
        connections.append(connection)
        return connection

    pool = Http1Pool(
        size=1,
        connect_timeout=5.0,
        # Far past the test's own second: the send must still be stuck when it looks, even on
        # a loaded machine (the test cancels it itself).
        read_timeout=120.0,
        ssl_context=ssl.create_default_context(),
        open_connection=opening,
    )
    origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    sending = asyncio.create_task(
        pool.request(origin, "PUT", "/", [("Host", "h")], b"y" * (256 << 20))
    )
    try:
        largest = 0
        for _ in range(20):  # 1 s of the upstream flooding us while our send is stuck
            await asyncio.sleep(0.05)
            if connections:
                largest = max(largest, len(connections[0].buffer))
        assert connections
        assert not sending.done()
        # HIGH_WATER plus what one read can add past it; without the bound it grew by
        # hundreds of MiB in a second. A slow machine only receives less.
        assert largest < HIGH_WATER + (4 << 20)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sending
        await pool.close()
        for writer in handlers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()
        for _ in range(20):  # the closed transports finish closing on the loop's next turns
            await asyncio.sleep(0.01)


async def test_a_silent_answer_on_a_reused_connection_still_times_out() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await answer_each(reader, writer, 3)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    origin = Origin("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    pool = Http1Pool(
        size=1, connect_timeout=5.0, read_timeout=0.3, ssl_context=ssl.create_default_context()
    )
    loop = asyncio.get_running_loop()
    try:
        for _ in range(3):
            answer = await pool.request(origin, "GET", "/", [("Host", "h")], None)
            assert await answer.read(1 << 20) == BODY
            answer.release()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await pool.request(origin, "GET", "/", [("Host", "h")], None)
        assert loop.time() - started >= 0.25  # not before read_timeout (timer granularity)
        assert connections == 1
        # The slot came back (the pool has one): the next request gets it, on a new connection.
        answer = await pool.request(origin, "GET", "/", [("Host", "h")], None, loop.time() + 2)
        assert await answer.read(1 << 20) == BODY
        answer.release()
        assert connections == 2
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
