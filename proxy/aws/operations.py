"""Name the AWS operation of a request: the key of rate-limit rules and metric labels.

Pure functions over method, endpoint, path, query, headers and (small form) body. The wire
form decides: `X-Amz-Target` (JSON protocol), `/service/{S}/operation/{Op}` (Smithy RPC v2
CBOR), `Action=` (query and EC2 protocols, in the query string or a form body), S3's REST
table. Other REST services are not named (name None, label 'other').
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import unquote_plus

from proxy.aws.endpoints import CATALOG, Endpoint, service_prefix
from proxy.aws.s3family import S3_BUCKET_PREFIXES, S3_OPERATIONS_OF, speaks_s3
from proxy.aws.s3ops import classify_s3
from proxy.requestvalue import request_value

# Form bodies larger than this are not parsed: the operation is in the first bytes anyway for
# every SDK, and big bodies (SQS messages, SNS payloads) must not cost a full parse.
MAX_FORM_BODY = 64 * 1024
OTHER = "other"
_FORM_TYPE = "application/x-www-form-urlencoded"
# Operation names are PascalCase identifiers; anything else is not an operation name.
_OPERATION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,127}$")
_CBOR_PATH = re.compile(r"^/service/[^/]+/operation/([^/?]+)$")
_NO_OPERATIONS: frozenset[str] = frozenset()
_QUERY_PROTOCOLS = frozenset({"query", "ec2"})
_NON_MUTATING = ("Describe", "List", "Get", "Search")
_PAGINATION = frozenset({"MaxResults", "NextToken"})
# `Filter.1.Name`, `InstanceId.1`, `Owner.1`: a list parameter narrows what is described.
_LIST_PARAMETER = re.compile(r"^[A-Za-z]+\.\d+(?:\.|$)")
# A form whose keys have no percent-escape (every SDK's: keys are letters, digits and dots) is
# read from its raw text with one pattern per question instead of field by field: its raw keys
# are what decoding gives, but for a `+` (a space), which no key asked about may contain. The
# patterns run over `&` + the form, so that each starts with a literal (a fast scan) and every
# key follows an `&`.
_ESCAPED_KEY = re.compile(r"&[^=&]*%")
_RAW_ACTIONS = re.compile(r"&Action=([^&]*)")
# The raw-key form of `name in _PAGINATION or _LIST_PARAMETER.match(name)`: a key ends at the
# next `=` or `&` (`$` in _LIST_PARAMETER: the key's end, or just before a final newline).
_RAW_NARROWING = re.compile(
    r"&(?:(?:MaxResults|NextToken)(?=[=&]|\Z)|[A-Za-z]+\.\d+(?:\.|\n?(?=[=&]|\Z)))"
)
# EC2 calls AWS also charges to a resource token bucket, by how many instances they act on:
# the instances a call names, or for RunInstances the most it may launch (`MaxCount`).
_INSTANCE_LIST_CALLS = frozenset({"TerminateInstances", "StartInstances", "StopInstances"})
_RUN_INSTANCES = "RunInstances"
_INSTANCE_ID = re.compile(r"^InstanceId\.\d+$")
_MAX_RESOURCES = 1_000_000  # a MaxCount past any bucket; bounds what a client can claim


def known_operations(service: str) -> frozenset[str]:
    """Operation names botocore's models define for a signing name (empty when unknown)."""
    own = CATALOG.operations.get(service, _NO_OPERATIONS)
    if speaks_s3(service) and service != S3_OPERATIONS_OF:
        # S3's relatives take S3's operations (and keep their own control API's, if any).
        return own | CATALOG.operations.get(S3_OPERATIONS_OF, _NO_OPERATIONS)
    return own


