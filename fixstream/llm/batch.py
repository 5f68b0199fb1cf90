"""A Transport that sends chat calls through OpenAI's Batch API instead of streaming them.

Batch calls cost half as much and do not count against the interactive RPM/TPM limits, but
answer within hours rather than seconds, so only work nobody waits for goes this way. Callers
still see one ``chat(request) -> ChatReply`` each: calls that arrive close together are
collected into one JSONL file, submitted as one batch per model (OpenAI requires a single model
per batch), polled until the batch ends, and each caller gets its own line back.

Errors are typed like ``OpenAITransport``'s and never retried here: the gateway above retries
transient ones (the openai client's own ``max_retries`` covers a flaky poll).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import openai
import orjson
from openai.types import Batch

from fixstream.errors import LLMError, PermanentLLMError, RateLimitedError, TransientLLMError
from fixstream.llm.transport import ChatReply, ChatRequest, translate
from fixstream.tokens import count_prompt_tokens, count_tokens

ENDPOINT = "/v1/chat/completions"
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(eq=False, slots=True)
class _Call:
    """One caller waiting for its line of a batch."""

    custom_id: str
    request: ChatRequest
    future: asyncio.Future[ChatReply]
    started: float


def _body(request: ChatRequest) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body of one line (never streamed: a batch has no stream)."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": list(request.messages),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.response_format is not None:
        body["response_format"] = request.response_format
    return body


def _status_error(status: int, message: str) -> LLMError:
    """A failed line as our error, by the same convention as ``transport.translate``."""
    text = f"HTTP {status}: {message}"
    if status == 429:
        return RateLimitedError(text)
    if status >= 500 or status in (408, 409):
        return TransientLLMError(text)
    return PermanentLLMError(text)


def _as_llm_error(exc: Exception) -> LLMError:
    """openai's exceptions translated; anything else (an unreadable result file, an answer
    of the wrong shape) is worth a retry."""
    translated = translate(exc) if isinstance(exc, openai.OpenAIError) else exc
    if isinstance(translated, LLMError):
        return translated
    return TransientLLMError(f"{type(exc).__name__}: {exc}")


def _clone(exc: LLMError) -> LLMError:
    """A fresh copy per caller: one exception object raised in many tasks shares tracebacks."""
    if isinstance(exc, RateLimitedError):
        copy: LLMError = RateLimitedError(str(exc), exc.retry_after)
    else:
        copy = type(exc)(str(exc))
    copy.__cause__ = exc.__cause__ or exc
    return copy


def _describe_errors(batch: Batch) -> str:
    data = (batch.errors.data if batch.errors else None) or []
    parts = [
        f"line {e.line}: {e.code}: {e.message}" if e.line else f"{e.code}: {e.message}"
        for e in data[:5]
    ]
    return "; ".join(parts) or "no errors reported"


class BatchTransport:
    """Chat calls through the Batch API; see the module docstring for the why.

    ``flush_s``: how long the first pending call waits for others to join its batch.
    ``max_requests``: a batch is sent at once when this many calls are pending.
    ``poll_s``: how often a running batch is polled.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        flush_s: float = 0.5,
        max_requests: int = 1000,
        poll_s: float = 1.0,
        completion_window: str = "24h",
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        self.client = client
        self.flush_s = flush_s
        self.max_requests = max_requests
        self.poll_s = poll_s
        self.completion_window = completion_window
        self.batches_submitted = 0
        """Batches created so far (tests and reports count on it)."""
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]
        self._closed = False

    async def chat(self, request: ChatRequest) -> ChatReply:
        """Queue the call for the next batch and wait for its line of the result."""
        if self._closed:
            raise TransientLLMError("the batch transport is closed")
        call = _Call(
            custom_id=f"fs-{self._prefix}-{next(self._ids)}",
            request=request,
            future=asyncio.get_running_loop().create_future(),
            started=time.perf_counter(),
        )
        self._pending.append(call)
        if len(self._pending) >= self.max_requests:
            if self._flusher is not None:
                self._flusher.cancel()
                self._flusher = None
            self._flush()
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later())
        # a cancelled caller cancels its future; its line is then skipped or its answer dropped
        return await call.future

    async def aclose(self) -> None:
        """Stop flushing and polling; every caller still waiting gets TransientLLMError.

        Batches already submitted keep running on the server; nobody reads their results."""
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        waiting, self._pending = self._pending, []
        self._fail(waiting, TransientLLMError("the batch transport was closed"))
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ collecting

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_s)
        self._flusher = None
        self._flush()

    def _flush(self) -> None:
        """Hand every pending call to batch tasks: one per model and ``max_requests`` lines."""
        calls = [c for c in self._pending if not c.future.done()]
        self._pending = []
        by_model: dict[str, list[_Call]] = {}
        for call in calls:
            by_model.setdefault(call.request.model, []).append(call)
        for group in by_model.values():
            for lo in range(0, len(group), self.max_requests):
                task = asyncio.create_task(self._run(group[lo : lo + self.max_requests]))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    # ------------------------------------------------------------------ one batch

    async def _run(self, calls: Sequence[_Call]) -> None:
        """Submit, wait and resolve one batch; whatever happens, no caller is left waiting."""
        try:
            batch = await self._submit(calls)
            while batch.status not in TERMINAL:
                await asyncio.sleep(self.poll_s)
                batch = await self.client.batches.retrieve(batch.id)
            results = await self._results(batch)
        except asyncio.CancelledError:
            self._fail(calls, TransientLLMError("the batch transport was closed"))
            raise
        except Exception as exc:  # API errors, unreadable files: no caller may wait forever
            error = _as_llm_error(exc)
            if error is not exc:
                error.__cause__ = exc
            self._fail(calls, error)
            return
        unfinished = (
            f"batch {batch.id} ended {batch.status} ({_describe_errors(batch)})"
            if batch.status != "completed"
            else f"batch {batch.id} completed"
        )
        for call in calls:
            line = results.get(call.custom_id)
            if line is None:
                self._fail(
                    [call], TransientLLMError(f"{unfinished} without a result for this call")
                )
                continue
            try:
                reply = self._reply(call, line)
            except LLMError as exc:
                self._fail([call], exc)
            except Exception as exc:  # a line of the wrong shape fails only its own caller
                self._fail([call], TransientLLMError(f"unreadable batch result line: {exc!r}"))
            else:
                if not call.future.done():
                    call.future.set_result(reply)

    async def _submit(self, calls: Sequence[_Call]) -> Batch:
        lines = b"".join(
            orjson.dumps(
                {
                    "custom_id": c.custom_id,
                    "method": "POST",
                    "url": ENDPOINT,
                    "body": _body(c.request),
                }
            )
            + b"\n"
            for c in calls
        )
        name = f"fixstream-{self._prefix}-{self.batches_submitted + 1}.jsonl"
        uploaded = await self.client.files.create(file=(name, lines), purpose="batch")
        batch = await self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window=cast(Literal["24h"], self.completion_window),
        )
        self.batches_submitted += 1
        return batch

    async def _results(self, batch: Batch) -> dict[str, dict[str, Any]]:
        """Every line of the output and error files, by custom_id (partial if the batch
        expired or was cancelled: what was answered is paid for, so it is used)."""
        results: dict[str, dict[str, Any]] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for raw in content.content.splitlines():
                if raw.strip():
                    line = orjson.loads(raw)
                    results[line["custom_id"]] = line
        return results

    @staticmethod
    def _reply(call: _Call, line: dict[str, Any]) -> ChatReply:
        """One result line as a ChatReply, or the typed error its status stands for."""
        response = line.get("response")
        if line.get("error") or not response:
            error = line.get("error") or {}
            raise TransientLLMError(
                f"batch line not executed: {error.get('code')}: {error.get('message')}"
            )
        status = int(response["status_code"])
        body = response.get("body") or {}
        if status >= 400:
            message = (body.get("error") or {}).get("message") or orjson.dumps(body).decode()
            raise _status_error(status, message)
        choice = body["choices"][0]
        content = (choice.get("message") or {}).get("content") or ""
        usage = body.get("usage")
        if usage:
            tokens_in, tokens_out = usage["prompt_tokens"], usage["completion_tokens"]
        else:
            tokens_in = count_prompt_tokens(call.request.messages, call.request.response_format)
            tokens_out = count_tokens(content)
        elapsed = time.perf_counter() - call.started
        return ChatReply(
            content=content,
            finish_reason=choice.get("finish_reason") or "stop",
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            ttft_s=elapsed,  # a batch has no stream: the first token arrives with the last
            total_s=elapsed,
            usage_reported=bool(usage),
        )

    @staticmethod
    def _fail(calls: Sequence[_Call], error: LLMError) -> None:
        for call in calls:
            if not call.future.done():
                call.future.set_exception(_clone(error))
