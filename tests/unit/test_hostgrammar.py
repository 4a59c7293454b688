"""The host grammar: which names a wildcard in allow_hosts admits (AWS answers them) and
which it refuses (someone else owns the label in front)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import botocore
import pytest

from proxy.aws.hostgrammar import aws_operated, is_bucket_name

ADMITTED = [
    "ec2.us-east-1.amazonaws.com",
    "sts.amazonaws.com",
    "iam.amazonaws.com",
    "iam.global.api.aws",
    "s3.amazonaws.com",
    "route53.amazonaws.com",
    "cloudfront.amazonaws.com",
    "sts.us-gov-west-1.amazonaws.com",
    "ec2.cn-north-1.amazonaws.com.cn",
    "ec2.eu-isoe-west-1.cloud.adc-e.uk",
    "ec2.us-iso-east-1.c2s.ic.gov",
    "ec2.us-isob-east-1.sc2s.sgov.gov",
    "ec2.us-isof-south-1.csp.hci.ic.gov",
    "ec2.us-east-1.api.aws",
    "ec2-fips.us-east-1.amazonaws.com",
    "ec2-fips.us-east-1.api.aws",
    "fips.batch.us-east-1.amazonaws.com",
    "api.detective-fips.us-east-1.amazonaws.com",
    "runtime.sagemaker.us-east-1.amazonaws.com",
    "runtime-fips.sagemaker.us-east-1.amazonaws.com",
    "streams.dynamodb.us-east-1.amazonaws.com",
    "sqs.us-east-1.amazonaws.com",
    "us-west-2.queue.amazonaws.com",
    "queue.amazonaws.com",
    "s3.dualstack.us-west-2.amazonaws.com",
    "s3-fips.dualstack.us-east-1.amazonaws.com",
    "s3-us-west-2.amazonaws.com",
    "s3-fips-us-gov-west-1.amazonaws.com",
    "my-bucket.s3.amazonaws.com",
    "my.dotted.bucket.s3.amazonaws.com",
    "eu-west-1.s3.amazonaws.com",  # a bucket named like a region
    "my-bucket.s3.eu-west-1.amazonaws.com",
    "a.b-c.s3.eu-west-1.amazonaws.com",
    "my-bucket.s3-eu-west-1.amazonaws.com",
    "my.bucket.s3-us-west-2.amazonaws.com",
    "my-bucket.s3-external-1.amazonaws.com",
    "my-bucket.s3.dualstack.ap-south-1.amazonaws.com",
    "my.b.s3.dualstack.ap-south-1.amazonaws.com",
    "my-bucket.s3-fips.us-gov-west-1.amazonaws.com",
    "my.b.s3-fips.dualstack.us-east-1.amazonaws.com",
    "my-bucket.s3.cn-north-1.amazonaws.com.cn",
    "myap-abcdefgh12345-s3alias.s3.us-east-1.amazonaws.com",  # access point alias
    "reports-123456789012.s3-accesspoint.us-west-2.amazonaws.com",
    "reports-123456789012.s3-accesspoint.dualstack.us-west-2.amazonaws.com",
    "reports-123456789012.s3-accesspoint-fips.us-east-1.amazonaws.com",
    "bkt--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com",
    "bkt--usw2-lax1-az1--x-s3.s3express-usw2-lax1-az1.us-west-2.amazonaws.com",
    "s3express-usw2-az1.us-west-2.amazonaws.com",
    "s3express-control.us-west-2.amazonaws.com",
    "s3express-control-fips.dualstack.us-east-1.amazonaws.com",
    "b--use1-az4--x-s3.s3express-fips-use1-az4.dualstack.us-east-1.amazonaws.com",
    "123456789012.ddb.us-east-1.amazonaws.com",
    "123456789012.ddb.us-east-1.api.aws",  # botocore's DynamoDB rules: dual-stack too
    "123456789012.search-ddb.us-east-1.amazonaws.com",
    "123456789012.s3-control.us-east-1.amazonaws.com",
    "123456789012.s3-control.dualstack.us-east-1.amazonaws.com",
    "123456789012.s3-control-fips.us-east-1.amazonaws.com",
    "execute-api.us-east-1.amazonaws.com",  # the service name itself, no API id
]

REFUSED = [
    "elb.amazonaws.com",  # one label before a suffix: no endpoint (was a ValueError)
    "nosuchservice.api.aws",
    "attacker-api.execute-api.us-east-1.amazonaws.com",
    "attacker.execute-api.eu-west-1.api.aws",
    "whatever.ec2.us-east-1.amazonaws.com",
    "x.sts.us-east-1.amazonaws.com",
    "x.dynamodb.us-east-1.amazonaws.com",
    "ap-111122223333.s3-object-lambda.us-east-1.amazonaws.com",
    "olap--ol-s3.s3.us-east-1.amazonaws.com",
    "my-lb-1234567890.us-east-1.elb.amazonaws.com",
    "internal-my-lb-1.us-west-2.elb.amazonaws.com",
    "ec2-203-0-113-25.compute-1.amazonaws.com",
    "ec2-203-0-113-25.us-west-2.compute.amazonaws.com",
    "my-bucket.s3-website-us-east-1.amazonaws.com",
    "my-bucket.s3-website.eu-west-1.amazonaws.com",
    "d111111abcdef8.cloudfront.net",
    "abc.cloudfront.amazonaws.com",
    "abcdefg.lambda-url.us-east-1.on.aws",
    "abc.us-east-1.awsapprunner.com",
    "search-dom-abc.us-east-1.es.amazonaws.com",
    "mydb.abc123.us-east-1.rds.amazonaws.com",
    "abc.appsync-api.us-east-1.amazonaws.com",
    "abcd.iot.us-east-1.amazonaws.com",
    "a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com",
    "vpce-0abc-123.ec2.us-east-1.vpce.amazonaws.com",
    "mrap.accesspoint.s3-global.amazonaws.com",
    "x.s3-outposts.us-east-1.amazonaws.com",
    "bad..bucket.s3.amazonaws.com",
    "192.168.1.1.s3.amazonaws.com",
    "ab.s3.amazonaws.com",  # bucket names have 3 characters at least
    "-bucket.s3.amazonaws.com",
    "bkt--x-s3.s3.us-east-1.amazonaws.com",  # directory buckets live on s3express only
    "x.s3express-control.us-west-2.amazonaws.com",
    "b--use1-az4--x-s3.s3express-use1-az4.us-east-1.api.aws",
    "b--use1-az4--x-s3.s3express-use1-az4.x.us-east-1.amazonaws.com",
    "123456789012.ddb.dualstack.us-east-1.amazonaws.com",
    "my-bucket.s3-accelerate.amazonaws.com",  # not supported: see README
    "b.ec2.s3-outposts.us-east-1.amazonaws.com",
    "bkt--use1-az4--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com",
    "reports-12345.s3-accesspoint.us-west-2.amazonaws.com",
    "12345.ddb.us-east-1.amazonaws.com",
    "x.123456789012.ddb.us-east-1.amazonaws.com",
    "my-bucket.s3.us-east-1.api.aws",
    "ec2.notaregion.amazonaws.com",
    "nosuchservice.us-east-1.amazonaws.com",
    "ec2.fips.us-east-1.amazonaws.com",
    "fips.ec2-fips.us-east-1.amazonaws.com",
    "ec2.dualstack.dualstack.us-east-1.amazonaws.com",
    "amazonaws.com",
    "evilamazonaws.com",
    "example.com",
    "127.0.0.1",
    "ec2.us-east-1.amazonaws.com.evil.org",
    "ec2_x.us-east-1.amazonaws.com",
]


@pytest.mark.parametrize("host", ADMITTED)
def test_names_aws_answers_are_admitted(host: str) -> None:
    assert aws_operated(host)


@pytest.mark.parametrize("host", REFUSED)
def test_names_someone_else_owns_are_refused(host: str) -> None:
    assert not aws_operated(host)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("abc", True),
        ("my.dotted-bucket", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("ab", False),
        ("Upper", False),
        ("a..b", False),
        ("a.-b", False),
        ("a-.b", False),
        ("-ab", False),
        ("ab-", False),
        ("10.0.0.1", False),
        ("xn--abc", False),
        ("sthree-abc", False),
        ("abc--ol-s3", False),
        ("abc--x-s3", False),
        ("abc.mrap", False),
    ],
)
def test_bucket_naming_rules(name: str, valid: bool) -> None:
    assert is_bucket_name(name) is valid


def _tag_variant(tags: list[str], *candidates: list[Any] | None) -> dict[str, Any]:
    for variants in candidates:
        for variant in variants or []:
            if sorted(variant["tags"]) == sorted(tags):
                return dict(variant)
    return {}


def _botocore_hostnames() -> list[str]:
    """Every hostname botocore's endpoint data resolves to for a real region, variants too."""
    data = json.loads((Path(botocore.__file__).parent / "data" / "endpoints.json").read_text())
    hosts: list[str] = []
    for partition in data["partitions"]:
        defaults, suffix = partition["defaults"], partition["dnsSuffix"]
        regions = re.compile(partition["regionRegex"])
        for service, spec in partition["services"].items():
            service_defaults = spec.get("defaults", {})
            for region, endpoint in spec.get("endpoints", {}).items():
                if endpoint.get("deprecated") or (
                    "hostname" not in endpoint and not regions.match(region)
                ):
                    continue
                spelled = [
                    (
                        endpoint.get("hostname")
                        or service_defaults.get("hostname")
                        or defaults["hostname"],
                        suffix,
                    )
                ]
                for variant in endpoint.get("variants", []):
                    fallback = _tag_variant(
                        variant["tags"], service_defaults.get("variants"), defaults["variants"]
                    )
                    template = variant.get("hostname") or fallback.get("hostname")
                    if template:
                        spelled.append(
                            (
                                template,
                                variant.get("dnsSuffix") or fallback.get("dnsSuffix") or suffix,
                            )
                        )
                for template, dns_suffix in spelled:
                    host = (
                        template.replace("{service}", service)
                        .replace("{region}", region)
                        .replace("{dnsSuffix}", dns_suffix)
                    )
                    if "{" not in host and ":" not in host:
                        hosts.append(host)
    return hosts


