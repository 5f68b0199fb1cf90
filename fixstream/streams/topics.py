"""Faust topics declared from topics.yaml, each decoding straight to a pydantic event."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.exceptions import KeyDecodeError, ValueDecodeError

from fixstream import wire
from fixstream.codec import codec_name
from fixstream.errors import BadInputError
from fixstream.schemas import Event, StatusEvent, event_type
from fixstream.streams.deadletters import DeadLetters
from fixstream.telemetry import WORKER_ID
from fixstream.topics import Catalog, TopicSpec

log = logging.getLogger(__name__)
_PARTITIONER = DefaultPartitioner()


class DeadLetteringTopic(faust.Topic):
    """A topic whose undecodable messages go to the dead-letter topic.

    Faust's default acks the message and throws into the agent, which stops it silently
    (faust #175); here the agent never sees the message and keeps running. The dead letter
    is sent, and the broker has it, before the decode error reaches Faust's conductor, which
    acks the message: a worker killed in between leaves the message uncommitted, and the
    next owner dead-letters it again, instead of it being neither processed nor dead-lettered.

    The wire contract (``fixstream.wire``) is held here too: every record sent carries its
    schema header, and one read is refused for an unreadable schema version or, on a stage's
    input, a key that is not its bug id. A stage input that is refused ends its bug: a
    ``dead_lettered`` status (``ends_bugs``) makes the finalizer publish its ``failed`` fix
    event, so a producer waiting on ``fixes`` hears back even about bytes nobody can read.
    """

    def __init__(
        self,
        *args: Any,
        dead_letters: DeadLetters | None = None,
        model: type[Event] | None = None,
        ends_bugs: faust.TopicT | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.dead_letters = dead_letters
        self.model = model
        """The event its values decode to (None: raw bytes)."""
        self.ends_bugs = ends_bugs
        """Where a refused record's bug is reported ended (``bugs.status``): stage inputs."""

    def prepare_headers(self, headers: Any) -> Any:
        prepared = super().prepare_headers(headers)  # a dict, or a list of pairs
        if self.model is None:
            return prepared
        tag = wire.schema_tag(self.model)
        if isinstance(prepared, dict):
            prepared[wire.SCHEMA_HEADER] = tag
            return prepared
        return [*(h for h in prepared if h[0] != wire.SCHEMA_HEADER), (wire.SCHEMA_HEADER, tag)]

    def _compile_decode(self) -> None:
        super()._compile_decode()
        decode = self.decode
        refuse_empty = not self.schema.allow_empty

        async def dead_letter_then_raise(message: Any, *, propagate: bool = False) -> Any:
            value = None
            try:
                # Faust hands a value of None (a tombstone) to the agent without calling the
                # codec, and the stage then fails on it outside any dead-letter path: refuse
                # it here as the codec would have.
                if refuse_empty and message.value is None:
                    raise _refused("empty message (no value)")
                if self.model is not None:
                    _hold(wire.check_schema, message.headers, self.model)
                event = await decode(message, propagate=True)
                value = event.value
                if self.ends_bugs is not None:
                    _hold(wire.check_key, message.key, value.bug_id)
                return event
            except (KeyDecodeError, ValueDecodeError) as exc:
                await self._dead_letter(exc, message, getattr(value, "bug_id", None))
                message.tracked = True  # dealt with: the ack Faust sends next counts
                if propagate:
                    raise
                return None

        self.decode = dead_letter_then_raise  # type: ignore[method-assign]

    def _clone_args(self) -> dict[str, Any]:
        # agents consume a clone of their topic: what its decode needs must come along
        return {
            **super()._clone_args(),
            "dead_letters": self.dead_letters,
            "model": self.model,
            "ends_bugs": self.ends_bugs,
        }

    async def on_key_decode_error(self, exc: Exception, message: Any) -> None:
        """Already dead-lettered by ``decode``, before Faust acked the message."""

    async def on_value_decode_error(self, exc: Exception, message: Any) -> None:
        """Already dead-lettered by ``decode``, before Faust acked the message."""

    async def _dead_letter(self, exc: Exception, message: Any, bug_id: str | None) -> None:
        try:
            assert self.dead_letters is not None, "dead letters are wired in create_app"
            if self.ends_bugs is not None and bug_id is None:
                bug_id = wire.bug_id_of(
                    message.key, message.topic, message.partition, message.offset
                )
            letter = await self.dead_letters.send(
                message, exc, stage=f"decode:{message.topic}", bug_id=bug_id
            )
            if self.ends_bugs is not None and bug_id is not None:
                ended = StatusEvent(
                    bug_id=bug_id, stage=letter.stage, state="dead_lettered",
                    message=f"{letter.error_class}: {letter.reason}", worker=WORKER_ID,
                )  # fmt: skip
                await (await self.ends_bugs.send(key=bug_id, value=ended))
        except BaseException:
            # Faust acks the message once the error reaches it. Exit without that, so the
            # broker redelivers it to the next worker instead of it being lost.
            log.critical("could not dead-letter %s: exiting uncommitted", message, exc_info=True)
            os._exit(70)


def _refused(reason: str) -> ValueDecodeError:
    """A refusal in the form Faust's decode raises, with the reason as its cause."""
    exc = ValueDecodeError(reason)
    exc.__cause__ = BadInputError(reason)
    return exc


def _hold(check: Callable[..., None], *args: Any) -> None:
    try:
        check(*args)
    except BadInputError as exc:
        raise _refused(str(exc)) from exc


class Topics:
    """Every Faust topic of the app, by topics.yaml name."""

    def __init__(self, app: faust.App, catalog: Catalog) -> None:
        self.catalog = catalog
        self.by_name: dict[str, faust.TopicT] = {
            spec.name: self._declare(app, spec) for spec in catalog
        }

    @staticmethod
    def _declare(app: faust.App, spec: TopicSpec) -> faust.TopicT:
        raw = spec.value == "raw"
        return DeadLetteringTopic(
            app,
            model=None if raw else event_type(spec.value),
            topics=[spec.name],
            partitions=spec.partitions,
            replicas=spec.replication_factor,
            compacting="compact" in spec.cleanup_policy,
            key_type=bytes if raw else str,
            key_serializer="raw",
            value_serializer="raw" if raw else codec_name(event_type(spec.value)),
            allow_empty=raw,
        )

    def __getitem__(self, name: str) -> faust.TopicT:
        self.catalog[name]  # raises a helpful error for unknown names
        return self.by_name[name]

    def wire_dead_letters(self, dead_letters: DeadLetters) -> None:
        for topic in self.by_name.values():
            topic.dead_letters = dead_letters  # type: ignore[attr-defined]

    def stage_input(self, name: str) -> faust.TopicT:
        """``name``, consumed by a stage: a record refused there ends its bug."""
        topic = self[name]
        topic.ends_bugs = self["bugs.status"]  # type: ignore[attr-defined]
        return topic


def partition_of(bug_id: str, partitions: int) -> int:
    """The partition of a bug's chunk results, and so of its gather entries.

    Results and nudges are keyed by bug id, placed by Faust's producer with aiokafka's default
    partitioner (the app sets no ``producer_partitioner``). A table key goes to the partition
    of the record being handled (``Table.partition_for_key``): a scatter handles a stage input
    and a gather a result, both keyed by bug id on topics with the same partition count.
    """
    everything = list(range(partitions))
    return _PARTITIONER(bug_id.encode(), everything, everything)


def owned_now(consumer: Any, topic: str, partitions: int) -> Callable[[str], bool]:
    """Whether this worker owns, now, the partition of ``topic`` a bug's records (and the
    table entries they write) go to. Raises ConsumerNotStarted before the consumer runs."""
    mine = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
    return lambda bug_id: partition_of(bug_id, partitions) in mine
