"""`throttle-proxy run | check-config | whoami | mfa | report` (also `python -m proxy …`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import TextIO, cast

import yaml

from proxy import __version__
from proxy.config.model import Config, ConfigError, load_config
from proxy.config.summary import summary
from proxy.observability.logs import LOG_LEVELS

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="throttle-proxy",
        description="AWS SigV4 signing and client-side throttling sidecar proxy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start the proxy")
    run.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    run.add_argument("--log-level", choices=tuple(LOG_LEVELS), help="overrides log_level")
    run.add_argument("--profile", help="AWS profile (overrides credentials.profile)")
    run.add_argument(
        "--mfa-code",
        help="MFA code for an assume-role profile with mfa_serial (or THROTTLE_PROXY_MFA_CODE)",
    )

    check = commands.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("file")

    from proxy.cli.credentials import add_credential_commands

    add_credential_commands(commands)
    from proxy.cli.report import add_report_command

    add_report_command(commands)
    return parser


def _load(path: str | None) -> Config:
    """The config, checked as far as start-up would check it (routes compile)."""
    from proxy.app.admin_api import read_admin_token
    from proxy.aws.routing import Router
    from proxy.bodies.spool import check_spool_dir

    config = load_config(path) if path else Config()
    try:
        Router(config)
        read_admin_token(config)
        check_spool_dir(config.spool_dir)
    except ConfigError as error:
        raise error.in_file(path or "<defaults>") from None
    return config


def _run(args: argparse.Namespace) -> int:
    from proxy.app.binding import ListenError
    from proxy.app.server import ProxyServer, serve_forever
    from proxy.front.listener import loop_factory
    from proxy.observability.logs import configure_logging
    from proxy.observability.logstream import TurnFlushedStream

    try:
        config = _load(args.config)
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_CONFIG
    if args.log_level:
        config = dataclasses.replace(config, log_level=args.log_level)
    stream = TurnFlushedStream(sys.stderr)  # one write per loop turn, not one per request
    # The subset of a text stream that logging and structlog use (write, flush, closed).
    configure_logging(config.log_level, cast(TextIO, stream))
    mfa_code = args.mfa_code or os.environ.get("THROTTLE_PROXY_MFA_CODE")
    server = ProxyServer(config, env=dict(os.environ), profile=args.profile, mfa_code=mfa_code)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(serve_forever(server, args.config))
    except ListenError as error:
        stream.close()
        print(error.render(), file=sys.stderr)
        return EXIT_CONFIG
    finally:
        stream.close()


def _check_config(args: argparse.Namespace) -> int:
    from proxy.ratelimit import describe_rules, effective_rules

    try:
        config = _load(args.file)
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_CONFIG
    report = summary(config)
    report["limits"] = describe_rules(effective_rules(config))
    print(f"{args.file}: ok")
    print(yaml.safe_dump(report, sort_keys=False, allow_unicode=True), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "check-config":
        return _check_config(args)
    handler = getattr(args, "handler", None)
    if handler is None:
        print(f"unknown command {args.command!r}", file=sys.stderr)
        return EXIT_CONFIG
    result: int = handler(args)
    return result
