"""Which partition a keyed record goes to: Kafka's default partitioner, as the clients compute it.

kafka-python's and aiokafka's default partitioners both take ``murmur2(key) & 0x7fffffff`` modulo
the partition count (the Java client's rule); this uses kafka-python's own murmur2, so a ledger
entry moved by ``lantoa topics grow`` lands where the producers put its commands.
"""

from __future__ import annotations

from kafka.partitioner import murmur2


def partition_for(key: bytes, count: int) -> int:
    """The partition (0 .. count-1) a record with this key goes to; ValueError for count < 1."""
    if count < 1:
        raise ValueError(f"a topic has at least one partition, not {count}")
    return int(murmur2(key) & 0x7FFFFFFF) % count
