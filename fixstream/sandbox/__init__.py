"""The safety boundary for LLM output: workspaces, edits, environments and sandboxed runs."""

from fixstream.sandbox.edits import EditProposal, apply_edits, unified_diff
from fixstream.sandbox.runner import Environment, isolation, run_tests
from fixstream.sandbox.workspace import Workspace, make_workspace

__all__ = [
    "EditProposal",
    "Environment",
    "Workspace",
    "apply_edits",
    "isolation",
    "make_workspace",
    "run_tests",
    "unified_diff",
]
