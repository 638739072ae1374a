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

``run`` and ``sensitivity`` take ``--params FILE`` (written by ``calibrate``): its options and fitted values.

Bad input gets one line naming the argument and what was expected, and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NoReturn, TextIO

import torch

from .calibrate import load_parameters, plot_fit, read_parameters, save_parameters
from .files import atomic_path, check_writable
from .model import Model
from .params import ParamError
from .scenario import Scenario, ScenarioError, find_scenario, parse_sets, scenarios
from .sensitivity import sensitivity
from .simulate import Checkpointed, Simulation
from .synth.recipes import describe, find_recipe, load_population

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


def _whole(minimum: int, what: str) -> Callable[[str], int]:
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


_seed = _whole(0, "non-negative")
_positive = _whole(1, "positive")


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


def _setup(args: argparse.Namespace) -> tuple[type[Scenario], dict, int, int, torch.device, dict | None]:
    """Scenario, options (the ``--params`` file's, the scenario's observed ones for calibration, then
    ``--set``), agents, days, device and the fitted values of ``--params``."""
    agents = parse_count(args.agents, "--agents") if args.agents is not None else None
    days = parse_count(args.days, "--days") if args.days is not None else None
    device = _device(args.device)
    scenario_cls = find_scenario(args.scenario)
    fitted = None
    sets: list[str] = []
    if getattr(args, "start", None) is not None:
        sets += [f"{k}={v}" for k, v in scenario_cls().observed_options(args.start).items()]
    if getattr(args, "params", None) is not None:
        content = read_parameters(args.params)
        if content.get("scenario") not in (None, scenario_cls.name):
            raise UsageError(
                f"--params: {args.params!r} was fitted for {content['scenario']}, not {args.scenario}"
            )
        sets += [f"{k}={v}" for k, v in content.get("options", {}).items()]
        fitted = content["parameters"]
        agents = agents or content.get("agents")
    options = parse_sets(scenario_cls, [*sets, *args.set])
    agents = agents or scenario_cls.default_agents
    days = days or scenario_cls.default_days
    if agents > _MAX_AGENTS:
        raise UsageError(f"--agents: at most {_MAX_AGENTS} agents are supported, got {agents}")
    return scenario_cls, options, agents, days, device, fitted


def _build(
    scenario_cls: type[Scenario],
    options: dict,
    agents: int,
    seed: int,
    device: torch.device,
    fitted: dict | None,
) -> Model:
    model = scenario_cls().build(agents, options, seed=seed, device=device)
    if fitted is not None:
        load_parameters(model, fitted)
    return model


def _run(args: argparse.Namespace) -> int:
    scenario_cls, options, agents, days, device, fitted = _setup(args)
    if args.out is not None:
        out = Path(args.out)
        if out.suffix not in OUT_SUFFIXES:
            raise UsageError(f"--out: expected a file ending in {', '.join(OUT_SUFFIXES)}, got {args.out!r}")
        try:
            check_writable(out)
        except OSError as exc:
            raise UsageError(f"--out: cannot write {args.out!r}: {exc}") from None

    t0 = time.perf_counter()
    model = _build(scenario_cls, options, agents, args.seed, device, fitted)
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


