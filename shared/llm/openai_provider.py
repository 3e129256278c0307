"""The official `openai` client for any OpenAI-compatible server, as an `LLMProvider`."""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.contract.events import Usage
from shared.domain.llm_port import LLMError, LLMReply, LLMRequest, ToolCall
from shared.settings import Settings

log = logging.getLogger("raptorflow.llm")


def price_per_1k(settings: Settings, model: str) -> tuple[float, float]:
    """USD per 1k (prompt, completion) tokens: the model's row in the table, else the flat pair."""
    table = settings.price_table
    if model in table:
        return table[model]
    prefixes = [name for name in table if model.startswith(name)]
    if prefixes:
        return table[max(prefixes, key=len)]
    return settings.price_per_1k_prompt_usd, settings.price_per_1k_completion_usd


def cost_usd(
    settings: Settings, prompt_tokens: int, completion_tokens: int, model: str | None = None
) -> float:
    prompt_price, completion_price = price_per_1k(settings, model or settings.llm_model)
    return round(
        prompt_tokens / 1000 * prompt_price + completion_tokens / 1000 * completion_price, 8
    )


def plain_json_instructions(schema: dict[str, Any]) -> str:
    """What replaces `response_format` for a server without structured outputs."""
    return (
        "\n\nAnswer with exactly one JSON object and nothing else (no prose, no code fences). "
        f"It must match this JSON schema: {json.dumps(schema, separators=(',', ':'))}"
    )


def _tool_calls(message: Any) -> list[ToolCall]:
    """The function calls of an assistant message; unparsable arguments are passed as text."""
    calls: list[ToolCall] = []
    for call in getattr(message, "tool_calls", None) or []:
        function = getattr(call, "function", None)
        if function is None:
            continue
        try:
            arguments = json.loads(function.arguments or "{}")
        except json.JSONDecodeError:
            arguments = {"query": str(function.arguments)[:4000]}
        if not isinstance(arguments, dict):
            arguments = {"query": json.dumps(arguments)[:4000]}
        calls.append(ToolCall(id=call.id, name=function.name, arguments=arguments))
    return calls


def _estimate_tokens(text: str) -> int:
    """For servers that omit `usage`: about 4 characters per token, so budgets still count."""
    return max(1, len(text) // 4)


class OpenAIProvider:
    """Chat completions through the official client.

    Timeouts and retries (with backoff, honouring `retry-after`) are the client's own,
    set from settings. Structured outputs (`response_format` json_schema) are used until
    the server rejects them once with 400/422; from then on this instance asks for JSON
    in the prompt instead, and the caller validates (with its one repair attempt).
    """

    name = "openai"

    def __init__(self, settings: Settings):
        from openai import AsyncOpenAI

        self.settings = settings
        self.model = settings.llm_model
        self.structured_outputs = True
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
        self.client = AsyncOpenAI(
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    async def complete(self, request: LLMRequest) -> LLMReply:
        import openai

        structured = request.json_schema is not None and self.structured_outputs
        log.debug(
            "llm call purpose=%s model=%s structured=%s", request.purpose, self.model, structured
        )
        try:
            try:
                response = await self._create(request, structured=structured)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if not structured:
                    raise
                log.warning(
                    "server rejected structured outputs (%s); asking for JSON in the prompt", exc
                )
                response = await self._create(request, structured=False)
                self.structured_outputs = False
        except openai.APIError as exc:
            raise LLMError(self._failure(request, exc)) from exc
        message = response.choices[0].message if response.choices else None
        text = (message.content or "") if message is not None else ""
        calls = _tool_calls(message) if request.tools else []
        if response.usage is not None:
            prompt_tokens = response.usage.prompt_tokens
            completion_tokens = response.usage.completion_tokens
        else:
            prompt_tokens = _estimate_tokens(request.system + request.user)
            completion_tokens = _estimate_tokens(text)
        usage = Usage(
            api_calls=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd(self.settings, prompt_tokens, completion_tokens, self.model),
        )
        return LLMReply(
            text=text, usage=usage, provider=self.name, model=self.model, tool_calls=calls
        )

    async def _create(self, request: LLMRequest, *, structured: bool) -> Any:
        kwargs: dict[str, Any] = {}
        system = request.system
        if structured and request.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": request.json_schema,
                    "strict": False,
                },
            }
        elif request.json_schema is not None:
            system += plain_json_instructions(request.json_schema)
        if request.tools:
            kwargs["tools"] = [
                {"type": "function", "function": tool.model_dump()} for tool in request.tools
            ]
        messages: list[Any] = [
            {"role": "system", "content": system},
            {"role": "user", "content": request.user},
            *request.history,
        ]
        return await self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            max_tokens=request.max_tokens,
            **kwargs,
        )

    def _failure(self, request: LLMRequest, exc: Exception) -> str:
        """A message that names the LLM call, the server and what went wrong."""
        import openai

        status = f" HTTP {exc.status_code}" if isinstance(exc, openai.APIStatusError) else ""
        where = self.settings.openai_base_url or "api.openai.com"
        return (
            f"LLM {request.purpose} call to model {self.model} at {where} failed "
            f"(client retries: {self.settings.llm_max_retries}):{status} "
            f"{type(exc).__name__}: {exc}"
        )

    async def close(self) -> None:
        await self.client.close()
