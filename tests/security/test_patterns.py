"""A tenant's regular expression runs in linear time, bounded, and off the event loop."""

from __future__ import annotations

import asyncio
import time

import pytest
import re2
from pydantic import ValidationError

from shared.domain import patterns
from shared.domain.experiments import Experiment, ExperimentSpec, first_match

CATASTROPHIC = ["(a+)+$", "(a|aa)*b", "(x+x+)+y", "((((a*)*)*)*)*$", "(\\w+\\s?)*$", "(.*a){12}"]


def spec(pattern: str) -> ExperimentSpec:
    return ExperimentSpec(name="x", goal_pattern=pattern, arm_a=["content"], arm_b=["research"])


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_backtracking_bombs_match_a_long_goal_in_linear_time(pattern: str) -> None:
    goal = "a" * 3999 + "!"
    started = time.perf_counter()
    patterns.search(spec(pattern).goal_pattern, goal)
    assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(unclosed", "regular expression"),
        ("(a)\\1", "regular expression"),  # a backreference: not linear, RE2 refuses it
        ("(?=a)b", "regular expression"),  # lookahead likewise
        (".{0,1000}" * 5 + "z", "too complex"),  # linear but 45,000 instructions
        ("a{0,990}z", "too complex"),
        ("a" * (patterns.MAX_PATTERN_LENGTH + 1), "256"),
        ("\ud800", "unicode"),
    ],
)
def test_patterns_that_cannot_run_cheaply_are_refused_with_the_reason(pattern: str, why: str):
    with pytest.raises(ValidationError, match=why):
        spec(pattern)


def test_the_largest_allowed_programs_stay_fast_on_the_longest_goal() -> None:
    goal = "a" * 3999 + "!"
    for pattern in ["a{0,250}z", "(a|aa){0,120}b", "(?:a?){100}a{100}", "[a-z]{1,30}[a-z]{1,30}q"]:
        patterns.check_pattern(pattern)
        started = time.perf_counter()
        patterns.search(pattern, goal)
        assert time.perf_counter() - started < 0.05, pattern


def test_matching_tolerates_text_that_is_not_valid_unicode() -> None:
    assert patterns.search("launch", "\ud800 launch")
    assert not patterns.search("launch", "\ud800")


def test_a_stored_pattern_from_older_rules_still_loads_and_fails_only_when_matched() -> None:
    stored = Experiment.model_validate(
        {
            "name": "old", "goal_pattern": "(a)\\1", "arm_a": ["content"], "arm_b": ["research"],
            "experiment_id": "e1", "workspace_id": "ws",
        }
    )
    with pytest.raises(patterns.PatternError, match="e1"):
        first_match([stored], "aa")
    longer = stored.model_copy(update={"goal_pattern": "a" * 400})  # the old limit was 500
    assert Experiment.model_validate(longer.model_dump()).goal_pattern == "a" * 400
    with pytest.raises(patterns.PatternError, match="256"):
        first_match([longer], "aa")


async def test_re2_releases_the_gil_while_it_matches() -> None:
    """What running the match in a thread relies on: the event loop keeps ticking while RE2
    matches. (A pattern beyond our caps, compiled directly, so one match takes long enough
    to tell; if it held the GIL, the longest gap between ticks would be the whole match.)"""
    slow = re2.compile(".{0,1000}" * 5 + "z", patterns._options())
    goal = "a" * 7999 + "!"
    last = time.perf_counter()
    longest_gap = 0.0

    async def tick() -> None:
        nonlocal last, longest_gap
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest_gap = max(longest_gap, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await asyncio.to_thread(slow.search, goal)
    elapsed = time.perf_counter() - started
    ticker.cancel()
    assert elapsed > 0.05, "the match must take long enough to tell"
    assert longest_gap < elapsed / 3, (longest_gap, elapsed)


def test_a_critique_reply_is_unfenced_in_linear_time() -> None:
    """The reply is partly shaped by a tenant's goal: whitespace runs cost linear time."""
    from shared.domain.critique import _json_object

    assert _json_object('```json\n{"a": 1}\n```') == {"a": 1}
    assert _json_object('```{"a": 1}```') == {"a": 1}
    assert _json_object('Here:\n```\n{"a": [1,\n  2]}\n```\nDone') == {"a": [1, 2]}
    started = time.perf_counter()
    with pytest.raises(ValueError):
        _json_object("{" + " " * 200_000 + "x")
    assert time.perf_counter() - started < 0.2
