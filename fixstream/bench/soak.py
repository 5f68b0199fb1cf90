"""``fixstream bench --soak``: many bugs, LLM faults, workers killed, rebalances, a stalled broker.

The oracle is Kafka's, not the bugs': after the run every record of every topic the workers
consume is read back and accounted for (``bench.ledger``): processed, dead-lettered, or lost.
Counting fix events alone cannot see a loss, since the watchdog turns a lost record into a
"no progress" failure, which is a fix event too. Beside it, the worker group's committed
offsets must have reached the end of every partition it consumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

from fixstream.bench.ledger import CONSUMED, DLQ, FIXES, Record, account
from fixstream.bench.system import System, example_bugs
from fixstream.config import Settings
from fixstream.kafka import producer, publish, read_to_end, reader
from fixstream.schemas import BugReport
from fixstream.worker import WorkerProcess

DEFAULT_FAULTS = "error_5xx=0.1,rate_limit=0.08,hang=0.04,malformed=0.05,truncated=0.03"
SETTLE_S = 30.0
"""After the last fix event, how long the group may take to commit up to every end offset."""
UNCONSUMED_LISTED = 5
"""Records past the committed offset named per partition (the figure counts them all)."""


@dataclass(frozen=True)
class SoakConfig:
    out: Path
    bugs: int = 100
    workers: int = 2
    faults: str = DEFAULT_FAULTS
    """Shares of simulator answers that fail (30% in all by default)."""
    kill_every_s: float = 15.0
    """A random worker is killed with SIGKILL this often, and a new one started (0: never)."""
    joiner_every_s: float = 0.0
    """When above 0: one more worker joins, leaves gracefully (SIGTERM) this long after it is
    ready, and joins again, over and over: a rebalance at every turn."""
    pause_broker_s: float = 0.0
    """When above 0: once, when the first fix event arrives (bugs are then in every stage),
    the broker is stopped (SIGSTOP) this long, then continued."""
    time_scale: float = 0.05
    submit_over_s: float = 20.0
    """Bugs arrive spread over this long, so kills land while bugs are in every stage."""
    stuck_after_s: float = 300.0
    """The watchdog's limit: a bug silent this long is re-driven, then failed. A bug waiting
    behind a backlog is silent too: at 120 s, 200 bugs with a kill every 8 s had 58 failed
    that were only queued; at 300 s, 300 bugs with a kill every 7 s and a joiner had bugs
    re-driven after 365 s that were only queued behind reproduce (30 bugs a minute on 2
    cores). The CLI scales it with the bugs."""
    timeout_s: float = 900.0
    seed: int = 1


@dataclass
class Chaos:
    """What was done to the system while the bugs ran."""

    kills: int = 0
    joins: int = 0
    broker_paused_s: float = 0.0
    joiner: WorkerProcess | None = None
    """The worker that comes and goes: never a kill's victim."""
    unready: list[str] = field(default_factory=list)
    """Workers that crashed or did not get ready in time (why, from their log)."""


async def _ready(worker: WorkerProcess, chaos: Chaos) -> None:
    """Wait for a started worker. One that crashes or never gets ready is a defect the soak
    reports (a must-be-0 figure); the chaos goes on around it."""
    try:
        await asyncio.to_thread(worker.wait_ready)
    except RuntimeError as exc:
        crashed = next((ln for ln in worker.output().splitlines() if "Error" in ln), "")
        chaos.unready.append(f"{worker.log.name}: {str(exc).splitlines()[0]} {crashed[:300]}")


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``; True when ``stop`` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _kill(system: System, cfg: SoakConfig, stop: asyncio.Event, chaos: Chaos) -> None:
    rng = random.Random(cfg.seed)
    while not await _wait(stop, cfg.kill_every_s):
        victim = rng.choice([w for w in system.workers if w is not chaos.joiner])
        victim.kill()
        system.workers.remove(victim)
        chaos.kills += 1
        await _ready(system.spawn(f"soak-r{chaos.kills}"), chaos)


async def _join(system: System, cfg: SoakConfig, stop: asyncio.Event, chaos: Chaos) -> None:
    while not stop.is_set():
        chaos.joiner = joiner = system.spawn(f"soak-j{chaos.joins}")
        chaos.joins += 1
        await _ready(joiner, chaos)
        await _wait(stop, cfg.joiner_every_s)
        await asyncio.to_thread(joiner.stop)  # SIGTERM: it leaves the group, committing
        system.workers.remove(joiner)


