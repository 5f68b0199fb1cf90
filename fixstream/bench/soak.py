"""``fixstream bench --soak``: many bugs, LLM faults, and a worker killed on a schedule.

What a downstream system relies on, counted: every bug submitted gets exactly one fix event
(fixed, or failed with its reason). Lost and duplicated events must both be zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from fixstream.bench.system import System, example_bugs
from fixstream.kafka import producer, publish, read_to_end, reader

DEFAULT_FAULTS = "error_5xx=0.1,rate_limit=0.08,hang=0.04,malformed=0.05,truncated=0.03"


@dataclass(frozen=True)
class SoakConfig:
    out: Path
    bugs: int = 100
    workers: int = 2
    faults: str = DEFAULT_FAULTS
    """Shares of simulator answers that fail (30% in all by default)."""
    kill_every_s: float = 15.0
    """A random worker is killed with SIGKILL this often, and a new one started."""
    time_scale: float = 0.05
    submit_over_s: float = 20.0
    """Bugs arrive spread over this long, so kills land while bugs are in every stage."""
    stuck_after_s: float = 300.0
    """The watchdog's limit: a bug silent this long is failed with its stage, within the run.
    A bug waiting behind a backlog is silent too: at 120 s, 200 bugs with a kill every 8 s
    had 58 failed that were only queued."""
    timeout_s: float = 900.0
    seed: int = 1


def final_counts(events: dict[str, list[dict[str, Any]]], submitted: set[str]) -> dict[str, Any]:
    """Submitted, fixed, failed with and without a reason, lost, duplicated final events."""
    firsts = {bug: evs[0] for bug, evs in events.items() if bug in submitted and evs}
    statuses = Counter(e["status"] for e in firsts.values())
    return {
        "submitted": len(submitted),
        "fixed": statuses.get("fixed", 0),
        "failed_with_reason": sum(
            1 for e in firsts.values() if e["status"] != "fixed" and e.get("reason")
        ),
        "failed_silently": sum(
            1 for e in firsts.values() if e["status"] != "fixed" and not e.get("reason")
        ),
        "lost": len(submitted - set(firsts)),
        "duplicated": sum(len(events[b]) - 1 for b in firsts),
        "statuses": dict(statuses),
        "reasons": Counter(
            e["reason"].split(":")[0][:60] for e in firsts.values() if e["status"] != "fixed"
        ).most_common(5),
    }


async def _chaos(system: System, cfg: SoakConfig, stop: asyncio.Event, kills: list) -> None:
    rng = random.Random(cfg.seed)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cfg.kill_every_s)
            return
        victim = rng.choice(system.workers)
        victim.kill()
        system.workers.remove(victim)
        kills.append(time.time())
        replacement = system.spawn(f"soak-r{len(kills)}")
        await asyncio.to_thread(replacement.wait_ready)


async def soak(cfg: SoakConfig) -> dict[str, Any]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    system = System(cfg.out, in_flight=32, profile=False)
    started = time.perf_counter()
    kills: list[float] = []
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
            stop = asyncio.Event()
            chaos = asyncio.create_task(_chaos(system, cfg, stop, kills))
            async with producer(system.settings) as out, reader(
                system.settings, ["fixes"]
            ) as fixes:  # fmt: skip
                gap = cfg.submit_over_s / max(1, len(bugs))
                for bug in bugs:
                    await publish(out, "bugs.reported", bug.bug_id, bug)
                    await asyncio.sleep(gap)
                seen: set[str] = set()
                deadline = time.monotonic() + cfg.timeout_s
                while seen < submitted and time.monotonic() < deadline:
                    for records in (await fixes.getmany(timeout_ms=500)).values():
                        seen.update(r.key.decode() for r in records)
            stop.set()
            await chaos
            await asyncio.sleep(5)  # a duplicate would show up now
            events: dict[str, list[dict[str, Any]]] = {}
            for r in await read_to_end(system.settings, ["fixes"]):
                events.setdefault(r.key.decode(), []).append(orjson.loads(r.value))
    finally:
        await asyncio.to_thread(system.close)
    results = final_counts(events, submitted) | {
        "workers": cfg.workers,
        "kills": len(kills),
        "faults": cfg.faults,
        "seconds": time.perf_counter() - started,
    }
    (cfg.out / "soak.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return results


def print_soak(results: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"fixstream soak: {results['workers']} workers, {results['kills']} killed with "
        f"SIGKILL and replaced, LLM faults {results['faults']}"
    )
    table.add_column("figure")
    table.add_column("count", justify="right")
    table.add_column("must be")
    for name, must in (
        ("submitted", ""), ("fixed", ""), ("failed_with_reason", ""),
        ("failed_silently", "0"), ("lost", "0"), ("duplicated", "0"),
    ):  # fmt: skip
        table.add_row(name.replace("_", " "), str(results[name]), must)
    console.print(table)
    for reason, count in results["reasons"]:
        console.print(f"  failed {count}x: {reason}")
    console.print(f"soak took {results['seconds']:.0f} s")
