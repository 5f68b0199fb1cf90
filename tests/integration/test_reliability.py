"""Faults survived: a worker killed mid-batch, an LLM failing 30% of the time, a bug stuck in
a stage, a stage input lost, a bug that cannot be processed. Every bug ends with exactly one
fix event."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from conftest import EXAMPLES, read_until
from test_pipeline import _fixes, _records, _reports, _submit

from fixstream.broker import EmbeddedBroker
from fixstream.kafka import producer, publish, read_to_end
from fixstream.llm.simulator.process import simulator_process
from fixstream.reports import report_from_file
from fixstream.scenarios import scenario_files
from fixstream.schemas import StatusEvent
from fixstream.topics import apply_topics, load_catalog
from fixstream.worker import WorkerProcess

pytestmark = pytest.mark.integration


def _final_events(settings, ids: set[str]) -> Counter:
    """How many fix events each bug has, after a pause for duplicates to show up."""
    time.sleep(3)
    return Counter(r.key.decode() for r in _records(settings, "fixes") if r.key.decode() in ids)


def test_a_worker_killed_mid_batch_leaves_every_bug_to_the_other_exactly_once(
    settings, start_worker
):
    doomed = start_worker("doomed", ready=False)
    survivor = start_worker("survivor", ready=False)
    for worker in (doomed, survivor):  # started together, ready together
        worker.wait_ready()
    reports = _reports(settings, "a") + _reports(settings, "b", ["off_by_one", "two_files"])
    ids = {r.bug_id for r in reports}
    _submit(settings, reports)
    # kill once the batch is under way: the first bugs fixed, the rest in flight
    asyncio.run(read_until(settings, "fixes", lambda rs: len(rs) >= 2, timeout=120))
    doomed.kill()
    fixes = _fixes(settings, ids, timeout=240)
    assert {f.bug_id for f in fixes} == ids
    assert all(f.status == "fixed" for f in fixes), [(f.bug_id, f.reason) for f in fixes]
    assert set(_final_events(settings, ids).values()) == {1}
    # the killed worker really had bugs in hand: status events from it for unfinished bugs
    killed_id = f"-{doomed.process.pid}"
    statuses = [orjson.loads(r.value) for r in _records(settings, "bugs.status", settle=0)]
    assert any(s["worker"].endswith(killed_id) for s in statuses)
    assert survivor.process.poll() is None


def test_with_30_percent_llm_faults_every_bug_ends_fixed_or_with_its_reason(settings, tmp_path):
    scenarios = [a for f in scenario_files(EXAMPLES) for a in ("--scenario", str(f))]
    faults = "error_5xx=0.1,rate_limit=0.08,hang=0.04,malformed=0.05,truncated=0.03"
    with simulator_process(
        "--time-scale", "0.01", "--faults", faults, "--hang-seconds", "3", "--seed", "7",
        *scenarios,
    ) as url:  # fmt: skip
        faulty = settings.model_copy(update={"llm_base_url": url})
        worker = WorkerProcess(
            faulty, tmp_path / "worker.log", FIXSTREAM_LLM_TIMEOUT="1",
            FIXSTREAM_LLM_MAX_ATTEMPTS="8", FIXSTREAM_CACHE="off",
        )  # fmt: skip
        try:
            worker.wait_ready()
            reports = _reports(settings, "faulty")
            ids = {r.bug_id for r in reports}
            _submit(settings, reports)
            fixes = _fixes(settings, ids, timeout=300)
            counts = _final_events(settings, ids)
            with urllib.request.urlopen(f"{url}/simulator/stats") as r:
                stats = orjson.loads(r.read())
        finally:
            worker.stop()
    assert set(counts.values()) == {1}
    assert sum(stats["faults"].values()) >= 10, stats["faults"]  # the faults really happened
    for fix in fixes:
        assert fix.status == "fixed" or fix.reason, fix
    assert sum(f.status == "fixed" for f in fixes) >= 3, [(f.bug_id, f.reason) for f in fixes]


def _slow_repo(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "off_by_one" / "repo", repo)
    # slower than the watchdog's three rounds (4 s each, plus a pass): the bug is stuck
    (repo / "conftest.py").write_text("import time\n\ntime.sleep(40)\n")
    return repo


def _all(settings, topic: str) -> list:
    """Every record of ``topic`` up to its end now."""
    return asyncio.run(read_to_end(settings, [topic]))


def _statuses(settings, bug_id: str) -> list[StatusEvent]:
    return [
        StatusEvent.model_validate_json(r.value)
        for r in _all(settings, "bugs.status")
        if r.key == bug_id.encode()
    ]


def _check_progress_table(settings, ended: set[str]) -> None:
    """The watchdog's ownership test against the real routing: each progress entry sits in
    the partition its bug's status records are in, the one Kafka's default partitioner (the
    producer's, which Faust's ``key_partition`` is) gives the bug id. And the entries of
    ``ended`` bugs are deleted: their last changelog record is a tombstone."""
    changelog = f"{settings.app_id}-fixstream-progress-changelog"
    entries = _all(settings, changelog)
    status_partition = {r.key: r.partition for r in _all(settings, "bugs.status")}
    every = list(range(settings.partitions))
    assert entries
    last: dict[str, object] = {}
    for r in entries:
        bug_id = orjson.loads(r.key)
        assert r.partition == status_partition[bug_id.encode()], bug_id
        assert r.partition == DefaultPartitioner()(bug_id.encode(), every, every), bug_id
        last[bug_id] = r.value
    assert {b: last[b] for b in ended} == dict.fromkeys(ended), "ended bugs keep no entry"


def test_a_stuck_bug_is_redriven_then_failed_naming_the_redrives_and_status_shows_it(
    settings, start_worker, tmp_path
):
    start_worker(FIXSTREAM_STUCK_AFTER_S="4", FIXSTREAM_TEST_TIMEOUT_S="120")
    report = report_from_file(EXAMPLES / "off_by_one" / "report.json", "STUCK-1")
    report = report.model_copy(
        update={"repo": report.repo.model_copy(update={"path": str(_slow_repo(tmp_path))})}
    )
    missing = report.model_copy(
        update={"bug_id": "GONE-1", "repo": report.repo.model_copy(update={"path": "/nope"})}
    )
    _submit(settings, [report, missing])
    fixes = {f.bug_id: f for f in _fixes(settings, {"STUCK-1", "GONE-1"}, timeout=120)}
    stuck, gone = fixes["STUCK-1"], fixes["GONE-1"]
    assert stuck.status == "failed" and stuck.meta.stage == "watchdog"
    # started, or "progress" when its environment was built first
    assert re.fullmatch(
        r"no progress for \d+ s \(limit 4 s\) after 2 re-drives; "
        r"last: reproduce (started|progress)",
        stuck.reason,
    ), stuck.reason
    assert gone.status == "failed" and "dead-lettered in analysis" in gone.reason
    assert "/nope" in gone.reason

    # the reproduce stage's input was published twice more, each copy saying which re-drive
    statuses = _statuses(settings, "STUCK-1")
    redrives = [s.message for s in statuses if s.stage == "watchdog" and s.state == "redriven"]
    assert [m.split(":")[0] for m in redrives] == ["re-drive 1 of 2", "re-drive 2 of 2"]
    started = [s.source for s in statuses if (s.stage, s.state) == ("reproduce", "started")]
    assert started and started[0].startswith("bugs.analyzed/")
    assert f"re-drive 1 of 2: {started[0]} published again" in redrives[0]
    inputs = [r for r in _all(settings, "bugs.analyzed") if r.key == b"STUCK-1"]
    assert [dict(r.headers).get("fixstream.redrive") for r in inputs] == [None, b"1", b"2"]
    assert len({r.value for r in inputs}) == 1, "the same input, again"

    env = {**os.environ, "FIXSTREAM_BROKER": settings.broker, "COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "fixstream", "status", "STUCK-1"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "STUCK-1" in shown.stdout and "watchdog" in shown.stdout and "failed" in shown.stdout
    assert "redriven" in shown.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "fixstream", "status", "NO-SUCH-BUG"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert unknown.returncode == 1 and "no events for: NO-SUCH-BUG" in unknown.stdout
    assert set(_final_events(settings, {"STUCK-1", "GONE-1"}).values()) == {1}
    _check_progress_table(settings, ended={"STUCK-1", "GONE-1"})


async def _lose(settings, report) -> str:
    """What a lost record looks like: a stage started the report (its status says so), then
    its group committed past the record with nothing produced. Where the record sits."""
    async with producer(settings) as client:
        sent = await client.send_and_wait(
            "bugs.reported", report.to_bytes(), key=report.bug_id.encode()
        )
        source = f"bugs.reported/{sent.partition}/{sent.offset}"
        started = StatusEvent(
            bug_id=report.bug_id, stage="analysis", state="started", source=source,
            worker="lost-worker",
        )  # fmt: skip
        await publish(client, "bugs.status", report.bug_id, started)
    group = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap(), group_id=settings.app_id,
        enable_auto_commit=False, **settings.kafka_client_options(),
    )  # fmt: skip
    await group.start()
    try:
        tp = TopicPartition("bugs.reported", sent.partition)
        group.assign([tp])
        await group.commit({tp: sent.offset + 1})
    finally:
        await group.stop()
    return source


def test_a_lost_stage_input_is_redriven_and_the_bug_fixed_not_failed(settings, start_worker):
    report = _reports(settings, "lost", ["off_by_one"])[0]
    source = asyncio.run(_lose(settings, report))
    # re-drives to spare: a stage slowed down by a loaded machine may be re-driven too
    start_worker(FIXSTREAM_STUCK_AFTER_S="8", FIXSTREAM_REDRIVES="4")
    (fix,) = _fixes(settings, {report.bug_id}, timeout=120)
    assert fix.status == "fixed", fix.reason
    redrives = [
        s.message
        for s in _statuses(settings, report.bug_id)
        if (s.stage, s.state) == ("watchdog", "redriven")
    ]
    assert redrives[0].startswith(f"re-drive 1 of 4: {source} published again"), redrives
    copies = [r for r in _all(settings, "bugs.reported") if r.key == fix.bug_id.encode()]
    assert [dict(r.headers).get("fixstream.redrive") for r in copies][:2] == [None, b"1"]
    assert set(_final_events(settings, {report.bug_id}).values()) == {1}


def test_workers_ride_out_a_broker_outage_and_finish_what_comes_after(
    broker, settings, start_worker
):
    if not isinstance(broker, EmbeddedBroker):
        pytest.skip("stops and restarts the embedded broker")
    workers = [start_worker("one")]
    before = _reports(settings, "before", ["off_by_one", "wrong_operator", "two_files"])
    _submit(settings, before)
    asyncio.run(read_until(settings, "fixes", lambda rs: len(rs) >= 1, timeout=120))
    broker.stop()  # mid-run: the other bugs are in flight
    time.sleep(4)
    asyncio.run(broker.start())  # same address; the in-memory broker comes back empty
    catalog = load_catalog(settings.topics_file, settings.partitions)
    asyncio.run(apply_topics(catalog, settings.bootstrap(), {}))  # what Kafka would have kept
    after = _reports(settings, "after", ["off_by_one", "none_handling"])
    ids = {r.bug_id for r in after}
    _submit(settings, after)
    fixes = _fixes(settings, ids, timeout=240)
    assert all(f.status == "fixed" for f in fixes), [(f.bug_id, f.reason) for f in fixes]
    assert set(_final_events(settings, ids).values()) == {1}
    assert all(w.process.poll() is None for w in workers), "a worker died with the broker"
    # bugs in flight during the outage: what the workers still had in hand may finish on the
    # new broker, never twice; what sat in the old broker's topics is gone with it
    late = _final_events(settings, {r.bug_id for r in before})
    assert set(late.values()) <= {1}
