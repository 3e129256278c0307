"""The two redis-py cluster fixes: key positions we compute instead of asking the server."""

from __future__ import annotations

from redis.crc import key_slot

from shared.messaging.cluster_client import queued_slot, stream_read_keys


def test_stream_read_keys_are_the_first_half_after_streams() -> None:
    args = ("XREADGROUP", "GROUP", "g", "c", "COUNT", 16, "BLOCK", 100, "STREAMS", "a{p1}", "b", ">", ">")
    assert stream_read_keys(args) == ("a{p1}", "b")
    assert stream_read_keys(("XREAD", "STREAMS", b"s", b"0")) == (b"s",)


def test_other_commands_are_left_to_redis_py() -> None:
    assert stream_read_keys(("GET", "k")) is None
    assert queued_slot(("SORT", "k", "BY", "x")) is None
    assert queued_slot(("EVAL", "return 1", 0)) is None


def test_queued_slot_follows_the_hash_tag() -> None:
    assert queued_slot(("XADD", "rf:stream:T:{p3}", "*", "f", "v")) == key_slot(b"{p3}")
    assert queued_slot(("EVAL", "return 1", 1, "memory:vec:{p3}ws", "x")) == key_slot(b"p3")
