"""Rule matching, bucket keys, AWS default limits and how user rules replace them."""

from __future__ import annotations

import pytest

from proxy.aws.operations import Operation
from proxy.config.model import Config, LimitRule, parse_config
from proxy.ratelimit.rules import (
    LONGEST_PARTITION,
    compile_rule,
    describe_rules,
    effective_rules,
    load_default_limits,
    merge_rules,
    operation_matcher,
    prefix_key,
    same_shape,
)


def test_exact_names_match_only_themselves() -> None:
    matcher = operation_matcher(["DescribeInstances"])
    assert matcher.matches("DescribeInstances")
    assert not matcher.matches("DescribeInstancesX")
    assert not matcher.matches("describeinstances")
    assert not matcher.matches(None)


def test_globs_and_exclusions() -> None:
    matcher = operation_matcher(["Describe*", "Get?tem"])
    assert matcher.matches("DescribeVpcs")
    assert matcher.matches("GetItem")
    assert not matcher.matches("RunInstances")
    mutating = operation_matcher(["*", "!Describe*", "!RunInstances"])
    assert mutating.matches("StopInstances")
    assert not mutating.matches("DescribeVpcs")
    assert not mutating.matches("RunInstances")
    assert not mutating.matches(None)  # an unnamed operation is not "all but Describes"


def test_no_operations_covers_everything_even_unnamed() -> None:
    matcher = operation_matcher([])
    assert matcher.matches("Anything")
    assert matcher.matches(None)
    only_exclusions = operation_matcher(["!GetObject"])
    assert only_exclusions.matches("PutObject")
    assert not only_exclusions.matches("GetObject")


@pytest.mark.parametrize(
    ("bucket", "key", "depth", "expected"),
    [
        ("b", "logs/2024/01/x.gz", 1, "b/logs"),
        ("b", "logs/2024/01/x.gz", 2, "b/logs/2024"),
        ("b", "logs/2024/01/x.gz", 9, "b/logs/2024/01"),
        ("b", "logs/2024/01/x.gz", 0, "b"),
        ("b", "top-level.txt", 1, "b"),
        ("b", "folder/", 1, "b/folder"),
        ("b", None, 1, "b"),
        (None, None, 1, ""),
    ],
)
def test_prefix_key_is_bucket_plus_leading_folders(
    bucket: str | None, key: str | None, depth: int, expected: str
) -> None:
    assert prefix_key(bucket, key, depth) == expected


class SplitRecorder(str):
    """A key that records the `maxsplit` of every split made of it."""

    maxsplits: list[int]

    def split(self, sep: str | None = None, maxsplit: int = -1) -> list[str]:  # type: ignore[override]
        self.maxsplits.append(maxsplit)
        return super().split(sep, maxsplit)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefix_key_splits_only_the_leading_segments(depth: int) -> None:
    key = SplitRecorder("/".join(f"d{i}" for i in range(50_000)) + "/x.gz")
    key.maxsplits = []
    expected = "/".join(["b", *(f"d{i}" for i in range(depth))])
    assert prefix_key("b", key, depth) == expected
    assert all(0 <= maxsplit <= depth + 1 for maxsplit in key.maxsplits)


def test_per_operation_buckets_are_bounded_by_known_operations() -> None:
    """A client-made name (up to 128 chars each) cannot mint buckets: they all share `other`."""
    rule = compile_rule(LimitRule("r", "ec2", 10, 10, per="operation"))
    made_up = {
        rule.per_key(Operation("ec2", f"Invented{i:0>100}", protocol="ec2")) for i in range(200)
    }
    assert made_up == {"other"}
    assert rule.per_key(Operation("ec2", None, protocol="ec2")) == "other"
    known = Operation("ec2", "DescribeInstances", protocol="ec2")
    assert rule.per_key(known) == "DescribeInstances"


@pytest.mark.parametrize(
    ("per", "expected"),
    [("none", ""), ("operation", "GetObject"), ("bucket", "photos"), ("prefix", "photos/2024")],
)
def test_bucket_key_per_scope(per: str, expected: str) -> None:
    rule = compile_rule(LimitRule("r", "s3", 10, 10, per=per, prefix_depth=1))
    op = Operation("s3", "GetObject", bucket="photos", key="2024/cat.jpg", protocol="rest-xml")
    assert rule.covers(op)
    assert rule.per_key(op) == expected


