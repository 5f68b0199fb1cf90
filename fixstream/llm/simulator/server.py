"""The simulator's HTTP server: an OpenAI-compatible API with modelled latency, limits and faults.

It is a real aiohttp server so the unmodified ``openai`` client (timeouts, retries, SSE parsing)
is exercised end to end. Waiting is done with a bounded number of ``asyncio.sleep`` calls per
response, so many concurrent streams cost little CPU.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import random
import sys
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any, Literal, NoReturn

import orjson
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fixstream.llm.ratewindow import RateLimiter
from fixstream.llm.simulator.content import (
    ContentGenerator,
    GeneratedContent,
    ScenarioRule,
    embed_text,
    load_scenario,
    prompt_text,
    split_for_stream,
)
from fixstream.llm.simulator.latency import decode_seconds, ttft_seconds
from fixstream.llm.simulator.profiles import ModelProfile, builtin_profiles, load_profiles
from fixstream.tokens import count_prompt_tokens, count_tokens, truncate_to_tokens

log = logging.getLogger("fixstream.llm.simulator")

SIMULATOR_OWNER = "fixstream-simulator"
SIMULATOR_HEADER = "x-fixstream-simulator"

FaultKind = Literal["error_5xx", "hang", "malformed", "truncated", "rate_limit"]
FAULT_KINDS: tuple[FaultKind, ...] = ("error_5xx", "hang", "malformed", "truncated", "rate_limit")
CONTENT_FAULTS: frozenset[str] = frozenset({"malformed", "truncated"})


# --------------------------------------------------------------------------- configuration


class FaultRates(BaseModel):
    """Per-request probability of each fault; one uniform draw picks at most one fault."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_5xx: float = Field(0.0, ge=0, le=1)
    hang: float = Field(0.0, ge=0, le=1)
    malformed: float = Field(0.0, ge=0, le=1)
    truncated: float = Field(0.0, ge=0, le=1)
    rate_limit: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _share_fits(self) -> FaultRates:
        if self.total() > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {self.total():.3f}; the total must be <= 1")
        return self

    def total(self) -> float:
        return sum(getattr(self, k) for k in FAULT_KINDS)

    def draw(self, rng: random.Random) -> FaultKind | None:
        """The fault for one request (or None), from a single draw of ``rng``."""
        if self.total() <= 0.0:
            return None
        x = rng.random()
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, kind)
            if x < edge:
                return kind
        return None


class SimulatorConfig(BaseModel):
    """Everything that shapes the simulator's behaviour; all durations scale with ``time_scale``
    except ``hang_seconds``, which is meant to outlast a real client timeout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profiles: dict[str, ModelProfile] = Field(default_factory=builtin_profiles)
    profiles_path: Path | None = None
    time_scale: float = Field(1.0, gt=0)
    tpm: int | None = Field(None, gt=0)
    rpm: int | None = Field(None, gt=0)
    faults: FaultRates = Field(default_factory=FaultRates)
    hang_seconds: float = Field(30.0, ge=0)
    spurious_retry_after_seconds: float = Field(1.0, gt=0)
    seed: int = 0
    scenario_paths: list[Path] = Field(default_factory=list)
    scenario_rules: list[ScenarioRule] = Field(default_factory=list)
    default_output_tokens: int = Field(200, ge=1)
    embedding_dimensions: int = Field(256, ge=8, le=4096)
    stream_tokens_per_delta: int = Field(3, ge=1)
    max_stream_sleeps: int = Field(50, ge=1)
    batch_window_seconds: float = Field(30.0, ge=0)
    """The batch completion window the simulator models: no batch completes sooner, however
    fast its lines are answered (real OpenAI promises 24 h and is often much faster)."""

    @classmethod
    def from_file(cls, path: str | Path) -> SimulatorConfig:
        """Load a config from YAML (or ``.json``), e.g. for the CLI's ``--config``."""
        p = Path(path)
        raw = p.read_bytes()
        data = orjson.loads(raw) if p.suffix.lower() == ".json" else yaml.safe_load(raw)
        return cls.model_validate(data or {})

    def resolved_profiles(self) -> dict[str, ModelProfile]:
        return load_profiles(self.profiles_path, base=self.profiles)

    def resolved_rules(self) -> list[ScenarioRule]:
        rules = list(self.scenario_rules)
        for path in self.scenario_paths:
            rules.extend(load_scenario(path))
        return rules


