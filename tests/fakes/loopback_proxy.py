"""The real proxy process, with every upstream connection sent to one loopback port instead.

Test-only (it lives under tests/, never in the package): `python -m tests.fakes.loopback_proxy
--connect-to PORT --record FILE --config proxy.yaml` runs the same server as `throttle-proxy
run`, but the connection opener it injects writes each origin the proxy chose (`scheme host
port`, one line per connection, before anything is resolved) to FILE and then connects to
127.0.0.1:PORT in plain text. No name is ever looked up and no byte leaves loopback, so a test
can send requests for real AWS host names and see both which ones the proxy tried to reach and
what it would have sent them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from collections.abc import Callable

from proxy.app.server import ProxyServer, serve_forever
from proxy.config.model import load_config
from proxy.observability.logs import configure_logging
from proxy.upstream.client import UpstreamClient
from proxy.upstream.connection import Origin, UpstreamConnection


class LoopbackOpener:
    """Records the origin, then connects to the loopback fake (no DNS, no TLS)."""

    def __init__(self, port: int, record: str) -> None:
        self._port = port
        self._record = open(record, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    async def __call__(
        self,
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        protocol_factory: Callable[[], UpstreamConnection],
    ) -> UpstreamConnection:
        self._record.write(f"{origin.scheme} {origin.host} {origin.port}\n")
        loop = asyncio.get_running_loop()
        _transport, conn = await loop.create_connection(protocol_factory, "127.0.0.1", self._port)
        return conn


def main() -> int:
    parser = argparse.ArgumentParser(prog="loopback_proxy")
    parser.add_argument("--connect-to", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = load_config(args.config)
    configure_logging(config.log_level)
    upstream = UpstreamClient(config.upstream, LoopbackOpener(args.connect_to, args.record))
    server = ProxyServer(config, env=dict(os.environ), upstream=upstream)
    return asyncio.run(serve_forever(server, args.config))


if __name__ == "__main__":
    sys.exit(main())
