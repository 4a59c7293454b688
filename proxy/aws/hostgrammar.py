"""Which hostnames AWS itself answers: the grammar a wildcard in `allow_hosts` admits. Pure.

A name under an AWS domain is not always AWS's. API Gateway invoke URLs, load balancers, EC2
public names, S3 websites, Object Lambda access points, OpenSearch and RDS endpoints put a
customer's label in front of an AWS name, and whoever owns that label receives the signed
headers, session token included. So a wildcard admits a host only in one of the exact shapes
below; any other name must be listed exactly in
`allow_hosts` or named by a route. A refusal here happens before any DNS lookup or connection.

Forms admitted (README "Host grammar" has the table with examples): botocore's listed
hostnames; `{prefix}[-fips][.dualstack].{region}.{suffix}`; region-less `{prefix}.{suffix}`;
legacy `{region}.queue`; S3 `{bucket}.` in front of `s3`, `s3-external-1`, `s3-{region}`,
`s3[-fips][.dualstack].{region}`; `{name}-{account}.s3-accesspoint…`; S3 Express
`{base}--{az}--x-s3.s3express-{az}.{region}`; `{account}.ddb.{region}` and
`{account}.s3-control….{region}`.

`{prefix}` is an endpoint prefix botocore's models name (one or more labels: `ec2`,
`api.ecr`, `runtime.sagemaker`), `{region}` a region-shaped label, `{suffix}` a partition's
DNS suffix (`amazonaws.com`, `api.aws`, `amazonaws.com.cn`, the ISO and EUSC partitions').
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from proxy.aws.endpoints import CATALOG

# The longest DNS name written out (RFC 1035): no longer host is AWS's. With a port and an
# IPv6 literal's brackets, the longest authority a per-host memo keeps: Host headers may be
# 64 KiB, and 4096 distinct ones held hundreds of MB.
MAX_DNS_NAME = 253
MAX_MEMO_AUTHORITY = MAX_DNS_NAME + len(":65535") + len("[]")

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ACCOUNT = re.compile(r"^\d{12}$")
# Access point names: 3-50 characters of [a-z0-9-]; the host label appends "-{account}".
_ACCESS_POINT = re.compile(r"^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]-\d{12}$")
# Availability zone ids (`use1-az4`, `usw2-lax1-az1` for Local Zones) in S3 Express names.
_AZ_ID = r"[a-z]{2,5}\d{1,2}(?:-[a-z]{3}\d{1,2})?-az\d{1,2}"
_EXPRESS_ENDPOINT = re.compile(rf"^s3express-(?:fips-)?({_AZ_ID})$")
_EXPRESS_BUCKET = re.compile(rf"^([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)--({_AZ_ID})--x-s3$")
_LEGACY_S3 = re.compile(r"^s3-(?:fips-)?(.+)$")  # s3-us-west-2, s3-fips-us-gov-west-1
_S3_REGIONLESS = frozenset({"s3", "s3-external-1"})
# Bucket-name endings S3 reserves for things that are not plain buckets: Object Lambda
# aliases (their requests run a customer's function), directory and table buckets (other
# endpoints), multi-region access points (SigV4A).
_RESERVED_BUCKET_SUFFIXES = ("--ol-s3", "--x-s3", "--table-s3", ".mrap")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-")
_LEGACY_SQS_LABEL = "queue"
_ACCESS_POINT_ENDPOINTS = frozenset({"s3-accesspoint", "s3-accesspoint-fips"})
_CONTROL_ENDPOINTS = frozenset({"s3-control", "s3-control-fips"})
_EXPRESS_CONTROL_ENDPOINTS = frozenset({"s3express-control", "s3express-control-fips"})
_MARKERS = frozenset({"dualstack", "fips", "global"})
# The partitions' dual-stack suffixes (`api.aws`, `api.amazonwebservices.com.cn`, ...).
_DUAL_STACK_SUFFIXES = frozenset(s for s in CATALOG.suffixes if s.startswith("api."))


def _is_region(label: str) -> bool:
    return CATALOG.region_pattern.match(label) is not None


def _split_suffix(host: str) -> tuple[list[str], str] | None:
    suffix = next((s for s in CATALOG.suffixes if host.endswith("." + s)), None)
    if suffix is None:
        return None
    labels = host[: -len(suffix) - 1].split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    return labels, suffix


def _is_prefix(labels: list[str]) -> bool:
    """`ec2`, `ec2-fips`, `api.detective-fips`, `fips.batch`: a known endpoint prefix, with
    FIPS marked at most once, where botocore's endpoint data puts it (a `-fips` label ending
    or a leading `fips` label)."""
    if labels and labels[0] == "fips":
        labels = labels[1:]
        marked = True
    else:
        marked = False
    if not labels or any(label in _MARKERS for label in labels):
        return False
    plain = [label.removesuffix("-fips") for label in labels]
    fips_marks = sum(label != bare for label, bare in zip(labels, plain, strict=True))
    if fips_marks + marked > 1:
        return False
    return ".".join(plain) in CATALOG.prefixes


def _service_labels(labels: list[str], *, global_ok: bool) -> bool:
    """Prefix labels with an optional trailing `dualstack` (or `global` when region-less)."""
    if labels and labels[-1] == "dualstack":
        return _is_prefix(labels[:-1])
    if global_ok and labels and labels[-1] == "global":
        return _is_prefix(labels[:-1])
    return _is_prefix(labels)


# S3's longest bucket name (its naming rules), here and in the limiter's partition keys.
MAX_BUCKET_NAME = 63


def is_bucket_name(name: str) -> bool:
    """S3's general-purpose bucket naming rules (dots allowed: they go path style)."""
    if not 3 <= len(name) <= MAX_BUCKET_NAME or ".." in name or ".-" in name or "-." in name:
        return False
    if not all(_LABEL.match(label) for label in name.split(".")):
        return False
    if name.startswith(_RESERVED_BUCKET_PREFIXES) or name.endswith(_RESERVED_BUCKET_SUFFIXES):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return True
    return False  # IP-address-shaped names are not bucket names


