"""The `whoami` and `mfa` subcommands (registered by proxy.cli.main)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import aiohttp

from proxy.clock import SystemClock
from proxy.config.model import Config, load_config
from proxy.config.readers import ConfigError
from proxy.credentials.mfa import MfaRequest, run_mfa
from proxy.credentials.setup import MFA_CODE_VARIABLE, build_sts_client
from proxy.credentials.whoami import whoami
from proxy.errors import CredentialError, NoCredentials
from proxy.observability.logs import configure_logging
from proxy.upstream.client import UpstreamClient

EXIT_FAILED = 1
EXIT_CONFIG = 2


def add_credential_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `whoami` and `mfa` on the CLI's subparsers (each sets `handler`)."""
    who = subparsers.add_parser(
        "whoami", help="show which credentials the proxy would use and who they are"
    )
    who.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    who.add_argument("--profile", help="AWS profile (overrides credentials.profile)")
    who.add_argument(
        "--mfa-code", help=f"MFA code for a profile with mfa_serial ({MFA_CODE_VARIABLE})"
    )
    who.set_defaults(handler=_whoami)

    mfa = subparsers.add_parser(
        "mfa", help="get MFA session credentials and write them to the shared credentials file"
    )
    mfa.add_argument("--serial-number", required=True, help="ARN of the MFA device")
    mfa.add_argument("--token-code", required=True, help="the 6-digit code")
    mfa.add_argument("--duration-seconds", type=int, help="900-129600 (STS default: 43200)")
    mfa.add_argument("--profile", help="profile to write (long-term keys from [NAME-long-term])")
    mfa.add_argument("--config", "-c", help="YAML config file (default: built-in defaults)")
    mfa.set_defaults(handler=_mfa)


def _with_session(
    args: argparse.Namespace, work: Callable[[Config, aiohttp.ClientSession], Awaitable[str]]
) -> int:
    try:
        config = load_config(args.config) if args.config else Config()
    except ConfigError as error:
        print(error.render(), file=sys.stderr)
        return EXIT_CONFIG

    # The answer owns stdout; log lines go to stderr through the redaction processor, and only
    # errors: failures are reported once, as the command's own last line.
    configure_logging("error")

    async def main() -> str:
        upstream = UpstreamClient(config.upstream)
        try:
            return await work(config, upstream.session)
        finally:
            await upstream.close()

    try:
        print(asyncio.run(main()))
    except (NoCredentials, CredentialError) as error:
        print(f"throttle-proxy {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _whoami(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    mfa_code = args.mfa_code or env.get(MFA_CODE_VARIABLE)

    async def work(config: Config, session: aiohttp.ClientSession) -> str:
        answer = await whoami(
            config, env, session, SystemClock(), profile=args.profile, mfa_code=mfa_code
        )
        return answer.render()

    return _with_session(args, work)


def _mfa(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    request = MfaRequest(
        serial_number=args.serial_number,
        token_code=args.token_code,
        duration_seconds=args.duration_seconds,
        profile=args.profile,
    )

    async def work(config: Config, session: aiohttp.ClientSession) -> str:
        clock = SystemClock()
        sts = build_sts_client(config, env, session, clock)
        result = await run_mfa(request, config, env, sts, session, clock)
        return result.render()

    return _with_session(args, work)
