"""The Sellke estimator corrected by counterfactual runs (an agent infected on a day it waited, common random
numbers): towards an unbiased infection gradient over a whole wave.

The Sellke estimator (:class:`~populace.estimators.Sellke`) rests on an exact identity: with Sellke
thresholds, for any outcome G,

    dE[G]/dθ = E[ Σᵢ Σ_{s < τᵢ} ∂hᵢ,ₛ/∂θ · cᵢ,ₛ ],   cᵢ,ₛ = G(i infected on day s) − G(the run),

where ∂hᵢ,ₛ/∂θ is the direct derivative of agent i's hazard on a day it waited (other agents' infections held
fixed) and cᵢ,ₛ is a *difference*: the outcome had i been infected that day (everyone else's thresholds, fates
and durations the same: common random numbers) against the outcome of the run. The reverse pass of
:class:`~populace.samplers.SellkeThreshold` computes every ĉᵢ,ₛ at once, but as derivatives (the value of an
infection at weight 1) and with a group mean for "infected on day s", so Σ ∂h/∂θ·ĉ is biased (low, over a
wave where households saturate: ``benchmarks/README.md``).

:class:`Counterfactual` keeps that whole estimate as a control variate and adds an unbiased correction
(importance sampling):

    ∇ = Σ_{i,s} ∂hᵢ,ₛ/∂θ · ĉᵢ,ₛ  +  (H / K) Σ_{k=1..K} ∂h_k/∂θ / h_k · (c_k − ĉ_k),

where the K pairs (agent, day) are drawn with replacement with probability h_k / H over every waiting
agent-day of the run (H: the total hazard on waiting agents), and each c_k is measured by one run without
gradients from day s_k with agent i_k infected that day, against the same run without it. Its expectation
is dE[G]/dθ exactly, whatever the quality of ĉ (which only sets the variance). The K sampled pairs are kept
in a single pass (K size-one weighted reservoirs). The correction's direct derivatives ∂h_k/∂θ come from a
second reverse pass from Σ_k w_k·h_k in which the infection draws pass no gradient back (so the correction
does not flow into earlier infections' values, which would count it twice).

That is the per-sample mode (``merged=False``): unbiased for every parameter, but each sample costs part
of a run and the differences c are heavy-tailed (most are 0 or 1, an early one can be hundreds), so it is
far over the cost of a useful variance (households benchmark: 64 samples cost 14× the differentiable
forward and left a standard deviation over seeds of 0.44 of the derivative).

The default mode (``merged=True``) infects all K sampled agents in *one* counterfactual run (each on its
day, unless that run has infected it already) and shares the difference equally: c̄ = (G(all K) − G(run)) / K.
The correction then becomes δ̄ · ∂H/∂θ, δ̄ = c̄ − mean ĉ over the samples, ∂H/∂θ the direct derivative of the
total waiting hazard (one blocked reverse pass, shared by every outcome). Two approximations, both
measured (``benchmarks/README.md``): (1) the sampled infections interact in one run (a one-sided
difference): the bias grows with K / H (households benchmark, H ≈ 30,000: AD/FD 0.92 / 0.95 / 0.94 / 0.88
at K = 64 / 128 / 256 / 512); (2) it is exact in expectation only for parameters the hazard is proportional
to (β, by which ∂h/∂θ / h is the same for every pair); for the others (a setting's weight, the asymptomatic
factor, the seeding) it assumes the Sellke error c − ĉ uncorrelated with that parameter's share of the
hazard, which it is not where the error sits in one setting.

Cost (merged): the differentiable forward, one run without gradients from the earliest sample's day (the
run up to it replays the forward; the differences use the forward's own series, reproduced exactly by the
same seed), the Sellke reverse pass, and one blocked reverse pass. Reverse mode only; the whole tape.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .estimators import ESTIMATORS, Draw, Sellke
from .model import Model
from .samplers import LaterInfections, SellkeThreshold

if TYPE_CHECKING:
    from .simulate import Result

__all__ = ["Counterfactual", "CounterfactualRecord", "counterfactual_gradient"]


class CounterfactualRecord(LaterInfections):
    """:class:`~populace.samplers.LaterInfections` that also draws the K (agent, day) pairs of the correction
    in the forward pass (each of ``samples`` slots holds one pair drawn with probability h / H over every
    waiting agent-day so far), keeps each pair's hazard (a graph node) and, in the reverse pass, its Sellke
    value ĉ (``hat``). ``blocked``: the reverse pass of the draws passes no gradient back (the pass that
    gives the correction's direct derivatives)."""

    def __init__(self, group: torch.Tensor | None, samples: int, seed: int) -> None:
        super().__init__(group)
        self.samples = samples
        self.generator = torch.Generator().manual_seed(seed)
        self.total = 0.0
        self.agent = [-1] * samples
        self.days = [-1] * samples
        self.rate: list[torch.Tensor | None] = [None] * samples
        self.hat: list[float | None] = [None] * samples
        self.blocked = False
        self.hazard: torch.Tensor | float = 0.0

    def offer(self, day: int, rate: torch.Tensor, waiting: torch.Tensor) -> None:
        """Today's waiting agents and their hazards ``rate`` (``float32[agents]``, carrying gradients)."""
        waiting_rate = torch.where(waiting, rate, 0.0)
        weight = waiting_rate.detach()
        summed = waiting_rate.sum()
        self.hazard = self.hazard + summed
        today = float(summed.detach())
        if not today > 0:
            return
        self.total += today
        replace = torch.rand(self.samples, generator=self.generator) < today / self.total
        slots = torch.nonzero(replace).squeeze(1).tolist()
        if not slots:
            return
        picks = torch.multinomial(weight.cpu(), len(slots), replacement=True, generator=self.generator)
        for slot, agent in zip(slots, picks.tolist(), strict=True):
            self.agent[slot], self.days[slot], self.rate[slot] = agent, day, rate[agent]

    def pairs(self) -> list[tuple[int, int]]:
        """The sampled (day, agent) pairs, one per slot."""
        return list(zip(self.days, self.agent, strict=True))


class CounterfactualThreshold(SellkeThreshold):
    """:class:`~populace.samplers.SellkeThreshold` that records the value ĉ of the sampled pairs of its day
    and passes nothing back when its record is ``blocked``."""

    @staticmethod
    def backward(  # type: ignore[override]  # None when blocked: nothing flows back, nothing is computed
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        later: CounterfactualRecord = ctx.later
        if later.blocked:
            return None, None, None, None, None
        out = SellkeThreshold.backward(ctx, grad)
        value = out[0]
        for slot, (day, agent) in enumerate(later.pairs()):
            if day == ctx.day:
                later.hat[slot] = float(value[agent])
        return out


@dataclass(frozen=True)
class Counterfactual(Sellke):
    """The Sellke estimator plus a correction from ``samples`` agent-days sampled in the forward pass (see
    module docs); the gradient is taken by :func:`counterfactual_gradient` (which
    :func:`~populace.sensitivity.sensitivity` calls for it). ``merged`` (default): one counterfactual run
    with every sampled infection, its difference shared (exact for parameters the hazard is proportional to,
    such as β, up to the interaction of the sampled infections; see module docs); otherwise one run per
    sample (unbiased for every parameter, and costly). ``seed``: of the sampling. A plain ``backward()``
    (e.g. a calibration's) gets the Sellke gradient only: the correction needs the counterfactual runs."""

    samples: int = 128
    seed: int = 0
    merged: bool = True
    name: ClassVar[str] = "counterfactual"

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples: expected at least 1 counterfactual run, got {self.samples!r}")

    def later(self, group: torch.Tensor | None) -> LaterInfections | None:
        return CounterfactualRecord(group, self.samples, self.seed)

    def infect(self, draw: Draw) -> torch.Tensor:
        later = draw.later
        if not isinstance(later, CounterfactualRecord):
            raise ValueError("estimator: Counterfactual needs the state's record of later infections")
        waiting = draw.waiting()
        later.offer(draw.day, draw.rate, waiting)
        return CounterfactualThreshold.apply(draw.rate, draw.sample, waiting, draw.day, later)


Outcome = Callable[["Result"], torch.Tensor]


def _counterfactual_outcomes(
    model: Model,
    layer: int,
    seed: int,
    run: Result,
    outcomes: Sequence[Outcome],
    pairs: Sequence[tuple[int, int]],
    merged: bool = False,
    device: torch.device | str = "cpu",
) -> list[list[float]]:
    """For each outcome G and each (day, agent) pair: G with that agent infected on that day minus G of
    ``run`` (the differentiable run; common random numbers: a run without gradients with the same seed, the
    agent's threshold set to −1 before the day, reproduces ``run`` until then). ``merged``: one run with
    every pair's infection, its difference shared equally by the pairs."""
    from .simulate import Result, Simulation

    days = int(run.days.numel())
    sim = Simulation(model, seed=seed, device=device)
    series = {n: v.detach() for n, v in run.series.items()}
    by_day: dict[int, list[int]] = {}
    for k, (day, _) in enumerate(pairs):
        by_day.setdefault(day, []).append(k)
    reference = [float(o(run).detach()) for o in outcomes]
    results = [[0.0] * len(pairs) for _ in outcomes]

    def finish(branch: list[Any], first: int, inject: dict[int, list[int]]) -> list[float]:
        tail: dict[str, list[torch.Tensor]] = {n: [] for n in series}
        for d in range(first, days):
            for k in inject.get(d, []):
                threshold = branch[layer].threshold
                agent = pairs[k][1]
                if torch.isfinite(threshold[agent]):  # not infected already by an earlier pair's cascade
                    threshold[agent] = -1.0
            branch = model.step(branch, sim._ctx(d))
            for n, v in model.observe(branch).items():
                if n in tail:
                    tail[n].append(v.clone())
        joined = {n: torch.cat([series[n][:first], torch.stack(tail[n])]) for n in series}
        return [float(o(Result(days=run.days, series=joined, labels=run.labels))) for o in outcomes]

    states = sim.states
    last = max(by_day, default=-1)
    with torch.no_grad():
        for day in range(last + 1):
            if merged:
                if day == min(by_day):
                    results = [[t / len(pairs)] * len(pairs) for t in finish(states, day, by_day)]
                    break
            else:
                for k in by_day.get(day, []):
                    for o, v in enumerate(finish(copy.deepcopy(states), day, {day: [k]})):
                        results[o][k] = v
            if day < last:
                states = model.step(states, sim._ctx(day))
    shares = [r / len(pairs) if merged else r for r in reference]
    return [[r - share for r in row] for row, share in zip(results, shares, strict=True)]


ESTIMATORS[Counterfactual.name] = Counterfactual  # a scenario's `estimator` option may name it


@dataclass
class CounterfactualGradient:
    """What :func:`counterfactual_gradient` measured for one outcome: the gradients (``grad``) and their
    Sellke part (``sellke``) by parameter name, the outcome's value, the sampled pairs' differences ``c``
    and Sellke values ``hat`` (one difference, shared, when merged), and CPU seconds by phase."""

    grad: dict[str, torch.Tensor]
    sellke: dict[str, torch.Tensor]
    value: float
    c: list[float]
    hat: list[float]
    pairs: list[tuple[int, int]]
    total: float
    seconds: dict[str, float]


def counterfactual_gradient(
    model: Model,
    days: int,
    outcomes: Mapping[str, Outcome],
    seed: int = 0,
    params: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, CounterfactualGradient]:
    """d outcome / d each parameter (``params``: names, default all that require gradients) of one run of
    ``days`` days with seed ``seed``, for each of ``outcomes`` (name → function of the run's
    :class:`~populace.simulate.Result`, e.g. a :class:`~populace.sensitivity.Output`), for a model whose
    disease layer uses :class:`Counterfactual`. One forward pass, one set of counterfactual runs shared by
    the outcomes, two reverse passes per outcome."""
    from .simulate import Simulation

    layers = model.ordered_layers()
    index = next(
        (
            i
            for i, layer in enumerate(layers)
            if isinstance(getattr(layer, "estimator", None), Counterfactual)
        ),
        None,
    )
    if index is None:
        raise ValueError("model: expected a disease layer with estimator=Counterfactual()")
    est = getattr(layers[index], "estimator")  # noqa: B009
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    chosen = list(named) if params is None else list(params)
    unknown = [n for n in chosen if n not in named]
    if unknown:
        raise ValueError(f"params: unknown or fixed parameters {unknown}")
    tensors = [named[n] for n in chosen]
    clock = [time.process_time()]
    sim = Simulation(model, seed=seed, grad="full", device=device)
    result = sim.run(days)
    ys = {name: o(result) for name, o in outcomes.items()}
    clock.append(time.process_time())
    record = sim.states[index].later  # type: ignore[attr-defined]
    assert isinstance(record, CounterfactualRecord)
    pairs = record.pairs()
    cs = _counterfactual_outcomes(
        model, index, seed, result, list(outcomes.values()), pairs, est.merged, device
    )
    clock.append(time.process_time())
    out: dict[str, CounterfactualGradient] = {}
    backward = correction = 0.0
    direct: Sequence[torch.Tensor | None] | None = None
    for (name, y), c in zip(ys.items(), cs, strict=True):
        t0 = time.process_time()
        record.hat = [None] * record.samples
        first = torch.autograd.grad(y, tensors, retain_graph=True, allow_unused=True)
        sellke = {
            n: g if g is not None else torch.zeros_like(t)
            for n, g, t in zip(chosen, first, tensors, strict=True)
        }
        t1 = time.process_time()
        hat = [h if h is not None else 0.0 for h in record.hat]
        record.blocked = True
        try:
            if est.merged:
                # every outcome's correction is a multiple of the direct derivative of the total hazard
                if direct is None:
                    assert isinstance(record.hazard, torch.Tensor)
                    direct = torch.autograd.grad(record.hazard, tensors, retain_graph=True, allow_unused=True)
                shift = sum(c) / len(c) - sum(hat) / len(hat)
                second = [None if g is None else shift * g for g in direct]
            else:
                total: torch.Tensor | float = 0.0
                for k, node in enumerate(record.rate):
                    assert node is not None
                    total = (
                        total + record.total / record.samples * (c[k] - hat[k]) / float(node.detach()) * node
                    )
                assert isinstance(total, torch.Tensor)
                second = list(torch.autograd.grad(total, tensors, retain_graph=True, allow_unused=True))
        finally:
            record.blocked = False
        t2 = time.process_time()
        backward, correction = backward + t1 - t0, correction + t2 - t1
        grad = {n: sellke[n] + (g if g is not None else 0.0) for n, g in zip(chosen, second, strict=True)}
        out[name] = CounterfactualGradient(grad, sellke, float(y.detach()), c, hat, pairs, record.total, {})
    seconds = {
        "forward": round(clock[1] - clock[0], 3),
        "counterfactuals": round(clock[2] - clock[1], 3),
        "backward": round(backward, 3),
        "correction": round(correction, 3),
    }
    for g in out.values():
        g.seconds = seconds
    return out
