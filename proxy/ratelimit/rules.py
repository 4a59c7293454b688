"""Limit rules: which requests a rule covers and which bucket of the rule a request draws from.

`operations` entries are exact names or shell-style patterns (`Describe*`); an entry starting
with `!` excludes what it matches (`["*", "!Describe*"]`: every operation but the Describes).
A rule with no positive entry covers every operation not excluded. A request whose operation
could not be named is covered only by rules without `operations`.

Bucket keys per `per`: `none` one bucket; `operation` one per operation the service really has
(`Operation.label`: names a client makes up all share the bucket `other`, so they cannot mint
buckets without end); `bucket` one per S3 bucket; `prefix` one per S3 bucket plus the first
`prefix_depth` folder segments of the key (the object's own name is not a segment:
`b/logs/2024/x.gz` at depth 1 is `b/logs`). Both are cut at the longest partition S3 can have
(`LONGEST_PARTITION`): names past it are ones S3 refuses, and share a bucket here.

Before the `per` part comes the budget's `scope`, because AWS throttles per account and per
region: `account-region` (the default) keeps one budget per signing account (or identity name
while the account is not known) and region, `region` one per region whatever the identity,
`global` one for everything.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import yaml

from proxy.aws.hostgrammar import MAX_BUCKET_NAME
from proxy.aws.operations import Operation
from proxy.config.model import Config, LimitRule, limit_rule
from proxy.config.readers import ConfigError

DEFAULT_LIMITS_RESOURCE = "aws-limits.yaml"
# The longest S3 partition there is: a bucket name, a slash, a key's leading
# folders (a key is at most 1024 bytes). A client's longer name is one S3 refuses anyway; cut
# there, it cannot make each bucket the limiter keeps as long as a request line (64 KiB).
LONGEST_PARTITION = MAX_BUCKET_NAME + 1 + 1024
_PATTERN_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class OperationMatcher:
    """Decides whether an operation name is one a rule covers."""

    exact: frozenset[str]
    patterns: re.Pattern[str] | None
    excluded: re.Pattern[str] | None
    covers_all: bool

    def matches(self, name: str | None) -> bool:
        if name is None:
            return self.covers_all and self.excluded is None
        if self.excluded is not None and self.excluded.fullmatch(name):
            return False
        if self.covers_all or name in self.exact:
            return True
        return self.patterns is not None and self.patterns.fullmatch(name) is not None


def _alternation(globs: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(glob) for glob in globs]
    return re.compile("|".join(f"(?:{part})" for part in parts)) if parts else None


def operation_matcher(operations: Sequence[str]) -> OperationMatcher:
    """Compile a rule's `operations` list (exact names, globs, `!` exclusions)."""
    included = [op for op in operations if not op.startswith("!")]
    excluded = [op[1:] for op in operations if op.startswith("!")]
    exact = frozenset(op for op in included if not _PATTERN_CHARS & set(op))
    globs = [op for op in included if _PATTERN_CHARS & set(op)]
    return OperationMatcher(
        exact=exact,
        patterns=_alternation(globs),
        excluded=_alternation(excluded),
        covers_all=not included or "*" in included,
    )


