"""The CLI's one vocabulary, shared by every command group (see README, "The CLI's words").

- ``--broker``: bootstrap servers, before or after the command's name.
- ``--json``: a flag, JSON on stdout; a file to write is always ``--out``.
- ``--time-scale``: LLM time as a share of real time, for whatever runs the simulator.
- ``--bug``: a bug id (repeatable where several make sense); a report file is ``--report``
  or the argument.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fixstream.config import Settings

BrokerOption = Annotated[
    str | None, typer.Option(help="Bootstrap servers (default: $FIXSTREAM_BROKER).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON to stdout, for scripts.")]
TIME_SCALE_HELP = "LLM time as a share of real time (0.1: the simulator answers 10x faster)."


class State:
    settings: Settings = None  # type: ignore[assignment]
    """Read by the ``fixstream`` callback before any command runs (not at import: a bad
    setting is then one clear line, not a traceback)."""


def settings_for(broker: str | None) -> Settings:
    """The settings, with the command's ``--broker`` over the group's and the env's."""
    return State.settings.model_copy(update={"broker": broker}) if broker else State.settings


def settings_with_broker(broker: str | None = None) -> Settings:
    """``settings_for``, for a command that cannot work without a broker."""
    settings = settings_for(broker)
    if not settings.broker:
        typer.echo("no broker: pass --broker or set FIXSTREAM_BROKER (or use `up`)", err=True)
        raise typer.Exit(2)
    return settings
