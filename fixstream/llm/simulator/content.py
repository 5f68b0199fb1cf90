"""Answer generation for the simulator: scripted, schema-valid, JSON-object, lorem text, embeddings.

Everything is deterministic from the prompt (plus the configured seed) so a pipeline run against the
simulator is reproducible, and sized by tokens so the latency model sees realistic output lengths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import re
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict

from fixstream.tokens import count_tokens, message_text, truncate_to_tokens

FinishReason = Literal["stop", "length"]
ContentKind = Literal["scenario", "json_schema", "json_object", "text"]

JSON_TARGET_FRACTION = 0.9
"""Generated JSON aims below ``max_tokens`` so it normally ends with ``stop``, not ``length``."""

MAX_SCHEMA_DEPTH = 8
"""Below this depth recursive schemas are closed off (nulls, required-only, minimal arrays)."""

_VOCABULARY = """
    the a function returns null when input is empty and value error in test case file line
    module import class method call stack trace bug fix patch change update check before after
    list dict string number index key field type schema parse read write open close request
    response server client timeout retry limit token model stream event topic message queue
    worker task state cache lock thread loop async await result data record batch commit offset
    build run pass fail assert expected actual missing wrong default config option flag path
    user report issue version release branch merge diff hunk context scope variable loop guard
    handle raise catch log debug trace warning info handler parser buffer length size count
    first last next previous start end order sort filter map reduce join split format encode
    decode bytes text line column row table query insert delete select where from into with
    this that should must can will may not only also then because so but or if for while
"""
_WORDS: tuple[str, ...] = tuple(dict.fromkeys(_VOCABULARY.split()))

_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_WORD_RE = re.compile(r"[a-z0-9_]+")


# --------------------------------------------------------------------------- scenario rules


class ScenarioRule(BaseModel):
    """A scripted answer: the first rule whose ``match`` occurs in the prompt wins.

    ``match`` is a plain substring, or a regular expression when prefixed with ``re:``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str
    model: str | None = None
    response: Any
    delay_seconds: float = 0.0
    """Extra wall-clock seconds before the first token (not time-scaled): a slow call on
    purpose, for delivery tests."""

    def content(self) -> str:
        """The answer text; JSON values (objects, lists, numbers) are serialized compactly."""
        if isinstance(self.response, str):
            return self.response
        return orjson.dumps(self.response).decode()


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: ScenarioRule
    regex: re.Pattern[str] | None

    def matches(self, prompt: str, model: str) -> bool:
        if self.rule.model is not None and self.rule.model != model:
            return False
        if self.regex is not None:
            return self.regex.search(prompt) is not None
        return self.rule.match in prompt


def _compile(rule: ScenarioRule) -> _CompiledRule:
    if rule.match.startswith("re:"):
        return _CompiledRule(rule, re.compile(rule.match[3:]))
    return _CompiledRule(rule, None)


def parse_scenario(data: Any, source: str = "<scenario>") -> list[ScenarioRule]:
    """Rules from a decoded scenario document: a list, or a mapping with a ``rules`` list."""
    if isinstance(data, Mapping):
        data = data.get("rules")
    if not isinstance(data, list):
        raise ValueError(f"{source}: a scenario must be a list of rules (or {{rules: [...]}})")
    return [ScenarioRule.model_validate(item) for item in data]


def load_scenario(path: str | Path) -> list[ScenarioRule]:
    """Rules from a ``.json`` (orjson) or YAML scenario file."""
    p = Path(path)
    raw = p.read_bytes()
    data = orjson.loads(raw) if p.suffix.lower() == ".json" else yaml.safe_load(raw)
    return parse_scenario(data, str(p))


def match_rule(rules: Iterable[ScenarioRule], prompt: str, model: str) -> ScenarioRule | None:
    """The first rule matching ``prompt`` (and ``model`` if the rule names one)."""
    for rule in rules:
        if _compile(rule).matches(prompt, model):
            return rule
    return None


# --------------------------------------------------------------------------- seeds and text


