"""fixstream LLM SIMULATOR: an OpenAI-compatible HTTP server with a modelled latency (not a model).

Point ``openai.AsyncOpenAI(base_url=sim.base_url, api_key="sim")`` at it to run the pipeline
offline with realistic timings, rate limits and injected faults.
"""

from fixstream.llm.simulator.content import ScenarioRule
from fixstream.llm.simulator.profiles import ModelProfile, builtin_profiles, load_profiles
from fixstream.llm.simulator.server import (
    FaultRates,
    RunningSimulator,
    SimulatorConfig,
    SimulatorStats,
    create_sim_app,
    run_simulator,
    serve_forever,
)

__all__ = [
    "FaultRates",
    "ModelProfile",
    "RunningSimulator",
    "ScenarioRule",
    "SimulatorConfig",
    "SimulatorStats",
    "builtin_profiles",
    "create_sim_app",
    "load_profiles",
    "run_simulator",
    "serve_forever",
]
