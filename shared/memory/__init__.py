"""The memory read side: past tasks, aggregates, embeddings, vector indexes, the shared pool.

An adapter layer: it may import `shared.contract`, `shared.domain` and `shared.settings`.
Only the memory service writes memory; the other services read it through here.
"""
