"""Outbound calls to URLs a tenant gave: the one guard every such call goes through.

An adapter layer: it may import `shared.settings` only. Webhooks use it today; any
later caller of a tenant's URL (HTTP agents) takes its client from `guarded_client`.
"""
