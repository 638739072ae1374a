"""Bias of the gradient estimators of :mod:`populace.samplers`, against finite differences (FD) with common
random numbers (CRN).

Two parts:

* ``single_draw``: N agents with p_i(θ) = σ(θ·a_i + b_i), f = Σ x_i. Reverse-mode AD of each estimator
  against the exact derivative Σ dp_i/dθ and against central FD with the same uniforms at θ ± h, over
  several replicates and steps h; the binomial rule likewise (FD with the same generator seed at θ ± h).
  Also the hard Gumbel-softmax bias E_u[dx/dp] − 1 on a grid of stratified uniforms (no sampling noise).
* ``bench_seir``: the bench-seir scenario; d(attack)/dθ for θ = β and each setting weight, where
  attack = agents ever infected (N − S) at several horizons. AD (``grad="full"``) of each estimator,
  summed over run seeds, against the CRN central FD (same run seed at θ·(1 ± h), fast mode), for
  several relative steps h. bias = Σ_seeds AD / Σ_seeds FD − 1; ``boot_sd`` is its bootstrap standard
  deviation over seeds (paired resampling).

Prints one JSON object and appends it to ``benchmarks/estimator_bias.json`` (a JSON list, replaced
atomically). Run from the repository root::

    /work/venv/bin/python benchmarks/estimator_bias.py            # ~1 min on one thread (2-core VM)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _record import append, machine

from populace import Simulation, Smoothed, find_scenario, simulate
from populace.estimators import estimator as named_estimator
from populace.samplers import bernoulli, binomial

RESULTS = Path(__file__).with_name("estimator_bias.json")
ESTIMATORS = ("smoothed", "gumbel")


def _mean_se(values: list[float]) -> dict[str, float]:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": round(statistics.fmean(values), 5), "se": round(se, 5)}


def _cv(values: list[float]) -> float:
    """Coefficient of variation across seeds (noise of one seed's estimate, relative to the mean)."""
    mean = statistics.fmean(values)
    return round(statistics.stdev(values) / abs(mean), 3) if mean and len(values) > 1 else math.nan


# ------------------------------------------------------------------------------------------ single draw


def single_draw(agents: int, replicates: int, steps: list[float], tau: float) -> dict[str, Any]:
    theta = 0.5
    rel: dict[str, list[float]] = {f"{e}_ad": [] for e in ESTIMATORS}
    rel |= {"binomial_ad": []}
    for h in steps:
        rel[f"bernoulli_fd_h{h}"] = []
        rel[f"binomial_fd_h{h}"] = []
        rel[f"binomial_against_h{h}"] = []
    for r in range(replicates):
        g = torch.Generator().manual_seed(1000 + r)
        a = torch.rand(agents, generator=g, dtype=torch.float64) + 0.5
        b = torch.randn(agents, generator=g, dtype=torch.float64)
        u = torch.rand(agents, generator=g, dtype=torch.float64)
        n = torch.randint(1, 50, (agents,), generator=g).to(torch.float64)

        def prob(th: torch.Tensor | float, a: torch.Tensor = a, b: torch.Tensor = b) -> torch.Tensor:
            return torch.sigmoid(th * a + b)

        p0 = prob(theta)
        exact = float((a * p0 * (1 - p0)).sum())
        for estimator in ESTIMATORS:
            th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
            bernoulli(prob(th), u, estimator=estimator, tau=tau).sum().backward()
            assert th.grad is not None
            rel[f"{estimator}_ad"].append(float(th.grad) / exact - 1)
        th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        binomial(n, prob(th), generator=torch.Generator().manual_seed(r)).sum().backward()
        assert th.grad is not None
        exact_n = float((n * a * p0 * (1 - p0)).sum())
        rel["binomial_ad"].append(float(th.grad) / exact_n - 1)
        for h in steps:
            fd = float((u < prob(theta + h)).sum() - (u < prob(theta - h)).sum()) / (2 * h)
            rel[f"bernoulli_fd_h{h}"].append(fd / exact - 1)
            kp = binomial(n, prob(theta + h), generator=torch.Generator().manual_seed(r))
            km = binomial(n, prob(theta - h), generator=torch.Generator().manual_seed(r))
            rel[f"binomial_fd_h{h}"].append(float(kp.sum() - km.sum()) / (2 * h) / exact_n - 1)
            rel[f"binomial_against_h{h}"].append(float(((kp - km) < 0).double().mean()))

    grid_n = 1_000_000
    grid = (torch.arange(grid_n, dtype=torch.float64) + 0.5) / grid_n
    gumbel_grid: dict[str, dict[str, float]] = {}
    for t in (0.05, 0.1, 0.2, 0.5):
        row = {}
        for p_value in (0.001, 0.01, 0.1, 0.3, 0.5, 0.9):
            p = torch.tensor(p_value, dtype=torch.float64, requires_grad=True)
            bernoulli(p.expand(grid_n), grid, estimator="gumbel", tau=t).sum().backward()
            assert p.grad is not None
            row[str(p_value)] = round(float(p.grad) / grid_n - 1, 5)
        row["p->0 limit pi*tau/sin(pi*tau)-1"] = round(math.pi * t / math.sin(math.pi * t) - 1, 5)
        gumbel_grid[f"tau={t}"] = row
    return {
        "setup": f"{agents} agents, p=sigmoid(theta*a+b), a~U(0.5,1.5), b~N(0,1), theta={theta}, "
        f"{replicates} replicates; binomial n~U{{1..49}}; gumbel tau={tau}",
        "relative_error_vs_exact": {k: _mean_se(v) for k, v in rel.items() if "against" not in k},
        "binomial_crn_fraction_of_counts_moving_against_p": {
            k.removeprefix("binomial_against_"): round(statistics.fmean(v), 4)
            for k, v in rel.items()
            if "against" in k
        },
        "gumbel_bias_stratified_uniforms": gumbel_grid,
    }


# ------------------------------------------------------------------------------------------ bench-seir


def bench_seir(
    agents: int,
    days: int,
    seeds: int,
    steps: list[float],
    horizons: list[int],
    population_seed: int,
    tau: float,
) -> dict[str, Any]:
    scenario = find_scenario("bench-seir")
    model = scenario().build(agents, scenario.options(), seed=population_seed, device="cpu")
    seir = model.layers[0]
    params = {name.removeprefix("seir."): p for name, p in model.named_parameters()}
    labels = {"beta": "beta"}
    labels |= {f"settings.{c.name}.weight": f"weight.{c.name}" for c in seir.contacts()}
    base = {name: float(p.detach()) for name, p in params.items()}
    assert max(horizons) == days

    # ad[estimator][horizon][param] and fd[h][horizon][param]: one value per seed
    ad = {e: {t: {k: [] for k in params} for t in horizons} for e in ESTIMATORS}
    fd = {h: {t: {k: [] for k in params} for t in horizons} for h in steps}
    attack: dict[int, list[float]] = {t: [] for t in horizons}
    t_grad = t_fast = 0.0
    n_grad = n_fast = 0

    def attacks_fast(seed: int) -> list[float]:
        # Fast mode, run in chunks ending at each horizon (the last row of a chunk is its final state).
        sim = Simulation(model, seed=seed)
        out, day = [], 0
        for t in horizons:
            out.append(float(agents - sim.run(t - day).series["S"][-1]))
            day = t
        return out

    try:
        for seed in range(seeds):
            for estimator in ESTIMATORS:
                seir.estimator = named_estimator(estimator, **({"tau": tau} if estimator == "gumbel" else {}))
                start = time.perf_counter()
                result = simulate(model, days, seed=seed, grad="full")
                for i, t in enumerate(horizons):
                    value = agents - result.series["S"][t - 1]
                    grads = torch.autograd.grad(
                        value, list(params.values()), retain_graph=i < len(horizons) - 1
                    )
                    for name, g in zip(params, grads, strict=True):
                        ad[estimator][t][name].append(float(g))
                    if estimator == ESTIMATORS[0]:
                        attack[t].append(float(value.detach()))
                t_grad += time.perf_counter() - start
                n_grad += 1
            start = time.perf_counter()
            check = attacks_fast(seed)
            assert check == [attack[t][-1] for t in horizons], "fast and grad mode forward values differ"
            for name, p in params.items():
                for h in steps:
                    ends = []
                    for sign in (1, -1):
                        with torch.no_grad():
                            p.fill_(base[name] * (1 + sign * h))
                        ends.append(attacks_fast(seed))
                    with torch.no_grad():
                        p.fill_(base[name])
                    for i, t in enumerate(horizons):
                        fd[h][t][name].append((ends[0][i] - ends[1][i]) / (2 * h * base[name]))
            t_fast += time.perf_counter() - start
            n_fast += 1 + 2 * len(params) * len(steps)
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.fill_(base[name])
        seir.estimator = Smoothed()

    rng = random.Random(0)
    resamples = [[rng.randrange(seeds) for _ in range(seeds)] for _ in range(1000)]

    def bias(a: list[float], f: list[float]) -> dict[str, float]:
        def ratio(idx: list[int] | range) -> float:
            den = sum(f[i] for i in idx)
            return sum(a[i] for i in idx) / den - 1 if den else math.nan

        boots = [r for r in map(ratio, resamples) if not math.isnan(r)]
        return {
            "bias": round(ratio(range(seeds)), 4),
            "boot_sd": round(statistics.stdev(boots), 4) if len(boots) > 1 else math.nan,
        }

    ref_h = sorted(steps, key=lambda h: abs(h - 0.1))[0]
    table: dict[str, Any] = {}
    for t in horizons:
        for name in params:
            row: dict[str, Any] = {
                "fd_mean": {f"h={h}": round(statistics.fmean(fd[h][t][name]), 3) for h in steps},
                "fd_cv": _cv(fd[ref_h][t][name]),
            }
            for e in ESTIMATORS:
                row[e] = {f"h={h}": bias(ad[e][t][name], fd[h][t][name]) for h in steps}
                row[f"{e}_ad_mean"] = round(statistics.fmean(ad[e][t][name]), 3)
                row[f"{e}_ad_cv"] = _cv(ad[e][t][name])
            table[f"day {t}: d attack / d {labels[name]}"] = row
    summary = {
        f"{e} d/d{labels[name]} day {days}": table[f"day {days}: d attack / d {labels[name]}"][e][
            f"h={ref_h}"
        ]
        for e in ESTIMATORS
        for name in params
    }
    return {
        "setup": f"bench-seir (households network), {agents} agents (population seed {population_seed}), "
        f"{days} days, run seeds 0..{seeds - 1}, attack = N - S at day t, gumbel tau={tau}; "
        f"FD = central CRN difference at theta*(1 +- h), fast mode",
        "attack_mean": {f"day {t}": round(statistics.fmean(v), 1) for t, v in attack.items()},
        "attack_min": {f"day {t}": min(v) for t, v in attack.items()},
        f"summary (h={ref_h})": summary,
        "results": table,
        "seconds_per_grad_run": round(t_grad / max(n_grad, 1), 4),
        "seconds_per_fast_run": round(t_fast / max(n_fast, 1), 4),
    }


# ------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=20_000, help="bench-seir agents")
    ap.add_argument("--days", type=int, default=60, help="bench-seir days (the last horizon)")
    ap.add_argument(
        "--horizons", type=int, nargs="+", default=[30, 45, 60], help="days at which the attack is taken"
    )
    ap.add_argument("--seeds", type=int, default=40, help="bench-seir run seeds")
    ap.add_argument("--steps", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="relative FD steps h")
    ap.add_argument("--draw-agents", type=int, default=1_000_000, help="agents of the single-draw part")
    ap.add_argument("--replicates", type=int, default=8, help="replicates of the single-draw part")
    ap.add_argument("--tau", type=float, default=0.1, help="temperature of the gumbel estimator")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON list to append the result to")
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args(argv)
    horizons = sorted({t for t in args.horizons if t < args.days} | {args.days})

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    draw = single_draw(args.draw_agents, args.replicates, [0.01, 0.02, 0.05, 0.1], args.tau)
    seir = bench_seir(args.agents, args.days, args.seeds, args.steps, horizons, 1, args.tau)
    record = {
        "benchmark": "estimator_bias",
        "command": " ".join(
            ["python", "benchmarks/estimator_bias.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        **machine(),  # date (UTC), host (platform.node()), cpu, cores (os.cpu_count()), torch, threads, ...
        "processor": platform.processor() or platform.machine(),
        "single_draw": draw,
        "bench_seir": seir,
        "runtime_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(record, indent=1))
    if not args.no_save:
        append(args.out, record)
    return record


if __name__ == "__main__":
    main()
