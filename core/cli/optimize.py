"""``populace optimize SCENARIO --lever L --objective O``: learn a decision by gradient descent through the
simulation (:mod:`populace.optimize`), then compare it with the lever's heuristic alternatives on held-out
seeds."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ..experiment import Experiment
from ..files import atomic_path
from ..memory import allocator, reuse_freed_memory
from ..optimize import evaluate, optimize, paired
from .arguments import UsageError, non_negative, parse_count, parse_device, positive, scenario_arguments
from .command import Command
from .output import peak_rss_mb

__all__ = ["Optimize"]

HELD_OUT = 1000
"""Held-out seeds start this far after ``--seed`` (training uses ``--seed`` … ``--seed + --seeds − 1``)."""


class Optimize(Command):
    help = "learn a decision (a lever) by gradient descent through the simulation"
    simulates_day_after_day = True

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("scenario", help="scenario name (see `populace scenarios`)")
        scenario_arguments(parser)
        parser.add_argument("--lever", required=True, help="what to learn, e.g. allocation")
        parser.add_argument("--objective", required=True, help="what to minimise, e.g. deaths")
        parser.add_argument("--epochs", type=positive, default=2, help="passes over the seeds (default 2)")
        parser.add_argument("--seeds", type=positive, default=4, help="training runs per epoch (default 4)")
        parser.add_argument(
            "--evaluate", type=non_negative, default=8, help="held-out runs per decision (default 8)"
        )
        parser.add_argument("--lr", type=float, default=0.3, help="Adam's learning rate (default 0.3)")
        parser.add_argument(
            "--checkpoint",
            type=positive,
            help="days between the kept states the backward pass replays from (default √days / 2)",
        )
        parser.add_argument(
            "--start-from",
            metavar="POLICY",
            help="start from the decision of this heuristic alternative (default: the lever's own start)",
        )
        parser.add_argument(
            "--params", help="a parameters.json from `populace calibrate` loaded into every model"
        )
        parser.add_argument("--out", help="folder for optimize.json (the learned decision and comparison)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args: argparse.Namespace) -> int:
        reuse_freed_memory()  # day after day the same sizes: reuse freed memory (populace.memory)
        experiment = Experiment.from_texts(args.scenario, [], seed=args.seed)
        scenario_cls = experiment.scenario
        levers, objectives = scenario_cls.levers(), scenario_cls.objectives()
        if args.lever not in levers:
            known = ", ".join(levers) or "none"
            raise UsageError(f"--lever: {scenario_cls.name} has no lever {args.lever!r}; known: {known}")
        if args.objective not in objectives:
            known = ", ".join(objectives) or "none"
            raise UsageError(
                f"--objective: {scenario_cls.name} has no objective {args.objective!r}; known: {known}"
            )
        if not args.lr > 0:
            raise UsageError(f"--lr: expected a positive learning rate, got {args.lr}")
        lever, objective = levers[args.lever], objectives[args.objective]
        alternatives = dict(lever.alternatives)
        if args.start_from is not None and (args.start_from not in alternatives or lever.start is None):
            known = ", ".join(alternatives) if lever.start is not None else "none for this lever"
            raise UsageError(f"--start-from: expected one of the lever's alternatives ({known})")
        agents = parse_count(args.agents, "--agents") if args.agents is not None else None
        days = (
            parse_count(args.days, "--days", "days") if args.days is not None else scenario_cls.default_days
        )
        device = parse_device(args.device)
        out = Path(args.out) if args.out else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

        def experiment_with(sets: tuple[str, ...]) -> Experiment:
            return Experiment.from_texts(
                scenario_cls,
                [*args.set, *sets],
                agents=agents,
                seed=args.seed,
                device=device,
                params=args.params,
            )

        start = time.perf_counter()
        learning = experiment_with(lever.sets)
        model = learning.model()
        training = list(range(args.seed, args.seed + args.seeds))
        initial = None
        if args.start_from is not None:
            assert lever.start is not None
            heuristic = experiment_with(alternatives[args.start_from]).model()
            initial = lever.start(heuristic, model, args.seed)
        log = None if args.json else (lambda step: print(_step_line(step), flush=True))
        report = optimize(
            model,
            lever,
            objective,
            days=days,
            seeds=training,
            epochs=args.epochs,
            lr=args.lr,
            every=args.checkpoint,
            device=device,
            initial=initial,
            on_step=log,
        )
        learned = report.learned
        assert learned is not None
        held_out = range(args.seed + HELD_OUT, args.seed + HELD_OUT + args.evaluate)
        comparison: dict[str, Any] = {}
        verdict: dict[str, Any] = {}
        if args.evaluate:

            def applying(decision: torch.Tensor | None) -> Any:
                def apply(m: Any) -> None:
                    if lever.apply is not None and decision is not None:
                        lever.apply(m, decision)

                return apply

            def held(build: Any, decision: torch.Tensor | None = None) -> list[float]:
                tick = time.perf_counter()
                values = evaluate(
                    build, objective, days=days, seeds=held_out, device=device, prepare=applying(decision)
                )
                evaluation_s.append(time.perf_counter() - tick)
                return values

            evaluation_s: list[float] = []
            values = held(learning.model, learned)
            comparison["optimised"] = _spread(values)
            comparison["starting point"] = _spread(held(learning.model, initial))
            for label, sets in lever.alternatives:
                comparison[label] = _spread(held(experiment_with(sets).model))
            if args.evaluate > 1:
                for label, result in comparison.items():
                    if label != "optimised":
                        result["optimised minus this"] = paired(values, result["values"])
                heuristics = [label for label, _ in lever.alternatives]
                best = min(heuristics, key=lambda label: comparison[label]["mean"])
                verdict = {
                    "counted": objective.held_out,
                    "best heuristic": best,
                    "lower than every heuristic": all(
                        comparison[h]["optimised minus this"]["mean"] < 0 for h in heuristics
                    ),
                    "resolved against every heuristic": all(
                        comparison[h]["optimised minus this"]["resolved"] for h in heuristics
                    ),
                    "rule": "resolved: the mean of the paired differences (optimised minus policy, same "
                    "held-out seeds) is below zero by more than 2 standard errors",
                    "seconds_per_policy": round(statistics.fmean(evaluation_s), 2),
                }
        summary = {
            "scenario": scenario_cls.name,
            "agents": learning.agents,
            "days": days,
            "seed": args.seed,
            "training_seeds": training,
            "held_out_seeds": list(held_out),
            "options": [*lever.sets, *args.set],
            "params": args.params,
            "start_from": args.start_from,
            "objective_output": objective.output,
            "lr": args.lr,
            "epochs": args.epochs,
            **report.summary(),
            "decision": lever.table(model),
            "comparison": comparison,
            **({"verdict": verdict} if verdict else {}),
            "total_s": round(time.perf_counter() - start, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "allocator": allocator(),
            "threads": torch.get_num_threads(),
        }
        if out is not None:
            with atomic_path(out / "optimize.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=1))
        if args.json:
            print(json.dumps(summary))
            return 0
        print(
            f"{scenario_cls.name}: {lever.name} optimised against {objective.name} "
            f"({learning.agents:,} agents x {days} days, {len(report.steps)} steps, {report.seconds:.1f} s)"
        )
        if comparison:
            seeds = f"{args.evaluate} seeds"
            print(f"  held out: {objective.held_out}, mean (sd) over {seeds}; optimised minus each")
        for label, result in comparison.items():
            mean, sd = result["mean"], result["sd"]
            line = f"  {label:32s} {mean:10.2f}  (sd {sd:.2f})"
            pair = result.get("optimised minus this")
            if pair is not None and label != "optimised":
                mark = "resolved" if pair["resolved"] else "within 2 se"
                line += f"   {pair['mean']:+.2f} ± {pair['se']:.2f} se ({mark})"
            print(line)
        if out is not None:
            print(f"wrote {out / 'optimize.json'}")
        return 0


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def _step_line(step: dict[str, float]) -> str:
    return (
        f"epoch {int(step['epoch'])} seed {int(step['seed'])}: objective {step['objective']:.3f}, "
        f"|gradient| {step['gradient_norm']:.3g}, {step['seconds']:.1f} s"
    )
