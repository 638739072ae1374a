"""Benchmark: how far each infection-gradient estimator is from finite differences over a whole epidemic
wave: ``nyc-covid`` at 100k agents, 120 days, default options, reverse-mode AD against central CRN finite
differences (±5%), averaged over seeds, for total deaths, peak hospital occupancy and total infections.

    python benchmarks/estimator_bias_wave.py [--agents 100k] [--seeds 4]
                                             [--variants sellke,gumbel:0.1]

A variant is ``estimator[:tau]`` (``Covid.estimator`` and ``Covid.tau``). Prints one JSON object per variant
with AD/FD per parameter and outcome, and appends it to ``benchmarks/estimator_bias_wave.json``. The table
and what the numbers show are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _record import append, machine

from populace.cli import parse_count
from populace.estimators import estimator as named_estimator
from populace.layers.covid import Covid
from populace.scenario import find_scenario, parse_sets
from populace.sensitivity import sensitivity

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "estimator_bias_wave.json"
OUTCOMES = ("total:new_deaths", "peak:hospitalised", "total:new_infections")
CHECKED = ("beta", "asymptomatic_factor", "severe_scale", "settings.school.weight")


def measure(agents: int, seeds: int, estimator: str, tau: float) -> dict:
    scenario = find_scenario("nyc-covid")
    model = scenario().build(agents, parse_sets(scenario, []), seed=0, device="cpu")
    covid = next(layer for layer in model.ordered_layers() if isinstance(layer, Covid))
    covid.estimator = named_estimator(estimator, **({"tau": tau} if estimator == "gumbel" else {}))
    checked = [name for name, _ in model.named_parameters() if name.endswith(CHECKED)]
    t0 = time.perf_counter()
    report = sensitivity(model, 120, OUTCOMES, seeds=range(seeds), fd_check=checked)
    assert report.fd is not None
    return {
        "agents": agents,
        "days": 120,
        "seeds": seeds,
        "estimator": estimator,
        "tau": tau if estimator == "gumbel" else None,
        "wall_s": round(time.perf_counter() - t0, 1),
        "ad_over_fd": {
            name: {o: round(c["ad"] / c["fd"], 3) if c["fd"] else None for o, c in per.items()}
            for name, per in report.fd.items()
        },
        "fd_check": {
            name: {o: {k: round(v, 4) for k, v in c.items()} for o, c in per.items()}
            for name, per in report.fd.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="100k")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--variants", default="sellke,gumbel:0.1")
    args = parser.parse_args()
    for variant in args.variants.split(","):
        estimator, _, tau = variant.partition(":")
        agents = parse_count(args.agents, "--agents")
        record = {**machine(), **measure(agents, args.seeds, estimator, float(tau or 0.1))}
        print(json.dumps(record), flush=True)
        append(RESULTS, record)


if __name__ == "__main__":
    main()
