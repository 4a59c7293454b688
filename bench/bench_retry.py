"""Retry amplification under throttling, with and without the retry budget.

An upstream that answers half of all requests (at random) with EC2's 503
RequestLimitExceeded sits behind a real in-process ProxyServer; N concurrent clients send
DescribeInstances through the proxy for D seconds. For each mode it prints the offered load
(client requests per second), the upstream load (attempts per second) and their ratio, the
amplification. With the budget (the SDK retry quota, 500 tokens) retries dry up as soon as the
quota is spent, so amplification stays near 1.2; without it (a quota too large to run out) every
throttle is retried up to max_attempts and amplification approaches 1 + 0.5 + 0.25 = 1.75.

    .venv/bin/python -m bench.bench_retry                     # 200 clients, 10 s, both modes
    .venv/bin/python -m bench.bench_retry --clients 50 --duration 3 --mode budget
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.app.server import ProxyServer
from proxy.config.model import parse_config
from proxy.credentials.base import Credentials
from proxy.observability.logs import configure_logging

EC2_HOST = "ec2.us-east-1.amazonaws.com"
FORM = b"Action=DescribeInstances&Version=2016-11-15"
THROTTLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
    b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
    b"</Error></Errors><RequestID>bench</RequestID></Response>"
)
OK_BODY = b"<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"
NO_BUDGET = 10**12  # a quota no run can spend: retries limited by max_attempts only


class HalfThrottlingUpstream:
    """Answers each request 503 RequestLimitExceeded with probability `throttle_ratio`."""

    def __init__(self, throttle_ratio: float, seed: int) -> None:
        self.throttle_ratio = throttle_ratio
        self.random = random.Random(seed)
        self.attempts = 0
        self.throttled = 0

    async def handle(self, request: web.BaseRequest) -> web.Response:
        await request.read()
        self.attempts += 1
        if self.random.random() < self.throttle_ratio:
            self.throttled += 1
            return web.Response(status=503, body=THROTTLE_BODY, content_type="text/xml")
        return web.Response(status=200, body=OK_BODY, content_type="text/xml")


class ExampleCredentials:
    async def get(self) -> Credentials:
        return Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


@dataclass(frozen=True)
class RunFigures:
    mode: str
    seconds: float
    requests: int
    attempts: int
    upstream_throttled: int
    statuses: dict[int, int]
    p50_ms: float
    p99_ms: float
    quota_exhausted: float

    @property
    def amplification(self) -> float:
        return self.attempts / self.requests if self.requests else 0.0

    def lines(self) -> list[str]:
        ok = self.statuses.get(200, 0)
        return [
            f"[{self.mode}]",
            f"  client requests      {self.requests:>8}  ({self.requests / self.seconds:,.0f}/s "
            "offered)",
            f"  upstream attempts    {self.attempts:>8}  ({self.attempts / self.seconds:,.0f}/s "
            f"upstream, {self.upstream_throttled} throttled)",
            f"  amplification        {self.amplification:>8.3f}x",
            f"  answered 200         {ok:>8}  ({ok / max(self.requests, 1):.1%}); "
            f"other statuses {dict(sorted((s, n) for s, n in self.statuses.items() if s != 200))}",
            f"  latency p50 / p99    {self.p50_ms:.1f} ms / {self.p99_ms:.1f} ms",
            f"  quota exhausted      {self.quota_exhausted:>8.0f}  (retries refused)",
        ]


async def run_mode(mode: str, clients: int, duration: float, seed: int) -> RunFigures:
    upstream = HalfThrottlingUpstream(0.5, seed)
    runner = web.ServerRunner(web.Server(upstream.handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_port = runner.addresses[0][1]
    quota = 500 if mode == "budget" else NO_BUDGET
    config = parse_config(
        {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "log_level": "error",
            "routes": [{"host": EC2_HOST, "upstream": f"http://127.0.0.1:{upstream_port}"}],
            "upstream": {"pool_size": clients * 2},
            "retry": {"quota": quota},
        }
    )
    server = ProxyServer(config, credentials=ExampleCredentials())
    addresses = await server.start()
    url = f"http://{addresses.proxy[0]}:{addresses.proxy[1]}/"
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    stop_at = time.monotonic() + duration

    async def client(session: aiohttp.ClientSession) -> None:
        headers = {"Host": EC2_HOST, "Content-Type": "application/x-www-form-urlencoded"}
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            async with session.post(url, data=FORM, headers=headers) as answer:
                await answer.read()
                statuses[answer.status] += 1
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    elapsed = time.monotonic() - started
    exhausted = server.metrics.registry.get_sample_value(
        "throttle_proxy_retry_quota_exhausted_total", {"service": "ec2"}
    )
    await server.close()
    await runner.cleanup()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return RunFigures(
        mode=mode,
        seconds=elapsed,
        requests=sum(statuses.values()),
        attempts=upstream.attempts,
        upstream_throttled=upstream.throttled,
        statuses=dict(statuses),
        p50_ms=quantiles[49] * 1000,
        p99_ms=quantiles[98] * 1000,
        quota_exhausted=exhausted or 0.0,
    )


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("error")  # one log line per request would cost more than the proxy
    modes = ["budget", "no-budget"] if args.mode == "both" else [args.mode]
    print(
        f"{args.clients} clients, {args.duration:.0f} s per mode, upstream throttles 50% "
        "(503 RequestLimitExceeded), proxy defaults: max_attempts 3, throttle base 1 s, "
        "max_backoff 20 s"
    )
    results = []
    for mode in modes:
        figures = await run_mode(mode, args.clients, args.duration, args.seed)
        results.append(figures)
        print("\n".join(figures.lines()))
    budget = next((r for r in results if r.mode == "budget"), None)
    if budget is not None:
        verdict = "OK" if budget.amplification <= 1.5 else "OVER"
        print(f"amplification with budget {budget.amplification:.3f}x <= 1.5x: {verdict}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--mode", choices=["both", "budget", "no-budget"], default="both")
    parser.add_argument("--seed", type=int, default=5)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
