"""Which provider a process uses: OpenAI when configured, else the labelled offline one.

It lives apart from both adapters so neither imports the other.
"""

from __future__ import annotations

from shared.domain.llm_port import LLMProvider
from shared.llm.offline import OfflineProvider
from shared.llm.openai_provider import OpenAIProvider
from shared.settings import Settings


def make_provider(settings: Settings) -> LLMProvider:
    """OpenAI when configured (key or base URL), else the labelled offline provider."""
    if settings.wants_openai():
        return OpenAIProvider(settings)
    return OfflineProvider()
