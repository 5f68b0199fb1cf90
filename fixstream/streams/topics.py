"""Faust topics declared from topics.yaml, each decoding straight to a pydantic event."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.exceptions import KeyDecodeError, ValueDecodeError

from fixstream.codec import codec_name
from fixstream.errors import BadInputError
from fixstream.schemas import event_type
from fixstream.streams.deadletters import DeadLetters
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
    """

    def __init__(self, *args: Any, dead_letters: DeadLetters | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.dead_letters = dead_letters

    def _compile_decode(self) -> None:
        super()._compile_decode()
        decode = self.decode
        refuse_empty = not self.schema.allow_empty

        async def dead_letter_then_raise(message: Any, *, propagate: bool = False) -> Any:
            try:
                # Faust hands a value of None (a tombstone) to the agent without calling the
                # codec, and the stage then fails on it outside any dead-letter path: refuse
                # it here as the codec would have.
                if refuse_empty and message.value is None:
                    exc = ValueDecodeError("empty message (no value)")
                    exc.__cause__ = BadInputError("empty message (no value)")
                    raise exc
                return await decode(message, propagate=True)
            except (KeyDecodeError, ValueDecodeError) as exc:
                await self._dead_letter(exc, message)
                message.tracked = True  # dealt with: the ack Faust sends next counts
                if propagate:
                    raise
                return None

        self.decode = dead_letter_then_raise  # type: ignore[method-assign]

    def _clone_args(self) -> dict[str, Any]:
        # agents consume a clone of their topic: the dead-letter sink must come along
        return {**super()._clone_args(), "dead_letters": self.dead_letters}

    async def on_key_decode_error(self, exc: Exception, message: Any) -> None:
        """Already dead-lettered by ``decode``, before Faust acked the message."""

    async def on_value_decode_error(self, exc: Exception, message: Any) -> None:
        """Already dead-lettered by ``decode``, before Faust acked the message."""

    async def _dead_letter(self, exc: Exception, message: Any) -> None:
        try:
            assert self.dead_letters is not None, "dead letters are wired in create_app"
            await self.dead_letters.send(message, exc, stage=f"decode:{message.topic}")
        except BaseException:
            # Faust acks the message once the error reaches it. Exit without that, so the
            # broker redelivers it to the next worker instead of it being lost.
            log.critical("could not dead-letter %s: exiting uncommitted", message, exc_info=True)
            os._exit(70)


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
