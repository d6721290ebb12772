"""The loudspeaker platform's state and rules: zones of clusters, tokens, schedules and
emergencies held in memory, and the simulated playing that turns them into play reports and
pre-emptions on a clock (the model is described in ``loudspeaker``, whose HTTP API drives this
through the public methods; nothing here knows HTTP beyond raising ``PlatformError``)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from infra.local.emulators.loudspeaker_model import (
    CLUSTER_STATUSES,
    DEFAULT_TOKEN,
    Cluster,
    Emergency,
    EmergencyPlay,
    OnAir,
    PlatformError,
    PlayRecord,
    Preemption,
    ScheduleDoc,
    Slot,
    Zone,
)

__all__ = ["LoudspeakerPlatform"]


class LoudspeakerPlatform:
    """The platform: zones of clusters, tokens, schedules, emergencies, simulated playing, reports.

    ``clock`` gives the time every effect happens at, ``next_seq`` the sequence numbers of the
    records (the emulator's, shared with everything it records). The settings are public
    attributes (the emulator's ``/_control/config`` reads and writes them); ``reset()`` forgets
    every effect and rebuilds the zones and tokens given here.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        next_seq: Callable[[], int],
        zones: Mapping[str, int] | Iterable[str] = (),
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        clusters_per_zone: int = 1,
        auto_create_zones: bool = True,
        max_zones_per_call: int = 5000,
        max_slots_per_schedule: int = 500,
        min_repeat_interval_s: float = 30.0,
        default_duration_s: float = 60.0,
    ) -> None:
        self.clock = clock
        self._next_seq = next_seq
        self.clusters_per_zone = clusters_per_zone
        self.auto_create_zones = auto_create_zones
        self.max_zones_per_call = max_zones_per_call
        self.max_slots_per_schedule = max_slots_per_schedule
        self.min_repeat_interval_s = min_repeat_interval_s
        self.default_duration_s = default_duration_s
        self._initial_zones = (
            dict(zones) if isinstance(zones, Mapping) else {str(z): clusters_per_zone for z in zones}
        )
        self._initial_tokens = tuple(tokens)
        self.reset()

    def reset(self) -> None:
        """Forget every effect: back to the constructor's zones and tokens."""
        self._zones: dict[str, Zone] = {}
        for code, count in self._initial_zones.items():
            self._add_zone(code, count)
        self._tokens: dict[str, str] = {t: "valid" for t in self._initial_tokens}
        self._emergencies: dict[str, Emergency] = {}
        self._plays: list[PlayRecord] = []
        self._preemptions: list[Preemption] = []
        self._busy: set[str] = set()  # zones with something left to report

    def counts(self) -> dict[str, int]:
        """How much the platform holds (the emulator's statistics)."""
        return {
            "zones": len(self._zones),
            "clusters": sum(len(z.clusters) for z in self._zones.values()),
            "schedules": sum(len(z.schedules) for z in self._zones.values()),
            "emergencies": len(self._emergencies),
            "preemptions": len(self._preemptions),
            "plays": len(self._plays),
        }

    # ----- tokens ----------------------------------------------------------------------------

    def authenticate(self, token: str) -> None:
        """PlatformError 401 unless ``token`` is known and not expired."""
        state = self._tokens.get(token)
        if state is None:
            raise PlatformError(401, "unauthorized", "unknown or revoked token")
        if state == "expired":
            raise PlatformError(401, "token_expired", "the token has expired")

    def add_token(self, token: str) -> None:
        self._tokens[token] = "valid"

    def expire_token(self, token: str | None = None) -> None:
        for t in [token] if token else list(self._tokens):
            if t in self._tokens:
                self._tokens[t] = "expired"

    def revoke_token(self, token: str) -> None:
        self._tokens.pop(token, None)

    def token_count(self) -> int:
        return len(self._tokens)

    # ----- zones and clusters ----------------------------------------------------------------

    def _add_zone(self, code: str, count: int) -> Zone:
        if count < 1:
            raise ValueError(f"zone {code}: at least one cluster")
        zone = self._zones.get(code)
        if zone is None:
            zone = self._zones[code] = Zone(code, [])
        for n in range(len(zone.clusters) + 1, count + 1):
            zone.clusters.append(Cluster(f"{code}-c{n}", code))
            zone.next_due = -math.inf
        return zone

    def add_zone(self, code: str, clusters: int | None = None) -> list[Cluster]:
        """Create a zone (or grow it) with ``clusters`` clusters (default ``clusters_per_zone``)."""
        return list(self._add_zone(code, clusters or self.clusters_per_zone).clusters)

    def has_zone(self, code: str) -> bool:
        return code in self._zones

    def zone(self, code: str) -> Zone:
        """The zone, created on first use with ``auto_create_zones``, else 404 ``zone_not_found``."""
        zone = self._zones.get(code)
        if zone is None:
            if not self.auto_create_zones:
                raise PlatformError(404, "zone_not_found", f"no zone {code}", zones=[code])
            zone = self._add_zone(code, self.clusters_per_zone)
        return zone

    def clusters(self, zone: str | None = None) -> list[Cluster]:
        return [c for z in self._zones.values() if zone is None or z.code == zone for c in z.clusters]

    def set_cluster_status(
        self, status: str, *, cluster_id: str | None = None, zone: str | None = None
    ) -> list[Cluster]:
        """Set one cluster (or every cluster of a zone) online or offline, from now on."""
        if status not in CLUSTER_STATUSES:
            raise ValueError(f"status {status!r} not in {sorted(CLUSTER_STATUSES)}")
        now = self.clock()
        chosen = [c for c in self.clusters(zone) if cluster_id is None or c.id == cluster_id]
        if not chosen or (cluster_id is None and zone is None):
            raise ValueError("name an existing cluster_id or zone")
        for c in chosen:
            self._settle_zone(self._zones[c.zone], now)
            if c.status != status:
                c.status = status
                c.history.append((now, status))
                self._changed(self._zones[c.zone])
        return chosen

    # ----- schedules -------------------------------------------------------------------------

    def schedule(self, zone: str, day: str) -> ScheduleDoc | None:
        z = self._zones.get(zone)
        return None if z is None else z.schedules.get(day)

    def schedules(self, zone: str | None = None) -> list[ScheduleDoc]:
        return [
            d
            for z in self._zones.values()
            if zone is None or z.code == zone
            for _, d in sorted(z.schedules.items())
        ]

    def current_schedule(self, z: Zone, day: str, now: float) -> ScheduleDoc | None:
        """The zone's schedule of ``day``, its timeline first played up to ``now``."""
        self._settle_zone(z, now)
        return z.schedules.get(day)

    def put_schedule(
        self, z: Zone, day: str, body: dict[str, Any], slots: tuple[Slot, ...], now: float
    ) -> tuple[str, ScheduleDoc]:
        """Hold ``slots`` (from ``body``) as the zone's schedule of ``day`` from ``now`` on:
        ``unchanged`` (the same body), ``replaced`` or ``created``, and the version held. A slot
        playing now is cut unless the new schedule keeps it; new slots in the past never play."""
        self._settle_zone(z, now)
        current = z.schedules.get(day)
        etag = '"' + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32] + '"'
        if current is not None and current.etag == etag:
            return "unchanged", current
        old = {s.key: s for s in (current.slots if current else ())}
        new_keys = {s.key for s in slots}
        eplays = self._emergency_plays(z, now)
        for c in z.clusters:
            for s in old.values():  # cut what plays now unless the new schedule keeps it
                if s.key not in new_keys and s.start < now < s.end and (c.id, s.key) not in z.done:
                    _, result = self._slot_outcome(s, eplays, c)
                    self._record(
                        s.bulletin_id,
                        c,
                        s.start,
                        now,
                        "offline" if result == "offline" else "interrupted",
                        "scheduled",
                    )
                    z.done.add((c.id, s.key))
            for s in slots:  # the past cannot be played
                if s.start < now and s.key not in old:
                    z.done.add((c.id, s.key))
        doc = z.schedules[day] = ScheduleDoc(
            z.code, day, (current.version if current else 0) + 1, etag, body, slots, now
        )
        self._changed(z)
        return ("replaced" if current is not None else "created"), doc

    # ----- emergencies -----------------------------------------------------------------------

    def emergency(self, emergency_id: str) -> Emergency | None:
        return self._emergencies.get(emergency_id)

    def emergencies(self) -> list[Emergency]:
        return sorted(self._emergencies.values(), key=lambda e: e.seq)

    def start_emergency(self, emergency: Emergency, now: float) -> None:
        """Pre-empt every cluster of the emergency's zones at ``now`` (what each was playing is
        recorded and cut) and stop the emergencies it replaces; 404 ``zone_not_found`` for
        unknown zones unless ``auto_create_zones``."""
        unknown = [code for code in emergency.zones if code not in self._zones]
        if unknown and not self.auto_create_zones:
            raise PlatformError(404, "zone_not_found", f"{len(unknown)} unknown zone(s)", zones=unknown[:100])
        emergency.seq = self._next_seq()
        preempted = 0
        zones = [self.zone(code) for code in emergency.zones]
        for z in zones:  # what each cluster was playing, the alert it replaces included
            for c in z.clusters:
                on = self._playing(z, c, now)
                self._preemptions.append(
                    Preemption(
                        self._next_seq(),
                        emergency.emergency_id,
                        z.code,
                        c.id,
                        now,
                        on.id if on else None,
                        on.kind if on else None,
                    )
                )
                preempted += on is not None
        for old_id in emergency.replaces:
            old = self._emergencies.get(old_id)
            if old is not None and old.stopped_at is None:
                for code in old.zones:
                    self._settle_zone(self._zones[code], now)
                old.stopped_at, old.stop_reason, old.replaced_by = now, "replaced", emergency.emergency_id
                for code in set(old.zones) - set(emergency.zones):
                    self._changed(self._zones[code])
        for z in zones:
            # What was on air is cut now: report it at once (as a settle would), so that a zone
            # needs no settling until the new play ends or something else falls due.
            for c in z.clusters:
                on = z.on_air.get(c.id)
                if on is not None and (c.id, on.key) not in z.done:
                    self._record(
                        on.id,
                        c,
                        on.start,
                        now,
                        "interrupted",
                        on.kind,
                        on.id if on.kind == "emergency" else None,
                    )
                    z.done.add((c.id, on.key))
            z.emergencies.append(emergency)
            ends = now + emergency.duration_s
            z.next_due = min(z.next_due, ends) if z.code in self._busy else ends  # idle: nothing else is due
            self._busy.add(z.code)
            z.on_air = {
                c.id: OnAir(emergency.emergency_id, "emergency", f"E|{emergency.emergency_id}|0", now)
                if c.status_at(now) == "online"
                else None
                for c in z.clusters
            }
        emergency.preempted = preempted
        self._emergencies[emergency.emergency_id] = emergency

    def cancel(self, emergency_id: str) -> Emergency:
        """Stop an emergency's repeats now (the play under way is cut). KeyError if unknown."""
        emergency = self._emergencies[emergency_id]
        now = self.clock()
        if emergency.stopped_at is None:
            for code in emergency.zones:
                self._settle_zone(self._zones[code], now)
            emergency.stopped_at, emergency.stop_reason = now, "cancelled"
            for code in emergency.zones:
                self._changed(self._zones[code])
        return emergency

    def preemptions(self, emergency_id: str | None = None, zone: str | None = None) -> list[Preemption]:
        return [
            p
            for p in self._preemptions
            if (emergency_id is None or p.emergency_id == emergency_id) and (zone is None or p.zone == zone)
        ]

    # ----- what played -----------------------------------------------------------------------

    def plays(
        self,
        *,
        zone: str | None = None,
        bulletin_id: str | None = None,
        since: float | None = None,
        after: int = 0,
        kind: str | None = None,
    ) -> list[PlayRecord]:
        """Play reports up to now (settles first: the zone asked for, or all), oldest first."""
        if zone is not None and zone in self._zones:
            self._settle_zone(self._zones[zone], self.clock())
        else:
            self.settle()
        return [
            p
            for p in self._plays
            if p.seq > after
            and (zone is None or p.zone == zone)
            and (bulletin_id is None or p.bulletin_id == bulletin_id)
            and (since is None or p.ended_at >= since)
            and (kind is None or p.kind == kind)
        ]

    def play_count(self) -> int:
        """How many play reports are held (no settling)."""
        return len(self._plays)

    def now_playing(self, zone: str) -> dict[str, str | None]:
        """What each cluster of the zone is playing right now (bulletin or emergency id)."""
        now = self.clock()
        z = self._zones[zone]
        self._settle_zone(z, now)
        return {c.id: (on.id if (on := self._playing(z, c, now)) else None) for c in z.clusters}

    def settle(self) -> None:
        """Turn every zone's timeline up to now into play reports."""
        now = self.clock()
        for code in list(self._busy):
            self._settle_zone(self._zones[code], now)

    # ----- simulated playing -----------------------------------------------------------------

    def _emergency_plays(self, z: Zone, now: float, *, inclusive: bool = False) -> list[EmergencyPlay]:
        """The zone's emergency plays that began before ``now`` (but those already reported
        everywhere, bar one kept as a cutter), cut by stops and by later emergencies' plays."""
        raw = sorted(
            (
                (t, k, e)
                for e in z.emergencies
                for k, t in e.starts_before(
                    now, max(0, z.first_open.get(e.emergency_id, 0) - 1), inclusive=inclusive
                )
            ),
            key=lambda p: (p[0], p[2].seq),
        )
        out: list[EmergencyPlay] = []
        for i, (t, k, e) in enumerate(raw):
            end, cut = t + e.duration_s, False
            if e.stopped_at is not None and e.stopped_at < end:
                end, cut = max(t, e.stopped_at), True
            for t2, _, e2 in raw[i + 1 :]:
                if t2 >= end:
                    break
                if e2 is not e:
                    end, cut = t2, True
                    break
            out.append(EmergencyPlay(e, k, t, end, cut))
        return out

    def _record(
        self,
        bulletin_id: str,
        cluster: Cluster,
        start: float,
        end: float,
        result: str,
        kind: str,
        emergency_id: str | None = None,
    ) -> None:
        # An offline cluster plays nothing; one that went offline mid-play aired until then.
        played = (
            0.0 if result == "offline" and cluster.status_at(start) == "offline" else max(0.0, end - start)
        )
        self._plays.append(
            PlayRecord(
                self._next_seq(),
                bulletin_id,
                cluster.id,
                cluster.zone,
                start,
                end,
                played,
                result,
                kind,
                emergency_id,
            )
        )

    def _settle_zone(self, z: Zone, now: float) -> None:
        """Report what ended by ``now`` in one zone; remember when something next falls due and
        what is on air, so that settling again before then costs nothing."""
        if z.code not in self._busy or now < z.next_due:
            return
        eplays = self._emergency_plays(z, now, inclusive=True)  # a play starting now cuts now
        slots = z.slots()
        pending, due = False, math.inf
        for c in z.clusters:
            for s in slots:
                if (c.id, s.key) in z.done:
                    continue
                if s.start > now:
                    pending, due = True, min(due, s.start)
                    continue
                end, result = self._slot_outcome(s, eplays, c)
                if end > now:
                    pending, due = True, min(due, end)
                    continue
                self._record(s.bulletin_id, c, s.start, end, result, "scheduled")
                z.done.add((c.id, s.key))
            for p in eplays:
                if (c.id, p.key) in z.done:
                    continue
                end, result = p.end, ("interrupted" if p.cut else "ok")
                if c.status_at(p.start) == "offline":
                    end, result = p.start + p.emergency.duration_s, "offline"
                else:
                    gone = c.went_offline(p.start, end)
                    if gone is not None:
                        end, result = gone, "offline"
                if end > now:
                    pending, due = True, min(due, end)
                    continue
                self._record(
                    p.emergency.emergency_id, c, p.start, end, result, "emergency", p.emergency.emergency_id
                )
                z.done.add((c.id, p.key))
        by_emergency: dict[str, list[EmergencyPlay]] = {}
        for p in eplays:
            by_emergency.setdefault(p.emergency.emergency_id, []).append(p)
        for e in list(z.emergencies):
            mine = by_emergency.get(e.emergency_id, [])
            open_k = [p.k for p in mine if any((c.id, p.key) not in z.done for c in z.clusters)]
            if open_k:
                z.first_open[e.emergency_id] = min(open_k)
            elif mine:
                z.first_open[e.emergency_id] = mine[-1].k + 1
            stop = e.end_of_repeats()
            if stop > now:
                pending = True
                following = (
                    e.created_at
                    + (math.floor((now - e.created_at) / e.repeat_interval_s) + 1) * e.repeat_interval_s
                )
                due = min(due, following if following < stop else stop)
            elif not open_k:  # over and reported everywhere: it can no longer cut anything
                z.emergencies.remove(e)
                z.first_open.pop(e.emergency_id, None)
        z.next_due = due
        z.on_air = {c.id: self._on_air(z, c, now, eplays, slots) for c in z.clusters} if pending else {}
        if not pending:
            self._busy.discard(z.code)

    def _changed(self, z: Zone) -> None:
        """The zone's timeline changed: the next settle recomputes it."""
        z.next_due = -math.inf
        self._busy.add(z.code)

    @staticmethod
    def _slot_outcome(s: Slot, eplays: list[EmergencyPlay], c: Cluster) -> tuple[float, str]:
        if c.status_at(s.start) == "offline":
            return s.end, "offline"
        end, result = s.end, "ok"
        for p in eplays:
            if p.start <= s.start < p.end:
                return s.start, "interrupted"  # pre-empted before it began
            if s.start < p.start < end:
                end, result = p.start, "interrupted"
                break
        gone = c.went_offline(s.start, end)
        if gone is not None:
            return gone, "offline"
        return end, result

    def _playing(self, z: Zone, c: Cluster, now: float) -> OnAir | None:
        """What cluster ``c`` plays at ``now``."""
        self._settle_zone(z, now)
        return z.on_air.get(c.id)

    @staticmethod
    def _on_air(
        z: Zone, c: Cluster, now: float, eplays: list[EmergencyPlay], slots: list[Slot]
    ) -> OnAir | None:
        if c.status_at(now) == "offline":
            return None
        for p in reversed(eplays):
            if p.start <= now < p.end:
                return OnAir(p.emergency.emergency_id, "emergency", p.key, p.start)
        for s in slots:
            if (c.id, s.key) not in z.done and s.start <= now < s.end:
                return OnAir(s.bulletin_id, "scheduled", s.key, s.start)
        return None
