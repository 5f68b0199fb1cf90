"""Delivery guarantees under a crash: nothing is committed before it is done."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.partitioner import DefaultPartitioner
from conftest import make_repo, read_until

from fixstream.kafka import producer, publish
from fixstream.llm.simulator.process import simulator_process
from fixstream.scenarios import NOT_IMPLICATED, scenario_text
from fixstream.schemas import BugReport, RepoRef
from fixstream.worker import WorkerProcess

pytestmark = pytest.mark.integration
SLOW_MARK = "SLOW-SUMMARY-FOR-DELIVERY-TEST"


def _same_partition_ids(partitions: int) -> tuple[str, str]:
    partitioner = DefaultPartitioner()
    everything = list(range(partitions))
    first = "slow-bug-0"
    target = partitioner(first.encode(), everything, everything)
    n = 1
    while partitioner(f"fast-bug-{n}".encode(), everything, everything) != target:
        n += 1
    return first, f"fast-bug-{n}"


def _analyzed_ids(settings, wanted: set[str], timeout: float) -> set[str]:
    def done(records) -> bool:
        return {r.key.decode() for r in records} >= wanted

    records = asyncio.run(read_until(settings, "bugs.analyzed", done, timeout=timeout))
    return {r.key.decode() for r in records}


def test_a_slow_message_survives_a_kill_after_later_ones_finished(settings, tmp_path):
    """Two bugs on one partition, the first slow; kill -9 once the second is done and a
    commit interval has passed; after a restart the first is still processed. Faust's own
    concurrency would have committed past the slow one (faust #606) and lost it."""
    slow_id, fast_id = _same_partition_ids(settings.partitions)
    repo, trace = make_repo(tmp_path)
    summary = {"summary": "slow", "symptoms": [], "suspected_locations": [],
               "reproduction_hint": ""}  # fmt: skip
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(
        scenario_text(
            [{"match": SLOW_MARK, "response": summary, "delay_seconds": 10}, NOT_IMPLICATED]
        )
    )
    with simulator_process("--time-scale", "0.01", "--scenario", str(scenario)) as url:
        crashy = settings.model_copy(update={"llm_base_url": url})
        first = WorkerProcess(crashy, tmp_path / "first.log")
        first.wait_ready()
        reports = [
            BugReport(bug_id=slow_id, title=f"crash {SLOW_MARK}", description=trace,
                      repo=RepoRef(path=str(repo))),
            BugReport(bug_id=fast_id, title="crash", description=trace,
                      repo=RepoRef(path=str(repo))),
        ]  # fmt: skip

        async def send() -> None:
            async with producer(crashy) as client:
                for report in reports:
                    await publish(client, "bugs.reported", report.bug_id, report)

        asyncio.run(send())
        seen = _analyzed_ids(crashy, {fast_id}, timeout=60)
        assert slow_id not in seen, "the slow bug is still in flight"
        time.sleep(4)  # past Faust's commit interval (2.8 s)
        first.kill()
        seen = _analyzed_ids(crashy, {fast_id}, timeout=10)
        assert slow_id not in seen, "the slow bug was not finished before the kill"

        second = WorkerProcess(crashy, tmp_path / "second.log")
        try:
            second.wait_ready()
            assert slow_id in _analyzed_ids(crashy, {slow_id}, timeout=90)
        finally:
            second.stop()
