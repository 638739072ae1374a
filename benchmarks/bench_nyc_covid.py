"""Benchmark: ``nyc-covid`` × 120 days at 100k, 1M and 8.4M agents, default options (PCR testing, behaviour
archetypes) and with every intervention on (PCR testing, vaccination, masks, closures, stimulus).

    python benchmarks/bench_nyc_covid.py [--sizes 100k,1M,8.4M] [--device cpu|cuda] [--baseline PYTHON]

``--baseline`` runs each case with another checkout's Python right after (a refactor's before and after in
one run; the record keeps both and their ratio).

Targets (issue 4): 8.4M × 120 days under 30 s of ``sim_s`` with peak RSS under 3 GB on the 2-core machine;
100k under 1 s. The population is built once (cached) before the timed runs, so ``init_s`` is load plus
set-up. Each run is a fresh process (``populace run ... --json``), so peak RSS is that run's own. Prints one
JSON object and appends it to ``benchmarks/bench_nyc_covid_results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _record import append, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_nyc_covid_results.json"
EVERYTHING = [
    "vaccination=on",
    "vaccine_start=20",
    "mask_adoption=0.7",
    "mask_start=30",
    "school_close=40",
    "school_reopen=80",
    "work_close=40",
    "work_reopen=80",
    "stimulus_amount=1200",
    "stimulus_day=45",
]


def run(agents: str, days: int, device: str, sets: list[str], python: str = sys.executable) -> dict:
    command = [python, "-m", "populace.cli", "run", "nyc-covid", "--agents", agents]
    command += ["--days", str(days), "--device", device, "--json"]
    for item in sets:
        command += ["--set", item]
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    daily, final = out["daily"], out["final"]
    keep = ("agents", "days", "device", "threads", "init_s", "sim_s", "peak_rss_mb")
    return {
        **{k: out[k] for k in keep},
        "attack_rate": round(1 - final["S"] / out["agents"], 4),
        "deaths": final["D"],
        "peak_infectious": max(daily["infectious"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100k,1M,8.4M")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", metavar="PYTHON", help="python of another checkout to compare with")
    parser.add_argument("--cases", default="default,all interventions", help="which option sets to run")
    args = parser.parse_args()
    runs = []
    for agents in args.sizes.split(","):
        # build and cache the population first: the timed runs load it
        subprocess.run(
            [sys.executable, "-m", "populace.cli", "population", "build", "nyc", "--agents", agents],
            check=True,
            capture_output=True,
        )
        for label, sets in (("default", []), ("all interventions", EVERYTHING)):
            if label not in args.cases.split(","):
                continue
            result = run(agents, args.days, args.device, sets)
            runs.append({"options": label, **result})
            print(json.dumps(runs[-1]), file=sys.stderr)
            if args.baseline:
                base = run(agents, args.days, args.device, sets, args.baseline)
                runs.append({"options": label, "baseline": True, **base})
                runs[-2]["sim_s_vs_baseline"] = round(result["sim_s"] / base["sim_s"], 3)
                print(json.dumps(runs[-1]), file=sys.stderr)
    record = {"benchmark": "nyc-covid", "machine": machine(), "interventions": EVERYTHING, "runs": runs}
    if args.baseline:
        record["baseline"] = args.baseline
    print(json.dumps(record))
    append(RESULTS, record)


if __name__ == "__main__":
    main()
