"""boto3 (default checksums and `when_required`) and the AWS CLI (`s3 cp` 50 MB both ways,
`s3 sync`) through the proxy to moto with signature checking on; every object read back and
compared byte for byte. The checksum boto3 computes must reach S3 as S3 verifies it: checked on
the fake S3 that verifies payload hashes and checksums (moto checks neither)."""

from __future__ import annotations

import filecmp
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MotoStack, unsigned_client
from tests.fakes.checksums import checksum
from tests.fakes.threaded import serve_in_thread
from tests.fakes.verifying_s3 import VerifyingS3
from tests.servers import EXAMPLE_SECRET, credential_env, proxy_process

AWS_CLI = str(Path(sys.executable).parent / "aws")
MB = 1000 * 1000


def s3_client(proxy_url: str, **config: Any) -> Any:
    return unsigned_client("s3", proxy_url, s3={"addressing_style": "path"}, **config)


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
@pytest.mark.parametrize("size", [1000, 10 * MB], ids=["1KB", "10MB"])
def test_boto3_put_and_get_round_trip(moto_stack: MotoStack, checksums: str, size: int) -> None:
    s3 = s3_client(
        moto_stack.proxy.url,
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    bucket = f"boto3-{checksums.replace('_', '-')}-{size}"
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(size)
    key = "k/é +%.bin"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


@pytest.fixture(scope="module")
def verifying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VerifyingS3, str]]:
    tmp = tmp_path_factory.mktemp("boto3-verifying")
    s3 = VerifyingS3(EXAMPLE_SECRET)
    with serve_in_thread(s3.app()) as url:
        config = {
            "routes": [{"host": "*.amazonaws.com", "upstream": url}],
            "retry": {"max_attempts": 1},
        }
        with proxy_process(tmp, config, env=credential_env(tmp)) as proxy:
            yield s3, proxy.url


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256", "SHA1"])
@pytest.mark.parametrize("size", [1000, 9 * MB], ids=["1KB", "9MB"])
def test_boto3_checksum_reaches_s3_verified(
    verifying: tuple[VerifyingS3, str], algorithm: str, size: int
) -> None:
    fake, proxy_url = verifying
    s3 = s3_client(proxy_url)
    data = os.urandom(size)
    key = f"sum-{algorithm}-{size}"
    s3.put_object(Bucket="b", Key=key, Body=data, ChecksumAlgorithm=algorithm)
    stored = fake.objects[f"/b/{key}"]
    assert stored.data == data
    assert stored.checksum == (algorithm.lower(), checksum(algorithm.lower(), data))
    if size > 8 * 1024 * 1024:
        # Over max_buffered_body: streamed with the proxy's own chunk signatures.
        assert stored.payload_mode == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    else:
        assert stored.payload_mode == hashlib.sha256(data).hexdigest()


def _cli(stack: MotoStack, tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "HTTP_PROXY": stack.proxy.url,
            "NO_PROXY": "",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    endpoint = ["--endpoint-url", "http://s3.us-east-1.amazonaws.com"]
    done = subprocess.run(
        [AWS_CLI, "--no-sign-request", *endpoint, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_aws_cli_cp_50_mb_up_and_down(moto_stack: MotoStack, tmp_path: Path) -> None:
    up = tmp_path / "up.bin"
    up.write_bytes(os.urandom(50 * MB))
    _cli(moto_stack, tmp_path, "s3", "mb", "s3://cli-cp")
    _cli(moto_stack, tmp_path, "s3", "cp", str(up), "s3://cli-cp/big/fifty mb.bin")
    down = tmp_path / "down.bin"
    _cli(moto_stack, tmp_path, "s3", "cp", "s3://cli-cp/big/fifty mb.bin", str(down))
    assert filecmp.cmp(up, down, shallow=False)


def test_aws_cli_sync_both_ways(moto_stack: MotoStack, tmp_path: Path) -> None:
    source = tmp_path / "source"
    files = {"a.txt": b"alpha\n", "dir/b c.bin": os.urandom(300_000), "dir/ü+%.bin": b"x" * 77}
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    _cli(moto_stack, tmp_path, "s3", "mb", "s3://cli-sync")
    _cli(moto_stack, tmp_path, "s3", "sync", str(source), "s3://cli-sync/tree")
    target = tmp_path / "target"
    _cli(moto_stack, tmp_path, "s3", "sync", "s3://cli-sync/tree", str(target))
    got = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert got == files
