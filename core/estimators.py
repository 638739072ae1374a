"""Infection estimators: the strategy that gives an exact infection draw its derivative.

An estimator is an object passed to a disease layer (``SEIR(..., estimator=Sellke())``), as Diffrax passes
``adjoint=``: the layer draws the exact sample (states stay integral) and asks its estimator only for the
derivative. Each declares whether it works in forward mode (``torch.func.jvp``). The samplers they use, and
the bias of each measured against finite differences, are documented in :mod:`populace.samplers`.

* :class:`Sellke` differentiates the hazard of the Sellke construction
  (:class:`~populace.samplers.SellkeThreshold`): reverse mode only, the least biased over a whole wave.
* :class:`Gumbel` (hard Gumbel-softmax, temperature ``tau``): the draw's straight-through derivative from the
  uniform its threshold implies.
* :class:`Smoothed`: the symmetrised smoothed derivative of one Bernoulli draw (unbiased for one draw,
  strongly biased low through a cascade).
* :class:`~populace.counterfactual.Counterfactual`: the Sellke estimate plus a correction measured by
  counterfactual runs (an agent infected on a day it waited, common random numbers): unbiased with one run
  per sample, exact for the transmissibility only in its cheaper merged default, and too noisy at city
  scale within 3× the forward's cost (measured, :mod:`populace.counterfactual`): reverse mode, whole tape,
  through :func:`~populace.counterfactual.counterfactual_gradient` (which
  :func:`~populace.sensitivity.sensitivity` calls for it).

Scenarios expose the choice as text (``--set estimator=gumbel``): :func:`estimator` turns a name into an
object, :data:`ESTIMATORS` lists the names.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from .samplers import HardGumbel, LaterInfections, SellkeThreshold, SmoothedBernoulli

__all__ = ["ESTIMATORS", "Draw", "Estimator", "Gumbel", "Sellke", "Smoothed", "estimator"]


@dataclass(frozen=True)
class Draw:
    """Today's infection draw, as a disease layer hands it to its estimator. What only some estimators use
    is computed when asked for (each is a pass over every agent).

    Attributes:
        rate: ``float32[agents]`` today's hazard on each agent (≥ 0), carrying gradients.
        sample: ``bool[agents]`` who is infected today (the exact sample).
        threshold: ``float32[agents]`` each agent's hazard still needed before today (``inf`` unless
            susceptible), divided by its fixed susceptibility.
        susceptible: ``float32[agents]`` that fixed susceptibility, or ``None`` (1 for everyone).
        opening: computes each agent's soft susceptibility (:meth:`open_`).
        day: today.
        later: what the reverse pass learns of later infections (from :meth:`Estimator.later`).
    """

    rate: torch.Tensor
    sample: torch.Tensor
    threshold: torch.Tensor
    susceptible: torch.Tensor | None
    opening: Callable[[], torch.Tensor]
    day: int
    later: LaterInfections | None

    def open_(self) -> torch.Tensor:
        """``float32[agents]`` each agent's soft susceptibility (1 − its infection weight, mostly)."""
        return self.opening()

    def uniform(self) -> torch.Tensor:
        """``float32[agents]`` the uniform each agent's threshold implies today."""
        scaled = self.threshold if self.susceptible is None else self.threshold * self.susceptible
        return -torch.expm1(-scaled.clamp(min=0))

    def waiting(self) -> torch.Tensor:
        """``bool[agents]`` the agents still susceptible after today."""
        # finite and not sampled; a sampled agent's threshold is finite, so this is an exclusive or of the two
        # (0.7 ms at 1M agents against 1.9 ms for isfinite(threshold) & ~sample)
        return (self.threshold < math.inf) ^ self.sample


