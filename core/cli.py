"""The ``populace`` command line.

    populace scenarios
    populace run SCENARIO [--agents N] [--days D] [--seed S] [--device cpu|cuda] [--set NAME=VALUE ...]
                          [--out PATH] [--json] [--progress]
    populace population build|describe NAME [--agents N] [--seed S] [--rebuild] [--json]

Bad input gets one line naming the argument and what was expected, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import sys
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NoReturn, TextIO

import torch

from .files import check_writable
from .params import ParamError
from .populations import describe, find_recipe, load_population
from .scenario import ScenarioError, find_scenario, parse_sets, scenarios
from .simulate import Simulation

__all__ = ["main", "parse_count"]

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}
_MAX_AGENTS = 2**31 - 1  # place indices are int32
OUT_SUFFIXES = (".parquet", ".csv", ".json")


class UsageError(Exception):
    """Bad command-line input; the message names the argument."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_count(text: str, name: str) -> int:
    """A positive whole number written as ``100000``, ``1e6``, ``8.4M``, ``100k`` or ``1_000_000``."""
    expected = f"{name}: expected a positive whole number like 100000, 1e6, 8.4M or 100k, got {text!r}"
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


def _seed(text: str) -> int:
    """``--seed``: a non-negative integer (argparse reports the ValueError as one line naming --seed)."""
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return seed


def _device(text: str) -> torch.device:
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


class _Progress:
    """A progress bar on ``stream`` that appears once a run has taken ``delay`` seconds."""

    def __init__(self, total: int, stream: TextIO, enabled: bool, delay: float = 2.0) -> None:
        self.total, self.stream, self.enabled, self.delay = total, stream, enabled, delay
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, day: int) -> None:
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        done = day + 1
        width = 30
        filled = round(width * done / self.total)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] day {done}/{self.total}  {elapsed:5.1f} s"
        )
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if platform.system() == "Darwin" else 1)


