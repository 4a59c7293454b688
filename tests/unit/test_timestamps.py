"""parse_expiration / format_expiration: the one timestamp parser of the credential chain."""

from __future__ import annotations

import pytest

from proxy.credentials.timestamps import format_expiration, parse_expiration

NOON = 1_795_953_600.0  # 2026-11-29T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T12:00:00Z", NOON),
        ("2026-11-29T12:00:00+00:00", NOON),
        ("2026-11-29T12:00:00.250Z", NOON + 0.25),
        ("2026-11-29T12:00:00.123456789Z", NOON + 0.123456),
        ("2026-11-29T14:00:00+02:00", NOON),
        ("2026-11-29T07:00:00-05:00", NOON),
        ("2026-11-29t12:00:00z", NOON),
        ("  2026-11-29T12:00:00Z\n", NOON),
        # aws-mfa writes naive UTC with a space.
        ("2026-11-29 12:00:00", NOON),
        ("2026-11-29T12:00:00", NOON),
    ],
)
def test_parses_iso_8601_to_epoch_seconds(text: str, expected: float) -> None:
    assert parse_expiration(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text", ["", "   ", "tomorrow", "2026-13-01T00:00:00Z", "1795953600", "2026-11-29T25:00Z"]
)
def test_rejects_what_is_not_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp"):
        parse_expiration(text)


def test_error_quotes_the_text() -> None:
    with pytest.raises(ValueError, match="'soon'"):
        parse_expiration("soon")


def test_rejects_overlong_input_without_echoing_it_all() -> None:
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp") as caught:
        parse_expiration("9" * 10_000)
    assert len(str(caught.value)) < 120


def test_format_round_trips_whole_seconds() -> None:
    assert format_expiration(NOON) == "2026-11-29T12:00:00Z"
    assert format_expiration(NOON + 0.9) == "2026-11-29T12:00:00Z"
    assert parse_expiration(format_expiration(NOON)) == NOON
