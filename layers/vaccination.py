"""Two-dose vaccination with age priority, daily capacity and a configurable interval between doses.

Agents at least ``min_age`` old who accept the vaccine (``uptake``) queue oldest first (ties in random
order). From ``start_day``, each day's ``capacity`` goes first to second doses that are due (first dose at
least ``interval`` days ago), then to first doses down the queue. Because doses follow the queue, the
agents protected by one or two doses are always two ranges of the queue, tracked by pointers: no per-agent
dates are stored.

Protection starts ``onset_days`` after a dose. Dose ``k`` multiplies the hazard of infection by
``1 − ve_infection_k`` and, for those infected anyway, the probability of severe disease by
``(1 − ve_severe_k) / (1 − ve_infection_k)`` (capped at 1), so that ``ve_severe_k`` is the overall
effectiveness against hospitalisation. Defaults: BNT162b2 (Pfizer–BioNTech), Dagan et al. 2021.

Delaying the second dose (``interval`` 84 instead of 21 days) gives more first doses sooner at the cost of
later full protection; Romero-Brufau et al. 2021 (BMJ 373:n1087) found this prevents deaths when the
first dose is at least ~80% effective against severe disease.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import torch

from populace.model import LayerState, Phase, StepContext
from populace.params import Param, register_params

from .effects import Effects, Modifier

__all__ = ["Vaccination", "VaccinationState"]

_DAGAN = "Dagan et al. 2021 (NEJM 384:1412), BNT162b2 in Israel"
START_DAY = Param(0.0, (0.0, 10_000.0), "day", doc="First day of vaccination (day index of the run).")
CAPACITY = Param(
    500.0,
    (0.0, 100_000.0),
    "doses/100k people/day",
    doc="Doses given per day per 100,000 people. NYC gave ~60,000-90,000 doses a day in spring 2021 "
    "(NYC DOHMH vaccination data), about 700-1,000 per 100k; 500 is an early roll-out pace.",
)
INTERVAL = Param(
    21.0,
    (1.0, 365.0),
    "days",
    doc="Days from first to second dose: 21 for BNT162b2 as licensed (Polack et al. 2020, NEJM 383:2603); "
    "UK policy delayed it to up to 84 days (JCVI, 30 Dec 2020).",
)
UPTAKE = Param(
    0.7,
    (0.0, 1.0),
    "fraction",
    doc="Share of eligible people who accept the vaccine; about 70% of NYC adults had completed a primary "
    "series by the end of 2021 (NYC DOHMH vaccination data).",
)
MIN_AGE = Param(16.0, (0.0, 120.0), "years", doc="Youngest eligible age (BNT162b2 EUA, December 2020: 16).")
ONSET_DAYS = Param(
    14.0, (0.0, 60.0), "days", doc=f"Days from a dose to its protection (14 after dose 1 in {_DAGAN})."
)
VE_INFECTION_1 = Param(
    0.46,
    (0.0, 1.0),
    "fraction",
    learnable=True,
    doc=f"Effectiveness of one dose against infection: {_DAGAN}, days 14-20.",
)
VE_INFECTION_2 = Param(
    0.92,
    (0.0, 1.0),
    "fraction",
    learnable=True,
    doc=f"Effectiveness of two doses against infection: {_DAGAN}, day 7 on.",
)
VE_SEVERE_1 = Param(
    0.74,
    (0.0, 1.0),
    "fraction",
    learnable=True,
    doc=f"Effectiveness of one dose against hospitalisation: {_DAGAN}, days 14-20.",
)
VE_SEVERE_2 = Param(
    0.87,
    (0.0, 1.0),
    "fraction",
    learnable=True,
    doc=f"Effectiveness of two doses against hospitalisation: {_DAGAN}, day 7 on.",
)
COST_PER_DOSE = Param(
    60.0,
    (0.0, 10_000.0),
    "$/dose",
    doc="Price plus administration: $19.50 per dose paid by the US (HHS-Pfizer contract, July 2020) and "
    "Medicare's $40 administration payment (March 2021), rounded.",
)


class Effectiveness(Protocol):
    """A layer with the four vaccine-effectiveness parameters (:class:`Vaccination`, ``Rollout``)."""

    ve_infection_1: torch.Tensor
    ve_infection_2: torch.Tensor
    ve_severe_1: torch.Tensor
    ve_severe_2: torch.Tensor


def protection_tables(ve: Effectiveness) -> tuple[torch.Tensor, torch.Tensor]:
    """Susceptibility and severity factors by protection level (none, one dose, two doses)."""
    one = torch.ones_like(ve.ve_infection_1)
    infection = torch.stack([one, 1 - ve.ve_infection_1, 1 - ve.ve_infection_2])
    severe = torch.stack([one, 1 - ve.ve_severe_1, 1 - ve.ve_severe_2])
    return infection, (severe / infection.clamp(min=1e-6)).clamp(max=1.0)


def protect(
    level: torch.Tensor, factors: torch.Tensor | None, agents: torch.Tensor, dose: int, ve: Effectiveness
) -> None:
    """Mark ``agents`` protected by dose ``dose`` (0 or 1): their ``level``, and in fast mode their
    susceptibility and severity ``factors`` (``float32[2, agents]``)."""
    level[agents] = dose + 1
    if factors is not None:
        infection, severity = protection_tables(ve)
        factors[0, agents] = infection[dose + 1]
        factors[1, agents] = severity[dose + 1]


@dataclass
class VaccinationState(LayerState):
    """State of :class:`Vaccination`.

    Attributes:
        queue: ``int32[queue]``: this process's agents who will be vaccinated, in order (see
            :meth:`Vaccination.queue`).
        position: ``int64[queue]``: their places in the whole population's queue (increasing).
        waiting: ``int64[]``: the length of the whole population's queue.
        history: ``int64[2, days]``: doses 1 / 2 given up to the end of each day, in the whole population
            (doses go in queue order, so position ``p`` had dose 1 by day ``d`` if ``p < history[0, d]``).
        given: ``int64[2]``: queue positions that received dose 1 / dose 2 so far.
        protected: ``int64[2]``: queue positions protected by dose 1 / dose 2 so far.
        level: ``uint8[agents]``: protection of each agent (0 none, 1 or 2 doses).
        daily: ``int64[2]``: today's first and second doses.
        factors: fast mode only, ``float32[2, agents]``: each agent's susceptibility and severity factors,
            updated for the newly protected only (differentiable mode recomputes them from ``level`` so
            gradients reach the effectiveness parameters).
    """

    queue: torch.Tensor
    position: torch.Tensor
    waiting: torch.Tensor
    history: torch.Tensor
    given: torch.Tensor
    protected: torch.Tensor
    level: torch.Tensor
    daily: torch.Tensor
    factors: torch.Tensor | None


class Vaccination(Modifier):
    """Two-dose vaccination of agents aged ``age`` (see module docs)."""

    shardable = True

    phase = Phase.INTERVENTION
    setup_params = frozenset({"uptake", "min_age"})  # the queue is drawn at set-up
    start_day: torch.Tensor
    capacity: torch.Tensor
    interval: torch.Tensor
    uptake: torch.Tensor
    min_age: torch.Tensor
    onset_days: torch.Tensor
    ve_infection_1: torch.Tensor
    ve_infection_2: torch.Tensor
    ve_severe_1: torch.Tensor
    ve_severe_2: torch.Tensor
    cost_per_dose: torch.Tensor
    age: torch.Tensor

    def __init__(
        self,
        age: torch.Tensor,
        *,
        start_day: Param = START_DAY,
        capacity: Param = CAPACITY,
        interval: Param = INTERVAL,
        uptake: Param = UPTAKE,
        min_age: Param = MIN_AGE,
        onset_days: Param = ONSET_DAYS,
        ve_infection_1: Param = VE_INFECTION_1,
        ve_infection_2: Param = VE_INFECTION_2,
        ve_severe_1: Param = VE_SEVERE_1,
        ve_severe_2: Param = VE_SEVERE_2,
        cost_per_dose: Param = COST_PER_DOSE,
    ) -> None:
        super().__init__()
        self.n_agents = int(age.numel())
        self.register_buffer("age", age.to(torch.uint8), persistent=False)
        register_params(
            self,
            start_day=start_day,
            capacity=capacity,
            interval=interval,
            uptake=uptake,
            min_age=min_age,
            onset_days=onset_days,
            ve_infection_1=ve_infection_1,
            ve_infection_2=ve_infection_2,
            ve_severe_1=ve_severe_1,
            ve_severe_2=ve_severe_2,
            cost_per_dose=cost_per_dose,
        )

    def observables(self) -> tuple[str, ...]:
        return ("first_doses", "second_doses", "vaccinated", "fully_vaccinated", "cost_vaccination")

    def observe(self, state: VaccinationState) -> dict[str, torch.Tensor]:
        daily, given = state.daily.clone(), state.given.clone()
        return {
            "first_doses": daily[0],
            "second_doses": daily[1],
            "vaccinated": given[0],
            "fully_vaccinated": given[1],
            "cost_vaccination": daily.sum().double() * self.cost_per_dose.detach().double(),
        }

    def queue(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Agents who will be vaccinated, in order: eligible and willing, oldest first, in random order within
        a year of age. This process's part of the queue (``int64[k]`` agents), their positions in the whole
        population's queue, and its length."""
        ids = ctx.agents(self.n_agents)
        willing = (self.age.float() >= self.min_age) & (
            ctx.streams.uniform(f"{self.name}.uptake", ids) < self.uptake
        )
        agents = torch.nonzero(willing).squeeze(1)
        random = ctx.streams.bits(f"{self.name}.queue", ids)[agents]
        # 255 - age in the top bits: the oldest first; 48 random bits below, ties broken by agent index
        key = ((255 - self.age[agents].long()) << 48) | ((random >> 16) & ((1 << 48) - 1))
        order = torch.sort(key, stable=True)
        return agents[order.indices], *ctx.shard.positions(order.values)

    def stream_names(self) -> tuple[str, ...]:
        return ("queue", "uptake")

    def init_state(self, ctx: StepContext) -> VaccinationState:
        queue, position, waiting = self.queue(ctx)
        device = queue.device
        return VaccinationState(
            queue=queue.to(torch.int32),
            position=position,
            waiting=waiting,
            history=torch.zeros(2, 1, dtype=torch.int64, device=device),
            given=torch.zeros(2, dtype=torch.int64, device=device),
            protected=torch.zeros(2, dtype=torch.int64, device=device),
            level=torch.zeros(self.n_agents, dtype=torch.uint8, device=device),
            daily=torch.zeros(2, dtype=torch.int64, device=device),
            factors=None if ctx.differentiable else torch.ones(2, self.n_agents, device=device),
        )

    def step(self, state: VaccinationState, ctx: StepContext) -> VaccinationState:
        day = ctx.day
        state.daily = torch.zeros_like(state.daily)
        if day >= float(self.start_day):
            self._dose(state, day, ctx.population(self.n_agents))
        self._record(state, day)
        self._protect(state, day)
        return state

    @staticmethod
    def _by(state: VaccinationState, dose: int, day: int) -> int:
        """Doses ``dose`` given in the whole population up to the end of ``day``."""
        if day < 0:
            return 0
        return int(state.history[dose, min(day, state.history.shape[1] - 1)])

    def _dose(self, state: VaccinationState, day: int, population: int) -> None:
        doses = round(float(self.capacity) * population / 100_000)
        first, second = int(state.given[0]), int(state.given[1])
        # First doses go along the queue, so those due a second dose are positions [second, first by then).
        due = max(0, self._by(state, 0, day - round(float(self.interval))) - second)
        n_second = min(doses, due)
        n_first = min(doses - n_second, int(state.waiting) - first)
        state.given = state.given + torch.tensor([n_first, n_second], device=state.given.device)
        state.daily = torch.tensor([n_first, n_second], device=state.given.device)

    def _record(self, state: VaccinationState, day: int) -> None:
        """The cumulative doses at the end of ``day`` (the history grows by doubling)."""
        if day >= state.history.shape[1]:
            grown = state.history[:, -1:].expand(2, max(day + 1, 2 * state.history.shape[1]))
            grown = grown.clone()
            grown[:, : state.history.shape[1]] = state.history
            state.history = grown
        state.history[:, day:] = state.given.unsqueeze(1)

    def _protect(self, state: VaccinationState, day: int) -> None:
        ready = day - round(float(self.onset_days))
        for dose in (0, 1):
            done = int(state.protected[dose])
            now = self._by(state, dose, ready)
            if now > done:
                lo, hi = torch.searchsorted(
                    state.position, torch.tensor([done, now], device=state.position.device)
                ).tolist()
                protect(state.level, state.factors, state.queue[lo:hi].long(), dose, self)
                state.protected[dose] = now

    def in_mode_of(self, state: VaccinationState, like: VaccinationState) -> LayerState | None:
        """As :meth:`~populace.Layer.in_mode_of`; fast mode's factors follow from each agent's protection
        level."""
        if state.factors is None and like.factors is not None:
            with torch.no_grad():
                infection, severity = protection_tables(self)
                level = state.level.long()
                factors = torch.stack([infection[level], severity[level]]).to(like.factors.dtype)
            state = dataclasses.replace(state, factors=factors)
        return super().in_mode_of(state, like)

    def effects(self, state: VaccinationState, ctx: StepContext) -> Effects:
        if int(state.protected[0]) == 0:
            return Effects()
        if state.factors is not None:
            return Effects(susceptibility=state.factors[0], severity=state.factors[1])
        infection, severity = protection_tables(self)
        level = state.level.long()
        return Effects(susceptibility=infection[level], severity=severity[level])
