"""LedgerZoneSource after ``lantoa topics grow``: an entry copied to its new partition and then
tombstoned in its old one is still the zone's, whatever order the two partitions are read in.

(The full drill lost 1,337 bulletins this way: the old partition's tombstone, read after the copy,
erased the entry, the zone was rebuilt without it and its schedule pushed without the bulletin.)
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from consumers.loudspeaker.zones import LedgerZoneSource

KEY = "live|urn:lantoa:a:1|zone:10006"
VALUE = orjson.dumps({"kind": "live", "uri": "urn:lantoa:a:1", "detail": {"bulletin": {}}})


def resolve(order: list[tuple[int, bytes | None]]) -> dict[str, dict[str, dict[str, Any]]]:
    per_partition: dict[int, dict[str, dict[str, dict[str, Any]]]] = {3: {}, 12: {}}
    for partition, raw in order:
        LedgerZoneSource._apply(per_partition[partition], partition, KEY, raw)
    found, where = LedgerZoneSource._merge(per_partition)
    assert where.get("zone:10006") in (None, 12)
    return found


def test_a_moved_entry_survives_every_interleaving_of_its_old_and_new_partition() -> None:
    old = [(3, VALUE), (3, None)]  # the original, then the grow's tombstone (in this order)
    new = [(12, VALUE)]  # the grow's copy
    for picks in set(itertools.permutations([0, 0, 1])):
        order, i, j = [], 0, 0
        for pick in picks:
            if pick == 0:
                order.append(old[i])
                i += 1
            else:
                order.append(new[j])
                j += 1
        assert "urn:lantoa:a:1" in resolve(order).get("zone:10006", {}), order


def test_a_tombstone_in_the_partition_that_holds_the_entry_still_removes_it() -> None:
    assert resolve([(12, VALUE), (12, None), (3, VALUE), (3, None)]) == {}
