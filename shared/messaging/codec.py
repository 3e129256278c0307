"""What a stream entry holds and how it becomes an event: the envelope format, FastStream's
parser and decoder hooks, and validation that says exactly what was wrong.

Pure functions apart from FastStream's hooks; `shared.messaging.bus` does the I/O."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream.redis.parser.message import MessageFormat
from pydantic import ValidationError

from shared.contract.events import Envelope, Payload, envelope_class
from shared.contract.topology import Topology

P = TypeVar("P", bound=Payload)

DATA_FIELD = "__data__"


class EnvelopeFormat(MessageFormat):
    """The stream entry's `__data__` field is the envelope's JSON, nothing else.

    So an upstream system can publish with a plain `XADD stream * __data__ <json>`.
    """

    @classmethod
    async def encode(cls, *, message: Any, **_: Any) -> bytes:
        if isinstance(message, Envelope):
            return message.model_dump_json().encode()
        if isinstance(message, bytes):
            return message
        if isinstance(message, str):
            return message.encode()
        raise TypeError(f"cannot publish {type(message).__name__} on the event bus")

    @classmethod
    def parse(cls, data: bytes) -> tuple[bytes, dict[str, Any]]:
        return data, {}


async def batch_parse(msg: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's batch parser JSON-decodes every entry and re-encodes the list as one
    body (twice the decoding we do ourselves), and one entry that is not JSON fails the
    whole batch before our handler runs. The handler reads the raw entries instead; the
    body only tells the metrics middleware the batch's size."""
    parsed = await original({**msg, "data": []})
    parsed.raw_message = msg
    parsed.body = b"".join(entry_body(fields) for fields in msg["data"])
    return parsed


async def skip_decode(msg: Any, original: Callable[[Any], Awaitable[Any]]) -> None:
    """Handlers take the raw message (decode_envelope validates it once); FastStream's own
    JSON decoding of the body would be thrown away."""
    return None


def entry_body(fields: dict[bytes, bytes]) -> bytes:
    """A stream entry's envelope JSON; an entry without `__data__` becomes a readable JSON
    of its fields (bytes escaped), which fails validation and is dead-lettered."""
    data = fields.get(DATA_FIELD.encode())
    if data:  # as FastStream's own parser: an empty `__data__` counts as none
        return data
    return json.dumps({_escaped(k): _escaped(v) for k, v in fields.items()}).encode()


def decode_on_stream(
    body: bytes, payload_type: type[P], stream: str, layout: Topology
) -> tuple[Envelope[P] | None, str]:
    """Decode a message read from `stream`; one published on another workspace's partition
    is rejected (its handler's transaction would span two partitions)."""
    event, reason = decode_envelope(body, payload_type)
    if event is not None and (expected := layout.stream_of(event)) != stream:
        return None, (
            f"published on {stream!r}, but workspace {event.workspace_id!r} belongs to "
            f"{expected!r} (streams are partitioned by workspace)"
        )
    return event, reason


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def tolerant_parse(msg: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream turns an entry without `__data__` into a body by JSON-encoding its fields,
    which raises on non-UTF-8 bytes before our handler runs: the entry would stay pending
    and be reclaimed forever, never dead-lettered. Give it a readable body instead (its
    fields, bytes escaped); that fails validation and is dead-lettered like any bad input."""
    try:
        return await original(msg)
    except (UnicodeDecodeError, TypeError, ValueError):
        fields = msg.get("data") or {}
        readable = {_escaped(k): _escaped(v) for k, v in fields.items()}
        return await original({**msg, "data": {DATA_FIELD.encode(): json.dumps(readable).encode()}})


def _escaped(value: Any) -> str:
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)


def decode_envelope(body: bytes, payload_type: type[P]) -> tuple[Envelope[P] | None, str]:
    """Validate a raw message once; on failure say exactly what was wrong."""
    try:
        event = envelope_class(payload_type).model_validate_json(body)
    except ValidationError as exc:
        declared = _declared_type(body)
        if declared is not None and declared != payload_type.event_type:
            return None, f"type {declared!r} on the stream of {payload_type.event_type}"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:10]
        )
        return None, f"invalid {payload_type.event_type} envelope: {problems}"
    except ValueError as exc:
        return None, f"not a JSON envelope: {exc}"
    if event.type != payload_type.event_type:
        return None, f"type {event.type!r} on the stream of {payload_type.event_type}"
    return event, ""


def _declared_type(body: bytes) -> str | None:
    """The `type` a malformed message claims, to explain a message on the wrong stream."""
    try:
        declared = json.loads(body).get("type")
    except (ValueError, AttributeError):
        return None
    return declared if isinstance(declared, str) else None
