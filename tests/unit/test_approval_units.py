"""Pure pieces of issue 7: key rings naming users, who a decision is recorded as,
webhook signatures, and the notifier's retry schedule."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from services.gateway.auth import KeyRing, decider
from services.notifier import logic as notifier
from shared.stores import webhooks


def test_keyring_keeps_old_syntax_and_maps_keys_to_users():
    ring = KeyRing.parse("k1=ws1|ws2, k2=*, k3=ws1:alice|ws2:alice, k4=*:ops")
    assert ring.workspaces_for("k1") == {"ws1", "ws2"}
    assert ring.check("k1", "ws2") is None
    assert ring.check("k2", "anything") is None
    assert ring.check("k3", "ws1") == "alice"
    assert ring.check("k4", "ws9") == "ops"
    with pytest.raises(HTTPException) as denied:
        ring.check("k3", "ws3")
    assert denied.value.status_code == 403
    with pytest.raises(HTTPException) as unknown:
        ring.check("nope", "ws1")
    assert unknown.value.status_code == 401


@pytest.mark.parametrize("spec", ["broken", "k=", "k=ws1:", "k=:alice"])
def test_keyring_rejects_malformed_entries(spec):
    with pytest.raises(ValueError):
        KeyRing.parse(spec)


def test_decision_is_recorded_as_the_keys_user_and_claims_must_match():
    assert decider("alice", None) == "alice"
    assert decider("alice", "alice") == "alice"
    assert decider(None, "bob") == "bob"
    for key_user, claimed, code in (("alice", "mallory", 403), (None, None, 422)):
        with pytest.raises(HTTPException) as refused:
            decider(key_user, claimed)
        assert refused.value.status_code == code


def test_signature_verifies_and_rejects_tampering_wrong_secret_and_stale_timestamps():
    body = b'{"approval_id": "a1"}'
    header = webhooks.sign("s3cret", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert webhooks.verify_signature("s3cret", header, body, 1_700_000_010)
    assert not webhooks.verify_signature("s3cret", header, body + b" ", 1_700_000_010)
    assert not webhooks.verify_signature("other", header, body, 1_700_000_010)
    assert not webhooks.verify_signature("s3cret", header, body, 1_700_000_000 + 301)
    assert not webhooks.verify_signature("s3cret", "garbage", body, 1_700_000_000)


def test_retry_schedule_is_exponential_and_bounded():
    assert [notifier.backoff_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert notifier.backoff_s(30) == notifier.MAX_BACKOFF_S
    assert notifier.verdict(204, 1) == "delivered"
    assert notifier.verdict(500, 1) == "retry"
    assert notifier.verdict(None, 1) == "retry"
    assert notifier.verdict(500, notifier.MAX_ATTEMPTS) == "failed"
