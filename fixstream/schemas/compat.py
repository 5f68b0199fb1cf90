"""Schema snapshots and the backward-compatibility rule a schema registry enforces.

BACKWARD: a reader on the new schema must read data written with the old one. So a new
field needs a default, a field may not become required, and a field's type may only widen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from fixstream.schemas.base import Event

SNAPSHOT_PATH = Path(__file__).with_name("snapshot.json")


def describe(model: type[Event]) -> dict[str, Any]:
    return {
        "name": model.full_name(),
        "version": model.schema_version,
        "schema": model.model_json_schema(mode="validation"),
    }


def snapshot(models: dict[str, type[Event]]) -> dict[str, Any]:
    return {name: describe(model) for name, model in sorted(models.items())}


def load_snapshot(path: Path = SNAPSHOT_PATH) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


def write_snapshot(models: dict[str, type[Event]], path: Path = SNAPSHOT_PATH) -> None:
    path.write_bytes(orjson.dumps(snapshot(models), option=orjson.OPT_INDENT_2) + b"\n")


def _types(prop: dict[str, Any]) -> set[str]:
    """The set of JSON types a property accepts (refs count as their name)."""
    if "$ref" in prop:
        return {prop["$ref"]}
    if "anyOf" in prop:
        return set().union(*(_types(p) for p in prop["anyOf"]))
    if "const" in prop:
        return {f"const:{prop['const']}"}
    if "enum" in prop:
        return {f"const:{v}" for v in prop["enum"]}
    t = prop.get("type", "any")
    return set(t) if isinstance(t, list) else {t}


def _object_problems(where: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for field in sorted(new_required - old_required):
        if field in old_props:
            problems.append(f"{where}.{field}: became required (old data may lack it)")
        else:
            problems.append(f"{where}.{field}: new field is required; give it a default")
    for field, old_prop in old_props.items():
        new_prop = new_props.get(field)
        if new_prop is None:
            if new.get("additionalProperties") is False:
                problems.append(f"{where}.{field}: removed while extra fields are forbidden")
            continue
        accepted = _types(new_prop)
        lost = _types(old_prop) - accepted - {"any"}
        if "number" in accepted:
            lost.discard("integer")  # every int reads as a number
        if lost and "any" not in accepted:
            problems.append(f"{where}.{field}: no longer accepts {sorted(lost)}")
    return problems


def backward_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why data written with ``old`` (a JSON schema) would not read under ``new``."""
    problems = _object_problems("", old, new)
    old_defs, new_defs = old.get("$defs", {}), new.get("$defs", {})
    for name, old_def in old_defs.items():
        if name in new_defs:
            problems += _object_problems(name, old_def, new_defs[name])
    return problems


def compatibility_report(current: dict[str, type[Event]], recorded: dict[str, Any]) -> list[str]:
    """Backward-incompatible changes against the recorded snapshot, and schemas that changed
    without a version bump."""
    problems: list[str] = []
    for name, entry in recorded.items():
        model = current.get(name)
        if model is None:
            problems.append(f"{name}: event schema removed")
            continue
        schema = model.model_json_schema(mode="validation")
        for p in backward_problems(entry["schema"], schema):
            problems.append(f"{name}{p}" if p.startswith(".") else f"{name}: {p}")
        if schema != entry["schema"] and model.schema_version <= entry["version"]:
            problems.append(
                f"{name}: schema changed but schema_version is still {model.schema_version}"
            )
    return problems