async def _pause_broker(
    system: System, cfg: SoakConfig, due: asyncio.Event, stop: asyncio.Event, chaos: Chaos
) -> None:
    await due.wait()
    if stop.is_set():
        return  # no fix event came: nothing was in flight to disturb
    process = system.broker.process if system.broker else None
    assert process is not None, "the broker is started before the chaos"
    process.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    try:
        await asyncio.sleep(cfg.pause_broker_s)
    finally:
        process.send_signal(signal.SIGCONT)
        chaos.broker_paused_s = time.monotonic() - started


async def unaccounted_offsets(settings: Settings, topics: tuple[str, ...]) -> dict[str, list[int]]:
    """Partitions of ``topics`` where the worker group's committed offset (Faust's group id
    is the app id) is short of the end offset: ``topic[p]`` -> [committed, end]."""
    async with reader(settings, topics) as consumer:
        parts = sorted(consumer.assignment())
        ends = await consumer.end_offsets(parts)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap(), **settings.kafka_client_options()
    )
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=parts)
    finally:
        await admin.close()
    short = {}
    for tp in parts:
        at = max(0, committed[tp].offset) if tp in committed else 0  # -1: nothing committed
        if at < ends[tp]:
            short[f"{tp.topic}[{tp.partition}]"] = [at, ends[tp]]
    return short


async def settled_offsets(settings: Settings, settle_s: float) -> dict[str, list[int]]:
    """The group's shortfall once it has committed all it will (Faust commits every few
    seconds), or after ``settle_s``."""
    deadline = time.monotonic() + settle_s
    while True:
        short = await unaccounted_offsets(settings, CONSUMED)
        if not short or time.monotonic() > deadline:
            return short
        await asyncio.sleep(1.0)


def unconsumed(records: list[Record], offsets: dict[str, list[int]]) -> dict[str, list[str]]:
    """The first records past the group's committed offset, per partition short of its end."""
    found: dict[str, list[str]] = {}
    for r in records:
        where = f"{r.topic}[{r.partition}]"
        if where in offsets and r.offset >= offsets[where][0]:
            listed = found.setdefault(where, [])
            if len(listed) < UNCONSUMED_LISTED:
                listed.append(str(r))
    return found


def _keep(path: Path, records: list[Record]) -> None:
    """Every record read back, one JSON line each: what a loss the tables name is traced in
    (the embedded broker keeps nothing once the soak ends)."""
    with gzip.open(path, "wb") as out:
        for r in records:
            out.write(orjson.dumps(r, default=_raw) + b"\n")


