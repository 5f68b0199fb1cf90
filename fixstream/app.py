"""The app factory: the whole wiring of a worker in one short place."""

from __future__ import annotations

import logging

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from fixstream import faust_hooks
from fixstream.artifacts import ArtifactStore
from fixstream.cache import Cache
from fixstream.codec import register_codecs
from fixstream.config import Settings
from fixstream.llm import Gateway
from fixstream.llm.build import build_gateway, cache_for
from fixstream.sandbox.environments import Environments
from fixstream.sandbox.workspace import default_root
from fixstream.schemas import BugReport, PatchedBug
from fixstream.streams import analysis, fix, reproduce, root_cause, validate
from fixstream.streams.deadletters import DeadLetters
from fixstream.streams.finals import Finals
from fixstream.streams.knobs import StageKnobs
from fixstream.streams.scatter import ScatterGather
from fixstream.streams.stage import Handler, Outcome, Stage
from fixstream.streams.topics import Topics
from fixstream.telemetry import WORKER_ID, Telemetry, install
from fixstream.topics import load_catalog

log = logging.getLogger(__name__)


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """``settings.kafka_client_options()`` in Faust's form, so the worker's producer,
    consumers and topic creation use the protocol, mechanism, user and CA the CLI does."""
    options = settings.kafka_client_options()
    if settings.security_protocol.startswith("SASL_"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            mechanism=settings.sasl_mechanism or "PLAIN",
            ssl_context=options.get("ssl_context"),  # SASL_SSL: set; SASL_PLAINTEXT: None
        )
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return None


def observe(app: faust.App, telemetry: Telemetry) -> None:
    """Faust's metrics and ours on one ``/metrics`` page; spans flushed off the loop."""
    setup_prometheus_sensors(app, registry=telemetry.registry, name_prefix="faust")

    @app.timer(interval=1.0, name="fixstream.telemetry")
    async def _tick() -> None:
        monitor = app.monitor
        telemetry.lag(monitor.tp_end_offsets or {}, monitor.tp_committed_offsets or {})
        await telemetry.flush()

    @app.service
    class _FlushOnStop(faust.Service):
        async def on_stop(self) -> None:
            await telemetry.flush()


def cache_pages(app: faust.App, cache: Cache) -> None:
    """``/cache/stats/`` and ``/cache/clear/`` on the worker's web port, for a cache that lives
    in this worker's memory (``fixstream cache ... --worker URL``)."""

    @app.page("/cache/stats/")
    class _Stats(faust.web.View):
        async def get(self, request: faust.web.Request) -> faust.web.Response:
            return self.json((await cache.stats()).as_dict())

    @app.page("/cache/clear/")
    class _Clear(faust.web.View):
        async def post(self, request: faust.web.Request) -> faust.web.Response:
            query = request.query
            cleared = await cache.clear(bug=query.get("bug"), repo=query.get("repo"))
            return self.json({"cleared": cleared})


