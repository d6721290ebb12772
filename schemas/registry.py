"""The targets registry: zones from the official commune list, pages/groups/archives from config.

Pure: building needs only the config mapping (parsed by the caller) and the data shipped inside
the ``vietnam-provinces`` package.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.models import Target
from schemas.settings import Settings
from schemas.text import identifier, visible
from schemas.topics import Channel


def zone_id(ward_code: int) -> str:
    return f"zone:{ward_code}"


def official_zones() -> list[Target]:
    """One loudspeaker zone per commune and ward (post-July-2025 list, 34 provinces)."""
    from vietnam_provinces import Ward  # data load is deferred to the first call, never at import

    zones = [
        Target(
            id=zone_id(int(w.code)),
            channel=Channel.LOUDSPEAKER,
            name=w.name,
            province_code=int(w.province_code),
            ward_code=int(w.code),
        )
        for w in Ward.iter_all()
    ]
    zones.sort(key=lambda t: t.ward_code or 0)
    return zones


def province_names() -> dict[int, str]:
    from vietnam_provinces import Province

    return {int(p.code): p.name for p in Province.iter_all()}


def _configured(channel: Channel, entry: Mapping[str, Any], test: bool = False) -> Target:
    reserved = {"id", "name", "provinces", "subjects", "test", "active", "province_code", "ward_code"}
    return Target(
        id=identifier(str(entry["id"])),  # NFC, as every door reads an id (schemas/text.py)
        channel=channel,
        name=visible(str(entry.get("name") or entry["id"])),
        province_code=entry.get("province_code"),
        ward_code=entry.get("ward_code"),
        provinces=tuple(int(p) for p in entry.get("provinces", ())),
        subjects=tuple(str(s) for s in entry.get("subjects", ())),
        test=bool(entry.get("test", test)),
        active=bool(entry.get("active", True)),
        config={k: v for k, v in entry.items() if k not in reserved},
    )


def build_targets(config: Mapping[str, Any]) -> list[Target]:
    """Every target: the official zones (with per-zone overrides) plus the configured ones."""
    loud = config.get("loudspeaker", {})
    overrides = {identifier(str(o["id"])): o for o in loud.get("zones", ())}
    defaults = {k: v for k, v in loud.items() if k not in ("zones", "test_zones")}
    targets: list[Target] = []
    for zone in official_zones():
        extra = dict(defaults)
        extra.update({k: v for k, v in overrides.pop(zone.id, {}).items() if k != "id"})
        active = bool(extra.pop("active", True))
        targets.append(
            Target(
                zone.id,
                zone.channel,
                zone.name,
                zone.province_code,
                zone.ward_code,
                active=active,
                config=extra,
            )
        )
    if overrides:
        raise ValueError(f"zone overrides for unknown zones: {sorted(overrides)}")
    for entry in loud.get("test_zones", ()):
        targets.append(_configured(Channel.LOUDSPEAKER, {**defaults, **entry}, test=True))
    for section, channel in (
        ("fanpage", Channel.FANPAGE),
        ("zalo", Channel.ZALO),
        ("archive", Channel.ARCHIVE),
    ):
        for entry in config.get(section, ()):
            targets.append(_configured(channel, entry))
    ids = [t.id for t in targets]
    if len(ids) != len(set(ids)):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate target ids: {dupes}")
    return targets


@dataclass
class Registry:
    """In-memory view of the targets registry with the indexes routing needs."""

    targets: dict[str, Target] = field(default_factory=dict)
    _zones_by_province: dict[int, list[Target]] = field(default_factory=dict)
    _zone_by_ward: dict[int, Target] = field(default_factory=dict)
    _by_channel: dict[Channel, list[Target]] = field(default_factory=dict)
    _dirty: bool = True

    @classmethod
    def of(cls, targets: Iterable[Target]) -> Registry:
        reg = cls()
        for t in targets:
            reg.targets[t.id] = t
        reg._reindex()
        return reg

    def upsert(self, target: Target) -> None:
        self.targets[target.id] = target
        self._dirty = True

    def remove(self, target_id: str) -> None:
        if self.targets.pop(target_id, None) is not None:
            self._dirty = True

    def _reindex(self) -> None:
        by_province: dict[int, list[Target]] = {}
        by_ward: dict[int, Target] = {}
        by_channel: dict[Channel, list[Target]] = {c: [] for c in Channel}
        for t in sorted(self.targets.values(), key=lambda t: t.id):
            if not t.active:
                continue
            by_channel[t.channel].append(t)
            if t.channel is Channel.LOUDSPEAKER and not t.test and t.ward_code is not None:
                by_ward[t.ward_code] = t
                if t.province_code is not None:
                    by_province.setdefault(t.province_code, []).append(t)
        self._zones_by_province, self._zone_by_ward, self._by_channel = by_province, by_ward, by_channel
        self._dirty = False

    def _fresh(self) -> None:
        if self._dirty:
            self._reindex()

    def channel_targets(self, channel: Channel) -> list[Target]:
        self._fresh()
        return self._by_channel.get(channel, [])

    def zones_of_province(self, code: int) -> list[Target] | None:
        self._fresh()
        return self._zones_by_province.get(code)

    def zone_of_ward(self, code: int) -> Target | None:
        self._fresh()
        return self._zone_by_ward.get(code)

    def public_zones(self) -> list[Target]:
        self._fresh()
        return [t for t in self._by_channel.get(Channel.LOUDSPEAKER, []) if not t.test]

    def test_targets(self, channel: Channel) -> list[Target]:
        self._fresh()
        return [t for t in self._by_channel.get(channel, []) if t.test]

    def __len__(self) -> int:
        return len(self.targets)


DEFAULT_TARGETS_FILE = Path(__file__).resolve().parent.parent / "infra" / "targets.toml"


def targets_file(settings: Settings) -> Path:
    return settings.targets_file or DEFAULT_TARGETS_FILE


def load_config(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        return tomllib.load(fh)
