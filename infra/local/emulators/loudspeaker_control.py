"""The loudspeaker emulator's control handlers (``/_control/...``, no auth): clusters, schedules,
emergencies, pre-emptions, plays, tokens and settling, over the platform they are given. The
emulator (``loudspeaker``) routes to them next to the common control routes of ``EmulatorBase``."""

from __future__ import annotations

from aiohttp import web

from infra.local.emulators.common import ControlError, json_response, read_json
from infra.local.emulators.loudspeaker_model import PlatformError, iso
from infra.local.emulators.loudspeaker_platform import LoudspeakerPlatform
from infra.local.emulators.loudspeaker_requests import plays_reply

__all__ = ["LoudspeakerControl"]


class LoudspeakerControl:
    """The control API's handlers of one platform (each an aiohttp handler)."""

    def __init__(self, platform: LoudspeakerPlatform) -> None:
        self.platform = platform

    async def clusters(self, request: web.Request) -> web.StreamResponse:
        found = self.platform.clusters(request.query.get("zone"))
        return json_response({"clusters": [c.to_json() for c in found]})

    async def set_clusters(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ControlError('expected {"cluster_id"|"zone", "status"} or {"zone", "count"}')
        if "count" in body:
            if not isinstance(body.get("zone"), str) or not isinstance(body["count"], int):
                raise ControlError('expected {"zone": code, "count": n}')
            try:
                return json_response(
                    {"clusters": [c.to_json() for c in self.platform.add_zone(body["zone"], body["count"])]}
                )
            except ValueError as exc:
                raise ControlError(str(exc)) from exc
        try:
            changed = self.platform.set_cluster_status(
                str(body.get("status", "")), cluster_id=body.get("cluster_id"), zone=body.get("zone")
            )
        except ValueError as exc:
            raise ControlError(str(exc), status=404 if "existing" in str(exc) else 400) from exc
        return json_response({"clusters": [c.to_json() for c in changed]})

    async def schedules(self, request: web.Request) -> web.StreamResponse:
        day = request.query.get("date")
        docs = [
            d.to_json()
            for d in self.platform.schedules(request.query.get("zone"))
            if day is None or d.date == day
        ]
        return json_response({"schedules": docs})

    async def emergencies(self, request: web.Request) -> web.StreamResponse:
        now = self.platform.clock()
        return json_response({"emergencies": [e.to_json(now) for e in self.platform.emergencies()]})

    async def preemptions(self, request: web.Request) -> web.StreamResponse:
        found = self.platform.preemptions(request.query.get("emergency_id"), request.query.get("zone"))
        return json_response(
            {"preemptions": [p.to_json() for p in found], "zones": len({p.zone for p in found})}
        )

    async def plays(self, request: web.Request) -> web.StreamResponse:
        try:
            return json_response(plays_reply(self.platform, request.query))
        except (PlatformError, ValueError) as exc:
            raise ControlError(str(exc)) from exc

    async def tokens(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        token = body.get("token") if isinstance(body, dict) else None
        action = body.get("action", "add") if isinstance(body, dict) else None
        if action == "expire" and token is None:
            self.platform.expire_token()
        elif not isinstance(token, str) or not token:
            raise ControlError('expected {"token": ..., "action": "add"|"expire"|"revoke"}')
        elif action == "add":
            self.platform.add_token(token)
        elif action == "expire":
            self.platform.expire_token(token)
        elif action == "revoke":
            self.platform.revoke_token(token)
        else:
            raise ControlError("action is add, expire or revoke")
        return json_response({"tokens": self.platform.token_count()})

    async def settle(self, request: web.Request) -> web.StreamResponse:
        self.platform.settle()
        return json_response({"plays": self.platform.play_count(), "now": iso(self.platform.clock())})