# --------------------------------------------------------------------------- stats


@dataclass
class SimulatorStats:
    """Counters of what the simulator served, for tests and benchmark reports."""

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    rate_limited: int = 0
    charged_tokens: int = 0
    """What admitted requests counted against the TPM limit (input + max_tokens)."""
    faults: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    """Batches created through ``POST /v1/batches``."""
    batch_requests: int = 0
    """Lines of those batches that were run (their tokens count in input/output_tokens)."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "rate_limited": self.rate_limited,
            "charged_tokens": self.charged_tokens,
            "faults": dict(self.faults),
            "batches": self.batches,
            "batch_requests": self.batch_requests,
        }


# --------------------------------------------------------------------------- rate limiting


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered with OpenAI's ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> web.Response:
        return _json(self.body(), status=self.status, headers=self.headers)


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def _retry_headers(seconds: float, should_retry: bool = True) -> dict[str, str]:
    return {
        "Retry-After": f"{seconds:.3f}",
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
        "x-should-retry": "true" if should_retry else "false",
    }


# --------------------------------------------------------------------------- app state


@dataclass
class _State:
    config: SimulatorConfig
    profiles: dict[str, ModelProfile]
    content: ContentGenerator
    limiter: RateLimiter
    rng: random.Random
    stats: SimulatorStats = field(default_factory=SimulatorStats)
    ids: count[int] = field(default_factory=lambda: count(1))

    def known_profile(self, name: Any) -> ModelProfile:
        profile = self.profiles.get(name) if isinstance(name, str) else None
        if profile is None:
            known = ", ".join(sorted(self.profiles))
            raise ApiError(
                404,
                f"The model `{name}` does not exist in the fixstream simulator. "
                f"Known models: {known}.",
                code="model_not_found",
                param="model",
            )
        return profile

    def profile(self, name: Any, kind: str) -> ModelProfile:
        profile = self.known_profile(name)
        if profile.kind != kind:
            raise ApiError(
                400,
                f"The model `{name}` is a {profile.kind} model and cannot serve this endpoint.",
                code="model_not_supported",
                param="model",
            )
        return profile

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-sim{next(self.ids):08x}"

    def scaled(self, seconds: float) -> float:
        return seconds * self.config.time_scale


STATE = web.AppKey("fixstream_sim_state", _State)


def _state(request: web.Request) -> _State:
    return request.app[STATE]


# --------------------------------------------------------------------------- middleware/signals


@web.middleware
async def _errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count requests and turn every error into OpenAI's JSON error shape."""
    _state(request).stats.requests += 1
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        return ApiError(
            exc.status, f"{exc.reason}: {request.method} {request.path}", kind
        ).response()


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Stamp every response as simulated, add rate-limit headers, and count status codes."""
    state = request.app[STATE]
    response.headers[SIMULATOR_HEADER] = "1"
    if state.limiter.active:
        response.headers.update(state.limiter.headers(time.monotonic()))
    state.stats.by_status[response.status] += 1
    if response.status == 429:
        state.stats.rate_limited += 1


# --------------------------------------------------------------------------- request helpers


async def _read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ApiError(400, f"Invalid '{key}': expected an integer >= 1.", param=key)
            return value
    return None


def _raise_fault(state: _State, fault: FaultKind) -> NoReturn:
    if fault == "rate_limit":
        wait = state.scaled(state.config.spurious_retry_after_seconds)
        raise ApiError(
            429,
            f"Rate limit reached (simulated fault). Please try again in {wait:.3f}s.",
            type_="rate_limit_exceeded",
            code="rate_limit_exceeded",
            headers=_retry_headers(wait),
        )
    status = state.rng.choice((500, 502, 503))
    raise ApiError(
        status,
        "The server had an error while processing your request (simulated fault).",
        type_="server_error",
        code="server_error",
    )


async def _admit(
    state: _State,
    profile: ModelProfile,
    cost: int,
    content_faults: bool = True,
    limited: bool = True,
) -> FaultKind | None:
    """Draw a fault and apply rate limits (when ``limited``); raises for outright failures,
    returns the rest."""
    fault = state.config.faults.draw(state.rng)
    if fault in CONTENT_FAULTS and not content_faults:
        fault = None
    if fault is not None:
        state.stats.faults[fault] += 1
    if fault in ("error_5xx", "rate_limit"):
        await asyncio.sleep(state.scaled(profile.base_latency_ms / 1000))
        _raise_fault(state, fault)
    if limited and state.limiter.active:
        decision = state.limiter.acquire(cost, time.monotonic())
        if not decision.allowed:
            raise ApiError(
                429,
                f"Rate limit reached for {profile.name} in the fixstream simulator on "
                f"{decision.reason}. Please try again in {decision.retry_after:.3f}s.",
                type_="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers=_retry_headers(decision.retry_after, decision.retryable),
            )
    if fault == "hang":
        await asyncio.sleep(state.config.hang_seconds)
    return fault


def _apply_content_fault(
    generated: GeneratedContent, fault: FaultKind | None, rng: random.Random
) -> GeneratedContent:
    """Break the answer the way real models sometimes do (bad JSON, cut short)."""
    text = generated.content
    if fault == "truncated":
        keep = max(1, count_tokens(text) // 2)
        text = truncate_to_tokens(text, keep)
        return GeneratedContent(text, "length", count_tokens(text), generated.kind)
    if fault != "malformed":
        return generated
    if rng.random() < 0.5 and len(text) >= 2:
        broken = text[: len(text) // 2]
    else:
        mid = len(text) // 2
        broken = text[:mid] + "}" + text[mid:]
    if generated.is_json:
        try:
            orjson.loads(broken)
        except orjson.JSONDecodeError:
            pass
        else:
            broken += "}"  # valid JSON followed by a stray brace never parses
    return GeneratedContent(broken, generated.finish_reason, count_tokens(broken), generated.kind)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


# --------------------------------------------------------------------------- handlers


@dataclass(frozen=True, slots=True)
class _ChatPlan:
    """A chat answer decided but not yet delivered: what to say and when."""

    meta: dict[str, Any]
    generated: GeneratedContent
    input_tokens: int
    first_token_at: float
    decode: float


async def _plan_chat(
    state: _State, body: Mapping[str, Any], started: float, limited: bool = True
) -> _ChatPlan:
    """Validate a chat request, admit it (faults, limits) and generate its answer."""
    loop = asyncio.get_running_loop()
    profile = state.profile(body.get("model"), "chat")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty array.", param="messages")
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise ApiError(400, "'response_format' must be an object.", param="response_format")
    max_tokens = _max_tokens(body)
    input_tokens = count_prompt_tokens(messages, response_format)
    cost = input_tokens + (max_tokens or state.config.default_output_tokens)

    fault = await _admit(state, profile, cost, limited=limited)
    if limited:
        state.stats.charged_tokens += cost
    if fault == "hang":
        started = loop.time()
    generated = state.content.generate(
        model=profile.name,
        prompt=prompt_text(messages),
        response_format=response_format,
        max_tokens=max_tokens,
    )
    generated = _apply_content_fault(generated, fault, state.rng)
    ttft = state.scaled(ttft_seconds(profile, input_tokens)) + generated.delay_seconds
    decode = state.scaled(decode_seconds(profile, generated.output_tokens))
    meta = {
        "id": state.next_id("chatcmpl"),
        "created": int(time.time()),
        "model": profile.name,
        "system_fingerprint": "fp_fixstream_sim",
    }
    return _ChatPlan(meta, generated, input_tokens, started + ttft, decode)


async def _answer_chat(
    state: _State, body: Mapping[str, Any], started: float, limited: bool = True
) -> dict[str, Any]:
    """A non-streamed chat completion, delivered after the modelled latency; raises ApiError."""
    plan = await _plan_chat(state, body, started, limited)
    generated = plan.generated
    await _sleep_until(plan.first_token_at + plan.decode)
    state.stats.input_tokens += plan.input_tokens
    state.stats.output_tokens += generated.output_tokens
    return {
        **plan.meta,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": generated.content, "refusal": None},
                "logprobs": None,
                "finish_reason": generated.finish_reason,
            }
        ],
        "usage": _usage(plan.input_tokens, generated.output_tokens),
    }


async def complete_chat(
    state: _State, body: Mapping[str, Any], limited: bool = True
) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` of a non-streamed chat completion: the answer, or OpenAI's error
    body. Shared by ``/v1/chat/completions`` and the batch lines (which pass ``limited=False``:
    OpenAI queues batches apart from the RPM/TPM limits)."""
    started = asyncio.get_running_loop().time()
    try:
        return 200, await _answer_chat(state, body, started, limited)
    except ApiError as err:
        return err.status, err.body()


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: modelled wait, then a JSON or SSE answer."""
    started = asyncio.get_running_loop().time()
    state = _state(request)
    body = await _read_json(request)
    if not body.get("stream"):
        # raised ApiErrors keep their headers (Retry-After) through the middleware
        return _json(await _answer_chat(state, body, started))
    plan = await _plan_chat(state, body, started)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return await _stream(
        request,
        state,
        plan.meta,
        plan.generated,
        plan.input_tokens,
        plan.first_token_at,
        plan.decode,
        include_usage,
    )


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def _stream(
    request: web.Request,
    state: _State,
    meta: dict[str, Any],
    generated: GeneratedContent,
    input_tokens: int,
    first_token_at: float,
    decode: float,
    include_usage: bool,
) -> web.StreamResponse:
    """SSE answer: first delta at TTFT, the rest spread over the decode time in few writes."""
    cfg = state.config
    head = {**meta, "object": "chat.completion.chunk"}
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "choices": [choice], **extra})

    n_deltas = max(1, math.ceil(generated.output_tokens / cfg.stream_tokens_per_delta))
    deltas = split_for_stream(generated.content, n_deltas)
    groups = min(len(deltas), cfg.max_stream_sleeps)

    await _sleep_until(first_token_at)
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"},
    )
    await response.prepare(request)
    try:
        for g in range(groups):
            lo, hi = len(deltas) * g // groups, len(deltas) * (g + 1) // groups
            payload = b"".join(chunk({"content": d}) for d in deltas[lo:hi])
            if g == 0:
                payload = chunk({"role": "assistant", "content": "", "refusal": None}) + payload
            else:
                await _sleep_until(first_token_at + decode * g / groups)
            await response.write(payload)
        await _sleep_until(first_token_at + decode)
        tail = chunk({}, generated.finish_reason)
        if include_usage:
            usage = _usage(input_tokens, generated.output_tokens)
            tail += _sse({**head, "choices": [], "usage": usage})
        await response.write(tail + b"data: [DONE]\n\n")
        await response.write_eof()
    except ConnectionResetError:
        return response
    state.stats.input_tokens += input_tokens
    state.stats.output_tokens += generated.output_tokens
    return response


def _embedding_inputs(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [" ".join(map(str, raw))]
    if isinstance(raw, list) and raw:
        return [x if isinstance(x, str) else " ".join(map(str, x)) for x in raw]
    raise ApiError(400, "'input' must be a non-empty string or array.", param="input")


def _encode_vector(vec: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format != "base64":
        return vec
    arr = array("f", vec)
    if sys.byteorder != "little":
        arr.byteswap()
    return base64.b64encode(arr.tobytes()).decode()


async def _embeddings(request: web.Request) -> web.Response:
    """``POST /v1/embeddings``: hashed bag-of-features vectors after a prefill-style wait."""
    started = asyncio.get_running_loop().time()
    state = _state(request)
    body = await _read_json(request)
    profile = state.profile(body.get("model"), "embedding")
    texts = _embedding_inputs(body.get("input"))
    dims = body.get("dimensions") or state.config.embedding_dimensions
    if not isinstance(dims, int) or not 8 <= dims <= 4096:
        raise ApiError(400, "'dimensions' must be an integer in [8, 4096].", param="dimensions")
    encoding_format = body.get("encoding_format") or "float"
    input_tokens = sum(count_tokens(t) for t in texts)
    await _admit(state, profile, input_tokens, content_faults=False)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encode_vector(embed_text(t, dims), encoding_format),
        }
        for i, t in enumerate(texts)
    ]
    await _sleep_until(started + state.scaled(ttft_seconds(profile, input_tokens)))
    state.stats.input_tokens += input_tokens
    return _json(
        {
            "object": "list",
            "data": data,
            "model": profile.name,
            "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
        }
    )


async def _models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the configured profiles, clearly owned by the simulator."""
    profiles = _state(request).profiles
    return _json({"object": "list", "data": [_model_entry(p) for p in profiles.values()]})


