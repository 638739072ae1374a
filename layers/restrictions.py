"""Restriction levels by day and region (New Zealand's alert levels, traffic lights): each level keeps a share
of the contacts at school, at work and in the community.

``level[day, group]`` names the level in force in each region on each day (days past the table keep its last
row); ``kept[level, setting]`` is the share of a setting's contacts kept under a level. Everyone in the region
gets presence ``√kept`` in the setting: presence multiplies what an agent emits and what it receives
(:mod:`.effects`), so contacts between two residents are scaled by ``kept``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from populace.model import LayerState, Phase, StepContext

from .effects import Effects, Modifier, check_groups

__all__ = ["Restrictions", "RestrictionsState"]


@dataclass
class RestrictionsState(LayerState):
    """State of :class:`Restrictions`: today's levels and the presence factors they give, kept so that they
    are recomputed only on the days a level changes.

    Attributes:
        today: ``int64[groups]``: the level in force in each group (``-1`` before the first day).
        presence: ``float32[settings, agents]``: each agent's presence in each setting under ``today``.
    """

    today: torch.Tensor
    presence: torch.Tensor


class Restrictions(Modifier):
    """Presence ``√kept[level[day, group[agent]], setting]`` in each of ``settings`` (see module docs).

    Args:
        group: ``int[agents]``: each agent's region, ``0 ≤ group < level.shape[1]``.
        level: ``int[days, groups]``: the level in force, an index into the rows of ``kept``.
        kept: ``float[levels, settings]``: share of contacts kept, in ``[0, 1]``.
        settings: names of the settings (columns of ``kept``).
        names: the levels' names, for reports.
    """

    phase = Phase.INTERVENTION
    group: torch.Tensor
    level: torch.Tensor
    kept: torch.Tensor

    def __init__(
        self,
        group: torch.Tensor,
        level: torch.Tensor,
        kept: torch.Tensor,
        settings: Sequence[str],
        names: Sequence[str],
    ) -> None:
        super().__init__()
        level = torch.as_tensor(level).long()
        kept = torch.as_tensor(kept, dtype=torch.float32)
        if level.dim() != 2 or level.shape[0] < 1:
            raise ValueError(f"level: expected [days, groups], got shape {tuple(level.shape)}")
        if kept.shape != (len(names), len(settings)):
            raise ValueError(
                f"kept: expected [{len(names)} levels, {len(settings)} settings], got {tuple(kept.shape)}"
            )
        if not bool(((kept >= 0) & (kept <= 1)).all()):
            raise ValueError("kept: expected shares of contacts in [0, 1]")
        if level.numel() and not 0 <= int(level.min()) <= int(level.max()) < len(names):
            raise ValueError(f"level: expected values in 0..{len(names) - 1}")
        check_groups(group, level.shape[1])
        self.settings, self.names = tuple(settings), tuple(names)
        self.register_buffer("group", group.long(), persistent=False)
        self.register_buffer("level", level, persistent=False)
        self.register_buffer("kept", kept, persistent=False)

    def settings_used(self) -> tuple[str, ...]:
        return self.settings

    def init_state(self, ctx: StepContext) -> RestrictionsState:
        device = self.level.device
        return RestrictionsState(
            today=torch.full((self.level.shape[1],), -1, dtype=torch.int64, device=device),
            presence=torch.ones(len(self.settings), 0, device=device),
        )

    def step(self, state: RestrictionsState, ctx: StepContext) -> RestrictionsState:
        today = self.level[min(ctx.day, self.level.shape[0] - 1)]
        if not torch.equal(today, state.today):
            state.today = today.clone()
            state.presence = self.kept[today].sqrt().T[:, self.group].contiguous()  # [settings, agents]
        return state

    def effects(self, state: RestrictionsState, ctx: StepContext) -> Effects:
        if bool((self.kept[state.today] == 1).all()):
            return Effects()
        kept = self.kept[state.today]
        return Effects(
            presence={
                s: state.presence[k] for k, s in enumerate(self.settings) if not bool((kept[:, k] == 1).all())
            }
        )