@request_value
class Operation:
    """One request's service and operation, as far as the wire says."""

    service: str  # signing name
    name: str | None  # e.g. 'DescribeInstances', 'GetObject'; None when it cannot be named
    bucket: str | None = None  # S3 only
    key: str | None = None  # S3 only: the object key, percent-DECODED
    # the wire protocol seen: 'query' | 'ec2' | 'json' | 'smithy-rpc-v2-cbor' | 'rest-json'
    # | 'rest-xml' | 'unknown' (decides the shape of errors the proxy answers itself)
    protocol: str = "unknown"
    # Whose budget the call spends, as AWS counts it: the signing identity's account (or its
    # name while the account is not known) and the signing region. Set by `for_budget`.
    account: str = ""
    region: str = ""
    # EC2 only: a Describe/List/Get/Search call with no filter, no ID list and no pagination
    # (AWS counts those in a smaller bucket).
    unfiltered: bool = False
    # EC2 only: instances the call acts on (distinct `InstanceId.N` of Terminate/Start/Stop,
    # `MaxCount` of RunInstances), what a `cost: resources` rule charges; 1 for anything else.
    resources: int = 1

    def for_budget(self, account: str, region: str) -> Operation:
        """This operation, spending the budget of `account` in `region`."""
        # Built field by field: dataclasses.replace looks the fields up again on every call,
        # and this runs for every request.
        return Operation(
            self.service,
            self.name,
            self.bucket,
            self.key,
            self.protocol,
            account,
            region,
            self.unfiltered,
            self.resources,
        )

    @property
    def label(self) -> str:
        """The name when the service really has that operation, else 'other': bounded."""
        return _label(self.service, self.name)


@lru_cache(maxsize=4096)
def _label(service: str, name: str | None) -> str:
    # Asked several times per request (rules, metrics, the run report); names a client makes
    # up only ever map to 'other', and the memo is bounded.
    if name is not None and name in known_operations(service):
        return name
    return OTHER


def classify(
    method: str,
    endpoint: Endpoint,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    account: str = "",
    region: str = "",
) -> Operation:
    """Name the operation of a request to `endpoint`, spending `account`'s budget in `region`
    (see Operation.for_budget; given here, the request path builds one Operation, not two).

    `path` and `query` are raw (percent-encoded), `headers` case-insensitive, `body` the
    buffered body or None when it streams.
    """
    method = method.upper()
    service = endpoint.service
    if endpoint.endpoint_prefix in S3_BUCKET_PREFIXES:
        s3 = classify_s3(method, endpoint.bucket, path, query, headers)
        return Operation(
            service, s3.name, s3.bucket, s3.key, "rest-xml", account=account, region=region
        )
    facts = service_prefix(endpoint.endpoint_prefix)
    target = headers.get("x-amz-target")
    if target is not None:
        name = _valid_name(target.rpartition(".")[2])
        return Operation(service, name, protocol="json", account=account, region=region)
    if method == "POST":
        cbor = _CBOR_PATH.match(path)
        if cbor is not None and (
            headers.get("smithy-protocol") == "rpc-v2-cbor"
            or "smithy-rpc-v2-cbor" in facts.protocols
        ):
            name = _valid_name(unquote_plus(cbor.group(1)))
            return Operation(
                service, name, protocol="smithy-rpc-v2-cbor", account=account, region=region
            )
    # REST services may carry an `Action` parameter of their own (an API Gateway API's).
    if not facts.protocols or facts.protocols & _QUERY_PROTOCOLS:
        protocol = "ec2" if "ec2" in facts.protocols else "query"
        op = _query_operation(service, protocol, method, query, headers, body, account, region)
        if op is not None:
            return op
    protocol = _rest_protocol(facts.protocols)
    return Operation(service, None, protocol=protocol, account=account, region=region)


def _query_operation(
    service: str,
    protocol: str,
    method: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes | None,
    account: str,
    region: str,
) -> Operation | None:
    """The operation a query or EC2 protocol request names with `Action=` in its query string
    or (small POST) form body; None when it names none."""
    in_query = "Action" in query
    form = _form_text(headers, body) if method == "POST" and body else None
    in_body = form is not None and b"Action" in (body or b"")
    if not (in_query or in_body):
        return None
    actions = _actions(query) if in_query else []
    if in_body:
        assert form is not None
        actions += _actions(form)
    if not actions:
        return None
    # More than one distinct value: we cannot tell which one AWS will act on.
    name = _valid_name(actions[0]) if len(actions) == 1 or len(set(actions)) == 1 else None
    unfiltered = (
        protocol == "ec2"
        and name is not None
        and name.startswith(_NON_MUTATING)
        and not _narrows(query)
        and not (form is not None and _narrows(form))
    )
    resources = 1
    if protocol == "ec2" and (name == _RUN_INSTANCES or name in _INSTANCE_LIST_CALLS):
        if form is None and body:
            # A body this does not read (over MAX_FORM_BODY, or not a form) may name any
            # number of instances: charged the most, so the call is refused at once.
            resources = _MAX_RESOURCES
        else:
            assert name is not None
            resources = _resources(name, _pairs(query, form))
    return Operation(
        service,
        name,
        protocol=protocol,
        account=account,
        region=region,
        unfiltered=unfiltered,
        resources=resources,
    )


