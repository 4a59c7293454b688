"""The AWS stand-in of deploy/loadtest/ end to end: boto3 → (the app's sidecar proxy) →
the stand-in proxy (the documented config, only addresses and the token path swapped) → moto
with signature checking on.

The app meets realistic throttling without an AWS account: over the table's write limit the
stand-in refuses at once with DynamoDB's own ThrottlingException (no queueing), a sidecar's
retries absorb most of it, what was written reads back from moto unchanged, and faults PUT on
the stand-in's admin listener (with its bearer token) act on the next calls.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore import UNSIGNED
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.servers import REPO, ProxyProcess, credential_env, moto_server, proxy_process

STANDIN = REPO / "deploy" / "loadtest" / "standin.yaml"
TOKEN = "load-test-token-0123456789"
WRITES = 90


def unsigned_client(service: str, proxy_url: str) -> Any:
    """An app's unsigned boto3 client sending through `proxy_url` as its HTTP proxy, one
    attempt per call (botocore's own `max_attempts` counts retries in legacy mode)."""
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=f"http://{service}.us-east-1.amazonaws.com",
        config=BotoConfig(
            signature_version=UNSIGNED,
            retries={"mode": "standard", "total_max_attempts": 1},
            proxies={"http": proxy_url},
            max_pool_connections=WRITES,
        ),
    )


@dataclass
class Chain:
    standin: ProxyProcess
    sidecar: ProxyProcess


