"""A fake EC2 instance metadata service: IMDSv2 tokens, IMDSv1, and switchable failures.

Like the real IMDS it issues tokens on `PUT /latest/api/token` (TTL header required, 1-21600),
answers 401 to a GET carrying an unknown token, and serves the role list and the role's
credentials JSON. Tests flip the fields of `FakeImds` between calls to script an outage.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

TOKEN_PATH = "/latest/api/token"
ROLE_LIST_PATH = "/latest/meta-data/iam/security-credentials/"

EXAMPLE_KEY_ID = "AKIDEXAMPLE"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
EXAMPLE_SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN"


@dataclass
class FakeImds:
    """State and switches of one fake IMDS; `app()` builds the aiohttp application."""

    role: str | None = "throttle-proxy-role"  # None: no instance profile (role list 404)
    access_key_id: str = EXAMPLE_KEY_ID
    secret_access_key: str = EXAMPLE_SECRET
    session_token: str = EXAMPLE_SESSION_TOKEN
    expiration: str = "2026-11-29T12:00:00Z"
    # Token PUT: 200 issues a token; 400/403/404/405 (or anything else) answer that status.
    token_status: int = 200
    token_delay: float = 0.0  # seconds before answering the PUT: beyond the client's timeout
    v1_only: bool = False  # an IMDS without v2: PUT answers 404, tokens are ignored
    require_token: bool = False  # v2 enforced: a GET without a token answers 401
    get_failures: int = 0  # the next N GETs answer 500
    credentials_body: str | None = None  # served raw instead of the credentials JSON
    requests: Counter[str] = field(default_factory=Counter)  # "PUT /latest/api/token": 1
    tokens_seen: list[str | None] = field(default_factory=list)  # token header of each GET
    ttl_requested: list[str | None] = field(default_factory=list)
    _valid_tokens: set[str] = field(default_factory=set)

    def revoke_tokens(self) -> None:
        """Forget every issued token, as IMDS does when one expires: GETs with it get 401."""
        self._valid_tokens.clear()

    def app(self) -> web.Application:
        """The aiohttp application serving this state."""
        app = web.Application()
        app.router.add_put(TOKEN_PATH, self._token)
        app.router.add_get(ROLE_LIST_PATH, self._role_list)
        app.router.add_get(ROLE_LIST_PATH + "{role}", self._credentials)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        self.requests[f"PUT {request.path}"] += 1
        ttl = request.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
        self.ttl_requested.append(ttl)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.v1_only:
            return web.Response(status=404)
        if self.token_status != 200:
            return web.Response(status=self.token_status)
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return web.Response(status=400)
        token = secrets.token_urlsafe(24)
        self._valid_tokens.add(token)
        return web.Response(text=token, headers={"x-aws-ec2-metadata-token-ttl-seconds": ttl})

    def _check_get(self, request: web.Request) -> web.Response | None:
        """Count the GET and answer its failure, if one is due."""
        self.requests[f"GET {request.path}"] += 1
        token = request.headers.get("x-aws-ec2-metadata-token")
        self.tokens_seen.append(token)
        if self.get_failures > 0:
            self.get_failures -= 1
            return web.Response(status=500)
        if self.v1_only:
            return None
        if token is not None and token not in self._valid_tokens:
            return web.Response(status=401)
        if token is None and self.require_token:
            return web.Response(status=401)
        return None

    async def _role_list(self, request: web.Request) -> web.Response:
        failure = self._check_get(request)
        if failure is not None:
            return failure
        if self.role is None:
            return web.Response(status=404)
        return web.Response(text=self.role)

    async def _credentials(self, request: web.Request) -> web.Response:
        failure = self._check_get(request)
        if failure is not None:
            return failure
        if self.role is None or request.match_info["role"] != self.role:
            return web.Response(status=404)
        if self.credentials_body is not None:
            return web.Response(text=self.credentials_body)
        document = {
            "Code": "Success",
            "LastUpdated": "2026-11-29T06:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Token": self.session_token,
            "Expiration": self.expiration,
        }
        # Real IMDS sends JSON as text/plain.
        return web.Response(text=json.dumps(document), content_type="text/plain")
