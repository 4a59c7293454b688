"""The three ways in, the allow-list and the signing scope, as pure routing decisions."""

from __future__ import annotations

import pytest

from proxy.aws.endpoints import endpoint_for_host
from proxy.aws.hostgrammar import aws_operated
from proxy.aws.routing import Router, host_matches, single_host, split_host_port
from proxy.config.model import ConfigError, parse_config
from proxy.errors import BadRequest, HostNotAllowed, MethodNotAllowed
from proxy.upstream.http1 import Origin

EC2 = "ec2.us-east-1.amazonaws.com"


def router(**config: object) -> Router:
    return Router(parse_config(config))


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.amazonaws.com", "ec2.us-east-1.amazonaws.com", True),
        ("*.amazonaws.com", "amazonaws.com", False),
        ("*.amazonaws.com", "evilamazonaws.com", False),
        ("*.amazonaws.com", "amazonaws.com.evil.org", False),
        ("ec2.us-east-1.amazonaws.com", "ec2.us-east-1.amazonaws.com", True),
        ("ec2.us-east-1.amazonaws.com", "ec2.us-east-2.amazonaws.com", False),
        ("ec2.*.amazonaws.com", "ec2.eu-west-1.amazonaws.com", True),
        ("ec2.*.amazonaws.com", "ec2.a.b.amazonaws.com", False),
        ("*", "anything.example", True),
    ],
)
def test_host_patterns_match_on_label_boundaries(pattern: str, host: str, expected: bool) -> None:
    assert host_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("EC2.us-east-1.amazonaws.com.", ("ec2.us-east-1.amazonaws.com", None)),
        ("localhost:8080", ("localhost", 8080)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_split_host_port(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(authority) == expected


@pytest.mark.parametrize("authority", ["host:99999", "host:x", "", "a b", "[::1"])
def test_malformed_hosts_are_bad_requests(authority: str) -> None:
    with pytest.raises(BadRequest):
        split_host_port(authority)


def test_host_header_way_goes_https_to_the_named_host() -> None:
    target = router().resolve("GET", "/?Action=DescribeInstances", EC2)
    assert target.origin == Origin("https", EC2, 443)
    assert target.host_header == EC2
    assert (target.path, target.query) == ("/", "Action=DescribeInstances")
    assert (target.endpoint.service, target.endpoint.region) == ("ec2", "us-east-1")


def test_forward_proxy_absolute_form_keeps_raw_path_and_query() -> None:
    target = router().resolve("GET", "http://s3.us-west-2.amazonaws.com/b/a%2Fb//c?x=1+2&y", None)
    assert target.origin == Origin("https", "s3.us-west-2.amazonaws.com", 443)
    assert (target.path, target.query) == ("/b/a%2Fb//c", "x=1+2&y")
    assert (target.endpoint.service, target.endpoint.region) == ("s3", "us-west-2")


def test_host_route_connects_to_upstream_but_signs_the_aws_name() -> None:
    target = router(routes=[{"host": EC2, "upstream": "http://127.0.0.1:5055"}]).resolve(
        "GET", "/", EC2
    )
    assert target.origin == Origin("http", "127.0.0.1", 5055)
    assert target.host_header == EC2
    assert target.endpoint.service == "ec2"


def test_path_prefix_route_strips_prefix_and_signs_the_upstream_host() -> None:
    target = router(
        routes=[
            {
                "path_prefix": "/ddb/",
                "upstream": "https://dynamodb.us-west-2.amazonaws.com",
            }
        ]
    ).resolve("POST", "/ddb/", "127.0.0.1:8080")
    assert target.origin == Origin("https", "dynamodb.us-west-2.amazonaws.com", 443)
    assert target.host_header == "dynamodb.us-west-2.amazonaws.com"
    assert target.path == "/"
    assert (target.endpoint.service, target.endpoint.region) == ("dynamodb", "us-west-2")


def test_explicit_route_values_win_over_inferred_ones() -> None:
    target = router(
        routes=[
            {
                "path_prefix": "/x",
                "upstream": "http://127.0.0.1:9",
                "service": "sqs",
                "region": "eu-west-1",
            }
        ]
    ).resolve("GET", "/x/y", "localhost")
    assert target.host_header == "127.0.0.1:9"
    assert target.path == "/y"
    assert (target.endpoint.service, target.endpoint.region) == ("sqs", "eu-west-1")


def test_route_without_inferable_service_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.service"):
        router(routes=[{"path_prefix": "/x", "upstream": "http://127.0.0.1:9"}])


def test_routes_are_evaluated_before_the_allow_list_in_order() -> None:
    routes = [
        {"host": "*.amazonaws.com", "upstream": "http://127.0.0.1:1"},
        {"host": EC2, "upstream": "http://127.0.0.1:2"},
    ]
    target = router(routes=routes, allow_hosts=[]).resolve("GET", "/", EC2)
    assert target.origin.port == 1


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "127.0.0.1",
        "evilamazonaws.com",
        # Customer-controlled names under AWS domains: not API endpoints.
        "ec2-54-1-2-3.compute-1.amazonaws.com",
        "b.s3-website-us-east-1.amazonaws.com",
        "zzzqqq.us-east-1.amazonaws.com",
    ],
)
def test_hosts_outside_the_allow_list_or_unknown_are_refused(host: str) -> None:
    with pytest.raises(HostNotAllowed):
        router().resolve("GET", "/", host)


