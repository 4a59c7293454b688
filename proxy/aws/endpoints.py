"""Which AWS service and signing region a hostname stands for (pure, no I/O after import).

The facts come from proxy/aws/data/services.json, generated from botocore's models by
tools/gen_services.py: endpoint prefix -> signing name, the partitions' DNS suffixes and region
pattern, and the few hostnames (global endpoints) whose scope cannot be read off the name.
The rest is parsing: `{prefix}.{region}.{suffix}`, dual-stack, FIPS, S3's many spellings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from proxy.aws.s3family import S3_BUCKET_PREFIXES

# The aws partition's region-less hosts are its global endpoints, all signed in us-east-1.
_GLOBAL_SUFFIX = "amazonaws.com"
_GLOBAL_REGION = "us-east-1"
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
_IOT_DATA_PREFIX = "data-ats.iot"
_LEGACY_SQS_LABEL = "queue"
_DYNAMODB_ACCOUNT_LABELS = frozenset({"ddb", "search-ddb"})
_S3_EXPRESS_CONTROL = "s3express-control"
_LEGACY_S3 = re.compile(r"^s3-(?:fips-)?(.+)$")  # s3-us-west-2, s3-external-1


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a request goes, as SigV4 needs it."""

    service: str  # SigV4 signing name: 's3', 'ec2', 'ses', 'dynamodb', 'execute-api'...
    endpoint_prefix: str  # first label(s) of the host: 'email', 'streams.dynamodb', 'api.ecr'
    region: str  # signing region
    bucket: str | None = None  # S3 virtual-host-style bucket from the host, else None


@dataclass(frozen=True, slots=True)
class ServicePrefix:
    """What botocore's models say about one endpoint prefix."""

    signing_name: str
    protocols: frozenset[str]  # 'query', 'ec2', 'json', 'rest-json', 'rest-xml', ...
    target_prefixes: frozenset[str]  # X-Amz-Target prefixes of JSON-protocol services


@dataclass(frozen=True, slots=True)
class ServiceCatalog:
    """The generated service data, loaded once."""

    botocore_version: str
    suffixes: tuple[str, ...]  # partition DNS suffixes, longest first
    region_pattern: re.Pattern[str]
    prefixes: Mapping[str, ServicePrefix]
    hosts: Mapping[str, Endpoint]
    operations: Mapping[str, frozenset[str]]  # signing name -> operation names


def _load_catalog() -> ServiceCatalog:
    text = resources.files("proxy.aws").joinpath("data/services.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    prefixes = {
        prefix: ServicePrefix(name, frozenset(protocols), frozenset(targets))
        for prefix, (name, protocols, targets) in raw["prefixes"].items()
    }
    hosts = {
        host: Endpoint(service=name, endpoint_prefix=prefix, region=region)
        for host, (name, region, prefix) in raw["hosts"].items()
    }
    operations = {name: frozenset(ops.split()) for name, ops in raw["operations"].items()}
    return ServiceCatalog(
        botocore_version=raw["botocore_version"],
        suffixes=tuple(raw["suffixes"]),
        region_pattern=re.compile(raw["region_regex"]),
        prefixes=prefixes,
        hosts=hosts,
        operations=operations,
    )


CATALOG = _load_catalog()
_EMPTY_PREFIX = ServicePrefix("", frozenset(), frozenset())


def service_prefix(endpoint_prefix: str) -> ServicePrefix:
    """The model facts of an endpoint prefix; empty facts for a prefix no model names."""
    return CATALOG.prefixes.get(endpoint_prefix, _EMPTY_PREFIX)


def is_known_prefix(endpoint_prefix: str) -> bool:
    """Whether botocore's models (or our additions) name this endpoint prefix."""
    return endpoint_prefix in CATALOG.prefixes


