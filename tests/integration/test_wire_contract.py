"""The contract as systems outside fixstream see it: a confluent-kafka producer publishes, an
aiokafka consumer reads ``fixes`` and ``bugs.dlq``. Neither uses fixstream's code; the messages
are what ``fixstream submit --wire`` prints, and hand-made bad ones.

Every report that reaches ``bugs.reported`` gets exactly one fix event: the examples are
fixed, and each bad input gets one ``failed`` event naming why, and one dead letter that says
which bug it ended (``fixstream.dlq.bug_id``)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaConsumer
from conftest import EXAMPLES
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

confluent_kafka = pytest.importorskip("confluent_kafka")


def _wire_examples(settings) -> list[dict]:
    """``fixstream submit FILE --wire`` for every example (the CLI, not a library call)."""
    from fixstream.cli import cli

    # the worker's data directory: a big log goes to its artifact store (a claim check)
    env = {"FIXSTREAM_DATA_DIR": str(settings.data_dir)}
    messages = []
    for report in sorted(EXAMPLES.glob("*/report.json")):
        bug = f"wire-{report.parent.name}"
        result = CliRunner().invoke(cli, ["submit", str(report), "--bug", bug, "--wire"], env=env)
        assert result.exit_code == 0, result.output
        messages.append(json.loads(result.stdout))
    return messages


def _publish(bootstrap: str, records: list[tuple[bytes | None, bytes, list]]) -> None:
    """An outside producer: confluent-kafka (librdkafka), nothing of fixstream."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "message.max.bytes": 16 << 20}
    )
    errors: list = []
    for key, value, headers in records:
        producer.produce(
            "bugs.reported", value=value, key=key, headers=headers,
            on_delivery=lambda err, msg: errors.append(err) if err else None,
        )  # fmt: skip
    assert producer.flush(30) == 0 and not errors, errors


def _consume(bootstrap: str, topic: str, done, timeout: float) -> list:
    """An outside consumer: aiokafka, group-less, from the beginning."""

    async def read() -> list:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        records: list = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not done(records):
                for part in (await consumer.getmany(timeout_ms=300)).values():
                    records += part
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def _report(bug_id: str, **fields) -> dict:
    repo = str(EXAMPLES / "off_by_one" / "repo")
    return {"bug_id": bug_id, "title": "t", "repo": {"path": repo}, **fields}


SCHEMA = [("fixstream.schema", b"BugReport/4")]
BAD = {  # bug id -> (key, value, headers, a fragment of the reason)
    "wire-garbage": (b"wire-garbage", b"\x00\xffnot json", [], "not valid JSON"),
    "wire-types": (b"wire-types", b'{"bug_id": "wire-types", "title": 5, "repo": "x"}', SCHEMA,
                   "does not match schema"),
    "wire-norepo": (b"wire-norepo", b'{"bug_id": "wire-norepo", "title": "t"}', SCHEMA,
                    "repo: Field required"),
    "wire-huge": (b"wire-huge", json.dumps(_report("wire-huge", description="x" * 6_000_000))
                  .encode(), SCHEMA, "exceeds the limit"),
    "wire-asis": (b"wire-asis", (EXAMPLES / "long_log" / "report.json").read_bytes(), SCHEMA,
                  "does not match schema"),
    "wire-v99": (b"wire-v99", json.dumps(_report("wire-v99")).encode(),
                 [("fixstream.schema", b"BugReport/99")], "unsupported schema version"),
    "wire-keyed": (b"1234", json.dumps(_report("wire-keyed")).encode(), SCHEMA,
                   "key '1234' differs from bug_id 'wire-keyed'"),
}  # fmt: skip


def test_outside_clients_get_one_fix_event_per_report(settings, start_worker):
    worker = start_worker()
    examples = _wire_examples(settings)
    good = [
        (m["key"].encode(), json.dumps(m["value"]).encode(),
         [(k, v.encode()) for k, v in m["headers"].items()])
        for m in examples
    ]  # fmt: skip
    unkeyed = (None, b"{not json", [])  # no key to name the bug by: its place in the log does
    _publish(settings.broker, [*good, *((k, v, h) for k, v, h, _ in BAD.values()), unkeyed])

    ids = {m["key"] for m in examples} | set(BAD)
    fixes: dict[str, list[dict]] = {}

    def all_in(records) -> bool:
        fixes.clear()
        for r in records:
            fixes.setdefault(r.key.decode(), []).append(json.loads(r.value))
        return ids <= fixes.keys() and any(k.startswith("bugs.reported:") for k in fixes)

    _consume(settings.broker, "fixes", all_in, timeout=240)
    time.sleep(2)  # a second fix event would arrive now
    records = _consume(settings.broker, "fixes", lambda rs: False, timeout=3)
    all_in(records)
    assert ids <= fixes.keys(), (ids - fixes.keys(), worker.output()[-3000:])
    assert all(len(events) == 1 for events in fixes.values()), "exactly one fix event per bug"

    for m in examples:
        (fix,) = fixes[m["key"]]
        assert fix["status"] == "fixed", (m["key"], fix["reason"])
        assert fix["repo"]["path"] == m["value"]["repo"]["path"]
        assert fix["test_path"] and fix["test_code"]
        stages = [s["stage"] for s in fix["stages"]]
        assert stages[:3] == ["analysis", "reproduce", "root_cause"] and stages[-1] == "validate"
        assert fix["stages"][0]["tokens_in"] > 0, "analysis's summary call is counted"
        total = fix["total"]
        assert total["tokens_in"] == sum(s["tokens_in"] for s in fix["stages"]) > 0
        assert total["elapsed_ms"] == pytest.approx(sum(s["elapsed_ms"] for s in fix["stages"]))

    derived = [k for k in fixes if k.startswith("bugs.reported:")]
    assert len(derived) == 1, derived
    for bug, (_, _, _, why) in [*BAD.items(), (derived[0], (None, None, None, "not valid JSON"))]:
        (fix,) = fixes[bug]
        assert fix["status"] == "failed" and why in fix["reason"], (bug, fix["reason"])
        assert fix["reason"].startswith("dead-lettered in decode:bugs.reported: BadInputError")

    letters = _consume(settings.broker, "bugs.dlq", lambda rs: False, timeout=3)
    ended = [dict(r.headers).get("fixstream.dlq.bug_id", b"").decode() for r in letters]
    assert sorted(ended) == sorted([*BAD, derived[0]]), "one dead letter per bad input"
    assert worker.process.poll() is None, worker.output()[-3000:]
