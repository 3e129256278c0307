"""Pure decisions: routing, recalibration, the bandit, performance, experiments,
checkpoints, critique, self-correction, the agent catalog, and the LLM port.

What belongs here: logic that can be unit-tested without Redis, a network or `Deps`.
It may import `shared.contract` only (settings arrive as arguments); the LLM is reached through
the `LLMProvider` Protocol in `llm_port`, implemented by the adapters in `shared.llm`.
"""
