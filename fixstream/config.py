"""Settings, read once from the environment (``FIXSTREAM_*``) and flags, then passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fixstream.llm.accounting import DEFAULT_PRICES, Price
from fixstream.llm.cache import DEFAULT_SEMANTIC

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLES = PACKAGE_DIR / "examples"
"""The bundled example bugs: package data, so that an installed wheel has them too."""
TOPICS_FILE = PACKAGE_DIR / "topics.yaml"


def default_data_dir() -> Path:
    """``var/`` beside the code in a source checkout; the user's data directory when installed
    (site-packages is no place for state, and may not be writable)."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / "var"
    return platformdirs.user_data_path("fixstream")


class Settings(BaseSettings):
    """Every knob of a worker. Real Kafka needs nothing but ``broker`` (and security)."""

    model_config = SettingsConfigDict(
        env_prefix="FIXSTREAM_", frozen=True, extra="ignore", populate_by_name=True
    )

    broker: str | None = None
    """Bootstrap servers, e.g. ``localhost:9092``. None: ``up``/``demo`` start the embedded one."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    """PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (passed through to every Kafka client)."""
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    broker_session_timeout: float = 60.0
    """Seconds. The first group join waits about half of it: the embedded broker runs with 6."""
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    """Faust's. exactly_once: a worker writes in Kafka transactions, one per partition it owns,
    and commits its consumed offsets in them; its consumer reads committed (fixstream's own
    readers always do). It needs a broker with transactions, real Kafka: the embedded broker
    cannot start aiokafka's transactional producers. What a bug in flight has sent when its
    partition's transaction commits is committed without the bug's offset, so after a crash
    it is sent again: one fix event per bug still rests on the finalizer."""
    fetch_max_wait_ms: int = Field(default=500, ge=1)
    """How long a fetch may wait at the broker for data: Kafka answers as soon as data
    arrives, so this only bounds idle polling; the embedded broker needs it short."""
    producer_batch_bytes: int = Field(default=16384, ge=1)
    """The most a producer puts in one batch per partition (Faust's and aiokafka's default,
    16 KiB). The embedded broker needs 1, one record per batch: after a batch of several it
    reports the partition's end offset as the batch's first offset + 1, so readers to the end
    stop short and Faust's table recovery crashes ("persisted offset ... is higher than the
    last offset in that topic")."""
    lost_leader_rounds: int = Field(default=0, ge=0)
    """Re-join as the group's departed leader after this many rounds (plus up to as many
    again, at random) with every SyncGroup refused under it. 0 (off) for real Kafka; the
    embedded broker's commands set 3: its coordinator keeps a leader that left while the
    group formed, and the group never forms again (``faust_hooks.adopt_lost_leader``)."""
    rebalance_wait_s: float = Field(default=10.0, gt=0)
    """How long a rebalance waits for messages in flight before it goes on without them
    (they are redone by the partition's next owner); Faust alone waits without a bound."""

    app_id: str = "fixstream"
    topics_file: Path = TOPICS_FILE
    partitions: int | None = None
    """Override every topic's partition count from topics.yaml (None keeps the file's)."""
    store: str = "memory://"
    """Faust table store."""
    agent_concurrency: int = Field(default=8, ge=1)
    """Bugs in flight per stage agent in one worker (acked in order: see streams.inflight)."""
    chunk_concurrency: int = Field(default=32, ge=1)
    """LLM calls in flight per chunk worker."""
    web_enabled: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    data_dir: Path = Field(default_factory=default_data_dir)
    """Faust state, artifacts and repository checkouts live under here."""
    trace_dir: Path | None = None
    """Spans of every stage run, LLM call and test run, one JSON-lines file per worker
    (what ``fixstream bench`` draws its timelines from). None: no spans, metrics only."""

    max_message_bytes: int = 1_048_576
    """Larger messages are refused to the dead-letter topic."""
    inline_artifact_bytes: int = 16_384
    """Inline artifacts above this move to the artifact store (claim check)."""
    chunk_token_budget: int = Field(default=800, ge=50)
    max_log_tokens: int = Field(default=4000, ge=100)
    max_candidate_files: int = Field(default=12, ge=1)
    max_chunks: int = Field(default=64, ge=1)
    workspace_dir: Path | None = None
    """Where test workspaces are made; must be reachable by the sandbox user (nobody).
    None: <tmp>/fixstream-workspaces."""
    gather_deadline_s: float = Field(default=300.0, gt=0)
    """A scatter goes on with the results it has once this passes, and says so."""
    test_timeout_s: float = Field(default=120.0, gt=0)
    test_memory_mb: int = Field(default=2048, ge=64)
    test_disk_mb: int = Field(default=512, ge=1)
    """A test run's disk quota: the tmpfs under /testbed, and each of /tmp and /dev/shm."""
    sandbox: Literal["bwrap", "unsafe", "container"] = "bwrap"
    """bwrap: every test run in bubblewrap, refused where it cannot run. container: in a
    Docker/Podman container (``FIXSTREAM_CONTAINER_IMAGE``), refused where no engine answers.
    unsafe: tests run unisolated as the worker's user, logged loudly and recorded in every
    test run."""
    env_dir: Path | None = None
    """Where repository environments live, shared by every worker on the machine.
    None: <data_dir>/envs."""
    env_build_timeout_s: float = Field(default=900.0, gt=0)
    env_disk_mb: int = Field(default=20_000, ge=100)
    """The environments' disk budget: least recently used ones are evicted past it."""
    env_find_links: list[str] = Field(default_factory=list)
    """Local wheel directories uv may install from (JSON list in the environment)."""
    env_offline: bool = False
    """Install only from ``env_find_links`` (uv --no-index): no package index at all."""
    reproduce_attempts: int = Field(default=3, ge=1)
    stuck_after_s: float = Field(default=900.0, gt=0)
    """A bug with no progress event for this long (queueing included) is failed with the
    stage it was stuck in, rather than forgotten (``streams.finals``)."""
    redrives: int = Field(default=2, ge=0)
    """How often the watchdog publishes a stuck bug's last stage input again (a lost record
    is then redone, its LLM answers and test runs from the caches) before failing it."""
    fix_attempts: int = Field(default=3, ge=1)
    """Validate sends a bug back to fix with the failures at most this many times minus one."""

    llm_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("FIXSTREAM_LLM_BASE_URL", "OPENAI_BASE_URL")
    )
    """Any OpenAI-compatible endpoint; unset with OPENAI_API_KEY set means OpenAI itself."""
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("FIXSTREAM_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_models: dict[str, str] = Field(
        default_factory=lambda: {
            "default": "gpt-4.1",
            "summary": "gpt-4.1-mini",
            "root_cause": "gpt-4.1-mini",
            "embedding": "text-embedding-3-small",
        }
    )
    """Model per purpose: cheap models for non-critical work (JSON in the environment)."""
    llm_prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    """Dollars per million input/output tokens, per model (JSON in the environment)."""
    llm_timeout: float = 60.0
    """Seconds one attempt may take before it counts as a hang and is retried."""
    llm_max_attempts: int = Field(default=6, ge=1)
    llm_max_reasks: int = Field(default=2, ge=0)
    llm_max_concurrency: int = Field(default=64, ge=1)
    llm_tpm: int | None = None
    llm_rpm: int | None = None
    llm_rate_window_seconds: float = Field(default=60.0, gt=0)
    """The TPM/RPM window; shorter windows match a time-scaled simulator."""
    llm_rate_window_pad: float = Field(default=0.05, ge=0)
    """The gateway's window is this much longer than the server's, for request transit."""
    llm_batch_flush_s: float = Field(default=0.5, ge=0)
    """Batch-priority calls arriving this close together share one Batch API job."""
    llm_batch_poll_s: float = Field(default=5.0, gt=0)
    """How often a running Batch API job is polled."""
    llm_batch_timeout: float = Field(default=86_400.0, gt=0)
    """Seconds a batch-priority call may wait for its job (OpenAI's window is 24 h)."""
    redis_url: str | None = None
    """Shared TPM/RPM budgets and caches across workers; in-process when unset."""

    cache: Literal["auto", "memory", "redis", "off"] = "auto"
    """auto: Redis when ``redis_url`` is set (one cache for every worker), else memory."""
    cache_ttl_s: float = Field(default=7 * 86_400.0, gt=0)
    """Every entry expires after this; keys hold the repository version, so a new commit
    never reads an old entry whatever the TTL."""
    cache_memory_mb: int = Field(default=256, ge=1)
    """The memory backend's bound; least recently used entries go first."""
    cache_semantic: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SEMANTIC))
    """Call sites (purposes) with a semantic cache and their cosine thresholds (JSON in the
    environment). Edit proposals (``fix``) are deliberately not among the defaults."""

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def environments_dir(self) -> Path:
        return self.env_dir or self.data_dir / "envs"

    @property
    def checkout_dir(self) -> Path:
        return self.data_dir / "checkouts"

    def kafka_client_options(self) -> dict[str, object]:
        """Security options in aiokafka's spelling, for producers, consumers and admin (the
        Faust app's credentials say the same: ``app._credentials``). ``security_protocol``
        decides: SASL settings count under SASL_* only (PLAIN when no mechanism is named, as
        in aiokafka), the CA file under SSL and SASL_SSL only."""
        opts: dict[str, object] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            opts["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            opts["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
        return opts

    def bootstrap(self) -> str:
        if not self.broker:
            raise ValueError("no broker configured: set FIXSTREAM_BROKER or use `fixstream up`")
        return self.broker.removeprefix("kafka://")