async def _model(request: web.Request) -> web.Response:
    return _json(_model_entry(_state(request).known_profile(request.match_info["model"])))


def _model_entry(profile: ModelProfile) -> dict[str, Any]:
    return {"id": profile.name, "object": "model", "created": 0, "owned_by": SIMULATOR_OWNER}


async def _stats(request: web.Request) -> web.Response:
    """``GET /v1/simulator/stats``: the counters, for dashboards and benchmark scripts."""
    return _json(_state(request).stats.snapshot())


# --------------------------------------------------------------------------- app and runner


def create_sim_app(config: SimulatorConfig | None = None) -> web.Application:
    """Build the aiohttp application (nothing is bound or started here)."""
    config = config or SimulatorConfig()
    app = web.Application(middlewares=[_errors_middleware], client_max_size=64 * 1024 * 1024)
    app[STATE] = _State(
        config=config,
        profiles=config.resolved_profiles(),
        content=ContentGenerator(
            config.resolved_rules(), config.default_output_tokens, config.seed
        ),
        limiter=RateLimiter(config.rpm, config.tpm, 60.0 * config.time_scale),
        rng=random.Random(config.seed),
    )
    app.on_response_prepare.append(_on_prepare)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_get("/v1/simulator/stats", _stats)
    from fixstream.llm.simulator.batches import add_batch_routes  # it builds on this module

    add_batch_routes(app)
    return app


