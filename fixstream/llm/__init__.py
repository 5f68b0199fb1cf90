"""The LLM gateway: every model call in fixstream goes through ``Gateway``."""

from __future__ import annotations

from fixstream.llm.gateway import Answer, Gateway, GatewayConfig
from fixstream.llm.transport import ScriptedTransport

__all__ = ["Answer", "Gateway", "GatewayConfig", "ScriptedTransport"]