def create_app(settings: Settings, llm: Gateway | None = None) -> faust.App:
    """A Faust app with every topic declared and every stage agent registered."""
    cache = cache_for(settings)
    llm = llm or build_gateway(settings, cache)
    register_codecs(settings.max_message_bytes)
    faust_hooks.install(
        fetch_wait_ms=settings.fetch_max_wait_ms,
        rebalance_wait_s=settings.rebalance_wait_s,
        lost_leader_rounds=settings.lost_leader_rounds,
    )
    catalog = load_catalog(settings.topics_file, settings.partitions)
    partitions = catalog["bugs.reported"].partitions
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap()}",
        broker_credentials=_credentials(settings),
        broker_session_timeout=settings.broker_session_timeout,
        processing_guarantee=settings.processing_guarantee,
        # under exactly_once a hop's output is read once the sender commits: commit as
        # often as Kafka Streams does then (100 ms); at_least_once keeps Faust's 2.8 s
        broker_commit_interval=0.1 if settings.processing_guarantee == "exactly_once" else 2.8,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
        store=settings.store,
        datadir=str(settings.data_dir / "faust" / WORKER_ID),
        topic_partitions=partitions,
        topic_disable_leader=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=4 * settings.max_message_bytes,
        producer_max_batch_size=settings.producer_batch_bytes,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_host=settings.web_host,
    )
    observe(app, install(Telemetry(trace_dir=settings.trace_dir)))
    if cache is not None:
        cache_pages(app, cache)
    topics = Topics(app, catalog)
    store = ArtifactStore(settings.artifact_dir)
    dead_letters = DeadLetters(
        topics["bugs.dlq"], settings.app_id, store, max_value_bytes=2 * settings.max_message_bytes
    )
    topics.wire_dead_letters(dead_letters)

    @app.on_rebalance_complete.connect
    async def _announce(sender: faust.App, **_: object) -> None:
        assigned = sender.consumer.assignment() if sender.consumer else set()
        log.info("fixstream worker ready: %d partitions assigned", len(assigned))

    cfg = analysis.AnalysisConfig(
        store=store,
        checkout_dir=settings.checkout_dir,
        chunk_budget=settings.chunk_token_budget,
        max_log_tokens=settings.max_log_tokens,
        max_files=settings.max_candidate_files,
        max_chunks=settings.max_chunks,
        inline_limit=settings.inline_artifact_bytes,
        cache=cache,
    )
    knobs = StageKnobs(
        workspaces=settings.workspace_dir or default_root(),
        envs=Environments.of(settings),
        test_timeout_s=settings.test_timeout_s,
        test_memory_mb=settings.test_memory_mb,
        test_disk_mb=settings.test_disk_mb,
        sandbox=settings.sandbox,
        reproduce_attempts=settings.reproduce_attempts,
        fix_attempts=settings.fix_attempts,
        cache=cache,
    )
    scatter = ScatterGather(
        app, topics, llm, dead_letters, partitions=partitions,
        deadline_s=settings.gather_deadline_s, chunk_concurrency=settings.chunk_concurrency,
        gather_concurrency=settings.agent_concurrency,
    )  # fmt: skip
    finals = Finals(
        app, topics, settings, partitions=partitions, stuck_after_s=settings.stuck_after_s
    )

    def stage(name: str, handler: Handler, source: str, sink: str) -> Stage:
        s = Stage(name, handler, sink, topics, dead_letters, finals.published.decided_after)
        s.register(app, topics.stage_input(source), settings.agent_concurrency)
        return s

    async def run_analysis(report: BugReport) -> Outcome:
        return await analysis.summarise(await analysis.analyse(report, cfg), llm)

    async def run_validate(bug: PatchedBug) -> Outcome | None:
        # an optimisation only: the finalizer drops repeats anyway
        if finals.published.final(bug.bug_id):
            log.info("validate: %s already has its fix event; dropping a redelivery", bug.bug_id)
            return None
        return await validate.validate(bug, knobs)

    stage(analysis.STAGE, run_analysis, "bugs.reported", "bugs.analyzed")
    stage(
        reproduce.STAGE, lambda bug: reproduce.reproduce(bug, llm, knobs),
        "bugs.analyzed", "bugs.reproduced",
    )  # fmt: skip
    rc = stage(
        root_cause.STAGE, lambda bug: root_cause.scatter(bug, scatter, knobs),
        "bugs.reproduced", "bugs.rootcaused",
    )  # fmt: skip
    scatter.register(rc, lambda *a: root_cause.finish(*a, llm=llm, knobs=knobs))
    fx = stage(
        fix.STAGE, lambda bug: fix.scatter(bug, scatter, knobs), "bugs.rootcaused", "bugs.patched"
    )
    scatter.register(fx, lambda *a: fix.finish(*a, llm=llm, knobs=knobs))
    stage(validate.STAGE, run_validate, "bugs.patched", "bugs.final")
    return app
