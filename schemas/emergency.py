"""Identifiers of alerts and of the emergency lane, shared by the alert lane (streams/alerts/),
the emergency pusher (consumers/loudspeaker/lane.py) and the status views: each side must name an
alert, and one zone of an emergency record, exactly as the others do."""

from __future__ import annotations

import hashlib

import orjson

# The uri every receipt of a CAP alert is filed under (the fan-out's, the pusher's, the zones').
ALERT_URI_PREFIX = "urn:lantoa:cap:"
# The channel name receipts of the emergency lane carry (it has no command topic of its own kind).
EMERGENCY_CHANNEL = "emergency"


def alert_uri(identifier: str) -> str:
    return f"{ALERT_URI_PREFIX}{identifier}"


def emergency_command_id(emergency_id: str, zone: str, action: str) -> str:
    """The command id of one zone of an emergency-lane record (action: start or cancel)."""
    return hashlib.sha256(orjson.dumps(["emergency", emergency_id, zone, action])).hexdigest()
