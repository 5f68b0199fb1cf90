"""The caches across real workers sharing a real Redis: a repeated bug costs no LLM call, a
near-duplicate report reuses a summary, a new commit misses, and a crashed stage's re-run
gets back the calls that had completed."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from conftest import EXAMPLES, read_until

from fixstream.cache import Cache, CacheStats
from fixstream.cache.backends import RedisBackend
from fixstream.config import Settings
from fixstream.kafka import producer, publish
from fixstream.reports import report_from_file
from fixstream.schemas import BugReport, FixEvent
from fixstream.telemetry import read_spans
from fixstream.worker import WorkerProcess

pytestmark = pytest.mark.integration
EXAMPLE = "off_by_one"


def _report(repo: Path, bug_id: str, **changes: object) -> BugReport:
    report = report_from_file(EXAMPLES / EXAMPLE / "report.json", bug_id)
    return report.model_copy(
        update={"repo": report.repo.model_copy(update={"path": str(repo)}), **changes}
    )


def _repo_copy(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLES / EXAMPLE / "repo", target)
    return target


def _shared(settings: Settings, redis_url: str, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"redis_url": redis_url, "trace_dir": tmp_path / "trace"})


def _worker(settings: Settings, tmp_path: Path, name: str) -> WorkerProcess:
    worker = WorkerProcess(settings, tmp_path / f"{name}.log", FIXSTREAM_CACHE="redis")
    worker.wait_ready()
    return worker


def _submit(settings: Settings, *reports: BugReport) -> None:
    async def send() -> None:
        async with producer(settings) as client:
            for report in reports:
                await publish(client, "bugs.reported", report.bug_id, report)

    asyncio.run(send())


def _fix(settings: Settings, bug_id: str, timeout: float = 120) -> FixEvent:
    def done(records) -> bool:
        return any(r.key.decode() == bug_id for r in records)

    records = asyncio.run(read_until(settings, "fixes", done, timeout=timeout))
    return next(FixEvent.model_validate_json(r.value) for r in records if r.key == bug_id.encode())


def _analysed(settings: Settings, bug_id: str) -> dict:
    """The analysis stage's "done" status event for ``bug_id``."""

    def mine(r) -> bool:
        value = orjson.loads(r.value)
        return (value["bug_id"], value["stage"], value["state"]) == (bug_id, "analysis", "done")

    records = asyncio.run(
        read_until(settings, "bugs.status", lambda rs: any(mine(r) for r in rs), timeout=60)
    )
    return next(orjson.loads(r.value) for r in records if mine(r))


def _cache_stats(settings: Settings) -> CacheStats:
    async def read() -> CacheStats:
        cache = Cache(RedisBackend(settings.redis_url, prefix=f"{settings.app_id}:cache"), 60)
        try:
            return await cache.stats()
        finally:
            await cache.aclose()

    return asyncio.run(read())


def _count(stats: CacheStats, cache: str, what: str) -> float:
    return stats.counters.get(cache, {}).get(what, 0)


def _llm_tokens(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/simulator/stats", timeout=5) as response:
        stats = orjson.loads(response.read())
    return stats["input_tokens"] + stats["output_tokens"]


def test_two_workers_share_the_cache_and_a_repeated_bug_needs_no_llm_call(
    settings, redis_url, tmp_path, llm_sim
):
    shared = _shared(settings, redis_url, tmp_path)
    repo = _repo_copy(tmp_path)
    first = _worker(shared, tmp_path, "first")
    try:
        _submit(shared, _report(repo, "R-1"))
        original = _fix(shared, "R-1")
    finally:
        first.stop()
    assert original.status == "fixed"
    spent = _llm_tokens(llm_sim)
    second = _worker(shared, tmp_path, "second")  # a new process: nothing of its own cached
    try:
        _submit(shared, _report(repo, "R-2"))
        repeat = _fix(shared, "R-2")
    finally:
        second.stop()
    assert _llm_tokens(llm_sim) == spent, "the repeated bug reached the model"
    assert repeat.status == "fixed" and repeat.patch == original.patch
    assert sum(s.tokens_in + s.tokens_out for s in repeat.stages) == 0
    assert all(run.cached for run in repeat.test_runs)
    stats = _cache_stats(shared)
    assert _count(stats, "llm", "hits") >= 4  # summary, reproduce, root cause, fix
    # at least once: a redelivered report (at-least-once, a worker stopped before its commit)
    # searches again, and hits again
    assert _count(stats, "tests", "hits") >= 1 and _count(stats, "search", "hits") >= 1
    assert _count(stats, "llm", "tokens_saved") > 0 and stats.entries > 0

    # the operator's view of the same Redis, and invalidation by repository
    env = {**os.environ, "FIXSTREAM_REDIS_URL": redis_url, "FIXSTREAM_APP_ID": shared.app_id,
           "COLUMNS": "200"}  # fmt: skip

    def cli(*args: str) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "fixstream", "cache", *args],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    shown = orjson.loads(cli("stats", "--json"))
    assert shown["backend"] == "redis" and shown["entries"] == stats.entries
    assert "tokens saved" in cli("stats")
    assert f"cleared {stats.entries} entries (repository {repo})" in cli(
        "clear", "--repo", str(repo)
    )
    assert orjson.loads(cli("stats", "--json"))["entries"] == 0


