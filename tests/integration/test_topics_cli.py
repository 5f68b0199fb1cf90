"""`fixstream topics apply` and `fixstream broker` as a user runs them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fixstream.config import Settings
from fixstream.topics import load_catalog

pytestmark = pytest.mark.integration


def _fixstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fixstream", *args], capture_output=True, text=True, timeout=60
    )


def test_apply_twice_creates_once_then_reports_no_drift(new_broker):
    count = len(load_catalog(Settings().topics_file).topics)
    with_broker = new_broker()
    asyncio.run(with_broker.start())
    try:
        first = _fixstream("--broker", with_broker.bootstrap, "topics", "apply")
        assert first.returncode == 0, first.stderr
        assert f"{count} created, 0 unchanged, 0 drifted" in first.stdout
        second = _fixstream("--broker", with_broker.bootstrap, "topics", "apply")
        assert second.returncode == 0, second.stderr
        assert f"0 created, {count} unchanged, 0 drifted" in second.stdout
    finally:
        with_broker.stop()


def test_apply_reports_drift_in_partitions_and_configs(new_broker):
    embedded = new_broker()
    asyncio.run(embedded.start())

    async def precreate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=embedded.bootstrap)
        await admin.start()
        await admin.create_topics(
            [
                NewTopic("bugs.reported", 2, 1),
                NewTopic("bugs.summaries", 8, 1, topic_configs={"cleanup.policy": "delete"}),
            ]
        )
        await admin.close()

    try:
        asyncio.run(precreate())
        result = _fixstream("--broker", embedded.bootstrap, "topics", "apply")
        assert result.returncode == 1
        assert "bugs.reported: partitions wanted 8, is 2" in result.stdout
        assert "bugs.summaries: cleanup.policy wanted compact, is delete" in result.stdout
    finally:
        embedded.stop()


@pytest.mark.embedded_broker_only
def test_broker_command_prints_its_address_answers_and_stops_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "fixstream", "broker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "FIXSTREAM_BROKER=" not in line and time.monotonic() < deadline:
            line = process.stdout.readline()
        exported = dict(kv.split("=", 1) for kv in line.split()[1:])
        address = exported["FIXSTREAM_BROKER"]
        assert exported["FIXSTREAM_FETCH_MAX_WAIT_MS"] == "5"  # what clients of tansu need
        result = _fixstream("--broker", address, "topics", "apply")
        assert result.returncode == 0, result.stdout + result.stderr
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    finally:
        process.kill()
    refused = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(('127.0.0.1', {address.split(':')[1]}), 1)",
        ],
        capture_output=True,
    )
    assert refused.returncode != 0, "the broker process is gone after Ctrl-C"
