"""Host -> signing service, region and bucket, for every host form AWS and its SDKs use."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore
import pytest

from proxy.aws.endpoints import CATALOG, Endpoint, endpoint_for_host, service_prefix

DEFAULT = "eu-central-1"


def ep(service: str, prefix: str, region: str, bucket: str | None = None) -> Endpoint:
    return Endpoint(service=service, endpoint_prefix=prefix, region=region, bucket=bucket)


HOSTS = [
    # regional
    ("ec2.us-east-1.amazonaws.com", ep("ec2", "ec2", "us-east-1")),
    ("dynamodb.eu-west-1.amazonaws.com", ep("dynamodb", "dynamodb", "eu-west-1")),
    ("sts.ap-southeast-2.amazonaws.com", ep("sts", "sts", "ap-southeast-2")),
    ("sqs.us-west-2.amazonaws.com", ep("sqs", "sqs", "us-west-2")),
    ("monitoring.us-east-2.amazonaws.com", ep("monitoring", "monitoring", "us-east-2")),
    ("ec2.us-gov-west-1.amazonaws.com", ep("ec2", "ec2", "us-gov-west-1")),
    ("ec2.il-central-1.amazonaws.com", ep("ec2", "ec2", "il-central-1")),
    # China
    ("ec2.cn-north-1.amazonaws.com.cn", ep("ec2", "ec2", "cn-north-1")),
    ("s3.cn-northwest-1.amazonaws.com.cn", ep("s3", "s3", "cn-northwest-1")),
    ("b1.s3.cn-north-1.amazonaws.com.cn", ep("s3", "s3", "cn-north-1", "b1")),
    # dual-stack
    ("ec2.us-east-1.api.aws", ep("ec2", "ec2", "us-east-1")),
    ("sqs.eu-west-1.api.aws", ep("sqs", "sqs", "eu-west-1")),
    ("s3.dualstack.us-west-2.amazonaws.com", ep("s3", "s3", "us-west-2")),
    ("ec2.dualstack.us-east-1.amazonaws.com", ep("ec2", "ec2", "us-east-1")),
    ("ec2.cn-north-1.api.amazonwebservices.com.cn", ep("ec2", "ec2", "cn-north-1")),
    # FIPS
    ("ec2-fips.us-east-1.amazonaws.com", ep("ec2", "ec2", "us-east-1")),
    ("dynamodb-fips.us-west-2.amazonaws.com", ep("dynamodb", "dynamodb", "us-west-2")),
    ("fips.batch.us-east-1.amazonaws.com", ep("batch", "batch", "us-east-1")),
    ("fips.eks.us-west-2.amazonaws.com", ep("eks", "eks", "us-west-2")),
    (
        "runtime-fips.sagemaker.us-east-1.amazonaws.com",
        ep("sagemaker", "runtime.sagemaker", "us-east-1"),
    ),
    ("s3-fips.dualstack.us-east-1.amazonaws.com", ep("s3", "s3", "us-east-1")),
    ("ec2-fips.us-east-1.api.aws", ep("ec2", "ec2", "us-east-1")),
    ("sts-fips.us-east-2.amazonaws.com", ep("sts", "sts", "us-east-2")),
    # global endpoints
    ("sts.amazonaws.com", ep("sts", "sts", "us-east-1")),
    ("iam.amazonaws.com", ep("iam", "iam", "us-east-1")),
    ("iam-fips.amazonaws.com", ep("iam", "iam", "us-east-1")),
    ("iam.global.api.aws", ep("iam", "iam", "us-east-1")),
    ("s3.amazonaws.com", ep("s3", "s3", "us-east-1")),
    ("route53.amazonaws.com", ep("route53", "route53", "us-east-1")),
    ("cloudfront.amazonaws.com", ep("cloudfront", "cloudfront", "us-east-1")),
    ("organizations.us-east-1.amazonaws.com", ep("organizations", "organizations", "us-east-1")),
    ("budgets.amazonaws.com", ep("budgets", "budgets", "us-east-1")),
    ("global.health.amazonaws.com", ep("health", "health", "us-east-1")),
    ("iam.cn-north-1.amazonaws.com.cn", ep("iam", "iam", "cn-north-1")),
    ("iam.us-gov.amazonaws.com", ep("iam", "iam", "us-gov-west-1")),
    ("route53.us-gov.amazonaws.com", ep("route53", "route53", "us-gov-west-1")),
    ("ec2.amazonaws.com", ep("ec2", "ec2", "us-east-1")),  # legacy: the us-east-1 endpoint
    # prefix and signing name differ
    ("email.us-east-1.amazonaws.com", ep("ses", "email", "us-east-1")),
    ("streams.dynamodb.us-east-1.amazonaws.com", ep("dynamodb", "streams.dynamodb", "us-east-1")),
    ("api.ecr.eu-west-1.amazonaws.com", ep("ecr", "api.ecr", "eu-west-1")),
    (
        "runtime.sagemaker.us-east-1.amazonaws.com",
        ep("sagemaker", "runtime.sagemaker", "us-east-1"),
    ),
    ("api.sagemaker.us-east-1.amazonaws.com", ep("sagemaker", "api.sagemaker", "us-east-1")),
    ("data.iot.us-east-1.amazonaws.com", ep("iotdata", "data.iot", "us-east-1")),
    ("data-ats.iot.us-east-1.amazonaws.com", ep("iotdata", "data-ats.iot", "us-east-1")),
    ("a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com", ep("iotdata", "data-ats.iot", "eu-west-1")),
    ("iot.us-east-1.amazonaws.com", ep("iot", "iot", "us-east-1")),
    ("runtime.lex.us-east-1.amazonaws.com", ep("lex", "runtime.lex", "us-east-1")),
    ("models.lex.us-east-1.amazonaws.com", ep("lex", "models.lex", "us-east-1")),
    ("portal.sso.us-east-1.amazonaws.com", ep("awsssoportal", "portal.sso", "us-east-1")),
    (
        "mobiletargeting.us-east-1.amazonaws.com",
        ep("mobiletargeting", "mobiletargeting", "us-east-1"),
    ),
    ("rds.us-east-1.amazonaws.com", ep("rds", "rds", "us-east-1")),
    (
        "abc123def.execute-api.us-east-1.amazonaws.com",
        ep("execute-api", "execute-api", "us-east-1"),
    ),
    # SQS legacy hosts
    ("us-west-2.queue.amazonaws.com", ep("sqs", "queue", "us-west-2")),
    ("queue.amazonaws.com", ep("sqs", "queue", "us-east-1")),
    # S3 path style and legacy
    ("s3.us-west-2.amazonaws.com", ep("s3", "s3", "us-west-2")),
    ("s3-us-west-2.amazonaws.com", ep("s3", "s3", "us-west-2")),
    ("s3-external-1.amazonaws.com", ep("s3", "s3", "us-east-1")),
    ("s3-fips.us-east-1.amazonaws.com", ep("s3", "s3", "us-east-1")),
    # S3 virtual-host style
    ("my-bucket.s3.us-west-2.amazonaws.com", ep("s3", "s3", "us-west-2", "my-bucket")),
    ("my-bucket.s3.amazonaws.com", ep("s3", "s3", "us-east-1", "my-bucket")),
    ("my-bucket.s3.dualstack.eu-west-1.amazonaws.com", ep("s3", "s3", "eu-west-1", "my-bucket")),
    ("my-bucket.s3-us-west-2.amazonaws.com", ep("s3", "s3", "us-west-2", "my-bucket")),
    ("my-bucket.s3-external-1.amazonaws.com", ep("s3", "s3", "us-east-1", "my-bucket")),
    ("my-bucket.s3-fips.us-east-1.amazonaws.com", ep("s3", "s3", "us-east-1", "my-bucket")),
    (
        "my.dotted.bucket.s3.us-east-1.amazonaws.com",
        ep("s3", "s3", "us-east-1", "my.dotted.bucket"),
    ),
    ("my.dotted.bucket.s3.amazonaws.com", ep("s3", "s3", "us-east-1", "my.dotted.bucket")),
    # buckets named like markers stay buckets
    ("data-fips.s3.us-east-1.amazonaws.com", ep("s3", "s3", "us-east-1", "data-fips")),
    ("s3.s3.us-east-1.amazonaws.com", ep("s3", "s3", "us-east-1", "s3")),
    ("ec2.s3.us-east-1.amazonaws.com", ep("s3", "s3", "us-east-1", "ec2")),
    ("logs-us-east-1.s3.us-east-1.amazonaws.com", ep("s3", "s3", "us-east-1", "logs-us-east-1")),
    # buckets named like regions
    ("eu-west-1.s3.amazonaws.com", ep("s3", "s3", "us-east-1", "eu-west-1")),
    ("eu-west-1.s3.us-west-2.amazonaws.com", ep("s3", "s3", "us-west-2", "eu-west-1")),
    ("us-east-1.s3-us-west-2.amazonaws.com", ep("s3", "s3", "us-west-2", "us-east-1")),
    ("eu-west-1.s3-external-1.amazonaws.com", ep("s3", "s3", "us-east-1", "eu-west-1")),
    # S3 control, access points, object lambda, express
    ("123456789012.s3-control.us-east-1.amazonaws.com", ep("s3", "s3-control", "us-east-1")),
    ("s3-control.us-west-2.amazonaws.com", ep("s3", "s3-control", "us-west-2")),
    (
        "123456789012.s3-control.dualstack.us-east-1.amazonaws.com",
        ep("s3", "s3-control", "us-east-1"),
    ),
    (
        "reports-123456789012.s3-accesspoint.us-west-2.amazonaws.com",
        ep("s3", "s3-accesspoint", "us-west-2", "reports-123456789012"),
    ),
    (
        "reports-123456789012.s3-accesspoint.dualstack.us-west-2.amazonaws.com",
        ep("s3", "s3-accesspoint", "us-west-2", "reports-123456789012"),
    ),
    (
        "olap-123456789012.s3-object-lambda.us-east-1.amazonaws.com",
        ep("s3-object-lambda", "s3-object-lambda", "us-east-1", "olap-123456789012"),
    ),
    (
        "bkt--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com",
        ep("s3express", "s3express", "us-west-2", "bkt--usw2-az1--x-s3"),
    ),
    (
        "s3express-control.us-west-2.amazonaws.com",
        ep("s3express", "s3express-control", "us-west-2"),
    ),
    (
        "s3express-control-fips.dualstack.us-east-1.amazonaws.com",
        ep("s3express", "s3express-control", "us-east-1"),
    ),
    ("123456789012.ddb.eu-west-1.amazonaws.com", ep("dynamodb", "dynamodb", "eu-west-1")),
    ("123456789012.ddb.eu-west-1.api.aws", ep("dynamodb", "dynamodb", "eu-west-1")),
    ("123456789012.search-ddb.us-east-1.amazonaws.com", ep("dynamodb", "dynamodb", "us-east-1")),
    # unknown but well formed: the label is the signing name
    ("brandnew.us-east-1.amazonaws.com", ep("brandnew", "brandnew", "us-east-1")),
    ("brandnew-fips.us-east-1.amazonaws.com", ep("brandnew", "brandnew", "us-east-1")),
    ("api.brandnew.eu-west-1.amazonaws.com", ep("brandnew", "api.brandnew", "eu-west-1")),
    # not AWS-scoped in the name: the default region signs
    ("brandnew.global.api.aws", ep("brandnew", "brandnew", DEFAULT)),
    # normalisation of what callers may still pass
    ("EC2.US-EAST-1.AMAZONAWS.COM", ep("ec2", "ec2", "us-east-1")),
    ("ec2.us-east-1.amazonaws.com.", ep("ec2", "ec2", "us-east-1")),
]


@pytest.mark.parametrize(("host", "expected"), HOSTS, ids=[h for h, _ in HOSTS])
def test_host_forms(host: str, expected: Endpoint) -> None:
    assert endpoint_for_host(host, DEFAULT) == expected


NOT_AWS = [
    "example.com",
    "localhost",
    "127.0.0.1",
    "amazonaws.com",
    "api.aws",
    "evilamazonaws.com",
    "ec2.us-east-1.amazonaws.com.evil.example",
    "amazonaws.com.cn.example.org",
    "s3.amazonaws.co",
    "",
    "..amazonaws.com",
    "bad..s3.amazonaws.com",
    "bad_label!.us-east-1.amazonaws.com",
    "us-east-1.amazonaws.com",  # a region and nothing to sign for
    "ec2.us-east-1.extra.amazonaws.com",  # labels after the region that are not the SQS form
    "global.api.aws",
    "us-west-2.notqueue.amazonaws.com",  # only SQS put its name after the region
]


@pytest.mark.parametrize("host", NOT_AWS)
def test_not_aws_hosts_resolve_to_none(host: str) -> None:
    assert endpoint_for_host(host, DEFAULT) is None


def test_default_region_is_only_used_when_the_host_has_none() -> None:
    assert endpoint_for_host("ec2.eu-west-3.amazonaws.com", "ap-south-1") == ep(
        "ec2", "ec2", "eu-west-3"
    )
    unknown = endpoint_for_host("brandnew.global.api.aws", "ap-south-1")
    assert unknown is not None
    assert unknown.region == "ap-south-1"


def test_signing_names_from_botocore_data() -> None:
    expected = {
        "email": "ses",
        "streams.dynamodb": "dynamodb",
        "api.ecr": "ecr",
        "runtime.sagemaker": "sagemaker",
        "runtime.lex": "lex",
        "data.iot": "iotdata",
        "monitoring": "monitoring",
        "s3-control": "s3",
        "execute-api": "execute-api",
    }
    assert {prefix: service_prefix(prefix).signing_name for prefix in expected} == expected


def test_protocol_and_target_facts() -> None:
    assert service_prefix("ec2").protocols == {"ec2"}
    assert "query" in service_prefix("sts").protocols
    assert {"json", "query"} <= service_prefix("sqs").protocols
    assert service_prefix("dynamodb").target_prefixes == {"DynamoDB_20120810"}
    assert service_prefix("s3").protocols == {"rest-xml"}
    assert service_prefix("no-such-prefix").protocols == frozenset()


def _botocore_endpoint_hosts() -> Iterator[tuple[str, str, str]]:
    """(host, signing service, region) for every hostname botocore's endpoints.json builds."""
    data = Path(botocore.__file__).parent / "data" / "endpoints.json"
    raw: dict[str, Any] = json.loads(data.read_text(encoding="utf-8"))
    for partition in raw["partitions"]:
        for prefix, service in partition["services"].items():
            defaults = service.get("defaults", {})
            template = defaults.get("hostname") or partition["defaults"]["hostname"]
            for key, endpoint in service["endpoints"].items():
                scope = {
                    **defaults.get("credentialScope", {}),
                    **endpoint.get("credentialScope", {}),
                }
                region = scope.get("region", key)
                if not CATALOG.region_pattern.match(region):
                    continue
                default_host = (
                    template.replace("{service}", prefix)
                    .replace("{region}", key)
                    .replace("{dnsSuffix}", partition["dnsSuffix"])
                )
                # pseudo-region keys ('fips-us-east-1', 'dkr-us-east-2') only count with an
                # explicit hostname: their template expansion is no real host
                hosts = [endpoint.get("hostname")] if "hostname" in endpoint else []
                if not hosts and CATALOG.region_pattern.match(key):
                    hosts = [default_host]
                hosts += [v["hostname"] for v in endpoint.get("variants", []) if "hostname" in v]
                for host in hosts:
                    if ":" in host:  # local endpoints such as localhost:8000
                        continue
                    yield host, scope.get("service", ""), region


