"""What privacy costs (issue 19): the secret-shared simulation against the plaintext one, and private
calibration across the five borough holders against plaintext calibration.

    python benchmarks/bench_privacy.py                       # both parts at the issue's sizes
    python benchmarks/bench_privacy.py --parts sim --sim-agents 200k --sim-days 30
    python benchmarks/bench_privacy.py --parts calibrate --fits 8,8,8       # three noise draws at ε = 8

* ``sim``: ``nyc-covid`` (``--sim-agents`` × ``--sim-days``, first-wave options) plaintext in this process,
  then private (a device process and 2 server processes, gloo over loopback); the time of the days alone
  (set-up excluded), their ratio, the bytes each server receives and sends back per day, and whether the
  daily series are bit-identical.
* ``calibrate``: ``nyc-covid`` at ``--cal-agents`` × ``--cal-days``, streams ``hosp`` and ``deaths`` by
  borough, fitting ``beta``, ``severe_scale`` and ``fatality_scale`` from the scenario's defaults (0.05, 1, 1;
  estimator ``gumbel``, forward-mode capable), ``--epochs`` Adam epochs at ``--lr``: plaintext
  :class:`~populace.calibrate.Calibration`, then private calibration (1 coordinator, 5 holders, 2 servers;
  each entry of every holder's gradient clipped to ``±--clip``, or with ``--clip-norm`` its L2 norm) at
  ε = ∞, 8 and 1, at 8 and 1 also with the learning rate scaled by the noise (``lr_by_noise``) (δ = 1e-5,
  the budget of the whole run: the noise multiplier is chosen for ``--epochs`` releases); seconds per
  epoch and the ND, pooled and per borough, of the fitted model's mean over ``--evaluate`` held-out seeds
  (the same seeds in every row, and for the starting values). Also records each holder's gradient at the
  start: what ``--clip`` is set against (measured here on the data, in plaintext; a deployment would take
  it from a public proxy, e.g. an earlier wave or another city, or spend budget on it).

  Why these settings (measured at 100k, 45 days): plaintext calibration settles in about 20 epochs at
  lr 0.1 (cosine decay), after which the loss only moves with the run's seed. The holders' gradients at
  the defaults have β entries 0.10-0.40 and fatality-scale entries 0.007-0.056: under one L2 bound the
  fatality scale gets a tenth of β's signal under the same noise, and at ε = 8 (σ = 4.03 over 40 epochs,
  L2 clip 0.1) it did not move (1.0 → 0.91; deaths ND 0.77 against plaintext's 0.66). Clipped entry by
  entry to ±0.01 (below nearly every entry), each holder sends about the signs of its gradient, and every
  parameter gets the same signal-to-noise ratio, at most ``H / (σ √P)`` (Adam's step does not depend on
  the gradient's scale, only on that ratio).

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
from populace.calibrate import Bounded, Calibration
from populace.cli.arguments import parse_count
from populace.experiment import Experiment
from populace.private import SecretSums, ServerLink, serve, use_aggregation
from populace.private_calibration import (
    Holder,
    Roles,
    _jacobian,
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
CAL_SETS = ["seeds_per_100k=300", "hospital_death_days=8", "estimator=gumbel"]
"""The calibration's options: the first wave's seeding, the fitted parameters at the scenario's defaults."""
FITS = "inf,8,8s,1,1s"
"""The private fits (``--fits``): ε, with ``s`` the learning rate scaled by the noise
(``coordinate(lr_by_noise=True)``)."""


def _fits(text: str) -> list[tuple[float, bool]]:
    out = []
    for item in text.split(","):
        scaled = item.strip().endswith("s")
        value = item.strip().removesuffix("s")
        try:
            eps = math.inf if value == "inf" else float(value)
        except ValueError:
            message = f"--fits: expected values of ε like inf,8,8s,1 (s: scaled lr), got {item!r}"
            raise SystemExit(message) from None
        out.append((eps, scaled))
    return out


DELTA = 1e-5


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
    experiment = Experiment.from_texts("nyc-covid", CAL_SETS, agents=agents, seed=0)
    model = experiment.model()
    streams = [s for s in experiment.observed(model, days=days) if s.name in ("hosp", "deaths")]
    return model, streams


def _nd(agents: int, days: int, predictions: dict[str, torch.Tensor]) -> dict:
    """ND pooled and per borough of ``predictions`` (``[days, 5]`` per stream), on 7-day averages."""
    model, streams = _build(agents, days)
    metrics = Calibration(model, streams, fit=FIT, log_weight=0.0).metrics(predictions)
    return {
        k: {"nd": round(m["nd"], 4), "nd_by": {b: round(v, 4) for b, v in m["nd_by"].items()}}
        for k, m in metrics.items()
    }