def test_an_exact_allow_entry_admits_an_unknown_service() -> None:
    host = "newsvc.us-east-1.amazonaws.com"
    target = router(allow_hosts=[host]).resolve("GET", "/", host)
    assert target.endpoint.service == "newsvc"


def test_an_owned_name_is_signed_for_only_when_listed_exactly() -> None:
    api = "abc123.execute-api.us-east-1.amazonaws.com"
    listed = router(allow_hosts=["*.amazonaws.com", api])
    target = listed.resolve("GET", "/prod/items", api)
    assert (target.endpoint.service, target.endpoint.region) == ("execute-api", "us-east-1")
    # The wildcard beside it does not stretch to other APIs, nor does `*` alone.
    for allow in (["*.amazonaws.com", api], ["*"], ["*.execute-api.us-east-1.amazonaws.com"]):
        with pytest.raises(HostNotAllowed, match="its owner would receive the signed headers"):
            router(allow_hosts=allow).resolve(
                "GET", "/", "other.execute-api.us-east-1.amazonaws.com"
            )


def test_a_route_names_an_owned_host_without_the_grammar() -> None:
    api = "abc123.execute-api.us-east-1.amazonaws.com"
    routed = router(routes=[{"host": api, "upstream": "http://127.0.0.1:5055"}], allow_hosts=[])
    assert routed.resolve("GET", "/", api).endpoint.service == "execute-api"


def test_connect_is_refused() -> None:
    with pytest.raises(MethodNotAllowed, match="cannot be signed"):
        router().resolve("CONNECT", f"{EC2}:443", f"{EC2}:443")


@pytest.mark.parametrize(
    ("raw_target", "host"), [("/x", None), ("*", EC2), ("http://user@ec2.x/", None)]
)
def test_malformed_targets_are_bad_requests(raw_target: str, host: str | None) -> None:
    with pytest.raises(BadRequest):
        router().resolve("GET", raw_target, host)


def test_dotted_bucket_in_virtual_host_style_goes_path_style() -> None:
    target = router().resolve("GET", "/key%20one?x", "my.bucket.s3.us-west-2.amazonaws.com")
    assert target.origin == Origin("https", "s3.us-west-2.amazonaws.com", 443)
    assert target.host_header == "s3.us-west-2.amazonaws.com"
    assert target.path == "/my.bucket/key%20one"
    assert target.endpoint.bucket is None


def test_plain_bucket_keeps_virtual_host_style() -> None:
    target = router().resolve("GET", "/k", "mybucket.s3.us-west-2.amazonaws.com")
    assert target.host_header == "mybucket.s3.us-west-2.amazonaws.com"
    assert target.endpoint.bucket == "mybucket"


def test_forward_proxy_port_80_means_the_https_service() -> None:
    target = router().resolve("GET", f"http://{EC2}:80/?Action=X", None)
    assert target.origin == Origin("https", EC2, 443)
    assert target.host_header == EC2


