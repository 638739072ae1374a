"""Benchmark: ``nz-covid`` (17 August - 31 December 2021, 137 days, default options: the real roll-out and the
alert levels as they were) at the given sizes, and optionally every roll-out policy at one size.

    python benchmarks/bench_nz_covid.py [--sizes 100k,4.9M] [--policies 100k] [--seeds 4] [--device cpu|cuda]
                                        [--set NAME=VALUE ...]

Target (issue 20): 4.9M agents under 30 s of ``sim_s`` on the 2-core machine. Each run is a fresh process
(``populace run ... --json``), so peak RSS is that run's own; the population is cached by the first run, so
``init_s`` of later runs is load plus set-up (the roll-out from 15 February 2021 to day 0 included). The load
average is recorded beside the timings: the machine is shared. Prints one JSON object and appends it to
``benchmarks/bench_nz_covid_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _record import append, machine

from populace.scenarios.nz_covid.policy import POLICIES

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_nz_covid_results.json"


def run(agents: str, device: str, sets: list[str], seed: int = 0) -> dict:
    command = [sys.executable, "-m", "populace.cli", "run", "nz-covid", "--agents", agents]
    command += ["--device", device, "--seed", str(seed), "--json"]
    for item in sets:
        command += ["--set", item]
    load = os.getloadavg()[0]
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    final, daily = out["final"], out["daily"]
    keep = ("agents", "days", "device", "threads", "init_s", "sim_s", "peak_rss_mb")
    return {
        **{k: out[k] for k in keep},
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "infections": sum(daily["new_infections"]),
        "symptomatic": sum(daily["new_symptomatic"]),
        "admissions": sum(daily["new_admissions"]),
        "deaths": final["D"],
        "vaccinated": final["vaccinated"],
        "fully_vaccinated": final["fully_vaccinated"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100k,4.9M")
    parser.add_argument("--policies", help="run every roll-out policy at this size")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per policy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE for every run")
    args = parser.parse_args()
    record: dict = {"machine": machine(), "sets": args.set, "runs": [], "policies": {}}
    for size in [s for s in args.sizes.split(",") if s]:
        record["runs"].append(run(size, args.device, args.set))
        print(json.dumps(record["runs"][-1]), flush=True)
    if args.policies:
        for policy in POLICIES:
            sets = [*args.set, f"policy={policy}"]
            runs = [run(args.policies, args.device, sets, seed) for seed in range(args.seeds)]
            summary = {}
            for key in ("infections", "admissions", "deaths"):
                values = [r[key] for r in runs]
                summary[key] = {
                    "mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                }
            record["policies"][policy] = summary
            print(policy, json.dumps(summary), flush=True)
    append(RESULTS, record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
