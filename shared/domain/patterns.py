"""Regular expressions from tenants, run in linear time (RE2) with bounded cost.

Python's `re` backtracks: `(a+)+$` against 26 `a`s and a `!` takes seconds, and it holds
the GIL, so one tenant's pattern froze every service of the process. RE2 matches in time
linear in the text, rejects what it cannot do in linear time (backreferences, lookaround),
and releases the GIL while it matches, so a caller can run a match in a worker thread
without stopping the event loop.

Linear is not free: RE2's cost is text length times program size (the NFA it falls back
to when its DFA would need more than `MAX_MEMORY`). A 46-character pattern such as
`.{0,1000}` five times compiles to 45,000 instructions and took 0.4 s on a 4,000-character
goal, so the program size is bounded as well as the length.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

MAX_PATTERN_LENGTH = 256
"""Characters in a tenant's pattern."""
MAX_PROGRAM_SIZE = 512
"""RE2 instructions: with 4,000-character goals, a match costs at most ~2 ms."""
MAX_MEMORY = 1 << 20
"""Bytes RE2 may use per compiled pattern (program and DFA cache)."""


class PatternError(ValueError):
    """The pattern is not one RE2 runs, or it is too long or too large."""


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.never_capture = True  # we only ask whether it matches
    options.max_mem = MAX_MEMORY
    options.log_errors = False  # a tenant's bad pattern is a 422, not a line on stderr
    return options


@functools.lru_cache(maxsize=128)
def compile_pattern(pattern: str) -> Any:
    """The compiled case-insensitive pattern; PatternError says why it cannot be used."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled = re2.compile(pattern, _options())
    except UnicodeEncodeError as exc:
        raise PatternError("not valid Unicode (a lone surrogate)") from exc
    except re2.error as exc:
        message = exc.args[0] if exc.args else exc
        text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        raise PatternError(f"not a valid RE2 regular expression: {text}") from exc
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise PatternError(
            f"too complex: compiles to {compiled.programsize} RE2 instructions "
            f"(at most {MAX_PROGRAM_SIZE}); use fewer or smaller counted repetitions"
        )
    return compiled


def check_pattern(pattern: str) -> str:
    """The pattern itself when usable (a pydantic validator), else PatternError."""
    compile_pattern(pattern)
    return pattern


def search(pattern: str, text: str) -> bool:
    """Whether the pattern occurs in the text (case-insensitive), in linear time."""
    compiled = compile_pattern(pattern)
    try:
        return compiled.search(text) is not None
    except UnicodeEncodeError:  # RE2 reads UTF-8: a lone surrogate cannot match anything
        return compiled.search(text.encode("utf-8", "replace").decode()) is not None
