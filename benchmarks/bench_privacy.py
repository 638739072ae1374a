"""What privacy costs (issue 19): the secret-shared simulation against the plaintext one, and private
calibration across the five borough holders against plaintext calibration.

    python benchmarks/bench_privacy.py                       # both parts at the issue's sizes
    python benchmarks/bench_privacy.py --parts sim --sim-agents 200k --sim-days 30

* ``sim``: ``nyc-covid`` (``--sim-agents`` × ``--sim-days``, first-wave options) plaintext in this process,
  then private (a device process and 2 server processes, gloo over loopback); the time of the days alone
  (set-up excluded), their ratio, the bytes each server receives and sends back per day, and whether the
  daily series are bit-identical.
* ``calibrate``: ``nyc-covid`` at ``--cal-agents``, streams ``hosp`` and ``deaths`` by borough, fitting
  ``beta``, ``severe_scale`` and ``fatality_scale`` (estimator ``gumbel``, forward-mode capable), ``--epochs``
  epochs: plaintext :class:`~populace.calibrate.Calibration`, then private calibration (1 coordinator, 5
  holders, 2 servers; clip 1) at ε = ∞, 8 and 1 (δ = 1e-5); seconds per epoch and the pooled ND of the
  fitted model's mean over ``--evaluate`` held-out seeds.

Prints one JSON object and appends it to ``benchmarks/bench_privacy_results.json`` (with the machine and its
load average: this machine is shared).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _record import append, machine

from populace import launch
from populace.calibrate import Calibration
from populace.cli.arguments import parse_count
from populace.experiment import Experiment
from populace.private import SecretSums, ServerLink, serve, use_aggregation
from populace.private_calibration import (
    Holder,
    Roles,
    _public,
    coordinate,
    hold,
    noise_for,
    relay,
)
from populace.simulate import Simulation

RESULTS = Path(__file__).parent / "bench_privacy_results.json"
FIRST_WAVE = ["seeds_per_100k=300", "beta=0.07", "fatality_scale=4", "hospital_death_days=8"]
FIT = ["covid.beta", "covid.severe_scale", "covid.fatality_scale"]
EPSILONS = [math.inf, 8.0, 1.0]
DELTA = 1e-5
CLIP = 1.0


# ---------------------------------------------------------------------- simulation
def _sim(rank: int, ranks: int, agents: int, days: int, out: str) -> None:
    """The run in a launched process: plaintext with one rank, private (servers 1 and 2) with three."""
    if rank > 0:
        serve(devices=0)
        return
    experiment = Experiment.from_texts("nyc-covid", FIRST_WAVE, agents=agents, seed=0)
    model = experiment.model()
    link = ServerLink(list(range(1, ranks))) if ranks > 1 else None
    if link is not None:
        use_aggregation(model, SecretSums(link))
    try:
        t0 = time.perf_counter()
        result = Simulation(model, seed=0).run(days)
        sim_s = time.perf_counter() - t0
    finally:
        if link is not None:
            link.close()
    traffic = {} if link is None else {"exchanges": link.log.exchanges, "sent": link.log.sent}
    Path(out).write_text(
        json.dumps(
            {"sim_s": sim_s, "daily": result.to_columns(), **traffic}
            | ({} if link is None else {"received": link.log.received})
        )
    )


def bench_sim(agents: int, days: int, scratch: Path) -> dict:
    threads = max(1, os.cpu_count() or 1)
    found = {}
    for ranks in (1, 3):
        out = scratch / f"sim_{ranks}.json"
        launch(_sim, ranks, agents, days, str(out), threads=threads, timeout_s=3600)
        found[ranks] = json.loads(out.read_text())
    plain, private = found[1], found[3]
    return {
        "agents": agents,
        "days": days,
        "threads": threads,
        "plaintext_s": round(plain["sim_s"], 3),
        "private_s": round(private["sim_s"], 3),
        "time_ratio": round(private["sim_s"] / plain["sim_s"], 2),
        "bit_identical": private["daily"] == plain["daily"],
        "infections": int(sum(plain["daily"]["new_infections"])),
        "exchanges": private["exchanges"],
        "mb_to_each_server_per_day": round(private["sent"][0] / days / 1e6, 3),
        "mb_from_each_server_per_day": round(private["received"][0] / days / 1e6, 3),
    }


# ---------------------------------------------------------------------- calibration
def _build(agents: int, days: int) -> tuple[torch.nn.Module, list]:
    experiment = Experiment.from_texts("nyc-covid", [*FIRST_WAVE, "estimator=gumbel"], agents=agents, seed=0)
    model = experiment.model()
    streams = [s for s in experiment.observed(model, days=days) if s.name in ("hosp", "deaths")]
    return model, streams


def _private_cal(
    rank: int, ranks: int, agents: int, days: int, epochs: int, evaluate: int, holders: list, out: str
) -> None:
    roles = Roles(len(holders), 2)
    role, i = roles.role(rank)
    runs = [(noise_for(e, epochs, DELTA), CLIP) for e in EPSILONS]
    results = []
    for noise, clip in runs:
        if role == "server":
            relay(roles, i)
        elif role == "holder":
            hold(roles, i, holders[i], clip, noise)
        else:
            model, streams = _build(agents, days)
            fit = coordinate(
                roles,
                model,
                _public(streams),
                FIT,
                days,
                epochs=epochs,
                evaluate=evaluate,
                clip=clip,
                noise=noise,
                delta=DELTA,
            )
            results.append(fit.summary())
    if role == "coordinator":
        Path(out).write_text(json.dumps(results))


def bench_calibrate(agents: int, days: int, epochs: int, evaluate: int, scratch: Path) -> dict:
    model, streams = _build(agents, days)
    t0 = time.perf_counter()
    plain = Calibration(model, streams, fit=FIT, log_weight=0.0).fit(
        days, epochs=epochs, seed=0, evaluate=evaluate, grad="full"
    )
    plain_s = time.perf_counter() - t0
    holders = [Holder.of(streams, label) for label in streams[0].labels]
    out = scratch / "private_cal.json"
    launch(
        _private_cal,
        8,
        agents,
        days,
        epochs,
        evaluate,
        holders,
        str(out),
        threads=max(1, (os.cpu_count() or 1)),
        timeout_s=7200,
    )
    private = json.loads(out.read_text())
    rows = [
        {
            "mode": "plaintext",
            "epsilon": None,
            "s_per_epoch": round(plain_s / epochs, 2),
            "nd": {k: round(v["nd"], 4) for k, v in plain.metrics.items()},
            "parameters": plain.parameters,
        }
    ]
    for eps, fit in zip(EPSILONS, private, strict=True):
        rows.append(
            {
                "mode": "private",
                "epsilon": "inf" if math.isinf(eps) else eps,
                "epsilon_spent": fit["epsilon"],
                "noise_multiplier": round(fit["noise_multiplier"], 4),
                "s_per_epoch": round(sum(fit["epoch_s"]) / len(fit["epoch_s"]), 2),
                "nd": {k: round(v, 4) for k, v in fit["nd"].items()},
                "parameters": fit["parameters"],
            }
        )
    return {
        "agents": agents,
        "days": days,
        "epochs": epochs,
        "evaluate": evaluate,
        "clip": CLIP,
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="sim,calibrate")
    parser.add_argument("--sim-agents", default="1M")
    parser.add_argument("--sim-days", type=int, default=120)
    parser.add_argument("--cal-agents", default="100k")
    parser.add_argument("--cal-days", type=int, default=45)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--evaluate", type=int, default=2)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_privacy_{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    record: dict = {"machine": machine(), "load_before": os.getloadavg()}
    if "sim" in parts:
        record["sim"] = bench_sim(parse_count(args.sim_agents, "--sim-agents"), args.sim_days, scratch)
        record["load_after_sim"] = os.getloadavg()
    if "calibrate" in parts:
        record["calibrate"] = bench_calibrate(
            parse_count(args.cal_agents, "--cal-agents"), args.cal_days, args.epochs, args.evaluate, scratch
        )
        record["load_after_calibrate"] = os.getloadavg()
    print(json.dumps(record))
    if not args.no_record:
        append(RESULTS, record)


if __name__ == "__main__":
    main()
