"""``populace scenarios``: the installed scenarios, one line each."""

from __future__ import annotations

import argparse

from ..scenario import scenarios
from .command import Command

__all__ = ["Scenarios"]


class Scenarios(Command):
    help = "list the installed scenarios"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        """None."""

    def run(self, args: argparse.Namespace) -> int:
        for name, cls in scenarios().items():
            print(f"{name:20s} {cls.summary}")
        return 0
