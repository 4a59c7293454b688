"""InstanceMetadataProvider against a real fake IMDS on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from structlog.testing import capture_logs

from proxy.credentials.imds import (
    ATTEMPTS_VAR,
    DISABLED_VAR,
    ENDPOINT_MODE_VAR,
    ENDPOINT_VAR,
    IPV4_ENDPOINT,
    IPV6_ENDPOINT,
    STALE_WINDOW_SECONDS,
    TIMEOUT_VAR,
    TOKEN_TTL_SECONDS,
    V1_DISABLED_VAR,
    InstanceMetadataProvider,
    settings_from_env,
)
from proxy.credentials.timestamps import format_expiration, parse_expiration
from proxy.errors import CredentialError
from tests.fakes import serve
from tests.fakes.clock import FakeClock
from tests.fakes.imds import (
    EXAMPLE_KEY_ID,
    EXAMPLE_SECRET,
    EXAMPLE_SESSION_TOKEN,
    ROLE_LIST_PATH,
    TOKEN_PATH,
    FakeImds,
)

PUT_TOKEN = f"PUT {TOKEN_PATH}"
GET_ROLES = f"GET {ROLE_LIST_PATH}"
GET_CREDS = f"GET {ROLE_LIST_PATH}throttle-proxy-role"


def fixed_jitter(low: float, high: float) -> float:
    """The injected random source: always the middle of the range, so tests can assert it."""
    return (low + high) / 2


@pytest.fixture
def fake() -> FakeImds:
    return FakeImds()


@pytest.fixture
async def imds_url(fake: FakeImds) -> AsyncIterator[str]:
    async with serve(fake.app()) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_provider(
    url: str, session: aiohttp.ClientSession, clock: FakeClock, **env: str
) -> InstanceMetadataProvider:
    return InstanceMetadataProvider({ENDPOINT_VAR: url, **env}, session, clock, jitter=fixed_jitter)


async def test_imdsv2_token_then_role_then_credentials(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    creds = await make_provider(imds_url, session, clock).load()

    assert creds is not None
    assert creds.provider == "imds"
    assert (creds.access_key_id, creds.secret_access_key) == (EXAMPLE_KEY_ID, EXAMPLE_SECRET)
    assert creds.session_token == EXAMPLE_SESSION_TOKEN
    assert creds.expiry == parse_expiration(fake.expiration)
    assert fake.ttl_requested == [str(TOKEN_TTL_SECONDS)]
    assert fake.requests == {PUT_TOKEN: 1, GET_ROLES: 1, GET_CREDS: 1}
    # Both GETs carried the one token the PUT issued.
    assert len(set(fake.tokens_seen)) == 1
    assert None not in fake.tokens_seen


async def test_token_is_cached_across_loads_until_near_its_ttl(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    provider = make_provider(imds_url, session, clock)
    await provider.load()
    clock.advance(3600)
    await provider.load()
    assert fake.requests[PUT_TOKEN] == 1
    assert fake.requests[GET_CREDS] == 2

    clock.advance(TOKEN_TTL_SECONDS - 3600)
    await provider.load()
    assert fake.requests[PUT_TOKEN] == 2


async def test_401_drops_the_cached_token_and_retries_once_with_a_fresh_one(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    provider = make_provider(imds_url, session, clock)
    await provider.load()
    fake.revoke_tokens()

    creds = await provider.load()

    assert creds is not None
    assert fake.requests[PUT_TOKEN] == 2
    assert fake.tokens_seen[2] != fake.tokens_seen[3]  # the 401'd GET, then the fresh token


@pytest.mark.parametrize("status", [403, 404, 405])
async def test_refused_token_falls_back_to_imdsv1(
    status: int,
    fake: FakeImds,
    imds_url: str,
    session: aiohttp.ClientSession,
    clock: FakeClock,
) -> None:
    fake.token_status = status
    creds = await make_provider(imds_url, session, clock).load()
    assert creds is not None
    assert creds.access_key_id == EXAMPLE_KEY_ID
    assert fake.tokens_seen == [None, None]


async def test_v1_only_imds(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.v1_only = True
    provider = make_provider(imds_url, session, clock)
    assert await provider.load() is not None
    assert await provider.load() is not None
    # v1 is not remembered: each load asks for a v2 token first, in case IMDS was upgraded.
    assert fake.requests[PUT_TOKEN] == 2
    assert fake.tokens_seen == [None] * 4


async def test_token_timeout_falls_back_to_imdsv1(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.token_delay = 1.0
    creds = await make_provider(imds_url, session, clock, **{TIMEOUT_VAR: "0.2"}).load()
    assert creds is not None
    assert fake.tokens_seen == [None, None]


@pytest.mark.parametrize(("status", "delay", "why"), [(403, 0.0, "HTTP 403"), (200, 1.0, "timed")])
async def test_v1_disabled_turns_the_fallback_into_an_error(
    status: int,
    delay: float,
    why: str,
    fake: FakeImds,
    imds_url: str,
    session: aiohttp.ClientSession,
    clock: FakeClock,
) -> None:
    fake.token_status, fake.token_delay = status, delay
    provider = make_provider(
        imds_url, session, clock, **{V1_DISABLED_VAR: "true", TIMEOUT_VAR: "0.2"}
    )
    with pytest.raises(CredentialError) as caught:
        await provider.load()
    assert caught.value.provider == "imds"
    assert f"{V1_DISABLED_VAR}=true" in caught.value.message
    assert why in caught.value.message
    assert GET_ROLES not in fake.requests


async def test_token_400_means_no_credentials(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.token_status = 400
    provider = make_provider(imds_url, session, clock)
    assert await provider.load() is None
    assert "answered 400" in provider.describe()
    assert GET_ROLES not in fake.requests


async def test_disabled_makes_no_request(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    provider = make_provider(imds_url, session, clock, **{DISABLED_VAR: "TRUE"})
    assert provider.disabled_reason() == f"disabled by {DISABLED_VAR}"
    assert await provider.load() is None
    assert provider.describe() == f"disabled by {DISABLED_VAR}"
    assert sum(fake.requests.values()) == 0


async def test_not_disabled_by_other_values(
    imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    provider = make_provider(imds_url, session, clock, **{DISABLED_VAR: "false"})
    assert provider.disabled_reason() is None
    assert await provider.load() is not None


async def test_no_role_attached_means_no_credentials(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.role = None
    provider = make_provider(imds_url, session, clock)
    assert await provider.load() is None
    assert "404" in provider.describe()
    assert ROLE_LIST_PATH in provider.describe()


async def test_unreachable_imds_means_no_credentials_quickly(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    # A port nobody listens on: what a laptop sees (refused or unreachable), not an error.
    async with serve(FakeImds().app()) as url:
        pass
    provider = make_provider(url, session, clock)
    assert await provider.load() is None
    assert url in provider.describe()
    assert "connection failed" in provider.describe()


async def test_server_error_names_the_url(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.get_failures = 1
    with pytest.raises(CredentialError, match=r"security-credentials/ answered HTTP 500"):
        await make_provider(imds_url, session, clock).load()


async def test_attempts_variable_retries_server_errors(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.get_failures = 2
    provider = make_provider(imds_url, session, clock, **{ATTEMPTS_VAR: "3"})
    assert await provider.load() is not None
    assert fake.requests[GET_ROLES] == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"Code": "Success", "AccessKeyId": "AKIDEXAMPLE"}', "lacks SecretAccessKey"),
        ('{"Code": "AssumeRoleUnauthorizedAccess"}', "Code AssumeRoleUnauthorizedAccess"),
        (
            '{"AccessKeyId": "A", "SecretAccessKey": "S", "Token": "T", "Expiration": "never"}',
            "Expiration: not an ISO-8601 timestamp",
        ),
    ],
)
async def test_malformed_credentials_name_the_url(
    body: str,
    message: str,
    fake: FakeImds,
    imds_url: str,
    session: aiohttp.ClientSession,
    clock: FakeClock,
) -> None:
    fake.credentials_body = body
    with pytest.raises(CredentialError) as caught:
        await make_provider(imds_url, session, clock).load()
    assert message in caught.value.message
    assert f"{imds_url}{ROLE_LIST_PATH}throttle-proxy-role" in caught.value.message


async def test_v2_enforced_imds_rejecting_v1_is_an_error(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.token_status, fake.require_token = 403, True
    with pytest.raises(CredentialError, match="401 to an IMDSv1 request"):
        await make_provider(imds_url, session, clock).load()


async def test_errors_and_logs_never_carry_secrets(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    provider = make_provider(imds_url, session, clock)
    await provider.load()
    fake.credentials_body = "{broken"
    with capture_logs() as logs:
        creds = await provider.load()  # static stability: the previous creds come back
    assert creds is not None
    text = repr(logs) + provider.describe()
    for secret in (EXAMPLE_SECRET, EXAMPLE_SESSION_TOKEN, *filter(None, fake.tokens_seen)):
        assert secret not in text


async def test_fresh_credentials_keep_their_expiry(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.expiration = format_expiration(clock.time() + STALE_WINDOW_SECONDS + 60)
    creds = await make_provider(imds_url, session, clock).load()
    assert creds is not None
    assert creds.expiry == clock.time() + STALE_WINDOW_SECONDS + 60


@pytest.mark.parametrize("offset", [-3600.0, 0.0, STALE_WINDOW_SECONDS - 1])
async def test_static_stability_extends_expiring_credentials(
    offset: float,
    fake: FakeImds,
    imds_url: str,
    session: aiohttp.ClientSession,
    clock: FakeClock,
) -> None:
    fake.expiration = format_expiration(clock.time() + offset)
    with capture_logs() as logs:
        creds = await make_provider(imds_url, session, clock).load()
    assert creds is not None
    # Past the refresher's 15-minute window plus the middle of the 5-10 minute jitter.
    assert creds.expiry == clock.time() + STALE_WINDOW_SECONDS + 450
    assert creds.access_key_id == EXAMPLE_KEY_ID
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("imds-credentials-near-expiry-extended", "warning")
    ]


async def test_jitter_is_drawn_between_five_and_ten_minutes(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    drawn: list[tuple[float, float]] = []

    def recording_jitter(low: float, high: float) -> float:
        drawn.append((low, high))
        return low

    fake.expiration = format_expiration(clock.time())
    provider = InstanceMetadataProvider(
        {ENDPOINT_VAR: imds_url}, session, clock, jitter=recording_jitter
    )
    creds = await provider.load()
    assert creds is not None
    assert drawn == [(300.0, 600.0)]
    assert creds.expiry == clock.time() + STALE_WINDOW_SECONDS + 300


async def test_static_stability_keeps_previous_credentials_through_an_outage(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    provider = make_provider(imds_url, session, clock)
    first = await provider.load()
    assert first is not None
    clock.advance(6 * 3600)
    fake.get_failures = 10

    with capture_logs() as logs:
        kept = await provider.load()

    assert kept is not None
    assert kept.access_key_id == first.access_key_id
    assert kept.expiry == clock.time() + STALE_WINDOW_SECONDS + 450
    assert [entry["event"] for entry in logs] == ["imds-failed-keeping-previous-credentials"]

    fake.get_failures = 0
    fake.access_key_id = "AKIDEXAMPLENEW"
    recovered = await provider.load()
    assert recovered is not None
    assert recovered.access_key_id == "AKIDEXAMPLENEW"


async def test_outage_before_any_success_is_still_an_error(
    fake: FakeImds, imds_url: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    fake.get_failures = 10
    with pytest.raises(CredentialError):
        await make_provider(imds_url, session, clock).load()


def test_endpoint_selection() -> None:
    assert settings_from_env({}).base_url == IPV4_ENDPOINT
    assert settings_from_env({ENDPOINT_MODE_VAR: "IPv6"}).base_url == IPV6_ENDPOINT
    assert settings_from_env({ENDPOINT_MODE_VAR: "ipv4"}).base_url == IPV4_ENDPOINT
    overridden = {ENDPOINT_VAR: "http://127.0.0.1:1338", ENDPOINT_MODE_VAR: "IPv6"}
    assert settings_from_env(overridden).base_url == "http://127.0.0.1:1338/"


def test_timeout_and_attempts_defaults_and_overrides() -> None:
    assert (settings_from_env({}).timeout, settings_from_env({}).attempts) == (1.0, 1)
    tuned = settings_from_env({TIMEOUT_VAR: "2.5", ATTEMPTS_VAR: "3"})
    assert (tuned.timeout, tuned.attempts) == (2.5, 3)
    assert settings_from_env({V1_DISABLED_VAR: "true"}).v1_disabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({ENDPOINT_MODE_VAR: "IPv5"}, f"{ENDPOINT_MODE_VAR} must be IPv4 or IPv6"),
        ({ENDPOINT_VAR: "169.254.169.254"}, f"{ENDPOINT_VAR} must be an http(s) URL with a host"),
        ({TIMEOUT_VAR: "soon"}, f"{TIMEOUT_VAR} must be a positive number of seconds, got 'soon'"),
        ({TIMEOUT_VAR: "0"}, f"{TIMEOUT_VAR} must be a positive number of seconds, got '0'"),
        ({ATTEMPTS_VAR: "1.5"}, f"{ATTEMPTS_VAR} must be a positive integer, got '1.5'"),
    ],
)
async def test_bad_variables_are_reported_by_load(
    env: dict[str, str], message: str, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    with pytest.raises(CredentialError) as caught:
        settings_from_env(env)
    assert caught.value.message == message
    # Building the provider does not fail; loading does, with the same message.
    provider = InstanceMetadataProvider(env, session, clock)
    with pytest.raises(CredentialError) as at_load:
        await provider.load()
    assert at_load.value.message == message
