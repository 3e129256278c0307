"""Redis stores shared by several services: approvals, audit, webhooks, experiments.

An adapter layer: it may import `shared.contract`, `shared.domain`, `shared.settings`,
`shared.messaging` and `shared.observability` (approvals publish through the bus).
"""
