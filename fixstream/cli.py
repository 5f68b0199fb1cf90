"""The ``fixstream`` command: settings are read here, once, and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import orjson
import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from fixstream.artifacts import ArtifactStore
from fixstream.bench import WORKLOADS as ALL
from fixstream.broker import EmbeddedBroker
from fixstream.cli_options import (
    TIME_SCALE_HELP,
    BrokerOption,
    JsonFlag,
    State,
    settings_for,
    settings_with_broker,
)
from fixstream.config import Settings
from fixstream.dlq import dlq_cli
from fixstream.errors import FixstreamError, describe_validation
from fixstream.kafka import producer, publish, read_to_end, reader
from fixstream.reports import report_from_file, report_from_flags
from fixstream.schemas import EVENTS, AnalyzedBug
from fixstream.schemas.compat import (
    SNAPSHOT_PATH,
    compatibility_report,
    load_snapshot,
    write_snapshot,
)
from fixstream.schemas.export import to_avro, to_jsonschema
from fixstream.topics import apply_topics, load_catalog
from fixstream.watch import Board
from fixstream.wire import message as wire_message

cli = typer.Typer(no_args_is_help=True, help="Bug reports in, validated fixes out.")
topics_cli = typer.Typer(no_args_is_help=True, help="Topics from topics.yaml.")
schemas_cli = typer.Typer(no_args_is_help=True, help="Event schemas.")
cli.add_typer(topics_cli, name="topics")
cli.add_typer(schemas_cli, name="schemas")
cli.add_typer(dlq_cli, name="dlq")
cache_cli = typer.Typer(no_args_is_help=True, help="The LLM, test-run and search caches.")
cli.add_typer(cache_cli, name="cache")
bench_cli = typer.Typer(help="Benchmarks against the simulator.")
cli.add_typer(bench_cli, name="bench")
console = Console()


@cli.callback()
def _settings(broker: BrokerOption = None) -> None:
    overrides = {"broker": broker} if broker else {}
    try:
        State.settings = Settings(**overrides)
    except ValidationError as exc:
        _fail(f"bad setting: {describe_validation(exc)} (FIXSTREAM_<NAME> in the environment)")
    except SettingsError as exc:
        _fail(f"bad setting: {exc} (lists and mappings are JSON in the environment)")


def _fail(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr, never a traceback (and never rich markup: it quotes input)."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


@cli.command()
def broker(port: Annotated[int, typer.Option(help="0 picks a free port.")] = 0) -> None:
    """Run the embedded Kafka-protocol broker (tansu, in memory) until Ctrl-C."""
    embedded = EmbeddedBroker(port=port or None)
    asyncio.run(embedded.start())
    console.print(f"embedded broker (tansu {embedded.version}, in memory) at {embedded.bootstrap}")
    exports = " ".join(f"FIXSTREAM_{k.upper()}={v}" for k, v in embedded.client_settings().items())
    console.print(f"export {exports}", soft_wrap=True)
    try:
        assert embedded.process is not None
        embedded.process.wait()
    except KeyboardInterrupt:
        console.print("stopping broker")
    finally:
        embedded.stop()


@topics_cli.command("apply")
def topics_apply(broker: BrokerOption = None) -> None:
    """Create missing topics and report drift (partitions or configs that differ)."""
    settings = settings_with_broker(broker)
    catalog = load_catalog(settings.topics_file, settings.partitions)
    report = asyncio.run(
        apply_topics(catalog, settings.bootstrap(), settings.kafka_client_options())
    )
    for name in report.created:
        console.print(f"created  {name}")
    for d in report.drift:
        console.print(f"[yellow]drift    {d.topic}: {d.setting} wanted {d.wanted}, is {d.actual}")
    drifted = len({d.topic for d in report.drift})
    console.print(
        f"{len(report.created)} created, {len(report.unchanged)} unchanged, {drifted} drifted"
    )
    if report.drift:
        raise typer.Exit(1)


@schemas_cli.command("export")
def schemas_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonschema or avro")] = "jsonschema",
    out: Annotated[Path | None, typer.Option(help="Directory; default prints to stdout.")] = None,
) -> None:
    """Write every event schema as JSON Schema or Avro."""
    exporters = {"jsonschema": to_jsonschema, "avro": to_avro}
    if fmt not in exporters:
        raise typer.BadParameter(f"unknown format {fmt!r}; known: {', '.join(exporters)}")
    suffix = {"jsonschema": "schema.json", "avro": "avsc"}[fmt]
    schemas = {name: exporters[fmt](model) for name, model in EVENTS.items()}
    if out is None:
        typer.echo(orjson.dumps(schemas, option=orjson.OPT_INDENT_2).decode())
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / f"{name}.{suffix}").write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2))
    console.print(f"wrote {len(schemas)} {fmt} schemas to {out}")


@schemas_cli.command("check")
def schemas_check(
    update: Annotated[
        bool, typer.Option(help="Record the current schemas as the snapshot.")
    ] = False,
) -> None:
    """Fail on backward-incompatible changes against the committed snapshot."""
    if update and not SNAPSHOT_PATH.exists():
        write_snapshot(EVENTS)
    problems = compatibility_report(EVENTS, load_snapshot())
    for problem in problems:
        console.print(f"[red]{problem}")
    if problems:
        raise typer.Exit(1)
    if update:
        write_snapshot(EVENTS)
        console.print("snapshot updated")
    else:
        console.print(f"{len(EVENTS)} schemas backward compatible with the snapshot")


@cli.command()
def submit(
    file: Annotated[Path | None, typer.Argument(help="A bug report as JSON.")] = None,
    repo: Annotated[Path | None, typer.Option(help="Repository path.")] = None,
    title: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str, typer.Option()] = "",
    log: Annotated[list[Path] | None, typer.Option(help="A log file (repeatable).")] = None,
    test_command: Annotated[str | None, typer.Option(help="e.g. 'python -m pytest -q'")] = None,
    bug: Annotated[
        str | None, typer.Option(help="The bug's id (default: from the report).")
    ] = None,
    wire: Annotated[
        bool,
        typer.Option(
            "--wire",
            help="Print the message as any Kafka client must send it (topic, key, headers, "
            "value) instead of publishing it.",
        ),
    ] = False,
    broker: BrokerOption = None,
) -> None:
    """Publish a bug report to bugs.reported, from a JSON file or from flags."""
    settings = State.settings if wire else settings_with_broker(broker)
    if file is not None:
        report = report_from_file(
            file,
            bug,
            store=ArtifactStore(settings.artifact_dir),
            inline_limit=settings.inline_artifact_bytes,
        )
    elif repo is not None and title is not None:
        report = report_from_flags(
            repo=repo,
            title=title,
            description=description,
            logs=log or [],
            test_command=shlex.split(test_command) if test_command else None,
            store=ArtifactStore(settings.artifact_dir),
            inline_limit=settings.inline_artifact_bytes,
            bug_id=bug,
        )
    else:
        raise typer.BadParameter("give a JSON file, or --repo and --title")
    if wire:
        typer.echo(orjson.dumps(wire_message("bugs.reported", report.bug_id, report)).decode())
        return

    async def send() -> None:
        async with producer(settings) as client:
            await publish(client, "bugs.reported", report.bug_id, report)

    asyncio.run(send())
    typer.echo(report.bug_id)


async def follow(
    settings: Settings,
    bug_ids: set[str] | None,
    until_stage: str | None,
    timeout: float,
    live: bool = True,
) -> Board:
    """Show progress until every bug in ``bug_ids`` ended (or passed ``until_stage``)."""
    board = Board()
    deadline = time.monotonic() + timeout
    topics = ["bugs.status", "fixes", "bugs.dlq"]
    async with reader(settings, topics) as consumer:
        with Live(board.table(), console=console, auto_refresh=False, transient=not live) as view:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        board.apply(r.topic, r.key, r.value, list(r.headers))
                view.update(board.table(), refresh=True)
                if bug_ids and board.all_reached(bug_ids, until_stage):
                    break
    return board


@cli.command()
def watch(
    bug: Annotated[list[str] | None, typer.Option(help="Stop when these bugs end.")] = None,
    until_stage: Annotated[str | None, typer.Option(help="...or passed this stage.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds.")] = 3600.0,
    broker: BrokerOption = None,
) -> None:
    """Follow status and fix events live."""
    settings = settings_with_broker(broker)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(settings, set(bug or []) or None, until_stage, timeout))


@cli.command()
def status(
    bug: Annotated[list[str] | None, typer.Argument(help="Bug ids (default: every bug).")] = None,
    broker: BrokerOption = None,
) -> None:
    """Where every bug is: each stage's state, and how it ended (from the topics, no worker
    needed). With one bug id: its whole history, event by event."""
    settings = settings_with_broker(broker)
    records = asyncio.run(read_to_end(settings, ["bugs.status", "fixes", "bugs.dlq"]))
    board = Board()
    for r in records:
        board.apply(r.topic, r.key, r.value, list(r.headers))
    wanted = set(bug or ())
    missing = wanted - set(board.rows)
    board.rows = {k: v for k, v in board.rows.items() if not wanted or k in wanted}
    console.print(board.table())
    if len(wanted) == 1 and not missing:
        history = Table("at", "stage", "state", "worker", "message", title="history")
        (bug_id,) = wanted
        for r in records:
            if r.topic == "bugs.status" and r.key == bug_id.encode():
                event = orjson.loads(r.value)
                at = time.strftime("%H:%M:%S", time.localtime(r.timestamp / 1000))
                history.add_row(at, event["stage"], event["state"], event.get("worker", ""),
                                event.get("message", "")[:120])  # fmt: skip
        console.print(history)
    if missing:
        console.print(f"[red]no events for: {', '.join(sorted(missing))}")
        raise typer.Exit(1)


@cli.command()
def worker(
    loglevel: str = "info",
    profile: Annotated[
        Path | None, typer.Option(help="Write a cProfile (pstats) of the run here on exit.")
    ] = None,
    broker: BrokerOption = None,
) -> None:
    """Run a stream worker (all stages); start more to scale out."""
    from fixstream.worker import run_worker

    run_worker(settings_with_broker(broker), loglevel, profile)


@cli.command()
def up(
    loglevel: str = "info",
    time_scale: Annotated[float, typer.Option(help=TIME_SCALE_HELP)] = 1.0,
) -> None:
    """Run a worker, starting the embedded broker and LLM simulator when none is configured."""
    from fixstream.demo import embedded
    from fixstream.worker import run_worker

    with embedded(State.settings, console, time_scale) as settings:
        console.print(f"export FIXSTREAM_BROKER={settings.broker}")
        run_worker(settings, loglevel)


WorkerOption = Annotated[
    str | None,
    typer.Option(help="A worker's web address, for a memory cache (default: web_host:web_port)."),
]


async def _cache_call(settings: Settings, worker: str | None, path: str, params: dict) -> dict:
    """Run a cache command where the cache lives: Redis directly, or a worker's memory."""
    from fixstream.llm.build import cache_for

    cache = cache_for(settings)
    if cache is None:
        raise typer.BadParameter("the cache is off (FIXSTREAM_CACHE=off)")
    if cache.backend.name == "redis" and worker is None:
        try:
            if path == "stats":
                return (await cache.stats()).as_dict()
            return {"cleared": await cache.clear(**params)}
        finally:
            await cache.aclose()
    import aiohttp

    url = worker or f"http://{settings.web_host}:{settings.web_port}"
    query = {k: v for k, v in params.items() if v is not None}
    async with aiohttp.ClientSession() as http:
        method = http.get if path == "stats" else http.post
        async with method(f"{url}/cache/{path}/", params=query) as response:
            response.raise_for_status()
            return orjson.loads(await response.read())