@pytest.mark.parametrize(
    "authority",
    [
        "\u212ainesis.us-east-1.amazonaws.com",  # Kelvin sign: lower() makes it ASCII 'k'
        "ec2.us-east-1.amazonaws.com:\u0668\u0660",  # Arabic-Indic digits: isdigit() is True
        "ec2%2eus-east-1.amazonaws.com",
        "ec2.us-east-1.amazonaws.com\tx",
        "[::1]x",
        ".",
    ],
)
def test_hosts_that_would_normalise_into_another_name_are_bad_requests(authority: str) -> None:
    with pytest.raises(BadRequest):
        split_host_port(authority)


def test_only_one_trailing_dot_is_the_dns_root() -> None:
    assert split_host_port("ec2.us-east-1.amazonaws.com.")[0] == "ec2.us-east-1.amazonaws.com"
    assert split_host_port("ec2.us-east-1.amazonaws.com..")[0] == "ec2.us-east-1.amazonaws.com."


def test_a_fragment_is_neither_sent_nor_signed() -> None:
    query = "X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=abc#frag"
    target = router().resolve("GET", f"/k?{query}", "my-bucket.s3.amazonaws.com")
    assert (target.path, target.query, target.presigned) == ("/k", query.split("#")[0], True)


def test_two_host_headers_are_a_bad_request() -> None:
    assert single_host([EC2]) == EC2
    assert single_host([]) is None
    with pytest.raises(BadRequest, match="more than one Host header"):
        single_host([EC2, "evil.example"])


def test_an_exact_allow_entry_is_compared_as_hosts_are_normalised() -> None:
    listed = router(allow_hosts=["My-Api.Execute-Api.us-east-1.amazonaws.com."])
    for sent in (
        "my-api.execute-api.us-east-1.amazonaws.com",
        "MY-API.execute-api.us-east-1.amazonaws.com.",
    ):
        assert (
            listed.resolve("GET", "/", sent).origin.host
            == "my-api.execute-api.us-east-1.amazonaws.com"
        )


def test_a_host_route_is_compared_as_hosts_are_normalised() -> None:
    # A route written with a trailing dot never matched the normalised host, so its requests
    # fell through to the allow-list and were signed for, and sent to, the real AWS name
    # instead of the route's upstream (a load test's stand-in, say).
    routed = router(
        routes=[{"host": "EC2.us-east-1.amazonaws.com.", "upstream": "http://127.0.0.1:5055"}]
    )
    for sent in (EC2, "ec2.US-EAST-1.amazonaws.com."):
        assert routed.resolve("GET", "/", sent).origin == Origin("http", "127.0.0.1", 5055)
    wildcard = router(
        routes=[{"host": "*.us-east-1.amazonaws.com.", "upstream": "http://127.0.0.1:5055"}]
    )
    assert wildcard.resolve("GET", "/", EC2).origin == Origin("http", "127.0.0.1", 5055)


def test_hosts_longer_than_a_dns_name_are_refused_without_being_remembered() -> None:
    # Host headers may be 64 KiB: 4096 distinct ones, each remembered with its decision and
    # refusal (and the grammar's answer), held ~700 MB for good. They are never AWS's names.
    route = {"host": "*.internal.example", "upstream": "http://10.0.0.1", "service": "ec2"}
    routed = router(routes=[route])
    routed.resolve("GET", "/", "short.internal.example")  # the upstream's name, looked up
    grammar_misses = aws_operated.cache_info().misses
    endpoint_misses = endpoint_for_host.cache_info().misses
    for index in range(20):
        label = f"b{index}" + "a" * 60
        long = ".".join([label] * 5) + ".s3.us-east-1.amazonaws.com"  # 64-character labels
        assert len(long) > 253
        with pytest.raises(HostNotAllowed, match="is not a name AWS itself answers"):
            routed.resolve("GET", "/", long)
        target = routed.resolve("GET", "/", f"{label}." * 5 + "internal.example")
        assert target.origin == Origin("http", "10.0.0.1", 80)  # a route still takes it
    assert routed._decide.cache_info().currsize == 1  # short.internal.example
    assert aws_operated.cache_info().misses == grammar_misses
    assert endpoint_for_host.cache_info().misses == endpoint_misses
    # Names that fit are remembered as before.
    routed.resolve("GET", "/", "ec2.us-east-1.amazonaws.com")
    assert routed._decide.cache_info().currsize == 2
