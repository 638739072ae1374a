"""Benchmark: ``populace optimize nz-covid --lever allocation --objective deaths``: the share of first doses
by DHB × age band learned by gradient descent through the simulation, against every heuristic policy on
held-out seeds, and a heat map of the learned allocation. One command re-runs it (e.g. after the scenario's
calibration changes):

    python benchmarks/bench_optimize_nz.py

Defaults (the recorded run): 1M agents, half the real supply (``--set supply_scale=0.5``: with the real
supply the outbreak barely leaves its seeds under the best policies, see benchmarks/README.md), starting from
``Auckland first``'s allocation by day 0, 8 training seeds × 2 epochs, Adam lr 0.2, 16 held-out seeds, run
and population seed 7. Every option of the command can be changed:

    python benchmarks/bench_optimize_nz.py [--agents 1M] [--epochs 2] [--seeds 8] [--evaluate 16] [--lr 0.2]
        [--seed 7] [--start-from "Auckland first"] [--objective deaths] [--params FILE] [--name NAME]
        [--set NAME=VALUE ...]   (replaces the default --set supply_scale=0.5; --set none for none)

The optimiser follows the expected deaths of the day's symptom onsets (``expected_deaths``, smooth); the
held-out comparison counts deaths in fast runs with seeds ``seed + 1000 …`` that training never saw, every
policy on the same seeds. Writes ``benchmarks/nz_covid/<name>.json`` (the command's JSON: steps, learned
shares, comparison with paired differences) and ``benchmarks/nz_covid/<name>.png`` (heat map, DHB × age
band), and appends a summary with the load average and CPU time to
``benchmarks/bench_optimize_nz_results.json``. The heat map alone, from a written JSON:

    python benchmarks/bench_optimize_nz.py --plot benchmarks/nz_covid/<name>.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from _record import append, machine

HERE = Path(__file__).resolve().parent
OUT = HERE / "nz_covid"
RESULTS = HERE / "bench_optimize_nz_results.json"
DEFAULT_SETS = ["supply_scale=0.5"]


def heat_map(summary: dict, path: Path) -> None:
    """Two DHB × age-band panels of the learned allocation: its first-dose shares over the pro-rata shares
    (log scale), and the share of each cell's willing people with a first dose by day 0 (17 August 2021)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    decision = summary["decision"]
    shares = np.array(decision["values"])
    willing = np.array(decision["willing"], dtype=float)
    ratio = shares / np.maximum(willing / willing.sum(), 1e-12)
    panels = [
        (np.log2(np.maximum(ratio, 1e-3)), "RdBu_r", (-6, 6), "share of first doses / pro-rata share"),
    ]
    if "first_dose_by_day_0" in decision:
        panels.append(
            (
                np.array(decision["first_dose_by_day_0"]),
                "viridis",
                (0, 1),
                "willing with a dose by 17 Aug 2021",
            )
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 7.5), squeeze=False)
    for ax, (data, cmap, (lo, hi), title) in zip(axes[0], panels, strict=True):
        image = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(decision["columns"])), decision["columns"], rotation=45)
        ax.set_yticks(range(len(decision["rows"])), decision["rows"])
        ax.set_xlabel("age band")
        ax.set_title(title, fontsize=10)
        bar = fig.colorbar(image, ax=ax, shrink=0.6)
        if cmap == "RdBu_r":
            ticks = [-6, -4, -2, 0, 2, 4, 6]
            bar.set_ticks(ticks, labels=[f"{2**t}" if t >= 0 else f"1/{2**-t}" for t in ticks])
    options = ", ".join(summary.get("options", []))
    if summary.get("start_from"):
        options += f"; from {summary['start_from']}"
    fig.suptitle(
        f"nz-covid: first doses learned against {summary['objective']} "
        f"({summary['agents']:,} agents; {options})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="1M")
    parser.add_argument("--epochs", default="2")
    parser.add_argument("--seeds", default="8")
    parser.add_argument("--evaluate", default="16")
    parser.add_argument("--lr", default="0.2")
    parser.add_argument("--seed", default="7")
    parser.add_argument("--start-from", default="Auckland first", help="a policy, or 'none' (pro rata)")
    parser.add_argument("--objective", default="deaths")
    parser.add_argument("--params", help="a parameters.json from `populace calibrate`")
    parser.add_argument("--name", help="file name (default optimize_<agents>_<objective>)")
    parser.add_argument("--set", action="append", help="scenario options (default: supply_scale=0.5)")
    parser.add_argument("--plot", help="only draw the heat map of this written JSON (next to it, .png)")
    args = parser.parse_args()
    if args.plot:
        path = Path(args.plot)
        heat_map(json.loads(path.read_text()), path.with_suffix(".png"))
        return
    sets = DEFAULT_SETS if args.set is None else [s for s in args.set if s != "none"]
    OUT.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "populace.cli", "optimize", "nz-covid", "--lever", "allocation"]
    command += ["--objective", args.objective, "--agents", args.agents, "--epochs", args.epochs]
    command += ["--seeds", args.seeds, "--evaluate", args.evaluate, "--lr", args.lr, "--seed", args.seed]
    command += ["--json"]
    if args.start_from != "none":
        command += ["--start-from", args.start_from]
    if args.params:
        command += ["--params", args.params]
    for item in sets:
        command += ["--set", item]
    load = os.getloadavg()[0]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    summary = json.loads(done.stdout)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    name = args.name or f"optimize_{args.agents}_{args.objective}"
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    heat_map(summary, OUT / f"{name}.png")
    comparison = {}
    for label, result in summary["comparison"].items():
        entry = {"mean": result["mean"], "sd": result["sd"], "values": result["values"]}
        pair = result.get("optimised minus this")
        if pair is not None:
            entry["optimised_minus_this"] = {k: pair[k] for k in ("mean", "sd", "se", "resolved")}
        comparison[label] = entry
    record = {
        "machine": machine(),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "command": " ".join(command[2:]),
        "agents": summary["agents"],
        "total_s": summary["total_s"],
        "cpu_s": round(cpu.ru_utime + cpu.ru_stime, 1),
        "optimise_s": summary["seconds"],
        "peak_rss_mb": summary["peak_rss_mb"],
        "steps": len(summary["steps"]),
        "objective_per_step": [round(s["objective"], 3) for s in summary["steps"]],
        "comparison": comparison,
        "verdict": summary.get("verdict"),
        "files": [f"nz_covid/{name}.json", f"nz_covid/{name}.png"],
    }
    append(RESULTS, record)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
