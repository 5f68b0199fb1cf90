import orjson
from typer.testing import CliRunner

from fixstream.cli import cli
from fixstream.schemas import EVENTS, BugReport
from fixstream.schemas.export import to_avro, to_jsonschema


def _avro_names(schema, seen=None):
    """Every named type in an Avro schema (each must be defined once)."""
    seen = seen if seen is not None else []
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            seen.append(schema["name"])
        for value in schema.values():
            _avro_names(value, seen)
    elif isinstance(schema, list):
        for value in schema:
            _avro_names(value, seen)
    return seen


def test_avro_record_has_namespace_optional_defaults_and_unique_names():
    avro = to_avro(BugReport)
    assert avro["namespace"] == "io.fixstream" and avro["name"] == "BugReport"
    fields = {f["name"]: f for f in avro["fields"]}
    assert fields["bug_id"]["type"] == "string" and "default" not in fields["bug_id"]
    assert fields["source"]["default"] == "unknown"
    assert fields["comments"]["type"][0] == "null"
    for model in EVENTS.values():
        names = _avro_names(to_avro(model))
        assert len(names) == len(set(names)), f"{model.__name__} defines a type twice"


def test_jsonschema_carries_id_with_version():
    assert to_jsonschema(BugReport)["$id"].endswith("/io.fixstream.BugReport/v4.json")


def test_cli_exports_every_schema_to_a_directory(tmp_path):
    result = CliRunner().invoke(
        cli, ["schemas", "export", "--format", "avro", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{name}.avsc" for name in EVENTS)
    assert orjson.loads((tmp_path / "FixEvent.avsc").read_bytes())["name"] == "FixEvent"


def test_cli_rejects_an_unknown_format():
    result = CliRunner().invoke(cli, ["schemas", "export", "--format", "protobuf"])
    assert result.exit_code != 0
    assert "jsonschema" in result.output
