"""The proxy's own STS client: which region (endpoint and signature) the environment selects."""

from __future__ import annotations

import aiohttp
import pytest

from proxy.config.model import Config
from proxy.credentials.base import Credentials
from proxy.credentials.setup import build_sts_client, sts_region
from tests.fakes import serve
from tests.fakes.clock import FakeClock
from tests.fakes.sts import StandInSts
from tests.servers import EXAMPLE_KEY_ID, EXAMPLE_SECRET

CONFIG = Config(region="ap-southeast-2")


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({}, "ap-southeast-2"),
        ({"AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-west-1"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),  # empty: unset
        ({"AWS_REGION": "cn-north-1"}, "cn-north-1"),
    ],
)
async def test_region_order_picks_the_regional_endpoint(
    session: aiohttp.ClientSession, env: dict[str, str], region: str
) -> None:
    assert sts_region(CONFIG, env) == region
    sts = build_sts_client(CONFIG, env, session, FakeClock())
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    assert sts.endpoint == f"https://sts.{region}.{suffix}"
    assert sts.region == region


async def test_endpoint_override_still_signs_for_the_env_region(
    session: aiohttp.ClientSession,
) -> None:
    standin = StandInSts()
    async with serve(standin.app()) as url:
        env = {"AWS_ENDPOINT_URL_STS": url, "AWS_REGION": "eu-west-1"}
        sts = build_sts_client(CONFIG, env, session, FakeClock())
        assert sts.endpoint == url
        await sts.get_session_token(Credentials(EXAMPLE_KEY_ID, EXAMPLE_SECRET), provider="t")
    [authorization] = standin.authorizations
    assert authorization is not None
    assert f"Credential={EXAMPLE_KEY_ID}/20150830/eu-west-1/sts/aws4_request" in authorization
