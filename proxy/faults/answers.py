"""What each fault kind answers, in the service's own error format (proxy.aws.errors).

Pure: (rule, protocol, request id) in, status + headers + body out. `reset` and `timeout`
have no answer: the stage turns them into a cut connection or silence.
"""

from __future__ import annotations

from proxy.aws.errors import ErrorAnswer, render_aws_error, throttle_answer
from proxy.faults.model import FaultRule

FAULT_HEADER = "x-throttle-proxy-fault"
# 500 codes as each protocol's services write them.
_INTERNAL_BY_PROTOCOL = {"ec2": "InternalError", "rest-xml": "InternalError"}
_INTERNAL = "InternalFailure"
_UNAVAILABLE = (503, "ServiceUnavailable")


def fault_status_code(rule: FaultRule, protocol: str) -> tuple[int, str]:
    """The (status, code) a rule of an answering kind sends for `protocol`.

    `status` and `code` override the kind's own (DynamoDB's throttle is
    `code: ProvisionedThroughputExceededException`, 400 like its ThrottlingException)."""
    if rule.kind == "throttle":
        status, code = throttle_answer(protocol)
    elif rule.kind == "internal":
        status, code = 500, _INTERNAL_BY_PROTOCOL.get(protocol, _INTERNAL)
    elif rule.kind == "unavailable":
        status, code = _UNAVAILABLE
    else:  # error: the parser made status and code required
        status, code = 500, "InternalFailure"
    return rule.status or status, rule.code or code


def fault_answer(rule: FaultRule, protocol: str, request_id: str) -> ErrorAnswer:
    """The injected answer, with `x-throttle-proxy-fault: <rule>` so people can tell."""
    status, code = fault_status_code(rule, protocol)
    message = f"injected by throttle-proxy fault rule {rule.name!r}"
    answer = render_aws_error(status, code, message, protocol, request_id)
    answer.headers[FAULT_HEADER] = rule.name
    return answer
