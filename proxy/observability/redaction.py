"""What never reaches a log line: secret-named keys and secret-shaped values.

One set of rules for every event: structlog's chain runs `redact_secrets` last-but-one, and
the fast per-request line (proxy.observability.requestlog) scrubs its values with
`scrub_text`, so neither can leak what the other would not.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from proxy.signing.queryauth import SECRET_PARAMETERS

# Keys whose values are never logged, whatever they hold.
_SECRET_KEYS = re.compile(
    r"(secret|password|passwd|token|authorization|signature|credential|customer-key|cookie)",
    re.IGNORECASE,
)
# Values that look like secrets wherever they appear: SigV4 signatures, AWS session tokens and
# `Credential=AKID/...` scopes inside an Authorization header.
_SECRET_VALUES = re.compile(
    r"(Signature=)[0-9a-f]{64}|(Credential=)[A-Z0-9]{16,128}|"
    r"(aws_secret_access_key\s*=\s*)\S+|(aws_session_token\s*=\s*)\S+|"
    r"(X-Amz-Security-Token=)[^&\s]+|(X-Amz-Signature=)[^&\s]+",
    re.IGNORECASE,
)
# A query parameter in a logged target or URL: `?name=value` / `&name=value` (or a bare query).
_QUERY_PARAMETER = re.compile(r"(?:(?<=[?&])|^)([^=&?#\s]+)=([^&#\s]*)")
REDACTED = "[redacted]"


def _query_parameter(match: re.Match[str]) -> str:
    # Names compared decoded and case-folded, as AWS reads them: `X-Amz-%53ignature` too.
    if unquote(match[1]).lower() in SECRET_PARAMETERS:
        return f"{match[1]}={REDACTED}"
    return match[0]


def scrub_text(value: str) -> str:
    """`value` with every secret-shaped part replaced by `[redacted]`."""
    if "=" not in value:  # every secret-shaped pattern has one; most log values do not
        return value
    value = _SECRET_VALUES.sub(lambda m: next(g for g in m.groups() if g) + REDACTED, value)
    return _QUERY_PARAMETER.sub(_query_parameter, value)


def scrub(value: Any) -> Any:
    """`value` (a string, or dicts, lists and tuples of them) scrubbed all the way down."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(k) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and is_secret_key(value[0]):
            return [value[0], REDACTED]  # a (name, value) header pair
        return [scrub(v) for v in value]
    return value


@lru_cache(maxsize=1024)
def is_secret_key(key: object) -> bool:
    """Whether a value under this key is never logged."""
    # `token_file` names a path, not a token; keep it visible.
    return isinstance(key, str) and bool(_SECRET_KEYS.search(key)) and not key.endswith("_file")


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: blank secret-named keys and secret-shaped values."""
    for key in list(event_dict):
        if is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = scrub(event_dict[key])
    return event_dict
