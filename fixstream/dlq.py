"""``fixstream dlq``: see what was dead-lettered on ``bugs.dlq``, and re-submit it once fixed.

A dead letter holds the original key and value bytes (or, for a value too big to produce, a
claim check in its headers), so a replay is a plain re-produce to the original topic. A header
counts the replays: a message that keeps failing shows how often it came back, and is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from fixstream.artifacts import ArtifactStore
from fixstream.cli_options import BrokerOption, JsonFlag, settings_with_broker
from fixstream.config import Settings
from fixstream.errors import ArtifactError, describe_validation
from fixstream.kafka import producer, read_to_end
from fixstream.schemas import DeadLetter
from fixstream.schemas.deadletter import HEADER_PREFIX
from fixstream.streams.deadletters import REPLAYS_HEADER, VALUE_NULL_HEADER

DLQ_TOPIC = "bugs.dlq"
MAX_REPLAYS = 3
REASON_CHARS = 160
KEY_CHARS = 40

dlq_cli = typer.Typer(no_args_is_help=True, help="Dead letters on bugs.dlq: inspect and re-submit.")


class SelectionError(ValueError):
    """The letters to replay are not chosen, or not unambiguously (exit code 2)."""


def printable(text: str, limit: int | None = None) -> str:
    """One terminal-safe line: control, bidi and other invisible characters escaped (a reason
    or key may carry anything a producer sent), shortened to ``limit`` characters."""
    out = "".join(
        c if c == " " or unicodedata.category(c)[0] not in "CZ" else f"\\u{ord(c):04x}"
        for c in text
    )
    if limit is not None and len(out) > limit:
        return out[: limit - 1] + "…"
    return out


def text_or_base64(data: bytes | None) -> tuple[str | None, str | None]:
    """(text, encoding) for JSON: the bytes as text when they are UTF-8, else base64."""
    if data is None:
        return None, None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def shown_bytes(data: bytes | None, stored: bool = False) -> str:
    """A key for a table cell: its text, ``base64:...`` when not UTF-8, ``-`` when none."""
    if stored:
        return "(in the artifact store)"
    text, encoding = text_or_base64(data)
    if text is None:
        return "-"
    return text if encoding == "utf-8" else f"base64:{text}"


@dataclass(frozen=True)
class Entry:
    """One record of bugs.dlq: where it sits, and the dead letter it holds (or why not)."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    letter: DeadLetter | None
    problem: str = ""
    """Why the record is not a readable dead letter (anyone can produce to the topic)."""

    @classmethod
    def from_record(
        cls,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]],
    ) -> Entry:
        headers = tuple(headers)
        try:
            letter = DeadLetter.from_record(key, value, [(k, v or b"") for k, v in headers])
            problem = ""
        except ValidationError as exc:  # anyone can produce to the topic
            letter, problem = None, f"not a dead letter: {describe_validation(exc)}"
        except Exception as exc:  # a foreign record must not stop the listing
            letter, problem = None, f"not a dead letter: {type(exc).__name__}: {exc}"
        return cls(partition, offset, timestamp_ms, key, value, headers, letter, problem)

    @property
    def ref(self) -> str:
        """``partition:offset`` on bugs.dlq, what ``--offset`` takes."""
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        raw = next((v for k, v in self.headers if k == name), None)
        return raw.decode(errors="replace") if raw is not None else None

    def claim_check(self, part: str) -> tuple[str, str] | None:
        """(uri, sha256) when the worker moved the ``key`` or ``value`` to the artifact store."""
        uri = self.header(f"{HEADER_PREFIX}{part}_uri")
        return (uri, self.header(f"{HEADER_PREFIX}{part}_sha256") or "") if uri else None

    @property
    def record_value(self) -> bytes | None:
        """The value as it was sent, when the record holds it (None also for a null value,
        which the record can only stand in for with an empty one)."""
        return None if self.header(VALUE_NULL_HEADER) is not None else self.value

    def as_json(self) -> dict[str, Any]:
        """Everything about the letter, bytes made JSON-safe (for scripts: ``list --json``)."""
        letter = (
            self.letter.model_dump(mode="json", exclude={"key", "value"}) if self.letter else {}
        )
        key, key_encoding = text_or_base64(self.key)
        value, value_encoding = text_or_base64(self.record_value)
        key_check, value_check = self.claim_check("key"), self.claim_check("value")
        return {
            "id": self.ref,
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            **letter,
            "key": key,
            "key_encoding": key_encoding,
            "key_uri": key_check[0] if key_check else None,
            "key_sha256": key_check[1] if key_check else None,
            "value": value,
            "value_encoding": value_encoding,
            "value_size": len(self.record_value) if self.record_value is not None else None,
            "value_uri": value_check[0] if value_check else None,
            "value_sha256": value_check[1] if value_check else None,
            "problem": self.problem or None,
        }


def _or_unknown(n: int | None) -> str:
    return "?" if n is None else str(n)


