"""Differentiable samplers: exact discrete samples forward, gradient estimators backward.

Each estimator is a ``torch.autograd.Function`` with ``backward`` (reverse mode) and ``jvp`` (forward
mode, works with ``torch.func.jvp`` and ``torch.autograd.forward_ad``). The forward value is always
the exact sample (0/1, or an integer count), so agent states stay integral; the estimator only shapes
the derivative.

Estimators (bias measured against finite differences with common random numbers, see
``tests/test_samplers.py`` and ``benchmarks/estimator_bias.py``):

* :class:`SmoothedBernoulli` (default): x ~ Bernoulli(p); dx/dp := ½·[x/p + (1−x)/(1−p)].
  Unbiased for one draw, E[dx/dp] = 1 (Arya et al., NeurIPS 2022, smoothed stochastic derivatives,
  symmetrised). Through a whole epidemic the chained estimate is biased; DESIGN.md §4 measured −18%
  on a 2,000-agent network SIR.
* :class:`SmoothedBinomial`: k ~ Binomial(n, p); dk/dp := ½·[k/p + (n−k)/(1−p)], E = n (the sum of the
  Bernoulli rule over n trials).
* :class:`HardGumbel`: x = 1[u < p] (the same sample), with the straight-through Gumbel-softmax
  derivative of y = σ((logit p − logit u)/τ) (Jang et al. 2017; GradABM uses τ≈0.1). Biased even for
  one draw (it differentiates a smoothed step); measured in the tests.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd import Function

__all__ = ["HardGumbel", "SmoothedBernoulli", "SmoothedBinomial", "bernoulli", "binomial"]

_EPS = 1e-6


def _smoothed_weight(p: torch.Tensor, k: torch.Tensor, n: torch.Tensor | float = 1.0) -> torch.Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return 0.5 * (k / p + (n - k) / (1 - p))


class SmoothedBernoulli(Function):
    """``apply(p, x)``: returns ``x`` (an exact 0/1 sample of Bernoulli(p), given as float) with the
    smoothed derivative ½·[x/p + (1−x)/(1−p)] with respect to ``p``."""

    @staticmethod
    def forward(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x.to(p.dtype, copy=True)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        p, x = inputs
        ctx.save_for_backward(p, x)
        ctx.save_for_forward(p, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        p, x = ctx.saved_tensors
        return grad * _smoothed_weight(p, x.to(p.dtype)), None

    @staticmethod
    def jvp(ctx: Any, p_t: torch.Tensor, x_t: Any) -> torch.Tensor:
        p, x = ctx.saved_tensors
        return p_t * _smoothed_weight(p, x.to(p.dtype))


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
        return x.to(p.dtype, copy=True)

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
