"""Infections from outside the population, by period and group: how an epidemic is seeded, borough by
borough, or kept going by travel.

The ``rate`` table is the hazard of an imported infection per 100,000 agents per day (for an agent of
susceptibility 1; the disease's age table and the modifiers' susceptibility factors scale it like any other
hazard). Days past the last period import nothing. With one period of one day it seeds day 0: 300 per
100,000 in a group infects about 300 of every 100,000 fully susceptible agents there. Unlike a fixed count of
seed agents, the hazard is differentiable: a calibration can fit it per group (a :class:`WeeklyNetwork` or a
fitted table, ``populace run --params``), and the sensitivity of any outcome to it comes with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from populace.model import LayerState, Phase, StepContext

from .effects import Effects, Modifier, check_groups, check_table

__all__ = ["Importation", "ImportationState"]

_UNIT = "infections per 100,000 per day"


@dataclass
class ImportationState(LayerState):
    """Nothing changes from day to day; the table lives on the layer."""


class Importation(Modifier):
    """Hazard of an imported infection ``rate[day // period, group[agent]] / 100,000`` per day while
    ``day < periods × period``, none after.

    Args:
        group: ``int[agents]`` group of each agent (e.g. borough), ``0 ≤ group < groups``.
        groups: number of groups.
        rate: ``float[periods, groups]`` (or ``[groups]`` for one period) imported infections per 100,000
            fully susceptible agents per day, ``≥ 0``.
        period: days per row of ``rate``.
    """

    shardable = True

    phase = Phase.INTERVENTION
    rate: torch.Tensor
    group: torch.Tensor

    def __init__(self, group: torch.Tensor, groups: int, rate: torch.Tensor, *, period: int = 1) -> None:
        super().__init__()
        rate = torch.as_tensor(rate, dtype=torch.float32)
        rate = rate[None] if rate.dim() == 1 else rate
        if groups < 1 or period < 1:
            raise ValueError(f"Importation: groups and period must be positive, got {groups} and {period}")
        if rate.dim() != 2 or rate.shape[1] != groups:
            raise ValueError(f"rate: expected [periods, {groups}], got shape {tuple(rate.shape)}")
        check_table("Importation rate", rate, _UNIT)
        check_groups(group, groups)
        self.period = period
        self.register_buffer("group", group.long(), persistent=False)
        self.register_buffer("rate", rate.clone())

    def init_state(self, ctx: StepContext) -> ImportationState:
        check_table("Importation rate", self.rate, _UNIT)
        return ImportationState()

    def step(self, state: ImportationState, ctx: StepContext) -> ImportationState:
        return state

    def effects(self, state: ImportationState, ctx: StepContext) -> Effects:
        row = ctx.day // self.period
        if row >= self.rate.shape[0]:
            return Effects()
        today = self.rate[row]
        if not ctx.differentiable and not bool(today.any()):
            return Effects()  # nothing imported today: no per-agent work
        return Effects(imported=torch.index_select(today, 0, self.group) / 100_000)
