"""Benchmark: what the explorer's Sensitivity tab costs with its band (issue 21): the sensitivity job
(:func:`populace.explorer.jobs.levers`) with one seed and with ``--seeds`` (the tab's default 4), and the
"what if" re-simulation over the same seeds, at the tab's default size.

    python benchmarks/bench_explorer_sensitivity.py [--scenario nyc-covid] [--agents 50k] [--days 120]
                                                    [--seeds 4] [--outcome total:new_deaths]

Prints one JSON object (wall and CPU seconds of each job, the load, the three largest bars with their
bands) and appends it to ``benchmarks/bench_explorer_sensitivity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _record import append, machine

from populace.cli import parse_count
from populace.explorer import jobs
from populace.scenario import find_scenario

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_explorer_sensitivity.json"


def _timed(work: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, round(time.perf_counter() - wall, 2), round(time.process_time() - cpu, 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="nyc-covid")
    parser.add_argument("--agents", default="50k")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--outcome", default="total:new_deaths")
    args = parser.parse_args()
    scenario = find_scenario(args.scenario)
    options = scenario.defaults()
    agents = parse_count(args.agents, "--agents")
    common = dict(agents=agents, days=args.days, seed=0, outcome=args.outcome)
    jobs.levers(scenario, options, **{**common, "days": 5})  # type: ignore[arg-type]  # build and cache
    record: dict[str, Any] = {**machine(), "scenario": args.scenario, "agents": agents, "days": args.days}
    record["load_before"] = [round(x, 2) for x in os.getloadavg()]
    for seeds in (1, args.seeds):
        levers, wall, cpu = _timed(lambda s=seeds: jobs.levers(scenario, options, **common, seeds=s))  # type: ignore[arg-type]
        record[f"levers_{seeds}_seeds"] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "value": levers.value,
            "top": [
                {
                    "lever": lever.label,
                    "effect": round(lever.effect, 3),
                    "band": [round(b, 3) for b in lever.band],
                }
                for lever in levers.levers[:3]
            ],
        }
    beta = float(options["beta"].value)
    values, wall, cpu = _timed(
        lambda: jobs.what_if(scenario, options, **common, option="beta", value=beta * 1.1, seeds=args.seeds)  # type: ignore[arg-type]
    )
    record[f"what_if_{args.seeds}_seeds"] = {"wall_s": wall, "cpu_s": cpu, "values": list(values)}
    record["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(record))
    append(RESULTS, record)


if __name__ == "__main__":
    main()
