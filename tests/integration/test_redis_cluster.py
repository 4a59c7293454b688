"""The shared limiter on a real three-master Redis Cluster through the cluster client: budgets
of different accounts and regions land on different nodes, each budget is enforced there, and
a request whose rules have different scopes (two slots) is decided all or nothing."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.aws.operations import Operation
from proxy.clock import SystemClock
from proxy.config.model import LimitPolicy, LimitRule, RedisConfig
from proxy.errors import RateLimited
from proxy.observability.metrics import Metrics
from proxy.ratelimit.redis_limiter import RedisRateLimiter
from tests.servers import RedisProcess, free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli")

NO_WAIT = LimitPolicy(max_wait=0.0, max_queue=100)
DESCRIBE = Operation("ec2", "DescribeInstances", protocol="ec2")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisProcess]]:
    nodes = []
    try:
        for index in range(3):
            folder = tmp_path / f"node{index}"
            folder.mkdir()
            node = RedisProcess(
                free_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-config-file",
                    str(folder / "nodes.conf"),
                    "--dir",
                    str(folder),
                ),
            )
            node.start()
            nodes.append(node)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def _wait_ok(port: int) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(100):  # bounded: the nodes agree within a few ticks
            info = await client.cluster("INFO")
            if info.get("cluster_state") == "ok":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("cluster never reached state ok")
    finally:
        await client.aclose()


async def _cluster_client_works(port: int) -> None:
    """Until the cluster client can write a key in every node's slots (bounded)."""
    client = aioredis.RedisCluster(host="127.0.0.1", port=port)
    try:
        for _ in range(100):
            try:
                for n in range(12):
                    await client.set(f"{{probe-{n}}}", "1", px=1000)
                return
            except RedisError:
                await asyncio.sleep(0.05)
        raise AssertionError("the cluster client never worked")
    finally:
        await client.aclose()


async def _admitted(limiter: RedisRateLimiter, op: Operation, tries: int) -> int:
    admitted = 0
    for _ in range(tries):
        try:
            await limiter.acquire(op)
        except RateLimited:
            continue
        admitted += 1
    return admitted


async def test_budgets_spread_over_the_cluster_and_hold_on_each_node(
    cluster: list[RedisProcess],
) -> None:
    for node in cluster:  # every node must agree, or the first calls meet CLUSTERDOWN
        await _wait_ok(node.port)
    await _cluster_client_works(cluster[0].port)
    prefix = f"tp-{uuid.uuid4().hex[:6]}"
    rules = [
        LimitRule("describe", "ec2", 0.1, 3, ("DescribeInstances",)),
        LimitRule("regional", "ec2", 0.1, 5, scope="region"),
    ]
    config = RedisConfig(
        url=f"redis://127.0.0.1:{cluster[0].port}", key_prefix=prefix, cluster=True, timeout=1.0
    )
    metrics = Metrics()
    limiter = RedisRateLimiter(rules, NO_WAIT, config, metrics, SystemClock())
    budgets = [(f"{100000000000 + n}", "us-east-1") for n in range(6)]
    try:
        # The account-region rule (burst 3) decides for each account; the region rule (burst
        # 5, one slot for us-east-1) counts every account's calls: two slots per request.
        counts = []
        for account, region in budgets[:3]:
            counts.append(await _admitted(limiter, DESCRIBE.for_budget(account, region), 5))
            # A refused request gives back, in the background, what the other slot granted.
            await asyncio.gather(*limiter._background)
        first, second, third = counts
        assert (first, second, third) == (3, 2, 0)  # 5 in the region in all, never more
        assert not metrics.registry.get_sample_value(
            "throttle_proxy_ratelimit_backend_errors_total", {"backend": "redis"}
        )
        # Budgets of many accounts: each budget's keys in its own slot, spread over nodes.
        spread = RedisRateLimiter(rules[:1], NO_WAIT, config, Metrics(), SystemClock())
        try:
            many = [f"{200000000000 + n}" for n in range(12)]
            for account in many:
                assert await _admitted(spread, DESCRIBE.for_budget(account, "eu-west-1"), 4) == 3
        finally:
            await spread.close()
        client = aioredis.RedisCluster(host="127.0.0.1", port=cluster[0].port)
        try:
            owners = set()
            for account in many:
                key = f"{{{prefix}:{account}/eu-west-1}}:describe:"
                assert await client.get(key) is not None
                owner = client.get_node_from_key(key)
                assert owner is not None
                owners.add(owner.port)
        finally:
            await client.aclose()
        assert len(owners) >= 2, owners  # budgets live on more than one node
    finally:
        await limiter.close()
