"""Redis Cluster clients: two fixes to redis-py 8.1's async cluster client.

1. redis-py routes a command by its key's slot. For commands flagged
   `movablekeys` (XREADGROUP, XREAD) it asks the server with `COMMAND GETKEYS`
   before every call (redis/redis-py#2229; PR #2836 still open): measured with
   bench/cluster.py, 495 extra round trips per task, half of all commands. Their
   keys are the first half of the arguments after STREAMS, so we read them here.
2. Its transaction pipeline queues each command by running the (async) slot
   lookup in a new thread with its own event loop, per command; and a command
   issued between WATCH and MULTI is silently dropped (the call returns the
   pipeline, the coroutine that would have sent it is never awaited). We queue
   single-key and EVAL commands with the slot computed in place, and make the
   dropped case an error, so such code fails loudly instead of reading garbage.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio.cluster as aiocluster
from redis._parsers import AsyncCommandsParser
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

_STREAM_READS = frozenset({"XREADGROUP", "XREAD"})
# Commands whose only (or first) key is the first argument: what our transactions queue.
_FIRST_ARG_KEY = frozenset({
    "XADD", "XACK", "XDEL", "XTRIM", "SET", "SETEX", "GETDEL", "INCR", "INCRBY", "DEL",
    "UNLINK", "EXPIRE", "PEXPIRE", "HSET", "HMSET", "HDEL", "HINCRBY", "HINCRBYFLOAT",
    "SADD", "SREM", "ZADD", "ZREM", "ZINCRBY", "LPUSH", "RPUSH", "LTRIM", "VADD", "VREM",
    "VSETATTR",
})
_original_queue = aiocluster.TransactionStrategy.execute_command


def stream_read_keys(args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Keys of an XREAD/XREADGROUP command (name first), or None for any other command."""
    if not args or _text(args[0]).upper() not in _STREAM_READS:
        return None
    for position, arg in enumerate(args):
        if _text(arg).upper() == "STREAMS":
            rest = args[position + 1 :]
            return tuple(rest[: len(rest) // 2]) or None
    return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class StreamAwareCommandsParser(AsyncCommandsParser):
    """redis-py's parser, minus the server round trip for stream reads."""

    async def get_keys(self, *args: Any) -> tuple[Any, ...] | None:  # type: ignore[override]
        return stream_read_keys(args) or await super().get_keys(*args)


def queued_slot(args: tuple[Any, ...]) -> int | None:
    """The slot of a command we know the key position of, or None (ask redis-py)."""
    command = _text(args[0]).upper()
    if command in _FIRST_ARG_KEY and len(args) > 1:
        return int(key_slot(_bytes(args[1])))
    if command in ("EVAL", "EVALSHA") and len(args) > 3 and int(args[2]) > 0:
        return int(key_slot(_bytes(args[3])))
    return None


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _transaction_command(self: Any, *args: Any, **kwargs: Any) -> Any:
    """TransactionStrategy.execute_command without a thread per queued command."""
    command = _text(args[0]).upper()
    before_multi = self._watching and not self._explicit_transaction
    if before_multi and command not in self.IMMEDIATE_EXECUTE_COMMANDS:
        raise RedisClusterException(
            f"{command} between WATCH and MULTI on a cluster pipeline would be dropped by "
            "redis-py; read through the client instead (the WATCH still guards the EXEC)"
        )
    slot = None if self._pipe.cluster_client._initialize else queued_slot(args)
    if before_multi or command in self.IMMEDIATE_EXECUTE_COMMANDS or slot is None:
        return _original_queue(self, *args, **kwargs)
    self._pipeline_slots.add(slot)
    return aiocluster.AbstractStrategy.execute_command(self, *args, **kwargs)


def install() -> None:
    """Apply both fixes to every RedisCluster built from now on (FastStream's included).

    redis-py builds each cluster client's parser from a module attribute, and
    FastStream builds its own client inside the broker, so patching the classes is
    the one place both can be reached. Idempotent."""
    aiocluster.AsyncCommandsParser = StreamAwareCommandsParser  # type: ignore[misc]
    aiocluster.TransactionStrategy.execute_command = _transaction_command  # type: ignore[method-assign]
