"""Routes with identities of their own, through a real proxy process and moto (signature
checking on): each route's calls are signed as its own assumed role, the roles are assumed
through the proxy's signer with the top-level keys, each identity draws from its own
account's budget, shows in /readyz, metrics and whoami, and a reload that swaps the roles
never signs a request as the wrong one."""

from __future__ import annotations

import asyncio
import re
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import yaml

from tests.e2e.conftest import E2eStack, admin_get, assert_secrets_not_logged
from tests.servers import (
    ADMIN_ARN,
    ROLE_ARN,
    MotoAccount,
    assumed_role_arn,
    credential_env,
    run_cli,
)

OTHER_ACCOUNT = "111122223333"
OTHER_ROLE_ARN = f"arn:aws:iam::{OTHER_ACCOUNT}:role/other-team"


def _config(moto_url: str, team_b_role: str = OTHER_ROLE_ARN) -> dict[str, object]:
    sts = {"upstream": moto_url, "service": "sts", "region": "us-east-1"}
    return {
        "region": "us-east-1",
        "routes": [
            {
                **sts,
                "path_prefix": "/team-a",
                "credentials": {"role_arn": ROLE_ARN, "role_session_name": "team-a"},
            },
            {
                **sts,
                "path_prefix": "/team-b",
                "credentials": {
                    "name": "team-b",
                    "role_arn": team_b_role,
                    "role_session_name": "team-b",
                },
            },
            {"host": "*.amazonaws.com", "upstream": moto_url},
        ],
        "limits": [
            {
                "name": "whoami",
                "service": "sts",
                "operations": ["GetCallerIdentity"],
                "rate": 0.1,
                "burst": 3,
            }
        ],
        "limit_policy": {"max_wait": 0},
        "retry": {"max_attempts": 1},
    }


def _env(tmp: Path, moto: MotoAccount) -> dict[str, str]:
    return credential_env(
        tmp,
        {
            "AWS_ACCESS_KEY_ID": moto.key_id,
            "AWS_SECRET_ACCESS_KEY": moto.secret,
            # The proxy's own AssumeRole calls go to moto, signed with the top-level keys.
            "AWS_ENDPOINT_URL_STS": moto.server.url,
        },
    )


async def _who(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    """An unsigned GetCallerIdentity (the proxy signs it): status and the caller's ARN."""
    async with session.post(
        url,
        data="Action=GetCallerIdentity&Version=2011-06-15",
        headers={
            "Host": "sts.us-east-1.amazonaws.com",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ) as answer:
        body = await answer.read()
    if answer.status != 200:
        return answer.status, ""
    arn = next(e.text for e in ET.fromstring(body).iter() if e.tag.endswith("Arn"))
    return answer.status, arn or ""


async def test_each_route_signs_as_its_own_role_and_spends_its_own_budget(
    moto_account: MotoAccount, stack: E2eStack, tmp_path: Path
) -> None:
    proxy = await stack.start_proxy(
        tmp_path, _config(moto_account.server.url), _env(tmp_path, moto_account)
    )
    async with aiohttp.ClientSession() as session:
        team_a = [await _who(session, f"{proxy.url}/team-a/") for _ in range(5)]
        team_b = [await _who(session, f"{proxy.url}/team-b/") for _ in range(5)]
        default = [await _who(session, f"{proxy.url}/") for _ in range(5)]
        async with session.get(f"{proxy.admin_url}/metrics") as answer:
            metrics = await answer.text()
    # Each route answers as its own assumed role...
    assert {arn for status, arn in team_a if status == 200} == {assumed_role_arn("team-a")}
    assert {arn for status, arn in team_b if status == 200} == {
        f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/other-team/team-b"
    }
    assert {arn for status, arn in default if status == 200} == {ADMIN_ARN}
    # ...and draws from its own budget: burst 3 each, not 3 in all.
    assert [s for s, _ in team_a] == [200, 200, 200, 400, 400]  # STS: 400 Throttling
    assert [s for s, _ in team_b] == [200, 200, 200, 400, 400]  # STS: 400 Throttling
    assert [s for s, _ in default] == [200, 200, 200, 400, 400]  # STS: 400 Throttling
    status, ready = await admin_get(proxy, "/readyz")
    assert status == 200
    assert re.search(r"^identity app-role: ready: assume-role ", ready, re.M), ready
    assert re.search(r"^identity team-b: ready: assume-role ", ready, re.M), ready
    for name in ("app-role", "team-b"):
        sample = (
            f'throttle_proxy_credentials_refresh_total{{identity="{name}",'
            'provider="assume-role",result="success"} 1.0'
        )
        assert sample in metrics
    assert_secrets_not_logged(proxy, moto_account.secret)


async def test_whoami_lists_every_identity_with_its_arn(
    moto_account: MotoAccount, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml.safe_dump(_config(moto_account.server.url)))
    code, out, err = await run_cli(_env(tmp_path, moto_account), "whoami", "--config", str(config))
    assert code == 0, err
    blocks = {
        dict(re.findall(r"^([a-z ]+):\s+(.*)$", block, re.M))["identity"]: dict(
            re.findall(r"^([a-z ]+):\s+(.*)$", block, re.M)
        )
        for block in out.strip().split("\n\n")
    }
    assert blocks["default"]["arn"] == ADMIN_ARN
    assert blocks["app-role"]["arn"] == assumed_role_arn("team-a")
    assert blocks["team-b"]["arn"].startswith(f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/")
    assert blocks["team-b"]["account"] == OTHER_ACCOUNT


async def test_a_reload_that_swaps_roles_never_signs_as_the_wrong_one(
    moto_account: MotoAccount, stack: E2eStack, tmp_path: Path
) -> None:
    proxy = await stack.start_proxy(
        tmp_path, _config(moto_account.server.url), _env(tmp_path, moto_account)
    )
    swapped_role = f"arn:aws:iam::{OTHER_ACCOUNT}:role/swapped"
    seen: list[str] = []
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            status, arn = await _who(session, f"{proxy.url}/team-b/")
            if status == 200:
                seen.append(arn)
            await asyncio.sleep(0.02)

    full = yaml.safe_load(proxy.config_path.read_text())
    full["limits"] = []  # every call goes: we watch who signs, not the budget
    proxy.config_path.write_text(yaml.safe_dump(full))
    proxy.signal(signal.SIGHUP)
    async with aiohttp.ClientSession() as session:
        load = [asyncio.create_task(client(session)) for _ in range(3)]
        # Until the old role has answered (bounded; its first call assumes the role at moto,
        # which a loaded machine may take longer than a fixed second for), then a while more.
        for _ in range(400):
            if len(seen) >= 5:
                break
            await asyncio.sleep(0.05)
        swapped = yaml.safe_load(proxy.config_path.read_text())
        swapped["routes"][1]["credentials"]["role_arn"] = swapped_role
        proxy.config_path.write_text(yaml.safe_dump(swapped))
        proxy.signal(signal.SIGHUP)
        for _ in range(400):  # bounded: until the new role answers
            await asyncio.sleep(0.05)
            if seen and "/swapped/" in seen[-1]:
                break
        # A few more answers after the first of the new role (the old one must not come back).
        answered = len(seen)
        for _ in range(200):
            if len(seen) >= answered + 6:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*load)
    old = f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/other-team/team-b"
    new = f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/swapped/team-b"
    # Only ever the route's identity of one config or the other, and once the new one
    # answered, never the old one again.
    assert set(seen) <= {old, new}, set(seen)
    first_new = seen.index(new)
    assert old in seen[:first_new]
    assert old not in seen[first_new + 3 :]  # requests already bound may finish as the old one
