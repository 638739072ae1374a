"""Relative transmission by period and group: the lever a calibration fits for what a model does not
represent explicitly (distancing, lockdown compliance, seasonality), e.g. week × borough.

The ``scale`` table multiplies every agent's hazard of infection by the entry of its group for the current
period. It is a buffer of ones by default (no effect); a calibration replaces it by a bounded function of
covariates (:class:`populace.calibrate.WeeklyNetwork`) or a fitted table (``populace run --params``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from populace.model import LayerState, Phase, StepContext

from .effects import Effects, Modifier, check_groups, check_table

__all__ = ["Transmission", "TransmissionState"]


@dataclass
class TransmissionState(LayerState):
    """Nothing changes from day to day; the table lives on the layer."""


class Transmission(Modifier):
    """Hazard factor ``scale[min(day // period, periods − 1), group[agent]]``.

    Args:
        group: ``int[agents]`` group of each agent (e.g. borough), ``0 ≤ group < groups``.
        groups: number of groups.
        periods: rows of the table; days past the last period use the last row.
        period: days per row (7: weekly).
    """

    shardable = True

    phase = Phase.INTERVENTION
    scale: torch.Tensor
    group: torch.Tensor

    def __init__(self, group: torch.Tensor, groups: int, *, periods: int, period: int = 7) -> None:
        super().__init__()
        if groups < 1 or periods < 1 or period < 1:
            raise ValueError(
                f"Transmission: groups, periods and period must be positive, got {groups}, {periods}, "
                f"{period}"
            )
        check_groups(group, groups)
        self.period = period
        self.register_buffer("group", group.long(), persistent=False)
        self.register_buffer("scale", torch.ones(periods, groups))

    def row(self, day: int) -> int:
        return min(day // self.period, self.scale.shape[0] - 1)

    def init_state(self, ctx: StepContext) -> TransmissionState:
        check_table("Transmission scale", self.scale, "relative transmission")
        return TransmissionState()

    def step(self, state: TransmissionState, ctx: StepContext) -> TransmissionState:
        return state

    def effects(self, state: TransmissionState, ctx: StepContext) -> Effects:
        today = self.scale[self.row(ctx.day)]
        if not ctx.differentiable and bool((today == 1).all()):
            return Effects()  # the default table: no per-agent work
        return Effects(susceptibility=torch.index_select(today, 0, self.group))  # 5× faster than today[group]
