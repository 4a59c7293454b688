"""A stand-in STS on loopback, for the calls moto cannot serve while it checks signatures.

moto with auth on refuses the unsigned AssumeRoleWithWebIdentity, and the session keys its
GetSessionToken hands out do not authenticate; this fake answers any action with credentials
and records every call's form and Authorization header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web

from tests.servers import ACCOUNT, MotoAccount, issue_role_keys

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"

# Keys for one call's form, or None to refuse the action.
KeySource = Callable[[Mapping[str, str]], Awaitable[dict[str, str] | None]]


@dataclass
class StandInSts:
    """Answers every action with credentials; records every call.

    Without `issue_keys` the keys are made up and numbered by call (ASIASTANDIN00001,
    standin-secret-1, standin-token-1, expiring at `expiration`); with it they come from there,
    and an action it gives no keys for is answered 400. `fail_with` answers an STS error instead.
    """

    calls: list[dict[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    expiration: str = "2030-01-01T00:00:00Z"
    fail_with: tuple[int, str, str] | None = None  # (status, code, message)
    issue_keys: KeySource | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._handle)
        return app

    async def _made_up_keys(self, params: Mapping[str, str]) -> dict[str, str]:
        n = len(self.calls)
        return {
            "AccessKeyId": f"ASIASTANDIN{n:05d}",
            "SecretAccessKey": f"standin-secret-{n}",
            "SessionToken": f"standin-token-{n}",
            "Expiration": self.expiration,
        }

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(parse_qsl((await request.read()).decode()))
        self.calls.append(params)
        self.authorizations.append(request.headers.get("Authorization"))
        if self.fail_with is not None:
            status, code, message = self.fail_with
            body = (
                f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
            )
            return web.Response(status=status, text=body, content_type="text/xml")
        action = params.get("Action", "")
        keys = await (self.issue_keys or self._made_up_keys)(params)
        if keys is None:
            return web.Response(status=400, text=f"stand-in STS does not serve {action!r}")
        result = "<Credentials>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in keys.items())
        result += "</Credentials>"
        if action == "AssumeRoleWithWebIdentity":
            role = params.get("RoleArn", "").rpartition("/")[2]
            result += (
                f"<AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{role}/"
                f"{escape(params.get('RoleSessionName', ''))}</Arn></AssumedRoleUser>"
            )
        body = (
            f'<{action}Response xmlns="{STS_NS}"><{action}Result>{result}</{action}Result>'
            f"</{action}Response>"
        )
        return web.Response(text=body, content_type="text/xml")


def role_issuing_sts(account: MotoAccount, session_token_session: str = "after-mfa") -> StandInSts:
    """A stand-in whose keys moto issued for ROLE_ARN, so the proxy's later signatures check out.

    It serves AssumeRoleWithWebIdentity (a session named as asked) and GetSessionToken (a
    session named `session_token_session`); anything else is answered 400.
    """

    async def issue(params: Mapping[str, str]) -> dict[str, str] | None:
        action = params.get("Action", "")
        if action == "AssumeRoleWithWebIdentity":
            session_name = params["RoleSessionName"]
        elif action == "GetSessionToken":
            session_name = session_token_session
        else:
            return None
        return await asyncio.to_thread(issue_role_keys, account, session_name)

    return StandInSts(issue_keys=issue)