@cache_cli.command("stats")
def cache_stats(
    worker: WorkerOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Entries, bytes, and per cache: hits, misses, tokens and seconds saved."""
    from fixstream.cache import CACHES, CacheStats

    raw = asyncio.run(_cache_call(State.settings, worker, "stats", {}))
    if as_json:
        typer.echo(orjson.dumps(raw).decode())
        return
    stats = CacheStats.from_dict(raw)
    console.print(f"{stats.backend}: {stats.entries} entries, {stats.bytes / 1024:.1f} KiB")
    table = Table("cache", "hits", "misses", "hit rate", "tokens saved", "seconds saved")
    for name in CACHES:
        c = stats.counters.get(name, {})
        table.add_row(
            name, f"{c.get('hits', 0):.0f}", f"{c.get('misses', 0):.0f}",
            f"{stats.hit_rate(name):.0%}", f"{c.get('tokens_saved', 0):,.0f}",
            f"{c.get('seconds_saved', 0):.1f}",
        )  # fmt: skip
    console.print(table)


@cache_cli.command("clear")
def cache_clear(
    bug: Annotated[str | None, typer.Option(help="Only this bug's entries.")] = None,
    repo: Annotated[str | None, typer.Option(help="Only this repository's (path or URL).")] = None,
    worker: WorkerOption = None,
) -> None:
    """Drop cached entries: one bug's, one repository's, or all."""
    if bug and repo:
        raise typer.BadParameter("--bug or --repo, not both")
    result = asyncio.run(_cache_call(State.settings, worker, "clear", {"bug": bug, "repo": repo}))
    what = f"bug {bug}" if bug else f"repository {repo}" if repo else "everything"
    console.print(f"cleared {result['cleared']} entries ({what})")


def _fault_rates(text: str) -> dict[str, float]:
    """``kind=rate,kind=rate`` into a mapping (kinds: error_5xx, hang, malformed, ...)."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, rate = part.partition("=")
        rates[kind.strip()] = float(rate)
    return rates


@cli.command()
def sim(
    host: str = "127.0.0.1",
    port: int = 8000,
    time_scale: Annotated[float, typer.Option(help=TIME_SCALE_HELP)] = 1.0,
    tpm: Annotated[int | None, typer.Option(help="Tokens per (scaled) minute.")] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per (scaled) minute.")] = None,
    faults: Annotated[
        str, typer.Option(help="e.g. error_5xx=0.1,hang=0.05,malformed=0.1,rate_limit=0.05")
    ] = "",
    hang_seconds: float = 30.0,
    scenario: Annotated[list[Path] | None, typer.Option(help="Scenario file (repeatable).")] = None,
    examples: Annotated[
        bool, typer.Option(help="Answer the bundled examples (their scenario files).")
    ] = False,
    config: Annotated[Path | None, typer.Option(help="A SimulatorConfig YAML/JSON file.")] = None,
    seed: int = 0,
) -> None:
    """Run the LLM SIMULATOR: an OpenAI-compatible server with the talk's latency model."""
    import logging

    from fixstream.config import EXAMPLES
    from fixstream.llm.simulator import FaultRates, SimulatorConfig, serve_forever
    from fixstream.scenarios import scenario_files

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = SimulatorConfig.from_file(config) if config else SimulatorConfig()
    overrides: dict[str, object] = {
        "time_scale": time_scale,
        "hang_seconds": hang_seconds,
        "seed": seed,
        "scenario_paths": [
            *base.scenario_paths,
            *(scenario or []),
            *(scenario_files(EXAMPLES) if examples else []),
        ],
    }
    if tpm is not None:
        overrides["tpm"] = tpm
    if rpm is not None:
        overrides["rpm"] = rpm
    if faults:
        overrides["faults"] = FaultRates(**_fault_rates(faults))
    settings = SimulatorConfig.model_validate({**base.model_dump(), **overrides})
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(settings, host, port))