def _start(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _calibrate(args: argparse.Namespace) -> int:
    scenario_cls = find_scenario(args.scenario)
    if scenario_cls.default_start is None:
        raise UsageError(f"{args.scenario}: this scenario has no observed data to calibrate against")
    args.start = args.start or scenario_cls.default_start
    scenario_cls, options, agents, days, device, _ = _setup(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_writable(out / "parameters.json")
    except OSError as exc:
        raise UsageError(f"--out: cannot write into {args.out!r}: {exc}") from None
    t0 = time.perf_counter()
    scenario = scenario_cls()
    model = scenario.build(agents, options, seed=args.seed, device=device)
    try:
        calibration = scenario.calibration(
            model, agents=agents, start=args.start, days=days, streams=args.streams
        )
    except ValueError as exc:
        raise UsageError(f"--streams: {exc}") from None

    def progress(epoch: int, loss: float, parts: dict[str, float]) -> None:
        detail = ", ".join(f"{k} {v:.3f}" for k, v in parts.items())
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f} ({detail}) {time.perf_counter() - t0:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    report = calibration.fit(
        days,
        epochs=args.epochs,
        lr=args.lr,
        seeds=args.seeds,
        seed=args.seed,
        evaluate=args.evaluate,
        on_epoch=progress,
    )
    wall_s = time.perf_counter() - t0
    summary = {
        "scenario": scenario_cls.name,
        "agents": agents,
        "start": args.start.isoformat(),
        "days": days,
        "streams": [s.name for s in calibration.streams],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        **report.summary(),
        "wall_s": round(wall_s, 2),
    }
    option_values = {
        k: _number(v.value) if not isinstance(v.value, str) else v.value for k, v in options.items()
    }
    save_parameters(
        out / "parameters.json",
        report.parameters,
        scenario=scenario_cls.name,
        agents=agents,
        start=args.start.isoformat(),
        options=option_values,
        observation=report.observation,
    )
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    try:
        plot_fit(report, out / "fit.png", title=f"{scenario_cls.name}, {agents:,} agents, from {args.start}")
    except ImportError:
        skipped = "fit.png skipped: matplotlib is not installed (pip install 'populace[plot]')"
        print(f"populace calibrate: {skipped}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        nd = ", ".join(f"{k} ND {v['nd']:.3f}" for k, v in report.metrics.items())
        print(
            f"{scenario_cls.name}: calibrated {agents:,} agents x {days} days, {args.epochs} epochs in "
            f"{wall_s:.0f} s; loss {report.loss[0]:.4f} -> {report.loss[-1]:.4f}; {nd}"
        )
        print(f"wrote {out / 'parameters.json'}, {out / 'report.json'}, {out / 'fit.png'}")
    return 0


def _sensitivity(args: argparse.Namespace) -> int:
    scenario_cls, options, agents, days, device, fitted = _setup(args)
    outputs = args.outputs or list(scenario_cls.default_outputs)
    if not outputs:
        raise UsageError(f"--outputs: {scenario_cls.name} has no default outcomes; name some")
    model = _build(scenario_cls, options, agents, args.seed, device, fitted)
    fast = time.perf_counter()
    Simulation(model, seed=args.seed, device=device).run(days)
    fast_s = time.perf_counter() - fast
    scalars = [n for n, p in model.named_parameters() if p.requires_grad and p.numel() == 1]
    try:
        report = sensitivity(
            model,
            days,
            outputs,
            seeds=range(args.seed, args.seed + args.seeds),
            device=device,
            grad=Checkpointed(args.checkpoint) if args.checkpoint else "full",
            mode=args.mode,
            fd_check=scalars if args.fd_check else (),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = {
        "scenario": scenario_cls.name,
        "agents": agents,
        "days": days,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "fast_forward_s": round(fast_s, 4),
        **report.summary(),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"{scenario_cls.name}: {agents:,} agents x {days} days, {args.mode} mode: forward "
        f"{report.forward_s:.2f} s, backward {report.backward_s:.2f} s (without gradients: {fast_s:.2f} s)"
    )
    for output, grads in report.gradients.items():
        print(f"\nd({output} = {report.outputs[output]:g}) / d(parameter)")
        for name, value in grads.items():
            if isinstance(value, float):
                check = report.fd.get(name, {}).get(output)
                extra = f"   fd {check['fd']:.4g} (rel. err. {check['rel_err']:.1%})" if check else ""
                print(f"  {name:40s} {value:12.4g}{extra}")
            else:
                flat = torch.tensor(value).abs()
                print(f"  {name:40s} {flat.numel()} entries, max |d| {float(flat.max()):.4g}")
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


def _port(text: str) -> int:
    port = _whole(0, "port")(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return port


def _explore(args: argparse.Namespace) -> int:
    find_scenario(args.scenario)  # an unknown name fails here, with the list of known ones
    args.agents = parse_count(args.agents, "--agents") if args.agents is not None else None
    if args.agents is not None and args.agents > _MAX_AGENTS:
        raise UsageError(f"--agents: at most {_MAX_AGENTS} agents are supported, got {args.agents}")
    try:  # the explorer lives outside core, behind the optional `explorer` extra
        from populace.explorer.serve import main as explore
    except ImportError as exc:
        raise UsageError(
            f"the explorer needs the explorer extra ({exc.name} is missing): pip install 'populace[explorer]'"
        ) from None
    return explore(args)


def _list_scenarios(args: argparse.Namespace) -> int:
    for name, cls in scenarios().items():
        print(f"{name:20s} {cls.summary}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--agents", help="number of agents: 100000, 1e6, 8.4M, 100k (default: the scenario's)"
    )
    parser.add_argument("--days", help="days to simulate (default: the scenario's)")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a scenario parameter; repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="populace", description="Large Population Models: simulate whole populations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    listing = sub.add_parser("scenarios", help="list the installed scenarios")
    listing.set_defaults(func=_list_scenarios)
    run = sub.add_parser("run", help="run a scenario")
    run.add_argument("scenario", help="scenario name (see `populace scenarios`)")
    _common(run)
    run.add_argument("--out", help="write the daily series to a .parquet, .csv or .json file")
    run.add_argument("--json", action="store_true", help="print one JSON object with timings and results")
    run.add_argument("--progress", action="store_true", help="show the progress bar even with --json")
    run.add_argument("--params", help="a parameters.json written by `populace calibrate`")
    run.set_defaults(func=_run)

    calibrate = sub.add_parser("calibrate", help="fit a scenario to its observed data by gradient descent")
    calibrate.add_argument("scenario", help="scenario name (see `populace scenarios`)")
    _common(calibrate)
    calibrate.add_argument("--start", type=_start, help="date of day 0, YYYY-MM-DD (default: the scenario's)")
    calibrate.add_argument(
        "--streams", type=_names, help="observed streams, comma-separated (default: the scenario's)"
    )
    calibrate.add_argument("--epochs", type=_positive, default=30, help="gradient steps (default 30)")
    calibrate.add_argument("--seeds", type=_positive, default=1, help="runs averaged per step (default 1)")
    calibrate.add_argument(
        "--evaluate",
        type=_positive,
        default=8,
        help="runs without gradients whose mean is the fitted model, on held-out seeds (default 8)",
    )
    calibrate.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    calibrate.add_argument("--out", default="calibration", help="output directory (default ./calibration)")
    calibrate.add_argument("--json", action="store_true", help="print one JSON object")
    calibrate.set_defaults(func=_calibrate)

    sens = sub.add_parser("sensitivity", help="gradients of outcomes with respect to every parameter")
    sens.add_argument("scenario", help="scenario name (see `populace scenarios`)")
    _common(sens)
    sens.add_argument("--params", help="a parameters.json written by `populace calibrate`")
    sens.add_argument("--outputs", type=_names, help="outcomes, e.g. total:new_deaths,peak:hospitalised")
    sens.add_argument("--seeds", type=_positive, default=1, help="runs averaged (default 1)")
    sens.add_argument(
        "--mode", choices=("reverse", "forward"), default="reverse", help="AD mode (default reverse)"
    )
    sens.add_argument(
        "--checkpoint", type=_positive, help="reverse mode: checkpoint every K days (saves memory)"
    )
    sens.add_argument("--fd-check", action="store_true", help="check scalar parameters by finite differences")
    sens.add_argument("--json", action="store_true", help="print one JSON object")
    sens.set_defaults(func=_sensitivity)

    explore = sub.add_parser("explore", help="the interactive explorer (a Panel app in the browser)")
    explore.add_argument(
        "--scenario",
        default="nyc-covid",
        help="scenario to open (default nyc-covid; classroom for workshops)",
    )
    explore.add_argument("--agents", help="number of agents (default: nyc-covid 1M, else the scenario's)")
    explore.add_argument("--port", type=_port, default=5006, help="port (default 5006)")
    explore.add_argument(
        "--address", default="localhost", help="address to bind (default localhost: this machine only)"
    )
    explore.add_argument("--no-browser", action="store_true", help="do not open a browser")
    explore.add_argument(
        "--threads",
        type=_whole(0, "non-negative"),
        default=0,
        help="torch threads for the simulation (default 0: one below 1M agents, leaving the other cores to "
        "the server and the browser; else torch's default)",
    )
    explore.set_defaults(func=_explore)

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
