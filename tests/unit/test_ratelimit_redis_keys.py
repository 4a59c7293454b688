"""Redis key names of the shared limiter: one Cluster hash slot for every key."""

from __future__ import annotations

import pytest

from proxy.ratelimit.redis_scripts import FALLBACK_HASH_TAG, bucket_redis_key, hash_tag


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
