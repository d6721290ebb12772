"""Routing: places select zones, pages and groups follow their provinces and subjects."""

from __future__ import annotations

import pytest

from schemas.article import Place
from schemas.errors import InvalidContent
from schemas.registry import Registry, build_targets, official_zones
from schemas.topics import Channel
from streams.routing import RouteInput, route

CONFIG = {
    "loudspeaker": {
        "windows": ["05:30-06:15"],
        "zones": [{"id": "zone:4", "windows": ["06:00-06:30"]}],
        "test_zones": [{"id": "zone:test-1", "name": "Thử", "province_code": 1}],
    },
    "fanpage": [
        {"id": "fanpage:national", "name": "N", "page_id": "1"},
        {"id": "fanpage:hn", "name": "HN", "page_id": "2", "provinces": [1]},
        {
            "id": "fanpage:ht-cds",
            "name": "HT",
            "page_id": "3",
            "provinces": [42],
            "subjects": ["urn:lantoa:subject:chuyen-doi-so"],
        },
        {"id": "fanpage:off", "name": "Off", "page_id": "4", "active": False},
    ],
    "zalo": [{"id": "zalo:hn", "name": "Z", "group_id": "g", "provinces": [1]}],
    "archive": [{"id": "archive:main", "name": "A", "bucket": "b"}],
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.of(build_targets(CONFIG))


def ids(plan: dict[Channel, list], channel: Channel) -> set[str]:  # type: ignore[type-arg]
    return {t.id for t in plan[channel]}


def test_zones_are_the_official_communes_and_wards() -> None:
    zones = official_zones()
    assert len(zones) == 3321
    assert len({z.province_code for z in zones}) == 34
    assert len({z.id for z in zones}) == 3321


def test_national_article_reaches_every_public_zone_and_page(registry: Registry) -> None:
    plan = route(RouteInput((), ()), registry)
    assert len(plan[Channel.LOUDSPEAKER]) == 3321
    assert "zone:test-1" not in ids(plan, Channel.LOUDSPEAKER)
    assert ids(plan, Channel.FANPAGE) == {"fanpage:national", "fanpage:hn"}  # subject filter keeps ht-cds out
    assert ids(plan, Channel.ARCHIVE) == {"archive:main"}


def test_province_selects_all_its_wards(registry: Registry) -> None:
    plan = route(
        RouteInput((Place("province", 42), Place("province", 44)), ("urn:lantoa:subject:chuyen-doi-so",)),
        registry,
    )
    zones = plan[Channel.LOUDSPEAKER]
    assert len(zones) == 147
    assert {z.province_code for z in zones} == {42, 44}
    assert ids(plan, Channel.FANPAGE) == {"fanpage:national", "fanpage:ht-cds"}
    assert ids(plan, Channel.ZALO) == set()


def test_ward_selects_that_ward_and_its_province_pages(registry: Registry) -> None:
    plan = route(RouteInput((Place("ward", 4),), ()), registry)
    assert ids(plan, Channel.LOUDSPEAKER) == {"zone:4"}
    assert ids(plan, Channel.FANPAGE) == {"fanpage:national", "fanpage:hn"}
    assert ids(plan, Channel.ZALO) == {"zalo:hn"}


def test_unknown_place_is_refused_not_broadcast_nationally(registry: Registry) -> None:
    with pytest.raises(InvalidContent, match="province:99 is not a known province"):
        route(RouteInput((Place("province", 99),), ()), registry)
    with pytest.raises(InvalidContent, match="ward:999999"):
        route(RouteInput((Place("ward", 999999),), ()), registry)


def test_zone_overrides_and_duplicates() -> None:
    targets = {t.id: t for t in build_targets(CONFIG)}
    assert targets["zone:4"].config["windows"] == ["06:00-06:30"]
    assert targets["zone:8"].config["windows"] == ["05:30-06:15"]
    with pytest.raises(ValueError, match="unknown zones"):
        build_targets({"loudspeaker": {"zones": [{"id": "zone:0"}]}})
    with pytest.raises(ValueError, match="duplicate"):
        build_targets({"fanpage": [{"id": "fanpage:a", "name": "a"}, {"id": "fanpage:a", "name": "b"}]})


def test_registry_follows_upserts_and_removals(registry: Registry) -> None:
    reg = Registry.of(build_targets(CONFIG))
    reg.remove("fanpage:hn")
    plan = route(RouteInput((Place("province", 1),), ()), reg)
    assert ids(plan, Channel.FANPAGE) == {"fanpage:national"}
