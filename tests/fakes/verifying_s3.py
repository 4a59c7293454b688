"""A fake S3 that checks what moto does not: payload hashes, chunk and trailer signatures, and
the flexible checksum, each against the proxy's signing key. Written apart from proxy/signing
on purpose (its own canonicalisation and chunk parser), so a shared mistake cannot pass.

PUT stores the decoded object (with its Content-Encoding, less `aws-chunked`, as S3 does), GET
returns it; anything wrong is answered in S3's XML with S3's code and kept in `rejections`.
A body cut off before its end (the proxy aborting an upload) is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from aiohttp import web

from tests.fakes.checksums import checksum

EMPTY = hashlib.sha256(b"").hexdigest()
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
_CHECKSUM_HEADER = "x-amz-checksum-"


class Rejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class StoredObject:
    data: bytes
    content_encoding: str | None
    checksum: tuple[str, str] | None  # (algorithm, value) verified on upload
    payload_mode: str  # the x-amz-content-sha256 it came with


@dataclass
class VerifyingS3:
    secret: str
    objects: dict[str, StoredObject] = field(default_factory=dict)
    rejections: list[str] = field(default_factory=list)
    started: int = 0  # requests whose head arrived
    incomplete: int = 0  # uploads cut off before their body ended

    def app(self) -> web.Application:
        # auto_decompress off: the object is stored as sent, gzip and all, as S3 does.
        app = web.Application(client_max_size=1024**3, handler_args={"auto_decompress": False})
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.started += 1
        try:
            raw = await request.read()
        except Exception:
            self.incomplete += 1
            raise
        try:
            scope, seed = self._check_seed(request)
            if request.method == "PUT":
                return self._put(request, raw, scope, seed)
            if request.method == "GET" and request.path in self.objects:
                stored = self.objects[request.path]
                headers = {"Content-Encoding": stored.content_encoding or "identity"}
                if stored.content_encoding is None:
                    headers = {}
                return web.Response(body=stored.data, headers=headers)
            return web.Response(status=404 if request.method == "GET" else 200)
        except Rejected as error:
            self.rejections.append(str(error))
            body = f"<Error><Code>{error.code}</Code><Message>{error.message}</Message></Error>"
            return web.Response(status=error.status, text=body, content_type="application/xml")

    def _check_seed(self, request: web.Request) -> tuple[str, str]:
        match = _AUTH.match(request.headers.get("Authorization", ""))
        if match is None:
            raise Rejected(403, "AccessDenied", "no SigV4 Authorization header")
        signed = match["signed"].split(";")
        for needed in ("host", "x-amz-date", "x-amz-content-sha256"):
            if needed not in signed:
                raise Rejected(403, "AccessDenied", f"{needed} is not signed")
        canonical_headers = "".join(
            f"{name}:{','.join(' '.join(v.split()) for v in request.headers.getall(name))}\n"
            for name in signed
        )
        path, _, query = request.raw_path.partition("?")
        canonical = "\n".join(
            (
                request.method,
                path,
                _canonical_query(query),
                canonical_headers,
                match["signed"],
                request.headers["x-amz-content-sha256"],
            )
        )
        scope = match["scope"]
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{request.headers['x-amz-date']}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = _hmac_hex(self._key(scope), string_to_sign)
        if signature != match["signature"]:
            raise Rejected(403, "SignatureDoesNotMatch", "seed signature does not match")
        return scope, signature

    def _key(self, scope: str) -> bytes:
        key = ("AWS4" + self.secret).encode()
        for part in scope.split("/"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return key

    def _put(self, request: web.Request, raw: bytes, scope: str, seed: str) -> web.Response:
        mode = request.headers["x-amz-content-sha256"]
        encodings = [
            t.strip() for t in request.headers.get("Content-Encoding", "").split(",") if t.strip()
        ]
        trailer: dict[str, str] = {}
        if mode.startswith("STREAMING-"):
            if encodings.count("aws-chunked") != 1:
                raise Rejected(400, "InvalidRequest", f"Content-Encoding {encodings!r}")
            context = (self._key(scope), f"{request.headers['x-amz-date']}\n{scope}\n", seed)
            data, trailer = decode_chunked(raw, mode, context)
            declared = request.headers.get("x-amz-decoded-content-length")
            if declared is None or int(declared) != len(data):
                raise Rejected(400, "IncompleteBody", f"decoded {len(data)}, said {declared}")
            announced = request.headers.get("x-amz-trailer")
            if sorted(trailer) != sorted([announced] if announced else []):
                raise Rejected(400, "InvalidRequest", f"trailer {trailer} vs {announced}")
            encodings.remove("aws-chunked")
        else:
            if "aws-chunked" in encodings:
                raise Rejected(400, "InvalidRequest", "aws-chunked without a STREAMING payload")
            data = raw
            if mode != "UNSIGNED-PAYLOAD" and hashlib.sha256(raw).hexdigest() != mode:
                raise Rejected(400, "XAmzContentSHA256Mismatch", "payload hash does not match")
        verified = _check_checksum(request, trailer, data)
        self.objects[request.path] = StoredObject(data, ",".join(encodings) or None, verified, mode)
        return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})


def _canonical_query(query: str) -> str:
    pairs = []
    for part in query.split("&") if query else []:
        key, _, value = part.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def decode_chunked(
    raw: bytes, mode: str, context: tuple[bytes, str, str]
) -> tuple[bytes, dict[str, str]]:
    """The object and trailer of an aws-chunked body, every signature checked when signed."""
    key, date_scope, previous = context
    signed = mode.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    with_trailer = mode.endswith("-TRAILER")
    out = bytearray()
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            raise Rejected(400, "IncompleteBody", "chunk header without CRLF")
        header = raw[pos:end].decode()
        pos = end + 2
        size_text, _, extension = header.partition(";")
        size = int(size_text, 16)
        data = raw[pos : pos + size]
        if len(data) != size:
            raise Rejected(400, "IncompleteBody", "chunk cut short")
        pos += size
        if signed:
            name, _, given = extension.partition("=")
            string_to_sign = (
                f"AWS4-HMAC-SHA256-PAYLOAD\n{date_scope}{previous}\n{EMPTY}\n"
                f"{hashlib.sha256(data).hexdigest()}"
            )
            if name != "chunk-signature" or _hmac_hex(key, string_to_sign) != given:
                raise Rejected(403, "SignatureDoesNotMatch", f"chunk at {len(out)} is unsigned")
            previous = given
        elif extension:
            raise Rejected(400, "InvalidRequest", "unsigned chunk with an extension")
        out += data
        if size == 0:
            break
        if raw[pos : pos + 2] != b"\r\n":
            raise Rejected(400, "IncompleteBody", "chunk data without CRLF")
        pos += 2
    trailer: dict[str, str] = {}
    if not with_trailer:
        if raw[pos:] != b"\r\n":
            raise Rejected(400, "IncompleteBody", "final chunk without CRLF or bytes after it")
        return bytes(out), trailer
    lines = raw[pos:].split(b"\r\n")
    if lines[-2:] != [b"", b""]:
        raise Rejected(400, "IncompleteBody", "trailer does not end with an empty line")
    given_signature = None
    for line in lines[:-2]:
        name, _, value = line.decode().partition(":")
        if name == "x-amz-trailer-signature":
            given_signature = value
        else:
            trailer[name] = value
    if signed:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailer.items())
        string_to_sign = (
            f"AWS4-HMAC-SHA256-TRAILER\n{date_scope}{previous}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        if given_signature != _hmac_hex(key, string_to_sign):
            raise Rejected(403, "SignatureDoesNotMatch", "trailer signature does not match")
    elif given_signature is not None:
        raise Rejected(400, "InvalidRequest", "unsigned trailer with a signature")
    return bytes(out), trailer


def _check_checksum(
    request: web.Request, trailer: dict[str, str], data: bytes
) -> tuple[str, str] | None:
    # Every copy counts (the same header twice, or a header and a trailer): S3 takes one.
    found = [
        (name.lower(), value)
        for name, value in request.headers.items()
        if name.lower().startswith(_CHECKSUM_HEADER) and name.lower() != "x-amz-checksum-type"
    ]
    found.extend(trailer.items())
    if len(found) > 1:
        raise Rejected(400, "InvalidRequest", f"more than one checksum: {sorted(found)}")
    if not found:
        return None
    name, value = found[0]
    algorithm = name.removeprefix(_CHECKSUM_HEADER)
    if checksum(algorithm, data) != value:
        raise Rejected(400, "BadDigest", f"{name} does not match the object")
    return algorithm, value