def row(e: Entry) -> str:
    """Two terminal-safe lines per letter, readable at any width: where it is, where it came
    from, stage, error, retryable, replays and key; then the reason, shortened."""
    letter = e.letter
    key = printable(shown_bytes(e.key, e.claim_check("key") is not None), KEY_CHARS)
    if letter is None:
        return f"{e.ref}  ?  key={key}\n    {printable(e.problem, REASON_CHARS)}"
    head = "  ".join(
        [
            e.ref,
            f"{letter.original_topic}[{_or_unknown(letter.partition)}]@{_or_unknown(letter.offset)}",
            letter.stage,
            letter.error_class,
            f"retryable={'yes' if letter.retryable else 'no'}",
            f"replays={letter.replays}",
            f"key={key}",
        ]
    )
    return f"{printable(head)}\n    {printable(letter.reason, REASON_CHARS)}"


@dataclass(frozen=True)
class Ref:
    """A letter named on the command line: ``partition:offset``, or an offset alone."""

    partition: int | None
    offset: int

    @classmethod
    def parse(cls, text: str) -> Ref:
        part, sep, off = text.strip().rpartition(":")
        try:
            return cls(int(part) if sep else None, int(off))
        except ValueError:
            raise SelectionError(
                f"--offset {text!r}: expected OFFSET or PARTITION:OFFSET"
            ) from None

    def matches(self, entry: Entry) -> bool:
        return entry.offset == self.offset and self.partition in (None, entry.partition)


def matches(entry: Entry, stage: str | None = None, error: str | None = None) -> bool:
    """The ``--stage`` / ``--error`` filters; ``--stage decode`` matches each ``decode:<topic>``."""
    letter = entry.letter
    if stage is not None and (
        letter is None or (letter.stage != stage and not letter.stage.startswith(stage + ":"))
    ):
        return False
    return error is None or (letter is not None and letter.error_class == error)


def require_selection(offsets: Sequence[str], all_retryable: bool) -> None:
    """A replay re-injects messages that already failed once: it needs an explicit choice."""
    if not offsets and not all_retryable:
        raise SelectionError(
            "nothing selected: name letters with --offset PARTITION:OFFSET (repeatable) or "
            "pass --all-retryable (--stage and --error narrow either)"
        )


def select(
    entries: Sequence[Entry],
    offsets: Sequence[str] = (),
    *,
    all_retryable: bool = False,
    stage: str | None = None,
    error: str | None = None,
) -> list[Entry]:
    """The letters to replay: named ones, or every retryable one; the filters narrow."""
    require_selection(offsets, all_retryable)
    chosen: dict[str, Entry] = {}
    for ref in map(Ref.parse, offsets):
        found = [e for e in entries if ref.matches(e)]
        if not found:
            raise SelectionError(f"no dead letter at {ref.offset} on {DLQ_TOPIC}")
        if len(found) > 1:
            where = ", ".join(e.ref for e in found)
            raise SelectionError(
                f"offset {ref.offset} is ambiguous ({where}): use PARTITION:OFFSET"
            )
        chosen[found[0].ref] = found[0]
    if all_retryable:
        chosen.update({e.ref: e for e in entries if e.letter is not None and e.letter.retryable})
    picked = set(chosen)
    return [e for e in entries if e.ref in picked and matches(e, stage, error)]


def skip_reason(entry: Entry, max_replays: int, topics: Iterable[str]) -> str | None:
    """Why a selected letter is not replayed, or None: a replay loop is bounded, and a letter
    only goes back to a fixstream topic (headers are whatever a producer wrote)."""
    letter = entry.letter
    if letter is None:
        return entry.problem
    if letter.replays >= max_replays:
        return f"already replayed {letter.replays} time(s) (--max-replays {max_replays})"
    if letter.original_topic == DLQ_TOPIC or letter.original_topic not in set(topics):
        return f"original topic {letter.original_topic!r} is not a topic to replay to"
    return None


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The re-submitted message's headers: its replay count, which a new dead letter keeps."""
    return [(REPLAYS_HEADER, str(letter.replays + 1).encode())]


async def original(entry: Entry, part: str, store: ArtifactStore) -> bytes | None:
    """The original ``key`` or ``value``: in the record, or behind its claim check (the
    sha256 is verified, so a replay re-submits exactly the bytes that were dead-lettered)."""
    check = entry.claim_check(part)
    if check is None:
        return entry.key if part == "key" else entry.record_value
    uri, digest = check
    if not digest:
        raise ArtifactError(f"{entry.ref}: {part} stored at {uri} without a sha256")
    return await store.aget(uri, digest)  # only this store's own files


async def read_letters(settings: Settings, timeout: float = 60.0) -> list[Entry]:
    """Every record of bugs.dlq up to the end offsets seen at the start, oldest first."""
    entries = [
        Entry.from_record(r.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers))
        for r in await read_to_end(settings, [DLQ_TOPIC], timeout)
    ]
    return sorted(entries, key=lambda e: (e.timestamp_ms, e.partition, e.offset))


