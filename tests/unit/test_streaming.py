"""Streamed S3 uploads: aws-chunked framing whose every chunk signature checks out, and
UNSIGNED-PAYLOAD only where it is allowed (HTTPS, when configured)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from proxy.aws.routing import Router, Target
from proxy.bodies.client import STREAM_CHUNK, ClientBody
from proxy.config.model import parse_config
from proxy.credentials.base import Credentials
from proxy.front.body import RequestBody
from proxy.signing.chunked import ChunkSigner
from proxy.signing.sigv4 import (
    STREAMING_PAYLOAD,
    UNSIGNED_PAYLOAD,
    SignedRequest,
    SigningInput,
    SigningKeyCache,
    derive_signing_key,
    sign,
)
from proxy.signing.streaming import StreamingUpload, streaming_upload

CREDS = Credentials(
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", session_token="session-token-1"
)
NOW = 1_440_938_160.0  # 2015-08-30T12:36:00Z
AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/(?P<scope>[^,]+), "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
FRAME_HEADER = re.compile(rb"^([0-9a-f]+);chunk-signature=([0-9a-f]{64})$")
# What the signer sets itself; everything else in the sent headers was an input to signing.
SIGNER_HEADERS = {"host", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}


class NoSocket:
    """No connection behind the body: flow control has nothing to pause."""

    def pause_body(self) -> None:
        pass

    def resume_body(self) -> None:
        pass

    def now(self) -> float:
        return 0.0


def client_body(data: bytes, extra: bytes = b"") -> ClientBody:
    """A streamed body of `data`, fed in uneven pieces, with `extra` after it on the stream."""
    source = RequestBody(NoSocket())
    fed = data + extra
    for start in range(0, len(fed), 10_007):
        source.feed(fed[start : start + 10_007])
    source.finish()
    return ClientBody(None, len(data), source)


def https_target() -> Target:
    target = Router(parse_config({})).resolve(
        "PUT", "/big.bin?x-id=PutObject", "my-bucket.s3.eu-west-1.amazonaws.com"
    )
    assert target.scheme == "https"
    return target


def http_target() -> Target:
    config = parse_config(
        {
            "routes": [
                {
                    "host": "s3.local.test",
                    "upstream": "http://127.0.0.1:9000",
                    "service": "s3",
                    "region": "us-west-2",
                }
            ]
        }
    )
    target = Router(config).resolve("PUT", "/my-bucket/big.bin", "s3.local.test")
    assert target.scheme == "http"
    return target


def upload(
    target: Target,
    body: ClientBody,
    headers: Sequence[tuple[str, str]] = (),
    unsigned_over_https: bool = False,
) -> StreamingUpload:
    return streaming_upload(
        method="PUT",
        target=target,
        headers=list(headers),
        body=body,
        creds=CREDS,
        now=NOW,
        keys=SigningKeyCache(),
        unsigned_over_https=unsigned_over_https,
    )


async def sent_bytes(streamed: StreamingUpload) -> list[bytes]:
    return [piece async for piece in streamed.body]


def values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def one(headers: Sequence[tuple[str, str]], name: str) -> str:
    found = values(headers, name)
    assert len(found) == 1, (name, found)
    return found[0]


def decode_frames(wire: bytes) -> list[tuple[bytes, str]]:
    """Split an aws-chunked body into (data, chunk signature); checks the framing on the way."""
    frames: list[tuple[bytes, str]] = []
    rest = wire
    while True:
        header, sep, rest = rest.partition(b"\r\n")
        assert sep, "frame header without CRLF"
        match = FRAME_HEADER.match(header)
        assert match, header[:100]
        size = int(match.group(1), 16)
        data, crlf, rest = rest[:size], rest[size : size + 2], rest[size + 2 :]
        assert len(data) == size
        assert crlf == b"\r\n"
        frames.append((data, match.group(2).decode("ascii")))
        if size == 0:
            assert rest == b"", "bytes after the final chunk"
            return frames


def seed_of(streamed: StreamingUpload) -> SignedRequest:
    """The seed as the receiver sees it: signature from Authorization, key from the secret."""
    match = AUTH.match(one(streamed.headers, "authorization"))
    assert match, one(streamed.headers, "authorization")
    scope = match.group("scope")
    date, region, service, terminator = scope.split("/")
    assert terminator == "aws4_request"
    return SignedRequest(
        path=streamed.path,
        query=streamed.query,
        headers=streamed.headers,
        signature=match.group("signature"),
        amz_date=one(streamed.headers, "x-amz-date"),
        scope=scope,
        signing_key=derive_signing_key(CREDS.secret_access_key, date, region, service),
        canonical_request="",
        string_to_sign="",
    )


def assert_seed_signs_the_sent_headers(streamed: StreamingUpload, target: Target) -> None:
    """Re-signing exactly what goes on the wire gives the same Authorization: no header
    was changed or added after signing."""
    inputs = [
        (k, v)
        for k, v in streamed.headers
        if k.lower() not in SIGNER_HEADERS and k.lower() != "authorization"
    ]
    payload = one(streamed.headers, "x-amz-content-sha256")
    again = sign(
        SigningInput(
            "PUT",
            one(streamed.headers, "host"),
            streamed.path,
            streamed.query,
            inputs,
            payload,
            target.endpoint.service,
            target.endpoint.region,
        ),
        CREDS,
        NOW,
        SigningKeyCache(),
    )
    assert values(again.headers, "authorization") == values(streamed.headers, "authorization")


@pytest.mark.parametrize(
    "length", [1, STREAM_CHUNK - 1, STREAM_CHUNK, 2 * STREAM_CHUNK, 2 * STREAM_CHUNK + 1000]
)
@pytest.mark.parametrize("target_of", [http_target, https_target], ids=["http", "https"])
async def test_aws_chunked_upload_frames_and_signs_every_chunk(
    length: int, target_of: Callable[[], Target]
) -> None:
    target = target_of()
    data = bytes((i * 7) % 256 for i in range(length))
    streamed = upload(target, client_body(data, extra=b"NEXT-REQUEST"))
    pieces = await sent_bytes(streamed)
    wire = b"".join(pieces)

    headers = streamed.headers
    assert one(headers, "content-encoding") == "aws-chunked"
    assert one(headers, "x-amz-decoded-content-length") == str(length)
    assert one(headers, "content-length") == str(len(wire))
    assert one(headers, "x-amz-content-sha256") == STREAMING_PAYLOAD
    assert one(headers, "x-amz-security-token") == "session-token-1"
    signed_names = AUTH.match(one(headers, "authorization"))
    assert signed_names
    assert {"content-encoding", "content-length", "x-amz-decoded-content-length"} <= set(
        signed_names.group("signed").split(";")
    )
    assert_seed_signs_the_sent_headers(streamed, target)

    frames = decode_frames(wire)
    assert [len(d) for d, _ in frames[:-1]] == [
        min(STREAM_CHUNK, length - start) for start in range(0, length, STREAM_CHUNK)
    ]
    assert frames[-1][0] == b""
    assert b"".join(d for d, _ in frames) == data
    assert len(pieces) == len(frames)  # one frame per yielded piece: nothing held back

    verifier = ChunkSigner(seed_of(streamed))
    for chunk, signature in frames:
        assert verifier.signature_for(chunk) == signature


async def test_chunk_signatures_chain_from_the_seed() -> None:
    data = b"a" * (STREAM_CHUNK + 10)
    streamed = upload(http_target(), client_body(data))
    frames = decode_frames(b"".join(await sent_bytes(streamed)))
    seed = seed_of(streamed)
    # The same chunks verified from a wrong seed fail: the chain really starts at the seed.
    wrong_seed = SignedRequest(
        seed.path,
        seed.query,
        seed.headers,
        "0" * 64,
        seed.amz_date,
        seed.scope,
        seed.signing_key,
        "",
        "",
    )
    wrong = ChunkSigner(wrong_seed)
    assert [wrong.signature_for(chunk) for chunk, _ in frames] != [sig for _, sig in frames]
    assert len({sig for _, sig in frames}) == len(frames)


async def test_scope_is_the_targets_service_and_region() -> None:
    streamed = upload(http_target(), client_body(b"x" * 100))
    assert seed_of(streamed).scope == "20150830/us-west-2/s3/aws4_request"
    assert one(streamed.headers, "host") == "s3.local.test"
    assert streamed.path == "/my-bucket/big.bin"
    streamed = upload(https_target(), client_body(b"x" * 100))
    assert seed_of(streamed).scope == "20150830/eu-west-1/s3/aws4_request"
    assert one(streamed.headers, "host") == "my-bucket.s3.eu-west-1.amazonaws.com"
    assert (streamed.path, streamed.query) == ("/big.bin", "x-id=PutObject")


async def test_client_content_encoding_follows_aws_chunked() -> None:
    data = b"\x1f\x8b" + b"z" * 5000
    client_headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Encoding", "gzip"),
        ("x-amz-meta-owner", "me"),
    ]
    streamed = upload(http_target(), client_body(data), client_headers)
    assert one(streamed.headers, "content-encoding") == "aws-chunked,gzip"
    assert one(streamed.headers, "content-type") == "application/octet-stream"
    assert one(streamed.headers, "x-amz-meta-owner") == "me"
    wire = b"".join(await sent_bytes(streamed))
    assert one(streamed.headers, "content-length") == str(len(wire))
    assert b"".join(d for d, _ in decode_frames(wire)) == data
    assert_seed_signs_the_sent_headers(streamed, http_target())


async def test_upload_reads_only_the_declared_length() -> None:
    body = client_body(b"p" * 1000, extra=b"NEXT-REQUEST")
    assert isinstance(body.source, RequestBody)
    await sent_bytes(upload(http_target(), body))
    assert await body.source.read() == b"NEXT-REQUEST"


@pytest.mark.parametrize("length", [10, 3 * STREAM_CHUNK + 5])
async def test_unsigned_payload_over_https_when_configured(length: int) -> None:
    data = bytes(i % 256 for i in range(length))
    target = https_target()
    streamed = upload(
        target, client_body(data), [("Content-Encoding", "gzip")], unsigned_over_https=True
    )
    pieces = await sent_bytes(streamed)
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) <= STREAM_CHUNK
    headers = streamed.headers
    assert one(headers, "x-amz-content-sha256") == UNSIGNED_PAYLOAD
    assert one(headers, "content-length") == str(length)
    assert one(headers, "content-encoding") == "gzip"
    assert values(headers, "x-amz-decoded-content-length") == []
    assert_seed_signs_the_sent_headers(streamed, target)


async def test_unsigned_payload_never_over_plain_http() -> None:
    data = b"q" * 3000
    streamed = upload(http_target(), client_body(data), unsigned_over_https=True)
    wire = b"".join(await sent_bytes(streamed))
    assert one(streamed.headers, "x-amz-content-sha256") == STREAMING_PAYLOAD
    assert one(streamed.headers, "content-encoding") == "aws-chunked"
    assert one(streamed.headers, "content-length") == str(len(wire))
    verifier = ChunkSigner(seed_of(streamed))
    for chunk, signature in decode_frames(wire):
        assert verifier.signature_for(chunk) == signature


async def test_https_without_the_setting_is_chunked() -> None:
    streamed = upload(https_target(), client_body(b"r" * 3000), unsigned_over_https=False)
    assert one(streamed.headers, "x-amz-content-sha256") == STREAMING_PAYLOAD
    assert one(streamed.headers, "content-encoding") == "aws-chunked"
