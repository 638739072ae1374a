"""Differentiable samplers: exact discrete samples forward, gradient estimators backward.

Each estimator is a ``torch.autograd.Function`` with ``backward`` (reverse mode) and ``jvp`` (forward
mode, works with ``torch.func.jvp`` and ``torch.autograd.forward_ad``). The forward value is always
the exact sample (0/1, or an integer count), so agent states stay integral; the estimator only shapes
the derivative.

Estimators, with their bias measured against finite differences with common random numbers (CRN). Tests:
``tests/test_samplers.py``. Numbers: ``python benchmarks/estimator_bias.py`` (defaults; ~1 min on one
thread; results appended to ``benchmarks/estimator_bias.json``), 2026-11-21, torch 2.13 CPU. "Single
draw": 10⁶ agents with p = σ(θ·a + b) spread over (0, 1), 8 replicates, AD vs the exact derivative.
"bench-seir": 20,000 agents, d(attack = N − S at day t)/dθ, Σ over run seeds 0–39 of AD / Σ of the CRN
central FD (h = 10% of θ, the same run seed at θ ± h) − 1, ± its bootstrap s.d. over seeds.

* :class:`SmoothedBernoulli` (default): x ~ Bernoulli(p); dx/dp := ½·[x/p + (1−x)/(1−p)].
  Unbiased for one draw, E[dx/dp] = 1 (Arya et al., NeurIPS 2022, smoothed stochastic derivatives,
  symmetrised): single draw +0.03% ± 0.02% (exactly 0 on stratified uniforms). Through a whole epidemic
  the chained estimate is strongly biased *low*: bench-seir d(attack)/dβ −45% ± 1% at day 30,
  −60% ± 0.6% at day 45, −64% ± 0.5% at day 60; for each setting weight (household, school, work,
  community) −40…−47%, −58…−62%, −63…−67%; the test's 10,000 agents, 50 days, seeds 0–15: −60.5%.
  (DESIGN.md §4 measured −18% on a 2,000-agent network SIR.) Why (analysis, not measured): half of
  E[dx/dp] sits on draws with x = 0, i.e. on agents who stay uninfected, whose onward transmission the
  chain rule never sees; so each generation of the cascade keeps only about half its sensitivity and
  the bias grows with the number of generations.
* :class:`SmoothedBinomial`: k ~ Binomial(n, p); dk/dp := ½·[k/p + (n−k)/(1−p)], E = n (the sum of the
  Bernoulli rule over n trials). Single draw −0.003% ± 0.003%. (``torch.binomial`` with the same
  generator seed at p ± h couples draws only loosely, 30–40% of counts move against the change in p, so
  CRN finite differences of it are noisy.)
* :class:`HardGumbel`: x = 1[u < p] (the same sample), with the straight-through Gumbel-softmax
  derivative of y = σ((logit p − logit u)/τ) (Jang et al. 2017; GradABM uses τ≈0.1). Biased even for
  one draw (it differentiates a smoothed step), but only slightly at τ = 0.1: E_u[dx/dp] − 1 = +1.65%
  for p → 0 (the limit is πτ/sin(πτ) − 1), +0.74% at p = 0.1, −0.80% at p = 0.5 (τ = 0.05: +0.41%,
  −0.20%; τ = 0.2: +6.8%, −3.0%; τ = 0.5: +55%, −14%); −0.5% ± 0.1% on the single-draw mix. Through
  bench-seir (Sellke thresholds supply u) it is far less biased than the smoothed rule: d(attack)/dβ
  −8% ± 3% at day 30, −9% ± 2% at day 45, +10% ± 3% at day 60; setting weights −6…−10%, −5…−11%,
  +4…+11%; the test's configuration: +2%. Its per-run AD is noisier (coefficient of variation over
  seeds 0.23–0.32 against 0.18 for the smoothed rule, day 60). Why (analysis): its derivative sits on
  agents near their threshold, who, if not infected today, mostly are a day or two later and then
  transmit, so the cascade's sensitivity is kept.

For an infection with Sellke thresholds (each agent is infected on the first day its cumulative hazard
Λ passes an Exp(1) threshold drawn once), :class:`SellkeThreshold` differentiates the *hazard* instead of
the draw. In discrete days, with g(s) the expected outcome if agent i is infected on day s and τᵢ the day it
is (∞ if never), summation by parts of dE[g]/dθ = Σₜ e^{−Λₜ}·∂Λₜ/∂θ·(g(t) − g(t+1)) gives exactly

    dE[g]/dθ = E[ Σᵢ Σ_{s < τᵢ} ∂hᵢ,ₛ/∂θ · (gᵢ(s) − gᵢ(τᵢ)) ]:

each day an agent waits, a little more hazard would have pulled its infection forward from τᵢ to that
day. The reverse pass has both terms: gᵢ(τᵢ) is the gradient that reached the agent's own infection
(0 if never infected), and gᵢ(s), for an agent that was *not* infected on day s, is estimated by the mean
gradient of the agents in its group (:class:`LaterInfections`) that were (the only approximation). Unlike
the straight-through estimators it never counts an infection that would only have come later as one that
would never have come. Reverse mode only. Measured on ``nyc-covid`` over a 120-day wave
(``benchmarks/estimator_bias_wave.py``, 100k agents, AD/FD, deaths / peak hospitalised / infections;
groups: borough × age band): β 0.75 / 0.82 / 0.85 over 32 seeds (0.90 / 0.89 / 0.89 over 8), against
1.84 / 3.81 / 2.77 with :class:`HardGumbel` (8 seeds).

For a *branch* (an agent takes one of two paths, e.g. admitted or not at symptom onset), both paths are
simulated forward as agent states, so :func:`branch_weights` gives each path its own likelihood-ratio
weight: value 1, derivative d log P(path)/dp (x/p on the taken path, −(1−x)/(1−p) on the other). It is
unbiased for everything counted downstream of either path; the smoothed rule, which splits one derivative
between the two, keeps only half of it on the path that reaches a count (measured with the COVID layer:
d admissions / d severe_scale 883 against 2,830 by finite differences; with branch weights see
``tests/test_covid.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import Function

from .masks import copy_as, numeric

__all__ = [
    "BackwardRecord",
    "HardGumbel",
    "LaterInfections",
    "SellkeThreshold",
    "SmoothedBernoulli",
    "SmoothedBinomial",
    "bernoulli",
    "binomial",
]

_EPS = 1e-6


def _smoothed_weight(p: torch.Tensor, k: torch.Tensor, n: torch.Tensor | float = 1.0) -> torch.Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return 0.5 * (k / p + (n - k) / (1 - p))


class SmoothedBernoulli(Function):
    """``apply(p, x)``: returns ``x`` (an exact 0/1 sample of Bernoulli(p), ``bool`` or float) as a float
    tensor with the smoothed derivative ½·[x/p + (1−x)/(1−p)] with respect to ``p``. Given as ``bool``, the
    tape keeps it in a quarter of the bytes."""

    @staticmethod
    def forward(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return copy_as(x, p.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        p, x = inputs
        ctx.save_for_backward(p, x)
        ctx.save_for_forward(p, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        p, x = ctx.saved_tensors
        return grad * _smoothed_weight(p, numeric(x)), None

    @staticmethod
    def jvp(ctx: Any, p_t: torch.Tensor, x_t: Any) -> torch.Tensor:
        p, x = ctx.saved_tensors
        return p_t * _smoothed_weight(p, numeric(x))


class SmoothedBinomial(Function):
    """``apply(n, p, k)``: returns the exact count ``k`` ~ Binomial(n, p) with derivative
    ½·[k/p + (n−k)/(1−p)] with respect to ``p`` (``n`` is a constant number of trials)."""

    @staticmethod
    def forward(n: torch.Tensor, p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return k.to(p.dtype, copy=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        n, p, k = inputs
        ctx.save_for_backward(n, p, k)
        ctx.save_for_forward(n, p, k)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        n, p, k = ctx.saved_tensors
        return None, grad * _smoothed_weight(p, k.to(p.dtype), n.to(p.dtype)), None

    @staticmethod
    def jvp(ctx: Any, n_t: Any, p_t: torch.Tensor, k_t: Any) -> torch.Tensor:
        n, p, k = ctx.saved_tensors
        return p_t * _smoothed_weight(p, k.to(p.dtype), n.to(p.dtype))


class HardGumbel(Function):
    """``apply(p, u, x, tau)``: returns the sample x = 1[u < p] (given, so that callers that couple draws
    differently keep their exact forward values) with the straight-through Gumbel-softmax derivative.

    With logistic noise l = logit(1−u), x = 1[logit p + l > 0] is the hard Gumbel-softmax sample of a
    two-class draw and equals the Bernoulli sample from the same uniform ``u`` (so all estimators share
    common random numbers). Backward differentiates y = σ((logit p − logit u)/τ).
    """

    @staticmethod
    def forward(p: torch.Tensor, u: torch.Tensor, x: torch.Tensor, tau: float) -> torch.Tensor:
        return copy_as(x, p.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        p, u, _, tau = inputs
        ctx.tau = tau
        ctx.save_for_backward(p, u)
        ctx.save_for_forward(p, u)

    @staticmethod
    def _dy_dp(ctx: Any) -> torch.Tensor:
        p, u = ctx.saved_tensors
        p = p.clamp(_EPS, 1 - _EPS)
        u = u.clamp(_EPS, 1 - _EPS)
        y = torch.sigmoid((torch.logit(p) - torch.logit(u)) / ctx.tau)
        return y * (1 - y) / (ctx.tau * p * (1 - p))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return grad * HardGumbel._dy_dp(ctx), None, None, None

    @staticmethod
    def jvp(ctx: Any, p_t: torch.Tensor, u_t: Any, x_t: Any, tau_t: Any) -> torch.Tensor:
        return p_t * HardGumbel._dy_dp(ctx)


class BackwardRecord:
    """What a custom function's backward pass remembers from one day to the one before, as the reverse pass
    walks the days backwards. The lean reverse mode (:func:`populace.replay.vjps`) can run several reverse
    passes, segment by segment and two at once on two threads: it calls :meth:`use_pass` in the thread that
    continues a pass, and a record keeps one memory per pass (:meth:`memory`, :meth:`remember`)."""

    def __init__(self) -> None:
        self._memories: dict[int, Any] = {}
        self._thread = threading.local()

    def use_pass(self, k: int) -> None:
        """Continue reverse pass ``k`` in this thread (0 unless several run)."""
        self._thread.k = k

    def current_pass(self) -> int:
        """The pass this thread continues."""
        return int(getattr(self._thread, "k", 0))

    def memory(self) -> Any:
        """What the pass this thread continues has remembered (``None``: nothing yet)."""
        return self._memories.get(self.current_pass())

    def remember(self, memory: Any) -> None:
        self._memories[self.current_pass()] = memory

    def __getstate__(self) -> dict[str, Any]:  # copy.deepcopy of a layer state (counterfactuals, explorer)
        state = self.__dict__.copy()
        del state["_thread"]  # which pass each thread continues is not copied
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread = threading.local()


class LaterInfections(BackwardRecord):
    """What the reverse pass of :class:`SellkeThreshold` has learnt of later days: each agent's value of its
    own infection (the gradient that reached it on the day it was infected; 0 for agents never infected).

    ``group`` (``int64[agents]``, optional): an earlier infection of an agent is valued at the mean of that
    day's infections in its group (all of them for a group with none that day), not of all of them.

    One per simulated population, kept in its layer state. Reverse mode visits days from the last to the
    first, so a pass that reaches a day at or after the last one it saw is a new backward pass (one per
    output in :func:`~populace.sensitivity.sensitivity`) and starts afresh.
    """

    def __init__(self, group: torch.Tensor | None = None) -> None:
        super().__init__()
        self.group = group
        self.groups = int(group.max()) + 1 if group is not None and group.numel() else 0
        self.add_up: Callable[[torch.Tensor], torch.Tensor] | None = None

    def across(self, groups: int, add_up: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """For a population split over processes: today's infections are counted and valued over all of
        them (``add_up`` sums a tensor over the processes; ``groups``: the number of groups of the whole
        population)."""
        self.groups, self.add_up = groups, add_up

    def today(
        self, value: torch.Tensor, members: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The mean value of today's infections (``value``, of this process's infected agents), and its
        mean per group (``members``: their groups), over every process."""
        g = self.groups if members is not None else 0
        stats = value.new_zeros(2 + 2 * g, dtype=torch.float64)
        stats[0], stats[1] = value.double().sum(), value.numel()
        if members is not None:
            stats[2 : 2 + g].index_add_(0, members, value.double())
            stats[2 + g :].index_add_(0, members, torch.ones_like(value, dtype=torch.float64))
        if self.add_up is not None:
            stats = self.add_up(stats)
        mean = (stats[0] / stats[1].clamp(min=1)).to(value.dtype)
        if members is None:
            return mean, None
        total, count = stats[2 : 2 + g], stats[2 + g :]
        return mean, torch.where(count > 0, total / count.clamp(min=1), mean.double()).to(value.dtype)

    def values(self, day: int, like: torch.Tensor) -> torch.Tensor:
        """The agents' own values for the reverse pass now at ``day`` (written in place by its backward)."""
        own, last = self.memory() or (None, None)
        if own is None or last is None or day >= last:
            own = torch.zeros_like(like)
        self.remember((own, day))
        return own


