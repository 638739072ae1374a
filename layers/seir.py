"""SEIR disease over any contact structures, with exact integer states and differentiable transmission.

Infection uses the Sellke construction: each agent draws one threshold T ~ Exp(1) at set-up and is
infected on the first day its accumulated hazard reaches it. Given survival so far, the chance of
infection on a day with hazard λ is exactly 1 − exp(−λ), so this *is* the daily Bernoulli model, but
it needs no random numbers per day and couples runs with different parameters (common random numbers:
a higher β infects the same agents earlier, never a reshuffled set).

In differentiable mode the same forward sample is passed through a sampler
(:mod:`populace.samplers`): x = Bernoulli(p·s) with p = 1 − exp(−λ) and s = 1 − infected, so gradients
reach β, setting weights and, through who became infectious, earlier days. Fast mode keeps only
``uint8`` stages, ``int32`` due days and the ``float32`` thresholds, updated in place.

Day order: (1) agents whose due day is today progress E→I or I→R; (2) transmission from today's
infectious agents; newly infected agents become E.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import cast

import torch

from populace.contacts import Contacts
from populace.model import Layer, LayerState, Phase, StepContext
from populace.params import Param, register_param
from populace.samplers import HardGumbel, SmoothedBernoulli

__all__ = ["SEIR", "SEIRState", "Stage"]


class Stage(IntEnum):
    """Disease stage of an agent (stored as ``uint8``)."""

    S = 0
    E = 1
    I = 2  # noqa: E741
    R = 3


BETA = Param(
    0.016,
    (0.0, 1.0),
    "1/contact/day",
    learnable=True,
    doc="Transmission probability per contact per day. 0.016 is Covasim's default beta "
    "(Kerr et al. 2021, PLoS Comput Biol 17:e1009149), the benchmark model of DESIGN.md §5.",
)
LATENT_MEAN = Param(
    4.5,
    (0.5, 30.0),
    "days",
    doc="Mean latent (exposed, not yet infectious) period, lognormal; Covasim's exposed-to-"
    "infectious duration 4.5 ± 1.5 d (Kerr et al. 2021, after Lauer et al. 2020).",
)
LATENT_SD = Param(1.5, (0.0, 30.0), "days", doc="Standard deviation of the latent period (Kerr et al. 2021).")
INFECTIOUS_MEAN = Param(
    8.0,
    (0.5, 60.0),
    "days",
    doc="Mean infectious period, lognormal; Covasim's infectious-to-recovered duration "
    "8 ± 2 d (Kerr et al. 2021).",
)
INFECTIOUS_SD = Param(
    2.0, (0.0, 60.0), "days", doc="Standard deviation of the infectious period (Kerr et al. 2021)."
)


@dataclass
class SEIRState(LayerState):
    """State of :class:`SEIR` (``agents`` = size of the population it acts on).

    Attributes:
        stage: ``uint8[agents]``, a :class:`Stage`.
        due: ``int32[agents]``, the day of the agent's next progression (``-1``: none).
        threshold: ``float32[agents]``, hazard still needed to infect the agent; ``inf`` once infected.
        latent_days, infectious_days: ``uint8[agents]``, each agent's stage durations, drawn at set-up.
        pressure: per contact structure, its pressure tensor (see :mod:`populace.contacts`).
        counts: ``[4]`` agents per stage (``int64``; ``float32`` with gradients when differentiable).
        incidence: ``[]`` new infections on the last day.
        infected: ``float32[agents]`` (differentiable mode only): 1 for agents ever infected, carrying
            the gradient of their infection; ``None`` in fast mode.
        workspace: ``float32[2, agents]`` scratch buffers of fast mode (reused every day).
    """

    stage: torch.Tensor
    due: torch.Tensor
    threshold: torch.Tensor
    latent_days: torch.Tensor
    infectious_days: torch.Tensor
    pressure: list[torch.Tensor]
    counts: torch.Tensor
    incidence: torch.Tensor
    infected: torch.Tensor | None
    workspace: torch.Tensor | None


class SEIR(Layer):
    """SEIR transmission over one or more contact structures of the same ``n_agents`` agents.

    Args:
        n_agents: population size.
        contacts: contact structures (places and/or edge networks); their hazards add up.
        initial_infections: agents exposed at day 0, chosen uniformly.
        beta, latent_mean, latent_sd, infectious_mean, infectious_sd: parameter specs (defaults cited).
        estimator: gradient estimator of the infection draw: ``"smoothed"`` (default) or ``"gumbel"``.
        tau: temperature of the ``"gumbel"`` estimator.
        prefix: prepended to the names of the reported series (``"farm_"`` gives ``farm_S``, ...), so a
            model can hold one SEIR layer per agent type.
    """

    phase = Phase.DISEASE
    stage_names = tuple(s.name for s in Stage)
    beta: torch.Tensor

    def __init__(
        self,
        n_agents: int,
        contacts: Sequence[Contacts],
        *,
        initial_infections: int,
        beta: Param = BETA,
        latent_mean: Param = LATENT_MEAN,
        latent_sd: Param = LATENT_SD,
        infectious_mean: Param = INFECTIOUS_MEAN,
        infectious_sd: Param = INFECTIOUS_SD,
        estimator: str = "smoothed",
        tau: float = 0.1,
        prefix: str = "",
    ) -> None:
        super().__init__()
        if not contacts:
            raise ValueError("contacts: SEIR needs at least one contact structure")
        for c in contacts:
            if c.n_agents != n_agents:
                raise ValueError(f"contacts: {c.name} covers {c.n_agents} agents, expected {n_agents}")
        if not 0 <= initial_infections <= n_agents:
            raise ValueError(f"initial_infections: expected 0..{n_agents}, got {initial_infections}")
        if estimator not in ("smoothed", "gumbel"):
            raise ValueError(f"estimator: expected 'smoothed' or 'gumbel', got {estimator!r}")
        self.n_agents = n_agents
        self.contacts = torch.nn.ModuleList(contacts)
        self.initial_infections = initial_infections
        self.estimator = estimator
        self.tau = tau
        self.prefix = prefix
        register_param(self, "beta", beta)
        # Durations are drawn once per agent at set-up; they are not differentiable parameters.
        self.latent = (latent_mean.value, latent_sd.value)
        self.infectious = (infectious_mean.value, infectious_sd.value)
        self.param_specs.update(
            latent_mean=latent_mean,
            latent_sd=latent_sd,
            infectious_mean=infectious_mean,
            infectious_sd=infectious_sd,
        )

    def structures(self) -> list[Contacts]:
        """The contact structures, in the order of ``SEIRState.pressure``."""
        return [cast(Contacts, c) for c in self.contacts]

    def stage(self, state: SEIRState) -> torch.Tensor:
        return state.stage

    def observables(self) -> tuple[str, ...]:
        return tuple(self.prefix + name for name in ("S", "E", "I", "R", "new_infections"))

    def observe(self, state: SEIRState) -> dict[str, torch.Tensor]:
        c = state.counts.clone()  # a snapshot: fast mode updates the counts in place
        values = (c[0], c[1], c[2], c[3], state.incidence.clone())
        return dict(zip(self.observables(), values, strict=True))

    # ------------------------------------------------------------------ set-up
    def _durations(self, ctx: StepContext, name: str, mean_sd: tuple[float, float]) -> torch.Tensor:
        days = ctx.streams.lognormal(f"seir.{name}", self.n_agents, *mean_sd)
        return days.round_().clamp_(1, 255).to(torch.uint8)

    def init_state(self, ctx: StepContext) -> SEIRState:
        n, device = self.n_agents, ctx.streams.device
        latent_days = self._durations(ctx, "latent", self.latent)
        infectious_days = self._durations(ctx, "infectious", self.infectious)
        threshold = ctx.streams.exponential("seir.threshold", n)
        seeds = ctx.streams.choose("seir.seeds", n, self.initial_infections)
        stage = torch.zeros(n, dtype=torch.uint8, device=device)
        due = torch.full((n,), -1, dtype=torch.int32, device=device)
        stage[seeds] = Stage.E
        due[seeds] = ctx.day + latent_days[seeds].to(torch.int32)
        threshold[seeds] = torch.inf
        k = self.initial_infections
        counts = torch.tensor([n - k, k, 0, 0], device=device)
        infected = workspace = None
        if ctx.differentiable:
            counts = counts.to(torch.float32)
            infected = torch.zeros(n, device=device)
            infected[seeds] = 1.0
        else:
            workspace = torch.empty(2, n, device=device)
        return SEIRState(
            stage=stage,
            due=due,
            threshold=threshold,
            latent_days=latent_days,
            infectious_days=infectious_days,
            pressure=[c.empty_pressure() for c in self.structures()],
            counts=counts,
            incidence=torch.zeros((), dtype=counts.dtype, device=device),
            infected=infected,
            workspace=workspace,
        )

    # ------------------------------------------------------------------ day
    def step(self, state: SEIRState, ctx: StepContext) -> SEIRState:
        self._progress(state, ctx.day)
        if ctx.differentiable:
            self._transmit_differentiable(state, ctx.day)
        else:
            self._transmit_fast(state, ctx.day)
        return state

    def _progress(self, state: SEIRState, day: int) -> None:
        due = torch.nonzero(state.due == day).squeeze(1)
        if due.numel() == 0:
            return
        was = state.stage[due]
        to_i = due[was == Stage.E]
        to_r = due[was == Stage.I]
        state.stage[to_i] = Stage.I
        state.due[to_i] = day + state.infectious_days[to_i].to(torch.int32)
        state.stage[to_r] = Stage.R
        state.due[to_r] = -1
        if state.infected is None:
            w_i = torch.ones(to_i.numel(), device=due.device)
            w_r = torch.ones(to_r.numel(), device=due.device)
        else:
            w_i, w_r = state.infected[to_i], state.infected[to_r]
        state.pressure = [
            c.add_sources(c.add_sources(p, to_i, w_i), to_r, -w_r)
            for c, p in zip(self.structures(), state.pressure, strict=True)
        ]
        entered, left = w_i.sum(), w_r.sum()
        flow = torch.stack([entered * 0, -entered, entered - left, left]).to(state.counts.dtype)
        if state.infected is None:
            state.counts.add_(flow)
        else:
            state.counts = state.counts + flow

    def _hazard(
        self, state: SEIRState, out: torch.Tensor | None, scratch: torch.Tensor | None
    ) -> torch.Tensor:
        hazard: torch.Tensor | None = None
        for c, pressure in zip(self.structures(), state.pressure, strict=True):
            if hazard is None:
                hazard = c.force(pressure, self.beta, out=out)
            elif out is None:
                hazard = hazard + c.force(pressure, self.beta)
            else:
                hazard.add_(c.force(pressure, self.beta, out=scratch))
        assert hazard is not None
        return hazard

    def _infect(self, state: SEIRState, new: torch.Tensor, day: int) -> None:
        state.threshold[new] = torch.inf
        state.stage[new] = Stage.E
        state.due[new] = day + state.latent_days[new].to(torch.int32)

    def _transmit_fast(self, state: SEIRState, day: int) -> None:
        assert state.workspace is not None
        hazard = self._hazard(state, out=state.workspace[0], scratch=state.workspace[1])
        state.threshold.sub_(hazard)
        new = torch.nonzero(state.threshold <= 0).squeeze(1)
        self._infect(state, new, day)
        k = new.numel()
        state.counts[0] -= k
        state.counts[1] += k
        state.incidence.fill_(k)

    def _transmit_differentiable(self, state: SEIRState, day: int) -> None:
        assert state.infected is not None
        hazard = self._hazard(state, out=None, scratch=None)
        # expm1(-λ) is finite for any λ >= 0; the clamp only guards against weights pushed below 0.
        p = -torch.expm1(-hazard.clamp(min=0)) * (1 - state.infected)
        sample = state.threshold - hazard.detach() <= 0  # exactly the fast-mode comparison
        if self.estimator == "smoothed":
            x = SmoothedBernoulli.apply(p, sample)
        else:
            u = -torch.expm1(-state.threshold)  # the uniform the Sellke threshold implies today
            x = HardGumbel.apply(p, u, sample, self.tau)
        state.threshold = state.threshold - hazard.detach()
        self._infect(state, torch.nonzero(sample).squeeze(1), day)
        state.infected = state.infected + x
        new = x.sum()
        state.counts = state.counts + torch.stack([-new, new, new * 0, new * 0])
        state.incidence = new
