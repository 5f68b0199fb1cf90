"""Do your own math (the talk): how long will it take, one call against N in parallel?

Prefill grows with input tokens (time to first token); decoding runs at the model's output
rate. Splitting the work into N parallel calls divides both, until a TPM/RPM limit bounds it.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class Profile(BaseModel):
    """What a model costs in time (the simulator's profiles, or measured ones)."""

    model_config = ConfigDict(frozen=True)

    prefill_ms_per_input_token: float = Field(ge=0)
    output_tokens_per_second: float = Field(gt=0)
    base_latency_ms: float = Field(default=0.0, ge=0)


class Leg(BaseModel):
    """One way of doing the work: ``calls`` calls, ``parallel`` at a time."""

    calls: int
    parallel: int
    prefill_s: float
    decode_s: float
    total_s: float


class Plan(BaseModel):
    input_tokens: int
    output_tokens: int
    one_call: Leg
    split: Leg
    speedup: float
    rate_bound_s: float | None = None
    """The least time the TPM/RPM limits allow for all the tokens and calls."""
    split_with_limits_s: float


def leg(profile: Profile, input_tokens: int, output_tokens: int, calls: int, parallel: int) -> Leg:
    """The work cut into ``calls`` equal calls, run ``parallel`` at a time (in waves)."""
    waves = math.ceil(calls / parallel)
    per_in, per_out = input_tokens / calls, output_tokens / calls
    prefill = waves * (profile.base_latency_ms + profile.prefill_ms_per_input_token * per_in) / 1000
    decode = waves * per_out / profile.output_tokens_per_second
    return Leg(calls=calls, parallel=parallel, prefill_s=prefill, decode_s=decode,
               total_s=prefill + decode)  # fmt: skip


def rate_bound(
    input_tokens: int, output_tokens: int, calls: int, tpm: int | None, rpm: int | None
) -> float | None:
    """Seconds the limits need at the very least: every token and call through the window."""
    bounds = []
    if tpm:
        bounds.append((input_tokens + output_tokens) / tpm * 60)
    if rpm:
        bounds.append(calls / rpm * 60)
    return max(bounds) if bounds else None


def plan(
    profile: Profile,
    input_tokens: int,
    output_tokens: int,
    parallel: int,
    *,
    chunks: int | None = None,
    tpm: int | None = None,
    rpm: int | None = None,
) -> Plan:
    """One call against ``chunks`` calls (default: ``parallel``) run ``parallel`` at a time."""
    calls = chunks or parallel
    one = leg(profile, input_tokens, output_tokens, 1, 1)
    split = leg(profile, input_tokens, output_tokens, calls, parallel)
    bound = rate_bound(input_tokens, output_tokens, calls, tpm, rpm)
    return Plan(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        one_call=one,
        split=split,
        speedup=one.total_s / split.total_s,
        rate_bound_s=bound,
        split_with_limits_s=max(split.total_s, bound or 0.0),
    )
