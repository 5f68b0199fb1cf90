"""The simulator's Files and Batch APIs: the subset the official ``openai`` client uses.

A batch is validated like OpenAI validates one (a bad input file ends ``failed`` with
``errors.data``, not an HTTP error), then every line is answered concurrently by the same code
as a non-streamed ``/v1/chat/completions`` call: same content, same latency model, same faults,
but not under the RPM/TPM limiter, since OpenAI queues batches apart from interactive traffic.
A batch never completes before ``batch_window_seconds`` (scaled) so callers see a realistic wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from fixstream.llm.simulator.server import (
    ApiError,
    _json,
    _read_json,
    _sleep_until,
    _State,
    _state,
    complete_chat,
)

log = logging.getLogger("fixstream.llm.simulator")

ENDPOINTS: frozenset[str] = frozenset({"/v1/chat/completions"})
"""Endpoints the simulator batches; OpenAI accepts more (embeddings, responses, ...)."""
COMPLETION_WINDOWS: frozenset[str] = frozenset({"24h"})
MAX_BATCH_REQUESTS = 50_000
MAX_LISTED_ERRORS = 100
FILE_PURPOSES: frozenset[str] = frozenset(
    {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
)
ACTIVE: frozenset[str] = frozenset({"validating", "in_progress", "finalizing"})
DAY_S = 86_400


def _now() -> int:
    return int(time.time())


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": self.created_at + 30 * DAY_S if self.purpose == "batch" else None,
        }


@dataclass(eq=False)
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    started: float
    """Loop time at creation: the completion window counts from here."""
    status: str = "validating"
    model: str | None = None
    at: dict[str, int] = field(default_factory=dict)
    """``in_progress_at``, ``completed_at``, ...: when each status was entered."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Answered lines by their index in the input file (finished ones only)."""
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    task: asyncio.Task[None] | None = None

    def enter(self, status: str) -> None:
        self.status = status
        self.at[f"{status}_at"] = _now()

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + DAY_S,
            **{
                key: self.at.get(key)
                for key in (
                    "in_progress_at",
                    "finalizing_at",
                    "completed_at",
                    "failed_at",
                    "expired_at",
                    "cancelling_at",
                    "cancelled_at",
                )
            },
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
            "metadata": self.metadata,
        }


@dataclass
class BatchStore:
    """Uploaded and generated files, batches, and the tasks running them (kept referenced so
    they are not garbage-collected mid-run, and cancelled on app cleanup)."""

    files: dict[str, _File] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def file(self, file_id: str) -> _File:
        found = self.files.get(file_id)
        if found is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return found

    def batch(self, batch_id: str) -> _Batch:
        found = self.batches.get(batch_id)
        if found is None:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return found

    def add_file(self, state: _State, filename: str, purpose: str, data: bytes) -> _File:
        new = _File(state.next_id("file"), filename, purpose, data, _now())
        self.files[new.id] = new
        return new


BATCHES = web.AppKey("fixstream_sim_batches", BatchStore)


def _store(request: web.Request) -> BatchStore:
    return request.app[BATCHES]


# --------------------------------------------------------------------------- files


