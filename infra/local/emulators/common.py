"""Shared machinery of the channel emulators: clock, fault injection, control API, server runner.

Every emulator is an ``EmulatorBase``: an ``aiohttp.web.Application`` (``app``) that serves the
vendor's API next to a JSON control API under ``/_control/``, started on loopback with
``await emulator.start()`` (returns the base URL) and stopped with ``await emulator.stop()``.
The same object is driven in process by tests (``emulator.faults.add(...)``, ``emulator.reset()``)
and over HTTP by other processes (``POST /_control/faults``).

The fault queue and its kinds are in ``faults`` (re-exported here). Delays are cut short by
``stop()``, so a test that tears down never waits for a 30 s fault.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import aiohttp
import orjson
from aiohttp import web

from infra.local.emulators.faults import Clock, Fault, FaultEngine
from infra.local.processes import write_state_file

__all__ = [
    "ControlError",
    "EmulatorBase",
    "ManualClock",
    "Stats",
    "WebhookSender",
    "json_response",
    "request_key",
    "run_until_signalled",
]


def request_key(name: str) -> Any:
    """A request-storage key: ``web.RequestKey`` where aiohttp has it (3.13+), else a string."""
    factory = getattr(web, "RequestKey", None)
    return factory(name) if factory is not None else name


OUTCOME_KEY = request_key("lantoa.emulator.outcome")
CONTROL_PREFIX = "/_control"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Action = Callable[[], Awaitable[web.StreamResponse]]


class ManualClock:
    """A clock for tests: epoch seconds that only move when told (``advance``/``set``)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, epoch_s: float) -> float:
        self.now = float(epoch_s)
        return self.now


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


