"""Non-pharmaceutical interventions: masks, and school/work closures by date."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from populace.contacts import Places
from populace.masks import numeric
from populace.model import LayerState, Phase, StepContext
from populace.params import Param, register_params

from .effects import Effects, Modifier

__all__ = ["Closures", "ClosuresState", "Masks", "MasksState"]

MASK_EFFICACY = Param(
    0.3,
    (0.0, 1.0),
    "fraction",
    learnable=True,
    doc="Reduction of a wearer's emitted and received infectiousness. Abaluck et al. 2022 (Science "
    "375:eabi9069): a 29-point rise in community mask use cut symptomatic seroprevalence by 9.3%, about "
    "30% per wearer; observational pooled estimates are larger (Chu et al. 2020, Lancet 395:1973).",
)
MASK_ADOPTION = Param(
    0.7,
    (0.0, 1.0),
    "fraction",
    doc="Share of agents who wear masks while the policy is on. Surveys in NYC reported 70-90% mask use in "
    "public from May 2020 (e.g. the NYT/Dynata survey of July 2020); 0.7 is the low end.",
)
START = Param(0.0, (0.0, 10_000.0), "day", doc="First day of the intervention (day index of the run).")
END = Param(10_000.0, (0.0, 10_000.0), "day", doc="First day after the intervention (10000: never ends).")
WORK_CLOSED_SHARE = Param(
    0.6,
    (0.0, 1.0),
    "fraction",
    doc="Share of workplaces closed during a work closure; the rest are essential. About 40% of NYC jobs "
    "stayed on site under NY State's PAUSE order (March 2020; estimate of the NYC Comptroller, 'New York "
    "City's Frontline Workers', March 2020).",
)


@dataclass
class MasksState(LayerState):
    """State of :class:`Masks`.

    Attributes:
        wearer: ``bool[agents]``, who wears a mask while the policy is on.
        presence: fast mode only, ``float32[agents]``: ``1 − efficacy`` for wearers, else 1 (differentiable
            mode recomputes it so gradients reach the efficacy).
        wearers: ``int64[]``, how many wear one in the whole population.
    """

    wearer: torch.Tensor
    presence: torch.Tensor | None
    wearers: torch.Tensor


class Masks(Modifier):
    """Mask wearing in ``settings`` from day ``start`` to ``end``: a wearer's presence is ``1 − efficacy``.

    Args:
        n_agents: population size.
        settings: where masks are worn (not households).
        efficacy, adoption, start, end: specs (defaults cited).
    """

    shardable = True

    phase = Phase.INTERVENTION
    setup_params = frozenset({"adoption", "efficacy"})  # who wears a mask is drawn at set-up
    efficacy: torch.Tensor
    adoption: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor

    def __init__(
        self,
        n_agents: int,
        *,
        settings: Sequence[str] = ("school", "work", "community"),
        efficacy: Param = MASK_EFFICACY,
        adoption: Param = MASK_ADOPTION,
        start: Param = START,
        end: Param = END,
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.settings = tuple(settings)
        register_params(self, efficacy=efficacy, adoption=adoption, start=start, end=end)

    def observables(self) -> tuple[str, ...]:
        return ("mask_wearers",)

    def stream_names(self) -> tuple[str, ...]:
        return ("wearer",)

    def init_state(self, ctx: StepContext) -> MasksState:
        wearer = ctx.streams.uniform(f"{self.name}.wearer", ctx.agents(self.n_agents)) < self.adoption
        presence = None if ctx.differentiable else 1 - self.efficacy * wearer
        return MasksState(wearer=wearer, presence=presence, wearers=ctx.shard.sum(wearer.sum()))

    def step(self, state: MasksState, ctx: StepContext) -> MasksState:
        return state

    def in_mode_of(self, state: MasksState, like: MasksState) -> LayerState | None:
        """As :meth:`~populace.Layer.in_mode_of`; fast mode's presences follow from who wears a mask."""
        if state.presence is None and like.presence is not None:
            with torch.no_grad():
                state = dataclasses.replace(state, presence=1 - self.efficacy * state.wearer)
        return super().in_mode_of(state, like)

    def active(self, day: int) -> bool:
        return float(self.start) <= day < float(self.end)

    def observe(self, state: MasksState) -> dict[str, torch.Tensor]:
        return {"mask_wearers": state.wearers.clone()}

    def settings_used(self) -> tuple[str, ...]:
        return self.settings

    def effects(self, state: MasksState, ctx: StepContext) -> Effects:
        if not self.active(ctx.day):
            return Effects()
        presence = 1 - self.efficacy * numeric(state.wearer) if state.presence is None else state.presence
        return Effects(presence=dict.fromkeys(self.settings, presence))


