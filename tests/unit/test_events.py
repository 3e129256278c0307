import json

from shared.contract.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    SequenceChosen,
    TaskRequested,
    envelope_json_schema,
    new_envelope,
)
from shared.messaging.codec import decode_envelope
from shared.messaging.consumer import retry_backoff_s
from tests.helpers import PLAIN


def test_the_four_known_events_exist():
    for name in ("TaskRequested", "SequenceChosen", "CritiqueDone", "ApprovalNeeded"):
        assert name in EVENT_TYPES


def test_follow_keeps_the_chain_and_is_deterministic():
    first = new_envelope(TaskRequested(goal="g"), workspace_id="w")
    payload = TaskRequested(goal="next")
    a, b = first.follow(payload), first.follow(payload)
    assert a.event_id == b.event_id
    assert a.causation_id == first.event_id and a.correlation_id == first.correlation_id
    assert first.follow(payload, key="2").event_id != a.event_id


def test_envelope_round_trips_and_names_its_fields():
    event = new_envelope(TaskRequested(goal="Create a blog post"), workspace_id="w", user_id="u")
    decoded, reason = decode_envelope(event.model_dump_json().encode(), TaskRequested)
    assert reason == "" and decoded == event
    for field in (
        "event_id",
        "type",
        "schema_version",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "workspace_id",
        "user_id",
        "context",
        "payload",
    ):
        assert field in json.loads(event.model_dump_json())


def test_bad_messages_are_explained():
    good = json.loads(new_envelope(TaskRequested(goal="g"), workspace_id="w").model_dump_json())
    cases = {
        b"not json": "invalid TaskRequested envelope",
        json.dumps({**good, "schema_version": 99}).encode(): "unsupported schema_version",
        json.dumps({k: v for k, v in good.items() if k != "payload"}).encode(): "payload",
        json.dumps({**good, "payload": {"goal": 5}}).encode(): "payload.goal",
        json.dumps({**good, "type": "SequenceChosen"}).encode(): "on the stream of TaskRequested",
    }
    for body, expected in cases.items():
        event, reason = decode_envelope(body, TaskRequested)
        assert event is None and expected in reason, (body, reason)


def test_json_schema_covers_every_event_and_version():
    schema = envelope_json_schema()
    assert len(schema["oneOf"]) == len(EVENT_TYPES)
    assert str(SCHEMA_VERSION) in schema["description"]
    task = schema["$defs"]["Envelope_TaskRequested_"]
    assert {"correlation_id", "workspace_id", "payload"} <= set(task["required"])


def test_retry_backoff_grows_and_is_capped():
    assert retry_backoff_s(1) < retry_backoff_s(4) < retry_backoff_s(6)
    assert retry_backoff_s(100) == 30.0


def test_sequence_chosen_stream_name():
    assert PLAIN.stream(SequenceChosen.event_type) == "rf:stream:SequenceChosen"


def test_dead_letter_needs_real_failures_or_far_too_many_deliveries():
    from shared.messaging.consumer import should_dead_letter

    assert should_dead_letter(failures=5, deliveries=6, max_deliveries=5)
    assert not should_dead_letter(failures=0, deliveries=6, max_deliveries=5)
    assert should_dead_letter(failures=0, deliveries=16, max_deliveries=5)
