"""A CAP alert's own audio (issue 16, item 4): kept by the parser, carried by the lane, decoded and
checked (base64, digest, size, allow-listed hosts, no redirects, content that really is audio),
aired before or instead of the speech, and a refused one never stops the warning."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from helpers import TYPHOON_ALERT, in_force

from consumers.loudspeaker.audio import AudioRenderer
from consumers.loudspeaker.cap_audio import AudioPolicy, fetch_bytes, to_wav, wav_seconds
from consumers.loudspeaker.emergency import EmergencyPlan, EmergencyPusher
from consumers.loudspeaker.platform import PlatformClient
from infra.local.emulators.common import ManualClock
from infra.local.emulators.loudspeaker import LoudspeakerEmulator
from producers.targets import local_registry
from schemas import contracts
from schemas.cap import parse_cap
from schemas.codec import decode
from schemas.errors import InvalidContent
from schemas.settings import Settings
from streams.alerts.lane import plan_records
from streams.alerts.plan import plan_alert

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "platform-token"


@pytest.fixture(scope="module")
def chime(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Two seconds of a two-tone signal, 8 kHz stereo WAV (not the platform's format), made by sox."""
    out = tmp_path_factory.mktemp("chime") / "chime.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "8000",
            "-c",
            "2",
            str(out),
            "synth",
            "1",
            "sine",
            "880",
            "synth",
            "1",
            "sine",
            "660",
            ":",
            "synth",
            "1",
            "sine",
            "660",
        ],
        check=True,
    )
    return out.read_bytes()


def with_resource(alert: bytes, resource: str) -> bytes:
    return alert.replace(b"<area>", resource.encode() + b"<area>", 1)


def embedded(data: bytes, digest: str | None = None) -> str:
    d = f"<digest>{digest}</digest>" if digest else ""
    b64 = base64.b64encode(data).decode()
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))  # as XML writers wrap it
    return f"<resource><resourceDesc>Bản ghi âm</resourceDesc><mimeType>audio/wav</mimeType><derefUri>{wrapped}</derefUri>{d}</resource>"


def test_the_parser_keeps_resources_and_the_lane_carries_the_audio(chime: bytes) -> None:
    raw = with_resource(
        in_force(TYPHOON_ALERT.read_bytes()), embedded(chime, hashlib.sha1(chime).hexdigest())
    )
    alert = parse_cap(raw)
    [res] = alert.infos[0].resources
    assert res.mime_type == "audio/wav" and base64.b64decode(res.deref or "") == chime
    plan = plan_alert(alert, local_registry(Settings()))
    now = datetime.now(HCM)
    [record], _, _ = plan_records(alert, plan, Settings(), now, None, None)
    value = decode(record.value)
    contracts.check("emergency", value)
    assert EmergencyPlan.from_record(value).audio == value["audio"]
    assert value["audio"]["digest"] == hashlib.sha1(chime).hexdigest()


async def test_embedded_audio_is_checked(chime: bytes) -> None:
    policy = AudioPolicy(max_bytes=len(chime))  # exactly at the bound: accepted
    assert await fetch_bytes({"deref": base64.b64encode(chime).decode()}, policy, None) == chime
    with pytest.raises(InvalidContent, match="over"):  # one byte past it
        await fetch_bytes({"deref": base64.b64encode(chime + b"x").decode()}, policy, None)
    with pytest.raises(InvalidContent, match="base64"):
        await fetch_bytes({"deref": "not*base64!"}, policy, None)
    with pytest.raises(InvalidContent, match="digest"):
        await fetch_bytes({"deref": base64.b64encode(chime).decode(), "digest": "0" * 40}, policy, None)
    with pytest.raises(InvalidContent, match="over"):
        await fetch_bytes({"deref": base64.b64encode(chime + b"x" * 100).decode()}, policy, None)