VERDICT_TOKENS = 150
"""Output tokens a root-cause verdict takes (ChunkVerdict: a bool, a score, two sentences)."""


def _bug_workload(path: Path, settings: Settings) -> tuple[int, int, int, int, AnalyzedBug]:
    """(raw report tokens, input tokens, output tokens, calls) of a bug's root-cause scatter,
    from the analysis stage's regular program: real chunks, real counts, no tokens spent."""
    from fixstream.streams.analysis import AnalysisConfig, analyse
    from fixstream.summaries import render
    from fixstream.tokens import count_tokens

    store = ArtifactStore(settings.artifact_dir)
    report = report_from_file(path, store=store, inline_limit=settings.inline_artifact_bytes)
    cfg = AnalysisConfig(store=store, checkout_dir=settings.checkout_dir,
                         chunk_budget=settings.chunk_token_budget)  # fmt: skip
    bug = asyncio.run(analyse(report, cfg))
    logs = [asyncio.run(store.text_of(a)) for a in bug.report.artifacts]
    raw = count_tokens("\n".join([report.title, report.description, *logs]))
    summary = count_tokens(render(bug, None))
    calls = max(1, len(bug.chunks))
    input_tokens = sum(c.tokens for c in bug.chunks) + calls * summary
    return raw, input_tokens, calls * VERDICT_TOKENS, calls, bug


