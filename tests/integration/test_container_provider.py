"""ContainerProvider against a real fake container endpoint, plus its pure URL rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from proxy.credentials import container
from proxy.credentials.container import (
    ATTEMPTS,
    FULL_URI_VAR,
    RELATIVE_URI_VAR,
    RETRY_DELAY_SECONDS,
    TOKEN_FILE_VAR,
    TOKEN_VAR,
    ContainerProvider,
    check_full_uri,
    resolve_endpoint,
)
from proxy.credentials.timestamps import parse_expiration
from proxy.errors import CredentialError
from tests.fakes import serve
from tests.fakes.clock import FakeClock
from tests.fakes.container import CREDENTIALS_PATH, FakeContainerEndpoint
from tests.fakes.imds import EXAMPLE_KEY_ID, EXAMPLE_SECRET, EXAMPLE_SESSION_TOKEN

POD_TOKEN = "eyJhbGciOiJSUzI1NiJ9.example-pod-identity-token"


class RecordingSleep:
    """Injected instead of asyncio.sleep: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake() -> FakeContainerEndpoint:
    return FakeContainerEndpoint()


@pytest.fixture
async def full_uri(fake: FakeContainerEndpoint) -> AsyncIterator[str]:
    async with serve(fake.app()) as url:
        yield url + CREDENTIALS_PATH


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def make_provider(
    session: aiohttp.ClientSession, sleep: RecordingSleep, **env: str
) -> ContainerProvider:
    return ContainerProvider(env, session, FakeClock(), sleep=sleep)


