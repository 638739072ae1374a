"""Commands that run on a population split over processes: ``--ranks N`` starts N local processes
(:func:`populace.distributed.launch`), ``torchrun ... -m populace COMMAND ...`` joins torchrun's group
(several machines); in both, the command's :meth:`~populace.cli.command.Command.on_shard` runs once per
process and only the first process prints and writes."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Protocol

import torch.distributed as dist

from ..distributed import RankFailed, Shard, launch
from ..experiment import Experiment
from .arguments import UsageError, parse_count

__all__ = ["Split", "on_processes", "process_arguments"]


class Split(Protocol):
    """A command whose body runs on one process's shard (``None``: the whole population in this one)."""

    def on_shard(self, args: argparse.Namespace, shard: Shard | None) -> int: ...


def process_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ranks`` and ``--timeout``."""
    parser.add_argument(
        "--ranks",
        help="split the population over this many local processes (torch.distributed, gloo); under "
        "torchrun, its processes are used instead",
    )
    parser.add_argument(
        "--timeout",
        default="120",
        help="seconds a process waits for the others before the run stops (default 120)",
    )


def on_processes(command: Split, args: argparse.Namespace, experiment: Experiment) -> int:
    """Run ``command.on_shard`` in this process, in ``--ranks`` new ones, or as one of torchrun's."""
    ranks = parse_count(args.ranks, "--ranks", "processes") if args.ranks is not None else 1
    timeout = parse_count(args.timeout, "--timeout", "seconds")
    torchrun = "WORLD_SIZE" in os.environ
    if (ranks > 1 or torchrun) and not experiment.scenario.shardable:
        raise UsageError(f"--ranks: {experiment.scenario.name} does not run on several processes yet")
    if torchrun:
        backend = "nccl" if str(args.device).startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout))
        try:
            return command.on_shard(args, Shard(dist.get_rank(), dist.get_world_size()))
        finally:
            dist.destroy_process_group()
    if ranks == 1:
        return command.on_shard(args, None)
    try:
        launch(_rank_main, ranks, type(command), args, timeout_s=float(timeout))
    except RankFailed as exc:
        print(f"populace {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"populace {args.command}: interrupted; every process stopped", file=sys.stderr)
        return 130
    return 0


def _rank_main(rank: int, ranks: int, command: type[Split], args: argparse.Namespace) -> None:
    """One process of a command started with ``--ranks N``."""
    code = command().on_shard(args, Shard(rank, ranks))
    if code:
        raise RuntimeError(f"the command ended with exit code {code}")
