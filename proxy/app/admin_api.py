"""The load-test endpoints of the admin listener: fault rules and the run report.

`GET /faults` the rules in force with their counters; `PUT /faults` replaces them (the body is
the `faults:` list as JSON, read by the config's own parser); `DELETE /faults` removes them
all, `DELETE /faults/{name}` one. `GET /report` the run report; `POST /report/reset` starts a
new run. Changing calls need `Authorization: Bearer <token>` when `admin_token_file` is set,
and come only from loopback when it is not.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.config.model import Config
from proxy.config.readers import ConfigError
from proxy.faults.model import fault_rules
from proxy.faults.stage import FaultInjector
from proxy.observability.logs import get_logger
from proxy.report.recorder import RunRecorder
from proxy.report.summary import build_report

log = get_logger("proxy.app.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def read_admin_token(config: Config) -> str | None:
    """The bearer token from `admin_token_file` (stripped), or None when none is configured."""
    if config.admin_token_file is None:
        return None
    try:
        token = Path(config.admin_token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("admin_token_file", f"cannot read: {reason}", config.source) from exc
    if not token:
        raise ConfigError("admin_token_file", "the file is empty", config.source)
    return token


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(data, indent=1) + "\n", content_type="application/json"
    )


class LoadTestApi:
    """Handlers for /faults and /report, over the running proxy's parts."""

    def __init__(
        self,
        faults: FaultInjector,
        recorder: RunRecorder,
        quota_left: Callable[[str], int],
        token: str | None,
    ) -> None:
        self._faults = faults
        self._recorder = recorder
        self._quota_left = quota_left
        self._token = token

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/faults", self.get_faults)
        app.router.add_put("/faults", self._guarded(self.put_faults))
        app.router.add_delete("/faults", self._guarded(self.delete_faults))
        app.router.add_delete("/faults/{name}", self._guarded(self.delete_fault))
        app.router.add_get("/report", self.get_report)
        app.router.add_post("/report/reset", self._guarded(self.reset_report))

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            refusal = self._refusal(request)
            if refusal is not None:
                log.warning("admin-refused", path=request.path, reason=refusal[1])
                return _json({"error": refusal[1]}, refusal[0])
            return await handler(request)

        return guarded

    def _refusal(self, request: web.Request) -> tuple[int, str] | None:
        if self._token is not None:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {self._token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return 401, "this call needs Authorization: Bearer <token from admin_token_file>"
            return None
        try:
            loopback = ipaddress.ip_address(request.remote or "").is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return 403, "changes only from loopback (set admin_token_file to allow others)"
        return None

    async def get_faults(self, _request: web.Request) -> web.Response:
        return _json({"faults": self._faults.describe()})

    async def put_faults(self, request: web.Request) -> web.Response:
        where = "PUT /faults"
        try:
            raw: Any = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as exc:
            return _json({"error": f"{where}: not valid JSON: {exc}"}, 400)
        try:
            rules = fault_rules(raw, "faults")
        except ConfigError as error:
            return _json({"error": error.in_file(where).render()}, 400)
        self._faults.replace(rules)
        return _json({"faults": self._faults.describe()})

    async def delete_faults(self, _request: web.Request) -> web.Response:
        self._faults.replace(())
        return _json({"faults": []})

    async def delete_fault(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self._faults.remove(name):
            return _json({"error": f"no fault rule named {name!r}"}, 404)
        return _json({"faults": self._faults.describe()})

    async def get_report(self, _request: web.Request) -> web.Response:
        return _json(build_report(self._recorder, self._quota_left, self._faults.describe()))

    async def reset_report(self, request: web.Request) -> web.Response:
        self._recorder.reset()
        return await self.get_report(request)
