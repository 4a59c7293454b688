"""The retry quota's arithmetic: 500 tokens, 14 per retry, 5 after a throttle, refunds."""

from __future__ import annotations

from proxy.retry.quota import RetryQuota


def test_a_new_service_has_a_full_quota() -> None:
    quota = RetryQuota()
    assert quota.capacity == 500
    assert quota.available("ec2") == 500
    assert quota.services() == ()


def test_costs() -> None:
    quota = RetryQuota(500)
    assert quota.acquire("ec2", throttled=False) == 14
    assert quota.available("ec2") == 486
    assert quota.acquire("ec2", throttled=True) == 5
    assert quota.available("ec2") == 481
    assert quota.available("s3") == 500  # per service


def test_empty_quota_refuses_without_taking() -> None:
    quota = RetryQuota(20)
    assert quota.acquire("sts", throttled=False) == 14
    assert quota.acquire("sts", throttled=False) is None  # 6 left < 14
    assert quota.available("sts") == 6
    assert quota.acquire("sts", throttled=True) == 5  # a throttle retry still fits
    assert quota.acquire("sts", throttled=True) is None
    assert quota.available("sts") == 1


def test_500_tokens_buy_35_plain_retries_or_100_throttle_retries() -> None:
    plain, throttled = RetryQuota(), RetryQuota()
    assert sum(1 for _ in range(1000) if plain.acquire("x", False) is not None) == 35
    assert sum(1 for _ in range(1000) if throttled.acquire("x", True) is not None) == 100


def test_refunds() -> None:
    quota = RetryQuota(500)
    quota.acquire("ec2", throttled=False)
    quota.acquire("ec2", throttled=False)
    assert quota.available("ec2") == 472
    quota.refund("ec2", 14)  # a success after a retry returns that retry's cost
    assert quota.available("ec2") == 486
    quota.refund("ec2", None)  # a success without a retry returns 1
    assert quota.available("ec2") == 487


def test_refunds_never_exceed_the_capacity() -> None:
    quota = RetryQuota(500)
    quota.refund("ec2", None)
    quota.refund("ec2", 14)
    assert quota.available("ec2") == 500
    quota.acquire("ec2", throttled=True)
    quota.refund("ec2", 14)
    assert quota.available("ec2") == 500


def test_zero_capacity_never_retries() -> None:
    quota = RetryQuota(0)
    assert quota.acquire("ec2", throttled=True) is None
    quota.refund("ec2", None)
    assert quota.available("ec2") == 0


def test_resize_keeps_what_was_spent() -> None:
    quota = RetryQuota(500)
    for _ in range(10):
        quota.acquire("ec2", throttled=False)  # 140 spent
    quota.resize(1000)
    assert quota.capacity == 1000
    assert quota.available("ec2") == 860
    assert quota.available("s3") == 1000
    quota.resize(100)
    assert quota.available("ec2") == 0
    quota.resize(400)
    assert quota.available("ec2") == 300  # spent stays at most the old capacity (100)
