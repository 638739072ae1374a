"""``populace sensitivity SCENARIO``: gradients of outcomes with respect to every parameter
(:mod:`populace.sensitivity`), optionally checked by finite differences."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ..glossary import grouped_name, outcome
from ..memory import allocator, reuse_freed_memory
from ..sensitivity import RESOLVED, WITHIN, Sensitivity as Report, sensitivity
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
            "--fd-check",
            action="store_true",
            help="check scalar parameters by finite differences with common random numbers (the same seeds); "
            "with --seeds 2 or more, each side's standard error and whether the difference is resolved",
        )
        parser.add_argument(
            "--fd-step",
            type=_step,
            default=0.05,
            help="--fd-check's step: each side moves the parameter by this share of its value (of its range "
            "when it is 0); larger steps resolve small effects, at the cost of curvature (default 0.05)",
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
                grad=Checkpointed(args.checkpoint, overlap=True),  # the outcomes' reverse passes at once
                mode=args.mode,
                fd_check=scalars if args.fd_check else (),
                fd_step=args.fd_step,
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
        seeds = len(report.seeds)
        print(
            f"{scenario_cls.name}: {agents:,} agents x {days} days, {args.mode} mode, {seeds} seed"
            f"{'s' if seeds > 1 else ''}: forward {report.forward_s:.2f} s, "
            f"backward {report.backward_s:.2f} s a seed{compared}"
        )
        for output, grads in report.gradients.items():
            print(f"\nd({output} = {report.outputs[output]:g}) / d(parameter)")
            for name, value in grads.items():
                if isinstance(value, float):
                    se = report.errors[output][name]
                    spread = f" ± {se:.2g}" if seeds > 1 else ""
                    print(f"  {name:40s} {value:12.4g}{spread}")
                else:
                    flat = torch.tensor(value).abs()
                    print(f"  {name:40s} {flat.numel()} entries, max |d| {float(flat.max()):.4g}")
        if report.fd:
            specs = model.specs()

            def words(name: str) -> str:
                option = specs[name].option if name in specs else ""
                return grouped_name(scenario_cls.option_groups, option) or model.label(name)

            print()
            print(fd_table(report, words))
        return 0


def fd_table(report: Report, label: Callable[[str], str]) -> str:
    """The finite-difference check in words: per parameter and outcome, the gradient (AD) and the finite
    difference (FD) each ± its standard error over the seeds, whether the FD is resolved, and how far AD is
    from it. ``label`` gives a parameter's words (:meth:`populace.Model.label`)."""
    seeds = len(report.seeds)
    rows = [
        (
            label(name),
            outcome(output).label,
            _pm(check["ad"], check["ad_se"]),
            _pm(check["fd"], check["fd_se"]),
            "yes" if check["resolved"] else "no",
            _relative(check),
        )
        for name, per in report.fd.items()
        for output, check in per.items()
    ]
    head = ("parameter", "outcome", "gradient", "finite difference", "resolved", "relative error")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        f"Gradient against finite difference ({seeds} seed{'s' if seeds > 1 else ''}, common random numbers; "
        f"± one standard error over the seeds). A finite difference is resolved when its standard error is "
        f"below {RESOLVED:.0%} of it; the relative error |gradient − difference| ÷ |difference| is "
        f"judged only there.",
        "",
    ]
    for row in [head, *rows]:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    resolved = [c for per in report.fd.values() for c in per.values() if c["resolved"]]
    within = [c for c in resolved if c["rel_err"] <= WITHIN]
    lines.append(
        f"\n{len(resolved)} of {sum(len(per) for per in report.fd.values())} finite differences resolved; "
        f"{len(within)} of those have the gradient within {WITHIN:.0%} of the difference."
    )
    return "\n".join(lines)


def _step(text: str) -> float:
    """An argparse type: a finite-difference step, a share of the value in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a share of the value between 0 and 1, like 0.1, got {text!r}"
        )
    return value


def _relative(check: dict[str, Any]) -> str:
    if check["fd"] == 0:
        return "-"
    text = f"{check['rel_err']:.0%}"
    return text + (f" ± {check['rel_err_se']:.0%}" if math.isfinite(check["rel_err_se"]) else "")


def _pm(value: float, se: float) -> str:
    return f"{value:.4g} ± {se:.2g}" if math.isfinite(se) else f"{value:.4g}"
