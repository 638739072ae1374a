"""One-shot sensitivity analysis: d(outcome)/d(parameter) for scalar outcomes of a run, with respect to every
learnable parameter, by reverse mode (one backward pass per outcome) or forward mode (one run per parameter,
``torch.autograd.forward_ad``), averaged over seeds, with an optional finite-difference check that uses
common random numbers (the same seed on both sides).

Every average comes with its standard error over the seeds (the seeds' standard deviation ÷ √seeds), and
the finite-difference check compares, parameter by parameter and outcome by outcome, the AD estimate and
the CRN finite difference each with its standard error. A finite difference is *resolved* when its
standard error is below :data:`RESOLVED` (20%) of its value: only then does the relative error
|AD − FD| / |FD| say something about the estimator rather than about the seeds.

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

__all__ = ["RESOLVED", "WITHIN", "Output", "Sensitivity", "sensitivity", "standard_error"]

_AGGREGATES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "total": lambda x: x.sum(),
    "peak": lambda x: x.max(),
    "final": lambda x: x[-1],
    "mean": lambda x: x.mean(),
}
RESOLVED = 0.2
"""A finite difference is resolved when its standard error over the seeds is below this share of its
value (with one seed it never is: its standard error is unknown)."""

WITHIN = 0.2
"""The relative error a resolved check should stay within (issue 21's target for the CLI's check)."""

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


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the mean of ``values`` (sample standard deviation ÷ √n); NaN for fewer than
    two values."""
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


