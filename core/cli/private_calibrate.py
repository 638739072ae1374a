"""``populace calibrate SCENARIO --private``: the calibration of :mod:`populace.private_calibration`, one
process per data holder (a column of the streams: NYC's boroughs), a coordinator and two servers."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..calibrate import save_parameters
from ..distributed import RankFailed, launch
from ..experiment import Experiment
from ..files import atomic_path
from ..params import ParamError
from ..private_calibration import Holder, PrivateFit, Roles, _public, coordinate, hold, noise_for, relay
from .arguments import UsageError, setup
from .output import number

__all__ = ["add_arguments", "calibrate_private"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--private",
        action="store_true",
        help="private calibration: one process per data holder (the streams' columns, e.g. boroughs) keeps "
        "its data; only the sum of their clipped, noised gradients is reconstructed",
    )
    parser.add_argument(
        "--epsilon",
        default="8",
        help="--private: privacy budget ε of the whole fit ('inf': no noise; default 8)",
    )
    parser.add_argument("--delta", type=float, default=1e-5, help="--private: δ of (ε, δ) (default 1e-5)")
    parser.add_argument(
        "--clip",
        type=float,
        default=1.0,
        help="--private: bound of each holder's gradient: its L2 norm, or each entry with --clip-each "
        "(default 1)",
    )
    parser.add_argument(
        "--clip-each",
        action="store_true",
        help="--private: clip each entry of a holder's gradient to ±CLIP instead of its L2 norm (every "
        "parameter gets the same share of the noise budget, however small its gradient)",
    )
    parser.add_argument(
        "--lr-by-noise",
        action="store_true",
        help="--private: scale the learning rate by the best signal-to-noise ratio a step can have, when "
        "below 1 (a small budget then leaves the values near their start instead of adrift)",
    )
    parser.add_argument(
        "--fit",
        help="--private: parameters to fit, comma-separated (default: the scenario's direct parameters and "
        "its transmissibility, beta)",
    )


def _streams(experiment: Experiment, model: Any, days: int, names: list[str] | None) -> list[Any]:
    """The scenario's observed streams a holder can fit: ``names``, or those without a learnable reported
    share (a calibration network)."""
    streams = experiment.observed(model, days=days)
    if names is not None:
        unknown = [n for n in names if n not in {s.name for s in streams}]
        if unknown:
            known = ", ".join(s.name for s in streams)
            raise UsageError(f"--streams: {', '.join(unknown)} not among {known}")
        return [s for s in streams if s.name in names]
    return [s for s in streams if s.reported is None]


def _fit_names(experiment: Experiment, model: Any, days: int, text: str | None) -> list[str]:
    if text is not None:
        return [t.strip() for t in text.split(",") if t.strip()]
    calibration = experiment.calibration(model, days=days)
    names = list(calibration.fit_names)
    calibration.release()
    betas = [n for n in model.specs() if n.endswith(".beta") and n not in names]
    return betas + names


def calibrate_private(args: argparse.Namespace, out: Path) -> int:
    """Validate here (one line for a bad argument), then run the protocol in ``1 + holders + 2`` processes."""
    try:
        epsilon = math.inf if args.epsilon == "inf" else float(args.epsilon)
    except ValueError:
        raise UsageError(f"--epsilon: expected a positive number or 'inf', got {args.epsilon!r}") from None
    if not epsilon > 0 or not 0 < args.delta < 1 or not args.clip > 0:
        raise UsageError("--epsilon, --delta and --clip: expected ε > 0, 0 < δ < 1 and a clip > 0")
    if not any(s.startswith("estimator=") for s in args.set):
        args.set = [*args.set, "estimator=gumbel"]  # forward mode needs a forward-mode estimator
    experiment, days = setup(args)
    model = experiment.model()
    streams = _streams(experiment, model, days, args.streams)
    fit = _fit_names(experiment, model, days, args.fit)
    try:
        _public(streams)
    except ParamError as exc:
        raise UsageError(f"--streams: {exc}") from None
    labels = streams[0].labels
    if not labels or any(s.labels != labels for s in streams):
        raise UsageError("--streams: private calibration needs streams with the same columns (the holders)")
    noise = noise_for(epsilon, args.epochs, args.delta)
    del model, streams  # the launcher keeps nothing: each holder reads its own data in its own process
    roles = Roles(len(labels))
    t0 = time.perf_counter()
    try:
        launch(_rank, roles.world, args, roles, labels, fit, days, noise, str(out), timeout_s=3600)
    except RankFailed as exc:
        print(f"populace calibrate: error: {exc}", file=sys.stderr)
        return 1
    summary = json.loads((out / "report.json").read_text())
    if args.json:
        print(json.dumps(summary))
    else:
        values = ", ".join(f"{k} {v:.4g}" for k, v in summary["parameters"].items())
        spent = summary["epsilon"] if summary["epsilon"] == "inf" else f"{summary['epsilon']:.3g}"
        nd = ", ".join(f"{k} ND {v:.3f}" for k, v in summary["nd"].items())
        print(
            f"{summary['scenario']}: private calibration over {len(labels)} holders ({', '.join(labels)}), "
            f"{args.epochs} epochs in {time.perf_counter() - t0:.0f} s; ε = {spent}, "
            f"δ = {args.delta:g}; {values}; {nd}"
        )
        print(f"wrote {out / 'parameters.json'}, {out / 'report.json'}")
    return 0


def _rank(
    rank: int,
    ranks: int,
    args: argparse.Namespace,
    roles: Roles,
    labels: tuple[str, ...],
    fit: list[str],
    days: int,
    noise: float,
    out: str,
) -> None:
    role, i = roles.role(rank)
    if role == "server":
        relay(roles, i)
        return
    experiment, _ = setup(args)
    model = experiment.model()
    streams = _streams(experiment, model, days, args.streams)
    if role == "holder":
        holder = Holder.of(streams, labels[i])
        del streams  # this holder keeps its own columns only
        hold(roles, i, holder, args.clip, noise, per_parameter=args.clip_each)
        return

    def progress(epoch: int, gradient: list[float]) -> None:
        print(
            f"epoch {epoch + 1}/{args.epochs}: |sum of gradients| {math.hypot(*gradient):.4f}",
            file=sys.stderr,
            flush=True,
        )

    report: PrivateFit = coordinate(
        roles,
        model,
        _public(streams),
        fit,
        days,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        evaluate=args.evaluate,
        clip=args.clip,
        noise=noise,
        delta=args.delta,
        per_parameter=args.clip_each,
        lr_by_noise=args.lr_by_noise,
        on_epoch=progress,
    )
    summary = {
        "scenario": experiment.scenario.name,
        "agents": experiment.agents,
        "days": days,
        "holders": list(labels),
        "servers": roles.servers,
        "streams": [s.name for s in streams],
        **report.summary(),
    }
    folder = Path(out)
    options = {
        k: number(v.value) if not isinstance(v.value, str) else v.value for k, v in experiment.options.items()
    }
    save_parameters(
        folder / "parameters.json",
        report.parameters,
        scenario=experiment.scenario.name,
        agents=experiment.agents,
        options=options,
        private={"epsilon": summary["epsilon"], "delta": report.delta},
    )
    with atomic_path(folder / "report.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
