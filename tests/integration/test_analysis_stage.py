"""The analysis stage on the embedded broker: reports in from our CLI and from a foreign
producer, analysed bugs out; bad input to the dead-letter topic while good input flows."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest
from conftest import make_repo, read_until, worker_env

from fixstream.schemas import AnalyzedBug, BugSummary, DeadLetter, StatusEvent

pytestmark = pytest.mark.integration


def _analyzed(records, bug_id: str) -> AnalyzedBug | None:
    for r in records:
        if r.key == bug_id.encode():
            return AnalyzedBug.model_validate_json(r.value)
    return None


def _done(records, bug_id: str) -> StatusEvent | None:
    for r in records:
        status = StatusEvent.model_validate_json(r.value)
        if status.bug_id == bug_id and status.state == "done":
            return status
    return None


def _wait_analyzed(settings, bug_id: str) -> AnalyzedBug:
    records = asyncio.run(
        read_until(settings, "bugs.analyzed", lambda rs: _analyzed(rs, bug_id) is not None)
    )
    return _analyzed(records, bug_id)


def _assert_chunks_cover_the_trace(bug: AnalyzedBug, repo) -> None:
    assert bug.evidence.exception_types == ["ZeroDivisionError"]
    assert bug.candidates[0].path == "shop/pricing.py"  # the innermost frame raised there
    assert bug.candidates[0].reason == "stack-trace"
    assert {"shop/pricing.py", "shop/cart.py"} <= {c.path for c in bug.candidates}
    pricing = [c for c in bug.chunks if c.path == "shop/pricing.py"]
    lines = (repo / "shop/pricing.py").read_text().splitlines()
    covered = sorted(n for c in pricing for n in range(c.start_line, c.end_line + 1))
    assert covered == list(range(1, len(lines) + 1))  # each line in exactly one chunk
    raising_line = next(i for i, text in enumerate(lines, 1) if "total / quantity" in text)
    assert any(c.start_line <= raising_line <= c.end_line for c in pricing)
    assert all(c.tokens <= 800 for c in bug.chunks)


def test_report_submitted_with_the_cli_arrives_analysed(settings, start_worker, tmp_path):
    repo, trace = make_repo(tmp_path)
    log = tmp_path / "ci.log"
    log.write_text("collecting...\n" + "WARN retrying\n" * 500 + trace)
    start_worker()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fixstream",
            "--broker",
            settings.broker,
            "submit",
            "--repo",
            str(repo),
            "--title",
            "Cart crashes on zero quantity",
            "--description",
            "Cart.prices raises when a line has quantity 0",
            "--log",
            str(log),
            "--bug",
            "cli-bug-1",
        ],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cli-bug-1"
    bug = _wait_analyzed(settings, "cli-bug-1")
    _assert_chunks_cover_the_trace(bug, repo)
    assert "repeated" in bug.evidence.log_excerpt  # 500 identical lines collapsed
    assert bug.evidence.log_excerpt.count("WARN retrying") == 1
    # the first progressive summary, by the cheap model through the simulator
    assert bug.summary.startswith("Bug: Cart crashes on zero quantity")
    assert "Exceptions: ZeroDivisionError" in bug.summary
    summaries = asyncio.run(
        read_until(settings, "bugs.summaries", lambda rs: any(r.key == b"cli-bug-1" for r in rs))
    )
    summary = BugSummary.model_validate_json(
        next(r.value for r in summaries if r.key == b"cli-bug-1")
    )
    assert (summary.stage, summary.revision, summary.text) == ("analysis", 1, bug.summary)
    statuses = asyncio.run(
        read_until(settings, "bugs.status", lambda rs: _done(rs, "cli-bug-1") is not None)
    )
    done = _done(statuses, "cli-bug-1")
    assert done.tokens_in > 0 and done.tokens_out > 0 and done.cost_usd > 0


def test_report_from_a_foreign_producer_arrives_analysed(settings, start_worker, tmp_path):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    repo, trace = make_repo(tmp_path)
    start_worker()
    report = {
        "bug_id": "confluent-1",
        "source": "error-monitor",
        "title": "ZeroDivisionError in unit_price",
        "description": "Seen in production:\n" + trace,
        "repo": {"path": str(repo)},
    }
    producer = confluent_kafka.Producer({"bootstrap.servers": settings.broker})
    producer.produce("bugs.reported", orjson.dumps(report), key=b"confluent-1")
    assert producer.flush(30) == 0
    bug = _wait_analyzed(settings, "confluent-1")
    _assert_chunks_cover_the_trace(bug, repo)
    assert bug.report.source == "error-monitor"


def test_bad_input_is_dead_lettered_and_the_worker_keeps_going(settings, start_worker, tmp_path):
    from aiokafka import AIOKafkaProducer

    repo, trace = make_repo(tmp_path)
    worker = start_worker()
    good = {
        "bug_id": "good-after-bad",
        "title": "crash",
        "description": trace,
        "repo": {"path": str(repo)},
    }
    bad: dict[bytes, bytes] = {
        b"bad-json": b'{"bug_id": "x", "title": ',
        b"bad-schema": orjson.dumps({"bug_id": "bad-schema", "title": 42}),
        b"bad-size": orjson.dumps({**good, "bug_id": "bad-size", "description": "x" * 100_000}),
        b"bad-repo": orjson.dumps({**good, "bug_id": "bad-repo", "repo": {"path": "/nope/x"}}),
        b"bad-utf8": b"\xff\xfe\x00garbage",
    }

    async def send() -> None:
        client = AIOKafkaProducer(bootstrap_servers=settings.broker, max_request_size=1 << 20)
        await client.start()
        try:
            for key, value in bad.items():
                await client.send_and_wait("bugs.reported", value, key=key)
            await client.send_and_wait("bugs.reported", orjson.dumps(good), key=b"good-after-bad")
        finally:
            await client.stop()

    asyncio.run(send())
    _wait_analyzed(settings, "good-after-bad")
    records = asyncio.run(
        read_until(settings, "bugs.dlq", lambda rs: {r.key for r in rs} >= set(bad))
    )
    letters = {
        r.key: (DeadLetter.from_record(r.key, r.value, list(r.headers)), r)
        for r in records
        if r.key in bad  # other tests of this module share the broker
    }
    reasons = {key.decode(): letter.reason for key, (letter, _) in letters.items()}
    assert "not valid JSON" in reasons["bad-json"]
    assert "title: Input should be a valid string" in reasons["bad-schema"]
    assert "exceeds the limit of 65536" in reasons["bad-size"]
    assert "repository path does not exist: /nope/x" in reasons["bad-repo"]
    assert "not valid JSON" in reasons["bad-utf8"]
    for key, (letter, record) in letters.items():
        assert record.value == bad[key], "the original bytes are kept"
        assert letter.original_topic == "bugs.reported"
        assert letter.partition is not None and letter.offset is not None
        assert letter.consumer_group == settings.app_id
        assert letter.retryable is False
    assert letters[b"bad-repo"][0].stage == "analysis"
    assert worker.process.poll() is None, "the worker is still running"
