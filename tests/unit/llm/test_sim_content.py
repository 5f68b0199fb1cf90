"""Unit tests of the simulator's answer generation, embeddings, profiles and latency model."""

from __future__ import annotations

import math
import random
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from pydantic import BaseModel, Field

from fixstream.llm.ratewindow import RateLimiter
from fixstream.llm.simulator.content import (
    ContentGenerator,
    ScenarioRule,
    cosine,
    embed_text,
    generate_from_schema,
    load_scenario,
    lorem_text,
    match_rule,
    split_for_stream,
)
from fixstream.llm.simulator.latency import decode_seconds, total_seconds, ttft_seconds
from fixstream.llm.simulator.profiles import ModelProfile, builtin_profiles, load_profiles
from fixstream.llm.simulator.server import FaultRates
from fixstream.tokens import count_prompt_tokens, count_tokens

# --------------------------------------------------------------------------- a tiny validator


def _resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def validate(value: Any, schema: Any, root: dict[str, Any] | None = None, path: str = "$") -> None:
    """Assert ``value`` satisfies the JSON-schema subset the generator claims to support."""
    root = root if root is not None else schema
    if schema is True or schema == {}:
        return
    schema = _resolve(root, schema)
    if "const" in schema:
        assert value == schema["const"], path
        return
    if "enum" in schema:
        assert value in schema["enum"], path
        return
    for key in ("anyOf", "oneOf"):
        if key in schema:
            errors = 0
            for sub in schema[key]:
                try:
                    validate(value, sub, root, path)
                except AssertionError:
                    errors += 1
            matched = len(schema[key]) - errors
            assert matched >= 1 if key == "anyOf" else matched == 1, f"{path}: {key}"
            return
    kind = schema.get("type")
    if isinstance(kind, list):
        assert any(_type_ok(value, k) for k in kind), path
        kind = next(k for k in kind if _type_ok(value, k))
    if kind is not None:
        assert _type_ok(value, kind), f"{path}: {value!r} is not {kind}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            assert name in value, f"{path}: missing {name}"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                validate(item, props[name], root, f"{path}.{name}")
            else:
                assert extra is not False, f"{path}: unexpected {name}"
                if isinstance(extra, dict):
                    validate(item, extra, root, f"{path}.{name}")
    elif isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0), path
        assert len(value) <= schema.get("maxItems", math.inf), path
        if schema.get("uniqueItems"):
            assert len({orjson.dumps(v) for v in value}) == len(value), path
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            assert sub is not False, f"{path}[{i}]: no schema allows this item"
            validate(item, sub, root, f"{path}[{i}]")
    elif isinstance(value, str):
        assert schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf), path
    elif isinstance(value, int | float) and not isinstance(value, bool):
        assert value >= schema.get("minimum", -math.inf), path
        assert value <= schema.get("maximum", math.inf), path
        assert value > schema.get("exclusiveMinimum", -math.inf), path
        assert value < schema.get("exclusiveMaximum", math.inf), path


def _type_ok(value: Any, kind: str) -> bool:
    match kind:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
    raise AssertionError(f"unknown type {kind}")


# --------------------------------------------------------------------------- schemas under test


class Severity(StrEnum):
    LOW = "low"
    HIGH = "high"


class Location(BaseModel):
    file: str = Field(min_length=3, max_length=40)
    line: int = Field(ge=1, le=5000)


class Finding(BaseModel):
    kind: Literal["bug"] = "bug"
    severity: Severity
    where: Location
    tags: list[str] = Field(min_length=1, max_length=3)
    score: float = Field(gt=0, lt=1)
    confirmed: bool
    note: str | None = None


class Report(BaseModel):
    summary: str
    findings: list[Finding] = Field(min_length=2, max_length=5)
    counts: dict[str, int]
    related: tuple[int, str]


class TreeNode(BaseModel):
    name: str
    children: list[TreeNode] = Field(default_factory=list)