def _start(agents: int, days: int, epochs: int, evaluate: int) -> tuple[dict, list]:
    """The starting values' ND (same held-out seeds as the fits) and each holder's gradient there (its norm,
    then one entry per fitted parameter)."""
    model, streams = _build(agents, days)
    calibration = Calibration(model, streams, fit=FIT, log_weight=0.0)
    runs = [calibration.run(days, seed=epochs + k, grad="off") for k in range(evaluate)]
    mean = {s.name: torch.stack([r[s.name] for r in runs]).mean(0) for s in streams}
    nd = _nd(agents, days, mean)
    model, streams = _build(agents, days)
    specs, learnable = model.specs(), dict(model.named_parameters())
    bounds = {n: Bounded(*specs[n].bounds) for n in FIT}
    raw = {n: bounds[n].right_inverse(learnable[n].detach().clone()) for n in FIT}
    for p in model.parameters():
        p.requires_grad_(False)
    primal, jac = _jacobian(model, FIT, raw, bounds, _public(streams), days, 0)
    norms = []
    for b, label in enumerate(streams[0].labels):
        holder = Holder.of(streams, label)
        g = holder.gradient(
            {s.name: primal[s.name][:, b : b + 1] for s in streams},
            {s.name: jac[s.name][:, b, :] for s in streams},
        )
        norms.append([round(float(g.norm()), 4), *(round(float(v), 4) for v in g)])
    return nd, norms


def _private_cal(
    rank: int,
    ranks: int,
    agents: int,
    days: int,
    epochs: int,
    lr: float,
    clip: float,
    per_parameter: bool,
    fits: list[tuple[float, bool]],
    evaluate: int,
    holders: list,
    out: str,
) -> None:
    roles = Roles(len(holders), 2)
    role, i = roles.role(rank)
    runs = [(noise_for(e, epochs, DELTA), clip, scaled) for e, scaled in fits]
    results = []
    for noise, clip, scaled in runs:
        if role == "server":
            relay(roles, i)
        elif role == "holder":
            hold(roles, i, holders[i], clip, noise, per_parameter=per_parameter)
        else:
            model, streams = _build(agents, days)
            fit = coordinate(
                roles,
                model,
                _public(streams),
                FIT,
                days,
                epochs=epochs,
                lr=lr,
                evaluate=evaluate,
                clip=clip,
                noise=noise,
                delta=DELTA,
                per_parameter=per_parameter,
                lr_by_noise=scaled,
            )
            predictions = {k: v.tolist() for k, v in fit.predictions.items()}
            results.append(fit.summary() | {"predictions": predictions})
    if role == "coordinator":
        Path(out).write_text(json.dumps(results))


def bench_calibrate(
    agents: int,
    days: int,
    epochs: int,
    lr: float,
    clip: float,
    per_parameter: bool,
    fits: list[tuple[float, bool]],
    evaluate: int,
    scratch: Path,
) -> dict:
    start_nd, norms = _start(agents, days, epochs, evaluate)
    model, streams = _build(agents, days)
    t0 = time.perf_counter()
    plain = Calibration(model, streams, fit=FIT, log_weight=0.0).fit(
        days, epochs=epochs, lr=lr, seed=0, evaluate=evaluate, grad="full"
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
        lr,
        clip,
        per_parameter,
        fits,
        evaluate,
        holders,
        str(out),
        threads=torch.get_num_threads(),  # as the plaintext fit in this process
        timeout_s=7200,
    )
    private = json.loads(out.read_text())
    rows = [
        {
            "mode": "start",
            "nd": start_nd,
            "holder_gradients": norms,
        },
        {
            "mode": "plaintext",
            "epsilon": None,
            "s_per_epoch": round(plain_s / epochs, 2),
            "nd": _nd(agents, days, plain.predictions),
            "parameters": plain.parameters,
        },
    ]
    for (eps, scaled), fit in zip(fits, private, strict=True):
        rows.append(
            {
                "mode": "private",
                "epsilon": "inf" if math.isinf(eps) else eps,
                "lr_by_noise": scaled,
                "lr": round(fit["lr"], 5),
                "epsilon_spent": fit["epsilon"],
                "noise_multiplier": round(fit["noise_multiplier"], 4),
                "s_per_epoch": round(sum(fit["epoch_s"]) / len(fit["epoch_s"]), 2),
                "nd": _nd(agents, days, {k: torch.tensor(v) for k, v in fit["predictions"].items()}),
                "nd_from_shared_sums": {k: round(v, 4) for k, v in fit["nd"].items()},
                "parameters": fit["parameters"],
            }
        )
    return {
        "agents": agents,
        "days": days,
        "epochs": epochs,
        "lr": lr,
        "threads": torch.get_num_threads(),
        "evaluate": evaluate,
        "clip": clip,
        "clip_per_parameter": per_parameter,
        "delta": DELTA,
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="sim,calibrate")
    parser.add_argument("--sim-agents", default="1M")
    parser.add_argument("--sim-days", type=int, default=120)
    parser.add_argument("--cal-agents", default="100k")
    parser.add_argument("--cal-days", type=int, default=45)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--clip", type=float, default=0.01)
    parser.add_argument("--clip-norm", action="store_true", help="clip each gradient's L2 norm instead")
    parser.add_argument("--fits", default=FITS, help=f"the private fits' ε (default {FITS}; s: scaled lr)")
    parser.add_argument("--evaluate", type=int, default=6)
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
            parse_count(args.cal_agents, "--cal-agents"),
            args.cal_days,
            args.epochs,
            args.lr,
            args.clip,
            not args.clip_norm,
            _fits(args.fits),
            args.evaluate,
            scratch,
        )
        record["load_after_calibrate"] = os.getloadavg()
    print(json.dumps(record))
    if not args.no_record:
        append(RESULTS, record)


if __name__ == "__main__":
    main()
