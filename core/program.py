"""The ``populace`` program's entry point: a command that simulates day after day is relaunched under
jemalloc (:mod:`populace.memory`) before anything imports torch, then :func:`populace.cli.main` runs it.

Relaunching from :func:`populace.cli.main` cost a second start of torch (~1 s of `populace sensitivity
nyc-covid --agents 1M`'s ~20: ``--days 1`` took 2.82 s, 1.86 s without the relaunch): its parser is built
from the commands, which import torch. Here the command's name is read from the command line alone, and
``import populace`` stays light (its names are imported on first use). A plugged-in command
(``populace.commands``) is only known once imported; :func:`populace.cli.main` still relaunches those that
simulate day after day (``populace explore``), after the import.
"""

from __future__ import annotations

import sys

from .memory import relaunch_under_jemalloc

__all__ = ["DAY_AFTER_DAY", "main"]

DAY_AFTER_DAY = frozenset({"calibrate", "optimize", "sensitivity"})
"""The built-in commands that simulate day after day (``Command.simulates_day_after_day``; a test keeps the
two the same)."""


def main() -> int:
    """``populace ARGS``: relaunch under jemalloc when the command simulates day after day, then run it."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    if words and words[0] in DAY_AFTER_DAY:
        relaunch_under_jemalloc()
    from .cli import main as run_command  # torch and the commands, after any relaunch

    return run_command()
