"""``populace sensitivity SCENARIO``: gradients of outcomes with respect to every parameter
(:mod:`populace.sensitivity`), optionally checked by finite differences."""

from __future__ import annotations

import argparse
import json
import time

import torch

from ..memory import allocator, reuse_freed_memory
from ..sensitivity import sensitivity
from ..simulate import Checkpointed, Simulation
from .arguments import UsageError, names, positive, scenario_arguments, setup
from .command import Command
from .output import peak_rss_mb

__all__ = ["Sensitivity"]


class Sensitivity(Command):
    help = "gradients of outcomes with respect to every parameter"
    simulates_day_after_day = True

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="scenario name (see `populace scenarios`)")
        scenario_arguments(parser)
        parser.add_argument("--params", help="a parameters.json written by `populace calibrate`")
        parser.add_argument("--outputs", type=names, help="outcomes, e.g. total:new_deaths,peak:hospitalised")
        parser.add_argument("--seeds", type=positive, default=1, help="runs averaged (default 1)")
        parser.add_argument(
            "--mode", choices=("reverse", "forward"), default="reverse", help="AD mode (default reverse)"
        )
        parser.add_argument(
            "--checkpoint",
            type=positive,
            help="reverse mode: days between the states the backward pass replays from (default √days / 2)",
        )
        parser.add_argument(
            "--fd-check", action="store_true", help="check scalar parameters by finite differences"
        )
        parser.add_argument(
            "--compare",
            action="store_true",
            help="also time a run without gradients, to compare (one more run of the scenario)",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args: argparse.Namespace) -> int:
        reuse_freed_memory()  # day after day the same sizes: reuse freed memory (populace.memory)
        experiment, days = setup(args)
        scenario_cls, agents = experiment.scenario, experiment.agents
        device = torch.device(experiment.device)
        outputs = args.outputs or list(scenario_cls.default_outputs)
        if not outputs:
            raise UsageError(f"--outputs: {scenario_cls.name} has no default outcomes; name some")
        model = experiment.model()
        fast_s: float | None = None
        if args.compare:
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
                grad=Checkpointed(args.checkpoint),
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
            **({} if fast_s is None else {"fast_forward_s": round(fast_s, 4)}),
            **report.summary(),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "allocator": allocator(),
        }
        if args.json:
            print(json.dumps(summary))
            return 0
        compared = "" if fast_s is None else f" (without gradients: {fast_s:.2f} s)"
        print(
            f"{scenario_cls.name}: {agents:,} agents x {days} days, {args.mode} mode: forward "
            f"{report.forward_s:.2f} s, backward {report.backward_s:.2f} s{compared}"
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
