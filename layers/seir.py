"""SEIR disease over any contact structures: an :class:`~populace.layers.infection.Infection` that declares
four stages and a lognormal latent and infectious period; transmission (Sellke thresholds, the estimator,
modifiers' effects such as masks or vaccines, place aggregation) is the infection core's.

Day order: (1) agents whose due day is today progress E→I or I→R; (2) transmission from today's
infectious agents; newly infected agents become E. An infectious agent emits 1 (its weight in
differentiable mode), so the per-place sums are kept up to date as agents start and stop being infectious.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch

from populace.aggregation import Aggregation
from populace.contacts import Contacts
from populace.estimators import Estimator
from populace.model import StepContext
from populace.params import Param, register_param

from .effects import Effects
from .infection import Infection, InfectionState

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
class SEIRState(InfectionState):
    """State of :class:`SEIR`: the infection core's (:class:`~populace.layers.infection.InfectionState`) and
    ``durations``: ``uint8[2, agents]``, each agent's latent and infectious period, drawn at set-up."""

    durations: torch.Tensor


class SEIR(Infection):
    """SEIR transmission over one or more contact structures of the same ``n_agents`` agents.

    Args:
        n_agents: population size.
        contacts: contact structures (places and/or edge networks); their hazards add up.
        initial_infections: agents exposed at day 0, chosen uniformly.
        beta, latent_mean, latent_sd, infectious_mean, infectious_sd: parameter specs (defaults cited).
        estimator: gradient estimator of the infection draw (:mod:`populace.estimators`; default
            ``Smoothed()``).
        aggregation: how emissions are summed per place (:mod:`populace.aggregation`).
        prefix: prepended to the names of the reported series (``"farm_"`` gives ``farm_S``, ...), so a
            model can hold one SEIR layer per agent type.
    """

    shardable = True

    name = "seir"
    stage_names = tuple(s.name for s in Stage)
    infected_stage = Stage.E
    infectious = (Stage.I, Stage.I)
    constant_infectiousness = True
    carries = Infection.carries | {"pressure"}  # kept up to date day to day

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
        estimator: Estimator | None = None,
        aggregation: Aggregation | None = None,
        prefix: str = "",
    ) -> None:
        if not contacts:
            raise ValueError("contacts: SEIR needs at least one contact structure")
        super().__init__(
            n_agents,
            contacts,
            initial_infections=initial_infections,
            estimator=estimator,
            aggregation=aggregation,
        )
        self.prefix = prefix
        register_param(self, "beta", beta)
        # Durations are drawn once per agent at set-up; they are not differentiable parameters.
        self.latent = (latent_mean.value, latent_sd.value)
        self.infectious_period = (infectious_mean.value, infectious_sd.value)
        self.param_specs.update(
            latent_mean=latent_mean,
            latent_sd=latent_sd,
            infectious_mean=infectious_mean,
            infectious_sd=infectious_sd,
        )

    def observables(self) -> tuple[str, ...]:
        return tuple(self.prefix + name for name in ("S", "E", "I", "R", "new_infections"))

    def observe(self, state: SEIRState) -> dict[str, torch.Tensor]:
        c = state.counts.clone()  # a snapshot: fast mode updates the counts in place
        values = (c[0], c[1], c[2], c[3], state.incidence.clone())
        return dict(zip(self.observables(), values, strict=True))

    # ------------------------------------------------------------------ set-up
    def stream_names(self) -> tuple[str, ...]:
        return (*super().stream_names(), "latent", "infectious")

    def _durations(self, ctx: StepContext, name: str, mean_sd: tuple[float, float]) -> torch.Tensor:
        days = ctx.streams.lognormal(f"{self.name}.{name}", ctx.agents(self.n_agents), *mean_sd)
        return days.round_().clamp_(1, 255).to(torch.uint8)

    def init_state(self, ctx: StepContext) -> SEIRState:
        durations = torch.stack(
            [
                self._durations(ctx, "latent", self.latent),
                self._durations(ctx, "infectious", self.infectious_period),
            ]
        )
        fields, seeds = self.infection_state(ctx, len(Stage))
        state = SEIRState(**fields, durations=durations)
        self.seed(state, seeds, ctx)
        return state

    # ------------------------------------------------------------------ course
    def on_infection(
        self, state: SEIRState, new: torch.Tensor, weight: torch.Tensor | None, ctx: StepContext
    ) -> None:
        state.due[new] = ctx.day + state.durations[0, new].to(torch.int32)

    def progress(self, state: SEIRState, ctx: StepContext, effects: list[Effects]) -> None:
        due, was = self.due_today(state, ctx.day)
        if due.numel():
            to_i = self.moving(state, due[was == Stage.E], Stage.E, Stage.I, 1)  # then infectious for a while
            to_r = self.moving(state, due[was == Stage.I], Stage.I, Stage.R, None)
            self.move(state, ctx.day, [to_i, to_r])