def standin_config(moto_url: str, token_file: Path) -> dict[str, Any]:
    """The documented stand-in config, pointed at this moto and listening on free ports."""
    raw: dict[str, Any] = yaml.safe_load(STANDIN.read_text(encoding="utf-8"))
    del raw["listen"], raw["admin_listen"]  # proxy_process picks free loopback ports
    assert raw["routes"] == [{"host": "*.amazonaws.com", "upstream": "http://moto:5000"}]
    raw["routes"] = [{"host": "*.amazonaws.com", "upstream": moto_url}]
    raw["admin_token_file"] = str(token_file)
    return raw


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    tmp = tmp_path_factory.mktemp("loadtest")
    token_file = tmp / "admin-token"
    token_file.write_text(TOKEN)
    with moto_server() as moto:
        key_id, secret = moto.create_admin_user()
        moto.enable_auth()
        # The stand-in signs for moto with moto's own user; the sidecar with the example keys
        # (the stand-in strips them and signs afresh, as AWS would check the app's own).
        standin_env = credential_env(
            tmp, {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
        )
        with proxy_process(tmp, standin_config(moto.url, token_file), env=standin_env) as standin:
            sidecar_config = {
                "region": "us-east-1",
                "log_level": "warning",
                "routes": [{"host": "*.amazonaws.com", "upstream": standin.url}],
                "retry": {
                    "max_attempts": 6,
                    "base_delay": "10ms",
                    "throttle_base_delay": "80ms",
                    "max_backoff": "400ms",
                    # The bursts would spend the default quota (500: 100 throttle retries),
                    # and the later tests want retries left.
                    "quota": 100_000,
                },
            }
            with proxy_process(tmp, sidecar_config, env=credential_env(tmp)) as sidecar:
                table = unsigned_client("dynamodb", standin.url)
                table.create_table(
                    TableName="load",
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                )
                yield Chain(standin, sidecar)


def admin(proxy: ProxyProcess, method: str, path: str, body: object = None) -> Any:
    request = urllib.request.Request(
        proxy.admin_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def write_burst(client: Any, prefix: str) -> tuple[list[str], list[ClientError]]:
    """WRITES PutItems, each from its own thread, all at once: (keys written, errors).

    All of them are out together, so they reach the stand-in as fast as the app can send
    them, whatever moto's pace: from a dozen threads, each waiting for moto's answer before
    its next write, they came only as fast as moto answered, and a loaded machine's moto
    answering fewer than 25 a second would never meet the limit."""

    def put(i: int) -> tuple[str, ClientError | None]:
        key = f"{prefix}-{i}"
        try:
            client.put_item(TableName="load", Item={"k": {"S": key}, "v": {"S": f"value {i} ü"}})
        except ClientError as error:
            return key, error
        return key, None

    with ThreadPoolExecutor(max_workers=WRITES) as pool:
        outcomes = list(pool.map(put, range(WRITES)))
    written = [key for key, error in outcomes if error is None]
    return written, [error for _, error in outcomes if error is not None]


def read_back(client: Any, keys: list[str]) -> None:
    for key in keys:
        item = get_past_injected_faults(client, key)
        index = key.rsplit("-", 1)[1]
        assert item["Item"] == {"k": {"S": key}, "v": {"S": f"value {index} ü"}}


def get_past_injected_faults(client: Any, key: str) -> Any:
    """GetItem through the stand-in, asked again (boundedly) when it answered the documented
    1% injected internal failure: which reads draw it depends on how many draws the burst
    before took, which depends on how fast the machine ran. Any other error is raised."""
    for _ in range(5):
        try:
            return client.get_item(TableName="load", Key={"k": {"S": key}}, ConsistentRead=True)
        except ClientError as error:
            headers = error.response["ResponseMetadata"]["HTTPHeaders"]
            if headers.get("x-throttle-proxy-fault") != "dynamodb-internal":
                raise
    raise AssertionError(f"five injected faults in a row reading {key}")


def test_app_straight_at_the_standin_is_refused_at_once_over_the_limit(chain: Chain) -> None:
    admin(chain.standin, "POST", "/report/reset")
    client = unsigned_client("dynamodb", chain.standin.url)
    written, errors = write_burst(client, "direct")
    refused = [e for e in errors if e.response["Error"]["Code"] == "ThrottlingException"]
    assert refused, "a burst past 25 writes/s must meet DynamoDB's throttling error"
    for error in refused:
        meta = error.response["ResponseMetadata"]
        assert meta["HTTPStatusCode"] == 400
        assert meta["HTTPHeaders"]["x-throttle-proxy-error"] == "rate-limited"
    report = admin(chain.standin, "GET", "/report")
    puts = next(op for op in report["operations"] if op["operation"] == "PutItem")
    assert puts["requests"] == WRITES
    assert puts["refused_locally"] == len(refused)
    # Enforcing, the stand-in never queues: nothing waited, nothing was delayed.
    assert (puts["delayed"], puts["wait_p99"]) == (0, 0.0)
    # The rest of the errors are the documented 1% internal fault, in DynamoDB's format.
    internal = [e for e in errors if e not in refused]
    assert all(e.response["Error"]["Code"] == "InternalFailure" for e in internal)
    assert len(internal) == puts["faults_injected"]
    assert len(written) == WRITES - len(errors)
    read_back(client, written)


def test_a_sidecars_retries_absorb_the_standins_throttling(chain: Chain) -> None:
    admin(chain.standin, "POST", "/report/reset")
    client = unsigned_client("dynamodb", chain.sidecar.url)
    written, errors = write_burst(client, "sidecar")
    refused = admin(chain.standin, "GET", "/report")["totals"]["refused_locally"]
    assert refused > 0
    assert len(errors) < refused  # the app saw fewer errors than the stand-in answered
    with urllib.request.urlopen(chain.sidecar.admin_url + "/report", timeout=10) as answer:
        sidecar_report = json.loads(answer.read())
    puts = next(op for op in sidecar_report["operations"] if op["operation"] == "PutItem")
    assert puts["throttled_by_aws"] > 0  # the stand-in's refusals look like AWS's throttles
    assert puts["retries"] >= puts["throttled_by_aws"] - len(errors)
    read_back(unsigned_client("dynamodb", chain.standin.url), written)


def test_faults_put_on_the_standin_reach_the_app_through_the_chain(chain: Chain) -> None:
    rule = {
        "name": "get-unavailable",
        "service": "dynamodb",
        "operations": ["GetItem"],
        "every": 2,
        "kind": "unavailable",
    }
    try:
        assert [r["name"] for r in admin(chain.standin, "PUT", "/faults", [rule])["faults"]] == [
            "get-unavailable"
        ]
        via_sidecar = unsigned_client("dynamodb", chain.sidecar.url)
        # Through the sidecar: the table's write bucket may still be empty from the bursts.
        via_sidecar.put_item(TableName="load", Item={"k": {"S": "faulted"}})
        direct = unsigned_client("dynamodb", chain.standin.url)
        answers = []
        for _ in range(2):
            try:
                direct.get_item(TableName="load", Key={"k": {"S": "faulted"}})
                answers.append("ok")
            except ClientError as error:
                answers.append(error.response["Error"]["Code"])
        assert answers == ["ok", "ServiceUnavailable"]
        for _ in range(4):  # every other attempt fails at the stand-in; the sidecar retries
            item = via_sidecar.get_item(TableName="load", Key={"k": {"S": "faulted"}})
            assert item["Item"] == {"k": {"S": "faulted"}}
        described = admin(chain.standin, "GET", "/faults")["faults"][0]
        assert described["injected"] >= 3
    finally:
        admin(chain.standin, "DELETE", "/faults")
