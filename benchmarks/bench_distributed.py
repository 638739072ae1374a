"""Benchmark: runs split over processes (``populace run ... --ranks N``) — time, peak RSS of each process and
bytes each process puts into collectives per day, for ``bench-seir`` and ``nyc-covid`` at 8.4M agents with 1
and 2 processes, and ``bench-seir`` at 100 million agents × 100 days.

    python benchmarks/bench_distributed.py                         # the 8.4M cases
    python benchmarks/bench_distributed.py --cases bench-seir:100M:1 --days 100

A case is ``SCENARIO:AGENTS:RANKS``. Each run is a fresh ``populace run --json`` (processes spawned by it),
so peak RSS is that run's. The machine's load average is recorded with each figure: on a shared machine a
figure taken while other work ran is slower than the machine. Prints one JSON object and appends it to
``benchmarks/bench_distributed_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _record import append, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_distributed_results.json"
CASES = "bench-seir:8.4M:1,bench-seir:8.4M:2,nyc-covid:8.4M:1,nyc-covid:8.4M:2"


def run(
    scenario: str, agents: str, ranks: int, days: int, python: str, extra: list[str]
) -> dict[str, object]:
    cmd = [python, "-m", "populace", "run", scenario, "--agents", agents, "--days", str(days)]
    cmd += ["--ranks", str(ranks), "--json", "--timeout", "1800", *extra]
    load = os.getloadavg()[0]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"case": f"{scenario}:{agents}:{ranks}", "error": done.stderr.strip().splitlines()[-1:]}
    out = json.loads(done.stdout)
    agents_n = int(out["agents"])
    rss = out["peak_rss_mb_by_rank"]
    return {
        "case": f"{scenario}:{agents}:{ranks}",
        "agents": agents_n,
        "days": days,
        "ranks": ranks,
        "threads_per_rank": max(1, (os.cpu_count() or 1) // ranks),
        "init_s": out["init_s"],
        "sim_s": out["sim_s"],
        "peak_rss_mb_by_rank": rss,
        "bytes_per_agent_by_rank": [round(r * 2**20 / (agents_n / ranks)) for r in rss],
        "payload_bytes_per_day_per_rank": out["payload_bytes_per_day"],
        "load_average_before": round(load, 2),
        "final_new_infections_total": sum(out["daily"]["new_infections"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=CASES)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    extra = [x for s in args.set for x in ("--set", s)]
    results = []
    for case in args.cases.split(","):
        scenario, agents, ranks = case.split(":")
        result = run(scenario, agents, int(ranks), args.days, args.python, extra)
        print(json.dumps(result), file=sys.stderr)
        results.append(result)
    record = {"machine": machine(), "command": " ".join(sys.argv), "results": results}
    print(json.dumps(record))
    append(RESULTS, record)


if __name__ == "__main__":
    main()
