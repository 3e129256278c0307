"""The bus: subscriptions, the per-message and batched consume paths, the codec,
deliveries, the recorded writes, the Redis and cluster client, dead letters.

An adapter layer: it may import `shared.contract`, `shared.settings` and
`shared.observability`; nothing here knows what a handler decides.
"""
