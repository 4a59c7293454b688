"""One parser for the expiration timestamps every credential source hands us.

IMDS, container endpoints, STS, `credential_process` and `AWS_CREDENTIAL_EXPIRATION` all write
ISO-8601 (`2026-11-29T12:00:00Z`, `...+00:00`, `...00.123Z`); the aws-mfa convention writes
`expiration = 2026-11-29 12:00:00` without a zone, meaning UTC. Pure: no clock, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime

# Longest string worth parsing: a timestamp with nanoseconds and an offset is ~35 characters.
_MAX_LENGTH = 64


def parse_expiration(text: str) -> float:
    """Parse an ISO-8601 timestamp into epoch seconds (UTC when the text names no zone).

    Raises ValueError (quoting the text, which is never a secret) when it is not a timestamp.
    """
    value = text.strip()
    if not value or len(value) > _MAX_LENGTH:
        raise ValueError(f"not an ISO-8601 timestamp: {text[:_MAX_LENGTH]!r}")
    # fromisoformat rejects a lower-case "z"/"t", which some tools write.
    normalized = value.upper()
    try:
        # Python 3.11+ reads "Z", offsets and fractions of any length (cut to microseconds).
        parsed = datetime.fromisoformat(normalized)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_expiration(epoch_seconds: float) -> str:
    """Epoch seconds as `2026-11-29T12:00:00Z`, the form AWS tools write (whole seconds)."""
    moment = datetime.fromtimestamp(int(epoch_seconds), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
