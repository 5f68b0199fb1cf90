"""The wire under the gateway: one streamed chat call, with typed errors.

The gateway's retries, limits and re-asks sit above this protocol, so unit tests drive the
real gateway with a scripted transport and integration tests with the real OpenAI client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
import orjson

from fixstream.errors import PermanentLLMError, RateLimitedError, TransientLLMError
from fixstream.tokens import count_prompt_tokens, count_tokens

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: Sequence[Message]
    max_tokens: int = 1024
    temperature: float = 0.0
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ChatReply:
    content: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    ttft_s: float
    total_s: float
    usage_reported: bool = True


class ChatTransport(Protocol):
    async def chat(self, request: ChatRequest) -> ChatReply: ...


class Transport(ChatTransport, Protocol):
    """Chat and embeddings: what the gateway's interactive calls and semantic cache use."""

    async def embed(self, model: str, text: str) -> list[float]: ...


def _retry_after(response: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (the headers OpenAI sends)."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def translate(exc: Exception) -> Exception:
    """openai's exceptions as ours: retryable or not is decided here, once."""
    if isinstance(exc, openai.RateLimitError):
        return RateLimitedError(str(exc), _retry_after(exc.response))
    if isinstance(exc, openai.APITimeoutError):
        return TransientLLMError(f"timed out: {exc}")
    if isinstance(exc, openai.APIConnectionError):
        return TransientLLMError(f"connection failed: {exc}")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return TransientLLMError(f"HTTP {exc.status_code}: {exc.message}")
        return PermanentLLMError(f"HTTP {exc.status_code}: {exc.message}")
    return exc


class OpenAITransport:
    """Any OpenAI-compatible endpoint, always streamed so time to first token is measured.

    The openai client sends the request and maps error statuses to exceptions; the SSE
    lines are parsed here with orjson, because building the client's pydantic object for
    every chunk cost more CPU than everything else together (profiled: 60% at 64 calls).
    """

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def chat(self, request: ChatRequest) -> ChatReply:
        started = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        finish = "stop"
        usage: dict[str, Any] | None = None
        extra: dict[str, Any] = {}
        if request.response_format is not None:
            extra["response_format"] = request.response_format
        try:
            async with self.client.chat.completions.with_streaming_response.create(
                model=request.model,
                messages=list(request.messages),  # type: ignore[arg-type]
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                stream=True,
                stream_options={"include_usage": True},
                **extra,
            ) as response:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = orjson.loads(data)
                    if chunk.get("error"):
                        raise TransientLLMError(f"error inside the stream: {chunk['error']}")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if ttft is None:
                                ttft = time.perf_counter() - started
                            parts.append(content)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except openai.OpenAIError as exc:
            raise translate(exc) from exc
        except orjson.JSONDecodeError as exc:
            raise TransientLLMError(f"unreadable stream chunk: {exc}") from exc
        total = time.perf_counter() - started
        content = "".join(parts)
        if usage is not None:
            tokens_in, tokens_out = usage["prompt_tokens"], usage["completion_tokens"]
        else:  # some servers do not report usage when streaming: count it ourselves
            tokens_in = count_prompt_tokens(request.messages, request.response_format)
            tokens_out = count_tokens(content)
        return ChatReply(
            content=content,
            finish_reason=finish,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            ttft_s=ttft if ttft is not None else total,
            total_s=total,
            usage_reported=usage is not None,
        )

    async def embed(self, model: str, text: str) -> list[float]:
        try:
            response = await self.client.embeddings.create(model=model, input=text)
        except openai.OpenAIError as exc:
            raise translate(exc) from exc
        return list(response.data[0].embedding)


Script = Callable[[ChatRequest], "str | Exception"]


@dataclass
class ScriptedTransport:
    """A deterministic fake model: each call takes the next answer (or raises the next error).

    Ships in the package (not the tests) so any stage can be unit-tested with the real gateway
    and no network.
    """

    answers: list[str | Exception] = field(default_factory=list)
    script: Script | None = None
    requests: list[ChatRequest] = field(default_factory=list)
    embedded: list[str] = field(default_factory=list)

    async def chat(self, request: ChatRequest) -> ChatReply:
        self.requests.append(request)
        if self.script is not None:
            answer = self.script(request)
        elif self.answers:
            answer = self.answers.pop(0)
        else:
            raise AssertionError("ScriptedTransport has no answer left")
        if isinstance(answer, Exception):
            raise answer
        return ChatReply(
            content=answer,
            finish_reason="stop",
            input_tokens=count_prompt_tokens(request.messages, request.response_format),
            output_tokens=count_tokens(answer),
            ttft_s=0.0,
            total_s=0.0,
        )

    async def embed(self, model: str, text: str) -> list[float]:
        """The simulator's offline embedding: near-duplicate texts land close together."""
        from fixstream.llm.simulator.content import embed_text

        self.embedded.append(text)
        return embed_text(text)