def _environment_cost(bug: AnalyzedBug, settings: Settings) -> str:
    """Whether the bug's environment is ready, or what building it is likely to cost (the
    builds already in the store, measured)."""
    from fixstream.sandbox.environments import Environments

    envs = Environments.of(settings)
    repo = bug.report.repo
    p = envs.plan(Path(bug.repo_dir), repo.environment, repo.test_command)
    if envs.ready(p.key):
        return f"environment {p.key}: ready (a lookup, no build)"
    seconds = envs.build_seconds()
    files = ", ".join(p.files) or "no dependency files"
    guess = "no build measured yet"
    if seconds:
        guess = (f"the {len(seconds)} builds in the store took {statistics.median(seconds):.1f} s "
                 f"(median), {max(seconds):.1f} s at most")  # fmt: skip
    return f"environment {p.key}: to build first ({files}); {guess}"


@cli.command()
def plan(
    input_tokens: int = 100_000,
    output_tokens: int = 10_000,
    parallel: Annotated[int, typer.Option(min=1, help="Calls in flight at once.")] = 16,
    chunks: Annotated[int | None, typer.Option(help="Calls to cut the work into.")] = None,
    model: Annotated[str, typer.Option(help="A simulator profile for the timings.")] = "gpt-4.1",
    tpm: int | None = None,
    rpm: int | None = None,
    report: Annotated[
        Path | None, typer.Option(help="A bug report: estimate its real root cause.")
    ] = None,
) -> None:
    """Do your own math: one LLM call against many in parallel, before spending a token."""

    from fixstream.llm.accounting import cost_usd
    from fixstream.llm.simulator import builtin_profiles
    from fixstream.planner import Profile
    from fixstream.planner import plan as make_plan

    profiles = builtin_profiles()
    if model not in profiles:
        raise typer.BadParameter(f"unknown model {model!r}; known: {', '.join(profiles)}")
    sim = profiles[model]
    profile = Profile(
        prefill_ms_per_input_token=sim.prefill_ms_per_input_token,
        output_tokens_per_second=sim.output_tokens_per_second,
        base_latency_ms=sim.base_latency_ms if report else 0.0,
    )
    if report is not None:
        raw, input_tokens, output_tokens, chunks, analyzed = _bug_workload(report, State.settings)
        console.print(_environment_cost(analyzed, State.settings))
        console.print(
            f"{report}: report and logs {raw:,} tokens; root cause sends {input_tokens:,} "
            f"tokens in {chunks} chunk calls and gets about {output_tokens:,} back"
        )
    result = make_plan(profile, input_tokens, output_tokens, parallel, chunks=chunks, tpm=tpm,
                       rpm=rpm)  # fmt: skip
    table = Table(title=f"{input_tokens:,} input / {output_tokens:,} output tokens on {model}")
    for column in ("", "calls", "prefill s", "decode s", "total s"):
        table.add_column(column, justify="right")
    for name, leg in (("one call", result.one_call), ("split", result.split)):
        table.add_row(name, f"{leg.calls} ({leg.parallel} at once)", f"{leg.prefill_s:.1f}",
                      f"{leg.decode_s:.1f}", f"{leg.total_s:.1f}")  # fmt: skip
    console.print(table)
    console.print(f"speedup {result.speedup:.1f}x")
    if result.rate_bound_s is not None:
        console.print(f"the TPM/RPM limits need at least {result.rate_bound_s:.1f} s: the split "
                      f"takes {result.split_with_limits_s:.1f} s")  # fmt: skip
    prices = State.settings.llm_prices
    console.print(f"cost ${cost_usd(prices, model, input_tokens, output_tokens):.4f}")


