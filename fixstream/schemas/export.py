"""Write the event schemas out as JSON Schema or Avro, for registries and other languages."""

from __future__ import annotations

from typing import Any

from fixstream.schemas.base import Event

_AVRO_PRIMITIVES = {
    "string": "string",
    "integer": "long",
    "number": "double",
    "boolean": "boolean",
    "null": "null",
}


SCHEMA_BASE = "https://schemas.fixstream.invalid"
"""An absolute base for each schema's ``$id`` (its ``$ref``s resolve against it); ``.invalid``
because nothing is served there: the schemas ship with fixstream and its registry."""


def to_jsonschema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    schema["$id"] = f"{SCHEMA_BASE}/{model.full_name()}/v{model.schema_version}.json"
    return schema


class _AvroBuilder:
    """Turns a pydantic JSON schema into Avro, naming each nested record once."""

    def __init__(self, namespace: str, defs: dict[str, Any]) -> None:
        self.namespace = namespace
        self.defs = defs
        self.named: set[str] = set()

    def record(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        self.named.add(name)
        required = set(schema.get("required", []))
        fields = []
        for field, prop in schema.get("properties", {}).items():
            avro_type = self.type_of(prop, hint=f"{name}_{field}")
            entry: dict[str, Any] = {"name": field, "type": avro_type}
            if field not in required:
                default = prop.get("default")
                if default is not None and not isinstance(avro_type, list):
                    entry["default"] = default
                else:
                    if not (isinstance(avro_type, list) and "null" in avro_type):
                        entry["type"] = ["null", avro_type]
                    entry["default"] = None
            if "description" in prop:
                entry["doc"] = prop["description"]
            fields.append(entry)
        return {"type": "record", "name": name, "namespace": self.namespace, "fields": fields}

    def type_of(self, prop: dict[str, Any], hint: str) -> Any:
        if "$ref" in prop:
            name = prop["$ref"].rsplit("/", 1)[-1]
            if name in self.named:
                return f"{self.namespace}.{name}"
            target = self.defs[name]
            if "enum" in target:
                return {"type": "enum", "name": name, "symbols": target["enum"]}
            return self.record(name, target)
        if "anyOf" in prop:
            options = [self.type_of(p, hint) for p in prop["anyOf"]]
            nulls = [o for o in options if o == "null"]
            return nulls + [o for o in options if o != "null"]
        if "enum" in prop or "const" in prop:
            return "string"
        kind = prop.get("type", "string")
        if kind == "array":
            items = prop.get("items") or prop.get("prefixItems", [{"type": "string"}])[0]
            return {"type": "array", "items": self.type_of(items, hint)}
        if kind == "object":
            if "properties" in prop:
                return self.record(hint, prop)
            values = prop.get("additionalProperties") or {"type": "string"}
            if values is True:
                values = {"type": "string"}
            return {"type": "map", "values": self.type_of(values, hint)}
        if kind == "string" and prop.get("format") == "date-time":
            return {"type": "long", "logicalType": "timestamp-micros"}
        if kind == "string" and prop.get("format") == "binary":
            return "bytes"
        return _AVRO_PRIMITIVES.get(kind, "string")


def to_avro(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    builder = _AvroBuilder(model.namespace, schema.get("$defs", {}))
    record = builder.record(model.__name__, schema)
    record["doc"] = f"schema version {model.schema_version}"
    return record
