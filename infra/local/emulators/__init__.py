"""Local emulators of the channels' platforms (Facebook Graph API Pages, Zalo OA Open API v3),
for the contract tests, the adapters' tests and ``make demo``. See ``faults`` for the fault
injection, ``common`` for the control API, and ``python -m infra.local.emulators --help`` for the
command line."""

from infra.local.emulators.common import EmulatorBase, Fault, FaultEngine, ManualClock
from infra.local.emulators.graph import GraphEmulator, GraphError, GraphPost, appsecret_proof
from infra.local.emulators.zalo import ZaloEmulator, ZaloError, ZaloMessage

__all__ = [
    "EmulatorBase",
    "Fault",
    "FaultEngine",
    "GraphEmulator",
    "GraphError",
    "GraphPost",
    "ManualClock",
    "ZaloEmulator",
    "ZaloError",
    "ZaloMessage",
    "appsecret_proof",
]
