"""Benchmark: ``bench-seir`` (DESIGN.md §5) at 100k, 1M and 8.4M agents × 100 days, and Starsim 3.7.2 on the
same model back to back, so the ratio of two figures taken together is what counts on a shared machine.

    python benchmarks/bench_seir.py                      # populace only
    python benchmarks/bench_seir.py --starsim ~/starsim-venv/bin/python   # and the peer at 1M
    python benchmarks/bench_seir.py --baseline ../before/.venv/bin/python   # and another checkout

``--baseline`` runs the same command with another checkout's Python after each run (a refactor's before and
after in one run, on the same machine at the same time; the record keeps both and their ratio).

Each run is a fresh process (``populace run ... --json``), so peak RSS is that run's own. Prints one JSON
object and appends it to ``benchmarks/bench_seir_results.json``.
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
RESULTS = HERE / "bench_seir_results.json"
PEER = HERE.parent.parent / "shared" / "peers" / "bench_starsim.py"
SIZES = ("100k", "1M", "8.4M")


def populace(agents: str, days: int, device: str, seed: int, python: str = sys.executable) -> dict:
    command = [
        python,
        "-m",
        "populace.cli",
        "run",
        "bench-seir",
        "--agents",
        agents,
        "--days",
        str(days),
        "--device",
        device,
        "--seed",
        str(seed),
        "--json",
    ]
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    attack = 1 - out["final"]["S"] / out["agents"]
    keep = ("agents", "days", "device", "threads", "init_s", "sim_s", "peak_rss_mb")
    return {**{k: out[k] for k in keep}, "attack_rate": round(attack, 4)}


def starsim(python: str, agents: int, days: int, script: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run(
        [python, str(script), str(agents), str(days)], check=True, capture_output=True, text=True, env=env
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    keep = ("version", "N", "days", "t_init", "t_run", "attack_rate", "total_degree", "maxrss_MB")
    return {k: out[k] for k in keep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=list(SIZES), help="agent counts (default: 100k 1M 8.4M)"
    )
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--starsim", metavar="PYTHON", help="python of a venv with starsim==3.7.2")
    parser.add_argument("--starsim-script", type=Path, default=PEER)
    parser.add_argument("--baseline", metavar="PYTHON", help="python of another checkout to compare with")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each size (with --baseline: pairs)")
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to the results file"
    )
    args = parser.parse_args()

    record: dict = {"benchmark": "bench-seir", **machine(), "runs": []}
    if args.baseline:
        record["baseline"] = args.baseline
    for size in args.sizes:
        for _ in range(args.repeat):
            run = populace(size, args.days, args.device, args.seed)
            record["runs"].append(run)
            print(json.dumps(run), file=sys.stderr)
            if args.baseline:
                base = {**populace(size, args.days, args.device, args.seed, args.baseline), "baseline": True}
                record.setdefault("baseline_runs", []).append(base)
                print(json.dumps(base), file=sys.stderr)
                run["sim_s_vs_baseline"] = round(run["sim_s"] / base["sim_s"], 3)
        if args.starsim and run["agents"] == 1_000_000:
            peer = starsim(args.starsim, 1_000_000, args.days, args.starsim_script)
            record["starsim_1m"] = peer
            record["speedup_vs_starsim_1m"] = round(peer["t_run"] / run["sim_s"], 1)
            print(json.dumps(peer), file=sys.stderr)
    print(json.dumps(record))
    if not args.no_record:
        append(RESULTS, record)


if __name__ == "__main__":
    main()