@dataclass
class ClosuresState(LayerState):
    """State of :class:`Closures`.

    Attributes:
        work_closed: ``bool[workplaces + 1]``, this process's workplaces shut during a work closure (the last
            slot, "no workplace", stays open).
        closed_count: ``int64[]``, workplaces shut during a closure in the whole population.
        today: ``int64[]``, the day last stepped.
    """

    work_closed: torch.Tensor
    closed_count: torch.Tensor
    today: torch.Tensor


class Closures(Modifier):
    """School closure from ``school_start`` to ``school_end`` (all schools), and work closure from
    ``work_start`` to ``work_end`` (a random ``work_closed_share`` of workplaces)."""

    shardable = True

    phase = Phase.INTERVENTION
    setup_params = frozenset({"work_closed_share"})  # which workplaces close is drawn at set-up
    school_start: torch.Tensor
    school_end: torch.Tensor
    work_start: torch.Tensor
    work_end: torch.Tensor
    work_closed_share: torch.Tensor

    def __init__(
        self,
        school: Places,
        work: Places,
        *,
        school_start: Param = START,
        school_end: Param = END,
        work_start: Param = START,
        work_end: Param = END,
        work_closed_share: Param = WORK_CLOSED_SHARE,
    ) -> None:
        super().__init__()
        self.school_name, self.n_schools = school.name, school.places_total
        self.work_name, self.n_workplaces = work.name, work.places_total
        self.register_buffer("workplace_ids", work.place_ids(), persistent=False)
        self.n_local_schools = school.n_places
        register_params(
            self,
            school_start=school_start,
            school_end=school_end,
            work_start=work_start,
            work_end=work_end,
            work_closed_share=work_closed_share,
        )

    def observables(self) -> tuple[str, ...]:
        return ("schools_closed", "workplaces_closed")

    def schools_closed(self, day: int) -> bool:
        return float(self.school_start) <= day < float(self.school_end)

    def work_closed(self, day: int) -> bool:
        return float(self.work_start) <= day < float(self.work_end)

    def stream_names(self) -> tuple[str, ...]:
        return ("work",)

    def init_state(self, ctx: StepContext) -> ClosuresState:
        # drawn for every workplace of the population (a split population's processes draw the same), then
        # kept for this process's places (their global numbers: Places.place_ids)
        n = self.n_workplaces
        closed = ctx.streams.uniform(f"{self.name}.work", n) < self.work_closed_share
        local = torch.cat([closed[self.workplace_ids.to(closed.device)], closed.new_zeros(1)])
        return ClosuresState(
            work_closed=local, closed_count=closed.sum(), today=torch.zeros((), dtype=torch.int64)
        )

    def step(self, state: ClosuresState, ctx: StepContext) -> ClosuresState:
        state.today = torch.tensor(ctx.day)
        return state

    def observe(self, state: ClosuresState) -> dict[str, torch.Tensor]:
        day = int(state.today)
        schools = self.n_schools if self.schools_closed(day) else 0
        work = int(state.closed_count) if self.work_closed(day) else 0
        return {"schools_closed": torch.tensor(schools), "workplaces_closed": torch.tensor(work)}

    def settings_used(self) -> tuple[str, ...]:
        return (self.school_name, self.work_name)

    def effects(self, state: ClosuresState, ctx: StepContext) -> Effects:
        scale: dict[str, torch.Tensor] = {}
        if self.schools_closed(ctx.day):
            scale[self.school_name] = torch.zeros(self.n_local_schools + 1, device=state.work_closed.device)
        if self.work_closed(ctx.day):
            scale[self.work_name] = (~state.work_closed).float()
        return Effects(place_scale=scale)
