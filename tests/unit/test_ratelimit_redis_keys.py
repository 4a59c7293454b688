"""Redis key names of the shared limiter: one Cluster hash slot per budget (account and
region), the same slot for all of one budget's keys."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from proxy.aws.operations import Operation
from proxy.config.model import LimitRule
from proxy.ratelimit.redis_scripts import FALLBACK_HASH_TAG, bucket_redis_key, hash_tag
from proxy.ratelimit.rules import compile_rule


def cluster_hash_part(key: str) -> str:
    """What Redis Cluster hashes (its documented rule): the text between the first `{` and the
    first `}` after it, when that is not empty; else the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [
        ("throttle-proxy", "{throttle-proxy}"),
        ("team:a", "{team:a}"),
        ("a}b", "{ab}"),
        ("{x}", "{x}"),
        ("", "{" + FALLBACK_HASH_TAG + "}"),
        ("{}", "{" + FALLBACK_HASH_TAG + "}"),
    ],
)
def test_hash_tag_is_never_empty_nor_cut_short(prefix: str, tag: str) -> None:
    assert hash_tag(prefix) == tag


@pytest.mark.parametrize("prefix", ["throttle-proxy", "", "}odd{", "a}b"])
def test_every_key_of_a_limiter_hashes_the_same(prefix: str) -> None:
    tag = hash_tag(prefix)
    # Client-controlled parts (S3 bucket and prefix) may hold braces of their own.
    buckets = ["", "photos/2024", "b/{evil}", "}{", "{", "DescribeInstances"]
    parts = {
        cluster_hash_part(bucket_redis_key(tag, rule, b))
        for rule in ("r1", "r{2}")
        for b in buckets
    }
    assert len(parts) == 1
    assert parts == {tag[1:-1]}


def redis_key(rule: LimitRule, op: Operation, prefix: str = "tp") -> str:
    compiled = compile_rule(rule)
    return bucket_redis_key(
        hash_tag(prefix, compiled.budget_key(op)), rule.name, compiled.per_key(op)
    )


def test_budgets_spread_over_slots_and_each_budget_stays_in_one() -> None:
    ec2 = LimitRule("ec2", "ec2", 20, 100)
    s3 = LimitRule("s3", "s3", 5500, 5500, per="prefix")
    budgets = [
        (f"{100000000000 + n}", region) for n in range(50) for region in ("us-east-1", "eu-west-1")
    ]
    slots = set()
    for account, region in budgets:
        describe = Operation("ec2", "DescribeInstances").for_budget(account, region)
        get = Operation("s3", "GetObject", bucket="b", key=f"{account}/x").for_budget(
            account, region
        )
        one_budget = {
            key_slot(redis_key(ec2, describe).encode()),
            key_slot(redis_key(s3, get).encode()),
        }
        assert len(one_budget) == 1  # a request's buckets of one budget: one script, one slot
        slots |= one_budget
    assert len(slots) > 80  # 100 budgets, 16384 slots: nearly all distinct, not one hot slot


def test_region_and_global_scopes_share_a_key_across_accounts() -> None:
    regional = LimitRule("r", "ec2", 1, 1, scope="region")
    everything = LimitRule("g", "ec2", 1, 1, scope="global")
    a = Operation("ec2", "DescribeInstances").for_budget("111122223333", "us-east-1")
    b = Operation("ec2", "DescribeInstances").for_budget("444455556666", "us-east-1")
    c = Operation("ec2", "DescribeInstances").for_budget("444455556666", "eu-west-1")
    assert redis_key(regional, a) == redis_key(regional, b) == "{tp:*/us-east-1}:r:"
    assert redis_key(regional, c) == "{tp:*/eu-west-1}:r:"
    assert redis_key(everything, a) == redis_key(everything, c) == "{tp:*/*}:g:"
    # Braces in a client-made region cannot move a key out of its budget's slot.
    odd = Operation("ec2", "DescribeInstances").for_budget("111122223333", "us-{x}")
    assert cluster_hash_part(redis_key(regional, odd)) == "tp:*/us-x"
