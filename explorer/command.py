"""``populace explore``: the explorer's subcommand, plugged into ``populace`` through the
``populace.commands`` entry-point group (``core`` never imports the explorer).

Importing this module loads neither Panel nor the app: ``populace --help`` stays fast, and without the
``explorer`` extra the command is simply not offered.
"""

from __future__ import annotations

import argparse
import re
from importlib.metadata import PackageNotFoundError, distribution, requires

from populace.cli.arguments import MAX_AGENTS, UsageError, parse_count, port, whole
from populace.cli.command import Command
from populace.scenario import find_scenario

__all__ = ["Explore"]


def _extra_installed(extra: str) -> bool:
    """Whether every distribution that populace's ``extra`` asks for is installed."""
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    for requirement in requires("populace") or []:
        if marker.search(requirement):
            name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
            try:
                distribution(name.group() if name else requirement)
            except PackageNotFoundError:
                return False
    return True


class Explore(Command):
    help = "the interactive explorer (a Panel app in the browser)"
    simulates_day_after_day = True

    @classmethod
    def available(cls) -> bool:
        return _extra_installed("explorer")

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--scenario",
            default="nyc-covid",
            help="scenario to open (default nyc-covid; nz-covid for New Zealand; classroom for workshops)",
        )
        parser.add_argument(
            "--agents", help="number of agents (default: nyc-covid and nz-covid 1M, else the scenario's)"
        )
        parser.add_argument("--port", type=port, default=5006, help="port (default 5006)")
        parser.add_argument(
            "--address", default="localhost", help="address to bind (default localhost: this machine only)"
        )
        parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
        parser.add_argument(
            "--shared",
            action="store_true",
            help="one run shared by every visitor (presenter mode; the default above 200,000 agents), "
            "instead of a run per visitor",
        )
        parser.add_argument(
            "--threads",
            type=whole(0, "non-negative"),
            default=0,
            help="torch threads for the simulation (default 0: one below 1M agents, leaving the other cores "
            "to the server and the browser; else torch's default)",
        )

    def run(self, args: argparse.Namespace) -> int:
        find_scenario(args.scenario)  # an unknown name fails here, with the list of known ones
        args.agents = parse_count(args.agents, "--agents") if args.agents is not None else None
        if args.agents is not None and args.agents > MAX_AGENTS:
            raise UsageError(f"--agents: at most {MAX_AGENTS} agents are supported, got {args.agents}")
        from .serve import main as serve  # Panel loads only when the explorer is served

        return serve(args)