# botocore names it, but no endpoint prefix in our data does: listed exactly when wanted.
_NOT_IN_OUR_DATA = {"mturk-requester-sandbox.us-east-1.amazonaws.com"}


def test_every_hostname_in_botocores_endpoint_data_is_admitted() -> None:
    hosts = _botocore_hostnames()
    assert len(hosts) > 5000
    refused = sorted({h for h in hosts if not aws_operated(h)} - _NOT_IN_OUR_DATA)
    assert refused == []


# Rule-set hosts deliberately left to exact entries: an Object Lambda access point runs its
# owner's function; Outposts, Transfer Acceleration and multi-region access points are not
# in the grammar (README); `{url#...}` templates are a custom endpoint.
_LEFT_TO_EXACT_ENTRIES = ("s3-object-lambda", "s3-outposts", "s3-accelerate", "s3-global")
# Rule-set endpoints whose prefix no service model names (so neither does our data).
_NO_PREFIX_IN_OUR_DATA = {
    "dynamodb": [
        "search-dynamodb-fips.us-west-2.amazonaws.com",
        "search-dynamodb-fips.us-west-2.api.aws",
        "search-dynamodb.us-west-2.amazonaws.com",
        "search-dynamodb.us-west-2.api.aws",
    ]
}
_TEMPLATE_VALUES = {
    "{Region}": "us-west-2",
    "{bucketArn#region}": "us-west-2",
    "{accessPointArn#region}": "us-west-2",
    "{AccountId}": "123456789012",
    "{ParsedArn#accountId}": "123456789012",
    "{bucketArn#accountId}": "123456789012",
    "{accessPointName}": "reports",
    "{s3expressAvailabilityZoneId}": "usw2-az1",
}


