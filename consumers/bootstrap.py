"""The bootstrap of every adapter process (``lantoa adapter <channel>``): each channel's real parts
wired from Settings, keyed by channel, and the process that runs one. Tests build the same adapters
over fakes (the emulators, a recording adapter) and hand them to DeliveryRuntime themselves."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from consumers.archive.adapter import ArchiveAdapter
from consumers.archive.config import ArchiveConfig
from consumers.delivery.base import ChannelAdapter
from consumers.delivery.process import TargetLookup, run_until_signalled
from consumers.delivery.retry import RetryPolicy
from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from consumers.fanpage.adapter import FanpageAdapter
from consumers.loudspeaker.adapter import from_settings
from consumers.loudspeaker.audio import audio_for
from consumers.loudspeaker.plays import PlayReporter
from consumers.zalo.adapter import ZaloAdapter
from consumers.zalo.tokens import TokenStore
from schemas.secrets import SecretFile
from schemas.settings import Settings
from schemas.topics import RETRY_TIERS, Channel

log = logging.getLogger(__name__)


def _fanpage(settings: Settings, targets: TargetLookup) -> ChannelAdapter:

    return FanpageAdapter(
        settings.graph_base_url,
        settings.graph_api_version,
        SecretFile(settings.fanpage_tokens_file),
        targets,
        app_secret=SecretFile(settings.fanpage_app_secret_file),
        timeout_s=settings.http_timeout_s,
    )


def _zalo(settings: Settings, targets: TargetLookup) -> ChannelAdapter:

    if settings.zalo_token_file is None:
        raise SystemExit("LANTOA_ZALO_TOKEN_FILE is required for the Zalo adapter")
    return ZaloAdapter(
        settings.zalo_api_url,
        settings.zalo_oauth_url,
        settings.zalo_app_id,
        SecretFile(settings.zalo_secret_file),
        TokenStore(settings.zalo_token_file),
        targets,
        timeout_s=settings.http_timeout_s,
    )


def _archive(settings: Settings, targets: TargetLookup) -> ChannelAdapter:

    # Bootstrap is the one place that reads the environment (LANTOA_S3_*, see infra/local/s3/README.md).
    # The audio the loudspeaker adapter rendered for a version is archived with it.
    return ArchiveAdapter(
        ArchiveConfig.from_env(os.environ, audio_lookup=audio_for(settings.loudspeaker_audio_dir))
    )


def _loudspeaker(settings: Settings, targets: TargetLookup) -> ChannelAdapter:

    return from_settings(settings, targets)


ADAPTERS: dict[Channel, Callable[[Settings, TargetLookup], ChannelAdapter]] = {
    Channel.FANPAGE: _fanpage,
    Channel.ZALO: _zalo,
    Channel.ARCHIVE: _archive,
    Channel.LOUDSPEAKER: _loudspeaker,
}


def register(channel: Channel, factory: Callable[[Settings, TargetLookup], ChannelAdapter]) -> None:
    """Add a channel (the loudspeaker and archive issues register theirs here)."""
    ADAPTERS[channel] = factory


def policy_from(settings: Settings) -> RetryPolicy:
    """The retry policy with the tier delays configuration asks for (tier names are topics)."""
    tiers = tuple(
        (name, float(settings.retry_delays.get(name, delay))) for name, delay in RETRY_TIERS.items()
    )
    return RetryPolicy(tiers=tiers)


def run(settings: Settings, channel: Channel, config: RuntimeConfig | None = None) -> None:
    """Run one channel's adapter until SIGTERM/SIGINT; exit 70 on anything unexpected."""
    if channel not in ADAPTERS:
        raise SystemExit(f"no adapter registered for {channel.value}")

    async def main(stop: asyncio.Event, targets: TargetLookup) -> None:
        adapter = ADAPTERS[channel](settings, targets)
        interval = float(getattr(adapter, "min_interval_s", 0.0))
        cfg = config or RuntimeConfig(min_interval_s=interval, policy=policy_from(settings))
        tasks = [DeliveryRuntime(settings, adapter, cfg).run(stop)]
        if channel is Channel.LOUDSPEAKER:
            # What the stations actually aired comes back as receipts (played, interrupted, offline).
            tasks.append(PlayReporter.from_settings(settings).run(stop))
        await asyncio.gather(*tasks)

    run_until_signalled(settings, f"{channel.value} adapter", main, log)
