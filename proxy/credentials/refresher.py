"""Credentials that stay fresh: what the request path calls for every signature.

- advisory window (15 min before expiry): the background task refreshes; on failure the old
  credentials stay in use and the task retries with capped exponential backoff;
- mandatory window (10 min): callers wait for one single-flight refresh, a failure is an error;
- nothing loaded: callers wait for one single-flight load; after a failure they get the same
  error until the backoff ends, so a missing source is not probed once per request;
- file-based credentials are re-read when the file changes (polled), so keys written by
  `throttle-proxy mfa` are used without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import structlog

from proxy.clock import Clock
from proxy.config.model import CredentialsConfig
from proxy.credentials.base import Credentials
from proxy.credentials.chain import CredentialChain, DescribedProvider
from proxy.credentials.timestamps import format_expiration
from proxy.errors import CredentialError, MfaRequired, NoCredentials
from proxy.observability.metrics import Metrics

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@runtime_checkable
class WatchedSource(Protocol):
    """A provider whose source can change under us (a file): polled by the background task."""

    async def source_changed(self) -> bool: ...


class RefreshingCredentials:
    """The chain behind a cache with refresh windows; implements CredentialSource."""

    def __init__(
        self,
        chain: CredentialChain,
        clock: Clock,
        metrics: Metrics,
        config: CredentialsConfig | None = None,
        *,
        retry_base: float = 1.0,
        retry_cap: float = 60.0,
        watch_interval: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        identity: str = "default",
    ) -> None:
        config = config or CredentialsConfig()
        self._chain = chain
        self.identity = identity  # the credentials_* metrics' `identity` label
        self._clock = clock
        self._metrics = metrics
        self._advisory = config.advisory_refresh
        self._mandatory = config.mandatory_refresh
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._watch_interval = watch_interval
        self._sleep = sleep
        self._current: Credentials | None = None
        # Wall time at which _current enters the mandatory window (inf: never expires). get()
        # compares the clock with it and nothing else while the keys are fresh.
        self._fresh_until = float("-inf")
        self._provider: DescribedProvider | None = None
        self._error: NoCredentials | None = None
        self._attempts_failed = 0
        self._retry_at = float("-inf")  # monotonic; no refresh before this after a failure
        self._inflight: asyncio.Task[Credentials] | None = None
        self._background: asyncio.Task[None] | None = None
        self._expiry_label: str | None = None

    @property
    def current(self) -> Credentials | None:
        """The snapshot in use now (whoami), without loading."""
        return self._current

    async def get(self) -> Credentials:
        """A frozen snapshot to sign with; raises NoCredentials or MfaRequired.

        Called for every proxied request: while the keys are fresh this is one clock read and
        one comparison, with no await (the coroutine finishes on its first step).
        """
        current = self._current
        if current is not None and self._clock.time() < self._fresh_until:
            return current
        return await self._get_near_expiry()

    async def _get_near_expiry(self) -> Credentials:
        current = self._current
        now = self._clock.time()
        if self._clock.monotonic() < self._retry_at:
            if self._error is not None:
                raise type(self._error)(self._error.message)
            if current is not None and (current.expiry is None or current.expiry > now):
                # The last refresh gave these near-expiry keys (IMDS static stability).
                return current
        return await self._refresh_once()

    async def start(self) -> None:
        """Launch the background refresher (it loads at once); keeps a strong reference."""
        if self._background is None:
            self._background = asyncio.create_task(self._run(), name="credentials-refresher")

    async def close(self) -> None:
        """Stop the background refresher and any refresh in flight."""
        for task in (self._background, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._background = self._inflight = None

    def status(self) -> tuple[bool, str]:
        """(ready, message) for /readyz: ready when get() would succeed right now.

        A refresh that failed for want of a new MFA code makes the proxy not ready
        (`mfa-required: …`) once the keys in use are inside the mandatory window or expired;
        until then it stays ready and says `mfa-required soon`.
        """
        current, error = self._current, self._error
        now = self._clock.time()
        expired = current is not None and current.expiry is not None and current.expiry <= now
        if current is None or expired or (error and self._within(current, now, self._mandatory)):
            if error is not None:
                return False, f"{error.reason}: {error.message}"
            return False, "no-credentials: credentials not loaded yet"
        expires = "never" if current.expiry is None else format_expiration(current.expiry)
        message = f"ready: {current.provider} {current.masked_key_id} expires {expires}"
        if isinstance(error, MfaRequired):
            message += f"; mfa-required soon: {error.message}"
        elif error is not None:
            message += f"; refresh failing: {error.message}"
        return True, message

    async def refresh_if_due(self) -> float:
        """One step of the background task: refresh when due; returns seconds until next step."""
        backoff_left = self._retry_at - self._clock.monotonic()
        if backoff_left > 0:
            return backoff_left
        current = self._current
        due = current is None or self._within(current, self._clock.time(), self._advisory)
        watched: object = self._provider
        if not due and isinstance(watched, WatchedSource):
            due = await watched.source_changed()
        if due:
            with contextlib.suppress(NoCredentials):
                await self._refresh_once()
            backoff_left = self._retry_at - self._clock.monotonic()
            if backoff_left > 0:
                return backoff_left
        return self._next_check()

    def _next_check(self) -> float:
        current = self._current
        provider: object = self._provider
        limit = self._watch_interval if isinstance(provider, WatchedSource) else 3600.0
        if current is None or current.expiry is None:
            return limit
        until_advisory = current.expiry - self._advisory - self._clock.time()
        return max(1.0, min(limit, until_advisory))

    @staticmethod
    def _within(current: Credentials, now: float, window: float) -> bool:
        return current.expiry is not None and current.expiry - now <= window

    async def _run(self) -> None:
        while True:
            try:
                delay = await self.refresh_if_due()
            except Exception:  # the refresher must outlive any bug in one provider
                log.exception("credentials-refresher-error")
                delay = self._retry_cap
            await self._sleep(delay)

    def _refresh_once(self) -> asyncio.Future[Credentials]:
        """Join the refresh in flight, or start one (single flight)."""
        task = self._inflight
        if task is None:
            task = asyncio.create_task(self._refresh(), name="credentials-refresh")
            self._inflight = task
            task.add_done_callback(self._refresh_done)
        # shield: one caller giving up must not cancel the refresh the others wait for.
        return asyncio.shield(task)

    def _refresh_done(self, task: asyncio.Task[Credentials]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported as lost

    async def _refresh(self) -> Credentials:
        try:
            credentials, provider = await self._load()
        except MfaRequired as error:
            self._failed(error, self._provider.name if self._provider else "chain")
            self._metrics.credentials_mfa_required.set(1)
            raise
        except CredentialError as error:
            self._failed(NoCredentials(str(error)), error.provider)
            raise self._error_copy() from None
        except NoCredentials as error:
            self._failed(error, "chain")
            raise
        now = self._clock.time()
        if credentials.expiry is not None and credentials.expiry <= now:
            expired = NoCredentials(
                f"{provider.name}: credentials expired at {format_expiration(credentials.expiry)}"
            )
            self._failed(expired, provider.name)
            raise self._error_copy()
        self._succeeded(credentials, provider)
        return credentials

    async def _load(self) -> tuple[Credentials, DescribedProvider]:
        # Stay with the provider that answered; walk the whole chain only when it has nothing.
        if self._provider is not None:
            credentials = await self._provider.load()
            if credentials is not None:
                return credentials, self._provider
        return await self._chain.resolve()

    def _succeeded(self, credentials: Credentials, provider: DescribedProvider) -> None:
        now = self._clock.time()
        self._current, self._provider, self._error = credentials, provider, None
        expiry = credentials.expiry
        self._fresh_until = float("inf") if expiry is None else expiry - self._mandatory
        if self._within(credentials, now, self._advisory):
            # Still near expiry (e.g. IMDS static stability): ask again later, not in a loop.
            self._attempts_failed += 1
            self._retry_at = self._clock.monotonic() + self._backoff()
        else:
            self._attempts_failed = 0
            self._retry_at = float("-inf")
        self._metrics.credentials_refresh_total.labels(
            self.identity, provider.name, "success"
        ).inc()
        self._metrics.credentials_mfa_required.set(0)
        if self._expiry_label is not None and self._expiry_label != provider.name:
            self._metrics.credentials_expiry_timestamp_seconds.remove(
                self.identity, self._expiry_label
            )
        self._expiry_label = provider.name
        gauge = self._metrics.credentials_expiry_timestamp_seconds.labels(
            self.identity, provider.name
        )
        gauge.set(credentials.expiry or 0.0)
        log.info(
            "credentials-loaded",
            identity=self.identity,
            provider=provider.name,
            access_key=credentials.masked_key_id,
            expires=None if credentials.expiry is None else format_expiration(credentials.expiry),
        )

    def _failed(self, error: NoCredentials, provider: str) -> None:
        self._error = error
        self._attempts_failed += 1
        delay = self._backoff()
        self._retry_at = self._clock.monotonic() + delay
        result = "mfa_required" if isinstance(error, MfaRequired) else "error"
        self._metrics.credentials_refresh_total.labels(self.identity, provider, result).inc()
        log.warning("credentials-refresh-failed", error=error.message, retry_in=round(delay, 3))

    def _backoff(self) -> float:
        exponent = min(self._attempts_failed - 1, 30)
        return float(min(self._retry_cap, self._retry_base * 2**exponent))

    def _error_copy(self) -> NoCredentials:
        assert self._error is not None
        return type(self._error)(self._error.message)