def _s3_endpoint(labels: list[str]) -> bool:
    """The S3 endpoint that follows a bucket: `s3`, `s3-us-west-2`, `s3.dualstack.eu-west-1`."""
    if len(labels) == 1:
        legacy = _LEGACY_S3.match(labels[0])
        return labels[0] in _S3_REGIONLESS or (legacy is not None and _is_region(legacy[1]))
    *service, region = labels
    return _is_region(region) and service in (
        ["s3"],
        ["s3-fips"],
        ["s3", "dualstack"],
        ["s3-fips", "dualstack"],
    )


def _s3_bucket(labels: list[str]) -> bool:
    """`{bucket}.{s3 endpoint}`: the bucket may itself contain dots."""
    for cut in range(1, len(labels)):
        if _s3_endpoint(labels[cut:]):
            return is_bucket_name(".".join(labels[:cut]))
    return False


def _regional(labels: list[str]) -> bool:
    *service, region = labels
    return _is_region(region) and _service_labels(service, global_ok=False)


def _region_less(labels: list[str]) -> bool:
    legacy = _LEGACY_S3.match(labels[0]) if len(labels) == 1 else None
    if legacy is not None and _is_region(legacy[1]):
        return True  # s3-us-west-2.amazonaws.com, the legacy dash form
    return _service_labels(labels, global_ok=True)


def _endpoint_label(service: list[str]) -> str | None:
    """`name` or `name.dualstack` -> name; anything longer is no single endpoint."""
    if len(service) == 1 or (len(service) == 2 and service[1] == "dualstack"):
        return service[0]
    return None


def _s3_express_endpoint(labels: list[str]) -> bool:
    """S3 Express endpoints without a bucket: `s3express-control[-fips][.dualstack].{region}`
    and the zonal `s3express[-fips]-{az}[.dualstack].{region}` (no catalog prefix names them)."""
    *service, region = labels
    name = _endpoint_label(service)
    if name is None or not _is_region(region):
        return False
    return name in _EXPRESS_CONTROL_ENDPOINTS or _EXPRESS_ENDPOINT.match(name) is not None


def _leading_label(labels: list[str], dual_stack_suffix: bool) -> bool:
    """One label in front of an endpoint AWS terminates for that label's owner."""
    if len(labels) < 3:
        return False  # `elb.amazonaws.com`: no label in front of anything
    head, *service, region = labels
    if not _is_region(region):
        return False
    if service in (["ddb"], ["search-ddb"]):
        # DynamoDB's account endpoints exist under both suffixes (botocore's endpoint rules).
        return _ACCOUNT.match(head) is not None
    name = _endpoint_label(service)
    if name is None or dual_stack_suffix:
        return False
    if name in _ACCESS_POINT_ENDPOINTS:
        return _ACCESS_POINT.match(head) is not None
    if name in _CONTROL_ENDPOINTS:
        return _ACCOUNT.match(head) is not None
    express = _EXPRESS_ENDPOINT.match(name)
    if express is not None:
        bucket = _EXPRESS_BUCKET.match(head)
        return bucket is not None and bucket[2] == express[1]
    return False


@lru_cache(maxsize=4096)
def aws_operated(host: str) -> bool:
    """Whether `host` (lower case, no port, no trailing dot) has a shape AWS itself answers."""
    if host in CATALOG.hosts:
        return True
    split = _split_suffix(host)
    if split is None:
        return False
    labels, suffix = split
    dual_stack_suffix = suffix in _DUAL_STACK_SUFFIXES
    if len(labels) == 2 and labels[1] == _LEGACY_SQS_LABEL and _is_region(labels[0]):
        return True
    if _regional(labels) or _region_less(labels) or _s3_express_endpoint(labels):
        return True
    if _leading_label(labels, dual_stack_suffix):
        return True
    # S3 spells dual-stack as a `dualstack` label: buckets never sit under `api.aws`.
    return not dual_stack_suffix and _s3_bucket(labels)
