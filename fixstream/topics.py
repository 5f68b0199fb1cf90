"""topics.yaml as typed specs, and ``topics apply``: create what is missing, report drift."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import BaseModel, ConfigDict, Field

from fixstream.errors import UnknownNameError
from fixstream.kafka import start
from fixstream.schemas import EVENTS

TOPIC_ALREADY_EXISTS = 36


class TopicSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    partitions: int = Field(ge=1)
    replication_factor: int = Field(ge=1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"]
    retention_ms: int
    key: str
    value: str
    headers: str | None = None

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


class Catalog(BaseModel):
    """All topics by name; an unknown name raises an error listing the known ones."""

    model_config = ConfigDict(frozen=True)

    topics: dict[str, TopicSpec]

    def __getitem__(self, name: str) -> TopicSpec:
        try:
            return self.topics[name]
        except KeyError:
            raise UnknownNameError("topic", name, self.topics) from None

    def __iter__(self):  # type: ignore[override]
        return iter(self.topics.values())


def load_catalog(path: Path, partitions: int | None = None) -> Catalog:
    """Read topics.yaml; ``partitions`` overrides every topic's count when given."""
    raw = yaml.safe_load(path.read_text())
    defaults = raw.get("defaults", {})
    topics: dict[str, TopicSpec] = {}
    for entry in raw["topics"]:
        merged = {**defaults, **entry}
        if partitions is not None:
            merged["partitions"] = partitions
        spec = TopicSpec.model_validate(merged)
        for schema in (spec.value, spec.headers):
            if schema not in (None, "raw") and schema not in EVENTS:
                raise UnknownNameError(f"schema for topic {spec.name}", schema, EVENTS)
        topics[spec.name] = spec
    return Catalog(topics=topics)


class Drift(BaseModel):
    topic: str
    setting: str
    wanted: str
    actual: str


class ApplyReport(BaseModel):
    created: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    drift: list[Drift] = Field(default_factory=list)


async def apply_topics(
    catalog: Catalog, bootstrap: str, client_options: dict[str, object] | None = None
) -> ApplyReport:
    """Create missing topics; for existing ones compare partitions and configs (no changes)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    await start(admin, bootstrap)
    try:
        report = ApplyReport()
        existing = set(await admin.list_topics())
        missing = [spec for spec in catalog if spec.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs())
                    for s in missing
                ]
            )
            for name, code, message in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"could not create topic {name}: {message} ({code})")
            report.created = [s.name for s in missing]
        present = [spec for spec in catalog if spec.name in existing]
        if present:
            report.drift = await _drift(admin, present)
            drifted = {d.topic for d in report.drift}
            report.unchanged = [s.name for s in present if s.name not in drifted]
        return report
    finally:
        await admin.close()


async def _drift(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[Drift]:
    drift: list[Drift] = []
    metadata = {m["topic"]: m for m in await admin.describe_topics([s.name for s in specs])}
    for spec in specs:
        actual = len(metadata[spec.name]["partitions"])
        if actual != spec.partitions:
            drift.append(
                Drift(
                    topic=spec.name,
                    setting="partitions",
                    wanted=str(spec.partitions),
                    actual=str(actual),
                )
            )
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
    by_name = {s.name: s for s in specs}
    for response in await admin.describe_configs(resources):
        for _code, _msg, _type, name, entries in response.resources:
            actual_configs = {entry[0]: entry[1] for entry in entries}
            for key, wanted in by_name[name].configs().items():
                if key in actual_configs and actual_configs[key] != wanted:
                    drift.append(
                        Drift(
                            topic=name, setting=key, wanted=wanted, actual=str(actual_configs[key])
                        )
                    )
    return drift