examples_cli = typer.Typer(no_args_is_help=True, help="The bundled examples.")
cli.add_typer(examples_cli, name="examples")


@examples_cli.command("scenarios")
def examples_scenarios() -> None:
    """Regenerate each example's simulator scenario from its fix.json."""
    from fixstream.config import EXAMPLES
    from fixstream.scenarios import write_example_scenarios

    for path in write_example_scenarios(EXAMPLES):
        console.print(f"wrote {path}")


@bench_cli.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    time_scale: Annotated[
        float, typer.Option(help="Simulator time scale: 0.05 runs LLM time 20x faster.")
    ] = 0.05,
    pipeline_time_scale: Annotated[
        float, typer.Option(help="Simulator time scale for W3-W5 (real test runs between calls).")
    ] = 0.5,
    bugs: Annotated[int, typer.Option(help="W3/W4 batch size.")] = 50,
    monolith_bugs: Annotated[int, typer.Option(help="Bugs the one-at-a-time run takes.")] = 10,
    in_flight: Annotated[int, typer.Option(help="Bugs in flight per stage per worker.")] = 32,
    only: Annotated[str, typer.Option(help="Workloads, e.g. W1,W3.")] = ",".join(ALL),
    out: Annotated[Path, typer.Option(help="Where bench.json and the pictures go.")] = Path(
        "var/bench"
    ),
    profile: Annotated[
        bool, typer.Option(help="cProfile the workers and the bench (pstats in --out).")
    ] = False,
    soak: Annotated[
        bool,
        typer.Option(
            help="Instead: --bugs bugs under LLM faults with workers killed on a "
            "schedule; accounts for every record of every topic (exit 1 on any loss)."
        ),
    ] = False,
    kill_every: Annotated[
        float, typer.Option(help="Soak: seconds between SIGKILLs of a worker (0: none).")
    ] = 15.0,
    workers: Annotated[int, typer.Option(min=1, help="Soak: workers that run the bugs.")] = 2,
    joiner: Annotated[
        float,
        typer.Option(
            min=0,
            help="Soak: one more worker joins, leaves (SIGTERM) this many seconds later and "
            "joins again, over and over (0: none).",
        ),
    ] = 0.0,
    pause_broker: Annotated[
        float,
        typer.Option(
            min=0,
            help="Soak: once, at the first fix event, stop the broker (SIGSTOP) this many "
            "seconds (0: never).",
        ),
    ] = 0.0,
    faults: Annotated[str, typer.Option(help="Soak: simulator fault shares.")] = "",
    wheelhouse: Annotated[
        Path | None,
        typer.Option(
            help="W7: build environments offline from the wheels in this directory "
            "(uv --no-index --find-links); default: the package index.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    env_lookups: Annotated[int, typer.Option(help="W7: warm lookups per example.")] = 200,
    sandbox_runs: Annotated[
        int, typer.Option(help="W7: runs of each command, bare and sandboxed.")
    ] = 30,
) -> None:
    """W1-W7: the talk's figures against fixstream's, side by side in one run."""
    if ctx.invoked_subcommand is not None:
        return
    if soak:
        from fixstream.bench.soak import DEFAULT_FAULTS, SoakConfig, failures, print_soak
        from fixstream.bench.soak import soak as run_soak

        soak_cfg = SoakConfig(
            out=out.resolve(), bugs=bugs, workers=workers, kill_every_s=kill_every,
            joiner_every_s=joiner, pause_broker_s=pause_broker, faults=faults or DEFAULT_FAULTS,
            time_scale=time_scale, submit_over_s=min(20.0, 0.3 * bugs),
            stuck_after_s=max(300.0, 4.0 * bugs), timeout_s=max(900.0, 8.0 * bugs),
        )  # fmt: skip
        console.print(f"LLM SIMULATOR (not a real model), soak; output in {out}")
        results = asyncio.run(run_soak(soak_cfg))
        print_soak(results, console)
        if failed := failures(results):
            _fail(f"soak failed, must be 0: {failed} (soak.json in {out})", 1)
        return
    from fixstream.bench.workloads import BenchConfig, print_report, run
    from fixstream.worker import profiled

    chosen = tuple(w.strip().upper() for w in only.split(",") if w.strip())
    if unknown := set(chosen) - set(ALL):
        raise typer.BadParameter(f"unknown workloads {sorted(unknown)}; known: {ALL}")
    cfg = BenchConfig(
        out=out.resolve(), time_scale=time_scale, pipeline_time_scale=pipeline_time_scale,
        bugs=bugs, monolith_bugs=monolith_bugs, in_flight=in_flight, workloads=chosen,
        profile=profile, wheelhouse=wheelhouse.resolve() if wheelhouse else None,
        env_lookups=env_lookups, sandbox_runs=sandbox_runs,
    )  # fmt: skip
    if set(chosen) - {"W7"}:
        console.print(f"LLM SIMULATOR (not a real model); output in {out}")
    with profiled(cfg.out / "bench.prof" if profile else None):
        results = asyncio.run(run(cfg))
    print_report(results, console)
    console.print(f"figures: {cfg.out / 'bench.json'}")
    if profile:
        print_profile_top(sorted(cfg.out.glob("*.prof")))


def print_profile_top(paths: list[Path], limit: int = 15) -> None:
    """The functions that took the most time of their own, per profile."""
    import io
    import pstats

    for path in paths:
        buffer = io.StringIO()
        pstats.Stats(str(path), stream=buffer).sort_stats("tottime").print_stats(limit)
        console.print(f"[bold]{path.name}[/bold]")
        console.print(buffer.getvalue().split("\n", 6)[-1], markup=False, highlight=False)


@bench_cli.command("gateway")
def bench_gateway(
    levels: Annotated[str, typer.Option(help="Concurrency levels.")] = "1,4,16,64",
    calls_per_slot: Annotated[int, typer.Option(help="Calls per concurrent slot.")] = 4,
    model: str = "gpt-4.1",
    time_scale: Annotated[float, typer.Option(help=TIME_SCALE_HELP)] = 0.1,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per call.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Write the results here, as JSON.")] = None,
) -> None:
    """Output tokens/s at each concurrency, and the gateway's own overhead per call."""

    from fixstream.bench.gateway import run_gateway_bench

    results = run_gateway_bench(
        [int(x) for x in levels.split(",")], calls_per_slot, model, time_scale, max_tokens
    )
    table = Table(title=f"gateway vs simulator ({model}, time scale {time_scale})")
    for column in (
        "concurrent",
        "calls",
        "wall s",
        "out tok/s",
        "tok/s unscaled",
        "speedup",
        "overhead p50 ms",
        "overhead p99 ms",
    ):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            str(r.concurrency),
            str(r.calls),
            f"{r.wall_s:.2f}",
            f"{r.output_tps:.0f}",
            f"{r.output_tps_unscaled:.1f}",
            f"{r.speedup:.1f}x",
            f"{r.overhead_ms_p50:.1f}",
            f"{r.overhead_ms_p99:.1f}",
        )
    console.print(table)
    console.print(
        "overhead = measured latency - the latency model's prefill + decode "
        "(HTTP, JSON, openai client and gateway), in real milliseconds"
    )
    if out:
        out.write_bytes(orjson.dumps([r.model_dump() for r in results], option=orjson.OPT_INDENT_2))


