"""Benchmark: build the full synthetic populations, then reload them from the cache, each in a fresh
``populace population build NAME --json`` process (so peak RSS is that step's own).

    python benchmarks/bench_population.py [--names nyc nz classroom]

Targets (issue "synthetic populations"): full NYC builds in < 90 s with peak RSS < 4 GB and reloads in
< 10 s on the 2-core machine. Uses a throw-away cache directory. Prints one JSON object and appends it to
``benchmarks/bench_population_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _record import append, machine

RESULTS = Path(__file__).resolve().parent / "bench_population_results.json"


def step(name: str, cache: str, rebuild: bool) -> dict:
    command = [sys.executable, "-m", "populace.cli", "population", "build", name, "--json"]
    if rebuild:
        command.append("--rebuild")
    env = {**os.environ, "POPULACE_CACHE": cache}
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout)
    return {k: out[k] for k in ("agents", "source", "seconds", "peak_rss_mb", "bytes_per_agent")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=["nyc", "nz", "classroom"])
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    record: dict = {"benchmark": "population", **machine(), "runs": {}}
    with tempfile.TemporaryDirectory() as cache:
        for name in args.names:
            build = step(name, cache, rebuild=True)
            reload = step(name, cache, rebuild=False)
            record["runs"][name] = {"build": build, "reload": reload}
            print(json.dumps({name: record["runs"][name]}), file=sys.stderr)
    print(json.dumps(record))
    if not args.no_record:
        append(RESULTS, record)


if __name__ == "__main__":
    main()
