"""A fake ECS / EKS Pod Identity container credentials endpoint.

It checks the Authorization header against `expected_authorization`, counts requests, and can
be told to fail the next requests with chosen statuses, stall, or serve a raw body.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.imds import EXAMPLE_KEY_ID, EXAMPLE_SECRET, EXAMPLE_SESSION_TOKEN

CREDENTIALS_PATH = "/v2/credentials/task-1234"


@dataclass
class FakeContainerEndpoint:
    """State and switches of one fake endpoint; `app()` builds the aiohttp application."""

    expected_authorization: str | None = None  # None: the header is not checked
    access_key_id: str = EXAMPLE_KEY_ID
    secret_access_key: str = EXAMPLE_SECRET
    session_token: str = EXAMPLE_SESSION_TOKEN
    expiration: str = "2026-11-29T12:00:00Z"
    failures: list[int] = field(default_factory=list)  # statuses for the next requests, in order
    delay: float = 0.0  # seconds before answering
    body: str | None = None  # served raw instead of the credentials JSON
    requests: int = 0
    authorizations: list[str | None] = field(default_factory=list)

    def app(self) -> web.Application:
        """The aiohttp application serving this state at CREDENTIALS_PATH."""
        app = web.Application()
        app.router.add_get(CREDENTIALS_PATH, self._credentials)
        return app

    async def _credentials(self, request: web.Request) -> web.Response:
        self.requests += 1
        authorization = request.headers.get("Authorization")
        self.authorizations.append(authorization)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            status = self.failures.pop(0)
            return web.json_response(
                {"code": "InternalError", "message": "scripted failure"}, status=status
            )
        if self.expected_authorization is not None and (
            authorization != self.expected_authorization
        ):
            return web.json_response(
                {"code": "AccessDeniedException", "message": "bad authorization token"},
                status=403,
            )
        if self.body is not None:
            return web.Response(text=self.body, content_type="application/json")
        return web.Response(
            text=json.dumps(
                {
                    "AccessKeyId": self.access_key_id,
                    "SecretAccessKey": self.secret_access_key,
                    "Token": self.session_token,
                    "AccountId": "123456789012",
                    "Expiration": self.expiration,
                }
            ),
            content_type="application/json",
        )
