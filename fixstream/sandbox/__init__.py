"""The safety boundary for LLM output: workspaces, edits, and test runs under limits."""

from fixstream.sandbox.edits import EditProposal, apply_edits, unified_diff
from fixstream.sandbox.runner import isolation, network_isolation_available, run_tests
from fixstream.sandbox.workspace import Workspace, make_workspace

__all__ = [
    "EditProposal",
    "Workspace",
    "apply_edits",
    "isolation",
    "make_workspace",
    "network_isolation_available",
    "run_tests",
    "unified_diff",
]