@dataclass(frozen=True)
class Outcome:
    entry: Entry
    state: str
    """replayed, would replay (dry run), skipped or failed"""
    detail: str

    def line(self) -> str:
        letter = self.entry.letter
        where = f"{DLQ_TOPIC} {self.entry.ref}"
        if letter is None or self.state in ("skipped", "failed"):
            return f"{self.state}: {where}: {printable(self.detail, 200)}"
        key = printable(shown_bytes(self.entry.key, bool(self.entry.claim_check("key"))), KEY_CHARS)
        return f"{self.state}: {where} -> {letter.original_topic} key {key} {self.detail}"


async def replay(
    settings: Settings,
    entries: Sequence[Entry],
    *,
    max_replays: int = MAX_REPLAYS,
    dry_run: bool = False,
) -> list[Outcome]:
    """Re-produce each letter's original key and value to its original topic, in order."""
    from fixstream.topics import load_catalog

    topics = [spec.name for spec in load_catalog(settings.topics_file)]
    store = ArtifactStore(settings.artifact_dir)
    outcomes: list[Outcome] = []
    async with contextlib.AsyncExitStack() as stack:
        client = None if dry_run else await stack.enter_async_context(producer(settings))
        for entry in entries:
            reason = skip_reason(entry, max_replays, topics)
            if reason is not None:
                outcomes.append(Outcome(entry, "skipped", reason))
                continue
            assert entry.letter is not None
            try:
                key = await original(entry, "key", store)
                value = await original(entry, "value", store)
                headers = replay_headers(entry.letter)
                size = len(value) if value is not None else 0
                detail = f"({size} bytes, replay {entry.letter.replays + 1})"
                if client is not None:
                    await client.send_and_wait(
                        entry.letter.original_topic, value, key=key, headers=headers
                    )
            except (ArtifactError, KafkaError) as exc:
                outcomes.append(Outcome(entry, "failed", f"{type(exc).__name__}: {exc}"))
                continue
            outcomes.append(Outcome(entry, "would replay" if dry_run else "replayed", detail))
    return outcomes


def _error(message: str) -> None:
    """To stderr, never as rich markup: messages quote what producers sent."""
    Console(stderr=True).print(Text(printable(message), style="red"), soft_wrap=True)


def _read(settings: Settings) -> list[Entry]:
    try:
        return asyncio.run(read_letters(settings))
    except (KafkaError, TimeoutError) as exc:
        _error(f"cannot read {DLQ_TOPIC}: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


StageOption = Annotated[
    str | None, typer.Option(help="Only this stage's letters (`decode` matches every decode:*).")
]
ErrorOption = Annotated[
    str | None, typer.Option("--error", help="Only this error class, e.g. BadInputError.")
]


@dlq_cli.command("list")
def list_letters(
    as_json: JsonFlag = False,
    stage: StageOption = None,
    error: ErrorOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the N most recent.")] = None,
    broker: BrokerOption = None,
) -> None:
    """Dead letters, oldest first (``--json``: one object per line): where each came from,
    which stage refused it and why."""
    entries = [e for e in _read(settings_with_broker(broker)) if matches(e, stage, error)]
    if limit is not None:
        entries = entries[-limit:]
    if as_json:
        for entry in entries:
            typer.echo(orjson.dumps(entry.as_json()).decode())
        return
    for e in entries:
        typer.echo(row(e))
    typer.echo(f"{len(entries)} dead letter(s) on {DLQ_TOPIC}")


@dlq_cli.command("replay")
def replay_letters(
    offset: Annotated[
        list[str] | None,
        typer.Option(help="A letter as PARTITION:OFFSET (or OFFSET when unique); repeatable."),
    ] = None,
    all_retryable: Annotated[
        bool, typer.Option("--all-retryable", help="Every letter marked retryable.")
    ] = False,
    stage: StageOption = None,
    error: ErrorOption = None,
    max_replays: Annotated[
        int, typer.Option(min=1, help="Skip letters already replayed this many times.")
    ] = MAX_REPLAYS,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, re-submit nothing.")] = False,
    broker: BrokerOption = None,
) -> None:
    """Re-submit dead letters' original key and value to their original topic."""
    try:
        require_selection(offset or [], all_retryable)  # before reaching for the broker
        settings = settings_with_broker(broker)
        chosen = select(
            _read(settings), offset or [], all_retryable=all_retryable, stage=stage, error=error
        )
    except SelectionError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    outcomes = asyncio.run(replay(settings, chosen, max_replays=max_replays, dry_run=dry_run))
    for outcome in outcomes:
        typer.echo(outcome.line())
    counts = {s: sum(o.state == s for o in outcomes) for s in ("skipped", "failed")}
    done = len(outcomes) - counts["skipped"] - counts["failed"]
    verb = "would be replayed" if dry_run else "replayed"
    typer.echo(f"{done} {verb}, {counts['skipped']} skipped, {counts['failed']} failed")
    if counts["failed"]:
        raise typer.Exit(1)