def prompt_seed(prompt: str, salt: int | str = 0) -> int:
    """A stable 64-bit seed from the prompt, so the same prompt gets the same answer."""
    digest = hashlib.blake2b(f"{salt}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _sentence(rng: random.Random) -> str:
    text = _words(rng, rng.randint(6, 16))
    return text[0].upper() + text[1:] + "."


def lorem_text(target_tokens: int, seed: int) -> str:
    """Deterministic lorem-like prose of at most (and close to) ``target_tokens`` tokens."""
    if target_tokens <= 0:
        return ""
    rng = random.Random(seed)
    sentences: list[str] = []
    estimate = 0
    while estimate < target_tokens + 4:
        sentence = _sentence(rng)
        sentences.append(sentence)
        estimate += count_tokens(sentence)
    text = " ".join(sentences)
    if count_tokens(text) <= target_tokens:
        return text
    text = truncate_to_tokens(text, max(1, target_tokens - 1))
    cut = text.rfind(" ")
    if cut > 0:
        text = text[:cut].rstrip(".,") + "."
    return text if count_tokens(text) <= target_tokens else truncate_to_tokens(text, target_tokens)


def split_for_stream(content: str, parts: int) -> list[str]:
    """Split ``content`` into ``parts`` contiguous deltas of roughly equal token-ish pieces."""
    if parts <= 1 or not content:
        return [content]
    pieces = _PIECE_RE.findall(content)
    parts = min(parts, len(pieces))
    out: list[str] = []
    for i in range(parts):
        lo = len(pieces) * i // parts
        hi = len(pieces) * (i + 1) // parts
        out.append("".join(pieces[lo:hi]))
    return out


# --------------------------------------------------------------------------- JSON schema


class _SchemaGenerator:
    """Builds one instance valid against a JSON schema (the subset structured outputs use).

    Structural choices come from one RNG; each free-length string draws its words from its own
    RNG, so changing the words-per-string knob resizes strings without changing the structure.
    """

    def __init__(self, root: Any, seed: int, words_per_string: float) -> None:
        self.root = root
        self.seed = seed
        self.words = words_per_string
        self.rng = random.Random(seed)
        self.free_strings = 0

    # -- dispatch

    def generate(self, schema: Any, depth: int = 0) -> Any:
        if schema is True or schema is None:
            return self._string({}, depth)
        if schema is False or not isinstance(schema, Mapping):
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self.rng.choice(list(schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.generate(self._pick_branch(schema[key], depth), depth + 1)
        if "allOf" in schema:
            return self.generate(self._merge_all_of(schema), depth)
        kind = self._type_of(schema)
        handler = getattr(self, f"_{kind}", self._string)
        return handler(schema, depth)

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 64:
            ref = schema["$ref"]
            target = self._pointer(ref)
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if extra else target
            seen += 1
        return schema

    def _pointer(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node: Any = self.root
        for raw in ref[1:].split("/"):
            if raw:
                node = node[raw.replace("~1", "/").replace("~0", "~")]
        if not isinstance(node, Mapping):
            raise ValueError(f"$ref {ref!r} does not point at a schema object")
        return node

    def _pick_branch(self, branches: Sequence[Any], depth: int) -> Any:
        def is_null(s: Any) -> bool:
            return isinstance(s, Mapping) and self._resolve(s).get("type") == "null"

        if depth >= MAX_SCHEMA_DEPTH and any(is_null(b) for b in branches):
            return {"type": "null"}
        for branch in branches:
            if not is_null(branch):
                return branch
        return branches[0] if branches else {"type": "null"}

    def _merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self._resolve(part) if isinstance(part, Mapping) else {}
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = sorted({*merged.get("required", []), *value})
                else:
                    merged.setdefault(key, value)
        return merged

    @staticmethod
    def _type_of(schema: Mapping[str, Any]) -> str:
        declared = schema.get("type")
        if isinstance(declared, list):
            non_null = [t for t in declared if t != "null"]
            declared = non_null[0] if non_null else "null"
        if isinstance(declared, str):
            return declared
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return "string"

    # -- scalar types

    def _null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None

    def _boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _integer(self, schema: Mapping[str, Any], depth: int) -> int:
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        if "exclusiveMinimum" in schema:
            lo = math.floor(schema["exclusiveMinimum"]) + 1
        if "exclusiveMaximum" in schema:
            hi = math.ceil(schema["exclusiveMaximum"]) - 1
        lo = math.ceil(lo) if lo is not None else None
        hi = math.floor(hi) if hi is not None else None
        if lo is None and hi is None:
            lo, hi = 0, 100
        elif lo is None:
            lo = hi - 100
        elif hi is None:
            hi = lo + 100
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first, last = -(-lo // step), hi // step
            if first <= last:
                return self.rng.randint(first, last) * step
        return self.rng.randint(lo, max(lo, hi))

    def _number(self, schema: Mapping[str, Any], depth: int) -> float | int:
        if isinstance(schema.get("multipleOf"), int):
            return self._integer(schema, depth)
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if lo is None and hi is None:
            lo, hi = 0.0, 100.0
        elif lo is None:
            lo = hi - 100.0
        elif hi is None:
            hi = lo + 100.0
        lo, hi = float(lo), float(hi)
        span = hi - lo
        # Stay strictly inside the interval so exclusive bounds hold; round for readable output.
        value = round(lo + span * (0.05 + 0.9 * self.rng.random()), 3)
        if not lo < value < hi:
            value = lo + span / 2
        if "exclusiveMinimum" not in schema and "exclusiveMaximum" not in schema:
            value = min(max(value, lo), hi)
        return value

    def _string(self, schema: Mapping[str, Any], depth: int) -> str:
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt](self.rng)
        min_len = int(schema.get("minLength", 0))
        max_len = schema.get("maxLength")
        self.free_strings += 1
        slot_rng = random.Random(self.seed * 1_000_003 + self.free_strings)
        n = max(1, round(self.words * slot_rng.uniform(0.6, 1.4)))
        text = _words(slot_rng, n)
        while len(text) < min_len:
            text += " " + _words(slot_rng, 4)
        if max_len is not None and len(text) > int(max_len):
            text = text[: int(max_len)].rstrip()
            text = text.ljust(min(min_len, int(max_len)), "x")
        return text

    # -- containers

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        lo = int(schema.get("minItems", 0))
        hi = schema.get("maxItems")
        prefix = list(schema.get("prefixItems", []))
        items = schema.get("items", {} if not prefix else False)
        preferred = lo if depth >= MAX_SCHEMA_DEPTH else max(lo, 2, len(prefix))
        count = min(preferred, int(hi)) if hi is not None else preferred
        if items is False:
            count = min(count, len(prefix))
        out: list[Any] = []
        unique = bool(schema.get("uniqueItems"))
        seen: set[bytes] = set()
        attempts = 0
        while len(out) < count and attempts < count * 8 + 8:
            attempts += 1
            sub = prefix[len(out)] if len(out) < len(prefix) else items
            value = self.generate(sub, depth + 1)
            if unique:
                key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
                if key in seen:
                    continue
                seen.add(key)
            out.append(value)
        return out

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if depth >= MAX_SCHEMA_DEPTH and name not in required:
                continue
            out[name] = self.generate(sub, depth + 1)
        for name in required - out.keys():
            out[name] = self.generate(schema.get("additionalProperties", True), depth + 1)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, Mapping):
            want = max(int(schema.get("minProperties", 0)), 0 if depth >= MAX_SCHEMA_DEPTH else 2)
            for i in range(want):
                out[f"key_{i + 1}"] = self.generate(extra, depth + 1)
        return out


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


_FORMATS: dict[str, Any] = {
    "date-time": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T12:00:00Z",
    "date": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00",
    "email": lambda r: f"user{r.randint(1, 999)}@example.com",
    "uri": lambda r: f"https://example.com/{r.choice(_WORDS)}",
    "url": lambda r: f"https://example.com/{r.choice(_WORDS)}",
    "hostname": lambda r: f"{r.choice(_WORDS)}.example.com",
    "ipv4": lambda r: f"10.0.{r.randint(0, 255)}.{r.randint(1, 254)}",
    "uuid": _uuid,
    "duration": lambda r: f"PT{r.randint(1, 59)}S",
}


def _render(schema: Any, seed: int, words: float) -> tuple[Any, str, int, int]:
    gen = _SchemaGenerator(schema, seed, words)
    value = gen.generate(schema)
    text = orjson.dumps(value).decode()
    return value, text, count_tokens(text), gen.free_strings


def generate_from_schema(schema: Mapping[str, Any], target_tokens: int, seed: int) -> Any:
    """A JSON value valid against ``schema`` whose serialization is about ``target_tokens`` long.

    Strings carry the size: render once with one word per string, then solve for the words per
    string that reaches the target (two linear steps; tokens grow ~linearly with words).
    """
    value, _, base_tokens, slots = _render(schema, seed, 1.0)
    if slots == 0 or base_tokens >= target_tokens:
        return value
    words = 1.0 + (target_tokens - base_tokens) / slots
    for _ in range(2):
        value, _, tokens, _ = _render(schema, seed, words)
        grown = tokens - base_tokens
        if grown <= 0 or abs(tokens - target_tokens) <= max(3, target_tokens * 0.08):
            break
        per_word = grown / (slots * (words - 1.0))
        words = max(1.0, 1.0 + (target_tokens - base_tokens) / (slots * per_word))
    if tokens > target_tokens and words > 1.0:
        words = max(1.0, words * target_tokens / tokens * 0.97)
        value, _, _, _ = _render(schema, seed, words)
    return value


JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "details": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "ok": {"type": "boolean"},
    },
    "required": ["summary", "details", "confidence", "ok"],
    "additionalProperties": False,
}
"""What ``response_format={"type": "json_object"}`` answers look like (any object is allowed)."""


# --------------------------------------------------------------------------- completions


@dataclass(frozen=True, slots=True)
class GeneratedContent:
    """One answer, with how it was produced and how many tokens it costs."""

    content: str
    finish_reason: FinishReason
    output_tokens: int
    kind: ContentKind
    delay_seconds: float = 0.0

    @property
    def is_json(self) -> bool:
        if self.kind in ("json_schema", "json_object"):
            return True
        stripped = self.content.lstrip()
        return stripped.startswith(("{", "["))


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """All messages' text joined (content strings and text parts), for matching and seeding."""
    return "\n".join(message_text(m) for m in messages)


def _cap(content: str, kind: ContentKind, max_tokens: int | None) -> GeneratedContent:
    tokens = count_tokens(content)
    if max_tokens is not None and tokens > max_tokens:
        content = truncate_to_tokens(content, max_tokens)
        return GeneratedContent(content, "length", count_tokens(content), kind)
    return GeneratedContent(content, "stop", tokens, kind)


class ContentGenerator:
    """Chooses and produces the answer for one chat completion request."""

    def __init__(
        self, rules: Sequence[ScenarioRule], default_output_tokens: int = 200, seed: int = 0
    ) -> None:
        self._rules = [_compile(r) for r in rules]
        self.default_output_tokens = default_output_tokens
        self.seed = seed

    def generate(
        self,
        *,
        model: str,
        prompt: str,
        response_format: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
    ) -> GeneratedContent:
        for compiled in self._rules:
            if compiled.matches(prompt, model):
                answer = _cap(compiled.rule.content(), "scenario", max_tokens)
                return dataclasses.replace(answer, delay_seconds=compiled.rule.delay_seconds)
        seed = prompt_seed(prompt, f"{self.seed}:{model}")
        target = max_tokens if max_tokens is not None else self.default_output_tokens
        fmt = (response_format or {}).get("type")
        if fmt == "json_schema":
            schema = ((response_format or {}).get("json_schema") or {}).get("schema") or {}
            json_target = max(1, int(target * JSON_TARGET_FRACTION))
            value = generate_from_schema(schema, json_target, seed)
            return _cap(orjson.dumps(value).decode(), "json_schema", max_tokens)
        if fmt == "json_object":
            json_target = max(1, int(target * JSON_TARGET_FRACTION))
            value = generate_from_schema(JSON_OBJECT_SCHEMA, json_target, seed)
            return _cap(orjson.dumps(value).decode(), "json_object", max_tokens)
        return _cap(lorem_text(target, seed), "text", max_tokens)


# --------------------------------------------------------------------------- embeddings


@lru_cache(maxsize=1 << 16)
def _feature_hash(feature: str) -> int:
    return zlib.crc32(feature.encode())


def embed_text(text: str, dimensions: int = 256) -> list[float]:
    """A deterministic L2-normalized bag of hashed words and character 3-grams.

    Shared words and sub-word shapes land in the same buckets, so near-duplicate texts get a
    high cosine similarity and unrelated texts a low one, with no model to download.
    """
    vec = [0.0] * dimensions
    for word in _WORD_RE.findall(text.lower()):
        _add(vec, "w:" + word, 1.0)
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            _add(vec, "c:" + padded[i : i + 3], 0.5)
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0.0:
        vec[0] = 1.0
        return vec
    return [x / norm for x in vec]


def _add(vec: list[float], feature: str, weight: float) -> None:
    h = _feature_hash(feature)
    vec[h % len(vec)] += -weight if h & 0x80000000 else weight


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity (helper for tests and callers comparing embeddings)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
