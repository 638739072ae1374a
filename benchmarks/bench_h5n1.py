"""Benchmark and data comparison of ``h5n1-fowl-to-fork`` (all US commercial farms, 2022-01-01 .. 2025-12-31).

1. ``populace run h5n1-fowl-to-fork --json`` in a fresh process, with 1 thread and with the machine's
   default threads (wall time of the process, set-up and simulation time, peak RSS, the load average
   before the run: the machine is shared, and small tensors on 2 contended threads wait on each other).
2. ``populace sensitivity h5n1-fowl-to-fork --json`` in a fresh process (1 thread): gradients of the mean
   egg price and the birds culled with respect to every learnable parameter, and their timings.
3. Modelled vs observed detections by state and month: the fast model run for ``--seeds`` seeds
   (in-process), monthly detections by state against APHIS's confirmed commercial layer, broiler and
   turkey flock detections (by confirmation date), before any calibration. Writes
   ``benchmarks/h5n1/detections_by_state_month.{json,png}`` and ``benchmarks/h5n1/egg_market.png``.
4. Gradient check at full scale (``--fd-seeds K``, 0 skips it): AD (averaged over seeds 0..K-1) against
   central finite differences with common random numbers (the same seeds at θ·(1 ± 10%), fast mode), for
   the migration, spillover, transmission and elasticity parameters, with each estimator.

Prints one JSON object and appends it to ``benchmarks/bench_h5n1_results.json``::

    python benchmarks/bench_h5n1.py                  # ~2 min on the 2-core VM
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from _record import append, machine

from populace import Simulation, parse_sets
from populace.files import atomic_path
from populace.scenarios.h5n1 import H5N1FowlToFork
from populace.scenarios.h5n1.data import START, observed_detections
from populace.scenarios.h5n1.geo import STATES
from populace.sensitivity import sensitivity

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_h5n1_results.json"
FIGURES = HERE / "h5n1"
SCENARIO = H5N1FowlToFork.name


def _cli(args: list[str], threads: int | None) -> tuple[dict, float]:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "populace.cli", *args, "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(proc.stdout), time.perf_counter() - t0


def _prefix(threads: int | None) -> str:
    return f"OMP_NUM_THREADS={threads} " if threads else ""


def run_timing(threads: int | None) -> dict:
    load = os.getloadavg()[0]
    out, wall = _cli(["run", SCENARIO], threads)
    daily = out["daily"]
    return {
        "command": f"{_prefix(threads)}populace run {SCENARIO} --json",
        "agents": out["agents"],
        "days": out["days"],
        "threads": out["threads"],
        "load_avg_1min_before": round(load, 2),
        "wall_s": round(wall, 2),
        "init_s": out["init_s"],
        "sim_s": out["sim_s"],
        "peak_rss_mb": out["peak_rss_mb"],
        "detections": sum(daily["detections"]),
        "birds_culled_m": round(sum(daily["birds_culled"]) / 1e6, 2),
        "egg_price_mean": round(sum(daily["egg_price"]) / len(daily["egg_price"]), 3),
        "egg_price_max": round(max(daily["egg_price"]), 3),
    }


def sensitivity_timing(threads: int | None) -> dict:
    load = os.getloadavg()[0]
    out, wall = _cli(["sensitivity", SCENARIO, "--compare"], threads)
    return {
        "command": f"{_prefix(threads)}populace sensitivity {SCENARIO} --compare --json",
        "threads": out["threads"],
        "load_avg_1min_before": round(load, 2),
        "wall_s": round(wall, 2),
        "fast_forward_s": out["fast_forward_s"],
        "forward_s": out["forward_s"],
        "backward_s": out["backward_s"],
        "peak_rss_mb": out["peak_rss_mb"],
        "outputs": out["outputs"],
        "gradients": out["gradients"],
        "all_finite": all(math.isfinite(v) for g in out["gradients"].values() for v in g.values()),
    }


def months(days: int) -> list[str]:
    out = []
    for d in range(days):
        key = (START + dt.timedelta(days=d)).strftime("%Y-%m")
        if not out or out[-1] != key:
            out.append(key)
    return out


def comparison(seeds: int) -> dict:
    days = H5N1FowlToFork.default_days
    labels = months(days)
    index = {m: i for i, m in enumerate(labels)}
    month_of_day = torch.tensor(
        [index[(START + dt.timedelta(days=d)).strftime("%Y-%m")] for d in range(days)]
    )
    codes = [s[0] for s in STATES]
    modelled = torch.zeros(seeds, len(labels), len(codes), dtype=torch.float64)
    prices, culled = [], []
    for seed in range(seeds):
        model = H5N1FowlToFork().build(
            H5N1FowlToFork.default_agents, parse_sets(H5N1FowlToFork, []), seed=seed, device="cpu"
        )
        result = Simulation(model, seed=seed).run(days)
        by_state = result.series["detections_by_state"].double()
        modelled[seed].index_add_(0, month_of_day, by_state)
        prices.append(result.series["egg_price"].double())
        culled.append(result.series["birds_culled_by_kind"].double())
    observed = torch.zeros(len(labels), len(codes), dtype=torch.float64)
    for day, state, _kind in observed_detections():
        if 0 <= day < days:
            observed[month_of_day[day], codes.index(state)] += 1
    mean = modelled.mean(0)
    national_model, national_obs = mean.sum(1), observed.sum(1)
    top = [codes[i] for i in observed.sum(0).argsort(descending=True)[:8].tolist()]

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a - a.mean(), b - b.mean()
        denom = float(a.norm() * b.norm())
        return round(float((a * b).sum()) / denom, 3) if denom else float("nan")

    state_totals_model = mean.sum(0)
    state_totals_obs = observed.sum(0)
    report = {
        "seeds": seeds,
        "months": labels,
        "observed_source": "APHIS confirmed commercial layer, broiler and turkey flocks (start_date)",
        "national": {
            "observed": national_obs.tolist(),
            "modelled_mean": [round(x, 3) for x in national_model.tolist()],
            "modelled_min": modelled.sum(2).min(0).values.tolist(),
            "modelled_max": modelled.sum(2).max(0).values.tolist(),
            "total_observed": int(national_obs.sum()),
            "total_modelled_mean": round(float(national_model.sum()), 1),
            "monthly_correlation": corr(national_model, national_obs),
        },
        "state_totals_correlation": corr(state_totals_model, state_totals_obs),
        "monthly_state_correlation": corr(mean.flatten(), observed.flatten()),
        "by_state": {
            code: {
                "observed": observed[:, i].tolist(),
                "modelled_mean": [round(x, 3) for x in mean[:, i].tolist()],
                "total_observed": int(observed[:, i].sum()),
                "total_modelled_mean": round(float(mean[:, i].sum()), 2),
                "monthly_correlation": corr(mean[:, i], observed[:, i]),
            }
            for i, code in enumerate(codes)
            if float(observed[:, i].sum()) > 0 or float(mean[:, i].sum()) > 0
        },
        "top_observed_states": top,
        "egg_price_mean_by_month": [
            round(x, 3)
            for x in (
                torch.zeros(len(labels), dtype=torch.float64).index_add_(
                    0, month_of_day, torch.stack(prices).mean(0)
                )
                / torch.bincount(month_of_day, minlength=len(labels))
            ).tolist()
        ],
        "birds_culled_m_by_kind": {
            kind: round(float(torch.stack(culled).mean(0)[:, k].sum()) / 1e6, 2)
            for k, kind in enumerate(("layers", "broilers", "turkeys"))
        },
    }
    FIGURES.mkdir(exist_ok=True)
    with atomic_path(FIGURES / "detections_by_state_month.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    try:
        plot(report, modelled, observed, labels, codes, torch.stack(prices))
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install 'populace[plot]')", file=sys.stderr)
    return {
        k: report[k]
        for k in (
            "seeds",
            "state_totals_correlation",
            "monthly_state_correlation",
            "top_observed_states",
            "birds_culled_m_by_kind",
        )
    } | {"national": {k: v for k, v in report["national"].items() if k.startswith(("total", "monthly"))}}


def plot(
    report: dict,
    modelled: torch.Tensor,
    observed: torch.Tensor,
    labels: list[str],
    codes: list[str],
    prices: torch.Tensor,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("United States", None), *[(code, codes.index(code)) for code in report["top_observed_states"]]]
    fig, axes = plt.subplots(3, 3, figsize=(15, 10), sharex=True)
    x = list(range(len(labels)))
    for ax, (name, i) in zip(axes.flat, panels, strict=True):
        obs = observed.sum(1) if i is None else observed[:, i]
        mod = modelled.sum(2) if i is None else modelled[:, :, i]
        ax.bar(x, obs.tolist(), color="0.7", label="observed (APHIS)")
        ax.plot(x, mod.mean(0).tolist(), color="C3", label=f"model, mean of {mod.shape[0]} seeds")
        ax.fill_between(
            x,
            mod.min(0).values.tolist(),
            mod.max(0).values.tolist(),
            color="C3",
            alpha=0.2,
            label="model, seed range",
        )
        stats = report["national"] if i is None else report["by_state"][name]
        ax.set_title(
            f"{name}: observed {stats['total_observed']}, modelled {stats['total_modelled_mean']:.0f}, "
            f"r = {stats['monthly_correlation']}",
            fontsize=10,
        )
        ax.set_xticks(x[::6], [labels[k] for k in x[::6]], rotation=45, fontsize=8)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("h5n1-fowl-to-fork: commercial flock detections per month, model (uncalibrated) vs APHIS")
    fig.tight_layout()
    fig.savefig(FIGURES / "detections_by_state_month.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    days = [START + dt.timedelta(days=d) for d in range(prices.shape[1])]
    ax.plot(days, prices.mean(0).tolist(), color="C0")
    ax.set_ylabel("$ / dozen")
    ax.set_title("h5n1-fowl-to-fork: modelled egg price (constant-elasticity response to lost layer output)")
    fig.tight_layout()
    fig.savefig(FIGURES / "egg_market.png", dpi=110)
    plt.close(fig)


FD_PARAMETERS = (
    "wild_pressure.field.migration_rate",
    "wild_pressure.field.migration_seasonality",
    "wild_pressure.field.spillover",
    "farms.beta_env",
    "farms.beta_farm",
    "price_response.elasticity",
)
FD_OUTPUTS = ("mean:egg_price", "total:birds_culled", "total:detections")


def gradient_check(seeds: int, estimator: str) -> dict:
    model = H5N1FowlToFork().build(
        H5N1FowlToFork.default_agents,
        parse_sets(H5N1FowlToFork, [f"estimator={estimator}"]),
        seed=0,
        device="cpu",
    )
    t0 = time.perf_counter()
    report = sensitivity(
        model,
        H5N1FowlToFork.default_days,
        FD_OUTPUTS,
        seeds=range(seeds),
        parameters=FD_PARAMETERS,
        fd_check=FD_PARAMETERS,
        fd_step=0.1,
    )
    return {
        "estimator": estimator,
        "seeds": seeds,
        "fd_step": 0.1,
        "wall_s": round(time.perf_counter() - t0, 1),
        "outputs": report.outputs,
        "ad_over_fd": {
            name: {o: round(v["ad"] / v["fd"], 3) if v["fd"] else None for o, v in outs.items()}
            for name, outs in report.fd.items()
        },
        "ad_fd": report.fd,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the data comparison (default 5)")
    parser.add_argument("--fd-seeds", type=int, default=4, help="seeds of the gradient check (0: skip)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to the results")
    args = parser.parse_args()
    record = {"benchmark": SCENARIO, **machine()}
    record["run"] = [run_timing(1), run_timing(None)]
    record["sensitivity"] = sensitivity_timing(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    record["comparison"] = comparison(args.seeds)
    record["comparison"]["wall_s"] = round(time.perf_counter() - t0, 2)
    if args.fd_seeds:
        record["gradient_check"] = [gradient_check(args.fd_seeds, e) for e in ("gumbel", "smoothed")]
    torch.set_num_threads(threads)
    print(json.dumps(record))
    if not args.no_record:
        append(RESULTS, record)


if __name__ == "__main__":
    main()
