"""The adapters' cache of shared payloads: bounded by the payloads' encoded bytes, LRU."""

from __future__ import annotations

from infra.kafka.payloads import ByteLRU


def test_the_least_recently_used_go_first_once_past_the_bound() -> None:
    cache = ByteLRU(100)
    cache.put("a", 40, {"a": 1})
    cache.put("b", 40, {"b": 1})
    assert cache.get("a") == (True, {"a": 1})  # a is now the most recent
    cache.put("c", 40, {"c": 1})
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.bytes == 80 and len(cache) == 2
    assert cache.get("b") == (False, None)


def test_one_payload_larger_than_the_bound_stays_alone() -> None:
    cache = ByteLRU(10)
    cache.put("a", 5, 1)
    cache.put("big", 500, 2)
    assert len(cache) == 1 and cache.get("big") == (True, 2) and cache.bytes == 500


def test_putting_a_known_payload_again_does_not_count_it_twice() -> None:
    cache = ByteLRU(100)
    cache.put("a", 60, 1)
    cache.put("a", 60, 1)
    assert cache.bytes == 60 and len(cache) == 1
