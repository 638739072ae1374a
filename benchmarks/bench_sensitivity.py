"""Benchmark: one-shot sensitivity of ``nyc-covid`` (120 days): total deaths and peak hospital occupancy
with respect to every learnable parameter, by reverse mode, against a run without gradients; with the
finite-difference check (common random numbers) of every scalar parameter.

    python benchmarks/bench_sensitivity.py [--agents 100k] [--seeds 2] [--checkpoint 0] [--estimator sellke]

Target (issue 5): forward + backward at most 3× one forward run; AD within 20% of FD, or within the
estimator's documented bias. Runs ``populace sensitivity ... --json --fd-check`` in a fresh process, prints
one JSON object and appends it to ``benchmarks/bench_sensitivity_results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _record import append, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_sensitivity_results.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="100k")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--estimator", default="sellke", help="the infection estimator (default: sellke)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--checkpoint", type=int, default=0, help="checkpoint every K days (0: full tape)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "populace.cli", "sensitivity", "nyc-covid", "--agents", args.agents]
    command += ["--days", str(args.days), "--seeds", str(args.seeds), "--fd-check", "--compare", "--json"]
    command += ["--set", f"estimator={args.estimator}"]
    if args.checkpoint:
        command += ["--checkpoint", str(args.checkpoint)]
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    forward, backward, fast = out["forward_s"], out["backward_s"], out["fast_forward_s"]
    record = {
        **machine(),
        "command": " ".join(command[1:]),
        **{k: out[k] for k in ("agents", "days", "seeds", "mode", "outputs", "peak_rss_mb")},
        "forward_s": forward,
        "backward_s": backward,
        "fast_forward_s": fast,
        "total_over_forward": round((forward + backward) / forward, 3),
        "total_over_fast_forward": round((forward + backward) / fast, 3),
        "fd_check": {
            name: {o: {k: round(v, 4) for k, v in c.items()} for o, c in per.items()}
            for name, per in out["fd_check"].items()
        },
    }
    print(json.dumps(record))
    append(RESULTS, record)


if __name__ == "__main__":
    main()
