"""Benchmark: calibrate ``nyc-covid`` to NYC's first wave (March–June 2020: daily cases, admissions and
deaths by borough, 7-day averages) at 1M agents, scaled to the city; or another scenario (``--scenario
nz-covid``: New Zealand's Delta outbreak, August–December 2021).

    python benchmarks/bench_calibrate.py [--agents 1M] [--epochs 70] [--days 120]
    python benchmarks/bench_calibrate.py --scenario nz-covid --agents 500k --epochs 60 --days 137 \
        --lr 0.1 --seeds 1 --evaluate 8

Target (issue 5): under 20 minutes on the 2-core machine; ND = Σ|ŷ − y| / Σ|y| ≤ 0.25 on daily deaths and
admissions by borough, for the fitted model (the mean of ``populace calibrate``'s evaluation runs); the
record also keeps the range of single runs' ND. Runs ``populace calibrate ... --json`` in a fresh process;
copies the fitted parameters, report and plot to ``benchmarks/calibration/`` and appends a record (machine,
wall time, loss, ND per stream and borough) to ``benchmarks/bench_calibrate_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _record import append, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_calibrate_results.json"
KEEP = HERE / "calibration"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="nyc-covid")
    parser.add_argument("--agents", default="1M")
    parser.add_argument("--epochs", type=int, default=70)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--lr", type=float, help="Adam learning rate (default: populace calibrate's)")
    parser.add_argument("--seeds", type=int, help="runs averaged per step (default: populace calibrate's)")
    parser.add_argument(
        "--evaluate", type=int, help="held-out runs whose mean is judged (default: populace calibrate's)"
    )
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE, as populace calibrate")
    parser.add_argument(
        "--existing",
        type=Path,
        help="record a finished `populace calibrate --out DIR` instead of running one",
    )
    parser.add_argument("--command", default="", help="with --existing: the command that produced it")
    args = parser.parse_args()
    command = ["populace", "calibrate", args.scenario, "--agents", args.agents, "--epochs", str(args.epochs)]
    command += ["--days", str(args.days), "--out", "OUT", "--json"]
    command += ["--lr", str(args.lr)] if args.lr is not None else []
    command += ["--seeds", str(args.seeds)] if args.seeds is not None else []
    command += ["--evaluate", str(args.evaluate)] if args.evaluate is not None else []
    command += [x for item in args.set for x in ("--set", item)]
    if args.existing is not None:
        record(json.loads((args.existing / "report.json").read_text()), args.existing, args.command)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = [sys.executable, "-m", "populace.cli", *command[1:]]
        run[run.index("OUT")] = tmp
        load_before, cpu_before = os.getloadavg()[0], _children_cpu()
        done = subprocess.run(run, check=True, stdout=subprocess.PIPE, text=True)
        load = {
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            # the whole command's CPU time (start-up and population included): at the machine's normal speed
            # a one-thread run takes about this long, whatever the load while it ran
            "command_cpu_s": round(_children_cpu() - cpu_before, 2),
        }
        record(json.loads(done.stdout), Path(tmp), " ".join(command), load)


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def record(summary: dict, out: Path, command: str, load: dict | None = None) -> None:
    KEEP.mkdir(exist_ok=True)
    for name in ("parameters.json", "report.json", "fit.png"):
        shutil.copy(out / name, KEEP / f"{summary['scenario']}_{summary['agents']}_{name}")
    result = {
        **machine(),
        **(load or {}),
        "command": command,
        **{k: summary[k] for k in ("agents", "start", "days", "streams", "epochs", "wall_s", "peak_rss_mb")},
        **({"cpu_s": summary["cpu_s"]} if "cpu_s" in summary else {}),
        "loss_initial": summary["loss_initial"],
        "loss_final": summary["loss_final"],
        "nd": {k: round(v["nd"], 4) for k, v in summary["metrics"].items()},
        "nd_by_borough": {
            k: {b: round(x, 4) for b, x in v["nd_by"].items()} for k, v in summary["metrics"].items()
        },
    }
    if all("runs" in v for v in summary["metrics"].values()):  # records before the mean of runs lack them
        result["evaluate"] = len(next(iter(summary["metrics"].values()))["runs"]["nd"])
        result["nd_by_borough_single_run_range"] = {
            k: {b: [round(min(x), 4), round(max(x), 4)] for b, x in v["runs"]["nd_by"].items()}
            for k, v in summary["metrics"].items()
        }
    print(json.dumps(result))
    append(RESULTS, result)


if __name__ == "__main__":
    main()
