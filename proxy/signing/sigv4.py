"""AWS Signature Version 4 for header-signed requests (shared/REFERENCE.md §3).

Pure: the request, a frozen credentials snapshot and the time go in, the headers to send come
out. The only state is `SigningKeyCache`, which holds derived keys (never secrets) and never
awaits, so one cache can serve every request of an event loop.

botocore's SigV4Auth/S3SigV4Auth define the semantics we match (tests/unit/test_sigv4_botocore.py
checks it); where the proxy needs more than an SDK does (a raw client query, client-sent auth
headers), the choice is explained where it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import field
from functools import lru_cache
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from proxy.aws.s3family import S3_SIGNING_NAMES
from proxy.credentials.base import Credentials
from proxy.requestvalue import request_value
from proxy.signing.querymemo import memoised_when_short

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# Hops may add or rewrite these, so a signature over them would break in transit.
UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

# Whatever the client sent for these is dropped: we set them ourselves, and forwarding a
# client's own Authorization or token would sign with, or leak, someone else's credentials.
REPLACED_HEADERS = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "host"}
)

_UNRESERVED = "-_.~"
_PLAIN_COMPONENT = re.compile(r"[A-Za-z0-9\-_.~]*")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-_.~/]*")


@request_value
class SigningInput:
    """One request as the proxy will send it, before signing."""

    method: str
    host: str  # the Host header to send, with :port when not the default
    path: str  # raw, percent-encoded path as received ('' means '/')
    query: str  # raw query string without '?', '' when none
    headers: Sequence[tuple[str, str]]  # client headers to forward, original case, repeats kept
    payload_hash: str  # hex sha256 of the body, UNSIGNED_PAYLOAD or STREAMING_PAYLOAD
    service: str  # signing name: 's3', 'ec2', 'dynamodb', ...
    region: str
    # Only the published test suite turns this off: its vectors predate x-amz-content-sha256.
    send_content_sha256: bool = True


@request_value
class SignedRequest:
    """What to put on the wire: send `path`, `query` and `headers` exactly as given."""

    path: str
    query: str
    headers: list[tuple[str, str]]
    signature: str  # hex; the seed signature of a chunked upload
    amz_date: str  # YYYYMMDDTHHMMSSZ
    scope: str  # yyyymmdd/region/service/aws4_request
    # Key-equivalent material and, in the canonical request, the session token: kept out of
    # repr so a logged SignedRequest leaks neither. Needed by ChunkSigner and for debugging
    # SignatureDoesNotMatch (AWS answers with its own canonical request).
    signing_key: bytes = field(repr=False)
    canonical_request: str = field(repr=False)
    string_to_sign: str = field(repr=False)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 key for one day/region/service: HMAC chain from "AWS4" + secret."""
    k_date = _hmac(("AWS4" + secret).encode("utf-8"), date)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


# HMAC's key pads (RFC 2104), as Python's hmac module builds them.
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_SHA256_BLOCK = 64