def test_near_duplicate_hits_the_semantic_cache_a_different_report_and_a_new_commit_miss(
    settings, redis_url, tmp_path
):
    shared = _shared(settings, redis_url, tmp_path)
    repo = _repo_copy(tmp_path)
    original = _report(repo, "S-1")
    worker = _worker(shared, tmp_path, "worker")
    try:
        _submit(shared, original)
        assert _analysed(shared, "S-1")["tokens_in"] > 0
        before = _cache_stats(shared)

        again = original.description + " Another customer hit it again this morning."
        _submit(shared, _report(repo, "S-2", description=again))
        near = _analysed(shared, "S-2")
        middle = _cache_stats(shared)
        assert near["tokens_in"] == 0, "the near-duplicate's summary was not reused"
        assert _count(middle, "semantic", "hits") == _count(before, "semantic", "hits") + 1

        other = _report(
            repo, "S-3", title="Invoice PDF shows the wrong currency symbol for Swiss francs",
            description="Invoices for customers in Switzerland print EUR instead of CHF in "
            "the totals box; the amounts themselves are right. Started after the 2.3 release.",
            comments=[], artifacts=[],
        )  # fmt: skip
        _submit(shared, other)
        third = _analysed(shared, "S-3")
        assert third["tokens_in"] > 0, (third, _cache_stats(shared))
        after = _cache_stats(shared)
        assert _count(after, "semantic", "hits") == _count(middle, "semantic", "hits")
        assert _count(after, "semantic", "misses") == _count(middle, "semantic", "misses") + 1

        # a new commit: any change to the repository's files is another version
        readme = repo / "NOTES.md"
        readme.write_text("release notes\n")
        _submit(shared, _report(repo, "S-4"))
        assert _analysed(shared, "S-4")["tokens_in"] > 0, "an entry of the old version was used"
    finally:
        worker.stop()


def test_a_stage_redone_after_a_crash_gets_its_finished_calls_from_the_cache(
    settings, redis_url, tmp_path
):
    shared = _shared(settings, redis_url, tmp_path)
    repo = _repo_copy(tmp_path)
    # every test run takes 2 s, so the crash lands inside reproduce's run, after its LLM call
    (repo / "conftest.py").write_text("import time\n\ntime.sleep(2)\n")
    crashed = _worker(shared, tmp_path, "crashed")
    _submit(shared, _report(repo, "C-1"))
    deadline = time.monotonic() + 60
    while _count(_cache_stats(shared), "tests", "misses") < 1:  # its test run has begun
        assert time.monotonic() < deadline, "reproduce never reached its test run"
        time.sleep(0.05)
    crashed.kill()
    survivor = _worker(shared, tmp_path, "survivor")
    try:
        assert _fix(shared, "C-1", timeout=180).status == "fixed"
        time.sleep(1.5)  # spans are flushed every second
    finally:
        survivor.stop()
    spans = read_spans(tmp_path / "trace")
    redone = [
        s for s in spans
        if s["worker"].endswith(f"-{survivor.process.pid}") and s["kind"] == "llm"
        and s["name"] in ("summary", "reproduce")
    ]  # fmt: skip
    assert any(s["name"] == "reproduce" for s in redone), "reproduce was not redelivered"
    assert all(s["cached"] for s in redone), redone
