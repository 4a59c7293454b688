"""Operation classification: query, EC2, JSON, CBOR, S3 REST, and the bounded metric label."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.aws import s3ops
from proxy.aws.endpoints import Endpoint, endpoint_for_host
from proxy.aws.operations import MAX_FORM_BODY, Operation, classify, known_operations

FORM = "application/x-www-form-urlencoded; charset=utf-8"


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


NO_HEADERS = headers()


def endpoint(host: str) -> Endpoint:
    found = endpoint_for_host(host, "us-east-1")
    assert found is not None
    return found


EC2 = endpoint("ec2.us-east-1.amazonaws.com")
STS = endpoint("sts.amazonaws.com")
SQS = endpoint("sqs.us-west-2.amazonaws.com")
DDB = endpoint("dynamodb.us-east-1.amazonaws.com")
S3_PATH = endpoint("s3.us-west-2.amazonaws.com")
S3_VHOST = endpoint("photos.s3.us-west-2.amazonaws.com")


# --- query and EC2 protocols -------------------------------------------------------------

QUERY_CASES = [
    # (host, method, query, content type, body, name, protocol)
    (
        "ec2.us-east-1.amazonaws.com",
        "GET",
        "Action=DescribeInstances&Version=2016-11-15",
        "",
        None,
        "DescribeInstances",
        "ec2",
    ),
    (
        "ec2.us-east-1.amazonaws.com",
        "POST",
        "",
        FORM,
        b"Action=RunInstances&ImageId=ami-1&MinCount=1&MaxCount=1&Version=2016-11-15",
        "RunInstances",
        "ec2",
    ),
    (
        "ec2.us-east-1.amazonaws.com",
        "POST",
        "",
        FORM,
        b"Version=2016-11-15&ResourceId.1=i-1&Action=CreateTags",
        "CreateTags",
        "ec2",
    ),
    (
        "ec2.us-east-1.amazonaws.com",
        "POST",
        "",
        "application/x-www-form-urlencoded",
        b"Action=TerminateInstances&InstanceId.1=i-1",
        "TerminateInstances",
        "ec2",
    ),
    (
        "sts.amazonaws.com",
        "POST",
        "",
        FORM,
        b"Action=GetCallerIdentity&Version=2011-06-15",
        "GetCallerIdentity",
        "query",
    ),
    (
        "sts.us-west-2.amazonaws.com",
        "GET",
        "Version=2011-06-15&Action=AssumeRole&RoleArn=x",
        "",
        None,
        "AssumeRole",
        "query",
    ),
    (
        "iam.amazonaws.com",
        "POST",
        "",
        FORM,
        b"Action=ListUsers&Version=2010-05-08",
        "ListUsers",
        "query",
    ),
    (
        "sns.eu-west-1.amazonaws.com",
        "POST",
        "",
        FORM,
        b"Action=Publish&TopicArn=arn&Message=hello+world%26Action%3DDeleteTopic",
        "Publish",
        "query",
    ),
    (
        "autoscaling.us-east-1.amazonaws.com",
        "POST",
        "",
        FORM,
        b"Action=DescribeAutoScalingGroups&Version=2011-01-01",
        "DescribeAutoScalingGroups",
        "query",
    ),
    (
        "elasticloadbalancing.us-east-1.amazonaws.com",
        "GET",
        "Action=DescribeLoadBalancers&Version=2015-12-01",
        "",
        None,
        "DescribeLoadBalancers",
        "query",
    ),
    (
        "monitoring.us-east-1.amazonaws.com",
        "POST",
        "",
        FORM,
        b"Action=PutMetricData&Namespace=App&Version=2010-08-01",
        "PutMetricData",
        "query",
    ),
    ("email.us-east-1.amazonaws.com", "POST", "", FORM, b"Action=SendEmail", "SendEmail", "query"),
    # the query string wins nothing over the body: both say the same thing
    (
        "ec2.us-east-1.amazonaws.com",
        "POST",
        "Action=DescribeVpcs",
        FORM,
        b"Action=DescribeVpcs",
        "DescribeVpcs",
        "ec2",
    ),
]


@pytest.mark.parametrize(
    ("host", "method", "query", "ctype", "body", "name", "protocol"), QUERY_CASES
)
def test_query_protocol(
    host: str, method: str, query: str, ctype: str, body: bytes | None, name: str, protocol: str
) -> None:
    hdrs = headers(content_type=ctype) if ctype else NO_HEADERS
    op = classify(method, endpoint(host), "/", query, hdrs, body)
    assert (op.name, op.protocol, op.label) == (name, protocol, name)
    assert (op.bucket, op.key) == (None, None)


@pytest.mark.parametrize(
    ("method", "query", "body", "unfiltered"),
    [
        ("GET", "Action=DescribeInstances&Version=2016-11-15", None, True),
        ("POST", "", b"Action=DescribeInstances&Version=2016-11-15", True),
        ("POST", "", b"Action=DescribeInstances&DryRun=true", True),
        ("GET", "Action=DescribeInstances&Filter.1.Name=tag%3Aapp&Filter.1.Value.1=x", None, False),
        ("POST", "", b"Action=DescribeInstances&Filter.1.Name=instance-state-name", False),
        ("POST", "", b"Action=DescribeInstances&InstanceId.1=i-0123", False),
        ("POST", "", b"Action=DescribeVolumes&VolumeId.1=vol-1", False),
        ("GET", "Action=DescribeInstances&MaxResults=5", None, False),
        ("POST", "", b"Action=DescribeSnapshots&NextToken=abc", False),
        # The action in the query, the filter in the form body: still filtered.
        ("POST", "Action=DescribeInstances", b"Filter.1.Name=vpc-id", False),
        # Only non-mutating calls are counted this way; a mutating call never is.
        ("POST", "", b"Action=RunInstances&MinCount=1", False),
    ],
)
def test_ec2_unfiltered_unpaginated_calls_are_told_apart(
    method: str, query: str, body: bytes | None, unfiltered: bool
) -> None:
    hdrs = headers(content_type=FORM) if body else NO_HEADERS
    op = classify(method, EC2, "/", query, hdrs, body)
    assert op.name is not None
    assert op.unfiltered is unfiltered


@pytest.mark.parametrize(
    ("method", "query", "body", "resources"),
    [
        # Three distinct instances, in the form body as the SDKs send them.
        (
            "POST",
            "",
            b"Action=TerminateInstances&InstanceId.1=i-1&InstanceId.2=i-2&InstanceId.3=i-3",
            3,
        ),
        # The same instance named twice is one instance.
        ("POST", "", b"Action=StopInstances&InstanceId.1=i-1&InstanceId.2=i-1", 1),
        # In the query string (GET), numbering need not be dense.
        ("GET", "Action=StartInstances&InstanceId.1=i-1&InstanceId.7=i-2", None, 2),
        # Split between query and body: both count.
        ("POST", "Action=StopInstances&InstanceId.1=i-1", b"InstanceId.2=i-2", 2),
        # Percent-encoded parameter names are decoded first.
        ("POST", "", b"Action=TerminateInstances&InstanceId%2E1=a&InstanceId.2=b", 2),
        # Other list parameters are not instances.
        ("POST", "", b"Action=StopInstances&InstanceId.1=i-1&Filter.1.Name=x", 1),
        # No instance named: AWS's to refuse; it costs one.
        ("POST", "", b"Action=TerminateInstances", 1),
        # RunInstances is charged its MaxCount, the most AWS may launch.
        ("POST", "", b"Action=RunInstances&MinCount=1&MaxCount=8", 8),
        ("GET", "Action=RunInstances&MaxCount=25", None, 25),
        # No MaxCount, or one that is not a count: 1.
        ("POST", "", b"Action=RunInstances&MinCount=4", 1),
        ("POST", "", b"Action=RunInstances&MaxCount=-3", 1),
        ("POST", "", b"Action=RunInstances&MaxCount=0", 1),
        ("POST", "", b"Action=RunInstances&MaxCount=%C2%B2", 1),
        # A MaxCount past any bucket is bounded, not parsed without end.
        ("POST", "", b"Action=RunInstances&MaxCount=" + b"9" * 5000, 1_000_000),
        # A repeated MaxCount is charged its largest (a client cannot hide a launch behind 1).
        ("POST", "", b"Action=RunInstances&MaxCount=1&MaxCount=900", 900),
        ("GET", "Action=RunInstances&MaxCount=700&MaxCount=7", None, 700),
        # Calls that are not priced by instances cost one whatever they name.
        ("POST", "", b"Action=DescribeInstances&InstanceId.1=a&InstanceId.2=b", 1),
        ("POST", "", b"Action=RebootInstances&InstanceId.1=a&InstanceId.2=b", 1),
    ],
)
def test_ec2_calls_priced_by_instances_count_them(
    method: str, query: str, body: bytes | None, resources: int
) -> None:
    hdrs = headers(content_type=FORM) if body else NO_HEADERS
    op = classify(method, EC2, "/", query, hdrs, body)
    assert op.name is not None
    assert op.resources == resources
    assert op.for_budget("123456789012", "us-east-1").resources == resources


def test_a_priced_call_with_a_body_it_cannot_read_is_charged_the_most() -> None:
    # The IDs may be in a form body over the parsing limit: counted as the most there can be
    # (the limiter then refuses the call at once), never as one.
    big = b"&".join(b"InstanceId.%d=i-%017d" % (n, n) for n in range(1, 3000))
    assert len(big) > MAX_FORM_BODY
    op = classify("POST", EC2, "/", "Action=TerminateInstances", headers(content_type=FORM), big)
    assert op.resources == 1_000_000
    # So is a body that is not a form at all.
    op = classify("POST", EC2, "/", "Action=StopInstances", headers(), b"{}")
    assert op.resources == 1_000_000


def test_only_ec2_calls_count_resources() -> None:
    # An EC2-named action on a query service that is not EC2 is one request.
    body = b"Action=TerminateInstances&InstanceId.1=a&InstanceId.2=b"
    op = classify("POST", SQS, "/1/q", "", headers(content_type=FORM), body)
    assert op.resources == 1


def test_only_ec2_calls_are_marked_unfiltered() -> None:
    op = classify("POST", SQS, "/1/q", "", headers(content_type=FORM), b"Action=GetQueueUrl")
    assert op.name == "GetQueueUrl"
    assert op.unfiltered is False


def test_form_body_needs_the_form_content_type() -> None:
    body = b"Action=RunInstances"
    op = classify("POST", EC2, "/", "", headers(content_type="application/json"), body)
    assert op.name is None
    assert op.label == "other"


def test_form_body_is_only_parsed_when_buffered_and_small() -> None:
    hdrs = headers(content_type=FORM)
    assert classify("POST", EC2, "/", "", hdrs, None).name is None
    padded = b"Action=SendMessage&MessageBody=" + b"x" * MAX_FORM_BODY
    assert classify("POST", SQS, "/1/q", "", hdrs, padded).name is None
    just_fits = b"Action=SendMessage&MessageBody=" + b"x" * (MAX_FORM_BODY - 31)
    assert len(just_fits) == MAX_FORM_BODY
    assert classify("POST", SQS, "/1/q", "", hdrs, just_fits).name == "SendMessage"


def test_form_body_is_not_read_on_get() -> None:
    op = classify("GET", EC2, "/", "", headers(content_type=FORM), b"Action=RunInstances")
    assert op.name is None


def test_conflicting_actions_cannot_be_named() -> None:
    hdrs = headers(content_type=FORM)
    op = classify("POST", EC2, "/", "Action=DescribeRegions", hdrs, b"Action=RunInstances")
    assert op.name is None
    assert op.label == "other"
    op = classify("GET", EC2, "/", "Action=DescribeRegions&Action=RunInstances", hdrs, None)
    assert op.name is None


def test_percent_encoded_action_is_decoded() -> None:
    op = classify("GET", EC2, "/", "Action=Describe%49nstances", NO_HEADERS, None)
    assert op.name == "DescribeInstances"


def test_values_that_merely_contain_action_are_not_actions() -> None:
    op = classify("GET", EC2, "/", "Filter.1.Name=Action&XAction=RunInstances", NO_HEADERS, None)
    assert op.name is None


def escape_keys(form: str) -> str:
    """`form` with the first character of every key but `Action` percent-escaped."""
    parts = []
    for part in form.split("&"):
        key, sep, value = part.partition("=")
        if key and key != "Action":
            key = f"%{ord(key[0]):02X}{key[1:]}"  # every key here starts with an ASCII letter
        parts.append(key + sep + value)
    return "&".join(parts)


@pytest.mark.parametrize(
    "form",
    [
        "Action=DescribeInstances&Version=2016-11-15",
        "Action=DescribeInstances&MaxResults=5",
        "Action=DescribeInstances&NextToken=a%2Bb%3D",
        "Action=DescribeInstances&Filter.1.Name=tag%3Aapp&Filter.1.Value.1=x",
        "Action=DescribeImages&Owner.1=self",
        "Action=DescribeInstances&Max+Results=5&Next+Token=x&Filter+1.Name=y&Filter.1+=z",
        "Action=DescribeInstances&Filter.1\n=x&MaxResults\n=5",
        "Action=DescribeInstances&&DryRun&MaxResults",
        "Action=Describe+Instances&Version=1",
        "Action=TerminateInstances&InstanceId.1=i-1&InstanceId.2=i%2D2&InstanceId.3=i-1",
        "Action=RunInstances&MinCount=1&MaxCount=3&MaxCount=2",
    ],
)
def test_escaped_keys_are_read_as_their_decoded_names(form: str) -> None:
    # A form whose keys are plain is read from its raw text, one with an escaped key field by
    # field: both must give the same operation, in the query string and in a form body.
    escaped = escape_keys(form)
    assert escaped != form
    form_headers = headers(content_type=FORM)
    for method, query, body, hdrs in [
        ("GET", form, None, NO_HEADERS),
        ("GET", escaped, None, NO_HEADERS),
        ("POST", "", form.encode(), form_headers),
        ("POST", "", escaped.encode(), form_headers),
    ]:
        op = classify(method, EC2, "/", query, hdrs, body)
        plain = classify("GET", EC2, "/", form, NO_HEADERS, None)
        assert (op.name, op.unfiltered, op.resources) == (
            plain.name,
            plain.unfiltered,
            plain.resources,
        ), (method, query, body)


def test_narrowing_names_are_the_decoded_keys() -> None:
    def unfiltered(query: str) -> bool:
        return classify(
            "GET", EC2, "/", "Action=DescribeInstances&" + query, NO_HEADERS, None
        ).unfiltered

    assert unfiltered("Max+Results=5")  # the key is `Max Results`: not pagination
    assert unfiltered("Filter.1+=x")  # `Filter.1 `: not a list parameter
    assert not unfiltered("Filter.1\n=x")  # the list pattern allows a final newline
    assert unfiltered("MaxResults\n=5")  # pagination names are exact
    assert not unfiltered("MaxResults")  # a key without a value is a key
    assert not unfiltered("Max%52esults=5")
    assert not unfiltered("Filter%2E1.Name=x")
    assert unfiltered("X=MaxResults&Y=Filter.1")  # values are not keys


@pytest.mark.parametrize(
    ("method", "host", "path", "query", "extra", "body"),
    [
        ("GET", "ec2.us-east-1.amazonaws.com", "/", "Action=DescribeInstances", {}, None),
        ("GET", "photos.s3.us-west-2.amazonaws.com", "/a/b", "", {}, None),
        ("POST", "dynamodb.us-east-1.amazonaws.com", "/", "", {"x_amz_target": "X.GetItem"}, b"{}"),
        (
            "POST",
            "monitoring.us-east-1.amazonaws.com",
            "/service/G/operation/GetMetricData",
            "",
            {"smithy_protocol": "rpc-v2-cbor"},
            b"",
        ),
        ("GET", "lambda.us-east-1.amazonaws.com", "/2015-03-31/functions", "", {}, None),
        ("GET", "ec2.us-east-1.amazonaws.com", "/", "Version=1", {}, None),
    ],
)
def test_classify_spends_the_budget_it_is_given(
    method: str, host: str, path: str, query: str, extra: dict[str, str], body: bytes | None
) -> None:
    hdrs = headers(**extra)
    op = classify(method, endpoint(host), path, query, hdrs, body)
    spending = classify(
        method, endpoint(host), path, query, hdrs, body, account="111122223333", region="eu-west-1"
    )
    assert spending == op.for_budget("111122223333", "eu-west-1")
    assert (op.account, op.region) == ("", "")


# --- JSON and CBOR protocols -------------------------------------------------------------

JSON_CASES = [
    ("dynamodb.us-east-1.amazonaws.com", "DynamoDB_20120810.GetItem", "dynamodb", "GetItem"),
    (
        "dynamodb.us-east-1.amazonaws.com",
        "DynamoDB_20120810.BatchWriteItem",
        "dynamodb",
        "BatchWriteItem",
    ),
    (
        "streams.dynamodb.us-east-1.amazonaws.com",
        "DynamoDBStreams_20120810.GetRecords",
        "dynamodb",
        "GetRecords",
    ),
    ("sqs.us-west-2.amazonaws.com", "AmazonSQS.SendMessage", "sqs", "SendMessage"),
    ("logs.us-east-1.amazonaws.com", "Logs_20140328.PutLogEvents", "logs", "PutLogEvents"),
    ("kinesis.us-east-1.amazonaws.com", "Kinesis_20131202.PutRecords", "kinesis", "PutRecords"),
    (
        "api.ecr.us-east-1.amazonaws.com",
        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        "ecr",
        "GetAuthorizationToken",
    ),
    (
        "monitoring.us-east-1.amazonaws.com",
        "GraniteServiceVersion20100801.PutMetricData",
        "monitoring",
        "PutMetricData",
    ),
    (
        "secretsmanager.us-east-1.amazonaws.com",
        "secretsmanager.GetSecretValue",
        "secretsmanager",
        "GetSecretValue",
    ),
]


@pytest.mark.parametrize(("host", "target", "service", "name"), JSON_CASES)
def test_json_protocol(host: str, target: str, service: str, name: str) -> None:
    hdrs = headers(x_amz_target=target, content_type="application/x-amz-json-1.0")
    op = classify("POST", endpoint(host), "/", "", hdrs, b"{}")
    assert op == Operation(service, name, protocol="json")
    assert op.label == name


def test_sqs_query_and_json_forms_give_one_name() -> None:
    query_form = classify(
        "POST",
        SQS,
        "/123456789012/jobs",
        "",
        headers(content_type=FORM),
        b"Action=SendMessage&MessageBody=hi&Version=2012-11-05",
    )
    json_form = classify("POST", SQS, "/", "", headers(x_amz_target="AmazonSQS.SendMessage"), b"{}")
    legacy_host = classify(
        "GET",
        endpoint("us-west-2.queue.amazonaws.com"),
        "/123456789012/jobs",
        "Action=SendMessage&MessageBody=hi",
        NO_HEADERS,
        None,
    )
    assert query_form.name == json_form.name == legacy_host.name == "SendMessage"
    assert query_form.label == json_form.label == legacy_host.label == "SendMessage"
    assert (query_form.protocol, json_form.protocol) == ("query", "json")


def test_x_amz_target_header_name_is_case_insensitive() -> None:
    hdrs = CIMultiDictProxy(CIMultiDict({"X-AMZ-TARGET": "DynamoDB_20120810.Query"}))
    assert classify("POST", DDB, "/", "", hdrs, None).name == "Query"


def test_smithy_rpc_v2_cbor() -> None:
    path = "/service/GraniteServiceVersion20100801/operation/GetMetricData"
    monitoring = endpoint("monitoring.us-east-1.amazonaws.com")
    op = classify("POST", monitoring, path, "", headers(smithy_protocol="rpc-v2-cbor"), b"\xa0")
    assert op == Operation("monitoring", "GetMetricData", protocol="smithy-rpc-v2-cbor")
    assert op.label == "GetMetricData"
    # the path shape alone is not enough on a service that does not speak CBOR
    assert classify("POST", DDB, path, "", NO_HEADERS, None).name is None


# --- REST services other than S3 ---------------------------------------------------------


def test_rest_json_services_are_not_named() -> None:
    lam = endpoint("lambda.us-east-1.amazonaws.com")
    op = classify("POST", lam, "/2015-03-31/functions/f/invocations", "", NO_HEADERS, b"{}")
    assert op == Operation("lambda", None, protocol="rest-json")
    assert op.label == "other"


def test_rest_service_action_parameter_is_not_a_query_action() -> None:
    api = endpoint("abc123.execute-api.us-east-1.amazonaws.com")
    op = classify("GET", api, "/prod/items", "Action=DeleteEverything", NO_HEADERS, None)
    assert (op.name, op.protocol) == (None, "rest-json")


def test_unknown_service_still_reads_query_actions() -> None:
    new = endpoint("brandnew.us-east-1.amazonaws.com")
    op = classify("GET", new, "/", "Action=DoThing", NO_HEADERS, None)
    assert (op.service, op.name, op.protocol, op.label) == ("brandnew", "DoThing", "query", "other")


def test_s3_control_is_not_read_as_bucket_and_key() -> None:
    control = endpoint("123456789012.s3-control.us-east-1.amazonaws.com")
    op = classify("GET", control, "/v20180820/accesspoint", "", NO_HEADERS, None)
    assert (op.service, op.name, op.bucket, op.key, op.protocol) == (
        "s3",
        None,
        None,
        None,
        "rest-xml",
    )


# --- labels are bounded ------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "DescribeInstancez",
        "NotAnOperation",
        "GetObject",  # an S3 operation is not an EC2 label
        "describeinstances",
        "Describe Instances",
        "DescribeInstances;DROP",
        "<script>",
        "A" * 5000,
        "",
        "DescribeInstances\nInjected",
    ],
)
def test_garbage_actions_never_become_labels(action: str) -> None:
    op = classify("GET", EC2, "/", "Action=" + quote(action), NO_HEADERS, None)
    assert op.label == "other"
    assert op.name is None or op.name == action


def test_garbage_target_never_becomes_a_label() -> None:
    for target in ("DynamoDB_20120810.DropDatabase", "x.y.z", "", "DynamoDB_20120810."):
        op = classify("POST", DDB, "/", "", headers(x_amz_target=target), None)
        assert op.label == "other"


def test_unknown_service_has_only_other() -> None:
    assert Operation("brandnew", "DescribeInstances").label == "other"


REFERENCE_OPERATIONS = [
    ("ec2", "DescribeInstances"),
    ("ec2", "RunInstances"),
    ("ec2", "TerminateInstances"),
    ("ec2", "CreateTags"),
    ("ec2", "DescribeRegions"),
    ("ec2", "DescribeImages"),
    ("ec2", "DescribeVolumes"),
    ("ec2", "GetConsoleOutput"),
    ("s3", "GetObject"),
    ("s3", "HeadObject"),
    ("s3", "PutObject"),
    ("s3", "CopyObject"),
    ("s3", "DeleteObject"),
    ("s3", "ListObjectsV2"),
    ("s3", "CreateMultipartUpload"),
    ("s3", "UploadPart"),
    ("s3", "CompleteMultipartUpload"),
    ("route53", "ChangeResourceRecordSets"),
    ("sts", "AssumeRole"),
    ("sts", "AssumeRoleWithWebIdentity"),
    ("sts", "GetSessionToken"),
    ("sts", "GetCallerIdentity"),
    ("dynamodb", "GetItem"),
    ("sqs", "SendMessage"),
]


@pytest.mark.parametrize(("service", "name"), REFERENCE_OPERATIONS)
def test_reference_operations_are_known(service: str, name: str) -> None:
    assert name in known_operations(service)
    assert Operation(service, name).label == name


def test_every_name_in_the_s3_table_is_a_known_s3_operation() -> None:
    names = {
        name
        for table in (*s3ops._BUCKET_MARKERS.values(), *s3ops._OBJECT_MARKERS.values())
        for name in table.values()
    }
    names |= set(s3ops._LISTED_WITHOUT_ID.values()) | set(s3ops._OBJECT_PLAIN.values())
    names |= set(s3ops._BUCKET_PLAIN.values()) - {"PostObject"}
    names |= {"ListObjectsV2", "ListBuckets", "CopyObject", "UploadPartCopy"}
    assert names - known_operations("s3") == set()


# --- S3 ----------------------------------------------------------------------------------

S3_CASES = [
    # (method, path after the bucket, query, headers, name, key)
    ("GET", "/photos/2024/cat.jpg", "", {}, "GetObject", "photos/2024/cat.jpg"),
    ("GET", "/k", "partNumber=1", {}, "GetObject", "k"),
    ("GET", "/k", "versionId=abc&response-content-type=text%2Fplain", {}, "GetObject", "k"),
    ("HEAD", "/k", "", {}, "HeadObject", "k"),
    ("PUT", "/k", "", {}, "PutObject", "k"),
    ("PUT", "/k", "", {"x-amz-copy-source": "/src/k"}, "CopyObject", "k"),
    ("PUT", "/k", "partNumber=2&uploadId=u1", {}, "UploadPart", "k"),
    (
        "PUT",
        "/k",
        "uploadId=u1&partNumber=2",
        {"x-amz-copy-source": "/src/k"},
        "UploadPartCopy",
        "k",
    ),
    ("POST", "/k", "uploads", {}, "CreateMultipartUpload", "k"),
    ("POST", "/k", "uploads=", {}, "CreateMultipartUpload", "k"),
    ("POST", "/k", "uploadId=u1", {}, "CompleteMultipartUpload", "k"),
    ("DELETE", "/k", "uploadId=u1", {}, "AbortMultipartUpload", "k"),
    ("GET", "/k", "uploadId=u1&max-parts=10", {}, "ListParts", "k"),
    ("DELETE", "/k", "", {}, "DeleteObject", "k"),
    ("DELETE", "/k", "versionId=v1", {}, "DeleteObject", "k"),
    ("GET", "/k", "acl", {}, "GetObjectAcl", "k"),
    ("PUT", "/k", "acl", {}, "PutObjectAcl", "k"),
    ("GET", "/k", "tagging", {}, "GetObjectTagging", "k"),
    ("PUT", "/k", "tagging", {}, "PutObjectTagging", "k"),
    ("DELETE", "/k", "tagging", {}, "DeleteObjectTagging", "k"),
    ("GET", "/k", "retention", {}, "GetObjectRetention", "k"),
    ("PUT", "/k", "retention", {}, "PutObjectRetention", "k"),
    ("GET", "/k", "legal-hold", {}, "GetObjectLegalHold", "k"),
    ("PUT", "/k", "legal-hold", {}, "PutObjectLegalHold", "k"),
    ("GET", "/k", "attributes", {}, "GetObjectAttributes", "k"),
    ("POST", "/k", "restore", {}, "RestoreObject", "k"),
    ("POST", "/k", "select&select-type=2", {}, "SelectObjectContent", "k"),
    ("GET", "/k", "torrent", {}, "GetObjectTorrent", "k"),
    ("GET", "", "", {}, "ListObjects", None),
    ("GET", "/", "", {}, "ListObjects", None),
    ("GET", "/", "list-type=2&prefix=logs%2F&delimiter=%2F", {}, "ListObjectsV2", None),
    ("GET", "/", "prefix=a&list-type=2", {}, "ListObjectsV2", None),
    ("GET", "/", "list-type=1", {}, "ListObjects", None),
    ("GET", "/", "versions", {}, "ListObjectVersions", None),
    ("GET", "/", "uploads", {}, "ListMultipartUploads", None),
    ("PUT", "/", "", {}, "CreateBucket", None),
    ("DELETE", "/", "", {}, "DeleteBucket", None),
    ("HEAD", "/", "", {}, "HeadBucket", None),
    ("GET", "/", "location", {}, "GetBucketLocation", None),
    ("POST", "/", "delete", {}, "DeleteObjects", None),
    ("POST", "/", "delete=", {}, "DeleteObjects", None),
    ("GET", "/", "acl", {}, "GetBucketAcl", None),
    ("PUT", "/", "acl", {}, "PutBucketAcl", None),
    ("GET", "/", "tagging", {}, "GetBucketTagging", None),
    ("PUT", "/", "tagging", {}, "PutBucketTagging", None),
    ("DELETE", "/", "tagging", {}, "DeleteBucketTagging", None),
    ("GET", "/", "policy", {}, "GetBucketPolicy", None),
    ("PUT", "/", "policy", {}, "PutBucketPolicy", None),
    ("DELETE", "/", "policy", {}, "DeleteBucketPolicy", None),
    ("GET", "/", "versioning", {}, "GetBucketVersioning", None),
    ("PUT", "/", "versioning", {}, "PutBucketVersioning", None),
    ("GET", "/", "lifecycle", {}, "GetBucketLifecycleConfiguration", None),
    ("PUT", "/", "lifecycle", {}, "PutBucketLifecycleConfiguration", None),
    ("DELETE", "/", "lifecycle", {}, "DeleteBucketLifecycle", None),
    ("GET", "/", "cors", {}, "GetBucketCors", None),
    ("PUT", "/", "cors", {}, "PutBucketCors", None),
    ("DELETE", "/", "cors", {}, "DeleteBucketCors", None),
    ("GET", "/", "website", {}, "GetBucketWebsite", None),
    ("PUT", "/", "website", {}, "PutBucketWebsite", None),
    ("DELETE", "/", "website", {}, "DeleteBucketWebsite", None),
    ("GET", "/", "encryption", {}, "GetBucketEncryption", None),
    ("PUT", "/", "encryption", {}, "PutBucketEncryption", None),
    ("DELETE", "/", "encryption", {}, "DeleteBucketEncryption", None),
    ("GET", "/", "notification", {}, "GetBucketNotificationConfiguration", None),
    ("PUT", "/", "notification", {}, "PutBucketNotificationConfiguration", None),
    ("GET", "/", "object-lock", {}, "GetObjectLockConfiguration", None),
    ("GET", "/", "publicAccessBlock", {}, "GetPublicAccessBlock", None),
    ("GET", "/", "ownershipControls", {}, "GetBucketOwnershipControls", None),
    ("GET", "/", "replication", {}, "GetBucketReplication", None),
    ("GET", "/", "logging", {}, "GetBucketLogging", None),
    ("GET", "/", "requestPayment", {}, "GetBucketRequestPayment", None),
    ("GET", "/", "accelerate", {}, "GetBucketAccelerateConfiguration", None),
    ("GET", "/", "policyStatus", {}, "GetBucketPolicyStatus", None),
    ("GET", "/", "metrics", {}, "ListBucketMetricsConfigurations", None),
    ("GET", "/", "metrics&id=all", {}, "GetBucketMetricsConfiguration", None),
    ("PUT", "/", "metrics&id=all", {}, "PutBucketMetricsConfiguration", None),
    ("GET", "/", "inventory", {}, "ListBucketInventoryConfigurations", None),
    ("GET", "/", "analytics&id=a", {}, "GetBucketAnalyticsConfiguration", None),
    ("GET", "/", "intelligent-tiering", {}, "ListBucketIntelligentTieringConfigurations", None),
    ("GET", "/", "session", {}, "CreateSession", None),
]


def _s3_ids() -> list[str]:
    return [f"{m} {p}?{q} {n}" for m, p, q, _, n, _ in S3_CASES]


@pytest.mark.parametrize(
    ("method", "rest", "query", "hdrs", "name", "key"), S3_CASES, ids=_s3_ids()
)
def test_s3_path_style(
    method: str, rest: str, query: str, hdrs: dict[str, str], name: str, key: str | None
) -> None:
    op = classify(method, S3_PATH, "/photos" + rest, query, headers(**_kw(hdrs)), None)
    assert op == Operation("s3", name, bucket="photos", key=key, protocol="rest-xml")
    assert op.label == name


@pytest.mark.parametrize(
    ("method", "rest", "query", "hdrs", "name", "key"), S3_CASES, ids=_s3_ids()
)
def test_s3_virtual_host_style(
    method: str, rest: str, query: str, hdrs: dict[str, str], name: str, key: str | None
) -> None:
    op = classify(method, S3_VHOST, rest or "/", query, headers(**_kw(hdrs)), None)
    assert op == Operation("s3", name, bucket="photos", key=key, protocol="rest-xml")
    assert op.label == name


def _kw(hdrs: dict[str, str]) -> dict[str, str]:
    return {k.replace("-", "_"): v for k, v in hdrs.items()}


def test_s3_list_buckets() -> None:
    op = classify("GET", S3_PATH, "/", "", NO_HEADERS, None)
    assert op == Operation("s3", "ListBuckets", protocol="rest-xml")
    global_s3 = endpoint("s3.amazonaws.com")
    assert classify("GET", global_s3, "/", "", NO_HEADERS, None).name == "ListBuckets"


def test_s3_virtual_host_bucket_with_dots() -> None:
    dotted = endpoint("my.dotted.bucket.s3.us-east-1.amazonaws.com")
    op = classify("GET", dotted, "/a/b", "", NO_HEADERS, None)
    assert (op.name, op.bucket, op.key) == ("GetObject", "my.dotted.bucket", "a/b")


def test_s3_access_point_host_reads_like_virtual_host() -> None:
    ap = endpoint("reports-123456789012.s3-accesspoint.us-west-2.amazonaws.com")
    op = classify("PUT", ap, "/x.csv", "", NO_HEADERS, None)
    assert (op.service, op.name, op.bucket, op.key) == (
        "s3",
        "PutObject",
        "reports-123456789012",
        "x.csv",
    )


def test_s3_object_lambda_labels_use_s3_operations() -> None:
    olap = endpoint("olap-123456789012.s3-object-lambda.us-east-1.amazonaws.com")
    op = classify("GET", olap, "/k", "", NO_HEADERS, None)
    assert (op.service, op.label) == ("s3-object-lambda", "GetObject")


TRICKY_KEYS = [
    "a//b",
    "//leading/double",
    "trailing/",
    "with space.txt",
    "plus+sign",
    "a=b&c=d",
    "tilde~x",
    "percent%41literal",
    "100% done",
    "ünïcödé/日本語.txt",
    "emoji-😀",
    "question?mark",
    "hash#tag",
    "semi;colon",
    "dots/../../etc/passwd",
    "./rel",
    "back\\slash",
    "key with\ttab",
]


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_s3_tricky_keys_survive_exactly(key: str) -> None:
    encoded = quote(key, safe="/~")
    path_style = classify("GET", S3_PATH, "/photos/" + encoded, "", NO_HEADERS, None)
    vhost = classify("GET", S3_VHOST, "/" + encoded, "", NO_HEADERS, None)
    assert path_style.key == vhost.key == key
    assert path_style.bucket == vhost.bucket == "photos"
    assert path_style.name == vhost.name == "GetObject"


def test_s3_plus_in_path_is_a_plus_not_a_space() -> None:
    op = classify("GET", S3_PATH, "/photos/a+b%20c", "", NO_HEADERS, None)
    assert op.key == "a+b c"


def test_s3_invalid_utf8_in_key_does_not_raise() -> None:
    op = classify("GET", S3_PATH, "/photos/bad%FFbyte", "", NO_HEADERS, None)
    assert op.key == "bad\ufffdbyte"


def test_s3_encoded_bucket_name_is_decoded() -> None:
    op = classify("GET", S3_PATH, "/my%2Ebucket/k", "", NO_HEADERS, None)
    assert (op.bucket, op.key) == ("my.bucket", "k")


def test_s3_unknown_method_is_not_named() -> None:
    op = classify("PATCH", S3_PATH, "/photos/k", "", NO_HEADERS, None)
    assert (op.name, op.label, op.key) == (None, "other", "k")


def test_s3_method_is_case_insensitive() -> None:
    assert classify("get", S3_PATH, "/photos/k", "", NO_HEADERS, None).name == "GetObject"


def test_s3_query_params_keep_first_value_and_bare_markers() -> None:
    assert s3ops.query_params("uploads&a=1&a=2&b=x%2By&c") == {
        "uploads": "",
        "a": "1",
        "b": "x+y",
        "c": "",
    }
    assert s3ops.query_params("") == {}


def test_classify_is_fast() -> None:
    hdrs = headers(content_type=FORM)
    body = b"Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag&Filter.1.Value.1=x"
    # CPU time, not wall time: a loaded machine stretches the wall clock, not the work (the
    # bound guards against a pathological classifier, it is no benchmark).
    started = time.process_time()
    for _ in range(5000):
        classify("POST", EC2, "/", "", hdrs, body)
        classify("GET", S3_VHOST, "/a/b/c.txt", "versionId=1", NO_HEADERS, None)
    elapsed = time.process_time() - started
    assert elapsed < 1.0, elapsed


def test_every_s3_relative_takes_s3s_operations_from_the_one_definition() -> None:
    from proxy.aws.s3family import S3_SIGNING_NAMES, speaks_s3

    assert {"s3", "s3-outposts", "s3-object-lambda", "s3express"} == S3_SIGNING_NAMES
    for name in S3_SIGNING_NAMES:
        assert speaks_s3(name)
        assert "PutObject" in known_operations(name)
    # Outposts keeps its own control API's names too.
    assert "CreateEndpoint" in known_operations("s3-outposts")
    assert not speaks_s3("s3control")


def test_for_budget_keeps_every_other_field() -> None:
    # for_budget builds the copy field by field (speed): a field added later must be carried.
    import dataclasses

    from proxy.aws.operations import Operation

    values = {
        "service": "s3",
        "name": "GetObject",
        "bucket": "b",
        "key": "k",
        "protocol": "rest-xml",
        "account": "old",
        "region": "old",
        "unfiltered": True,
        "resources": 7,
    }
    assert set(values) == {f.name for f in dataclasses.fields(Operation)}
    moved = Operation(**values).for_budget("123456789012", "eu-west-1")  # type: ignore[arg-type]
    assert moved == Operation(**{**values, "account": "123456789012", "region": "eu-west-1"})  # type: ignore[arg-type]