@pytest.mark.parametrize("per", ["bucket", "prefix"])
def test_bucket_keys_are_no_longer_than_any_s3_partition(per: str) -> None:
    """A request line may be 64 KiB: a client must not make each bucket it mints that long."""
    rule = compile_rule(LimitRule("r", "s3", 10, 10, per=per, prefix_depth=2))
    longest_real = Operation(
        "s3", "GetObject", bucket="b" * 63, key=f"{'k' * 1000}/{'f' * 22}/x", protocol="rest-xml"
    )
    assert rule.per_key(longest_real) == (
        "b" * 63 if per == "bucket" else f"{'b' * 63}/{'k' * 1000}/{'f' * 22}"
    )
    sprayed = {
        rule.per_key(
            Operation("s3", "GetObject", bucket=f"{n}{'b' * 60_000}", key=f"{'p' * 60_000}/o")
        )
        for n in range(10)
    }
    assert len(sprayed) == 10  # still a bucket each
    assert max(len(key) for key in sprayed) <= LONGEST_PARTITION


def test_defaults_hold_the_published_ec2_and_s3_limits() -> None:
    by_name = {rule.name: rule for rule in load_default_limits()}
    non_mutating = by_name["aws-ec2-non-mutating"]
    assert (non_mutating.burst, non_mutating.rate) == (100, 20)
    assert (by_name["aws-ec2-mutating"].burst, by_name["aws-ec2-mutating"].rate) == (50, 5)
    assert (by_name["aws-ec2-run-instances"].burst, by_name["aws-ec2-run-instances"].rate) == (
        5,
        2,
    )
    assert by_name["aws-ec2-terminate-instances"].rate == 5
    assert by_name["aws-ec2-create-tags"].burst == 100
    reads, writes = by_name["aws-s3-reads-per-prefix"], by_name["aws-s3-writes-per-prefix"]
    assert (reads.rate, reads.per, writes.rate, writes.per) == (5500, "prefix", 3500, "prefix")


@pytest.mark.parametrize(
    ("operation", "unfiltered", "rule", "shape"),
    [
        ("DescribeInstances", True, "aws-ec2-unfiltered-unpaginated", (50, 10)),
        ("DescribeVolumes", True, "aws-ec2-unfiltered-unpaginated", (50, 10)),
        ("DescribeInstances", False, "aws-ec2-non-mutating-filtered", (100, 20)),
        ("DescribeVpcs", True, "aws-ec2-non-mutating", (100, 20)),
        ("DescribeVpcs", False, "aws-ec2-non-mutating", (100, 20)),
        ("GetConsoleOutput", False, "aws-ec2-non-mutating", (100, 20)),
        ("StopInstances", False, "aws-ec2-mutating", (50, 5)),
        ("AuthorizeSecurityGroupIngress", False, "aws-ec2-mutating", (50, 5)),
        ("RunInstances", False, "aws-ec2-run-instances", (5, 2)),
        ("TerminateInstances", False, "aws-ec2-terminate-instances", (100, 5)),
        ("CreateTags", False, "aws-ec2-create-tags", (100, 10)),
        ("CreateVpcEndpoint", False, "aws-ec2-bucket-4-refill-0_3", (4, 0.3)),
        ("DescribeSpotFleetRequests", True, "aws-ec2-bucket-50-refill-3", (50, 3)),
    ],
)
def test_each_ec2_action_falls_in_exactly_one_default_bucket(
    operation: str, unfiltered: bool, rule: str, shape: tuple[float, float]
) -> None:
    rules = [compile_rule(r) for r in load_default_limits() if r.service == "ec2"]
    op = Operation("ec2", operation, protocol="ec2", unfiltered=unfiltered)
    covering = [r for r in rules if r.covers(op) and r.rule.cost == "requests"]
    assert [r.name for r in covering] == [rule]
    assert (covering[0].rule.burst, covering[0].rule.rate) == shape
    # AWS evaluates each API on its own bucket.
    assert covering[0].rule.per == "operation" or covering[0].rule.operations == (operation,)


def test_every_ec2_operation_has_exactly_one_default_bucket() -> None:
    from proxy.aws.operations import known_operations

    ec2 = [r for r in load_default_limits() if r.service == "ec2"]
    rules = [compile_rule(r) for r in ec2 if r.cost == "requests"]
    for name in sorted(known_operations("ec2")):
        for unfiltered in (False, True):
            op = Operation("ec2", name, protocol="ec2", unfiltered=unfiltered)
            assert len([r for r in rules if r.covers(op)]) == 1, (name, unfiltered)


def test_defaults_hold_ec2s_resource_token_buckets() -> None:
    # AWS's resource buckets count instances: (bucket, refill per second), one per call.
    resources = {
        rule.operations: (rule.burst, rule.rate, rule.name)
        for rule in load_default_limits()
        if rule.cost == "resources"
    }
    assert resources == {
        ("RunInstances",): (1000, 2, "aws-ec2-run-instances-resources"),
        ("TerminateInstances",): (1000, 20, "aws-ec2-terminate-instances-resources"),
        ("StartInstances",): (1000, 2, "aws-ec2-start-instances-resources"),
        ("StopInstances",): (1000, 20, "aws-ec2-stop-instances-resources"),
    }
    rules = [compile_rule(r) for r in load_default_limits() if r.service == "ec2"]
    stop = Operation("ec2", "StopInstances", protocol="ec2", resources=7)
    # The call spends its request bucket (one token) and its resource bucket (7).
    assert {r.name: r.cost(stop) for r in rules if r.covers(stop)} == {
        "aws-ec2-mutating": 1,
        "aws-ec2-stop-instances-resources": 7,
    }