@dataclass(frozen=True)
class RunningSimulator:
    """A started simulator: where to point the client, and its live counters."""

    host: str
    port: int
    app: web.Application
    config: SimulatorConfig

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def stats(self) -> SimulatorStats:
        return self.app[STATE].stats


def _client_host(host: str) -> str:
    """Where a local client should connect for a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = 1.0,
) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator on ``host:port`` (0 = a free port) for the body of the ``with``."""
    config = config or SimulatorConfig()
    app = create_sim_app(config)
    # Cancelling handlers on disconnect frees hung/abandoned requests right away.
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        running = RunningSimulator(_client_host(host), bound_port, app, config)
        log.info(
            "fixstream LLM SIMULATOR listening on http://%s:%d/v1 (not a real model)",
            host,
            bound_port,
        )
        rules = len(config.resolved_rules())
        if rules:
            log.info(
                "it answers only what its scenarios script (%d rules from %d files); any other"
                " prompt gets an arbitrary schema-valid answer, which fixes no bug",
                rules,
                len(config.scenario_paths),
            )
        else:
            log.warning(
                "no scenario: every answer is arbitrary (schema-valid) and no bug will be fixed;"
                " pass --examples for the bundled examples, or --scenario FILE"
            )
        yield running
    finally:
        await runner.cleanup()


async def serve_forever(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Run the simulator until the task is cancelled (the CLI entry point)."""
    async with run_simulator(config, host, port):
        await asyncio.Event().wait()