async def test_full_uri_credentials(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    creds = await make_provider(session, sleep, **{FULL_URI_VAR: full_uri}).load()

    assert creds is not None
    assert creds.provider == "container"
    assert (creds.access_key_id, creds.secret_access_key) == (EXAMPLE_KEY_ID, EXAMPLE_SECRET)
    assert creds.session_token == EXAMPLE_SESSION_TOKEN
    assert creds.expiry == parse_expiration(fake.expiration)
    assert fake.requests == 1
    assert fake.authorizations == [None]


async def test_not_configured_returns_none(
    session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    provider = make_provider(session, sleep)
    assert await provider.load() is None
    assert provider.describe() == f"{RELATIVE_URI_VAR} and {FULL_URI_VAR} not set"


async def test_authorization_from_token_variable(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    fake.expected_authorization = POD_TOKEN
    env = {FULL_URI_VAR: full_uri, TOKEN_VAR: POD_TOKEN}
    assert await make_provider(session, sleep, **env).load() is not None
    assert fake.authorizations == [POD_TOKEN]


async def test_token_file_is_reread_at_every_fetch_and_wins_over_the_variable(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text("token-one", encoding="utf-8")
    env = {FULL_URI_VAR: full_uri, TOKEN_FILE_VAR: str(token_file), TOKEN_VAR: "ignored"}
    provider = make_provider(session, sleep, **env)

    fake.expected_authorization = "token-one"
    assert await provider.load() is not None
    # The kubelet rotates the projected token: the next fetch must send the new one.
    token_file.write_text("token-two", encoding="utf-8")
    fake.expected_authorization = "token-two"
    assert await provider.load() is not None

    assert fake.authorizations == ["token-one", "token-two"]


async def test_wrong_token_is_not_retried_and_names_the_endpoint(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    fake.expected_authorization = POD_TOKEN
    provider = make_provider(session, sleep, **{FULL_URI_VAR: full_uri, TOKEN_VAR: "stale"})
    with pytest.raises(CredentialError) as caught:
        await provider.load()
    assert caught.value.provider == "container"
    assert caught.value.message == (
        f"{full_uri} (from {FULL_URI_VAR}): HTTP 403: AccessDeniedException bad authorization token"
    )
    assert fake.requests == 1
    assert "stale" not in str(caught.value)


@pytest.mark.parametrize("value", ["token\n", "tok\ren", "a\r\nX-Injected: 1"])
async def test_cr_lf_in_token_file_is_rejected_before_any_request(
    value: str,
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(value.encode())
    provider = make_provider(
        session, sleep, **{FULL_URI_VAR: full_uri, TOKEN_FILE_VAR: str(token_file)}
    )
    with pytest.raises(CredentialError) as caught:
        await provider.load()
    assert caught.value.message == f"{TOKEN_FILE_VAR} {token_file} contains a CR or LF character"
    assert fake.requests == 0


async def test_cr_lf_in_token_variable_is_rejected(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    provider = make_provider(session, sleep, **{FULL_URI_VAR: full_uri, TOKEN_VAR: "a\nb"})
    with pytest.raises(CredentialError) as caught:
        await provider.load()
    assert caught.value.message == f"{TOKEN_VAR} contains a CR or LF character"
    assert fake.requests == 0


async def test_missing_token_file_names_variable_and_path(
    full_uri: str, session: aiohttp.ClientSession, sleep: RecordingSleep, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    provider = make_provider(
        session, sleep, **{FULL_URI_VAR: full_uri, TOKEN_FILE_VAR: str(missing)}
    )
    with pytest.raises(CredentialError) as caught:
        await provider.load()
    assert (
        caught.value.message
        == f"{TOKEN_FILE_VAR} {missing}: cannot read: No such file or directory"
    )


async def test_server_errors_are_retried_up_to_three_attempts(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    fake.failures = [500, 503]
    creds = await make_provider(session, sleep, **{FULL_URI_VAR: full_uri}).load()
    assert creds is not None
    assert fake.requests == ATTEMPTS == 3
    assert sleep.delays == [RETRY_DELAY_SECONDS] * 2


async def test_three_server_errors_give_up_with_the_last_status(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    fake.failures = [500, 502, 503, 500]
    with pytest.raises(CredentialError, match=r"HTTP 503: InternalError scripted failure$"):
        await make_provider(session, sleep, **{FULL_URI_VAR: full_uri}).load()
    assert fake.requests == 3


async def test_timeout_is_retried_then_reported(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real 2 s budget would make this test take 6 s; the behaviour is the same.
    monkeypatch.setattr(container, "TIMEOUT_SECONDS", 0.1)
    fake.delay = 0.5
    with pytest.raises(CredentialError, match=r"no answer within 0.1s$"):
        await make_provider(session, sleep, **{FULL_URI_VAR: full_uri}).load()
    assert fake.requests == 3


async def test_unreachable_endpoint_is_an_error(
    session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    async with serve(FakeContainerEndpoint().app()) as url:
        pass  # closed again: nothing listens on the port now
    with pytest.raises(CredentialError, match="connection failed"):
        await make_provider(session, sleep, **{FULL_URI_VAR: url + CREDENTIALS_PATH}).load()
    assert len(sleep.delays) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "answer is not JSON"),
        ("[]", "answer is not a JSON object"),
        ('{"SecretAccessKey": "s"}', "answer lacks AccessKeyId"),
        ('{"AccessKeyId": "AKIDEXAMPLE"}', "answer lacks SecretAccessKey"),
        (
            '{"AccessKeyId": "A", "SecretAccessKey": "S", "Expiration": "later"}',
            "Expiration: not an ISO-8601 timestamp: 'later'",
        ),
    ],
)
async def test_malformed_answers_name_the_endpoint(
    body: str,
    message: str,
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    fake.body = body
    with pytest.raises(CredentialError) as caught:
        await make_provider(session, sleep, **{FULL_URI_VAR: full_uri}).load()
    assert caught.value.message.startswith(f"{full_uri} (from {FULL_URI_VAR}): ")
    assert caught.value.message.endswith(message)


async def test_answer_without_token_or_expiration_is_long_term(
    fake: FakeContainerEndpoint,
    full_uri: str,
    session: aiohttp.ClientSession,
    sleep: RecordingSleep,
) -> None:
    fake.body = '{"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "secret"}'
    creds = await make_provider(session, sleep, **{FULL_URI_VAR: full_uri}).load()
    assert creds is not None
    assert (creds.session_token, creds.expiry) == (None, None)


def test_relative_uri_goes_to_the_ecs_agent_and_wins_over_full_uri() -> None:
    endpoint = resolve_endpoint(
        {RELATIVE_URI_VAR: "/v2/credentials/abc", FULL_URI_VAR: "https://example.com/creds"}
    )
    assert endpoint is not None
    assert endpoint.url == URL("http://169.254.170.2/v2/credentials/abc")
    assert endpoint.variable == RELATIVE_URI_VAR


def test_relative_uri_must_be_a_path() -> None:
    with pytest.raises(CredentialError, match=f"{RELATIVE_URI_VAR} must start with '/'"):
        resolve_endpoint({RELATIVE_URI_VAR: "v2/credentials"})


def test_empty_variables_count_as_unset() -> None:
    assert resolve_endpoint({RELATIVE_URI_VAR: "", FULL_URI_VAR: ""}) is None


def test_display_url_hides_query_and_user_info() -> None:
    endpoint = resolve_endpoint({FULL_URI_VAR: "https://user:pw@creds.example.com/x?sig=abc"})
    assert endpoint is not None
    assert endpoint.display == "https://creds.example.com/x"


@pytest.mark.parametrize(
    "uri",
    [
        "https://creds.example.com/role",
        "https://10.0.0.7:8443/creds",
        "http://127.0.0.1:51679/creds",
        "http://127.3.4.5/creds",
        "http://localhost:8080/creds",
        "http://LOCALHOST/creds",
        "http://[::1]:8080/creds",
        "http://169.254.170.2/v2/credentials/x",
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        "http://[fd00:ec2:0:0::23]/v1/credentials",
    ],
)
def test_full_uri_allowed(uri: str) -> None:
    assert check_full_uri(uri) == URL(uri)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://creds.example.com/role", "http://creds.example.com"),
        ("http://10.0.0.7/creds", "http://10.0.0.7"),
        ("http://169.254.169.254/latest", "http://169.254.169.254"),
        ("http://localhost.example.com/creds", "http://localhost.example.com"),
        ("ftp://127.0.0.1/creds", "ftp://127.0.0.1"),
        ("/just/a/path", "://?"),
    ],
)
def test_full_uri_refused(uri: str, shown: str) -> None:
    with pytest.raises(CredentialError) as caught:
        check_full_uri(uri)
    assert caught.value.message.startswith(f"{FULL_URI_VAR} must be https, or http to loopback")
    assert caught.value.message.endswith(f"got {shown}")


async def test_refused_full_uri_is_reported_by_load_and_describe(
    session: aiohttp.ClientSession, sleep: RecordingSleep
) -> None:
    provider = make_provider(session, sleep, **{FULL_URI_VAR: "http://evil.example.com/"})
    with pytest.raises(CredentialError, match=FULL_URI_VAR):
        await provider.load()
    assert provider.describe().startswith(f"{FULL_URI_VAR} must be https")
