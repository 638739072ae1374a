"""Subcommands of ``populace``: the built-in ones and those other packages plug in.

A subcommand is a :class:`Command`. Packages add theirs under the ``populace.commands`` entry-point group, the
entry point's name being the subcommand's, so ``core`` finds them without importing them by name (as with
scenarios; the explorer's ``explore`` comes this way)::

    [project.entry-points."populace.commands"]
    report = "mypackage.report:Report"
"""

from __future__ import annotations

import abc
import argparse
from typing import ClassVar

from ..plugins import installed

__all__ = ["GROUP", "Command", "plugged_in"]

GROUP = "populace.commands"


class Command(abc.ABC):
    """One ``populace`` subcommand: its one-line help, its arguments and what it does."""

    help: ClassVar[str]
    """The line ``populace --help`` shows for it."""
    simulates_day_after_day: ClassVar[bool] = False
    """Whether it runs a scenario day after day in one process (sensitivity, calibration, the explorer):
    then ``populace`` relaunches it under jemalloc when installed (:mod:`populace.memory`; a built-in one
    is named in :data:`populace.program.DAY_AFTER_DAY` too, so the relaunch comes before torch's import)."""

    @classmethod
    def available(cls) -> bool:
        """Whether it can run here (say, its optional dependencies are installed); an unavailable command
        is not offered."""
        return True

    @abc.abstractmethod
    def arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to its parser."""

    @abc.abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Do it; the exit code. Bad input raises :class:`~populace.cli.arguments.UsageError` (one line
        naming the argument, exit code 2)."""


def plugged_in(built_in: dict[str, type[Command]]) -> dict[str, type[Command]]:
    """The available commands of the ``populace.commands`` group, by name; one that takes a built-in
    command's name is an error."""
    found: dict[str, type[Command]] = {}
    for name, command in installed(GROUP).items():
        if name in built_in:
            raise LookupError(f"{GROUP}: {command.__module__}.{command.__name__} takes the built-in {name!r}")
        if command.available():
            found[name] = command
    return found