@dataclass
class Sensitivity:
    """Gradients of each output with respect to each learnable parameter (dotted name → number or nested
    list for vector parameters), averaged over seeds, and the finite-difference check if asked for.

    Attributes:
        outputs: ``{output: mean over the seeds}``; ``output_samples``: ``{output: [value a seed]}``.
        gradients: ``{output: {parameter: mean gradient}}``; ``samples``: the same with one entry a seed
            (a list of numbers, or of nested lists for vector parameters); ``errors``: the same with the
            standard error of the mean (NaN with one seed).
        fd: ``{parameter: {output: check}}``, each check a dict of ``ad``, ``ad_se``, ``fd``, ``fd_se``
            (CRN central finite difference and its standard error over the same seeds), ``resolved``
            (``fd_se < RESOLVED × |fd|``), ``rel_err`` (|AD − FD| / |FD|) and ``rel_err_se`` (the standard
            error of AD − FD over the seeds, ÷ |FD|: AD and FD share each seed's randomness).
    """

    outputs: dict[str, float]
    gradients: dict[str, dict[str, Any]]
    forward_s: float
    backward_s: float
    mode: str
    seeds: tuple[int, ...]
    fd: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    samples: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_samples: dict[str, list[float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {
            "mode": self.mode,
            "seeds": list(self.seeds),
            "forward_s": round(self.forward_s, 4),
            "backward_s": round(self.backward_s, 4),
            "outputs": self.outputs,
            "gradients": self.gradients,
        }
        if len(self.seeds) > 1:
            out["standard_errors"] = _json_safe(self.errors)
        if self.fd:
            out["fd_check"] = _json_safe(self.fd)
        return out


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
    on_seed: Callable[[int, int], None] | None = None,
) -> Sensitivity:
    """d(each output)/d(each learnable parameter) of ``model`` run for ``days`` days (see module docs).

    Args:
        outputs: outcome texts or :class:`Output`.
        seeds: one run per seed; gradients and outputs are averaged.
        grad: reverse mode's tape: :class:`Checkpointed` (the lean default, ``None``: the forward pass keeps
            no tape and the backward pass replays segments; ``Checkpointed(overlap=True)`` runs the outputs'
            reverse passes at once on two threads, as ``populace sensitivity`` does: at 1M agents 11.5
            against 12.0–13.0 s, 1.21 GB either way, ``benchmarks/README.md``; it sets torch's thread
            count while it runs, the process's) or ``"full"`` (the whole run's tape).
        mode: ``"reverse"`` (one backward pass per output) or ``"forward"`` (one run per parameter entry).
        parameters: dotted names to differentiate (default: every learnable parameter).
        fd_check: parameters (scalars) to check by central finite differences with common random numbers,
            step ``fd_step`` × |value| (or × the bound range when the value is 0), fast mode, same seeds.
        on_seed: called as ``on_seed(done, seeds)`` after each seed's gradients (progress for a caller).
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
    values_by_seed: dict[str, list[float]] = {o.text: [] for o in outs}
    by_seed: dict[str, dict[str, list[torch.Tensor]]] = {o.text: {n: [] for n in names} for o in outs}
    counterfactual = _uses_counterfactual(model)
    for seed in seeds:
        totals = {o.text: 0.0 for o in outs}
        grads = {o.text: {n: torch.zeros_like(learnable[n]) for n in names} for o in outs}
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
        for o in outs:
            values_by_seed[o.text].append(totals[o.text])
            for n in names:
                by_seed[o.text][n].append(grads[o.text][n].detach().clone())
        if on_seed is not None:
            on_seed(len(values_by_seed[outs[0].text]), len(seeds))
    k = len(seeds)

    def error(samples: list[torch.Tensor]) -> Any:
        stacked = torch.stack(samples).double()
        if k < 2:
            return torch.full_like(stacked[0], math.nan).tolist()
        return (stacked.std(dim=0, correction=1) / math.sqrt(k)).tolist()

    report = Sensitivity(
        outputs={o: sum(v) / k for o, v in values_by_seed.items()},
        gradients={
            o: {n: (torch.stack(g).sum(0) / k).tolist() for n, g in per.items()} for o, per in by_seed.items()
        },
        forward_s=forward_s / k,
        backward_s=backward_s / k,
        mode=mode,
        seeds=tuple(seeds),
        samples={o: {n: [g.tolist() for g in gs] for n, gs in per.items()} for o, per in by_seed.items()},
        errors={o: {n: error(gs) for n, gs in per.items()} for o, per in by_seed.items()},
        output_samples=values_by_seed,
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
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per parameter and output: AD and the CRN central finite difference, each with its standard error
    over the seeds (module docs). One fast run a seed and side; only the outputs are kept."""
    specs = model.specs()
    params = dict(model.named_parameters())
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in names:
        p = params[name]
        if p.numel() != 1:
            raise ValueError(f"fd_check: {name} has {p.numel()} entries; only scalar parameters are checked")
        value = float(p.detach())
        low, high = specs[name].bounds if name in specs else (-math.inf, math.inf)
        h = step * (abs(value) if value != 0 else (high - low if math.isfinite(high - low) else 1.0))
        lo_v, hi_v = max(low, value - h), min(high, value + h)
        sides: list[dict[str, list[float]]] = []
        try:
            for v in (hi_v, lo_v):
                with torch.no_grad():
                    p.fill_(v)
                side: dict[str, list[float]] = {o.text: [] for o in outs}
                for s in seeds:
                    result = Simulation(model, seed=s, device=device).run(days, record=record)
                    for o in outs:
                        side[o.text].append(float(o(result)))
                sides.append(side)
        finally:
            with torch.no_grad():
                p.fill_(value)
        out[name] = {}
        for o in outs:
            fds = [(a - b) / (hi_v - lo_v) for a, b in zip(sides[0][o.text], sides[1][o.text], strict=True)]
            samples = report.samples[o.text].get(name)
            ads = [float(a) for a in samples] if samples is not None else [math.nan] * len(fds)
            fd, ad = sum(fds) / len(fds), sum(ads) / len(ads)
            fd_se = standard_error(fds)
            rel = abs(ad - fd) / abs(fd) if fd != 0 else math.inf if ad != 0 else 0.0
            diff_se = standard_error([a - f for a, f in zip(ads, fds, strict=True)])
            out[name][o.text] = {
                "ad": ad,
                "ad_se": standard_error(ads),
                "fd": fd,
                "fd_se": fd_se,
                "resolved": bool(fd != 0 and fd_se < RESOLVED * abs(fd)),
                "rel_err": rel,
                "rel_err_se": diff_se / abs(fd) if fd != 0 else math.nan,
            }
    return out
