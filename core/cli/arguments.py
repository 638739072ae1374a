"""Reading the command line: value types, the options every scenario command shares, and what they
resolve to (scenario, options, size, device, fitted values).

Bad input raises :class:`UsageError` (or argparse's own error), reported as one line naming the argument.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import NoReturn

import torch

from ..experiment import Experiment

__all__ = [
    "MAX_AGENTS",
    "Parser",
    "UsageError",
    "date",
    "names",
    "non_negative",
    "parse_count",
    "parse_device",
    "port",
    "positive",
    "scenario_arguments",
    "setup",
    "whole",
]

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}
MAX_AGENTS = 2**31 - 1  # place indices are int32


class UsageError(Exception):
    """Bad command-line input; the message names the argument."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


_EXAMPLES = {"agents": "100000, 1e6, 8.4M or 100k", "days": "60, 365 or 1e3"}


def parse_count(text: str, name: str, unit: str = "agents") -> int:
    """A positive whole number of ``unit`` (named in the error) written as ``100000``, ``1e6``, ``8.4M``,
    ``100k`` or ``1_000_000``."""
    examples = _EXAMPLES.get(unit, "100, 1e3 or 10k")
    expected = f"{name}: expected a positive whole number of {unit} like {examples}, got {text!r}"
    match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgG]?)\s*", text)
    if not match:
        raise UsageError(expected)
    try:  # Decimal, not float: 4.1M must be exactly 4,100,000
        number = Decimal(match.group(1).replace("_", "")) * _SUFFIX[match.group(2).lower()]
    except InvalidOperation:
        raise UsageError(expected) from None
    if not number.is_finite() or number < 1 or number != number.to_integral_value() or number > 10**18:
        raise UsageError(expected)
    return int(number)


def whole(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum`` (argparse reports the error as one line naming the
    option)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


non_negative = whole(0, "non-negative")
positive = whole(1, "positive")


def port(text: str) -> int:
    """An argparse type: a port number, 0-65535."""
    number = whole(0, "port")(text)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return number


def date(text: str) -> dt.date:
    """An argparse type: a date, YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def names(text: str) -> list[str]:
    """An argparse type: comma-separated names, at least one."""
    found = [t.strip() for t in text.split(",") if t.strip()]
    if not found:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return found


def parse_device(text: str) -> torch.device:
    """``--device``: cpu, or a CUDA device that exists here."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device: expected cpu or cuda[:N], got {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                "--device: cuda was asked for but no CUDA GPU is available here (use --device cpu)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device: {text} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise UsageError(f"--device: expected cpu or cuda[:N], got {text!r}")
    return device


def scenario_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every command that builds a scenario (its name is added by the command)."""
    parser.add_argument(
        "--agents", help="number of agents: 100000, 1e6, 8.4M, 100k (default: the scenario's)"
    )
    parser.add_argument("--days", help="days to simulate (default: the scenario's)")
    parser.add_argument("--seed", type=non_negative, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a scenario parameter (a day index may be a date, YYYY-MM-DD); repeatable",
    )


def setup(args: argparse.Namespace) -> tuple[Experiment, int]:
    """The :class:`~populace.experiment.Experiment` the arguments describe (options: the scenario's observed
    ones for calibration, the ``--params`` file's, then ``--set``; its fitted values) and the days to run."""
    agents = parse_count(args.agents, "--agents") if args.agents is not None else None
    days = parse_count(args.days, "--days", "days") if args.days is not None else None
    start = getattr(args, "start", None)
    experiment = Experiment.from_texts(
        args.scenario,
        args.set,
        agents=agents,
        seed=args.seed,
        device=parse_device(args.device),
        params=getattr(args, "params", None),
        observed=start is not None,
        start=start,
    )
    if experiment.agents > MAX_AGENTS:
        raise UsageError(f"--agents: at most {MAX_AGENTS} agents are supported, got {experiment.agents}")
    return experiment, days or experiment.scenario.default_days