def test_user_rule_with_a_default_name_replaces_it_in_place() -> None:
    config = parse_config(
        {
            "include_default_limits": True,
            "limits": [
                {"name": "aws-ec2-run-instances", "service": "ec2", "rate": 1, "burst": 1},
                {"name": "mine", "service": "sqs", "rate": 50},
            ],
        }
    )
    rules = effective_rules(config)
    names = [rule.name for rule in rules]
    assert names.count("aws-ec2-run-instances") == 1
    assert names[-1] == "mine"
    replaced = rules[names.index("aws-ec2-run-instances")]
    assert (replaced.rate, replaced.burst, replaced.operations) == (1, 1, ())
    assert len(rules) == len(load_default_limits()) + 1


def test_defaults_are_off_unless_asked_for() -> None:
    assert effective_rules(Config()) == []
    user = LimitRule("x", "ec2", 1, 1)
    assert merge_rules([], [user]) == [user]


def test_same_shape_ignores_rate_and_burst_only() -> None:
    rule = LimitRule("r", "s3", 10, 10, per="prefix")
    assert same_shape(rule, LimitRule("r", "s3", 99, 5, per="prefix"))
    assert not same_shape(rule, LimitRule("r", "s3", 10, 10, per="prefix", prefix_depth=2))
    assert not same_shape(rule, LimitRule("r", "s3", 10, 10, per="bucket"))
    assert not same_shape(rule, LimitRule("r", "s3", 10, 10, ("GetObject",), per="prefix"))
    assert not same_shape(rule, LimitRule("r", "s3", 10, 10, per="prefix", scope="region"))
    assert not same_shape(rule, LimitRule("r", "s3", 10, 10, per="prefix", cost="resources"))


@pytest.mark.parametrize(
    ("scope", "keys"),
    [
        # AWS's way: one budget per account and region.
        (
            "account-region",
            {"111122223333/us-east-1|", "111122223333/eu-west-1|", "444455556666/us-east-1|"},
        ),
        ("region", {"*/us-east-1|", "*/eu-west-1|"}),
        ("global", {"*/*|"}),
    ],
)
def test_bucket_keys_by_scope(scope: str, keys: set[str]) -> None:
    rule = compile_rule(LimitRule("r", "ec2", 10, 10, scope=scope))
    base = Operation("ec2", "DescribeInstances", protocol="ec2")
    calls = [
        base.for_budget("111122223333", "us-east-1"),
        base.for_budget("111122223333", "eu-west-1"),
        base.for_budget("444455556666", "us-east-1"),
        base.for_budget("111122223333", "us-east-1"),
    ]
    assert {rule.bucket_key(op) for op in calls} == keys


def test_per_key_follows_the_budget_key() -> None:
    rule = compile_rule(LimitRule("r", "s3", 10, 10, per="prefix"))
    op = Operation("s3", "GetObject", bucket="b", key="logs/x.gz").for_budget("acct", "us-west-2")
    assert rule.bucket_key(op) == "acct/us-west-2|b/logs"


def test_describe_rules_shows_what_check_config_prints() -> None:
    described = describe_rules(
        [
            LimitRule("a", "ec2", 100, 100, ("DescribeInstances",)),
            LimitRule(
                "b",
                "s3",
                5,
                5,
                per="prefix",
                prefix_depth=2,
                adaptive=True,
                shadow=True,
                scope="global",
            ),
        ]
    )
    assert described == [
        {
            "name": "a",
            "service": "ec2",
            "operations": ["DescribeInstances"],
            "rate": 100,
            "burst": 100,
            "per": "none",
            "scope": "account-region",
        },
        {
            "name": "b",
            "service": "s3",
            "operations": "all",
            "rate": 5,
            "burst": 5,
            "per": "prefix",
            "scope": "global",
            "prefix_depth": 2,
            "adaptive": True,
            "shadow": True,
        },
    ]


def test_describe_rules_shows_a_rule_charged_by_resources() -> None:
    rule = LimitRule("t", "ec2", 20, 1000, ("TerminateInstances",), cost="resources")
    assert describe_rules([rule]) == [
        {
            "name": "t",
            "service": "ec2",
            "operations": ["TerminateInstances"],
            "rate": 20,
            "burst": 1000,
            "per": "none",
            "scope": "account-region",
            "cost": "resources",
        }
    ]