def _raw(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(type(value).__name__)


def must_be_zero(results: dict[str, Any]) -> dict[str, int]:
    """The figures a soak fails on."""
    bugs = results["bugs"]
    return {
        "lost records": sum(t["lost"] for t in results["topics"].values()),
        "lost bugs": bugs["lost"],
        "failed silently": bugs["failed_silently"],
        "duplicate fix events": bugs["duplicate_fix_events"],
        "wrong verdicts": bugs["wrong_verdicts"],
        "re-driven bugs": bugs["redriven"],
        "unaccounted offsets": sum(end - at for at, end in results["offsets"].values()),
        "workers crashed or not ready": len(results.get("unready_workers", ())),
    }


def failures(results: dict[str, Any]) -> str:
    """The must-be-0 figures that are not, on one line ("" when none)."""
    return ", ".join(f"{name} {n}" for name, n in results["must_be_zero"].items() if n)


def _start_chaos(
    system: System, cfg: SoakConfig, stop: asyncio.Event, first_fix: asyncio.Event, chaos: Chaos
) -> list[asyncio.Task[None]]:
    agents = []
    if cfg.kill_every_s > 0:
        agents.append(_kill(system, cfg, stop, chaos))
    if cfg.joiner_every_s > 0:
        agents.append(_join(system, cfg, stop, chaos))
    if cfg.pause_broker_s > 0:
        agents.append(_pause_broker(system, cfg, first_fix, stop, chaos))
    return [asyncio.create_task(agent) for agent in agents]


async def _submit_and_wait(
    settings: Settings, cfg: SoakConfig, bugs: list[BugReport], first_fix: asyncio.Event
) -> None:
    """Submit the bugs spread over ``submit_over_s``; wait until each has a fix event."""
    submitted = {b.bug_id for b in bugs}
    async with producer(settings) as out, reader(settings, [FIXES]) as fixes:
        gap = cfg.submit_over_s / max(1, len(bugs))
        for bug in bugs:
            await publish(out, "bugs.reported", bug.bug_id, bug)
            await asyncio.sleep(gap)
        seen: set[str] = set()
        deadline = time.monotonic() + cfg.timeout_s
        while seen < submitted and time.monotonic() < deadline:
            for records in (await fixes.getmany(timeout_ms=500)).values():
                seen.update(r.key.decode() for r in records)
                first_fix.set()


async def soak(cfg: SoakConfig) -> dict[str, Any]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    system = System(cfg.out, in_flight=32, profile=False)
    started = time.perf_counter()
    chaos = Chaos()
    try:
        await system.start_broker()
        with system.simulator(
            cfg.time_scale, "--faults", cfg.faults, "--hang-seconds", "3", "--seed",
            str(cfg.seed),
        ) as url:  # fmt: skip
            await system.start_workers(
                "soak", cfg.workers, url, FIXSTREAM_LLM_TIMEOUT="2",
                FIXSTREAM_LLM_MAX_ATTEMPTS="8", FIXSTREAM_STUCK_AFTER_S=str(cfg.stuck_after_s),
            )  # fmt: skip
            bugs = example_bugs(cfg.bugs, "soak")
            submitted = {b.bug_id for b in bugs}
            stop, first_fix = asyncio.Event(), asyncio.Event()
            tasks = _start_chaos(system, cfg, stop, first_fix, chaos)
            try:
                await _submit_and_wait(system.settings, cfg, bugs, first_fix)
            finally:
                stop.set()
                first_fix.set()
                await asyncio.gather(*tasks)
            await asyncio.sleep(5)  # a duplicate would show up now
            offsets = await settled_offsets(system.settings, SETTLE_S)
            read = await read_to_end(system.settings, [*CONSUMED, FIXES, DLQ])
    finally:
        await asyncio.to_thread(system.close)
    records = [Record.of(r) for r in read]
    _keep(cfg.out / "records.jsonl.gz", records)
    accounts = account(records, submitted).as_json()
    results = {
        "workers": cfg.workers,
        "kills": chaos.kills,
        "joins": chaos.joins,
        "unready_workers": chaos.unready,
        "broker_paused_s": round(chaos.broker_paused_s, 1),
        "faults": cfg.faults,
        "seconds": time.perf_counter() - started,
        **accounts,
        "offsets": offsets,
        "unconsumed": unconsumed(records, offsets),
    }
    results["must_be_zero"] = must_be_zero(results)
    (cfg.out / "soak.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return results


def print_soak(results: dict[str, Any], console: Console) -> None:
    chaos = [f"{results['kills']} killed with SIGKILL and replaced"]
    if results["joins"]:
        chaos.append(f"{results['joins']} joins and graceful leaves")
    if results["broker_paused_s"]:
        chaos.append(f"the broker stopped {results['broker_paused_s']:.0f} s")
    title = f"fixstream soak: {results['workers']} workers, {', '.join(chaos)}"
    console.print(f"{title}, LLM faults {results['faults']}")
    topics = Table(title="every record, per topic (duplicated: effects beyond the first)")
    topics.add_column("topic")
    for column in ("produced", "processed", "dead-lettered", "lost", "duplicated"):
        topics.add_column(column, justify="right")
    for name, t in results["topics"].items():
        figures = (t["produced"], t["processed"], t["dead_lettered"], t["lost"], t["duplicated"])
        topics.add_row(name, *map(str, figures))
    topics.add_row("must be", "", "", "", "0", "")
    console.print(topics)
    sinks = results["sinks"]
    console.print(f"  sinks: {sinks[FIXES]} fix events on {FIXES}, {sinks[DLQ]} on {DLQ}")
    for name, t in results["topics"].items():
        for record in t["lost_records"]:
            console.print(f"  lost on {name}: {record}", markup=False)
    bugs = Table(title="every bug, and the group's offsets")
    bugs.add_column("figure")
    bugs.add_column("count", justify="right")
    bugs.add_column("must be")
    b, zero = results["bugs"], results["must_be_zero"]
    for name, count in (
        ("submitted", b["submitted"]), ("fixed", b["fixed"]),
        ("failed with reason", b["failed_with_reason"]),
    ):  # fmt: skip
        bugs.add_row(name, str(count), "")
    for name, count in zero.items():
        if name != "lost records":
            bugs.add_row(name, str(count), "0")
    console.print(bugs)
    for bug, why in b["lost_bugs"].items():
        console.print(f"  lost bug {bug}: {why}", markup=False)
    for bug, copies in b["redrives"].items():
        console.print(f"  re-driven bug {bug}: {', '.join(copies)}", markup=False)
    for why in results.get("unready_workers", ()):
        console.print(f"  worker crashed or not ready: {why}", markup=False)
    for where, (at, end) in results["offsets"].items():
        console.print(f"  {where}: committed {at} of {end}", markup=False)
        for record in results["unconsumed"].get(where, []):
            console.print(f"    not committed: {record}", markup=False)
    for reason, count in b["reasons"]:
        console.print(f"  failed {count}x: {reason}", markup=False)
    console.print(f"soak took {results['seconds']:.0f} s")
