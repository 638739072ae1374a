"""Benchmark: ``populace optimize nz-covid --lever allocation --objective deaths``: the share of first doses
by DHB × age band learned by gradient descent through the simulation, against every heuristic policy on
held-out seeds, and a heat map of the learned allocation.

    python benchmarks/bench_optimize_nz.py [--agents 100k] [--epochs 2] [--seeds 4] [--evaluate 8]
                                           [--lr 0.3] [--set NAME=VALUE ...]

Writes ``benchmarks/nz_covid/optimize_<agents>.json`` (the command's JSON: steps, learned shares, comparison)
and ``benchmarks/nz_covid/optimize_<agents>.png`` (the learned shares divided by the pro-rata shares, DHB ×
age band), and appends a summary with the load average to ``benchmarks/bench_optimize_nz_results.json``.
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
OUT = HERE / "nz_covid"
RESULTS = HERE / "bench_optimize_nz_results.json"


def heat_map(summary: dict, path: Path) -> None:
    """The learned shares over the willing people's shares (1: pro rata), DHB rows × age-band columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    decision = summary["decision"]
    shares = np.array(decision["values"])
    willing = np.array(decision["willing"], dtype=float)
    ratio = shares / np.maximum(willing / willing.sum(), 1e-12)
    fig, ax = plt.subplots(figsize=(7, 8))
    image = ax.imshow(np.log2(np.maximum(ratio, 1e-3)), cmap="RdBu_r", vmin=-2, vmax=2)
    ax.set_xticks(range(len(decision["columns"])), decision["columns"], rotation=45)
    ax.set_yticks(range(len(decision["rows"])), decision["rows"])
    ax.set_xlabel("age band")
    ax.set_title(f"nz-covid: first doses learned against {summary['objective']}\n(share / pro-rata share)")
    bar = fig.colorbar(image, ax=ax, shrink=0.6)
    bar.set_ticks([-2, -1, 0, 1, 2], labels=["1/4", "1/2", "1", "2", "4"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="100k")
    parser.add_argument("--epochs", default="2")
    parser.add_argument("--seeds", default="4")
    parser.add_argument("--evaluate", default="8")
    parser.add_argument("--lr", default="0.3")
    parser.add_argument("--objective", default="deaths")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "populace.cli", "optimize", "nz-covid", "--lever", "allocation"]
    command += ["--objective", args.objective, "--agents", args.agents, "--epochs", args.epochs]
    command += ["--seeds", args.seeds, "--evaluate", args.evaluate, "--lr", args.lr, "--json"]
    for item in args.set:
        command += ["--set", item]
    load = os.getloadavg()[0]
    summary = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    name = f"optimize_{args.agents}_{args.objective}"
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    heat_map(summary, OUT / f"{name}.png")
    record = {
        "machine": machine(),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "command": " ".join(command[2:]),
        "agents": summary["agents"],
        "total_s": summary["total_s"],
        "optimise_s": summary["seconds"],
        "steps": len(summary["steps"]),
        "comparison": {k: {"mean": v["mean"], "sd": v["sd"]} for k, v in summary["comparison"].items()},
    }
    append(RESULTS, record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
