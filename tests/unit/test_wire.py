"""The wire contract's rules, one by one (``fixstream.wire``)."""

from __future__ import annotations

import pytest

from fixstream import wire
from fixstream.errors import BadInputError
from fixstream.schemas import BugReport, FixEvent


def test_every_event_names_its_schema_and_version():
    assert wire.schema_tag(BugReport) == f"BugReport/{BugReport.schema_version}".encode()


@pytest.mark.parametrize(
    "tag", [None, b"BugReport/1", f"BugReport/{BugReport.schema_version}".encode()]
)
def test_no_header_or_a_readable_version_is_read(tag):
    headers = [] if tag is None else [(wire.SCHEMA_HEADER, tag)]
    wire.check_schema(headers, BugReport)
    wire.check_schema(dict(headers), BugReport)  # Faust's form


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        (b"BugReport/99", "unsupported schema version BugReport/99"),
        (b"BugReport/0", "unsupported schema version BugReport/0"),
        (b"FixEvent/3", "schema 'FixEvent/3' on a topic of BugReport"),
        (b"BugReport", "schema 'BugReport' on a topic of BugReport"),
        (b"\xff/1", "on a topic of BugReport"),
    ],
)
def test_another_event_or_an_unreadable_version_is_refused(tag, why):
    with pytest.raises(BadInputError, match=why):
        wire.check_schema([(wire.SCHEMA_HEADER, tag)], BugReport)


def test_a_key_other_than_the_bug_id_is_refused_and_no_key_is_repaired():
    wire.check_key(b"PROJ-1", "PROJ-1")
    wire.check_key(None, "PROJ-1")
    with pytest.raises(BadInputError, match="key '1234' differs from bug_id 'PROJ-1'"):
        wire.check_key(b"1234", "PROJ-1")


@pytest.mark.parametrize(
    ("key", "bug"),
    [
        (b"PROJ-1", "PROJ-1"),
        (None, "bugs.reported:3:17"),
        (b"\xff\xfe", "bugs.reported:3:17"),
        (b"../../etc/passwd", "bugs.reported:3:17"),
        (b"a b", "bugs.reported:3:17"),
    ],
)
def test_an_unreadable_records_bug_is_its_key_or_its_place_in_the_log(key, bug):
    assert wire.bug_id_of(key, "bugs.reported", 3, 17) == bug
    assert BugReport.model_fields["bug_id"]  # the derived id is a valid bug id itself:
    FixEvent(bug_id=wire.bug_id_of(None, "bugs.reported", 3, 17), meta={"stage": "x"},
             status="failed")  # fmt: skip