class SellkeThreshold(Function):
    """``apply(hazard, infected, waiting, day, later)``: returns ``infected`` (today's infections, 0/1, the
    exact sample) as a float tensor whose derivative goes to ``hazard`` (``float[agents]``, today's hazard on
    each agent, susceptibility included): for the agents ``waiting`` (``bool[agents]``, still uninfected
    after today) the gradient of ``hazard`` is (mean value of today's infections) − (own later value, from
    ``later``: :class:`LaterInfections`). See the module docs; reverse mode only.
    """

    @staticmethod
    def forward(
        hazard: torch.Tensor, infected: torch.Tensor, waiting: torch.Tensor, day: int, later: LaterInfections
    ) -> torch.Tensor:
        return copy_as(infected, hazard.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, infected, waiting, ctx.day, ctx.later = inputs
        ctx.save_for_backward(infected, waiting)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        infected, waiting = ctx.saved_tensors
        later = ctx.later
        own = later.values(ctx.day, grad)
        new = infected.bool()
        value = grad[new]
        if later.add_up is not None:  # over every process of a split population
            mean, by_group = later.today(value, None if later.group is None else later.group[new])
            today = mean if by_group is None else torch.index_select(by_group, 0, later.group)
        else:
            today = value.mean() if value.numel() else grad.new_zeros(())
            if later.group is not None:
                members = later.group[new]
                count = torch.bincount(members, minlength=later.groups).to(grad.dtype)
                total = grad.new_zeros(later.groups).index_add_(0, members, value)
                # index_select, not [later.group]: 1.1 against 5.5 ms at 1M agents (and its backward too)
                today = torch.index_select(
                    torch.where(count > 0, total / count.clamp(min=1), today), 0, later.group
                )
        own[new] = value
        # 0 off waiting (torch.where: 1.5-4 ms at 1M agents)
        return (today - own).mul_(numeric(waiting)), None, None, None, None

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> torch.Tensor:
        raise ValueError(
            "mode: forward mode cannot use the 'sellke' infection estimator (its derivative needs the values "
            "of later infections): use reverse mode, or estimator='gumbel' on the layer"
        )


def branch_weights(p: torch.Tensor, taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Path weights of a two-way branch with probability ``p`` that ``taken`` (``bool``) agents took.

    Returns ``(yes, no)``: for the agents that took the branch, ``p / p̄`` (``p̄`` = ``p`` detached), and for
    the others ``(1 − p) / (1 − p̄)``. Both equal 1 in value; their derivatives are the likelihood ratios of
    the path taken, so E[d yes·1[taken] / dp] = 1 and E[d no·1[not taken] / dp] = −1 (see module docs).
    """
    fixed = p.detach()
    yes = (p / fixed.clamp(min=1e-12))[taken]
    no = ((1 - p) / (1 - fixed).clamp(min=1e-12))[~taken]
    return yes, no


def bernoulli(
    p: torch.Tensor, u: torch.Tensor, estimator: str = "smoothed", tau: float = 0.1
) -> torch.Tensor:
    """Exact Bernoulli(p) sample 1[u < p] from uniforms ``u``, differentiable in ``p``.

    ``estimator``: ``"smoothed"`` (default) or ``"gumbel"`` (hard Gumbel-softmax with temperature ``tau``).
    """
    if estimator == "smoothed":
        return SmoothedBernoulli.apply(p, u < p)
    if estimator == "gumbel":
        return HardGumbel.apply(p, u, u < p, tau)
    raise ValueError(f"estimator: expected 'smoothed' or 'gumbel', got {estimator!r}")


def binomial(n: torch.Tensor, p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact Binomial(n, p) counts, differentiable in ``p`` by the smoothed rule."""
    n = n.to(p.dtype)
    k = torch.binomial(n.detach(), p.detach().clamp(0, 1), generator=generator)
    return SmoothedBinomial.apply(n, p, k)