@cli.command()
def doctor(
    as_json: JsonFlag = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each network check may wait.")
    ] = 5.0,
    broker: BrokerOption = None,
) -> None:
    """Check this machine can run the main job: broker, LLM endpoint, sandbox, environment
    builder, Redis. One line per part; exit 1 when any part FAILs."""
    from fixstream.doctor import exit_code, quiet_logs, render, run_checks, summary

    with quiet_logs():
        checks = asyncio.run(run_checks(settings_for(broker), timeout))
    if as_json:
        typer.echo(orjson.dumps([c.as_json() for c in checks]).decode())
    else:
        typer.echo(render(checks))
        typer.echo(summary(checks))
    raise typer.Exit(exit_code(checks))


@cli.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every example.")] = 300.0,
    time_scale: Annotated[float, typer.Option(help=TIME_SCALE_HELP)] = 0.2,
) -> None:
    """Start everything embedded, submit the bundled examples, show them go through."""
    from fixstream.demo import run_demo

    raise typer.Exit(run_demo(State.settings, console, timeout, time_scale))


def main() -> None:
    """The CLI. An error is one line on stderr and exit 1, never a traceback: a broker or a
    worker that does not answer, a file that is not there, a bad value."""
    try:
        cli()
    except (KafkaError, OSError, FixstreamError, ValueError) as exc:
        _exit_with(str(exc) or type(exc).__name__)  # aiokafka's errors name their class


def _exit_with(message: str) -> NoReturn:
    typer.echo(f"fixstream: {message.splitlines()[0] if message else 'failed'}", err=True)
    sys.exit(1)