async def _upload_file(request: web.Request) -> web.Response:
    """``POST /v1/files``: multipart ``purpose`` and ``file``, read without blocking."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "Files must be uploaded as multipart/form-data.")
    purpose: str | None = None
    data: bytes | None = None
    filename = "upload"
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = await part.text()
        elif part.name == "file":
            filename = part.filename or filename
            data = bytes(await part.read(decode=True))
    if data is None:
        raise ApiError(400, "Missing required parameter: 'file'.", param="file")
    if purpose not in FILE_PURPOSES:
        known = ", ".join(sorted(FILE_PURPOSES))
        raise ApiError(
            400, f"Invalid 'purpose': {purpose!r}; expected one of {known}.", param="purpose"
        )
    stored = _store(request).add_file(_state(request), filename, purpose, data)
    return _json(stored.obj())


async def _retrieve_file(request: web.Request) -> web.Response:
    return _json(_store(request).file(request.match_info["file_id"]).obj())


async def _file_content(request: web.Request) -> web.Response:
    stored = _store(request).file(request.match_info["file_id"])
    return web.Response(body=stored.data, content_type="application/octet-stream")


async def _delete_file(request: web.Request) -> web.Response:
    store = _store(request)
    stored = store.file(request.match_info["file_id"])
    del store.files[stored.id]
    return _json({"id": stored.id, "object": "file", "deleted": True})


async def _list_files(request: web.Request) -> web.Response:
    purpose = request.query.get("purpose")
    files = [f.obj() for f in _store(request).files.values() if purpose in (None, f.purpose)]
    return _json({"object": "list", "data": files[::-1], "has_more": False})


# --------------------------------------------------------------------------- validation


def _validate(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The input file's requests, or the errors OpenAI would list for it (1-based lines)."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()

    def error(code: str, message: str, line: int | None, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": line})

    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            error("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        if not isinstance(item, dict):
            error("invalid_json_line", "Each line must be a JSON object.", number)
            continue
        before = len(errors)
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            error(
                "missing_required_parameter",
                "Each request needs a non-empty string 'custom_id'.",
                number,
                "custom_id",
            )
        elif custom_id in seen:
            error(
                "duplicate_custom_id",
                "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch.",
                number,
                "custom_id",
            )
        else:
            seen.add(custom_id)
        if item.get("method") != "POST":
            error("invalid_method", "The 'method' of each request must be POST.", number, "method")
        if item.get("url") != endpoint:
            error(
                "mismatched_endpoint",
                f"The 'url' of this request does not match the batch endpoint {endpoint}.",
                number,
                "url",
            )
        body = item.get("body")
        if not isinstance(body, dict):
            error("missing_required_parameter", "'body' must be a JSON object.", number, "body")
        elif not isinstance(body.get("model"), str):
            error("missing_required_parameter", "'body.model' is required.", number, "body.model")
        else:
            models.add(body["model"])
        if len(errors) == before:
            lines.append(item)
    if not lines and not errors:
        error("empty_file", "The input file contains no requests.", None)
    if len(models) > 1:
        error(
            "mismatched_model",
            f"All requests in a batch must use the same model; found {', '.join(sorted(models))}.",
            None,
            "body.model",
        )
    if len(lines) > MAX_BATCH_REQUESTS:
        error(
            "too_many_requests",
            f"A batch may hold at most {MAX_BATCH_REQUESTS} requests; this one has {len(lines)}.",
            None,
        )
    return (lines, []) if not errors else ([], errors[:MAX_LISTED_ERRORS])


# --------------------------------------------------------------------------- processing


async def _run_line(state: _State, batch: _Batch, index: int, line: Mapping[str, Any]) -> None:
    """Answer one line exactly as a non-streamed chat call would be, minus the limiter."""
    state.stats.batch_requests += 1
    body = line["body"]
    if body.get("stream"):
        status, payload = 400, ApiError(400, "Batch requests cannot stream.", param="stream").body()
    else:
        try:
            status, payload = await complete_chat(state, body, limited=False)
        except Exception:  # one broken line must not take the whole batch down
            log.exception("simulator: batch %s line %d failed", batch.id, index + 1)
            status, payload = 500, ApiError(500, "Internal simulator error.", "server_error").body()
    batch.results[index] = {
        "id": state.next_id("batch_req").replace("-", "_"),
        "custom_id": line["custom_id"],
        "response": {
            "status_code": status,
            "request_id": state.next_id("req").replace("-", "_"),
            "body": payload,
        },
        "error": None,
    }
    if status < 400:
        batch.completed += 1
        usage = payload.get("usage") or {}
        batch.input_tokens += usage.get("prompt_tokens", 0)
        batch.output_tokens += usage.get("completion_tokens", 0)
    else:
        batch.failed += 1


async def _run(state: _State, store: BatchStore, batch: _Batch, data: bytes) -> None:
    """validating -> in_progress -> finalizing -> completed (or failed)."""
    lines, errors = _validate(data, batch.endpoint)
    if errors:
        batch.errors = errors
        batch.enter("failed")
        return
    batch.model = lines[0]["body"]["model"]
    batch.total = len(lines)
    batch.enter("in_progress")
    window_ends = batch.started + state.scaled(state.config.batch_window_seconds)
    async with asyncio.TaskGroup() as group:
        group.create_task(_sleep_until(window_ends))
        for index, line in enumerate(lines):
            group.create_task(_run_line(state, batch, index, line))
    batch.enter("finalizing")
    _write_results(state, store, batch)
    batch.enter("completed")


def _write_results(state: _State, store: BatchStore, batch: _Batch) -> None:
    """Successes to the output file, error statuses to the error file (in input order)."""
    ok: list[bytes] = []
    bad: list[bytes] = []
    for _, result in sorted(batch.results.items()):
        target = ok if result["response"]["status_code"] < 400 else bad
        target.append(orjson.dumps(result) + b"\n")
    if ok:
        output = store.add_file(state, f"{batch.id}_output.jsonl", "batch_output", b"".join(ok))
        batch.output_file_id = output.id
    if bad:
        error = store.add_file(state, f"{batch.id}_error.jsonl", "batch_output", b"".join(bad))
        batch.error_file_id = error.id


def _settled(
    state: _State, store: BatchStore, batch: _Batch
) -> Callable[[asyncio.Task[None]], None]:
    """When the batch's task ends: finish a cancellation (even one that came before the task
    started), and turn a simulator bug into a failed batch instead of a silent hang."""

    def done(task: asyncio.Task[None]) -> None:
        store.tasks.discard(task)
        if batch.status == "cancelling":
            _write_results(state, store, batch)  # what finished before the cancel is kept
            batch.enter("cancelled")
        elif not task.cancelled() and (exc := task.exception()) is not None:
            log.error("simulator: batch %s crashed", batch.id, exc_info=exc)
            batch.errors = [
                {"code": "server_error", "message": str(exc), "param": None, "line": None}
            ]
            batch.enter("failed")

    return done


# --------------------------------------------------------------------------- batch handlers


async def _create_batch(request: web.Request) -> web.Response:
    """``POST /v1/batches``: answered at once with ``validating``; the work runs in a task."""
    state, store = _state(request), _store(request)
    body = await _read_json(request)
    input_file_id = body.get("input_file_id")
    if not isinstance(input_file_id, str) or not input_file_id:
        raise ApiError(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise ApiError(
            400,
            f"Invalid 'endpoint': {endpoint!r}. The simulator batches only "
            f"{', '.join(sorted(ENDPOINTS))}.",
            param="endpoint",
        )
    window = body.get("completion_window")
    if window not in COMPLETION_WINDOWS:
        raise ApiError(
            400, f"Invalid 'completion_window': {window!r}; only '24h' is supported.",
            param="completion_window",
        )  # fmt: skip
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise ApiError(400, "'metadata' must map at most 16 strings to strings.", param="metadata")
    source = store.file(input_file_id)
    if source.purpose != "batch":
        raise ApiError(
            400, f"File {source.id} was uploaded with purpose {source.purpose!r}, not 'batch'.",
            param="input_file_id",
        )  # fmt: skip
    batch = _Batch(
        id=f"batch_sim{next(state.ids):08x}",
        input_file_id=source.id,
        endpoint=endpoint,
        completion_window=window,
        metadata=metadata,
        created_at=_now(),
        started=asyncio.get_running_loop().time(),
    )
    state.stats.batches += 1
    store.batches[batch.id] = batch
    batch.task = asyncio.create_task(_run(state, store, batch, source.data), name=batch.id)
    store.tasks.add(batch.task)
    batch.task.add_done_callback(_settled(state, store, batch))
    return _json(batch.obj())


async def _retrieve_batch(request: web.Request) -> web.Response:
    return _json(_store(request).batch(request.match_info["batch_id"]).obj())


async def _cancel_batch(request: web.Request) -> web.Response:
    """``POST /v1/batches/{id}/cancel``: ``cancelling`` now, ``cancelled`` once the lines stop."""
    batch = _store(request).batch(request.match_info["batch_id"])
    if batch.status in ACTIVE:
        batch.enter("cancelling")
        if batch.task is not None:
            batch.task.cancel()
    elif batch.status not in ("cancelling", "cancelled"):
        raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.")
    return _json(batch.obj())


async def _list_batches(request: web.Request) -> web.Response:
    """``GET /v1/batches``: newest first, with OpenAI's ``after``/``limit`` cursor."""
    batches = list(_store(request).batches.values())[::-1]
    after = request.query.get("after")
    if after is not None:
        ids = [b.id for b in batches]
        batches = batches[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise ApiError(400, "'limit' must be an integer.", param="limit") from None
    if not 1 <= limit <= 100:
        raise ApiError(400, "'limit' must be between 1 and 100.", param="limit")
    page = [b.obj() for b in batches[:limit]]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(batches) > limit,
        }
    )


async def _cleanup(app: web.Application) -> None:
    """Stop every running batch when the server stops (hung lines would otherwise linger)."""
    tasks = list(app[BATCHES].tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def add_batch_routes(app: web.Application) -> None:
    """Register the Files and Batches endpoints and their store on a simulator app."""
    app[BATCHES] = BatchStore()
    app.on_cleanup.append(_cleanup)
    app.router.add_post("/v1/files", _upload_file)
    app.router.add_get("/v1/files", _list_files)
    app.router.add_get("/v1/files/{file_id}", _retrieve_file)
    app.router.add_get("/v1/files/{file_id}/content", _file_content)
    app.router.add_delete("/v1/files/{file_id}", _delete_file)
    app.router.add_post("/v1/batches", _create_batch)
    app.router.add_get("/v1/batches", _list_batches)
    app.router.add_get("/v1/batches/{batch_id}", _retrieve_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", _cancel_batch)
