"""Benchmark: the counterfactual-corrected Sellke estimator (:mod:`populace.counterfactual`) against central
CRN finite differences (±5%) over a whole wave, side by side with the Sellke estimator it corrects, with the
cost of each against the differentiable forward.

    python benchmarks/estimator_bias_counterfactual.py wave [--agents 20k] [--days 120] [--seeds 8]
                                                    [--variants sellke,merged:256,pairs:64]
    python benchmarks/estimator_bias_counterfactual.py households [--household 4:10:3] [--days 120] ...

``wave``: ``nyc-covid``, default options, outcomes and parameters of ``estimator_bias_wave.py``.
``households``: the population of ``estimator_bias_households.py`` (``size:contacts:community``), total
infections, β. A variant is ``sellke``, ``merged:K`` (K sampled agent-days, one counterfactual run) or
``pairs:K`` (one counterfactual run per sampled agent-day). For each variant, parameter and outcome: Σ AD /
Σ FD over the seeds, the standard deviation over seeds of AD / mean FD (``sd``), and CPU seconds a seed by
phase. One JSON object per variant, appended to ``benchmarks/estimator_bias_counterfactual.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _record import append, machine

from populace import Model, Simulation
from populace.cli import parse_count
from populace.counterfactual import Counterfactual, counterfactual_gradient
from populace.estimators import Sellke
from populace.layers.covid import Covid
from populace.scenario import find_scenario, parse_sets
from populace.sensitivity import Output
from populace.simulate import Result

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "estimator_bias_counterfactual.json"
STEP = 0.05
WAVE_OUTCOMES = ("total:new_deaths", "peak:hospitalised", "total:new_infections")
WAVE_CHECKED = ("beta", "asymptomatic_factor", "severe_scale", "settings.school.weight")


def wave(
    agents: int, sets: list[str]
) -> tuple[Model, Covid, dict[str, Callable[[Result], torch.Tensor]], list[str]]:
    scenario = find_scenario("nyc-covid")
    model = scenario().build(agents, parse_sets(scenario, sets), seed=0, device="cpu")
    covid = next(layer for layer in model.ordered_layers() if isinstance(layer, Covid))
    checked = [name for name, _ in model.named_parameters() if name.endswith(WAVE_CHECKED)]
    return model, covid, {o: Output.parse(o) for o in WAVE_OUTCOMES}, checked


def households(spec: str) -> tuple[Model, Covid, dict[str, Callable[[Result], torch.Tensor]], list[str]]:
    sys.path.insert(0, str(HERE))
    from estimator_bias_households import build

    size, contacts, community = spec.split(":")
    model, covid = build(int(size), float(contacts), float(community))
    beta = next(name for name, _ in model.named_parameters() if name.endswith("beta"))
    return model, covid, {"total:new_infections": Output.parse("total:new_infections")}, [beta]


def finite_differences(
    model: Model, days: int, outcomes: dict, names: list[str], seed: int
) -> dict[str, dict[str, float]]:
    params = dict(model.named_parameters())
    out: dict[str, dict[str, float]] = {}
    for name in names:
        p = params[name]
        value = float(p.detach())
        sides = []
        for sign in (1, -1):
            with torch.no_grad():
                p.fill_(value * (1 + sign * STEP))
            run = Simulation(model, seed=seed).run(days)
            sides.append({o: float(f(run)) for o, f in outcomes.items()})
        with torch.no_grad():
            p.fill_(value)
        out[name] = {o: (sides[0][o] - sides[1][o]) / (2 * STEP * value) for o in outcomes}
    return out


def sellke_gradient(model: Model, days: int, outcomes: dict, names: list[str], seed: int) -> tuple:
    params = dict(model.named_parameters())
    tensors = [params[n] for n in names]
    t0 = time.process_time()
    result = Simulation(model, seed=seed, grad="full").run(days)
    ys = {o: f(result) for o, f in outcomes.items()}
    t1 = time.process_time()
    grads = {}
    for o, y in ys.items():
        g = torch.autograd.grad(y, tensors, retain_graph=True, allow_unused=True)
        grads[o] = {n: float(x) if x is not None else 0.0 for n, x in zip(names, g, strict=True)}
    t2 = time.process_time()
    return grads, {"forward": round(t1 - t0, 3), "backward": round(t2 - t1, 3)}


def measure(case: str, spec: str, days: int, seeds: int, variant: str, sets: list[str]) -> dict:
    if case == "wave":
        model, covid, outcomes, names = wave(parse_count(spec, "--agents"), sets)
    else:
        model, covid, outcomes, names = households(spec)
    kind, _, k = variant.partition(":")
    ad: dict[str, dict[str, list[float]]] = {n: {o: [] for o in outcomes} for n in names}
    fd: dict[str, dict[str, list[float]]] = {n: {o: [] for o in outcomes} for n in names}
    seconds: list[dict[str, float]] = []
    hazard: list[float] = []
    # ``pairs:K`` without its Sellke control variate, for β (h ∝ β at a fixed state): (H / K) Σ c_k / β, the
    # pruned stochastic-triple estimate (Arya et al. 2022) of the same program
    triple: dict[str, list[float]] = {o: [] for o in outcomes}
    beta_name = next((n for n in names if n.endswith("beta")), None)
    for seed in range(seeds):
        if kind == "sellke":
            covid.estimator = Sellke()
            grads, sec = sellke_gradient(model, days, outcomes, names, seed)
        else:
            covid.estimator = Counterfactual(samples=int(k), seed=1000 + seed, merged=kind == "merged")
            got = counterfactual_gradient(model, days, outcomes, seed=seed, params=names)
            grads = {o: {n: float(g.grad[n]) for n in names} for o, g in got.items()}
            sec = next(iter(got.values())).seconds
            hazard.append(next(iter(got.values())).total)
            if kind == "pairs" and beta_name is not None:
                beta = float(dict(model.named_parameters())[beta_name].detach())
                for o, g in got.items():
                    triple[o].append(g.total / len(g.c) * sum(g.c) / beta)
        covid.estimator = Sellke()
        t0 = time.process_time()
        Simulation(model, seed=seed).run(days)
        sec = {**sec, "run_without_gradients": round(time.process_time() - t0, 3)}
        seconds.append(sec)
        diffs = finite_differences(model, days, outcomes, names, seed)
        for n in names:
            for o in outcomes:
                ad[n][o].append(grads[o][n])
                fd[n][o].append(diffs[n][o])
    cost = {key: round(statistics.mean(s[key] for s in seconds), 3) for key in seconds[0]}

    def summary(n: str, o: str) -> dict[str, float | None]:
        mean_fd = statistics.mean(fd[n][o])
        if mean_fd == 0:
            return {"ad_over_fd": None}
        return {
            "ad_over_fd": round(sum(ad[n][o]) / sum(fd[n][o]), 3),
            "sd": round(statistics.stdev(ad[n][o]) / abs(mean_fd), 3) if seeds > 1 else None,
            "fd_sd": round(statistics.stdev(fd[n][o]) / abs(mean_fd), 3) if seeds > 1 else None,
            "ad": round(statistics.mean(ad[n][o]), 3),
            "fd": round(mean_fd, 3),
        }

    return {
        "case": case,
        "spec": spec,
        "days": days,
        "seeds": seeds,
        "variant": variant,
        "sets": sets,
        "waiting_hazard": round(statistics.mean(hazard), 1) if hazard else None,
        "cpu_s_per_seed": cost,
        "cost_over_forward": round(
            sum(v for key, v in cost.items() if key != "run_without_gradients") / cost["forward"], 2
        ),
        "results": {n: {o: summary(n, o) for o in outcomes} for n in names},
        **(
            {
                "triple_without_control_variate": {
                    o: {
                        "over_fd": round(sum(v) / sum(fd[beta_name][o]), 3),
                        "sd": round(statistics.stdev(v) / abs(statistics.mean(fd[beta_name][o])), 3),
                    }
                    for o, v in triple.items()
                }
            }
            if beta_name is not None and all(len(v) > 1 for v in triple.values())
            else {}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("case", choices=("wave", "households"))
    parser.add_argument("--agents", default="20k")
    parser.add_argument("--household", default="4:10:3")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--variants", default="sellke,merged:256,pairs:64")
    parser.add_argument(
        "--set", action="append", default=[], help="a scenario option (wave), e.g. seeds_per_100k=50"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = args.agents if args.case == "wave" else args.household
    for variant in args.variants.split(","):
        record = {**machine(), **measure(args.case, spec, args.days, args.seeds, variant, args.set)}
        print(json.dumps(record), flush=True)
        append(RESULTS, record)


if __name__ == "__main__":
    main()
