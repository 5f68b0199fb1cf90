"""Model profiles: the per-model numbers of the simulator's latency model.

Profiles live in YAML (shipped ``profiles.yaml`` plus an optional user file) so a benchmark can
be re-run against a different hardware/model assumption without touching code.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

BUILTIN_PROFILES_RESOURCE = "profiles.yaml"


class ModelProfile(BaseModel):
    """Latency and price figures of one simulated model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Literal["chat", "embedding"] = "chat"
    base_latency_ms: float = Field(200.0, ge=0)
    prefill_ms_per_input_token: float = Field(ge=0)
    output_tokens_per_second: float = Field(gt=0)
    price_input_per_1m: float = Field(0.0, ge=0)
    price_output_per_1m: float = Field(0.0, ge=0)

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """What the real model would bill, for reports."""
        return (
            input_tokens * self.price_input_per_1m + output_tokens * self.price_output_per_1m
        ) / 1_000_000


def _entries(data: Any, source: str) -> dict[str, dict[str, Any]]:
    """Accept ``{models: {name: {...}}}``, ``{models: [{name: ...}]}`` or a bare mapping."""
    if data is None:
        return {}
    models = data.get("models", data) if isinstance(data, Mapping) else data
    if isinstance(models, Mapping):
        return {str(k): dict(v or {}) for k, v in models.items()}
    if isinstance(models, list):
        out: dict[str, dict[str, Any]] = {}
        for item in models:
            if not isinstance(item, Mapping) or "name" not in item:
                raise ValueError(f"{source}: every profile in a list needs a 'name'")
            out[str(item["name"])] = dict(item)
        return out
    raise ValueError(f"{source}: expected a mapping or list of model profiles")


def merge_profiles(
    base: Mapping[str, ModelProfile], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, ModelProfile]:
    """Overlay partial profile fields on ``base``; unknown names become new profiles."""
    merged = dict(base)
    for name, fields in overrides.items():
        current = merged.get(name)
        data = current.model_dump() if current is not None else {}
        data.update(fields)
        data["name"] = name
        merged[name] = ModelProfile.model_validate(data)
    return merged


def parse_profiles_yaml(text: str, source: str = "<yaml>") -> dict[str, dict[str, Any]]:
    """Raw (unvalidated) profile entries from YAML text."""
    return _entries(yaml.safe_load(text), source)


@lru_cache(maxsize=1)
def _builtin() -> tuple[ModelProfile, ...]:
    text = resources.files(__package__).joinpath(BUILTIN_PROFILES_RESOURCE).read_text("utf-8")
    profiles = merge_profiles({}, parse_profiles_yaml(text, BUILTIN_PROFILES_RESOURCE))
    return tuple(profiles.values())


def builtin_profiles() -> dict[str, ModelProfile]:
    """The profiles shipped with the package (a fresh dict each call)."""
    return {p.name: p for p in _builtin()}


def load_profiles(
    path: str | Path | None = None, base: Mapping[str, ModelProfile] | None = None
) -> dict[str, ModelProfile]:
    """``base`` (default: built-ins) overridden by the YAML file at ``path`` if given."""
    profiles = dict(base) if base is not None else builtin_profiles()
    if path is None:
        return profiles
    p = Path(path)
    return merge_profiles(profiles, parse_profiles_yaml(p.read_text("utf-8"), str(p)))