def test_every_botocore_endpoint_host_resolves_to_its_credential_scope() -> None:
    checked = 0
    wrong = []
    for host, scoped_service, region in _botocore_endpoint_hosts():
        got = endpoint_for_host(host, "xx-nowhere-1")
        checked += 1
        if got is None or got.region != region:
            wrong.append((host, region, got))
        elif scoped_service and got.service != scoped_service:
            wrong.append((host, scoped_service, got))
    assert checked > 5000
    assert wrong == []


def test_lookup_is_fast_and_cached() -> None:
    endpoint_for_host.cache_clear()
    # CPU time, not wall time: a loaded machine stretches the wall clock, not the work. The
    # bound guards against a pathological (say quadratic) lookup, it is no benchmark.
    started = time.process_time()
    for i in range(2000):
        endpoint_for_host(f"bucket{i}.s3.us-west-2.amazonaws.com", DEFAULT)
    assert time.process_time() - started < 1.0
    # Cached: counted by the cache itself (two timings compared would flip under a stall).
    before = endpoint_for_host.cache_info()
    for _ in range(2000):
        endpoint_for_host("ec2.us-east-1.amazonaws.com", DEFAULT)
    after = endpoint_for_host.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1999)
    assert endpoint_for_host.cache_info().maxsize == 1024