HAND_SCHEMAS: list[dict[str, Any]] = [
    {"type": "string", "minLength": 50, "maxLength": 60},
    {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 13},
    {"type": "number", "minimum": -1.5, "maximum": -1.5},
    {"type": ["string", "null"], "maxLength": 5},
    {"type": "array", "items": {"enum": [1, 2, 3]}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "items": {"type": "boolean"}, "maxItems": 0},
    {"const": {"fixed": True}},
    {"type": "null"},
    {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Inner"}]},
            "b": {"oneOf": [{"type": "integer", "minimum": 5}, {"type": "string"}]},
            "c": {"allOf": [{"$ref": "#/$defs/Inner"}]},
        },
        "required": ["a", "b", "c"],
        "additionalProperties": False,
        "$defs": {
            "Inner": {
                "type": "object",
                "properties": {"x": {"type": "string", "format": "date-time"}},
                "required": ["x"],
                "additionalProperties": False,
            }
        },
    },
]


@pytest.mark.parametrize("schema", HAND_SCHEMAS, ids=lambda s: orjson.dumps(s).decode()[:40])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_hand_written_schemas_produce_valid_instances(schema: dict[str, Any], seed: int) -> None:
    value = generate_from_schema(schema, 100, seed)
    validate(value, schema)


@pytest.mark.parametrize("model", [Report, Finding, TreeNode, Location])
@pytest.mark.parametrize("target", [20, 200, 800])
def test_pydantic_schemas_round_trip(model: type[BaseModel], target: int) -> None:
    schema = model.model_json_schema()
    value = generate_from_schema(schema, target, seed=7)
    validate(value, schema)
    model.model_validate_json(orjson.dumps(value))


@pytest.mark.parametrize("target", [150, 400, 1200])
def test_schema_output_size_tracks_target(target: int) -> None:
    value = generate_from_schema(Report.model_json_schema(), target, seed=3)
    tokens = count_tokens(orjson.dumps(value).decode())
    assert 0.75 * target <= tokens <= 1.1 * target


def test_schema_generation_is_deterministic() -> None:
    schema = Report.model_json_schema()
    assert generate_from_schema(schema, 300, 9) == generate_from_schema(schema, 300, 9)
    assert generate_from_schema(schema, 300, 9) != generate_from_schema(schema, 300, 10)


def test_generator_json_modes_and_max_tokens() -> None:
    gen = ContentGenerator([], default_output_tokens=120)
    schema_fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": {}}}
    schema_fmt["json_schema"]["schema"] = Finding.model_json_schema()
    out = gen.generate(model="m", prompt="p", response_format=schema_fmt)
    Finding.model_validate_json(out.content)
    assert out.finish_reason == "stop" and out.output_tokens == count_tokens(out.content)

    obj = gen.generate(model="m", prompt="p", response_format={"type": "json_object"})
    assert isinstance(orjson.loads(obj.content), dict)

    text = gen.generate(model="m", prompt="p", max_tokens=40)
    assert 30 <= text.output_tokens <= 40 and text.finish_reason == "stop"
    assert gen.generate(model="m", prompt="p", max_tokens=40) == text

    tight = gen.generate(model="m", prompt="p", response_format=schema_fmt, max_tokens=5)
    assert tight.finish_reason == "length" and tight.output_tokens <= 5


@pytest.mark.parametrize("target", [1, 10, 100, 1000])
def test_lorem_text_size(target: int) -> None:
    text = lorem_text(target, seed=5)
    assert 0.8 * target - 1 <= count_tokens(text) <= target


def test_split_for_stream_keeps_content() -> None:
    text = orjson.dumps(Report.model_json_schema()).decode()
    parts = split_for_stream(text, 17)
    assert "".join(parts) == text and len(parts) == 17


# --------------------------------------------------------------------------- scenarios


def test_scenario_matching_first_rule_wins(tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "- match: 're:Traceback.*KeyError'\n"
        "  response: {root_cause: missing key, confidence: 0.9}\n"
        "- match: KeyError\n"
        "  model: gpt-4.1-mini\n"
        "  response: mini answer\n"
        "- match: KeyError\n"
        "  response: plain answer\n"
    )
    rules = load_scenario(path)
    gen = ContentGenerator(rules)
    first = gen.generate(model="gpt-4.1", prompt="Traceback (most recent call last): KeyError")
    assert orjson.loads(first.content) == {"root_cause": "missing key", "confidence": 0.9}
    assert gen.generate(model="gpt-4.1-mini", prompt="a KeyError").content == "mini answer"
    assert gen.generate(model="gpt-4.1", prompt="a KeyError").content == "plain answer"
    assert match_rule(rules, "nothing here", "gpt-4.1") is None


