"""Benchmark (issue 21): a likelihood-ratio (score-function) estimator of d(infections)/dβ beside the Sellke
estimator on the households toy of ``estimator_bias_households.py`` (40,000 agents in households plus a
well-mixed community), against central CRN finite differences (±5%, and ±20% to show the curvature), seed
by seed.

    python benchmarks/estimator_lr_households.py [--seeds 16] [--days 120] [--variants 4:10:3]

The Sellke construction draws each waiting agent's infection on day s with probability 1 − e^(−h), h its
hazard (rate × susceptibility) that day, so the run's log-likelihood as a function of β, with every state
held as drawn, is Σ over infected agent-days log(1 − e^(−h)) − Σ over waiting agent-days h, and h ∝ β at a
fixed state (no importation in this toy). Its derivative, the score, is

    S_s = (1/β) [Σ_infected h / (e^h − 1) − Σ_waiting h]      (day s)

and dE[G]/dβ = E[Σ_s S_s · (R_s − b_s)] for any baseline b_s that does not depend on day s's draw or later
ones (R_s = Σ_{t ≥ s} g_t, the outcome from day s on: a draw cannot change what came before it). Estimators
measured, each from the same run as the Sellke gradient (the score is recorded by a wrapper of the Sellke
estimator, one pass over the agents a day):

* ``sellke``: the reverse pass (the default estimator);
* ``lr``: S · (G − b), b the mean G of the other seeds (leave-one-out, so unbiased);
* ``lr_to_go``: Σ_s S_s (R_s − b_s), b_s the other seeds' mean R_s;
* ``lr_state``: the same with b_s fitted, over the other seeds, as a + c × (infectious on day s) + d ×
  (susceptible on day s), a baseline that knows the state (a control variate of known mean 0).

Prints one JSON object per variant (Σ estimate / Σ FD, the s.d. over seeds ÷ |FD|, the standard error of
the ratio) and appends it to ``benchmarks/estimator_lr_households.json``; the table is in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _record import append, machine
from estimator_bias_households import AGENTS, STEP, build

from populace import Simulation
from populace.estimators import Draw, Sellke

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "estimator_lr_households.json"
WIDE = 4
"""A second finite difference at WIDE × the step (central, CRN): how curved the outcome is in β."""


@dataclass(frozen=True)
class ScoredSellke(Sellke):
    """The Sellke estimator, recording each day's Σ_infected h/(e^h − 1) − Σ_waiting h (× β: the score)."""

    days: dict[int, float] = field(default_factory=dict, compare=False)
    """Each day's sum (days without a draw, e.g. nobody infectious yet, are absent)."""

    def infect(self, draw: Draw) -> torch.Tensor:
        with torch.no_grad():
            h = draw.rate.detach().double()
            at_risk = torch.isfinite(draw.threshold)
            infected = h / torch.expm1(h).clamp(min=1e-300)
            score = torch.where(draw.sample, infected, -h)
            self.days[draw.day] = self.days.get(draw.day, 0.0) + float(score[at_risk].sum())
        return super().infect(draw)


def _loo_mean(rows: list[list[float]], i: int) -> list[float]:
    others = [r for j, r in enumerate(rows) if j != i]
    return [sum(col) / len(others) for col in zip(*others, strict=True)]


def _loo_state_baseline(
    rows: list[list[float]], states: list[list[tuple[float, float]]], i: int
) -> list[float]:
    """Per day, least squares of R_s on (1, infectious_s, susceptible_s) over the other seeds, at seed i."""
    others = [j for j in range(len(rows)) if j != i]
    out = []
    for s in range(len(rows[i])):
        x = torch.tensor([[1.0, *states[j][s]] for j in others], dtype=torch.float64)
        y = torch.tensor([rows[j][s] for j in others], dtype=torch.float64)
        scale = x.abs().amax(0).clamp(min=1.0)
        coef = torch.linalg.lstsq(x / scale, y.unsqueeze(1)).solution.squeeze(1) / scale
        out.append(float(torch.tensor([1.0, *states[i][s]], dtype=torch.float64) @ coef))
    return out


