"""``populace run SCENARIO``: simulate a scenario, print a summary, optionally write the daily series."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import torch

from ..aggregation import Aggregation
from ..distributed import Shard
from ..files import check_writable
from ..simulate import Simulation
from .arguments import UsageError, parse_count, scenario_arguments, setup
from .command import Command
from .output import number, peak_rss_mb
from .processes import on_processes, process_arguments

__all__ = ["OUT_SUFFIXES", "Run"]

OUT_SUFFIXES = (".parquet", ".csv", ".json")


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Run(Command):
    help = "run a scenario"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="scenario name (see `populace scenarios`)")
        scenario_arguments(parser)
        parser.add_argument("--out", help="write the daily series to a .parquet, .csv or .json file")
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object with timings and results"
        )
        parser.add_argument("--progress", action="store_true", help="show the progress bar even with --json")
        parser.add_argument("--params", help="a parameters.json written by `populace calibrate`")
        process_arguments(parser)
        parser.add_argument(
            "--private",
            action="store_true",
            help="secret-shared simulation: agents' emissions go to the servers as additive shares, only "
            "per-place sums are reconstructed (populace.private)",
        )
        parser.add_argument(
            "--servers", default="2", help="non-colluding server processes for --private (default 2)"
        )

    def run(self, args: argparse.Namespace) -> int:
        experiment, _ = setup(args)  # a bad argument is one line here, before any process starts
        if args.private:
            servers = parse_count(args.servers, "--servers", "servers")
            if servers < 2:
                raise UsageError(f"--servers: expected at least 2 non-colluding servers, got {servers}")
            if args.ranks is not None or "WORLD_SIZE" in os.environ:
                raise UsageError("--private: runs the devices in one process; leave out --ranks and torchrun")
            from ..private import run_private

            timeout = parse_count(args.timeout, "--timeout", "seconds")
            return run_private(self, args, servers, float(timeout))
        return on_processes(self, args, experiment)

    def on_shard(
        self, args: argparse.Namespace, shard: Shard | None, aggregation: Aggregation | None = None
    ) -> int:
        """The run itself, in one process or as one of several (``shard``); only the first process prints
        and writes the outputs (every process holds the whole population's series). ``aggregation``: how
        the disease layers sum their places (``--private``: on secret shares)."""
        quiet = shard is not None and shard.rank > 0
        experiment, days = setup(args)
        scenario_cls, options, agents = experiment.scenario, experiment.options, experiment.agents
        device = torch.device(experiment.device)
        if args.out is not None:
            out = Path(args.out)
            if out.suffix not in OUT_SUFFIXES:
                raise UsageError(
                    f"--out: expected a file ending in {', '.join(OUT_SUFFIXES)}, got {args.out!r}"
                )
            try:
                check_writable(out)
            except OSError as exc:
                raise UsageError(f"--out: cannot write {args.out!r}: {exc}") from None

        if shard is not None and device.type == "cuda":
            device = torch.device("cuda", shard.rank % torch.cuda.device_count())
        t0 = time.perf_counter()
        model = experiment.model(shard)
        if aggregation is not None:
            from ..private import use_aggregation

            use_aggregation(model, aggregation)
        sim = Simulation(model, seed=args.seed, device=device, shard=shard)
        _sync(device)
        init_s = time.perf_counter() - t0

        progress = _Progress(days, sys.stderr, enabled=(args.progress or not args.json) and not quiet)
        t1 = time.perf_counter()
        result = sim.run(days, on_day=progress)
        _sync(device)
        sim_s = time.perf_counter() - t1
        progress.close()

        ranks = 1 if shard is None else shard.ranks
        rss = peak_rss_mb()
        rss_by_rank = [rss] if shard is None else shard.gather_object(rss)
        if quiet:
            return 0
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
            "ranks": ranks,
            "payload_bytes_per_day": 0 if shard is None else round(shard.payload_bytes / days),
            "peak_rss_mb": round(rss, 1),
            "peak_rss_mb_by_rank": [round(r, 1) for r in rss_by_rank or []],
            "options": {name: opt.value for name, opt in options.items()},
            "final": {k: number(v[-1]) for k, v in columns.items() if k != "day"},
            "daily": {k: [number(x) for x in v] for k, v in columns.items() if k != "day"},
        }
        if args.json:
            print(json.dumps(summary))
        else:
            # vector entries ("deaths_by_borough.Bronx") go to --json and --out; the line keeps the totals
            final = ", ".join(f"{k}={number(v)}" for k, v in summary["final"].items() if "." not in k)
            where = f"{device}" if ranks == 1 else f"{ranks} processes ({device})"
            print(
                f"{scenario_cls.name}: {agents:,} agents x {days} days on {where} in {sim_s:.2f} s "
                f"(set-up {init_s:.2f} s, peak RSS {summary['peak_rss_mb']:.0f} MB"
                + ("" if ranks == 1 else " on the first process")
                + ")"
            )
            print(f"final: {final}")
            if args.out is not None:
                print(f"wrote {args.out}")
        return 0
