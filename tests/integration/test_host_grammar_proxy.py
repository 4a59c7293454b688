"""The host grammar through a real proxy process with no route and the default allow-list.

The proxy runs with a test-only connection opener (tests/fakes/loopback_proxy.py) that
records each origin it is asked to reach and connects to a loopback fake instead: admitted
AWS names get an answer without any traffic leaving loopback, and a refused name must leave
no record at all, i.e. no DNS lookup and no connection.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.aws_upstream import FakeAws
from tests.servers import REPO, ProxyProcess, credential_env, proxy_process

SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN" + "Z" * 40

# (host sent, origin host the proxy must connect to on 443, path prefix added for path style)
ADMITTED: list[tuple[str, str, str]] = [
    (h, h, "")
    for h in (
        "ec2.us-east-1.amazonaws.com",
        "sts.amazonaws.com",
        "iam.amazonaws.com",
        "s3.amazonaws.com",
        "route53.amazonaws.com",
        "cloudfront.amazonaws.com",
        "sts.us-gov-west-1.amazonaws.com",
        "ec2.cn-north-1.amazonaws.com.cn",
        "ec2.us-east-1.api.aws",
        "ec2-fips.us-east-1.amazonaws.com",
        "dynamodb-fips.us-gov-west-1.amazonaws.com",
        "fips.batch.us-east-1.amazonaws.com",
        "runtime.sagemaker.eu-west-1.amazonaws.com",
        "streams.dynamodb.us-east-1.amazonaws.com",
        "email.us-east-1.amazonaws.com",
        "s3.dualstack.us-west-2.amazonaws.com",
        "s3-fips.dualstack.us-east-1.amazonaws.com",
        "s3-us-west-2.amazonaws.com",
        "us-west-2.queue.amazonaws.com",
        "my-bucket.s3.amazonaws.com",
        "my-bucket.s3.eu-west-1.amazonaws.com",
        "my-bucket.s3-eu-west-1.amazonaws.com",
        "my-bucket.s3-external-1.amazonaws.com",
        "my-bucket.s3.dualstack.ap-south-1.amazonaws.com",
        "my-bucket.s3-fips.us-gov-west-1.amazonaws.com",
        "logs-2024-q1.s3.cn-north-1.amazonaws.com.cn",
        "reports-123456789012.s3-accesspoint.us-west-2.amazonaws.com",
        "reports-123456789012.s3-accesspoint.dualstack.us-west-2.amazonaws.com",
        "bkt--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com",
        "s3express-control.us-west-2.amazonaws.com",
        "123456789012.ddb.us-east-1.amazonaws.com",
        "123456789012.s3-control.us-east-1.amazonaws.com",
        "123456789012.s3-control.dualstack.eu-west-1.amazonaws.com",
    )
] + [
    # Dotted buckets go path style to their S3 endpoint (S3's certificate covers one label).
    ("my.dotted-bucket.s3.amazonaws.com", "s3.amazonaws.com", "/my.dotted-bucket"),
    (
        "my.dotted-bucket.s3.eu-west-1.amazonaws.com",
        "s3.eu-west-1.amazonaws.com",
        "/my.dotted-bucket",
    ),
    ("a.b-c.s3-us-west-2.amazonaws.com", "s3-us-west-2.amazonaws.com", "/a.b-c"),
    (
        "my.dotted-bucket.s3.dualstack.us-east-2.amazonaws.com",
        "s3.dualstack.us-east-2.amazonaws.com",
        "/my.dotted-bucket",
    ),
    (
        "my.dotted-bucket.s3-fips.dualstack.us-east-1.amazonaws.com",
        "s3-fips.dualstack.us-east-1.amazonaws.com",
        "/my.dotted-bucket",
    ),
]

REFUSED = [
    "attacker-api.execute-api.us-east-1.amazonaws.com",  # API Gateway invoke URL
    "attacker.execute-api.eu-west-1.api.aws",
    "whatever.ec2.us-east-1.amazonaws.com",  # labels in front of a regional endpoint
    "x.sts.us-east-1.amazonaws.com",
    "ap-111122223333.s3-object-lambda.us-east-1.amazonaws.com",  # runs the owner's Lambda
    "olap-alias--ol-s3.s3.us-east-1.amazonaws.com",  # Object Lambda alias as a bucket
    "my-lb-1234567890.us-east-1.elb.amazonaws.com",  # load balancer
    "ec2-203-0-113-25.compute-1.amazonaws.com",  # EC2 public names
    "ec2-203-0-113-25.us-west-2.compute.amazonaws.com",
    "my-bucket.s3-website-us-east-1.amazonaws.com",  # S3 website endpoints
    "my-bucket.s3-website.eu-west-1.amazonaws.com",
    "d111111abcdef8.cloudfront.net",  # CloudFront distribution
    "abcdefghij.lambda-url.us-east-1.on.aws",  # Lambda function URL
    "abc123.us-east-1.awsapprunner.com",  # App Runner
    "search-domain-abc.us-east-1.es.amazonaws.com",  # OpenSearch domain
    "mydb.abc123.us-east-1.rds.amazonaws.com",  # RDS instance
    "abc.appsync-api.us-east-1.amazonaws.com",  # AppSync API
    "vpce-0abc-123.ec2.us-east-1.vpce.amazonaws.com",  # PrivateLink endpoint
    "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",  # account-specific IoT data endpoint
    "reports-12345.s3-accesspoint.us-west-2.amazonaws.com",  # no 12-digit account
    "12345.ddb.us-east-1.amazonaws.com",
    "x.123456789012.ddb.us-east-1.amazonaws.com",
    "bkt--use1-az4--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com",  # zone mismatch
    "bad..bucket.s3.amazonaws.com",
    "192.168.1.1.s3.amazonaws.com",  # IP-shaped bucket name
    "my-bucket.s3.us-east-1.api.aws",
    "ec2.notaregion.amazonaws.com",
    "nosuchservice.us-east-1.amazonaws.com",
    "evilamazonaws.com",
    "elb.amazonaws.com",  # one unknown label before a suffix (was a 500 with a traceback)
    "nosuchservice.amazonaws.com",
    "nosuchservice.api.aws",
    "ec2.us-east-1.amazonaws.com.evil.example",
]


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "connections.txt"


@pytest.fixture
def proxy(tmp_path: Path, fake_aws: FakeAws, record: Path) -> Iterator[ProxyProcess]:
    env = credential_env(tmp_path, {"AWS_SESSION_TOKEN": SESSION_TOKEN})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = (
        "-m",
        "tests.fakes.loopback_proxy",
        "--connect-to",
        str(fake_aws.port),
        "--record",
        str(record),
    )
    config = {"log_level": "warning", "retry": {"max_attempts": 1}}
    with proxy_process(tmp_path, config, env=env, command=command) as handle:
        yield handle


def _connected(record: Path) -> set[str]:
    return {line for line in record.read_text().splitlines()} if record.exists() else set()


async def test_aws_operated_hosts_are_signed_and_sent_to_their_own_name(
    proxy: ProxyProcess, fake_aws: FakeAws, record: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        for host, origin, path_style in ADMITTED:
            before = len(fake_aws.seen)
            async with session.get(f"{proxy.url}/k", headers={"Host": host}) as answer:
                assert answer.status == 200, (host, await answer.text())
            seen = fake_aws.seen[before]
            assert seen.headers["host"] == origin
            assert seen.path == f"{path_style}/k"
            assert seen.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
            assert seen.headers["x-amz-security-token"] == SESSION_TOKEN
    assert _connected(record) == {f"https {origin} 443" for _, origin, _ in ADMITTED}


async def test_owned_and_malformed_hosts_are_refused_before_any_lookup(
    proxy: ProxyProcess, fake_aws: FakeAws, record: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        for host in REFUSED:
            async with session.get(f"{proxy.url}/k", headers={"Host": host}) as answer:
                assert answer.status == 403, host
                assert answer.headers["x-throttle-proxy-error"] == "host-not-allowed"
                assert "allow_hosts" in await answer.text()
        # Forward-proxy form: the same refusal for an absolute target.
        target = "http://attacker-api.execute-api.us-east-1.amazonaws.com/prod/x"
        async with session.get(target, proxy=proxy.url) as answer:
            assert answer.status == 403
    # The opener is where the proxy resolves and connects: it was never called.
    assert _connected(record) == set()
    assert fake_aws.seen == []


# Host forms a hostile client sends so that what the proxy checks and what it connects to (or a
# later hop obeys) differ: each is a 400 before any lookup or connection.
MALFORMED_HEADS = [
    b"Host: ec2.us-east-1.amazonaws.com\r\nHost: evil.example\r\n",  # two Host headers
    b"Host: evil.example\r\nHost: ec2.us-east-1.amazonaws.com\r\n",
    "Host: \u212ainesis.us-east-1.amazonaws.com\r\n".encode(),  # Kelvin sign lowercases to k
    "Host: ec2.us-east-1.amazonaws.com:\u0668\u0660\r\n".encode(),  # non-ASCII digits
    b"Host: ec2%2eus-east-1.amazonaws.com\r\n",
    b"Host: user@ec2.us-east-1.amazonaws.com\r\n",
    b"Host: [::1]x\r\n",
]


def _raw_status(proxy: ProxyProcess, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(b"GET /k HTTP/1.1\r\n" + head + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_hosts_that_could_mean_two_names_are_bad_requests_before_any_lookup(
    proxy: ProxyProcess, fake_aws: FakeAws, record: Path
) -> None:
    for head in MALFORMED_HEADS:
        assert _raw_status(proxy, head) == b"HTTP/1.1 400 Bad Request", head
    assert _connected(record) == set()
    assert fake_aws.seen == []
