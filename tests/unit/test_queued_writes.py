"""QueuedWrites: a handler's writes recorded, then replayed into the batch's MULTI."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from shared.messaging.queued_writes import QueuedWrites
from shared.messaging.tx import TX_COMMANDS, Tx


def test_replay_queues_the_same_commands_in_order():
    writes = QueuedWrites()
    tx: Tx = writes
    tx.hset("k", mapping={"a": "1"})
    tx.expire("k", 60)
    tx.incr("n")
    pipeline = Redis().pipeline(transaction=True)  # no I/O until execute
    writes.replay(pipeline)
    queued = [command[0][0] for command in pipeline.command_stack]
    assert queued == ["HSET", "EXPIRE", "INCRBY"]
    assert pipeline.command_stack[0][0][1:] == ("k", "a", "1")


def test_calls_chain_like_a_pipeline():
    writes = QueuedWrites()
    assert writes.set("a", 1).set("b", 2) is writes
    assert [c[0] for c in writes.calls] == ["set", "set"]


@pytest.mark.parametrize("name", ["execute", "watch", "multi", "_private"])
def test_io_and_state_changes_are_refused(name):
    with pytest.raises(AttributeError, match="only queues commands"):
        getattr(QueuedWrites(), name)


@pytest.mark.parametrize("command", sorted(TX_COMMANDS))
def test_both_transactions_a_handler_gets_have_every_tx_command(command):
    """Tx is what handlers may queue: the real pipeline has it, and the recorder records it."""
    assert callable(getattr(Pipeline, command))
    writes = QueuedWrites()
    getattr(writes, command)("key")
    assert writes.calls == [(command, ("key",), {})]
