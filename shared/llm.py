"""LLM access: the official `openai` client for any OpenAI-compatible server, or offline.

The offline provider answers deterministically without any network and labels
everything it produces `provider: "offline"`.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from shared.events import Usage
from shared.settings import Settings

Purpose = Literal["generate", "critique", "revise", "plan"]
OFFLINE = "offline"

log = logging.getLogger("raptorflow.llm")


class LLMRequest(BaseModel):
    """One chat call. `facts` carries the structured inputs a deterministic provider needs."""

    purpose: Purpose
    system: str
    user: str
    json_schema: dict[str, Any] | None = Field(default=None, description="Ask for this JSON.")
    schema_name: str = "answer"
    facts: dict[str, Any] = Field(default_factory=dict)
    max_tokens: int = 1200


class LLMReply(BaseModel):
    text: str
    usage: Usage
    provider: str
    model: str


class LLMError(RuntimeError):
    """The LLM could not answer after the client's retries."""


class LLMProvider(Protocol):
    name: str
    model: str

    async def complete(self, request: LLMRequest) -> LLMReply: ...


def cost_usd(settings: Settings, prompt_tokens: int, completion_tokens: int) -> float:
    return round(
        prompt_tokens / 1000 * settings.price_per_1k_prompt_usd
        + completion_tokens / 1000 * settings.price_per_1k_completion_usd,
        8,
    )


class OpenAIProvider:
    """Chat completions through the official client (timeouts and retries are the client's)."""

    name = "openai"

    def __init__(self, settings: Settings):
        from openai import AsyncOpenAI

        self.settings = settings
        self.model = settings.llm_model
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
        self.client = AsyncOpenAI(
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    async def complete(self, request: LLMRequest) -> LLMReply:
        import openai

        kwargs: dict[str, Any] = {}
        if request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.json_schema,
                    "strict": False,
                },
            }
        log.debug("llm call purpose=%s model=%s", request.purpose, self.model)
        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.user},
                ],
                max_tokens=request.max_tokens,
                **kwargs,
            )
        except openai.APIError as exc:
            raise LLMError(f"{request.purpose} call failed: {type(exc).__name__}: {exc}") from exc
        text = response.choices[0].message.content or "" if response.choices else ""
        prompt_tokens = response.usage.prompt_tokens if response.usage else 0
        completion_tokens = response.usage.completion_tokens if response.usage else 0
        usage = Usage(
            api_calls=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd(self.settings, prompt_tokens, completion_tokens),
        )
        return LLMReply(text=text, usage=usage, provider=self.name, model=self.model)

    async def close(self) -> None:
        await self.client.close()


def make_provider(settings: Settings) -> LLMProvider:
    """OpenAI when configured (key or base URL), else the labelled offline provider."""
    if settings.wants_openai():
        return OpenAIProvider(settings)
    from shared.offline_llm import OfflineProvider

    return OfflineProvider()