@lru_cache(maxsize=1024)
def endpoint_for_host(host: str, default_region: str) -> Endpoint | None:
    """Signing service, region and S3 bucket for an AWS hostname; None when it is not AWS.

    `host` has no port. `default_region` signs region-less hosts outside the aws partition's
    `amazonaws.com` (whose region-less hosts are global endpoints in us-east-1).
    """
    host = host.lower().rstrip(".")
    exact = CATALOG.hosts.get(host)
    if exact is not None:
        return exact
    suffix = next((s for s in CATALOG.suffixes if host.endswith("." + s)), None)
    if suffix is None:
        return None
    labels = host[: -len(suffix) - 1].split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    # Before looking for a region label: a bucket may be named like one (eu-west-1.s3.amazonaws.com)
    regionless_s3 = _regionless_s3(labels, suffix)
    if regionless_s3 is not None:
        return regionless_s3
    region_at = _region_index(labels)
    if region_at is None:
        return _without_region(labels, default_region, suffix)
    before, region, after = labels[:region_at], labels[region_at], labels[region_at + 1 :]
    if after:
        # Only the legacy SQS spelling puts the service after the region: us-west-2.queue.
        if before or after != [_LEGACY_SQS_LABEL]:
            return None
        before = after
    if not before:
        return None
    return _resolve(before, region)


def _region_index(labels: list[str]) -> int | None:
    for index in range(len(labels) - 1, -1, -1):
        if CATALOG.region_pattern.match(labels[index]):
            return index
    return None


def _normalised(labels: list[str]) -> str:
    """The endpoint prefix without dual-stack and FIPS markers.

    'runtime-fips.sagemaker' -> 'runtime.sagemaker'; 'fips.batch' -> 'batch';
    's3-fips.dualstack' -> 's3'.
    """
    kept = [label.removesuffix("-fips") for label in labels if label not in ("dualstack", "fips")]
    return ".".join(kept)


def _resolve(labels: list[str], region: str) -> Endpoint:
    """Find the longest known endpoint prefix at the end of the labels; what is in front of
    it is a bucket (S3) or an id we do not need (API Gateway's api id, S3 Control's account).
    """
    if len(labels) == 2 and labels[1] in _DYNAMODB_ACCOUNT_LABELS and labels[0].isdigit():
        # DynamoDB's account-based endpoints: {account}.ddb.{region}
        return _endpoint("dynamodb", "dynamodb", region, [])
    for start in range(len(labels)):
        tail = labels[start:]
        if tail[0].startswith(_S3_EXPRESS_CONTROL):
            # Directory buckets' control plane signs as s3express too (botocore's S3 rules).
            return _endpoint("s3express", _S3_EXPRESS_CONTROL, region, [])
        if tail[0].startswith("s3express-"):
            # S3 Express directory buckets: {bucket}.s3express-{zone}.{region}
            return _endpoint("s3express", "s3express", region, labels[:start])
        prefix = _normalised(tail)
        if prefix == "iot" and start > 0:
            # IoT data plane: {account-specific-id}-ats.iot.{region} signs as iotdata.
            prefix = _IOT_DATA_PREFIX
        known = CATALOG.prefixes.get(prefix)
        if known is not None:
            return _endpoint(known.signing_name, prefix, region, labels[:start])
    # A service newer than our data: sign with its host label, the usual convention.
    prefix = _normalised(labels) or labels[-1]
    return Endpoint(service=prefix.rsplit(".", 1)[-1], endpoint_prefix=prefix, region=region)


def _endpoint(service: str, prefix: str, region: str, leading: list[str]) -> Endpoint:
    bucket = ".".join(leading) if leading and prefix in S3_BUCKET_PREFIXES else None
    return Endpoint(service=service, endpoint_prefix=prefix, region=region, bucket=bucket)


def _regionless_s3(labels: list[str], suffix: str) -> Endpoint | None:
    """Legacy and global S3 hosts, with or without a bucket in front: s3-us-west-2,
    s3-external-1, {bucket}.s3.amazonaws.com."""
    legacy = _LEGACY_S3.match(labels[-1])
    if legacy is not None and CATALOG.region_pattern.match(legacy.group(1)):
        return _endpoint("s3", "s3", legacy.group(1), labels[:-1])
    known_host = CATALOG.hosts.get(labels[-1] + "." + suffix)
    if known_host is not None and known_host.endpoint_prefix in S3_BUCKET_PREFIXES:
        return _endpoint(
            known_host.service, known_host.endpoint_prefix, known_host.region, labels[:-1]
        )
    return None


def _without_region(labels: list[str], default_region: str, suffix: str) -> Endpoint | None:
    """Hosts without a region label: global endpoints of services we have no entry for."""
    region = _GLOBAL_REGION if suffix == _GLOBAL_SUFFIX else default_region
    if labels[-1] == "global":
        labels = labels[:-1]
        if not labels:
            return None
    return _resolve(labels, region)
