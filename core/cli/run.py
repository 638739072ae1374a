"""``populace run SCENARIO``: simulate a scenario, print a summary, optionally write the daily series."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import torch
import torch.distributed as dist

from ..aggregation import Aggregation
from ..distributed import RankFailed, Shard, launch
from ..files import check_writable
from ..simulate import Simulation
from .arguments import UsageError, parse_count, scenario_arguments, setup
from .command import Command
from .output import number, peak_rss_mb

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
        parser.add_argument(
            "--ranks",
            help="split the population over this many local processes (torch.distributed, gloo); under "
            "torchrun, its processes are used instead",
        )
        parser.add_argument(
            "--private",
            action="store_true",
            help="secret-shared simulation: agents' emissions go to the servers as additive shares, only "
            "per-place sums are reconstructed (populace.private)",
        )
        parser.add_argument(
            "--servers", default="2", help="non-colluding server processes for --private (default 2)"
        )
        parser.add_argument(
            "--timeout",
            default="120",
            help="seconds a process waits for the others before the run stops (default 120)",
        )

    def run(self, args: argparse.Namespace) -> int:
        ranks = parse_count(args.ranks, "--ranks", "processes") if args.ranks is not None else 1
        timeout = parse_count(args.timeout, "--timeout", "seconds")
        experiment, _ = setup(args)  # a bad argument is one line here, before any process starts
        if ranks > 1 and not experiment.scenario.shardable:
            raise UsageError(f"--ranks: {experiment.scenario.name} does not run on several processes yet")
        if args.private:
            servers = parse_count(args.servers, "--servers", "servers")
            if servers < 2:
                raise UsageError(f"--servers: expected at least 2 non-colluding servers, got {servers}")
            if ranks > 1:
                raise UsageError("--private: runs the devices in one process; leave out --ranks")
            from ..private import run_private

            return run_private(self, args, servers, float(timeout))
        if "WORLD_SIZE" in os.environ:  # started by torchrun: one process of its group
            return _under_torchrun(self, args, timeout)
        if ranks == 1:
            return self.simulate(args, None)
        try:
            launch(_rank_main, ranks, args, timeout_s=float(timeout))
        except RankFailed as exc:
            print(f"populace run: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("populace run: interrupted; every process stopped", file=sys.stderr)
            return 130
        return 0

    def simulate(
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


def _rank_main(rank: int, ranks: int, args: argparse.Namespace) -> None:
    """One process of ``populace run --ranks N`` (started by :func:`~populace.distributed.launch`)."""
    code = Run().simulate(args, Shard(rank, ranks))
    if code:
        raise RuntimeError(f"the run ended with exit code {code}")


def _under_torchrun(command: Run, args: argparse.Namespace, timeout: int) -> int:
    """One process of a ``torchrun ... -m populace run ...`` group (rendezvous from its environment)."""
    backend = "nccl" if str(args.device).startswith("cuda") else "gloo"
    dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout))
    try:
        return command.simulate(args, Shard(dist.get_rank(), dist.get_world_size()))
    finally:
        dist.destroy_process_group()
