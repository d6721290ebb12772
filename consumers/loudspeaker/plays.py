"""Play reports → receipts: what the commune stations actually aired (ok, interrupted, offline).

Polls the platform's ``GET /plays?after=<seq>`` and turns each report into a receipt on
distribution.receipts (stage ``broadcast``, outcome ``played`` / ``interrupted`` / ``offline``,
the cluster as external id). Emergency plays name their alert; scheduled plays are matched to
their article through the zone's schedule for that day (slots carry the uri). Receipt ids are
derived from the platform's play sequence, so re-reading after a restart repeats ids, never
facts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from consumers.loudspeaker.platform import PlatformClient
from infra.kafka.outbox import Outbox, OutRecord
from schemas.codec import encode
from schemas.emergency import alert_uri
from schemas.models import Outcome, Receipt, Stage
from schemas.secrets import SecretFile
from schemas.settings import Settings
from schemas.topics import Topic

log = logging.getLogger(__name__)
RESULTS = {"ok": "played", "interrupted": "interrupted", "offline": "offline"}
# Local days whose schedules stay cached: today and the day before (a play reported just after
# midnight, or late from a station that was offline, belongs to the day before). A cache of every
# (zone, day) held ~17 MB a national day until it was cleared at 20,000 entries.
KEEP_DAYS = 2
VN = ZoneInfo("Asia/Ho_Chi_Minh")


class PlayReporter:
    """Polls play reports and produces a receipt for each, every ``interval_s``."""

    def __init__(
        self,
        settings: Settings,
        client: PlatformClient,
        *,
        interval_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        owns_client: bool = False,
    ) -> None:
        self.settings, self.client, self.interval_s, self.sleep = settings, client, interval_s, sleep
        self._owns_client = owns_client
        self.outbox = Outbox(settings.kafka, f"{settings.client_id}-plays")
        self.after = 0
        # Local day → zone → bulletin id → uri, for the KEEP_DAYS newest days reported: plays
        # arrive on the day they air, so an older day is never asked again. Bulletin ids and uris
        # are held once (``_names``): a national bulletin is in the schedule of every zone.
        self._slots: dict[str, dict[str, dict[str, str]]] = {}
        self._names: dict[str, str] = {}
        self.reported = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> PlayReporter:
        """With a platform client of its own (its own HTTP session, started and closed here)."""

        token = SecretFile(settings.loudspeaker_token_file)
        client = PlatformClient(
            settings.loudspeaker_api_url, lambda: token.get("token"), timeout_s=settings.http_timeout_s
        )
        return cls(settings, client, owns_client=True)

    async def run(self, stop: asyncio.Event) -> None:
        await self.outbox.start()
        if self._owns_client:
            await self.client.start()
        try:
            while not stop.is_set():
                try:
                    await self.poll_once()
                except (TransientDeliveryError, TargetPaused, PermanentDeliveryError) as exc:
                    log.warning("play reports unavailable: %s", exc)
                try:
                    await asyncio.wait_for(stop.wait(), self.interval_s)
                except TimeoutError:
                    pass
        finally:
            if self._owns_client:
                await self.client.close()
            await self.outbox.stop()

    async def poll_once(self) -> int:
        reply = await self.client.get("/plays", params={"after": str(self.after), "limit": "5000"})
        self.client.raise_for(reply)
        body = reply.body if isinstance(reply.body, dict) else {}
        plays = [p for p in body.get("plays") or [] if isinstance(p, dict)]
        records = [r for r in [await self._receipt(p) for p in plays] if r is not None]
        await self.outbox.send_all(records)
        if plays:
            self.after = max(int(p.get("seq") or 0) for p in plays)
        self.reported += len(records)
        return len(records)

    async def _uri(self, play: dict[str, Any]) -> str | None:
        if play.get("emergency_id"):
            return alert_uri(str(play["emergency_id"]))
        zone, started = str(play.get("zone") or ""), str(play.get("started_at") or "")
        try:  # the schedule is filed under the zone's local day
            day = datetime.fromisoformat(started.replace("Z", "+00:00")).astimezone(VN).date().isoformat()
        except ValueError:
            return None
        bid = str(play.get("bulletin_id") or "")
        by_zone = self._slots.get(day)
        known = by_zone.get(zone) if by_zone is not None else None
        if known is None or bid not in known:
            # First play of that zone's day, or a bulletin placed there after we last read it.
            found: dict[str, str] = {}
            try:
                schedule = await self.client.get_schedule(zone, date.fromisoformat(day))
            except ValueError:
                schedule = None
            for slot in schedule.body.get("slots", []) if schedule is not None else []:
                if isinstance(slot, dict) and slot.get("bulletin_id") and slot.get("uri"):
                    found[self._name(str(slot["bulletin_id"]))] = self._name(str(slot["uri"]))
            known = found
            self._day(day)[zone] = found
        return known.get(bid)

    def _day(self, day: str) -> dict[str, dict[str, str]]:
        """The zone map of ``day``, made when it is new; only the KEEP_DAYS newest days stay."""
        by_zone = self._slots.get(day)
        if by_zone is None:
            by_zone = self._slots[day] = {}
            for old in sorted(self._slots)[:-KEEP_DAYS]:
                del self._slots[old]
            if len(self._names) > 50000:
                self._names.clear()
        return by_zone

    def _name(self, value: str) -> str:
        return self._names.setdefault(value, value)

    def cached(self) -> dict[str, int]:
        """How many zones each cached day holds (for tests and the log)."""
        return {day: len(zones) for day, zones in self._slots.items()}

    async def _receipt(self, play: dict[str, Any]) -> OutRecord | None:
        uri = await self._uri(play)
        if uri is None:
            return None
        outcome = Outcome(RESULTS.get(str(play.get("result")), "offline"))
        zone = str(play.get("zone") or "")
        at = str(play.get("ended_at") or play.get("started_at") or datetime.now().astimezone().isoformat())
        receipt = Receipt(
            uri=uri,
            stage=Stage.BROADCAST,
            outcome=outcome,
            at=at,
            channel="loudspeaker",
            target=f"zone:{int(zone)}" if zone.isdigit() else zone,
            external_id=str(play.get("cluster_id")),
            reason=f"{play.get('played_s', 0)} s aired" if outcome != "played" else None,
            event_id=f"play:{play.get('seq')}",
        )
        return OutRecord(self.settings.topic(Topic.RECEIPTS), uri.encode(), encode(receipt.to_dict()))