@dataclass(frozen=True)
class Estimator(abc.ABC):
    """How the derivative of a 0/1 draw is estimated (see module docs)."""

    forward_mode: ClassVar[bool]
    """Whether the estimator works in forward mode (``torch.func.jvp``)."""
    name: ClassVar[str]

    def later(self, group: torch.Tensor | None) -> LaterInfections | None:
        """What the reverse pass must remember of later infections (``None``: nothing)."""
        return None

    @abc.abstractmethod
    def bernoulli(self, p: torch.Tensor, u: torch.Tensor | None, sample: torch.Tensor) -> torch.Tensor:
        """The exact 0/1 ``sample`` (``bool``) of Bernoulli(``p``) (drawn as ``u < p``; ``u`` may be unknown)
        as a float tensor carrying the estimator's derivative with respect to ``p``."""

    def infect(self, draw: Draw) -> torch.Tensor:
        """Today's infections (the exact ``draw.sample``) as a float tensor whose derivative goes to
        ``draw.rate``."""
        return self.bernoulli(-torch.expm1(-draw.rate) * draw.open_(), None, draw.sample)


@dataclass(frozen=True)
class Sellke(Estimator):
    """Differentiates the hazard, not the draw (:class:`~populace.samplers.SellkeThreshold`): each day an
    agent waits, more hazard would have pulled its infection forward. Reverse mode only. Other draws of the
    layer (e.g. restocking a farm) use the smoothed rule."""

    forward_mode: ClassVar[bool] = False
    name: ClassVar[str] = "sellke"

    def later(self, group: torch.Tensor | None) -> LaterInfections | None:
        return LaterInfections(group)

    def bernoulli(self, p: torch.Tensor, u: torch.Tensor | None, sample: torch.Tensor) -> torch.Tensor:
        return SmoothedBernoulli.apply(p, sample)

    def infect(self, draw: Draw) -> torch.Tensor:
        if draw.later is None:
            raise ValueError("estimator: Sellke needs the state's record of later infections")
        return SellkeThreshold.apply(draw.rate, draw.sample, draw.waiting(), draw.day, draw.later)


@dataclass(frozen=True)
class Gumbel(Estimator):
    """Hard Gumbel-softmax: the exact sample forward, the derivative of σ((logit p − logit u)/τ) backward
    (Jang et al. 2017; :class:`~populace.samplers.HardGumbel`)."""

    tau: float = 0.1
    forward_mode: ClassVar[bool] = True
    name: ClassVar[str] = "gumbel"

    def __post_init__(self) -> None:
        if not self.tau > 0:
            raise ValueError(f"tau: expected a temperature > 0, got {self.tau!r}")

    def bernoulli(self, p: torch.Tensor, u: torch.Tensor | None, sample: torch.Tensor) -> torch.Tensor:
        if u is None:
            return SmoothedBernoulli.apply(p, sample)
        return HardGumbel.apply(p, u, sample, self.tau)

    def infect(self, draw: Draw) -> torch.Tensor:
        p = -torch.expm1(-draw.rate) * draw.open_()
        return self.bernoulli(p, draw.uniform(), draw.sample)


@dataclass(frozen=True)
class Smoothed(Estimator):
    """The symmetrised smoothed derivative ½·[x/p + (1−x)/(1−p)]
    (:class:`~populace.samplers.SmoothedBernoulli`)."""

    forward_mode: ClassVar[bool] = True
    name: ClassVar[str] = "smoothed"

    def bernoulli(self, p: torch.Tensor, u: torch.Tensor | None, sample: torch.Tensor) -> torch.Tensor:
        return SmoothedBernoulli.apply(p, sample)


ESTIMATORS: dict[str, type[Estimator]] = {e.name: e for e in (Sellke, Gumbel, Smoothed)}
"""Estimator classes by name (the text of a scenario's ``estimator`` option);
:class:`~populace.counterfactual.Counterfactual` adds itself when its module is imported, below."""

from . import counterfactual  # noqa: E402, F401  (Counterfactual extends Sellke, defined above)


def estimator(name: str, **kwargs: float) -> Estimator:
    """The estimator called ``name`` (one of :data:`ESTIMATORS`); ``ValueError`` naming the known ones."""
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, got {name!r}") from None
    return cls(**kwargs)
