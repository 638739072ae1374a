"""One-shot sensitivity analysis: d(outcome)/d(parameter) for scalar outcomes of a run, with respect to every
learnable parameter, by reverse mode (one backward pass per outcome) or forward mode (one run per parameter,
``torch.autograd.forward_ad``), averaged over seeds, with an optional finite-difference check that uses
common random numbers (the same seed on both sides).

Outcomes are written ``[aggregate:]series[.label][@first-last]``:

* ``aggregate`` — ``total`` (sum over the days, the default), ``peak`` (maximum), ``final`` (last day) or
  ``mean``;
* ``series`` — a recorded series; ``.label`` picks one entry of a vector series
  (``new_deaths_by_borough.Bronx``);
* ``@first-last`` — a window of days (inclusive), e.g. ``new_symptomatic_by_age.65-74@21-27`` for a week.

Gradients of estimators carry their documented bias (``populace.samplers``, ``layers/covid.py``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.autograd import forward_ad
from torch.func import functional_call

from .counterfactual import Counterfactual, counterfactual_gradient
from .model import Model
from .replay import vjps
from .simulate import Checkpointed, GradMode, Result, Simulation

__all__ = ["Output", "Sensitivity", "sensitivity"]

_AGGREGATES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "total": lambda x: x.sum(),
    "peak": lambda x: x.max(),
    "final": lambda x: x[-1],
    "mean": lambda x: x.mean(),
}
_PATTERN = re.compile(
    r"(?:(?P<agg>[a-z]+):)?(?P<series>[A-Za-z0-9_]+)(?:\.(?P<label>[^@]+))?(?:@(?P<first>\d+)-(?P<last>\d+))?"
)


@dataclass(frozen=True)
class Output:
    """A scalar outcome of a run (see module docs for the syntax)."""

    text: str
    aggregate: str
    series: str
    label: str | None = None
    first: int | None = None
    last: int | None = None

    @classmethod
    def parse(cls, text: str) -> Output:
        match = _PATTERN.fullmatch(text.strip())
        if not match:
            raise ValueError(
                f"outputs: cannot read {text!r}; expected [total|peak|final|mean:]series[.label][@a-b]"
            )
        agg = match["agg"] or "total"
        if agg not in _AGGREGATES:
            raise ValueError(
                f"outputs: {text!r}: unknown aggregate {agg!r}; expected {', '.join(_AGGREGATES)}"
            )
        first = int(match["first"]) if match["first"] else None
        last = int(match["last"]) if match["last"] else None
        if first is not None and last is not None and last < first:
            raise ValueError(f"outputs: {text!r}: the window ends before it starts")
        return cls(text.strip(), agg, match["series"], match["label"], first, last)

    def check(self, model: Model, days: int) -> None:
        """Raise ``ValueError`` naming the problem if ``model`` cannot produce this outcome in ``days``."""
        if self.series not in model.observables():
            raise ValueError(
                f"outputs: {self.text!r}: unknown series {self.series!r}; see `populace run --json`"
            )
        labels = model.labels().get(self.series)
        if self.label is not None and (labels is None or self.label not in labels):
            raise ValueError(
                f"outputs: {self.text!r}: {self.series} has no entry {self.label!r}; entries: {labels}"
            )
        if self.last is not None and self.last >= days:
            raise ValueError(f"outputs: {self.text!r}: day {self.last} is past the run's {days} days")

    def __call__(self, result: Result) -> torch.Tensor:
        value = result.series[self.series]
        if self.label is not None:
            value = value[:, result.labels[self.series].index(self.label)]
        elif value.dim() > 1:
            value = value.sum(tuple(range(1, value.dim())))
        if self.first is not None:
            value = value[self.first : self.last + 1 if self.last is not None else None]
        return _AGGREGATES[self.aggregate](value.to(torch.float32))


@dataclass
class Sensitivity:
    """Gradients of each output with respect to each learnable parameter (dotted name → number or nested
    list for vector parameters), averaged over seeds, and the finite-difference check if asked for."""

    outputs: dict[str, float]
    gradients: dict[str, dict[str, Any]]
    forward_s: float
    backward_s: float
    mode: str
    seeds: tuple[int, ...]
    fd: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {
            "mode": self.mode,
            "seeds": list(self.seeds),
            "forward_s": round(self.forward_s, 4),
            "backward_s": round(self.backward_s, 4),
            "outputs": self.outputs,
            "gradients": self.gradients,
        }
        if self.fd:
            out["fd_check"] = self.fd
        return out


def sensitivity(
    model: Model,
    days: int,
    outputs: Sequence[str | Output],
    *,
    seeds: Sequence[int] = (0,),
    device: torch.device | str = "cpu",
    grad: GradMode | None = None,
    mode: Literal["reverse", "forward"] = "reverse",
    parameters: Sequence[str] | None = None,
    fd_check: Sequence[str] = (),
    fd_step: float = 0.05,
) -> Sensitivity:
    """d(each output)/d(each learnable parameter) of ``model`` run for ``days`` days (see module docs).

    Args:
        outputs: outcome texts or :class:`Output`.
        seeds: one run per seed; gradients and outputs are averaged.
        grad: reverse mode's tape: :class:`Checkpointed` (the lean default, ``None``: the forward pass keeps
            no tape and the backward pass replays segments) or ``"full"`` (the whole run's tape).
        mode: ``"reverse"`` (one backward pass per output) or ``"forward"`` (one run per parameter entry).
        parameters: dotted names to differentiate (default: every learnable parameter).
        fd_check: parameters (scalars) to check by central finite differences with common random numbers,
            step ``fd_step`` × |value| (or × the bound range when the value is 0), fast mode, same seeds.
    """
    grad = grad if grad is not None else Checkpointed()
    outs = [o if isinstance(o, Output) else Output.parse(o) for o in outputs]
    if not outs:
        raise ValueError("outputs: give at least one outcome")
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    for o in outs:
        o.check(model, days)
    model = model.to(device)
    learnable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = list(parameters) if parameters is not None else list(learnable)
    unknown = [n for n in [*names, *fd_check] if n not in learnable]
    if unknown:
        raise ValueError(f"parameters: {unknown} are not learnable parameters; known: {', '.join(learnable)}")
    record = sorted({o.series for o in outs})
    forward_s = backward_s = 0.0
    totals = {o.text: 0.0 for o in outs}
    grads: dict[str, dict[str, torch.Tensor]] = {
        o.text: {n: torch.zeros_like(learnable[n]) for n in names} for o in outs
    }
    counterfactual = _uses_counterfactual(model)
    for seed in seeds:
        if mode == "reverse" and counterfactual:
            t0 = time.perf_counter()
            got = counterfactual_gradient(
                model, days, {o.text: o for o in outs}, seed=seed, params=names, device=device
            )
            for o in outs:
                totals[o.text] += got[o.text].value
                for n in names:
                    grads[o.text][n] += got[o.text].grad[n]
            cost = next(iter(got.values())).seconds
            forward_s += cost["forward"] + cost["counterfactuals"]
            backward_s += time.perf_counter() - t0 - cost["forward"] - cost["counterfactuals"]
        elif mode == "reverse":
            t0 = time.perf_counter()
            result = Simulation(model, seed=seed, device=device, grad=grad).run(days, record=record)
            values = [o(result) for o in outs]
            t1 = time.perf_counter()
            for o, value in zip(outs, values, strict=True):
                totals[o.text] += float(value.detach())
            # each outcome's gradient with respect to the series, then one reverse pass through the run per
            # outcome (a lean run replays its segments once for all of them); an outcome with no event
            # (e.g. no death) depends on no parameter
            series = [result.series[n] for n in record if result.series[n].requires_grad]
            reached = [(o, v) for o, v in zip(outs, values, strict=True) if v.requires_grad]
            cotangents = [
                torch.autograd.grad(v, series, retain_graph=True, allow_unused=True) for _, v in reached
            ]
            passes = vjps(series, cotangents, [learnable[n] for n in names])
            for (o, _), parts in zip(reached, passes, strict=True):
                for n, g in zip(names, parts, strict=True):
                    if g is not None:
                        grads[o.text][n] += g
            forward_s += t1 - t0
            backward_s += time.perf_counter() - t1
        elif mode == "forward":
            t0 = time.perf_counter()
            for n in names:
                for index in range(learnable[n].numel()):
                    tangent = torch.zeros_like(learnable[n]).reshape(-1)
                    tangent[index] = 1.0
                    primal, derivs = _jvp(
                        model, days, seed, device, record, outs, n, tangent.reshape(learnable[n].shape)
                    )
                    for o, v, d in zip(outs, primal, derivs, strict=True):
                        grads[o.text][n].reshape(-1)[index] += d
                        if n == names[0] and index == 0:
                            totals[o.text] += v
            forward_s += time.perf_counter() - t0
        else:
            raise ValueError(f"mode: expected 'reverse' or 'forward', got {mode!r}")
    k = len(seeds)
    report = Sensitivity(
        outputs={o: v / k for o, v in totals.items()},
        gradients={o: {n: (g / k).tolist() for n, g in per.items()} for o, per in grads.items()},
        forward_s=forward_s / k,
        backward_s=backward_s / k,
        mode=mode,
        seeds=tuple(seeds),
    )
    if fd_check:
        report.fd = _finite_differences(model, days, outs, seeds, device, record, fd_check, fd_step, report)
    return report


def _jvp(
    model: Model,
    days: int,
    seed: int,
    device: torch.device | str,
    record: list[str],
    outs: list[Output],
    name: str,
    tangent: torch.Tensor,
) -> tuple[list[float], list[float]]:
    """Outputs and their directional derivatives along ``tangent`` of parameter ``name`` (forward AD)."""
    runner = _Runner(model, days, seed, device, record)
    with forward_ad.dual_level(), torch.no_grad():
        param = dict(model.named_parameters())[name]
        dual = forward_ad.make_dual(param.detach(), tangent)
        result = functional_call(runner, {f"model.{name}": dual}, ())
        values = [o(result) for o in outs]
        unpacked = [forward_ad.unpack_dual(v) for v in values]
    return (
        [float(u.primal) for u in unpacked],
        [float(u.tangent) if u.tangent is not None else 0.0 for u in unpacked],
    )


class _Runner(nn.Module):
    """A run as a module's forward, so ``functional_call`` can swap parameters for dual tensors."""

    def __init__(
        self, model: Model, days: int, seed: int, device: torch.device | str, record: list[str]
    ) -> None:
        super().__init__()
        self.model, self.days, self.seed, self.device, self.record = model, days, seed, device, record

    def forward(self) -> Result:
        # "full" selects the differentiable code paths; nothing requires grad, so no tape is kept
        sim = Simulation(self.model, seed=self.seed, device=self.device, grad="full")
        return sim.run(self.days, record=self.record)


def _uses_counterfactual(model: Model) -> bool:
    """Whether a layer of ``model`` takes the counterfactual-corrected estimator (then reverse mode runs
    :func:`~populace.counterfactual.counterfactual_gradient`, with the whole tape)."""
    return any(
        isinstance(getattr(layer, "estimator", None), Counterfactual) for layer in model.ordered_layers()
    )


def _finite_differences(
    model: Model,
    days: int,
    outs: list[Output],
    seeds: Sequence[int],
    device: torch.device | str,
    record: list[str],
    names: Sequence[str],
    step: float,
    report: Sensitivity,
) -> dict[str, dict[str, dict[str, float]]]:
    specs = model.specs()
    params = dict(model.named_parameters())
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        p = params[name]
        if p.numel() != 1:
            raise ValueError(f"fd_check: {name} has {p.numel()} entries; only scalar parameters are checked")
        value = float(p.detach())
        low, high = specs[name].bounds if name in specs else (-math.inf, math.inf)
        h = step * (abs(value) if value != 0 else (high - low if math.isfinite(high - low) else 1.0))
        lo_v, hi_v = max(low, value - h), min(high, value + h)
        sides = []
        for v in (hi_v, lo_v):
            with torch.no_grad():
                p.fill_(v)
            runs = [Simulation(model, seed=s, device=device).run(days, record=record) for s in seeds]
            sides.append({o.text: sum(float(o(r)) for r in runs) / len(runs) for o in outs})
        with torch.no_grad():
            p.fill_(value)
        out[name] = {}
        for o in outs:
            fd = (sides[0][o.text] - sides[1][o.text]) / (hi_v - lo_v)
            ad = float(report.gradients[o.text][name]) if name in report.gradients[o.text] else math.nan
            rel = abs(ad - fd) / abs(fd) if fd != 0 else math.inf if ad != 0 else 0.0
            out[name][o.text] = {"ad": ad, "fd": fd, "rel_err": rel}
    return out