def prefix_key(bucket: str | None, key: str | None, depth: int) -> str:
    """The S3 partition a request falls in: bucket + the first `depth` folder segments."""
    if not key or depth <= 0:
        return bucket or ""
    # At most depth + 1 parts: the folders we keep, then the rest of the key unsplit (the
    # object's own name, or deeper folders we do not look at). A long key costs no more.
    folders = key.split("/", depth)[:-1]
    return "/".join([bucket or "", *folders])


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A LimitRule ready for the request path."""

    rule: LimitRule
    matcher: OperationMatcher

    @property
    def name(self) -> str:
        return self.rule.name

    def covers(self, op: Operation) -> bool:
        unfiltered = self.rule.unfiltered
        if unfiltered is not None and op.unfiltered != unfiltered:
            return False
        return self.matcher.matches(op.name)

    def cost(self, op: Operation) -> int:
        """Tokens `op` takes from this rule's bucket: 1, or the resources it acts on."""
        return op.resources if self.rule.cost == "resources" else 1

    def budget_key(self, op: Operation) -> str:
        """Whose budget `op` spends under this rule's `scope`: `account/region`, `*/region`
        or `*/*` (also the Redis Cluster hash tag: one slot per account and region)."""
        scope = self.rule.scope
        if scope == "account-region":
            return f"{op.account}/{op.region}"
        if scope == "region":
            return f"*/{op.region}"
        return "*/*"

    def per_key(self, op: Operation) -> str:
        """Which of the budget's buckets `op` draws from, by the rule's `per`."""
        per = self.rule.per
        if per == "none":
            return ""
        if per == "operation":
            return op.label
        if per == "bucket":
            return (op.bucket or "")[:LONGEST_PARTITION]
        return prefix_key(op.bucket, op.key, self.rule.prefix_depth)[:LONGEST_PARTITION]

    def bucket_key(self, op: Operation) -> str:
        """Which of the rule's buckets `op` draws from (never a metric label)."""
        return f"{self.budget_key(op)}|{self.per_key(op)}"


def compile_rule(rule: LimitRule) -> CompiledRule:
    return CompiledRule(rule, operation_matcher(rule.operations))


def same_shape(a: LimitRule, b: LimitRule) -> bool:
    """True when bucket state of `a` stays meaningful for `b` (rate and burst may differ)."""
    return (
        a.name,
        a.service,
        a.operations,
        a.per,
        a.prefix_depth,
        a.scope,
        a.unfiltered,
        a.cost,
    ) == (b.name, b.service, b.operations, b.per, b.prefix_depth, b.scope, b.unfiltered, b.cost)


def load_default_limits() -> tuple[LimitRule, ...]:
    """AWS's published limits shipped in proxy/aws/data/aws-limits.yaml."""
    source = resources.files("proxy.aws") / "data" / DEFAULT_LIMITS_RESOURCE
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("limits"), list):
        raise ConfigError("limits", "expected a list of rules", DEFAULT_LIMITS_RESOURCE)
    try:
        return tuple(
            limit_rule(item, f"limits[{index}]") for index, item in enumerate(raw["limits"])
        )
    except ConfigError as error:
        raise error.in_file(DEFAULT_LIMITS_RESOURCE) from None


def merge_rules(defaults: Sequence[LimitRule], user: Sequence[LimitRule]) -> list[LimitRule]:
    """Defaults first, each replaced in place by a user rule of the same name; then the rest."""
    by_name = {rule.name: rule for rule in user}
    default_names = {rule.name for rule in defaults}
    merged = [by_name.get(rule.name, rule) for rule in defaults]
    merged.extend(rule for rule in user if rule.name not in default_names)
    return merged


def effective_rules(config: Config) -> list[LimitRule]:
    """The rules in force: the config's, plus AWS's defaults when include_default_limits."""
    defaults = load_default_limits() if config.include_default_limits else ()
    return merge_rules(defaults, config.limits)


def describe_rules(rules: Sequence[LimitRule]) -> list[dict[str, object]]:
    """The rules as plain data, for `check-config` to print."""
    described: list[dict[str, object]] = []
    for rule in rules:
        entry: dict[str, object] = {
            "name": rule.name,
            "service": rule.service,
            "operations": list(rule.operations) or "all",
            "rate": rule.rate,
            "burst": rule.burst,
            "per": rule.per,
            "scope": rule.scope,
        }
        if rule.per == "prefix":
            entry["prefix_depth"] = rule.prefix_depth
        if rule.unfiltered is not None:
            entry["unfiltered"] = rule.unfiltered
        if rule.cost != "requests":
            entry["cost"] = rule.cost
        if rule.adaptive:
            entry["adaptive"] = True
        if rule.shadow:
            entry["shadow"] = True
        described.append(entry)
    return described
