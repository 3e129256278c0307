"""Metrics, tracing and log context: what every layer may report through.

It may import `shared.contract`, `shared.domain` (the LLM port it instruments) and
`shared.settings`; nothing else.
"""
