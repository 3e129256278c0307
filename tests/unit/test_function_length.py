"""House rule: no function outside tests/ and bench/ is longer than 60 lines.

Ruff's statement and complexity limits (pyproject.toml) catch most long functions but
not all: a function of few statements can still span a screen. This counts lines, from
the `def` to the last line of the body, over every module of shared/, services/ and
raptorflow/.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("shared", "services", "raptorflow")
MAX_LINES = 60


def long_functions(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """`path:line name (N lines)` for every function longer than `limit` lines."""
    found = []
    for package in CHECKED:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    span = (node.end_lineno or node.lineno) - node.lineno + 1
                    if span > limit:
                        where = path.relative_to(root)
                        found.append(f"{where}:{node.lineno} {node.name} ({span} lines)")
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    assert long_functions() == [], "split these functions:\n" + "\n".join(long_functions())


def test_the_checker_finds_a_long_function(tmp_path: Path) -> None:
    module = tmp_path / "shared" / "long.py"
    module.parent.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    module.write_text(f"def short():\n    return 1\n\n\ndef too_long():\n{body}\n")
    assert long_functions(tmp_path) == ["shared/long.py:5 too_long (61 lines)"]