def error_protocol(
    method: str, endpoint: Endpoint, path: str, query: str, headers: Mapping[str, str]
) -> str:
    """The protocol to answer in when the request is refused before its body was read (the
    body may be what names a query-protocol operation)."""
    protocol = classify(method, endpoint, path, query, headers, None).protocol
    if protocol == "unknown":
        facts = service_prefix(endpoint.endpoint_prefix)
        if "ec2" in facts.protocols:
            return "ec2"
        if not facts.protocols or facts.protocols & _QUERY_PROTOCOLS:
            return "query"
    return protocol


def _form_text(headers: Mapping[str, str], body: bytes) -> str | None:
    """A POST body read as a form: small enough and declared one; None when it is not read."""
    if len(body) > MAX_FORM_BODY:
        return None
    if not headers.get("content-type", "").lower().startswith(_FORM_TYPE):
        return None
    return body.decode("utf-8", errors="replace")


def _plain_keys(form: str) -> bool:
    return "%" not in form or _ESCAPED_KEY.search("&" + form) is None


def _actions(form: str) -> list[str]:
    """Every decoded `Action` value of a query string or form body."""
    if _plain_keys(form):
        values: list[str] = _RAW_ACTIONS.findall("&" + form)
        return values if "%" not in form and "+" not in form else [_decode(v) for v in values]
    return [_decode(raw) for key, sep, raw in _fields(form) if sep and key == "Action"]


def _narrows(form: str) -> bool:
    """True when an EC2 call filters (`Filter.N`), names resources (any list parameter such as
    `InstanceId.N`) or paginates (`MaxResults`, `NextToken`)."""
    if _plain_keys(form):
        return _RAW_NARROWING.search("&" + form) is not None
    return any(key in _PAGINATION or _LIST_PARAMETER.match(key) for key, _, _ in _fields(form))


def _resources(name: str, pairs: list[tuple[str, str]]) -> int:
    """Instances an EC2 call acts on: distinct `InstanceId.N` values, or RunInstances'
    `MaxCount` (the most AWS may launch: charged in full, as AWS's bucket must hold it).
    At least 1: a call naming none (or a bad MaxCount) is AWS's to refuse, not ours to price."""
    if name == _RUN_INSTANCES:
        # A repeated MaxCount is charged its largest value (which one AWS takes is AWS's).
        counts = [value for key, value in pairs if key == "MaxCount"]
        if not counts or not all(count.isascii() and count.isdigit() for count in counts):
            return 1
        if any(len(count) > len(str(_MAX_RESOURCES)) for count in counts):
            return _MAX_RESOURCES
        return max(1, min(max(int(count) for count in counts), _MAX_RESOURCES))
    ids = {value for key, value in pairs if _INSTANCE_ID.match(key)}
    return max(1, len(ids))


def _pairs(query: str, form: str | None) -> list[tuple[str, str]]:
    """Every decoded `key=value` of the query string and form body (no `=`: the value is '');
    asked only for the few calls that are priced by resources."""
    fields = _fields(query) if form is None else _fields(query) + _fields(form)
    return [(key, _decode(raw)) for key, _, raw in fields]


def _fields(form: str) -> list[tuple[str, str, str]]:
    """Each non-empty `key=value` part: (decoded key, '=' or '' when there is none, raw value)."""
    return [
        (unquote_plus(key), sep, raw)
        for key, sep, raw in (part.partition("=") for part in form.split("&") if part)
    ]


def _decode(raw: str) -> str:
    return unquote_plus(raw) if "%" in raw or "+" in raw else raw


def _valid_name(candidate: str) -> str | None:
    return candidate if _OPERATION_NAME.match(candidate) else None


def _rest_protocol(protocols: frozenset[str]) -> str:
    for protocol in ("rest-xml", "rest-json"):
        if protocol in protocols:
            return protocol
    return "unknown"
