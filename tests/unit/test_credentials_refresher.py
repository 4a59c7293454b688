"""Refresh windows, single flight, backoff and status, driven by a FakeClock."""

from __future__ import annotations

import asyncio

import pytest

from proxy.config.model import CredentialsConfig
from proxy.credentials.base import Credentials
from proxy.credentials.chain import CredentialChain
from proxy.credentials.refresher import RefreshingCredentials
from proxy.errors import CredentialError, MfaRequired, NoCredentials
from proxy.observability.metrics import Metrics
from tests.fakes.clock import FakeClock

HOUR = 3600.0
MINUTE = 60.0

Outcome = Credentials | Exception | None


class ScriptedProvider:
    """Returns the scripted outcomes in order (the last one repeats); counts loads."""

    name = "scripted"

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.changed = False

    async def load(self) -> Credentials | None:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def describe(self) -> str:
        return "nothing scripted"


class WatchedProvider(ScriptedProvider):
    async def source_changed(self) -> bool:
        return self.changed


def creds(key: str, expiry: float | None) -> Credentials:
    return Credentials(key, "secret", "token", expiry, "scripted")


def refresher(
    provider: ScriptedProvider, clock: FakeClock, metrics: Metrics | None = None
) -> RefreshingCredentials:
    return RefreshingCredentials(
        CredentialChain([provider]), clock, metrics or Metrics(), CredentialsConfig()
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_fifty_concurrent_gets_share_one_load() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(creds("AKID1", clock.time() + HOUR))
    provider.gate = asyncio.Event()
    source = refresher(provider, clock)
    waiting = [asyncio.create_task(source.get()) for _ in range(50)]
    await asyncio.sleep(0)
    provider.gate.set()
    results = await asyncio.gather(*waiting)
    assert provider.loads == 1
    assert {r.access_key_id for r in results} == {"AKID1"}


async def test_advisory_window_refreshes_in_background_and_keeps_old_on_failure() -> None:
    clock = FakeClock()
    metrics = Metrics()
    first = creds("AKID1", clock.time() + HOUR)
    provider = ScriptedProvider(first, CredentialError("scripted", "boom"))
    source = refresher(provider, clock, metrics)
    assert await source.get() is first
    assert await source.refresh_if_due() == pytest.approx(HOUR - 15 * MINUTE)
    clock.advance(HOUR - 14 * MINUTE)  # inside advisory (15 min), outside mandatory (10 min)
    assert await source.get() is first  # callers never wait here
    assert provider.loads == 1
    delay = await source.refresh_if_due()  # the background step: fails, keeps the old keys
    assert provider.loads == 2
    assert delay == pytest.approx(1.0)
    assert await source.get() is first
    assert await source.refresh_if_due() == pytest.approx(1.0)  # backing off: no new load
    assert provider.loads == 2
    ready, message = source.status()
    assert ready
    assert "refresh failing: scripted: boom" in message
    assert (
        sample(
            metrics,
            "throttle_proxy_credentials_refresh_total",
            identity="default",
            provider="scripted",
            result="error",
        )
        == 1.0
    )


async def test_backoff_grows_and_is_capped() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(CredentialError("scripted", "down"))
    source = refresher(provider, clock)
    delays = []
    for _ in range(8):
        delays.append(await source.refresh_if_due())
        clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert provider.loads == 8


async def test_mandatory_window_callers_wait_for_one_refresh() -> None:
    clock = FakeClock()
    old = creds("AKIDOLD", clock.time() + HOUR)
    new = creds("AKIDNEW", clock.time() + 2 * HOUR)
    provider = ScriptedProvider(old, new)
    source = refresher(provider, clock)
    await source.get()
    clock.advance(HOUR - 9 * MINUTE)
    provider.gate = asyncio.Event()
    waiting = [asyncio.create_task(source.get()) for _ in range(10)]
    await asyncio.sleep(0)
    provider.gate.set()
    assert {c.access_key_id for c in await asyncio.gather(*waiting)} == {"AKIDNEW"}
    assert provider.loads == 2


async def test_mandatory_failure_is_an_error_until_backoff_ends() -> None:
    clock = FakeClock()
    old = creds("AKIDOLD", clock.time() + HOUR)
    provider = ScriptedProvider(old, CredentialError("scripted", "sts down"), old)
    source = refresher(provider, clock)
    await source.get()
    clock.advance(HOUR - 5 * MINUTE)
    with pytest.raises(NoCredentials, match="scripted: sts down"):
        await source.get()
    with pytest.raises(NoCredentials, match="scripted: sts down"):
        await source.get()  # within backoff: no second load per request
    assert provider.loads == 2
    ready, message = source.status()
    assert not ready
    assert message == "no-credentials: scripted: sts down"


async def test_nothing_found_is_reported_and_not_reprobed_per_request() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(None, creds("AKIDLATE", None))
    source = refresher(provider, clock)
    with pytest.raises(NoCredentials) as caught:
        await source.get()
    assert caught.value.message == "no credentials: scripted: nothing scripted"
    assert source.status() == (False, "no-credentials: no credentials: scripted: nothing scripted")
    with pytest.raises(NoCredentials):
        await source.get()
    assert provider.loads == 1
    clock.advance(1.0)
    assert (await source.get()).access_key_id == "AKIDLATE"
    ready, message = source.status()
    assert ready
    assert message.startswith("ready: scripted ")
    assert message.endswith(" expires never")


async def test_mfa_required_sets_gauge_and_status() -> None:
    clock = FakeClock()
    metrics = Metrics()
    old = creds("AKIDOLD", clock.time() + HOUR)
    provider = ScriptedProvider(old, MfaRequired("assume-role: profile [a] needs a new MFA code"))
    source = refresher(provider, clock, metrics)
    await source.get()
    clock.advance(HOUR - 12 * MINUTE)
    await source.refresh_if_due()
    assert sample(metrics, "throttle_proxy_credentials_mfa_required") == 1.0
    assert source.status()[0]  # the old session still works for a few minutes
    clock.advance(3 * MINUTE)
    with pytest.raises(MfaRequired):
        await source.get()
    assert source.status() == (
        False,
        "mfa-required: assume-role: profile [a] needs a new MFA code",
    )


async def test_expired_credentials_are_an_error() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(creds("AKIDOLD", clock.time() - 1))
    source = refresher(provider, clock)
    with pytest.raises(
        NoCredentials, match=r"^scripted: credentials expired at 2015-08-30T12:35:59Z"
    ):
        await source.get()


async def test_near_expiry_keys_are_used_but_refresh_is_backed_off() -> None:
    # IMDS static stability hands out keys valid for a few minutes: use them, ask again later.
    clock = FakeClock()
    stable = creds("AKIDSTABLE", clock.time() + 7 * MINUTE)
    provider = ScriptedProvider(stable)
    source = refresher(provider, clock)
    assert await source.get() is stable
    assert await source.get() is stable
    assert provider.loads == 1
    assert await source.refresh_if_due() == pytest.approx(1.0)


async def test_changed_file_is_reloaded_and_expiry_gauge_follows() -> None:
    clock = FakeClock()
    metrics = Metrics()
    provider = WatchedProvider(creds("AKID1", None), creds("AKID2", clock.time() + HOUR))
    source = refresher(provider, clock, metrics)
    await source.get()
    assert await source.refresh_if_due() == 30.0  # polls the file
    assert provider.loads == 1
    provider.changed = True
    await source.refresh_if_due()
    assert (await source.get()).access_key_id == "AKID2"
    expiry = sample(
        metrics,
        "throttle_proxy_credentials_expiry_timestamp_seconds",
        identity="default",
        provider="scripted",
    )
    assert expiry == clock.time() + HOUR


async def test_start_loads_in_background_and_close_stops() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(creds("AKID1", None))
    source = refresher(provider, clock)
    assert source.status() == (False, "no-credentials: credentials not loaded yet")
    await source.start()
    for _ in range(100):
        if source.current is not None:
            break
        await asyncio.sleep(0.01)
    assert source.current is not None
    assert source.status()[0]
    await source.close()
    assert provider.loads == 1


async def test_mfa_required_is_announced_then_makes_the_proxy_not_ready() -> None:
    # Issue 3 item 6: an MFA session that can no longer be refreshed says so on /readyz.
    clock = FakeClock()
    old = creds("AKIDOLDMFA", clock.time() + HOUR)
    need_code = MfaRequired("assume-role: profile [a] needs a new MFA code for arn:mfa")
    provider = ScriptedProvider(old, need_code)
    source = refresher(provider, clock)
    await source.get()
    clock.advance(HOUR - 14 * MINUTE)  # advisory window: the background refresh fails
    await source.refresh_if_due()
    ready, message = source.status()
    assert ready  # the keys in use still work for a few minutes
    assert message.startswith("ready: scripted AKID…DMFA expires ")
    assert message.endswith(
        "; mfa-required soon: assume-role: profile [a] needs a new MFA code for arn:mfa"
    )
    assert await source.get() is old
    clock.advance(4 * MINUTE + 1)  # 9 min 59 s left: inside the mandatory window
    assert source.status() == (
        False,
        "mfa-required: assume-role: profile [a] needs a new MFA code for arn:mfa",
    )
    with pytest.raises(MfaRequired) as caught:
        await source.get()
    assert caught.value.reason == "mfa-required"  # the proxy's 503 x-throttle-proxy-error
    clock.advance(20 * MINUTE)  # expired, backoff over: still the same answer
    with pytest.raises(MfaRequired):
        await source.get()
    ready, message = source.status()
    assert not ready
    assert message.startswith("mfa-required: ")


async def test_other_refresh_failures_are_not_called_mfa() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(
        creds("AKIDOLD", clock.time() + HOUR), CredentialError("scripted", "sts down")
    )
    source = refresher(provider, clock)
    await source.get()
    clock.advance(HOUR - 14 * MINUTE)
    await source.refresh_if_due()
    ready, message = source.status()
    assert ready
    assert "mfa-required" not in message
    assert message.endswith("; refresh failing: scripted: sts down")


class CountedTime(float):
    """A clock reading that counts arithmetic done on it (the hot path should do none)."""

    operations = 0

    def __sub__(self, other: float) -> float:
        CountedTime.operations += 1
        return float(self) - other

    def __rsub__(self, other: float) -> float:
        CountedTime.operations += 1
        return other - float(self)

    def __add__(self, other: float) -> float:
        CountedTime.operations += 1
        return float(self) + other

    def __radd__(self, other: float) -> float:
        CountedTime.operations += 1
        return other + float(self)


class CountingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.time_reads = 0
        self.monotonic_reads = 0

    def time(self) -> float:
        self.time_reads += 1
        return CountedTime(super().time())

    def monotonic(self) -> float:
        self.monotonic_reads += 1
        return super().monotonic()


@pytest.mark.parametrize("expiry", [HOUR, None])
async def test_fresh_get_is_one_clock_read_and_one_comparison(expiry: float | None) -> None:
    clock = CountingClock()
    fresh = creds("AKIDFRESH", None if expiry is None else clock.time() + expiry)
    source = refresher(ScriptedProvider(fresh), clock)
    await source.get()
    clock.time_reads = clock.monotonic_reads = CountedTime.operations = 0
    for _ in range(3):
        step = source.get()
        with pytest.raises(StopIteration) as finished:
            step.send(None)  # finishes on its first step: nothing awaited
        assert finished.value.value is fresh
    assert (clock.time_reads, clock.monotonic_reads, CountedTime.operations) == (3, 0, 0)


async def test_fresh_until_follows_the_mandatory_window_exactly() -> None:
    clock = FakeClock()
    old = creds("AKIDOLD", clock.time() + HOUR)
    new = creds("AKIDNEW", clock.time() + 3 * HOUR)
    provider = ScriptedProvider(old, new)
    source = refresher(provider, clock)
    await source.get()
    clock.advance(HOUR - 10 * MINUTE - 1)  # one second before the mandatory window
    assert await source.get() is old
    assert provider.loads == 1
    clock.advance(1)  # exactly at it: callers wait for the refresh
    assert await source.get() is new
    assert provider.loads == 2
    clock.advance(HOUR)
    assert await source.get() is new  # the deadline moved with the new keys
    assert provider.loads == 2
