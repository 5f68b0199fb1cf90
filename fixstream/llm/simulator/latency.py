"""The latency model from the LLM-performance talk, as pure functions.

Time to first token is a fixed overhead plus prefill linear in the prompt; decoding is linear in
the output at the model's token rate. ``time_scale`` shrinks every duration by the same factor so
tests and benchmarks keep the ratios while running faster.
"""

from __future__ import annotations

from fixstream.llm.simulator.profiles import ModelProfile


def ttft_seconds(profile: ModelProfile, input_tokens: int, time_scale: float = 1.0) -> float:
    """Seconds until the first output token: base latency plus prefill of the prompt."""
    ms = profile.base_latency_ms + profile.prefill_ms_per_input_token * max(0, input_tokens)
    return ms / 1000.0 * time_scale


def decode_seconds(profile: ModelProfile, output_tokens: int, time_scale: float = 1.0) -> float:
    """Seconds to emit ``output_tokens`` at the model's decode rate."""
    return max(0, output_tokens) / profile.output_tokens_per_second * time_scale


def total_seconds(
    profile: ModelProfile, input_tokens: int, output_tokens: int, time_scale: float = 1.0
) -> float:
    """End-to-end latency of a non-streamed completion."""
    return ttft_seconds(profile, input_tokens, time_scale) + decode_seconds(
        profile, output_tokens, time_scale
    )