def test_scenario_json_file(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_bytes(orjson.dumps({"rules": [{"match": "hello", "response": [1, 2]}]}))
    rule = match_rule(load_scenario(path), "say hello", "any")
    assert rule is not None and rule.content() == "[1,2]"
    assert ScenarioRule(match="x", response="y").content() == "y"


# --------------------------------------------------------------------------- embeddings


def test_embeddings_similarity_ordering() -> None:
    base = "TypeError in parse_config: NoneType object is not subscriptable at config.py line 42"
    near = "TypeError in parse_config: 'NoneType' object is not subscriptable, config.py line 43"
    other = "The checkout page renders the wrong currency symbol for Swiss customers"
    a, b, c = embed_text(base), embed_text(near), embed_text(other)
    assert len(a) == 256 and math.isclose(math.sqrt(sum(x * x for x in a)), 1.0)
    assert cosine(a, b) > 0.9
    assert cosine(a, c) < 0.5
    assert embed_text(base) == a
    assert len(embed_text(base, 64)) == 64


# --------------------------------------------------------------------------- latency, profiles


def test_latency_functions() -> None:
    p = builtin_profiles()["gpt-4.1"]
    assert ttft_seconds(p, 1000) == pytest.approx((200 + 240) / 1000)
    assert ttft_seconds(p, 1000, 0.01) == pytest.approx(0.0044)
    assert decode_seconds(p, 1327) == pytest.approx(10.0)
    assert decode_seconds(p, 1327, 0.5) == pytest.approx(5.0)
    assert total_seconds(p, 1000, 1327) == pytest.approx(10.44)
    slow = builtin_profiles()["modulo-50tps"]
    assert decode_seconds(slow, 100) == pytest.approx(2.0)


def test_profiles_builtin_and_override(tmp_path: Path) -> None:
    profiles = builtin_profiles()
    assert {"gpt-4.1", "gpt-4.1-mini", "modulo-50tps"} <= profiles.keys()
    assert profiles["gpt-4.1"].output_tokens_per_second == 132.7
    path = tmp_path / "p.yaml"
    path.write_text(
        "models:\n  gpt-4.1: {output_tokens_per_second: 10}\n"
        "  tiny: {prefill_ms_per_input_token: 0.01, output_tokens_per_second: 1000}\n"
    )
    merged = load_profiles(path)
    assert merged["gpt-4.1"].output_tokens_per_second == 10
    assert merged["gpt-4.1"].prefill_ms_per_input_token == 0.24
    assert merged["tiny"] == ModelProfile(
        name="tiny", prefill_ms_per_input_token=0.01, output_tokens_per_second=1000
    )
    with pytest.raises(ValueError):
        profiles["gpt-4.1"].name = "x"  # type: ignore[misc]


def test_rate_limiter_window_and_retry_after() -> None:
    lim = RateLimiter(rpm=2, tpm=1000, window_seconds=6.0)
    assert lim.acquire(100, now=0.0).allowed
    assert lim.acquire(100, now=1.0).allowed
    denied = lim.acquire(100, now=2.0)
    assert not denied.allowed and denied.retry_after == pytest.approx(4.0)
    assert lim.acquire(100, now=6.5).allowed
    big = lim.acquire(900, now=6.6)
    assert not big.allowed and big.retry_after == pytest.approx(0.4)
    assert not lim.acquire(5000, now=100.0).retryable
    assert lim.headers(100.0)["x-ratelimit-remaining-requests"] == "2"


def test_fault_draws_follow_rates() -> None:

    rng = random.Random(1)
    rates = FaultRates(error_5xx=0.2, truncated=0.3)
    draws = [rates.draw(rng) for _ in range(5000)]
    assert draws.count("error_5xx") / 5000 == pytest.approx(0.2, abs=0.03)
    assert draws.count("truncated") / 5000 == pytest.approx(0.3, abs=0.03)
    assert FaultRates(hang=1.0).draw(rng) == "hang"
    with pytest.raises(ValueError):
        FaultRates(hang=0.7, malformed=0.7)


def test_input_token_count_includes_framing() -> None:
    msgs = [{"role": "user", "content": "hello world"}]
    assert count_prompt_tokens(msgs) > count_tokens("hello world")
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    assert count_prompt_tokens(parts) == count_prompt_tokens(msgs)
