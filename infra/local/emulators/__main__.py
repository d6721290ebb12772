"""``python -m infra.local.emulators``: run the channel emulators until SIGTERM/SIGINT.

    python -m infra.local.emulators graph|zalo|all [--port N] [--graph-port N] [--zalo-port N]
        [--host H] [--state-file F] [--config F.json] [--targets F.toml] [--manual-clock]
        [--no-access-log]

Prints one ``<name> <base URL>`` line per emulator on stdout once it listens. ``--port 0`` (the
default) takes a free port; with ``all``, ``--port N`` gives Graph N and Zalo N+1 unless
``--graph-port``/``--zalo-port`` say otherwise. The Zalo base URL serves both the Open API and
the OAuth token endpoint.

Pages and groups come from the targets file (default ``infra/targets.toml``: each
``[[fanpage]] page_id`` gets the token ``demo-page-token-<page_id>``, each ``[[zalo]] group_id``
is an active group) and ``--config`` (JSON ``{"graph": {...}, "zalo": {...}}`` of constructor
arguments of ``GraphEmulator`` / ``ZaloEmulator``) overrides them. The state file (written once
listening, removed on exit) holds ``{"pid", "graph": {"base_url", "pages", "app_secret"},
"zalo": {"base_url", "oauth_base_url", "app_id", "secret_key", "oa_id", "access_token",
"refresh_token", "groups", "followers"}}``: the tokens at start; after a refresh the live pair
is at ``GET <zalo>/_control/tokens``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from infra.local.emulators.common import EmulatorBase, ManualClock, run_until_signalled
from infra.local.emulators.graph import GraphEmulator
from infra.local.emulators.loudspeaker import LoudspeakerEmulator
from infra.local.emulators.loudspeaker_model import DEFAULT_TOKEN as LOUDSPEAKER_TOKEN
from infra.local.emulators.zalo import ZaloEmulator

DEFAULT_TARGETS = Path(__file__).resolve().parents[2] / "targets.toml"
DEMO_APP_SECRET = "lantoa-demo-app-secret"
DEMO_FOLLOWERS = ["demo-follower-1"]


def demo_config(targets: Path | None) -> dict[str, dict[str, Any]]:
    """Constructor arguments for the demo: the pages and groups of the targets file."""
    data: dict[str, Any] = {}
    if targets is not None and targets.is_file():
        data = tomllib.loads(targets.read_text(encoding="utf-8"))
    fanpages = [f for f in data.get("fanpage", []) if isinstance(f, dict) and f.get("page_id")]
    groups = [z["group_id"] for z in data.get("zalo", []) if isinstance(z, dict) and z.get("group_id")]
    return {
        "graph": {
            "pages": {str(f["page_id"]): f"demo-page-token-{f['page_id']}" for f in fanpages},
            "page_names": {str(f["page_id"]): str(f.get("name", "")) for f in fanpages},
            "app_secret": DEMO_APP_SECRET,
        },
        "zalo": {"groups": {str(g): "active" for g in groups}, "followers": DEMO_FOLLOWERS},
    }


def build(
    kind: str, config: dict[str, dict[str, Any]], manual_clock: bool
) -> tuple[GraphEmulator | None, ZaloEmulator | None]:
    clock = ManualClock() if manual_clock else None
    graph = zalo = None
    if kind in ("graph", "all"):
        graph = GraphEmulator(**config.get("graph", {}), clock=clock)
    if kind in ("zalo", "all"):
        zalo = ZaloEmulator(**config.get("zalo", {}), clock=clock)
    return graph, zalo


def build_loudspeaker(
    kind: str, config: dict[str, dict[str, Any]], manual_clock: bool
) -> LoudspeakerEmulator | None:
    """The loudspeaker platform emulator (``all`` includes it; zones are created on first use)."""
    if kind not in ("loudspeaker", "all"):
        return None
    return LoudspeakerEmulator(**config.get("loudspeaker", {}), clock=ManualClock() if manual_clock else None)


def describe(
    graph: GraphEmulator | None,
    zalo: ZaloEmulator | None,
    config: dict[str, dict[str, Any]],
    loud: LoudspeakerEmulator | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if loud is not None:
        state["loudspeaker"] = {
            "base_url": loud.base_url,
            "tokens": list(config.get("loudspeaker", {}).get("tokens", [LOUDSPEAKER_TOKEN])),
        }
    if graph is not None:
        state["graph"] = {
            "base_url": graph.base_url,
            "pages": dict(config.get("graph", {}).get("pages", {})),
            "app_secret": graph.app_secret,
        }
    if zalo is not None:
        groups = config.get("zalo", {}).get("groups", {})
        state["zalo"] = {
            "base_url": zalo.base_url,
            "oauth_base_url": zalo.base_url,
            "app_id": zalo.app_id,
            "secret_key": zalo.secret_key,
            "oa_id": zalo.oa_id,
            "access_token": zalo.access_token,
            "refresh_token": zalo.refresh_token,
            "groups": groups if isinstance(groups, dict) else list(groups),
            "followers": list(config.get("zalo", {}).get("followers", [])),
        }
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.emulators",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("which", choices=("graph", "zalo", "loudspeaker", "all"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--graph-port", type=int, default=None)
    parser.add_argument("--zalo-port", type=int, default=None)
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help='JSON {"graph": {...}, "zalo": {...}} of constructor arguments',
    )
    parser.add_argument(
        "--targets",
        type=Path,
        default=DEFAULT_TARGETS,
        help="targets registry TOML giving the demo pages and groups",
    )
    parser.add_argument(
        "--manual-clock", action="store_true", help="time moves only through POST /_control/clock"
    )
    parser.add_argument("--no-access-log", action="store_true")
    ns = parser.parse_args(argv)

    config = demo_config(ns.targets)
    if ns.config is not None:
        try:
            overrides = json.loads(ns.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"error: cannot read {ns.config}: {exc}", file=sys.stderr)
            return 2
        for name in ("graph", "zalo", "loudspeaker"):
            config[name] = {**config.get(name, {}), **overrides.get(name, {})}
    try:
        graph, zalo = build(ns.which, config, ns.manual_clock)
        loud = build_loudspeaker(ns.which, config, ns.manual_clock)
    except (TypeError, ValueError) as exc:
        print(f"error: bad emulator configuration: {exc}", file=sys.stderr)
        return 2

    plan: list[tuple[EmulatorBase, int]] = []
    if graph is not None:
        plan.append((graph, ns.graph_port if ns.graph_port is not None else ns.port))
    if zalo is not None:
        default = ns.port + 1 if ns.which == "all" and ns.port else ns.port
        plan.append((zalo, ns.zalo_port if ns.zalo_port is not None else default))
    if loud is not None:
        plan.append((loud, ns.port + 2 if ns.which == "all" and ns.port else ns.port))
    asyncio.run(
        run_until_signalled(
            plan,
            ns.host,
            ns.state_file,
            lambda: describe(graph, zalo, config, loud),
            access_log=not ns.no_access_log,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
