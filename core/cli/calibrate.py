"""``populace calibrate SCENARIO``: fit a scenario to its observed data; writes ``parameters.json`` (read by
``run`` and ``sensitivity`` with ``--params``), ``report.json`` and ``fit.png``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..calibrate import plot_fit, save_parameters
from ..distributed import Shard
from ..files import atomic_path, check_writable
from ..memory import allocator, reuse_freed_memory
from ..scenario import find_scenario
from .arguments import UsageError, date, names, positive, scenario_arguments, setup
from .command import Command
from .output import number, peak_rss_mb
from .private_calibrate import add_arguments as add_private_arguments, calibrate_private
from .processes import on_processes, process_arguments

__all__ = ["Calibrate"]


class Calibrate(Command):
    help = "fit a scenario to its observed data by gradient descent"
    simulates_day_after_day = True

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="scenario name (see `populace scenarios`)")
        scenario_arguments(parser)
        parser.add_argument("--start", type=date, help="date of day 0, YYYY-MM-DD (default: the scenario's)")
        parser.add_argument(
            "--streams", type=names, help="observed streams, comma-separated (default: the scenario's)"
        )
        parser.add_argument("--epochs", type=positive, default=30, help="gradient steps (default 30)")
        parser.add_argument("--seeds", type=positive, default=1, help="runs averaged per step (default 1)")
        parser.add_argument(
            "--same-seeds",
            action="store_true",
            help="every step runs the same --seeds seeds (common random numbers: a noisy, small outbreak's "
            "steps then follow one objective); the evaluation runs stay on seeds no step used",
        )
        parser.add_argument(
            "--evaluate",
            type=positive,
            default=8,
            help="runs without gradients whose mean is the fitted model, on held-out seeds (default 8)",
        )
        parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
        parser.add_argument("--out", default="calibration", help="output directory (default ./calibration)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        process_arguments(parser)
        add_private_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        reuse_freed_memory()  # day after day the same sizes: reuse freed memory (populace.memory)
        scenario_cls = find_scenario(args.scenario)
        if scenario_cls.default_start is None:
            raise UsageError(f"{args.scenario}: this scenario has no observed data to calibrate against")
        args.start = args.start or scenario_cls.default_start
        experiment, _ = setup(args)
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            check_writable(out / "parameters.json")
        except OSError as exc:
            raise UsageError(f"--out: cannot write into {args.out!r}: {exc}") from None
        if args.private:
            if args.ranks is not None:
                raise UsageError("--private: runs one process per data holder; leave out --ranks")
            return calibrate_private(args, out)
        return on_processes(self, args, experiment)

    def on_shard(self, args: argparse.Namespace, shard: Shard | None) -> int:
        """The calibration, in one process or as one of several (``shard``: every process takes the same
        steps; only the first prints and writes)."""
        scenario_cls = find_scenario(args.scenario)
        experiment, days = setup(args)
        options, agents = experiment.options, experiment.agents
        out = Path(args.out)
        quiet = shard is not None and shard.rank > 0
        t0, cpu0 = time.perf_counter(), time.process_time()
        model = experiment.model(shard)
        try:
            calibration = experiment.calibration(model, days=days, streams=args.streams)
        except ValueError as exc:
            raise UsageError(f"--streams: {exc}") from None

        def progress(epoch: int, loss: float, parts: dict[str, float]) -> None:
            if quiet:
                return
            detail = ", ".join(f"{k} {v:.3f}" for k, v in parts.items())
            print(
                f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f} ({detail}) "
                f"{time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )

        report = calibration.fit(
            days,
            epochs=args.epochs,
            lr=args.lr,
            seeds=args.seeds,
            seed=args.seed,
            resample=not args.same_seeds,
            evaluate=args.evaluate,
            on_epoch=progress,
            shard=shard,
        )
        wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        if quiet:
            return 0
        summary = {
            "scenario": scenario_cls.name,
            "agents": agents,
            "start": args.start.isoformat(),
            "days": days,
            "streams": [s.name for s in calibration.streams],
            "threads": torch.get_num_threads(),
            "ranks": 1 if shard is None else shard.ranks,
            "torch": torch.__version__,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "allocator": allocator(),
            **report.summary(),
            "wall_s": round(wall_s, 2),
            "cpu_s": round(cpu_s, 2),  # this process's CPU time: steadier than wall time on a shared machine
        }
        option_values = {
            k: number(v.value) if not isinstance(v.value, str) else v.value for k, v in options.items()
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
            plot_fit(
                report, out / "fit.png", title=f"{scenario_cls.name}, {agents:,} agents, from {args.start}"
            )
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