def _rule_set_hosts(service: str) -> list[str]:
    """Hosts of the endpoint URL templates in botocore's rule set for `service`."""
    folder = Path(botocore.__file__).parent / "data" / service
    rules = sorted(folder.glob("*/endpoint-rule-set-1.json*"))[-1]  # the newest API version
    opener: Any = gzip.open if rules.suffix == ".gz" else open
    with opener(rules, "rt", encoding="utf-8") as handle:
        text = handle.read()
    hosts = set()
    for url in re.findall(r'"url": "https://([^"/]+)', text):
        if "{url#" in url or "{outpostId}" in url:
            continue
        bucket = "b--usw2-az1--x-s3" if "s3express" in url else "my-bucket"
        host = re.sub(r"\{\w+#dnsSuffix\}", "amazonaws.com", url)
        host = re.sub(r"\{\w+#dualStackDnsSuffix\}", "api.aws", host)
        for name, value in {**_TEMPLATE_VALUES, "{Bucket}": bucket}.items():
            host = host.replace(name, value)
        assert "{" not in host, host
        hosts.add(host)
    return sorted(hosts)


@pytest.mark.parametrize("service", ["s3", "s3control", "dynamodb"])
def test_hosts_of_botocores_endpoint_rules_are_admitted(service: str) -> None:
    hosts = _rule_set_hosts(service)
    admitted = {h for h in hosts if not any(f".{x}" in h for x in _LEFT_TO_EXACT_ENTRIES)}
    left = set(hosts) - admitted
    refused = sorted(h for h in admitted if not aws_operated(h))
    assert refused == _NO_PREFIX_IN_OUR_DATA.get(service, [])
    assert sorted(h for h in left if aws_operated(h)) == []