def _run(args: argparse.Namespace) -> int:
    agents = parse_count(args.agents, "--agents") if args.agents is not None else None
    days = parse_count(args.days, "--days") if args.days is not None else None
    device = _device(args.device)
    scenario_cls = find_scenario(args.scenario)
    options = parse_sets(scenario_cls, args.set)
    agents = agents or scenario_cls.default_agents
    days = days or scenario_cls.default_days
    if agents > _MAX_AGENTS:
        raise UsageError(f"--agents: at most {_MAX_AGENTS} agents are supported, got {agents}")
    if args.out is not None:
        out = Path(args.out)
        if out.suffix not in OUT_SUFFIXES:
            raise UsageError(f"--out: expected a file ending in {', '.join(OUT_SUFFIXES)}, got {args.out!r}")
        try:
            check_writable(out)
        except OSError as exc:
            raise UsageError(f"--out: cannot write {args.out!r}: {exc}") from None

    t0 = time.perf_counter()
    model = scenario_cls().build(agents, options, seed=args.seed, device=device)
    sim = Simulation(model, seed=args.seed, device=device)
    _sync(device)
    init_s = time.perf_counter() - t0

    progress = _Progress(days, sys.stderr, enabled=args.progress or not args.json)
    t1 = time.perf_counter()
    result = sim.run(days, on_day=progress)
    _sync(device)
    sim_s = time.perf_counter() - t1
    progress.close()

    if args.out is not None:
        try:
            result.save(args.out)
        except OSError as exc:
            print(f"populace run: error: --out: writing {args.out!r} failed: {exc}", file=sys.stderr)
            return 1
    columns = result.to_columns()
    summary = {
        "scenario": scenario_cls.name,
        "agents": agents,
        "days": days,
        "seed": args.seed,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "init_s": round(init_s, 4),
        "sim_s": round(sim_s, 4),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "options": {name: opt.value for name, opt in options.items()},
        "final": {k: _number(v[-1]) for k, v in columns.items() if k != "day"},
        "daily": {k: [_number(x) for x in v] for k, v in columns.items() if k != "day"},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        # vector entries ("deaths_by_borough.Bronx") go to --json and --out; the line keeps the totals
        final = ", ".join(f"{k}={_number(v)}" for k, v in summary["final"].items() if "." not in k)
        print(
            f"{scenario_cls.name}: {agents:,} agents x {days} days on {device} in {sim_s:.2f} s "
            f"(set-up {init_s:.2f} s, peak RSS {summary['peak_rss_mb']:.0f} MB)"
        )
        print(f"final: {final}")
        if args.out is not None:
            print(f"wrote {args.out}")
    return 0


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _population(args: argparse.Namespace) -> int:
    try:
        recipe = find_recipe(args.name)()
    except LookupError as exc:
        raise UsageError(str(exc.args[0])) from None
    agents = parse_count(args.agents, "--agents") if args.agents is not None else recipe.default_agents
    if agents > recipe.full_size * 4:
        raise UsageError(
            f"--agents: at most {recipe.full_size * 4:,} for {recipe.name} (4x its census total)"
        )
    loaded = load_population(
        recipe, agents, args.seed, rebuild=args.rebuild, log=lambda message: print(message, file=sys.stderr)
    )
    info = {
        "population": recipe.name,
        "agents": loaded.people.n,
        "seed": args.seed,
        "source": loaded.source,
        "seconds": round(loaded.seconds, 3),
        "path": str(loaded.path),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if args.action == "build":
        if args.json:
            print(json.dumps({**info, "bytes_per_agent": round(loaded.people.nbytes() / loaded.people.n, 2)}))
        else:
            verb = "loaded from the cache" if loaded.source == "cache" else "built"
            print(
                f"{recipe.name}: {loaded.people.n:,} agents {verb} in {loaded.seconds:.2f} s ({loaded.path})"
            )
        return 0
    report = describe(loaded.people, recipe.geography())
    if args.json:
        print(json.dumps({**info, **report}))
    else:
        _print_description(recipe.name, report)
    return 0


def _print_description(name: str, report: dict) -> None:
    print(f"{name}: {report['agents']:,} agents, {report['bytes_per_agent']} bytes per agent")
    print("\nresidents by region")
    for region, count in report["regions"].items():
        print(f"  {region:24s} {count:>10,} {100 * count / report['agents']:6.2f}%")
    print("\nage pyramid        female       male")
    for row in report["age_pyramid"]:
        print(f"  {row['band']:8s} {row['female']:>12,} {row['male']:>10,}")
    households = report["households"]
    print(
        f"\nhouseholds: {households['count']:,}, mean size {households['mean_size']}, "
        f"without an adult: {households['without_adult']}"
    )
    for size, count in households["size_distribution"].items():
        print(f"  size {size:3s} {count:>10,} {100 * count / max(households['count'], 1):6.2f}%")
    for label in ("schools", "workplaces", "community_places"):
        places = report[label]
        if places["count"]:
            print(
                f"\n{label.replace('_', ' ')}: {places['count']:,} with {places['members']:,} members; size "
                f"mean {places['mean']}, p10 {places['p10']:g}, median {places['median']:g}, "
                f"p90 {places['p90']:g}, max {places['max']:,}"
            )
    print(f"\nemployment rate, ages 18-64: {report['employment_rate_18_64']:.1%}")


def _list_scenarios(args: argparse.Namespace) -> int:
    for name, cls in scenarios().items():
        print(f"{name:20s} {cls.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="populace", description="Large Population Models: simulate whole populations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    listing = sub.add_parser("scenarios", help="list the installed scenarios")
    listing.set_defaults(func=_list_scenarios)
    run = sub.add_parser("run", help="run a scenario")
    run.add_argument("scenario", help="scenario name (see `populace scenarios`)")
    run.add_argument("--agents", help="number of agents: 100000, 1e6, 8.4M, 100k (default: the scenario's)")
    run.add_argument("--days", help="days to simulate (default: the scenario's)")
    run.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    run.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a scenario parameter; repeatable",
    )
    run.add_argument("--out", help="write the daily series to a .parquet, .csv or .json file")
    run.add_argument("--json", action="store_true", help="print one JSON object with timings and results")
    run.add_argument("--progress", action="store_true", help="show the progress bar even with --json")
    run.set_defaults(func=_run)

    population = sub.add_parser("population", help="build or describe a synthetic population")
    population.add_argument("action", choices=("build", "describe"))
    population.add_argument("name", help="population name: nyc, nz, classroom")
    population.add_argument(
        "--agents", help="number of agents (default: the recipe's); scales the population"
    )
    population.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    population.add_argument("--rebuild", action="store_true", help="ignore the cache and build again")
    population.add_argument("--json", action="store_true", help="print one JSON object")
    population.set_defaults(func=_population)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (already printed as one line) or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args))
    except (UsageError, ParamError, ScenarioError) as exc:
        message = exc.args[0] if isinstance(exc, ScenarioError) else str(exc)
        print(f"populace {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
