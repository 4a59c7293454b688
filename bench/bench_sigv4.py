"""Signatures per second for typical requests, with and without the signing-key cache.

Run: .venv/bin/python bench/bench_sigv4.py [seconds-per-scenario]   (default 1.0; total < 10 s)
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    from proxy.credentials.base import Credentials
    from proxy.signing.sigv4 import SigningInput, SigningKeyCache, sign
except ModuleNotFoundError:  # a checkout without `pip install -e .`: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from proxy.credentials.base import Credentials
    from proxy.signing.sigv4 import SigningInput, SigningKeyCache, sign

CREDS = Credentials(
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", session_token="FwoGZXIvYXdzEXAMPLE"
)
NOW = 1_440_938_160.0
MAX_ITERATIONS = 2_000_000  # a hard stop, whatever the clock says

EC2_GET = SigningInput(
    method="GET",
    host="ec2.us-east-1.amazonaws.com",
    path="/",
    query="Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=instance-state-name"
    "&Filter.1.Value.1=running&MaxResults=100",
    headers=[("User-Agent", "app/1.0"), ("Accept", "*/*"), ("Accept-Encoding", "gzip")],
    payload_hash=hashlib.sha256(b"").hexdigest(),
    service="ec2",
    region="us-east-1",
)
S3_BODY = b"x" * 4096
S3_PUT = SigningInput(
    method="PUT",
    host="my-bucket.s3.us-west-2.amazonaws.com",
    path="/logs/2024/05/24/app%20server/part-0001.json",
    query="",
    headers=[
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(S3_BODY))),
        ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
        ("x-amz-meta-origin", "bench"),
        ("User-Agent", "app/1.0"),
    ],
    payload_hash=hashlib.sha256(S3_BODY).hexdigest(),
    service="s3",
    region="us-west-2",
)


def rate(step: Callable[[], object], seconds: float) -> float:
    """Calls per second of `step`, over about `seconds` of wall time."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while done < MAX_ITERATIONS:
        for _ in range(200):
            step()
        done += 200
        if time.perf_counter() >= deadline:
            break
    return done / (time.perf_counter() - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    seconds = min(max(seconds, 0.05), 2.0)  # four scenarios, bounded well under 10 s
    cached = SigningKeyCache()

    def with_cache(request: SigningInput) -> Callable[[], object]:
        return lambda: sign(request, CREDS, NOW, cached)

    def without_cache(request: SigningInput) -> Callable[[], object]:
        return lambda: sign(request, CREDS, NOW, SigningKeyCache())

    scenarios = [
        ("EC2 GET DescribeInstances, cached key", with_cache(EC2_GET)),
        ("EC2 GET DescribeInstances, uncached key", without_cache(EC2_GET)),
        ("S3 PUT object (hash given), cached key", with_cache(S3_PUT)),
        ("S3 PUT object (hash given), uncached key", without_cache(S3_PUT)),
    ]
    print(f"{'scenario':<44}{'signatures/s':>14}{'µs/signature':>14}")
    for name, step in scenarios:
        per_second = rate(step, seconds)
        print(f"{name:<44}{per_second:>14,.0f}{1e6 / per_second:>14.1f}")


if __name__ == "__main__":
    main()
