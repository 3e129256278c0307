"""LLM adapters behind `shared.domain.llm_port.LLMProvider`: OpenAI, offline, and the factory.

An adapter layer: it may import `shared.contract`, `shared.domain` and `shared.settings`.
`factory` picks one, so the two providers never import each other.
"""
