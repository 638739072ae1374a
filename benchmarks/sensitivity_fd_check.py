"""Benchmark: the finite-difference check a new user runs, with standard errors over the seeds (issue 21):

    python benchmarks/sensitivity_fd_check.py [--scenario nyc-covid] [--agents 100k] [--days 60]
                                              [--seeds 8] [--fd-step 0.05]

runs ``populace sensitivity SCENARIO --agents A --days D --seeds S --fd-check --fd-step F --json`` as a
separate process (its own peak memory), prints its check as the CLI's table in words, and appends the JSON
summary with the machine, the load average before and after and the process's CPU seconds to
``benchmarks/sensitivity_fd_check.json``. What the numbers show is in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _record import append, machine

from populace.cli.sensitivity import fd_table
from populace.scenario import find_scenario, parse_sets
from populace.sensitivity import RESOLVED, WITHIN, Sensitivity

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "sensitivity_fd_check.json"


def _nan(value: Any) -> Any:
    """JSON's ``null`` back to NaN."""
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    return math.nan if value is None else value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="nyc-covid")
    parser.add_argument("--agents", default="100k")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--fd-step", default="0.05", help="the CLI's --fd-step")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON list to append to")
    args = parser.parse_args()
    command = [sys.executable, "-m", "populace.cli", "sensitivity", args.scenario, "--agents", args.agents]
    command += [
        "--days",
        str(args.days),
        "--seeds",
        str(args.seeds),
        "--fd-check",
        "--fd-step",
        args.fd_step,
        "--json",
    ]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(done.stdout)
    checks = [c for per in summary["fd_check"].values() for c in per.values()]
    resolved = [c for c in checks if c["resolved"]]
    record = {
        **machine(),
        "command": " ".join(["populace", *command[3:]]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "fd_step": float(args.fd_step),
        "peak_rss_mb": summary.get("peak_rss_mb"),
        "checks": len(checks),
        "resolved": len(resolved),
        "resolved_within": sum(c["rel_err"] <= WITHIN for c in resolved),
        "resolved_threshold": RESOLVED,
        "within_threshold": WITHIN,
        "summary": summary,
    }
    append(args.results, record)
    scenario = find_scenario(args.scenario)
    model = scenario().build(1000, parse_sets(scenario, []), seed=0, device="cpu")
    specs = model.specs()
    plain = {n: label for labels in scenario.option_groups.values() for n, label in labels.items()}
    report = Sensitivity(
        outputs=summary["outputs"],
        gradients=summary["gradients"],
        forward_s=summary["forward_s"],
        backward_s=summary["backward_s"],
        mode=summary["mode"],
        seeds=tuple(summary["seeds"]),
        fd=_nan(summary["fd_check"]),
    )

    def words(name: str) -> str:
        option = specs[name].option if name in specs else None
        return plain.get(option or "", "") or model.label(name)

    print(fd_table(report, words))
    print(json.dumps({k: v for k, v in record.items() if k != "summary"}))


if __name__ == "__main__":
    main()
