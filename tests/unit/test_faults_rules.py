"""Fault rules: the strict parser (each bad rule's exact message), matching, draws, answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.model import LimitPolicy, load_config
from proxy.config.readers import ConfigError
from proxy.faults.answers import FAULT_HEADER, fault_answer, fault_status_code
from proxy.faults.model import FaultRule, fault_rules
from proxy.faults.rules import FaultScope, compile_faults, describe_faults

RULE = "faults:\n  - {name: r, kind: throttle"
PUT = FaultScope("dynamodb", "PutItem", "us-east-1")

BAD_RULES: list[tuple[str, str]] = [
    ("faults: {name: r}\n", "faults: expected a list, got dict"),
    ("faults:\n  - {kind: throttle}\n", "faults[0].name: is required"),
    ("faults:\n  - {name: r}\n", "faults[0].kind: is required"),
    (
        f"{RULE}, odds: 1}}\n",
        "faults[0].odds: unknown key (known keys: after, at, code, every, for, identity, "
        "jitter, kind, latency, name, operations, probability, region, service, status)",
    ),
    (
        "faults:\n  - {name: r, kind: explode}\n",
        "faults[0].kind: expected one of throttle, internal, unavailable, error, latency, reset, "
        "timeout, got 'explode'",
    ),
    (f"{RULE}, at: server}}\n", "faults[0].at: expected one of upstream, client, got 'server'"),
    (f"{RULE}, probability: 1.5}}\n", "faults[0].probability: must be between 0 and 1, got 1.5"),
    (f"{RULE}, probability: lots}}\n", "faults[0].probability: expected a number, got str"),
    (f"{RULE}, every: 0}}\n", "faults[0].every: must be at least 1, got 0"),
    (f"{RULE}, every: 2, probability: 0.5}}\n", "faults[0]: give probability or every, not both"),
    (f"{RULE}, for: 0s}}\n", "faults[0].for: must be greater than 0, got '0s'"),
    (
        f"{RULE}, after: soon}}\n",
        "faults[0].after: expected a duration like 5s or 250ms, got 'soon'",
    ),
    (f"{RULE}, status: 700}}\n", "faults[0].status: must be at most 599, got 700"),
    (
        f"{RULE}, operations: PutItem}}\n",
        "faults[0].operations: expected a list of strings, got str",
    ),
    (
        "faults:\n  - {name: r, kind: error, code: X}\n",
        "faults[0].status: is required for kind error",
    ),
    (
        "faults:\n  - {name: r, kind: error, status: 400}\n",
        "faults[0].code: is required for kind error",
    ),
    (
        "faults:\n  - {name: r, kind: latency}\n",
        "faults[0].latency: is required (and above 0) for kind latency",
    ),
    (
        f"{RULE}}}\n  - {{name: r, kind: reset}}\n",
        "faults[1].name: duplicate rule name 'r' (first at [0])",
    ),
    ("fault_seed: 1.5\n", "fault_seed: expected an integer, got float"),
    (
        "limit_policy: {mode: strict}\n",
        "limit_policy.mode: expected one of wait, enforce, got 'strict'",
    ),
    (
        "limit_policy: {mode: enforce, max_wait: 1s}\n",
        "limit_policy.max_wait: does not apply to mode enforce (it never waits)",
    ),
]


@pytest.mark.parametrize(("text", "reason"), BAD_RULES)
def test_each_bad_fault_rule_names_file_key_and_reason(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {reason}"


def test_a_full_rule_parses_with_durations() -> None:
    (rule,) = fault_rules(
        [
            {
                "name": "slow-put",
                "service": "DynamoDB",
                "operations": ["Put*", "!PutResourcePolicy"],
                "region": "us-*",
                "every": 3,
                "after": "2s",
                "for": "1m",
                "kind": "latency",
                "latency": "250ms",
                "jitter": 0.05,
                "at": "client",
            }
        ],
        "faults",
    )
    assert rule == FaultRule(
        name="slow-put",
        kind="latency",
        service="dynamodb",
        operations=("Put*", "!PutResourcePolicy"),
        region="us-*",
        every=3,
        after=2.0,
        duration=60.0,
        latency=0.25,
        jitter=0.05,
        at="client",
    )


def test_enforce_mode_never_waits(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("limit_policy: {mode: enforce}\n")
    assert load_config(path).limit_policy == LimitPolicy(max_wait=0.0, mode="enforce")


def rules(*raw: dict[str, object], seed: int | None = 1, now: float = 0.0):  # type: ignore[no-untyped-def]
    return compile_faults(fault_rules(list(raw), "faults"), seed, now)


def test_every_nth_fires_on_the_nth_covered_request_only() -> None:
    faults = rules({"name": "n", "kind": "internal", "service": "dynamodb", "every": 3})
    fired = [faults.decide(faults.upstream, PUT, 0).fault is not None for _ in range(6)]
    assert fired == [False, False, True, False, False, True]
    other = FaultScope("ec2", "DescribeInstances", "us-east-1")
    assert faults.decide(faults.upstream, other, 0).fault is None
    assert describe_faults(faults)[0]["matched"] == 6  # the EC2 request was not covered


def test_operations_region_and_identity_narrow_a_rule() -> None:
    faults = rules(
        {
            "name": "n",
            "kind": "reset",
            "operations": ["Put*", "!PutResourcePolicy"],
            "region": "eu-*",
            "identity": "default",
        }
    )
    decide = faults.decide
    assert decide(faults.upstream, FaultScope("dynamodb", "PutItem", "eu-west-1"), 0).fault
    assert not decide(faults.upstream, PUT, 0).fault  # region
    policy = FaultScope("dynamodb", "PutResourcePolicy", "eu-west-1")
    assert not decide(faults.upstream, policy, 0).fault  # excluded
    unnamed = FaultScope("dynamodb", None, "eu-west-1")
    assert not decide(faults.upstream, unnamed, 0).fault  # only rules without operations
    role = FaultScope("dynamodb", "PutItem", "eu-west-1", identity="batch")
    assert not decide(faults.upstream, role, 0).fault


def test_window_counts_from_loading() -> None:
    faults = rules({"name": "w", "kind": "throttle", "after": "10s", "for": "5s"}, now=100.0)
    at = [faults.decide(faults.upstream, PUT, t).fault is not None for t in (105, 110, 114.9, 115)]
    assert at == [False, True, True, False]


def test_seeded_draws_repeat_and_differ_by_rule_name() -> None:
    def sequence(name: str, seed: int | None) -> list[bool]:
        faults = rules({"name": name, "kind": "throttle", "probability": 0.5}, seed=seed)
        return [faults.decide(faults.upstream, PUT, 0).fault is not None for _ in range(64)]

    assert sequence("a", 9) == sequence("a", 9)
    assert sequence("a", 9) != sequence("b", 9)
    assert sequence("a", 9) != sequence("a", 10)
    assert sequence("a", None) != sequence("a", None)  # no seed: a fresh sequence per load


def test_a_rules_draws_do_not_depend_on_earlier_rules() -> None:
    alone = rules({"name": "b", "kind": "throttle", "probability": 0.5})
    behind = rules(
        {"name": "a", "kind": "internal", "probability": 0.5},
        {"name": "b", "kind": "throttle", "probability": 0.5},
    )
    for _ in range(64):
        alone.decide(alone.upstream, PUT, 0)
        behind.decide(behind.upstream, PUT, 0)
    assert describe_faults(alone)[0]["injected"] == describe_faults(behind)[1]["injected"]


def test_latency_adds_up_and_the_first_answering_rule_decides() -> None:
    faults = rules(
        {"name": "slow", "kind": "latency", "latency": "100ms", "jitter": "50ms"},
        {"name": "first", "kind": "internal", "latency": "20ms"},
        {"name": "second", "kind": "throttle"},
    )
    decision = faults.decide(faults.upstream, PUT, 0)
    assert decision.fault is not None
    assert decision.fault.name == "first"
    assert 0.120 <= decision.delay <= 0.170
    assert [c.name for c in decision.fired] == ["slow", "first", "second"]
    assert faults.client == ()


@pytest.mark.parametrize(
    ("kind", "protocol", "extra", "status", "code"),
    [
        ("throttle", "ec2", {}, 503, "RequestLimitExceeded"),
        ("throttle", "query", {}, 400, "Throttling"),
        ("throttle", "json", {}, 400, "ThrottlingException"),
        ("throttle", "rest-xml", {}, 503, "SlowDown"),
        ("throttle", "json", {"code": "ProvisionedThroughputExceededException"}, 400,
         "ProvisionedThroughputExceededException"),
        ("internal", "json", {}, 500, "InternalFailure"),
        ("internal", "ec2", {}, 500, "InternalError"),
        ("internal", "rest-xml", {}, 500, "InternalError"),
        ("unavailable", "query", {}, 503, "ServiceUnavailable"),
        ("error", "json", {"status": 400, "code": "ValidationException"}, 400,
         "ValidationException"),
    ],
)  # fmt: skip
def test_each_kind_answers_in_the_services_format(
    kind: str, protocol: str, extra: dict[str, object], status: int, code: str
) -> None:
    (rule,) = fault_rules([{"name": "r", "kind": kind, **extra}], "faults")
    assert fault_status_code(rule, protocol) == (status, code)
    answer = fault_answer(rule, protocol, "req-1")
    assert answer.status == status
    assert answer.headers[FAULT_HEADER] == "r"
    assert code.encode() in answer.body
    assert "x-throttle-proxy-error" not in answer.headers  # it stands in for AWS's answer
