"""The two listeners (proxy and admin), start-up, graceful drain and config reload.

The proxy listener is the front (proxy.front: an asyncio protocol on httptools, every path
proxied, including S3 keys like `/metrics`). The admin listener, on its own port, is aiohttp and
serves /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.app.admin_api import LoadTestApi, read_admin_token
from proxy.app.binding import ListenError, listen_error
from proxy.app.readiness import ReadinessProbe
from proxy.aws.operations import Operation
from proxy.aws.routing import Router
from proxy.clock import Clock, SystemClock
from proxy.config.model import Config, ConfigError, load_config
from proxy.credentials.base import CredentialSource
from proxy.credentials.route_identities import IdentityKeeper, IdentitySources
from proxy.faults.stage import FaultInjector
from proxy.front.guard import Front
from proxy.front.listener import open_listener, raise_fd_limit
from proxy.observability.logs import get_logger
from proxy.observability.metrics import Metrics
from proxy.pipeline.context import PipelineParts
from proxy.pipeline.stages import RequestPipeline
from proxy.ratelimit import build_rate_limiter, effective_rules
from proxy.report.recorder import RunRecorder
from proxy.retry import AttemptRunner
from proxy.upstream.client import UpstreamClient

log = get_logger("proxy.app.server")
# Settings a running proxy cannot swap: sockets, the upstream pool, credentials, the shared
# limiter's connection and the log pipeline are built once at start.
_RESTART_ONLY = (
    "listen",
    "admin_listen",
    "upstream",
    "redis",
    "credentials",
    "log_level",
    "fault_seed",
    "admin_token_file",
)


@dataclass(frozen=True)
class BoundAddresses:
    proxy: tuple[str, int]
    admin: tuple[str, int]


class ProxyServer:
    """One running proxy: listeners, shared upstream session, credentials, limiter, retries."""

    def __init__(
        self,
        config: Config,
        *,
        credentials: CredentialSource | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        profile: str | None = None,
        mfa_code: str | None = None,
        upstream: UpstreamClient | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.upstream = upstream or UpstreamClient(config.upstream, metrics=self.metrics)
        self._env = env
        self._profile = profile
        self._mfa_code = mfa_code
        self._credentials_override = credentials
        self.credentials: CredentialSource | None = credentials
        self.limiter = build_rate_limiter(config, self.metrics, self.clock)
        self.recorder = RunRecorder(self.clock)
        self.attempts = AttemptRunner(
            config.retry,
            self.metrics,
            clock=self.clock,
            on_throttle=self._on_throttle,
            on_success=self.limiter.observe_success,
            on_retry=lambda op: self.recorder.retried(op.service, op.label),
        )
        self.faults = FaultInjector(
            config.faults,
            config.fault_seed,
            self.metrics,
            self.clock,
            on_inject=lambda op, _rule: self.recorder.fault(op.service, op.label),
        )
        self._admin_token = read_admin_token(config)
        # Read at scrape time from the count the pipeline keeps anyway: no gauge update per
        # request.
        self.metrics.inflight_requests.set_function(self._inflight)
        self.pipeline: RequestPipeline | None = None
        self.identities: IdentityKeeper | None = None
        self.readiness = ReadinessProbe()
        self._runners: list[web.BaseRunner] = []
        self.front: Front | None = None
        self._listener: asyncio.Server | None = None
        self._draining = False
        self.addresses: BoundAddresses | None = None
        self._background: set[asyncio.Task[bool]] = set()
        self._reload_lock = asyncio.Lock()

    async def start(self) -> BoundAddresses:
        """Bind both listeners (port 0 picks a free port) and start background work."""
        if self.credentials is None:
            from proxy.credentials.setup import build_credential_source

            self.credentials = build_credential_source(
                self.config,
                session=self.upstream.session,
                metrics=self.metrics,
                clock=self.clock,
                env=self._env,
                profile=self._profile,
                mfa_code=self._mfa_code,
            )
        start = getattr(self.credentials, "start", None)
        if start is not None:
            await start()
        self.readiness.credentials = self.credentials
        self.identities = self._identity_keeper(self.credentials)
        self.readiness.identities = self.identities.status
        parts = PipelineParts(
            self.config,
            Router(self.config),
            self.limiter,
            self.attempts,
            self.identities.apply(self.config),
        )
        self.pipeline = RequestPipeline(
            parts,
            credentials=self.credentials,
            upstream=self.upstream,
            metrics=self.metrics,
            clock=self.clock,
            faults=self.faults,
            recorder=self.recorder,
        )
        raise_fd_limit(self.config.connections.max_connections)
        self.front = Front(self.config.connections, self.config.buffered_body_budget, self.metrics)
        self.front.start(self.pipeline.handle)
        try:
            self._listener = await open_listener(self.front, *self.config.listen)
        except OSError as exc:
            raise listen_error("listen", self.config.listen, exc) from None
        host, port = self._listener.sockets[0].getsockname()[:2]
        proxy_addr = (str(host), int(port))
        # drain() has already waited out shutdown_grace when cleanup runs: aiohttp must not
        # wait again (its own default is 60 s), or the pod outlives its grace period.
        admin_addr = await self._listen(
            web.AppRunner(self._admin_app(), shutdown_timeout=0.5),
            self.config.admin_listen,
            "admin_listen",
        )
        self.addresses = BoundAddresses(proxy_addr, admin_addr)
        log.info(
            "started",
            listen=f"{proxy_addr[0]}:{proxy_addr[1]}",
            admin=f"{admin_addr[0]}:{admin_addr[1]}",
            config=self.config.source,
            loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        return self.addresses

    async def _listen(
        self, runner: web.BaseRunner, address: tuple[str, int], key: str
    ) -> tuple[str, int]:
        await runner.setup()
        site = web.TCPSite(runner, address[0], address[1], reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise listen_error(key, address, exc) from None
        self._runners.append(runner)
        # The bound address (port 0 picks a free port), from any event loop's server.
        host, port = runner.addresses[0][:2]
        return str(host), int(port)

    def _inflight(self) -> int:
        """Requests being answered now (the pipeline counts them)."""
        return self.pipeline.inflight if self.pipeline is not None else 0

    def _admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        quota = self.attempts.quota
        LoadTestApi(self.faults, self.recorder, quota.available, self._admin_token).add_routes(app)
        return app

    def _on_throttle(self, op: Operation) -> None:
        self.limiter.observe_throttle(op)
        self.recorder.throttled(op.service, op.label)

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self._draining:
            return web.Response(status=503, text="draining\n")
        ready, message = await self.readiness.check()
        return web.Response(status=200 if ready else 503, text=message + "\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def reload(self, path: str) -> bool:
        """Read the config file again; on any error keep the old config. True when applied."""
        try:
            config, router = _read_config(path)
        except ConfigError as error:
            log.error("reload-failed", error=str(error.in_file(path)), kept=self.config.source)
            return False
        return self._apply(path, config, router)

    def schedule_reload(self, path: str) -> None:
        """SIGHUP: read and check the file in a worker thread, so the event loop keeps serving
        while a large file parses; apply it on the loop. Reloads run one at a time."""
        task = asyncio.get_running_loop().create_task(self._reload_off_loop(path))
        self._background.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._background.discard)

    async def _reload_off_loop(self, path: str) -> bool:
        async with self._reload_lock:
            try:
                config, router = await asyncio.to_thread(_read_config, path)
            except ConfigError as error:
                log.error("reload-failed", error=str(error.in_file(path)), kept=self.config.source)
                return False
            except Exception:
                log.exception("reload-failed", kept=self.config.source)
                return False
            return self._apply(path, config, router)

    def _apply(self, path: str, config: Config, router: Router) -> bool:
        ignored = [
            key for key in _RESTART_ONLY if getattr(config, key) != getattr(self.config, key)
        ]
        if ignored:
            log.warning("reload-ignores", keys=ignored, detail="these change on restart only")
            # Keep what is really in force, so `self.config` never claims otherwise.
            config = dataclasses.replace(config, **{k: getattr(self.config, k) for k in ignored})
            router = Router(config)
        self.limiter.update_rules(effective_rules(config), config.limit_policy)
        self.attempts.update_config(config.retry)
        if self.front is not None:
            # New timeouts and caps apply to the next phase of every connection.
            self.front.update(config.connections, config.buffered_body_budget)
        if config.faults != self.config.faults:
            # Only a changed `faults:` replaces the rules: a reload keeps rules PUT at run time.
            self.faults.replace(config.faults)
        assert self.pipeline is not None
        # The routes' identities of the new config, bound to requests with their routes.
        assert self.identities is not None
        identities = self.identities.apply(config, grace=config.shutdown_grace)
        self.pipeline.parts = PipelineParts(config, router, self.limiter, self.attempts, identities)
        self.config = config
        log.info("reloaded", config=path, limits=len(effective_rules(config)))
        return True

    def _identity_keeper(self, default: CredentialSource) -> IdentityKeeper:
        from proxy.credentials.setup import build_sts_client

        env = dict(os.environ if self._env is None else self._env)
        sts = build_sts_client(self.config, env, self.upstream.session, self.clock)
        sources = IdentitySources(
            default, sts, self.upstream.session, self.metrics, self.clock, env
        )
        return IdentityKeeper(sources)

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting, fail /readyz, let in-flight requests finish up to the grace time."""
        grace = self.config.shutdown_grace if grace is None else grace
        self._draining = True
        log.info("draining", grace_seconds=grace)
        if self._listener is not None:
            self._listener.close()  # no new connections
        if self.front is not None:
            # Requests on connections opened before the drain are still served, answered with
            # `Connection: close`; connections waiting for a next request are closed now.
            self.front.draining = True
            self.front.close_idle()
        deadline = asyncio.get_running_loop().time() + grace
        while self._inflight() > 0:
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("drain-timeout", inflight=self._inflight())
                break
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.front is not None:
            self.front.stop()
            self.front.abort_all()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.identities is not None:
            await self.identities.close()
        close = getattr(self.credentials, "close", None)
        if close is not None:
            await close()
        await self.limiter.close()
        await self.upstream.close()


def _read_config(path: str) -> tuple[Config, Router]:
    """The config at `path`, checked as start-up checks it (routes compile); pure, so it may
    run in a worker thread."""
    config = load_config(path)
    return config, Router(config)


async def serve_forever(server: ProxyServer, config_path: str | None) -> int:
    """Run until SIGTERM/SIGINT (drain, exit 0); SIGHUP reloads `config_path`."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await server.start()
    except ListenError:
        await server.close()  # nothing left open behind the one-line error
        raise
    if config_path is not None:
        # Only once started: a reload swaps parts of a pipeline that must exist.
        loop.add_signal_handler(signal.SIGHUP, server.schedule_reload, config_path)
    await stop.wait()
    await server.drain()
    await server.close()
    log.info("stopped")
    return 0
