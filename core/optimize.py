"""Decisions learned by gradient descent through the simulation: ``populace optimize``.

A scenario declares its *levers* (decisions a planner controls: the share of vaccine doses going to
each group, a testing budget's split, a stimulus's targeting) and its *objectives* (outcomes to minimise:
deaths, admissions). A :class:`Lever` turns part of a built model into a leaf tensor that requires a gradient
(:meth:`Lever.attach`); :func:`optimize` then runs the simulation in differentiable mode, one seed per step,
and moves that tensor with Adam against the objective's gradient. :func:`evaluate` compares the result with
the lever's heuristic alternatives on held-out seeds, in fast mode.

Adding a lever to a scenario: return it from ``Scenario.levers()`` (and objectives from
``Scenario.objectives()``); the command line finds them by name.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .model import Model
from .sensitivity import Output
from .simulate import Checkpointed, Simulation

__all__ = ["Lever", "Objective", "Optimization", "evaluate", "optimize", "paired"]


@dataclass(frozen=True)
class Objective:
    """An outcome to minimise.

    Attributes:
        name: what ``--objective`` names.
        doc: what it is, in words.
        output: what the optimiser differentiates, in :mod:`populace.sensitivity`'s syntax
            (``total:new_deaths``); it may be a smooth expectation of the outcome (``total:expected_deaths``).
        counted: what the held-out comparison counts in simulated runs (default: ``output``), e.g. the
            deaths themselves when ``output`` is their expectation.
    """

    name: str
    doc: str
    output: str
    counted: str | None = None

    @property
    def held_out(self) -> str:
        """The output the held-out comparison counts."""
        return self.counted or self.output


@dataclass(frozen=True)
class Lever:
    """A decision :func:`optimize` can learn.

    Attributes:
        name: what ``--lever`` names.
        doc: what it decides, in words.
        sets: ``NAME=VALUE`` options the model is built with for this lever (its starting point).
        attach: makes the decision variables of a built model a leaf tensor that requires a gradient (the
            model's behaviour must then follow that tensor) and returns it.
        table: the decision as a report, ``{"rows": [...], "columns": [...], "values": [[...]]}`` or any JSON.
        alternatives: heuristic decisions to compare with, ``(label, sets)`` each.
        apply: sets a tensor previously returned by ``attach`` (learned) into a fresh model, for evaluation.
        start: ``(heuristic, model, seed) -> tensor``: the value of ``attach``'s tensor that makes ``model``
            (built with ``sets``) follow the decision of ``heuristic`` (built with one of ``alternatives``'
            sets) as closely as the lever can, from a fast run with ``seed``; ``None``: no such start.
    """

    name: str
    doc: str
    sets: tuple[str, ...]
    attach: Callable[[Model], torch.Tensor]
    table: Callable[[Model], dict[str, Any]]
    alternatives: tuple[tuple[str, tuple[str, ...]], ...] = ()
    apply: Callable[[Model, torch.Tensor], None] | None = None
    start: Callable[[Model, Model, int], torch.Tensor] | None = None


@dataclass
class Optimization:
    """What :func:`optimize` did: the objective per step, the learned tensor and the time it took."""

    lever: str
    objective: str
    steps: list[dict[str, float]] = field(default_factory=list)
    learned: torch.Tensor | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "lever": self.lever,
            "objective": self.objective,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
        }


def optimize(
    model: Model,
    lever: Lever,
    objective: Objective,
    *,
    days: int,
    seeds: Sequence[int],
    epochs: int = 1,
    lr: float = 0.1,
    every: int | None = None,
    device: torch.device | str = "cpu",
    initial: torch.Tensor | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> Optimization:
    """Learn ``lever``'s decision on ``model`` by Adam steps against ``objective``'s gradient, one
    differentiable run per seed of ``seeds``, ``epochs`` times over, in the lean reverse mode (``every``:
    days between the kept states the backward pass replays from; default ⌈√days / 2⌉), from ``initial``
    (default: the decision ``attach`` finds in the model)."""
    if epochs < 1 or not seeds:
        raise ValueError(f"optimize: need epochs >= 1 and at least one seed, got {epochs} and {list(seeds)}")
    output = Output.parse(objective.output)
    output.check(model, days)
    theta = lever.attach(model)
    if initial is not None:
        if initial.shape != theta.shape:
            raise ValueError(f"initial: expected shape {tuple(theta.shape)}, got {tuple(initial.shape)}")
        with torch.no_grad():
            theta.copy_(initial)
    optimiser = torch.optim.Adam([theta], lr=lr)
    report = Optimization(lever.name, objective.name)
    start = time.perf_counter()
    grad = Checkpointed(every, overlap=True, ahead=1)
    for epoch in range(epochs):
        for seed in seeds:
            tick = time.perf_counter()
            optimiser.zero_grad()
            value = output(Simulation(model, seed=seed, device=device, grad=grad).run(days))
            value.backward()
            norm = float(theta.grad.norm()) if theta.grad is not None else math.nan
            optimiser.step()
            step = {
                "epoch": epoch,
                "seed": seed,
                "objective": float(value.detach()),
                "gradient_norm": norm,
                "seconds": round(time.perf_counter() - tick, 3),
            }
            report.steps.append(step)
            if on_step is not None:
                on_step(step)
    report.learned = theta.detach().clone()
    report.seconds = time.perf_counter() - start
    return report


def evaluate(
    build: Callable[[], Model],
    objective: Objective | str,
    *,
    days: int,
    seeds: Iterable[int],
    device: torch.device | str = "cpu",
    prepare: Callable[[Model], None] | None = None,
) -> list[float]:
    """The objective of fast runs of ``build()`` (after ``prepare``) with each of ``seeds``: what an
    :class:`Objective` counts (:attr:`Objective.held_out`), or an output's text."""
    output = Output.parse(objective.held_out if isinstance(objective, Objective) else objective)
    model = build()
    if prepare is not None:
        prepare(model)
    output.check(model, days)
    return [float(output(Simulation(model, seed=s, device=device).run(days))) for s in seeds]


def paired(values: Sequence[float], others: Sequence[float]) -> dict[str, Any]:
    """``values − others`` seed by seed (the same held-out seeds, so common random numbers): the mean
    difference, its standard deviation and standard error, and whether it is ``resolved``: below zero by more
    than two standard errors (``values`` lower)."""
    if len(values) != len(others) or len(values) < 2:
        raise ValueError(
            f"paired: need two equal-length series of 2+ seeds, got {len(values)} and {len(others)}"
        )
    differences = [a - b for a, b in zip(values, others, strict=True)]
    mean = statistics.fmean(differences)
    sd = statistics.stdev(differences)
    se = sd / math.sqrt(len(differences))
    return {"mean": mean, "sd": sd, "se": se, "resolved": mean + 2 * se < 0, "differences": differences}
