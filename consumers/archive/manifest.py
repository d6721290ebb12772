"""Archive manifest (pure): its schema, its bytes, and the merges of versions and takedowns.

Replaying the same change leaves the manifest identical, so a replayed command writes nothing.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

MANIFEST_SCHEMA: Final = "lantoa.archive.manifest/1"


def new_manifest(uri: str, article_hash: str, prefix: str) -> dict[str, Any]:
    return {
        "schema": MANIFEST_SCHEMA,
        "uri": uri,
        "article_hash": article_hash,
        "prefix": prefix,
        "status": "public",
        "versions": [],
        "takedowns": [],
    }


def parse_manifest(raw: bytes, uri: str) -> dict[str, Any] | None:
    """The manifest of ``uri`` in ``raw``; None when ``raw`` is not JSON or is another article's."""
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("uri") == uri else None


def recorded_names(manifest: dict[str, Any] | None, version: int) -> set[str]:
    """Names of the objects the manifest records for ``version`` (keys known to exist)."""
    if manifest is None:
        return set()
    entry = next((v for v in manifest.get("versions", []) if v.get("version") == version), None)
    return {str(o.get("name")) for o in (entry or {}).get("objects", [])}


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def takedown_covering(manifest: dict[str, Any] | None, version: int) -> dict[str, Any] | None:
    """The latest takedown at or above ``version``: that version must not become public again."""
    if manifest is None:
        return None
    covering = [t for t in manifest.get("takedowns", []) if int(t.get("version", 0)) >= version]
    return max(covering, key=lambda t: int(t.get("version", 0))) if covering else None


def status_of(manifest: dict[str, Any]) -> str:
    latest_takedown = max((int(t.get("version", 0)) for t in manifest.get("takedowns", [])), default=0)
    latest_version = max((int(v.get("version", 0)) for v in manifest.get("versions", [])), default=0)
    return "taken_down" if latest_takedown and latest_takedown >= latest_version else "public"


def merge_version(manifest: dict[str, Any], entry: dict[str, Any], now: str) -> None:
    versions: list[dict[str, Any]] = list(manifest.get("versions", []))
    old = next((v for v in versions if v.get("version") == entry["version"]), None)
    if old is None:
        versions.append(entry)
    else:
        # Keep the first archiving facts; a replaced derived object moves to "superseded", and an
        # object missing from this rendering (audio cleaned up locally) keeps its record.
        objects = {str(o["name"]): o for o in old.get("objects", [])}
        superseded = list(old.get("superseded", []))
        for record in entry["objects"]:
            prev = objects.get(str(record["name"]))
            if prev is not None and (prev.get("sha256"), prev.get("version_id")) == (
                record["sha256"],
                record["version_id"],
            ):
                continue
            if prev is not None and prev.get("sha256") != record["sha256"]:
                superseded.append({**prev, "superseded_at": now})
            objects[str(record["name"])] = record
        old["objects"] = sorted(objects.values(), key=lambda r: str(r["name"]))
        if superseded:
            old["superseded"] = superseded
    manifest["versions"] = sorted(versions, key=lambda v: int(v["version"]))


def merge_takedown(manifest: dict[str, Any], takedown: dict[str, Any]) -> None:
    takedowns: list[dict[str, Any]] = list(manifest.get("takedowns", []))
    old = next((t for t in takedowns if t.get("command_id") == takedown["command_id"]), None)
    if old is None:
        takedowns.append(takedown)
    else:
        known = {str(o["key"]) for o in old.get("objects", [])}
        added = [o for o in takedown["objects"] if str(o["key"]) not in known]
        if added:
            old["objects"] = sorted([*old.get("objects", []), *added], key=lambda o: str(o["key"]))
    manifest["takedowns"] = takedowns
