"""Benchmark: where the Sellke estimator's whole-wave low bias on ``nyc-covid`` comes from. A population of
40,000 in households of ``size`` (``contacts`` a member a day, so pair rate ``min(1, contacts / (size − 1))``)
plus a well-mixed community (``community`` contacts a day), COVID-19 with the default β, 40 seeded infections:
d(infections over ``days``)/dβ by reverse-mode AD against central CRN finite differences (±5%), pooled over
seeds (Σ AD / Σ FD).

    python benchmarks/estimator_bias_households.py [--seeds 4] [--days 40]
                                                   [--variants 1:1:8,2:1:3,4:10:3,20:3:3]

A variant is ``size:contacts:community``. Prints one JSON object per variant and appends it to
``benchmarks/estimator_bias_households.json``; what the numbers show is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _record import append, machine

from populace import Model, Places, RandomStreams, Simulation
from populace.layers.covid import Breakdown, Covid

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "estimator_bias_households.json"
AGENTS = 40_000
STEP = 0.05


def build(size: int, contacts: float, community: float) -> tuple[Model, Covid]:
    age = (RandomStreams(1, "cpu").uniform("ages", AGENTS) * 95).to(torch.uint8)
    households = Places("household", (torch.arange(AGENTS) // size).to(torch.int32), contacts=contacts)
    everyone = Places("community", torch.zeros(AGENTS, dtype=torch.int32), contacts=community)
    bands = (age.long() // 30).clamp(max=2)
    covid = Covid(
        age,
        [households, everyone],
        initial_infections=40,
        breakdowns=[Breakdown("age", bands, ("0-29", "30-59", "60+"))],
    )
    return Model([covid]), covid


def measure(size: int, contacts: float, community: float, days: int, seeds: int) -> dict:
    model, covid = build(size, contacts, community)
    beta = float(covid.beta.detach())
    ad, fd = [], []
    t0 = time.perf_counter()
    for seed in range(seeds):
        covid.beta.grad = None
        Simulation(model, seed=seed, grad="full").run(days).series["new_infections"].sum().backward()
        assert covid.beta.grad is not None
        ad.append(float(covid.beta.grad))
        totals = []
        for sign in (1, -1):
            with torch.no_grad():
                covid.beta.fill_(beta * (1 + sign * STEP))
            totals.append(float(Simulation(model, seed=seed).run(days).series["new_infections"].sum()))
        with torch.no_grad():
            covid.beta.fill_(beta)
        fd.append((totals[0] - totals[1]) / (2 * STEP * beta))
    return {
        "agents": AGENTS,
        "household_size": size,
        "household_contacts": contacts,
        "pair_rate": float(covid.settings["household"].pair_rate[0]),  # the households' (all of one size)
        "community_contacts": community,
        "days": days,
        "seeds": seeds,
        "wall_s": round(time.perf_counter() - t0, 1),
        "ad_over_fd": round(sum(ad) / sum(fd), 3),
        "ad_over_fd_by_seed": [round(a / f, 3) for a, f in zip(ad, fd, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--variants", default="1:1:8,2:1:3,4:10:3,20:3:3")
    args = parser.parse_args()
    for variant in args.variants.split(","):
        size, contacts, community = variant.split(":")
        result = measure(int(size), float(contacts), float(community), args.days, args.seeds)
        record = {**machine(), **result}
        print(json.dumps(record), flush=True)
        append(RESULTS, record)


if __name__ == "__main__":
    main()
