"""Wiring: the proxy's credential source built from its config and start-up environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

import aiohttp

from proxy.clock import Clock
from proxy.config.model import Config
from proxy.credentials.chain import build_chain
from proxy.credentials.refresher import RefreshingCredentials
from proxy.credentials.sts import StsClient, sts_endpoint
from proxy.observability.metrics import Metrics

MFA_CODE_VARIABLE = "THROTTLE_PROXY_MFA_CODE"


def sts_region(config: Config, env: Mapping[str, str]) -> str:
    """The region of the proxy's own STS calls: AWS_REGION, AWS_DEFAULT_REGION, then config.

    IRSA/EKS pods are given AWS_REGION (and AWS_DEFAULT_REGION) for their own cluster's region;
    the regional STS endpoint there is the one the pod's network reaches and trusts.
    """
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or config.region


def build_sts_client(
    config: Config, env: Mapping[str, str], session: aiohttp.ClientSession, clock: Clock
) -> StsClient:
    """The STS client for the proxy's own calls, at the endpoint the env selects.

    An AWS_ENDPOINT_URL_STS/AWS_ENDPOINT_URL override changes where the calls go, not the
    region they are signed for.
    """
    region = sts_region(config, env)
    return StsClient(session, sts_endpoint(env, region), region, clock)


def build_credential_source(
    config: Config,
    *,
    session: aiohttp.ClientSession,
    metrics: Metrics,
    clock: Clock,
    env: Mapping[str, str] | None = None,
    profile: str | None = None,
    mfa_code: str | None = None,
) -> RefreshingCredentials:
    """The refreshing chain; `env` is a snapshot (default: os.environ now, read once)."""
    snapshot = dict(os.environ if env is None else env)
    sts = build_sts_client(config, snapshot, session, clock)
    chain = build_chain(
        config.credentials,
        snapshot,
        sts,
        session,
        clock,
        profile=profile,
        mfa_code=mfa_code or snapshot.get(MFA_CODE_VARIABLE) or None,
    )
    return RefreshingCredentials(chain, clock, metrics, config.credentials)