@pytest.fixture
async def audio_host(chime: bytes) -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=chime, content_type="audio/wav")

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"\0" * 65536)
        return resp

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1/ok.wav")

    app = web.Application()
    app.router.add_get("/ok.wav", ok)
    app.router.add_get("/big.wav", big)
    app.router.add_get("/moved.wav", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://localhost:{port}"
    await runner.cleanup()


async def test_remote_audio_only_from_allowed_hosts_bounded_and_without_redirects(
    audio_host: str, chime: bytes
) -> None:
    allowed = AudioPolicy(hosts=frozenset({"localhost"}), max_bytes=1024 * 1024, timeout_s=5)
    async with aiohttp.ClientSession() as session:
        assert await fetch_bytes({"uri": f"{audio_host}/ok.wav"}, allowed, session) == chime
        with pytest.raises(InvalidContent, match="allow-list"):
            await fetch_bytes({"uri": f"{audio_host}/ok.wav"}, AudioPolicy(), session)
        with pytest.raises(InvalidContent, match="over"):
            await fetch_bytes({"uri": f"{audio_host}/big.wav"}, allowed, session)
        with pytest.raises(InvalidContent, match="302"):
            await fetch_bytes({"uri": f"{audio_host}/moved.wav"}, allowed, session)
        with pytest.raises(InvalidContent, match="http"):
            await fetch_bytes({"uri": "file:///etc/passwd"}, allowed, session)


async def test_content_must_be_audio_and_becomes_the_platforms_wav(chime: bytes, tmp_path: Path) -> None:
    got = await to_wav(chime, tmp_path, AudioPolicy())
    assert got.path is not None and abs(got.duration_s - 2.0) < 0.05
    import wave

    with wave.open(str(got.path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)
    with pytest.raises(InvalidContent, match="not decodable"):
        await to_wav(b"<html>definitely not audio</html>" * 50, tmp_path, AudioPolicy())


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[LoudspeakerEmulator, ManualClock]]:
    clock = ManualClock(datetime.now(HCM).timestamp())
    emu = LoudspeakerEmulator(tokens=[TOKEN], clock=clock)
    await emu.start()
    yield emu, clock
    await emu.stop()


def plan(audio: dict[str, Any] | None) -> EmergencyPlan:
    return EmergencyPlan(
        emergency_id=f"E-{hashlib.sha256(repr(audio).encode()).hexdigest()[:8]}",
        zones=("zone:4",),
        text="Khẩn cấp: lũ quét tại phường Ba Đình.",
        expires_at=datetime.now(HCM).replace(year=datetime.now(HCM).year + 1),
        repeat_interval_s=600,
        audio=audio,
    )


@pytest.mark.parametrize("mode", ["before", "instead"])
async def test_the_zones_air_the_recording_before_or_instead_of_the_speech(
    emulator: tuple[LoudspeakerEmulator, ManualClock], chime: bytes, tmp_path: Path, mode: str
) -> None:
    emu, clock = emulator
    assert emu.base_url
    renderer = AudioRenderer(tmp_path / "audio", "https://tin.example.vn/audio")
    pusher = EmergencyPusher(
        PlatformClient(emu.base_url, lambda: TOKEN),
        renderer,
        clock=clock,
        audio_policy=AudioPolicy(mode=mode),  # type: ignore[arg-type]
    )
    await pusher.start()
    try:
        speech = await pusher.push(plan(None))
        mine = await pusher.push(plan({"deref": base64.b64encode(chime).decode(), "mime_type": "audio/wav"}))
        refused = await pusher.push(plan({"deref": "@@@", "mime_type": "audio/wav"}))
    finally:
        await pusher.close()
    assert mine.audio_refused is None and mine.audio_url != speech.audio_url
    path = tmp_path / "audio" / (mine.audio_url or "").removeprefix("https://tin.example.vn/audio/")
    assert wav_seconds(path) == pytest.approx(mine.duration_s)
    if mode == "before":  # recording, 0.8 s of silence, then the speech
        assert mine.duration_s == pytest.approx(2.0 + 0.8 + speech.duration_s, abs=0.05)
    else:
        assert mine.duration_s == pytest.approx(2.0, abs=0.05)
    # A refused recording: the speech airs anyway, and the result says why.
    assert refused.audio_url == speech.audio_url and "base64" in (refused.audio_refused or "")