class ScopeKey:
    """The signing key of one (secret, day, region, service), with what every signature under
    it shares worked out once: the scope text and the HMAC's two padded-key hash states.

    HMAC-SHA256(K, m) = H((K ^ opad) || H((K ^ ipad) || m)); the padded keys fill one block
    each, so their hash states are the same for every message and each signature copies them
    instead of hashing them again. hmac.digest() redoes both, and OpenSSL 3 fetches its MAC
    implementation on every call: that was a third of the signer's cost per request.
    """

    __slots__ = ("_inner", "_outer", "key", "scope")

    def __init__(self, key: bytes, scope: str) -> None:
        if len(key) > _SHA256_BLOCK:
            raise ValueError("a SigV4 signing key is one SHA-256 digest (32 bytes)")
        padded = key.ljust(_SHA256_BLOCK, b"\0")
        self.key = key
        self.scope = scope  # yyyymmdd/region/service/aws4_request
        self._inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))

    def signature(self, message: bytes) -> str:
        """Hex HMAC-SHA256 of `message` under this key (the same as hmac.digest's)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class SigningKeyCache:
    """Bounded LRU of derived signing keys, keyed on a hash of the secret, never the secret.

    A derived key is valid for one day, region and service, so a handful of entries serve a
    whole fleet of requests. No awaits inside: safe to share across one event loop's tasks.
    """

    def __init__(self, max_entries: int = 64) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._keys: OrderedDict[tuple[bytes, str, str, str], ScopeKey] = OrderedDict()
        # The last secret object seen (the frozen credentials snapshot already holds it), so
        # the common case skips hashing it again: an identity check, not a comparison.
        self._last_secret: str | None = None
        self._last_digest = b""
        # The entry the last lookup returned (the most recent in _keys): requests come in runs
        # of one secret, day and scope, and comparing four strings is cheaper than an LRU hit.
        self._last: tuple[str, str, str, str, ScopeKey] | None = None

    def scoped(self, secret: str, date: str, region: str, service: str) -> ScopeKey:
        """The key for (secret, yyyymmdd, region, service) and its scope, derived at most once."""
        last = self._last
        if (
            last is not None
            and last[0] is secret
            and last[1] == date
            and last[2] == region
            and last[3] == service
        ):
            return last[4]
        if secret is not self._last_secret:
            self._last_digest = hashlib.sha256(secret.encode("utf-8")).digest()
            self._last_secret = secret
        cache_key = (self._last_digest, date, region, service)
        found = self._keys.get(cache_key)
        if found is not None:
            self._keys.move_to_end(cache_key)
        else:
            found = ScopeKey(
                derive_signing_key(secret, date, region, service),
                f"{date}/{region}/{service}/aws4_request",
            )
            self._keys[cache_key] = found
            if len(self._keys) > self._max_entries:
                self._keys.popitem(last=False)
        self._last = (secret, date, region, service, found)
        return found

    def key(self, secret: str, date: str, region: str, service: str) -> bytes:
        """The signing key for (secret, yyyymmdd, region, service), derived at most once."""
        return self.scoped(secret, date, region, service).key

    def clear(self) -> None:
        """Forget every key (e.g. after credentials were revoked)."""
        self._keys.clear()
        self._last = None

    def __len__(self) -> int:
        return len(self._keys)


def amz_date(now: float) -> str:
    """Epoch seconds as the X-Amz-Date format, UTC, whole seconds."""
    return _amz_date_of_second(int(now))


@lru_cache(maxsize=4)
def _amz_date_of_second(second: int) -> str:
    # Every request within one second shares the text: strftime once per second.
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))


def remove_dot_segments(path: str) -> str:
    """Resolve '.' and '..' and collapse repeated '/', as AWS (and botocore) normalise paths."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
        else:
            kept.append(segment)
    trailing = "/" if path.endswith("/") and kept else ""
    return "/" + "/".join(kept) + trailing


def _encode_once(component: str) -> str:
    """Decode %XX escapes and re-encode with the RFC 3986 unreserved set (bytes-exact)."""
    if _PLAIN_COMPONENT.fullmatch(component):
        return component
    return quote_from_bytes(unquote_to_bytes(component), safe=_UNRESERVED)


def canonical_uri(path: str, service: str) -> str:
    """The path as it appears in the canonical request.

    S3: the once-encoded path, no normalisation (keys may contain '//' or '..').
    Everyone else: dot segments removed, then encoded a second time ('%2F' -> '%252F').
    """
    if not path.startswith("/"):
        path = "/" + path
    if service in S3_SIGNING_NAMES:
        return s3_path_to_send(path)
    return _normalised_uri(path)


def _normalised_uri(path: str) -> str:
    # Everyone but S3: `path` starts with '/'. Most are plain ('/' for every query API).
    if _PLAIN_PATH.fullmatch(path) and "//" not in path and "/." not in path:
        return path
    return quote(remove_dot_segments(path), safe="/~")


def s3_path_to_send(path: str) -> str:
    """Canonical single encoding of an S3 path, segment by segment.

    Idempotent on what SDKs send (botocore encodes keys with safe='/~'); it only rewrites
    characters a client left raw (e.g. '!', '+', non-ASCII) or lowercase escapes, so the path
    we sign and send has one spelling whatever S3 does to rebuild it. An encoded '/' (%2F)
    stays encoded: splitting first keeps it inside its segment.
    """
    if not path.startswith("/"):
        path = "/" + path
    if _PLAIN_PATH.fullmatch(path):
        return path
    return "/".join(_encode_once(segment) for segment in path.split("/"))


