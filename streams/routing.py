"""Route: an article version × the targets registry → the targets per channel. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.article import Place
from schemas.errors import InvalidContent
from schemas.models import Target
from schemas.registry import Registry
from schemas.topics import Channel


@dataclass(frozen=True, slots=True)
class RouteInput:
    """What routing looks at; stored in the article state so retractions re-route the same way."""

    places: tuple[Place, ...]
    subjects: tuple[str, ...]


def _zones(places: Sequence[Place], registry: Registry) -> tuple[list[Target], set[int]]:
    if not places:
        return registry.public_zones(), set()
    chosen: dict[str, Target] = {}
    provinces: set[int] = set()
    for place in places:
        if place.kind == "province":
            zones = registry.zones_of_province(place.code)
            if zones is None:
                raise InvalidContent(
                    f"place urn:lantoa:place:province:{place.code} is not a known province code"
                )
            provinces.add(place.code)
            for z in zones:
                chosen[z.id] = z
        else:
            zone = registry.zone_of_ward(place.code)
            if zone is None:
                raise InvalidContent(
                    f"place urn:lantoa:place:ward:{place.code} is not a known commune or ward code"
                )
            if zone.province_code is not None:
                provinces.add(zone.province_code)
            chosen[zone.id] = zone
    return sorted(chosen.values(), key=lambda t: t.ward_code or 0), provinces


def _matches(target: Target, provinces: set[int], subjects: Sequence[str]) -> bool:
    # National articles (no province) reach every page; provincial ones reach national pages
    # and the pages of those provinces. An empty subject list on a target takes everything.
    if target.provinces and provinces and not provinces.intersection(target.provinces):
        return False
    if target.subjects and not set(subjects).intersection(target.subjects):
        return False
    return True


def route(inp: RouteInput, registry: Registry) -> dict[Channel, list[Target]]:
    """The public targets an article reaches, per channel (test targets never get articles).

    Raises InvalidContent when a place names an unknown province or ward, because broadcasting
    an article nationally by mistake is worse than holding it for an editor.
    """
    zones, provinces = _zones(inp.places, registry)
    plan: dict[Channel, list[Target]] = {Channel.LOUDSPEAKER: zones}
    for channel in (Channel.FANPAGE, Channel.ZALO):
        plan[channel] = [
            t
            for t in registry.channel_targets(channel)
            if not t.test and _matches(t, provinces, inp.subjects)
        ]
    plan[Channel.ARCHIVE] = [t for t in registry.channel_targets(Channel.ARCHIVE) if not t.test]
    return plan
