"""The ``populace`` command line.

    populace scenarios
    populace run SCENARIO [--agents N] [--days D] [--seed S] [--device cpu|cuda] [--set NAME=VALUE ...]
                          [--out PATH] [--json] [--progress]
    populace population build|describe NAME [--agents N] [--seed S] [--rebuild] [--json]
    populace calibrate SCENARIO [--agents N] [--start YYYY-MM-DD] [--days D] [--streams a,b] [--epochs E]
                                [--seeds K] [--evaluate K] [--lr LR] [--set NAME=VALUE ...] [--out DIR]
                                [--json]
    populace sensitivity SCENARIO [--agents N] [--days D] [--outputs a,b] [--seeds K]
                                  [--mode reverse|forward] [--params FILE] [--fd-check] [--json]
    populace optimize SCENARIO --lever L --objective O [--agents N] [--days D] [--epochs E] [--seeds K]
                               [--evaluate K] [--lr LR] [--set NAME=VALUE ...] [--out DIR] [--json]

    populace risk SCENARIO --profile me.json [--agents N] [--day D] [--table FILE] [--json]

``run`` and ``sensitivity`` take ``--params FILE`` (written by ``calibrate``): its options and fitted values.

Other packages add subcommands through the ``populace.commands`` entry-point group (:mod:`.command`); the
explorer adds ``populace explore`` that way when the ``explorer`` extra is installed.

Bad input gets one line naming the argument and what was expected, and exit code 2.

One module per subcommand (:mod:`.scenarios`, :mod:`.run`, :mod:`.calibrate`, :mod:`.sensitivity`,
:mod:`.population`, :mod:`.optimize`); :mod:`.arguments` reads the command line's values and the options
that commands building a scenario share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..memory import relaunch_under_jemalloc
from ..params import ParamError
from ..scenario import ScenarioError
from ..synth.pipeline import TooFewAgents
from .arguments import Parser, UsageError, parse_count
from .calibrate import Calibrate
from .command import Command, plugged_in
from .optimize import Optimize
from .population import Population
from .risk import Risk
from .run import Run
from .scenarios import Scenarios
from .sensitivity import Sensitivity

__all__ = ["BUILT_IN", "Command", "UsageError", "build_parser", "commands", "main", "parse_count"]

BUILT_IN: dict[str, type[Command]] = {
    "scenarios": Scenarios,
    "run": Run,
    "calibrate": Calibrate,
    "sensitivity": Sensitivity,
    "population": Population,
    "risk": Risk,
    "optimize": Optimize,
}


def commands() -> dict[str, type[Command]]:
    """The subcommands: the built-in ones, then the available plugged-in ones by name."""
    return {**BUILT_IN, **plugged_in(BUILT_IN)}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="populace", description="Large Population Models: simulate whole populations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, command_cls in commands().items():
        command = command_cls()
        subparser = sub.add_parser(name, help=command.help)
        command.arguments(subparser)
        subparser.set_defaults(func=command.run, day_after_day=command.simulates_day_after_day)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (already printed as one line) or --help
        return exc.code if isinstance(exc.code, int) else 2
    if argv is None and args.day_after_day:  # the program itself, not a call from Python
        relaunch_under_jemalloc()  # a plugged-in command (the built-ins were, by populace.program)
    try:
        return int(args.func(args))
    except (UsageError, ParamError, ScenarioError, TooFewAgents) as exc:
        if isinstance(exc, TooFewAgents):
            message = exc.describe("--agents")
        else:
            message = exc.args[0] if isinstance(exc, ScenarioError) else str(exc)
        print(f"populace {args.command}: error: {message}", file=sys.stderr)
        return 2