@memoised_when_short
def canonical_query(query: str) -> str:
    """The canonical query string, which is also the query string to send (short ones, which
    apps repeat call after call, are memoised).

    Pairs split on '&' and on the first '='; a key without '=' gets an empty value; empty
    pairs are dropped. Each key and value is percent-decoded and re-encoded with the RFC 3986
    unreserved set. '+' is a literal plus (sent as %2B), never a space: AWS treats it so
    (curl/curl#20543, smithy-lang/smithy-rs#4227). Sorted by encoded key, then value.
    """
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((_encode_once(key), _encode_once(value)))
    pairs.sort()
    return "&".join([f"{key}={value}" for key, value in pairs])


def sign(req: SigningInput, creds: Credentials, now: float, keys: SigningKeyCache) -> SignedRequest:
    """Sign `req` with one credentials snapshot at time `now` (epoch seconds).

    Client-sent Authorization, X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-SHA256 and Host
    are replaced; every other client header is forwarded, and signed unless hops may change it
    (UNSIGNED_HEADERS). Header values must be final: a header changed after signing breaks it.
    """
    date_time = _amz_date_of_second(int(now))  # amz_date(now), without its call
    scoped = keys.scoped(creds.secret_access_key, date_time[:8], req.region, req.service)

    forwarded: list[tuple[str, str]] = []
    # Lower-case name -> its canonical line: the value trimmed, inner whitespace runs collapsed
    # to one space (the spec's Trimall, as botocore), repeats joined with ',' in order received.
    lines: dict[str, str] = {}
    for header in req.headers:
        name, value = header
        lower = name.lower()
        if lower in REPLACED_HEADERS:
            continue
        forwarded.append(header)
        if lower not in UNSIGNED_HEADERS:
            trimmed = " ".join(value.split())
            earlier = lines.get(lower)
            lines[lower] = f"{lower}:{trimmed}" if earlier is None else f"{earlier},{trimmed}"

    # None of these names can be in `lines` yet: the client's own are REPLACED_HEADERS.
    host, payload_hash, token = req.host, req.payload_hash, creds.session_token
    forwarded += (("Host", host), ("X-Amz-Date", date_time))
    lines["host"] = "host:" + " ".join(host.split())
    lines["x-amz-date"] = "x-amz-date:" + date_time
    if req.send_content_sha256:
        forwarded.append(("X-Amz-Content-SHA256", payload_hash))
        # Ours (hex, or one of the constants above): nothing to trim.
        lines["x-amz-content-sha256"] = "x-amz-content-sha256:" + payload_hash
    if token:
        forwarded.append(("X-Amz-Security-Token", token))
        lines["x-amz-security-token"] = "x-amz-security-token:" + " ".join(token.split())

    signed_names = sorted(lines)
    signed_headers = ";".join(signed_names)
    # map() over the bound lookup iterates in C: a comprehension is a Python frame per request.
    canonical_headers = "\n".join(map(lines.__getitem__, signed_names))

    path = req.path
    if req.service in S3_SIGNING_NAMES:
        path = uri = s3_path_to_send(path)
    elif path == "/":
        uri = path  # every query and JSON API: nothing to normalise or encode
    else:
        if not path.startswith("/"):
            path = "/" + path
        uri = _normalised_uri(path)
    query = canonical_query(req.query)

    canonical_request = (
        f"{req.method.upper()}\n{uri}\n{query}\n{canonical_headers}\n\n"
        f"{signed_headers}\n{payload_hash}"
    )
    request_hash = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    scope = scoped.scope
    string_to_sign = f"{ALGORITHM}\n{date_time}\n{scope}\n{request_hash}"
    signature = scoped.signature(string_to_sign.encode("utf-8"))

    forwarded.append(
        (
            "Authorization",
            f"{ALGORITHM} Credential={creds.access_key_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}",
        )
    )
    # Positional: keyword arguments to a dataclass cost a dict per call.
    return SignedRequest(
        path,
        query,
        forwarded,
        signature,
        date_time,
        scope,
        scoped.key,
        canonical_request,
        string_to_sign,
    )
