"""Schemathesis against the gateway's OpenAPI, in-process over ASGI: no input gives a 5xx.

The app builds its own deps in its lifespan (schemathesis runs it on its own event
loop) against a redis-server of this test's own, so the tasks the fuzzer submits never
reach the services of other tests through the shared session Redis. A wildcard key is
sent so the handlers behind the auth check are reached.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from raptorflow.redis_server import RedisServer
from services.gateway.app import create_app
from tests.helpers import settings_for

pytestmark = [pytest.mark.slow]

KEY = "fuzz-key"
# Bounded for CI; raise it (e.g. RAPTORFLOW_FUZZ_EXAMPLES=200) to hunt harder.
EXAMPLES_PER_OPERATION = int(os.environ.get("RAPTORFLOW_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_no_input_makes_the_gateway_fail_with_a_5xx(own_redis: RedisServer) -> None:
    """Every operation, a bounded number of generated cases each; all failures reported."""
    app = create_app(settings_for(own_redis.url, api_keys=f"{KEY}=*"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            response = case.call_and_validate(
                headers={"X-API-Key": KEY}, checks=[not_a_server_error]
            )
            statuses[response.status_code] += 1

        try:
            fuzz()
        except Exception as exc:  # collect, so one run shows every failing operation
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    assert operations >= 15, "the whole API was fuzzed"
    assert sum(n for code, n in statuses.items() if code < 300) > 0, statuses  # reached handlers
    print(f"{operations} operations, responses by status: {dict(sorted(statuses.items()))}")
    assert failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
