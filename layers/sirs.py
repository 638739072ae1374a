"""SIRS: an infection that confers immunity for a while, then wanes — a whole disease in one file.

This is the example of README's "Add your own disease": a subclass of
:class:`~populace.layers.infection.Infection` declares its stages, its parameters and its course; the core
transmits (contact settings, Sellke thresholds, the estimator, modifiers' effects, place aggregation).

An infected agent is infectious (I) from the next day for its infectious period, then immune (R) for its
immunity period, then susceptible again with a fresh Sellke threshold. Well mixed, the endemic equilibrium has
S*/N = 1/R0 with R0 = β × contacts per day × mean infectious period, whatever the period distributions
(Keeling & Rohani 2008, *Modeling Infectious Diseases in Humans and Animals*, §2.1.2.1, SIRS); tested in
``tests/test_sirs.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch

from populace.contacts import Contacts
from populace.estimators import Estimator
from populace.model import StepContext
from populace.params import Param, register_param

from .effects import Effects
from .infection import Infection, InfectionState

__all__ = ["SIRS", "SIRSState"]


class Stage(IntEnum):
    S = 0
    I = 1  # noqa: E741
    R = 2


BETA = Param(
    0.03, (0.0, 1.0), "1/contact/day", learnable=True, doc="Transmission per contact per day. Illustrative."
)
INFECTIOUS = (
    Param(7.0, (1.0, 60.0), "days", doc="Mean infectious period (lognormal, whole days). Illustrative."),
    Param(2.0, (0.0, 60.0), "days", doc="Standard deviation of the infectious period. Illustrative."),
)
IMMUNITY = (
    Param(
        365.0,
        (1.0, 3650.0),
        "days",
        doc="Mean time from recovery to susceptibility (lognormal): about a year, as for seasonal "
        "coronaviruses (Edridge et al. 2020, Nat Med 26:1691, reinfections frequent at 12 months).",
    ),
    Param(60.0, (0.0, 3650.0), "days", doc="Standard deviation of the immunity period. Assumed."),
)


@dataclass
class SIRSState(InfectionState):
    """The infection core's state and ``durations``: ``int32[2, agents]`` infectious and immunity periods."""

    durations: torch.Tensor


class SIRS(Infection):
    """SIRS over ``settings`` of ``n_agents`` agents (see module docs).

    Args:
        n_agents, settings, initial_infections, estimator: as :class:`~populace.layers.infection.Infection`.
        beta: per-contact transmissibility; infectious, immunity: ``(mean, sd)`` specs of the two periods.
    """

    name = "sirs"
    stage_names = tuple(s.name for s in Stage)
    infected_stage = Stage.I
    infectious = (Stage.I, Stage.I)
    constant_infectiousness = True
    carries = Infection.carries | {"pressure"}  # kept up to date day to day

    def __init__(
        self,
        n_agents: int,
        settings: Sequence[Contacts],
        *,
        initial_infections: int,
        beta: Param = BETA,
        infectious: tuple[Param, Param] = INFECTIOUS,
        immunity: tuple[Param, Param] = IMMUNITY,
        estimator: Estimator | None = None,
    ) -> None:
        super().__init__(n_agents, settings, initial_infections=initial_infections, estimator=estimator)
        register_param(self, "beta", beta)
        self.periods = {"infectious": infectious, "immunity": immunity}
        for period, (mean, sd) in self.periods.items():
            self.param_specs.update({f"{period}_mean": mean, f"{period}_sd": sd})

    def observables(self) -> tuple[str, ...]:
        return ("S", "I", "R", "new_infections")

    def observe(self, state: SIRSState) -> dict[str, torch.Tensor]:
        c = state.counts.clone()
        return {"S": c[0], "I": c[1], "R": c[2], "new_infections": state.incidence.clone()}

    def stream_names(self) -> tuple[str, ...]:
        return (*super().stream_names(), *self.periods)

    def init_state(self, ctx: StepContext) -> SIRSState:
        durations = torch.stack(
            [
                ctx.streams.lognormal(
                    f"{self.name}.{period}", ctx.agents(self.n_agents), mean.value, sd.value
                )
                .round_()
                .clamp_(min=1)
                for period, (mean, sd) in self.periods.items()
            ]
        ).to(torch.int32)
        fields, seeds = self.infection_state(ctx, len(Stage))
        state = SIRSState(**fields, durations=durations)
        self.seed(state, seeds, ctx)
        return state

    def on_infection(
        self, state: SIRSState, new: torch.Tensor, weight: torch.Tensor | None, ctx: StepContext
    ) -> None:
        state.due[new] = ctx.day + 1 + state.durations[0, new]  # infectious from the next day

    def progress(self, state: SIRSState, ctx: StepContext, effects: list[Effects]) -> None:
        due, was = self.due_today(state, ctx.day)
        if due.numel() == 0:
            return
        wane = due[was == Stage.R]
        recover = self.moving(state, due[was == Stage.I], Stage.I, Stage.R, 1)  # then immune for a while
        self.move(state, ctx.day, [recover, self.moving(state, wane, Stage.R, Stage.S, None)])
        if wane.numel():  # susceptible again: a fresh threshold, and no infection to carry
            fresh = ctx.streams.exponential(f"{self.name}.threshold", ctx.agents(self.n_agents), ctx.day)
            state.threshold[wane] = fresh[wane]
            if state.weight is not None:
                keep = torch.ones_like(state.weight)
                keep[wane] = 0.0
                state.weight = state.weight * keep
