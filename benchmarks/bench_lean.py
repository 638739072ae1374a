"""Benchmark: the lean reverse mode at city scale (issue 22): ``populace sensitivity nyc-covid --agents N
--days 120`` (total deaths and peak hospital occupancy with respect to every parameter) as a user runs it,
timed from outside: wall time of the whole command (population build included), the peak resident memory
of its process, and the split it reports (forward, backward). The command runs as a user runs it: without
``--compare`` (a run without gradients for comparison, which records before 2026-12-07 15:40 included).

    python benchmarks/bench_lean.py [--agents 1M 8.4M] [--days 120] [--threads 2]

Targets (issue 22, this 2-core machine): 1M ≤ 20 s wall and ≤ 1.5 GB; 8.4M ≤ 3 min and ≤ 12 GB. Before the
lean path (the whole tape, commit c2dc462, load ~1): 1M took 34.45 s and 12.1 GB. The machine's load
average before and after each run is recorded with it, as other work on the machine inflates the wall time.
Appends one record per size to ``benchmarks/bench_lean_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _record import append, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_lean_results.json"


def run(agents: str, days: int, threads: int) -> dict[str, object]:
    command = [sys.executable, "-m", "populace.cli", "sensitivity", "nyc-covid", "--agents", agents]
    command += ["--days", str(days), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    out = json.loads(done.stdout)
    return {
        **machine(),
        "threads": threads,
        "command": f"OMP_NUM_THREADS={threads} populace " + " ".join(command[3:]),
        "agents": out["agents"],
        "days": out["days"],
        "wall_s": round(wall, 2),
        # the child's own peak (each run is a fresh process, the largest so far is this one's)
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "forward_s": out["forward_s"],
        "backward_s": out["backward_s"],
        "outputs": out["outputs"],
        "allocator": out.get("allocator", "system"),
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", nargs="+", default=["1M"], help="sizes, smallest first")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the command (default 2)")
    args = parser.parse_args()
    for agents in args.agents:
        record = run(agents, args.days, args.threads)
        print(json.dumps(record))
        append(RESULTS, record)


if __name__ == "__main__":
    main()
