"""Stand-ins for issue 4's check on unseen CLINC150 data, made from dev only.

The check runs `raptorflow eval routing --data <unseen> --memory dev.jsonl`: memory is
dense from the first request, and out-of-scope (novel) requests are a larger share than
dev's 1.1%. Dev alone cannot be replayed that way, so this writes two proxies under
`--out` (default /tmp/raptorflow_unseen_proxy), each a memory file and a data file:

- `oos`: memory = the in-scope rows of dev's first half; data = 4,500 in-scope rows of
  its second half plus dev's 200 out-of-scope rows five times each (1,000 novel rows,
  18%, the share of CLINC150's test part), shuffled.
- `unseen_intents`: memory = dev's first half without 20 random intents; data = dev's
  second half with those intents' rows relabelled novel (1,276 of 9,100 rows): requests
  of a kind memory has never seen, close to ones it has (harder than out-of-scope).

Then, for each proxy and mode:

    .venv/bin/raptorflow eval routing --data /tmp/raptorflow_unseen_proxy/oos/data.jsonl \\
        --memory /tmp/raptorflow_unseen_proxy/oos/memory.jsonl --json --recalibration full
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "clinc150" / "dev.jsonl"


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def oos_proxy(rows: list[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], ...]:
    half = len(rows) // 2
    memory = [r for r in rows[:half] if r["agent_sequence"]]
    in_scope = [r for r in rows[half:] if r["agent_sequence"]]
    novel = [r for r in rows if not r["agent_sequence"]]
    rng = random.Random(seed)
    data = rng.sample(in_scope, 4500) + [
        {**r, "id": f"{r['id']}#{k}"} for r in novel for k in range(5)
    ]
    rng.shuffle(data)
    return memory, data


def unseen_intents_proxy(rows: list[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], ...]:
    intents = sorted({r["intent"] for r in rows if r["agent_sequence"]})
    unseen = set(random.Random(seed).sample(intents, 20))
    half = len(rows) // 2
    memory = [r for r in rows[:half] if r["agent_sequence"] and r["intent"] not in unseen]
    data = [{**r, "agent_sequence": []} if r["intent"] in unseen else r for r in rows[half:]]
    return memory, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--out", type=Path, default=Path("/tmp/raptorflow_unseen_proxy"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.dev.read_text().splitlines() if line.strip()]
    for name, (memory, data) in {
        "oos": oos_proxy(rows, seed=1),
        "unseen_intents": unseen_intents_proxy(rows, seed=0),
    }.items():
        write(args.out / name / "memory.jsonl", memory)
        write(args.out / name / "data.jsonl", data)
        novel = sum(1 for r in data if not r["agent_sequence"])
        print(f"{name}: memory {len(memory)} rows, data {len(data)} rows ({novel} novel)")


if __name__ == "__main__":
    main()
