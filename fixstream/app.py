"""The app factory: the whole wiring of a worker in one short place."""

from __future__ import annotations

import logging

import faust

from fixstream.artifacts import ArtifactStore
from fixstream.codec import register_codecs
from fixstream.config import Settings
from fixstream.llm import Gateway
from fixstream.llm.build import build_gateway
from fixstream.schemas import BugReport
from fixstream.streams import analysis
from fixstream.streams.deadletters import DeadLetters
from fixstream.streams.stage import WORKER_ID, Handler, Outcome, Stage
from fixstream.streams.topics import Topics
from fixstream.topics import load_catalog

log = logging.getLogger(__name__)


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    if settings.sasl_mechanism:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        ssl = settings.kafka_client_options().get("ssl_context")
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=ssl,
        )
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(settings.kafka_client_options()["ssl_context"])
    return None


def create_app(settings: Settings, llm: Gateway | None = None) -> faust.App:
    """A Faust app with every topic declared and every stage agent registered."""
    llm = llm or build_gateway(settings)
    register_codecs(settings.max_message_bytes)
    catalog = load_catalog(settings.topics_file, settings.partitions)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap()}",
        broker_credentials=_credentials(settings),
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
        store=settings.store,
        datadir=str(settings.data_dir / "faust" / WORKER_ID),
        topic_partitions=catalog["bugs.reported"].partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=4 * settings.max_message_bytes,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_host=settings.web_host,
    )
    topics = Topics(app, catalog)
    store = ArtifactStore(settings.artifact_dir)
    dead_letters = DeadLetters(
        topics["bugs.dlq"], settings.app_id, store, max_value_bytes=2 * settings.max_message_bytes
    )
    topics.wire_dead_letters(dead_letters)

    cfg = analysis.AnalysisConfig(
        store=store,
        checkout_dir=settings.checkout_dir,
        chunk_budget=settings.chunk_token_budget,
        max_log_tokens=settings.max_log_tokens,
        max_files=settings.max_candidate_files,
        max_chunks=settings.max_chunks,
        inline_limit=settings.inline_artifact_bytes,
    )

    async def run_analysis(report: BugReport) -> Outcome:
        return await analysis.summarise(await analysis.analyse(report, cfg), llm)

    @app.on_rebalance_complete.connect
    async def _announce(sender: faust.App, **_: object) -> None:
        assigned = sender.consumer.assignment() if sender.consumer else set()
        log.info("fixstream worker ready: %d partitions assigned", len(assigned))

    def stage(name: str, handler: Handler, source: str, sink: str) -> None:
        Stage(
            name,
            handler,
            topics[sink],
            topics["bugs.status"],
            topics["bugs.summaries"],
            dead_letters,
        ).register(app, topics[source], settings.agent_concurrency)

    stage(analysis.STAGE, run_analysis, "bugs.reported", "bugs.analyzed")
    return app
