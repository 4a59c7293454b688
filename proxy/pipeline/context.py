"""What the stages share: the parts a reload swaps, the services built once, and the one
request's context (which owns the upstream answer it holds and is the one place that
releases it)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.aws.operations import Operation
from proxy.aws.routing import Router, Target
from proxy.bodies.client import ClientBody
from proxy.bodies.intake import BodyLimits
from proxy.bodies.spool import SpoolArea
from proxy.clock import Clock
from proxy.config.model import Config
from proxy.credentials.base import CredentialSource
from proxy.credentials.identities import Identities, Identity
from proxy.faults.stage import FaultInjector
from proxy.front.exchange import Exchange
from proxy.observability.metrics import Metrics
from proxy.ratelimit import RateLimiter
from proxy.retry import AttemptRunner
from proxy.signing.sigv4 import SigningKeyCache
from proxy.upstream.client import UpstreamClient, UpstreamResponse

EMPTY_BODY = ClientBody(b"", 0)


@dataclass(frozen=True)
class PipelineParts:
    """Everything the stages call that a reload may change; swapped whole on reload."""

    config: Config
    router: Router
    limiter: RateLimiter
    attempts: AttemptRunner
    identities: Identities | None = None  # None: only the pipeline's own credentials


@dataclass
class Services:
    """What the stages share for the proxy's whole life (built once at start)."""

    credentials: CredentialSource
    upstream: UpstreamClient
    metrics: Metrics
    clock: Clock
    keys: SigningKeyCache
    debug: bool
    faults: FaultInjector
    spool: SpoolArea | None = None
    only_identity: Identities | None = None  # `credentials` alone, when parts name none

    def body_limits(self, config: Config) -> BodyLimits:
        """The body limits of `config`; one spool area (and disk budget) while its settings
        stay the same across reloads."""
        spool = self.spool
        if spool is None or spool.settings != (config.spool_dir, config.spool_budget):
            spool = self.spool = SpoolArea(config.spool_dir, config.spool_budget)
        return BodyLimits(config.max_buffered_body, config.max_body, spool)


@dataclass(slots=True, eq=False)
class RequestContext:
    """What one request carries through the stages, and learns on its way for the record."""

    exchange: Exchange
    parts: PipelineParts  # one config for the whole request, even across a reload
    services: Services
    request_id: str
    started: float
    target: Target | None = None
    identity: Identity | None = None  # bound with the route: every attempt signs as it
    body: ClientBody = EMPTY_BODY
    forwardable: list[tuple[str, str]] | None = None  # the client's headers that go upstream
    operation: Operation | None = None
    attempts: int = 0
    waited: float = 0.0
    status: int = 0
    aws_request_id: str | None = None
    error: str | None = None
    upstream: UpstreamResponse | None = None  # the upstream answer held, released by record

    def hold(self, response: UpstreamResponse | None) -> None:
        """Keep `response` as the answer; the one held before goes back to the pool."""
        held, self.upstream = self.upstream, response
        if held is not None and held is not response:
            held.release()