class ControlError(Exception):
    """A control API request that cannot be honoured; answered as ``{"error": reason}``."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass
class Stats:
    """Requests by ``"METHOD /path"`` and outcome (``ok``, ``error:<code>``, ``http:<status>``,
    ``dropped``), plus per-outcome totals."""

    by_path: dict[str, collections.Counter[str]] = field(default_factory=dict)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)

    def record(self, method: str, path: str, outcome: str) -> None:
        self.by_path.setdefault(f"{method} {path}", collections.Counter())[outcome] += 1
        self.outcomes[outcome] += 1

    def count(self, outcome: str | None = None, path: str | None = None) -> int:
        if path is None:
            return sum(self.outcomes.values()) if outcome is None else self.outcomes[outcome]
        counter = self.by_path.get(path, collections.Counter())
        return sum(counter.values()) if outcome is None else counter[outcome]

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": {k: dict(v) for k, v in sorted(self.by_path.items())},
            "outcomes": dict(self.outcomes),
            "total": sum(self.outcomes.values()),
        }


def set_outcome(request: web.Request, outcome: str) -> None:
    request[OUTCOME_KEY] = outcome


class WebhookSender:
    """The webhook side of an emulator with one subscriber (Graph, Zalo OA): ``deliver_webhook``
    POSTs a delivery to it, and ``_ctl_webhook_replay`` sends the last delivery again. The
    emulator sets ``_subscription`` (``{"url": ...}``) and ``_last_delivery`` in its ``__init__``."""

    _subscription: dict[str, str] | None
    _last_delivery: tuple[bytes, dict[str, str]] | None

    async def deliver_webhook(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """POST one delivery to the subscriber; its answer and how long it took."""
        if self._subscription is None:
            raise ControlError("no subscriber: POST /_control/webhooks/subscribe first", status=409)
        self._last_delivery = (body, headers)
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.post(self._subscription["url"], data=body, headers=headers) as reply:
                text = await reply.text()
        return {"status": reply.status, "body": text, "elapsed_s": time.monotonic() - started}

    async def _ctl_webhook_replay(self, request: web.Request) -> web.StreamResponse:
        if self._last_delivery is None:
            raise ControlError("nothing delivered yet", status=409)
        return json_response(await self.deliver_webhook(*self._last_delivery))


class EmulatorBase:
    """Lifecycle, fault application and the common control API; subclasses add the vendor API.

    Subclasses implement ``_add_api_routes``, ``_add_control_routes``, ``_fault_response``
    (answer for ``rate_limit``/``server_error``/``error``/``expire_token``), ``reset`` (calling
    ``super().reset()``) and may extend ``stats_json`` and ``CONFIG_KEYS`` (settable through
    ``POST /_control/config``).
    """

    name: ClassVar[str] = "emulator"
    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {}

    def __init__(self, *, clock: Clock | None = None, seed: int | None = None) -> None:
        self.clock: Clock = clock if clock is not None else time.time
        self.rng = random.Random(seed)
        self.faults = FaultEngine(self.rng, self.clock)
        self.stats = Stats()
        self.base_url: str | None = None
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._initial_config: dict[str, Any] = {}
        self.app = web.Application(middlewares=[self._make_stats_middleware()])
        self._add_common_control_routes()
        self._add_control_routes()
        self._add_api_routes()

    # ----- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False) -> str:
        """Serve on ``host:port`` (0 = a free port); return the base URL (no trailing slash)."""
        if self._runner is not None:
            raise RuntimeError(f"{self.name} emulator already started at {self.base_url}")
        self._stopping = asyncio.Event()
        if access_log:
            runner = web.AppRunner(self.app, shutdown_timeout=1.0)
        else:
            runner = web.AppRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        self.base_url = f"http://{host}:{bound[1]}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reset(self) -> None:
        """Forget every effect, fault and statistic; back to the constructor's configuration."""
        self.faults.reset()
        self.stats = Stats()
        for key, value in self._initial_config.items():
            setattr(self, key, value)

    def _snapshot_config(self) -> None:
        """Remember the settings ``reset()`` returns to (subclasses call it last in __init__)."""
        self._initial_config = self.config_json()

    def next_seq(self) -> int:
        """Monotonic sequence number shared by every recorded effect of this emulator."""
        self._seq += 1
        return self._seq

    async def sleep(self, seconds: float) -> None:
        """Sleep, cut short when the emulator stops."""
        if seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # ----- fault application -----------------------------------------------------------------

    async def guarded(self, request: web.Request, target: str | None, action: Action) -> web.StreamResponse:
        """Run ``action`` (auth, validation, effect, reply) under whatever fault matches."""
        fault = self.faults.take(request.method, request.path, target)
        if fault is None:
            return await action()
        kind = fault.kind
        if kind == "slow":
            await self.sleep(fault.delay)
            return await action()
        if kind == "timeout":
            if fault.effect_first:
                response = await action()
                await self.sleep(fault.delay)
                return response
            await self.sleep(fault.delay)
            return await action()
        if kind == "drop_before_effect":
            return self._drop(request)
        if kind == "drop_after_effect":
            await action()
            return self._drop(request)
        return await self._fault_response(request, fault)

    def _drop(self, request: web.Request) -> web.StreamResponse:
        # abort() closes the socket at once; aiohttp then finds nothing to write the (empty)
        # response to and the client sees ServerDisconnectedError: no status, no body.
        set_outcome(request, "dropped")
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=204)

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        raise NotImplementedError

    # ----- routes ----------------------------------------------------------------------------

    def _add_api_routes(self) -> None:
        raise NotImplementedError

    def _add_control_routes(self) -> None:
        """Emulator-specific ``/_control/...`` routes (added before the API routes)."""

    def stats_json(self) -> dict[str, Any]:
        data = self.stats.to_json()
        faults_fired = collections.Counter(str(f["kind"]) for f in self.faults.fired)
        data["faults_fired"] = dict(faults_fired)
        return data

    def config_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.CONFIG_KEYS}

    def _make_stats_middleware(self) -> Any:
        @web.middleware
        async def stats_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith(CONTROL_PREFIX):
                try:
                    return await handler(request)
                except ControlError as exc:
                    return json_response({"error": exc.reason}, status=exc.status)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self.stats.record(request.method, request.path, f"http:{exc.status}")
                raise
            outcome = request.get(OUTCOME_KEY)
            if not isinstance(outcome, str):
                outcome = "ok" if response.status < 400 else f"http:{response.status}"
            self.stats.record(request.method, request.path, outcome)
            return response

        return stats_middleware

    def _add_common_control_routes(self) -> None:
        r = self.app.router
        r.add_get(f"{CONTROL_PREFIX}/faults", self._ctl_faults_list)
        r.add_post(f"{CONTROL_PREFIX}/faults", self._ctl_faults_add)
        r.add_delete(f"{CONTROL_PREFIX}/faults", self._ctl_faults_clear)
        r.add_delete(f"{CONTROL_PREFIX}/faults/{{fault_id:\\d+}}", self._ctl_faults_remove)
        r.add_post(f"{CONTROL_PREFIX}/reset", self._ctl_reset)
        r.add_get(f"{CONTROL_PREFIX}/stats", self._ctl_stats)
        r.add_get(f"{CONTROL_PREFIX}/clock", self._ctl_clock_get)
        r.add_post(f"{CONTROL_PREFIX}/clock", self._ctl_clock_set)
        r.add_get(f"{CONTROL_PREFIX}/config", self._ctl_config_get)
        r.add_post(f"{CONTROL_PREFIX}/config", self._ctl_config_set)

    async def _ctl_faults_list(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {"faults": [f.to_json() for f in self.faults.list()], "fired": self.faults.fired}
        )

    async def _ctl_faults_add(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        items = body.get("faults") if isinstance(body, dict) and "faults" in body else body
        if not isinstance(items, list):
            items = [items]
        try:
            faults = [Fault.from_json(item) for item in items]
        except (TypeError, ValueError, re.error) as exc:
            raise ControlError(f"bad fault: {exc}") from exc
        added = [self.faults.add_fault(f).to_json() for f in faults]
        return json_response({"faults": added}, status=201)

    async def _ctl_faults_clear(self, request: web.Request) -> web.StreamResponse:
        return json_response({"removed": self.faults.clear()})

    async def _ctl_faults_remove(self, request: web.Request) -> web.StreamResponse:
        if not self.faults.remove(int(request.match_info["fault_id"])):
            raise ControlError("no such fault", status=404)
        return json_response({"removed": 1})

    async def _ctl_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return json_response({"ok": True})

    async def _ctl_stats(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.stats_json())

    async def _ctl_clock_get(self, request: web.Request) -> web.StreamResponse:
        return json_response({"now": self.clock(), "manual": isinstance(self.clock, ManualClock)})

    async def _ctl_clock_set(self, request: web.Request) -> web.StreamResponse:
        if not isinstance(self.clock, ManualClock):
            raise ControlError(
                "this emulator runs on the wall clock (start it with a "
                "ManualClock, or --manual-clock, to move time)",
                status=409,
            )
        body = await read_json(request)
        if isinstance(body, dict) and isinstance(body.get("advance"), (int, float)):
            now = self.clock.advance(float(body["advance"]))
        elif isinstance(body, dict) and isinstance(body.get("set"), (int, float)):
            now = self.clock.set(float(body["set"]))
        else:
            raise ControlError('expected {"advance": seconds} or {"set": epoch_seconds}')
        return json_response({"now": now, "manual": True})

    async def _ctl_config_get(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.config_json())

    async def _ctl_config_set(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ControlError("expected a JSON object of settings")
        unknown = set(body) - set(self.CONFIG_KEYS)
        if unknown:
            raise ControlError(f"unknown settings {sorted(unknown)}; settable: {sorted(self.CONFIG_KEYS)}")
        for key, value in body.items():
            expected = self.CONFIG_KEYS[key]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ControlError(f"{key} must be {expected.__name__}")
            setattr(self, key, value)
        return json_response(self.config_json())


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"body is not JSON: {exc}") from exc


async def run_until_signalled(
    emulators: Sequence[tuple[EmulatorBase, int]],
    host: str,
    state_file: Path | None,
    describe: Callable[[], dict[str, Any]],
    access_log: bool = True,
) -> None:
    """Start each ``(emulator, port)``, print ``"<name> <base url>"`` lines, write the state
    file (JSON from ``describe()`` plus ``pid``), and serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[EmulatorBase] = []
    try:
        for emulator, port in emulators:
            await emulator.start(host, port, access_log=access_log)
            started.append(emulator)
            print(f"{emulator.name} {emulator.base_url}", flush=True)
        if state_file is not None:
            state = {"pid": os.getpid(), **describe()}
            write_state_file(state_file, state)
        await stop.wait()
    finally:
        for emulator in reversed(started):
            await emulator.stop()
        if state_file is not None:
            state_file.unlink(missing_ok=True)