def measure(size: int, contacts: float, community: float, days: int, seeds: int) -> dict:
    model, covid = build(size, contacts, community)
    beta = float(covid.beta.detach())
    sellke, fd, wide, to_go, scores, states, totals = [], [], [], [], [], [], []
    seconds = {"forward": 0.0, "reverse": 0.0, "fd": 0.0}
    for seed in range(seeds):
        scored = ScoredSellke()
        covid.estimator = scored
        covid.beta.grad = None
        t0 = time.process_time()
        result = Simulation(model, seed=seed, grad="full").run(days)
        series = result.series
        total = series["new_infections"].sum()
        t1 = time.process_time()
        total.backward()
        seconds["reverse"] += time.process_time() - t1
        seconds["forward"] += t1 - t0
        assert covid.beta.grad is not None
        sellke.append(float(covid.beta.grad))
        daily = [float(v) for v in series["new_infections"].detach()]
        to_go.append([sum(daily[s:]) for s in range(days)])
        totals.append(sum(daily))
        assert max(scored.days) < days, max(scored.days)
        scores.append([scored.days.get(s, 0.0) / beta for s in range(days)])
        infectious = [float(v) for v in series["infectious"].detach()]
        susceptible = [float(v) for v in series["S"].detach()]
        # the state the day's draw saw: yesterday's counts (day 0: the seeded start)
        states.append([(infectious[max(s - 1, 0)], susceptible[max(s - 1, 0)]) for s in range(days)])
        t2 = time.process_time()
        for step, into in ((STEP, fd), (WIDE * STEP, wide)):
            sides = []
            for sign in (1, -1):
                with torch.no_grad():
                    covid.beta.fill_(beta * (1 + sign * step))
                sides.append(float(Simulation(model, seed=seed).run(days).series["new_infections"].sum()))
            into.append((sides[0] - sides[1]) / (2 * step * beta))
        with torch.no_grad():
            covid.beta.fill_(beta)
        seconds["fd"] += time.process_time() - t2
    estimates: dict[str, list[float]] = {"sellke": sellke, "lr": [], "lr_to_go": [], "lr_state": []}
    for i in range(seeds):
        score_total = sum(scores[i])
        others = sum(totals[j] for j in range(seeds) if j != i) / (seeds - 1)
        estimates["lr"].append(score_total * (totals[i] - others))
        for name, base in (
            ("lr_to_go", _loo_mean(to_go, i)),
            ("lr_state", _loo_state_baseline(to_go, states, i)),
        ):
            parts = zip(scores[i], to_go[i], base, strict=True)
            estimates[name].append(sum(sc * (r - b) for sc, r, b in parts))
    fd_mean = sum(fd) / seeds

    def sd(values: list[float]) -> float:
        m = sum(values) / len(values)
        return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))

    return {
        "agents": AGENTS,
        "household_size": size,
        "household_contacts": contacts,
        "community_contacts": community,
        "days": days,
        "seeds": seeds,
        "fd": round(fd_mean, 1),
        "fd_sd_over_fd": round(sd(fd) / abs(fd_mean), 3),
        "fd_step": STEP,
        "wide_fd_over_fd": round(sum(wide) / sum(fd), 3),
        "wide_fd_step": WIDE * STEP,
        "cpu_s_a_seed": {k: round(v / seeds, 2) for k, v in seconds.items()},
        "estimators": {
            name: {
                "over_fd": round(sum(v) / sum(fd), 3),
                "sd_over_fd": round(sd(v) / abs(fd_mean), 3),
                "ratio_se": round(sd(v) / math.sqrt(seeds) / abs(fd_mean), 3),
            }
            for name, v in estimates.items()
        },
        "by_seed": {
            "fd": [round(v, 1) for v in fd],
            **{k: [round(x, 1) for x in v] for k, v in estimates.items()},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--variants", default="4:10:3")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON list to append to")
    args = parser.parse_args()
    for variant in args.variants.split(","):
        size, contacts, community = variant.split(":")
        result = measure(int(size), float(contacts), float(community), args.days, args.seeds)
        record = {**machine(), "load": [round(x, 2) for x in os.getloadavg()], **result}
        print(json.dumps(record), flush=True)
        append(args.results, record)


if __name__ == "__main__":
    main()
