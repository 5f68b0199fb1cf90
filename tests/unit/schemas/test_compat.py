"""The schema-registry rule: old data must stay readable by new code."""

from typing import ClassVar

import pytest
from pydantic import Field

from fixstream.schemas import EVENTS, BugReport, Event
from fixstream.schemas.compat import (
    backward_problems,
    compatibility_report,
    describe,
    load_snapshot,
)


def test_every_schema_is_backward_compatible_with_the_committed_snapshot():
    assert compatibility_report(EVENTS, load_snapshot()) == []


def test_committed_snapshot_is_current():
    """Run `fixstream schemas check --update` after a compatible change."""
    recorded = load_snapshot()
    assert sorted(recorded) == sorted(EVENTS)
    for name, model in EVENTS.items():
        assert recorded[name] == describe(model), f"snapshot of {name} is stale"


class Thing(Event):
    thing_id: str
    size: int = 0


def _schema(model: type[Event]) -> dict:
    return model.model_json_schema(mode="validation")


def test_a_required_field_added_without_default_is_incompatible():
    class ThingWithRequired(Event):
        thing_id: str
        size: int = 0
        owner: str

    problems = backward_problems(_schema(Thing), _schema(ThingWithRequired))
    assert problems == [".owner: new field is required; give it a default"]


def test_a_field_added_with_a_default_is_compatible():
    class ThingWithOptional(Event):
        thing_id: str
        size: int = 0
        owner: str = "nobody"
        tags: list[str] = Field(default_factory=list)

    assert backward_problems(_schema(Thing), _schema(ThingWithOptional)) == []


def test_narrowing_a_type_or_making_a_field_required_is_incompatible():
    class Narrowed(Event):
        thing_id: int
        size: int

    problems = backward_problems(_schema(Thing), _schema(Narrowed))
    assert ".size: became required (old data may lack it)" in problems
    assert any(p.startswith(".thing_id: no longer accepts") for p in problems)


def test_widening_int_to_float_is_compatible():
    class Widened(Event):
        thing_id: str
        size: float = 0.0

    assert backward_problems(_schema(Thing), _schema(Widened)) == []


def test_a_change_needs_a_version_bump_and_a_removed_event_is_reported():
    recorded = {"Thing": describe(Thing), "Gone": describe(Thing)}

    class ThingV1(Event):
        thing_id: str
        size: int = 0
        colour: str = "red"

    class ThingV2(ThingV1):
        schema_version: ClassVar[int] = 2

    problems = compatibility_report({"Thing": ThingV1}, recorded)
    assert "Gone: event schema removed" in problems
    assert "Thing: schema changed but schema_version is still 1" in problems
    assert compatibility_report({"Thing": ThingV2}, {"Thing": describe(Thing)}) == []


def test_events_are_namespaced_and_versioned():
    assert BugReport.full_name() == "io.fixstream.BugReport"
    assert all(model.schema_version >= 1 for model in EVENTS.values())


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_nested_definitions_are_checked_too(name):
    schema = EVENTS[name].model_json_schema(mode="validation")
    for definition in schema.get("$defs", {}).values():
        if "properties" not in definition:
            continue
        broken = {**definition, "required": [*definition.get("required", []), "brand_new"]}
        problems = backward_problems(schema, {**schema, "$defs": {**schema["$defs"], "X": broken}})
        assert problems == []  # an unrelated new definition changes nothing
