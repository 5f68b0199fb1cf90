"""``fixstream demo``: everything embedded, the bundled examples submitted, progress shown."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from rich.console import Console

from fixstream.artifacts import ArtifactStore
from fixstream.broker import EmbeddedBroker
from fixstream.config import EXAMPLES, Settings
from fixstream.kafka import producer, publish
from fixstream.llm.simulator.process import simulator_process
from fixstream.reports import report_from_file
from fixstream.scenarios import scenario_files
from fixstream.topics import apply_topics, load_catalog
from fixstream.worker import WorkerProcess


@contextlib.contextmanager
def embedded(settings: Settings, console: Console, sim_time_scale: float) -> Iterator[Settings]:
    """The embedded defaults: a broker and the LLM simulator, unless settings name real ones."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        updates: dict[str, object] = {}
        if not settings.broker:
            broker = EmbeddedBroker(log=settings.data_dir / "broker.log")
            asyncio.run(broker.start())
            stack.callback(broker.stop)
            updates |= broker.client_settings()
            console.print(f"embedded broker (tansu, in memory) at {broker.bootstrap}")
        if not settings.llm_base_url and not settings.llm_api_key:
            scenarios = [a for f in scenario_files(EXAMPLES) for a in ("--scenario", str(f))]
            url = stack.enter_context(
                simulator_process("--time-scale", str(sim_time_scale), *scenarios)
            )
            updates["llm_base_url"] = url
            console.print(f"LLM SIMULATOR (not a real model) at {url}, time scale {sim_time_scale}")
        settings = settings.model_copy(update=updates)
        catalog = load_catalog(settings.topics_file, settings.partitions)
        asyncio.run(apply_topics(catalog, settings.bootstrap(), settings.kafka_client_options()))
        yield settings


def run_demo(settings: Settings, console: Console, timeout: float, sim_time_scale: float) -> int:
    """Returns the exit code: 0 when every example passed the last stage."""
    from fixstream.cli import follow

    reports = sorted(EXAMPLES.glob("*/report.json"))
    if not reports:
        console.print(f"[red]no examples under {EXAMPLES}")
        return 1
    with embedded(settings, console, sim_time_scale) as settings:
        console.print("starting a worker…")
        worker = WorkerProcess(settings, settings.data_dir / "worker.log")
        try:
            worker.wait_ready()
            run_id = time.strftime("%H%M%S")
            store = ArtifactStore(settings.artifact_dir)
            bugs = [
                report_from_file(p, store=store, inline_limit=settings.inline_artifact_bytes)
                for p in reports
            ]
            bugs = [b.model_copy(update={"bug_id": f"{b.bug_id}-{run_id}"}) for b in bugs]

            async def submit() -> None:
                async with producer(settings) as client:
                    for bug in bugs:
                        await publish(client, "bugs.reported", bug.bug_id, bug)

            started = time.perf_counter()
            asyncio.run(submit())
            console.print(f"submitted {len(bugs)} examples")
            ids = {b.bug_id for b in bugs}
            board = asyncio.run(follow(settings, ids, None, timeout))
            elapsed = time.perf_counter() - started
        finally:
            worker.stop()
    fixed = [b for b in ids if b in board.rows and board.rows[b].fix is not None]
    fixed = [b for b in fixed if board.rows[b].fix.status == "fixed"]  # type: ignore[union-attr]
    console.print()
    console.print(f"{len(fixed)}/{len(ids)} examples fixed end to end in {elapsed:.2f}s")
    for bug_id in sorted(ids - set(fixed)):
        row = board.rows.get(bug_id)
        why = row.why() if row else "no event at all: is the worker running?"
        console.print(f"[red]not fixed[/] {bug_id}: {why[:400]}", highlight=False)
    if len(fixed) < len(ids):
        console.print(f"worker log: {settings.data_dir / 'worker.log'}")
    return 0 if len(fixed) == len(ids) else 1
