"""The loudspeaker emulator's control API (``/_control/...``, no auth): clusters, schedules,
emergencies, pre-emptions, plays, tokens and settling, next to the common routes of
``EmulatorBase`` (see ``loudspeaker``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from infra.local.emulators.common import ControlError, json_response, read_json
from infra.local.emulators.loudspeaker_model import PlatformError, iso, parse_moment
from infra.local.emulators.loudspeaker_platform import LoudspeakerPlatform

__all__ = ["LoudspeakerControl"]


class LoudspeakerControl(LoudspeakerPlatform):
    """The control routes of the loudspeaker emulator, and the plays query both APIs answer."""

    # ----- the plays query (API and control API) -------------------------------------------------

    @staticmethod
    def _play_filters(query: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "zone": query.get("zone"),
            "bulletin_id": query.get("bulletin_id"),
            "kind": query.get("kind"),
        }
        if query.get("since"):
            out["since"] = parse_moment(query["since"], "since")
        try:
            out["after"] = int(query.get("after", "0") or 0)
        except ValueError:
            raise PlatformError(400, "invalid_request", "after must be an integer") from None
        return out

    def _plays_json(self, query: Mapping[str, str]) -> dict[str, Any]:
        found = self.plays(**self._play_filters(query))
        limit = int(query.get("limit", "10000") or 10000)
        page = found[:limit]
        return {
            "plays": [p.to_json() for p in page],
            "now": iso(self.clock()),
            "next_after": page[-1].seq if page else int(query.get("after", "0") or 0),
        }

    # ----- control API -------------------------------------------------------------------------

    def _add_control_routes(self) -> None:
        r = self.app.router
        r.add_get("/_control/clusters", self._ctl_clusters)
        r.add_post("/_control/clusters", self._ctl_set_clusters)
        r.add_get("/_control/schedules", self._ctl_schedules)
        r.add_get("/_control/emergencies", self._ctl_emergencies)
        r.add_get("/_control/preemptions", self._ctl_preemptions)
        r.add_get("/_control/plays", self._ctl_plays)
        r.add_post("/_control/tokens", self._ctl_tokens)
        r.add_post("/_control/settle", self._ctl_settle)

    def stats_json(self) -> dict[str, Any]:
        data = super().stats_json()
        data.update(
            zones=len(self._zones),
            clusters=sum(len(z.clusters) for z in self._zones.values()),
            schedules=sum(len(z.schedules) for z in self._zones.values()),
            emergencies=len(self._emergencies),
            preemptions=len(self._preemptions),
            plays=len(self._plays),
        )
        return data

    async def _ctl_clusters(self, request: web.Request) -> web.StreamResponse:
        return json_response({"clusters": [c.to_json() for c in self.clusters(request.query.get("zone"))]})

    async def _ctl_set_clusters(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ControlError('expected {"cluster_id"|"zone", "status"} or {"zone", "count"}')
        if "count" in body:
            if not isinstance(body.get("zone"), str) or not isinstance(body["count"], int):
                raise ControlError('expected {"zone": code, "count": n}')
            try:
                return json_response(
                    {"clusters": [c.to_json() for c in self.add_zone(body["zone"], body["count"])]}
                )
            except ValueError as exc:
                raise ControlError(str(exc)) from exc
        try:
            changed = self.set_cluster_status(
                str(body.get("status", "")), cluster_id=body.get("cluster_id"), zone=body.get("zone")
            )
        except ValueError as exc:
            raise ControlError(str(exc), status=404 if "existing" in str(exc) else 400) from exc
        return json_response({"clusters": [c.to_json() for c in changed]})

    async def _ctl_schedules(self, request: web.Request) -> web.StreamResponse:
        day = request.query.get("date")
        docs = [
            d.to_json() for d in self.schedules(request.query.get("zone")) if day is None or d.date == day
        ]
        return json_response({"schedules": docs})

    async def _ctl_emergencies(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        return json_response({"emergencies": [e.to_json(now) for e in self.emergencies()]})

    async def _ctl_preemptions(self, request: web.Request) -> web.StreamResponse:
        found = self.preemptions(request.query.get("emergency_id"), request.query.get("zone"))
        return json_response(
            {"preemptions": [p.to_json() for p in found], "zones": len({p.zone for p in found})}
        )

    async def _ctl_plays(self, request: web.Request) -> web.StreamResponse:
        try:
            return json_response(self._plays_json(request.query))
        except (PlatformError, ValueError) as exc:
            raise ControlError(str(exc)) from exc

    async def _ctl_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        token = body.get("token") if isinstance(body, dict) else None
        action = body.get("action", "add") if isinstance(body, dict) else None
        if action == "expire" and token is None:
            self.expire_token()
        elif not isinstance(token, str) or not token:
            raise ControlError('expected {"token": ..., "action": "add"|"expire"|"revoke"}')
        elif action == "add":
            self.add_token(token)
        elif action == "expire":
            self.expire_token(token)
        elif action == "revoke":
            self.revoke_token(token)
        else:
            raise ControlError("action is add, expire or revoke")
        return json_response({"tokens": len(self._tokens)})

    async def _ctl_settle(self, request: web.Request) -> web.StreamResponse:
        self.settle()
        return json_response({"plays": len(self._plays), "now": iso(self.clock())})
