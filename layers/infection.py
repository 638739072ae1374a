"""One infection core: a disease layer declares its stages, parameters and progression; :class:`Infection`
transmits.

What every disease shares lives here once:

* **contact settings** (:class:`~populace.contacts.Contacts`, unique names) and their per-place sums, gathered
  through one pluggable :class:`~populace.aggregation.Aggregation` (local ``index_add``/``index_select`` by
  default; one spanning processes or working on secret shares plugs in the same way);
* **Sellke thresholds**: each agent draws T ~ Exp(1) (divided by its fixed susceptibility) and is infected on
  the first day its accumulated hazard reaches it. Given survival, the chance of infection on a day with
  hazard λ is exactly 1 − exp(−λ): this *is* the daily Bernoulli model, with no random numbers per day and
  common random numbers across parameter values;
* the **infection estimator** (:mod:`populace.estimators`, an object: ``Sellke()``, ``Gumbel(tau)``,
  ``Smoothed()``) that gives the exact draw its derivative in differentiable mode;
* the **effects of modifiers** (:class:`~populace.layers.effects.Effects`: presence per setting, closures,
  vaccine protection, imported hazard). The model wires them: every :class:`Modifier` in a model acts on every
  disease in it, and the setting names a modifier uses are checked when the model is built;
* **count bookkeeping**: agents per stage, today's infections (in total and per setting), infectiousness.

A day: (1) :meth:`Infection.progress` (the subclass: who moves on today, e.g. E → I), (2) transmission from
today's infectious agents. In fast mode the state is ``uint8`` stages, ``int32`` due days and ``float32``
thresholds updated in place; in differentiable mode each agent also carries a float ``weight`` (1 once
infected, in value) whose gradient is that of its infection and later branches.

A subclass declares its stages (an ``IntEnum`` with ``S = 0``; ``stage_names``), ``infected_stage`` (where an
infection goes), ``infectious`` (the first and last infectious stage: a contiguous range), its parameters
(``beta`` is the per-contact transmissibility), and implements :meth:`progress` and :meth:`on_infection`. See
``layers/sirs.py`` for a whole disease in one short file.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from populace.aggregation import Aggregation, ExactSums
from populace.contacts import Contacts, Places
from populace.distributed import exact
from populace.estimators import Draw, Estimator, Smoothed
from populace.masks import true_indices
from populace.model import Layer, LayerState, Link, Phase, StepContext
from populace.samplers import LaterInfections

from .effects import Effects, Modifier, combine

__all__ = ["Infection", "InfectionState", "Move"]


@dataclass
class InfectionState(LayerState):
    """What every disease layer keeps (subclasses add their own fields).

    Attributes:
        stage: ``uint8[agents]``, the layer's ``Stage``.
        due: ``int32[agents]``, the day of the agent's next progression (``-1``: none).
        threshold: ``float32[agents]``, hazard still needed to infect the agent; ``inf`` unless susceptible.
        counts: ``[stages]`` agents per stage (``int64``; ``float32`` carrying gradients when differentiable).
        incidence: ``[]`` today's new infections.
        by_setting: ``float32[settings]`` today's new infections split by setting (expected shares).
        infectiousness: ``[]`` today's total relative infectiousness (0 for a layer of constant infectiousness
            on days its kept per-place sums serve: then the counts tell it).
        pressure: per setting, the per-place sums of emissions, kept up to date as agents start and stop
            being infectious (used when the layer's infectiousness is constant and no presence factor
            applies to the setting today; otherwise the sums are taken afresh).
        weight: ``float32[agents]`` (differentiable mode): 1 for infected agents, carrying the gradient of
            their infection and branches; ``None`` in fast mode.
        susceptible: ``float32[agents]`` the fixed relative susceptibility the thresholds were divided by,
            or ``None`` (1 for everyone).
        workspace: ``float32[2, agents]`` scratch buffers of fast mode.
        later: what the reverse pass learns of later infections (the :class:`~populace.estimators.Sellke`
            estimator), else ``None``.
    """

    stage: torch.Tensor
    due: torch.Tensor
    threshold: torch.Tensor
    counts: torch.Tensor
    incidence: torch.Tensor
    by_setting: torch.Tensor
    infectiousness: torch.Tensor
    pressure: list[torch.Tensor]
    weight: torch.Tensor | None
    susceptible: torch.Tensor | None
    workspace: torch.Tensor | None
    later: LaterInfections | None


@dataclass(frozen=True)
class Move:
    """Agents moving from stage ``src`` to ``to`` today; ``duration``: the row of ``durations`` that gives
    their next due day (``None``: no further progression); ``weight``: their path weights
    (differentiable mode)."""

    agents: torch.Tensor
    src: int
    to: int
    duration: int | None
    weight: torch.Tensor | None


@dataclass(frozen=True)
class _Term:
    """One setting's part of today's hazard: force = contacts.force(pressure, scale) × presence."""

    contacts: Contacts
    pressure: torch.Tensor
    scale: torch.Tensor
    presence: torch.Tensor | None


class Infection(Layer):
    """Abstract disease layer over ``n_agents`` agents (see module docs).

    Args:
        n_agents: population size.
        settings: contact structures (places, age mixing, networks, kernels); names must be unique.
        initial_infections: agents infected at day 0, chosen uniformly.
        estimator: gradient estimator of the infection draw (:mod:`populace.estimators`).
        aggregation: how emissions are summed per place (:mod:`populace.aggregation`); exact sums, across
            the processes of a split population, by default.
    """

    phase = Phase.DISEASE
    infected_stage: ClassVar[int]
    """The stage a new infection enters."""
    infectious: ClassVar[tuple[int, int]]
    """First and last infectious stage (inclusive; the infectious stages are contiguous)."""
    attributes_by_setting: ClassVar[bool] = False
    """Whether today's infections are split by setting (``InfectionState.by_setting``), for a layer that
    reports it: one gather per setting and new infection (measured: 7% of bench-seir's time at 8.4M agents,
    so it is off unless asked for)."""
    constant_infectiousness: ClassVar[bool] = False
    """Whether an infectious agent always emits 1 (times its weight): then the per-place sums are kept up to
    date as agents change stage instead of being taken afresh every day."""
    carries = frozenset({"counts", "incidence", "by_setting", "infectiousness", "weight"})
    """(With constant infectiousness the per-place pressures are kept day to day and carry them too.)"""
    mode_shared = frozenset({"susceptible", "later"})

    def in_mode_of(self, state: Any, like: Any) -> LayerState | None:
        """As :meth:`Layer.in_mode_of`; an agent's weight is 1 in value from its infection until it is
        susceptible again (stage 0): a fast state's weights follow from its stages. A fast state gets
        scratch buffers of its own."""
        if state.weight is None and like.weight is not None:
            state = dataclasses.replace(state, weight=(state.stage != 0).to(like.weight.dtype))
        if state.workspace is None and like.workspace is not None:
            workspace = torch.empty((2, state.stage.numel()), device=state.stage.device)
            state = dataclasses.replace(state, workspace=workspace)
        return super().in_mode_of(state, like)

    beta: torch.Tensor

    def __init__(
        self,
        n_agents: int,
        settings: Sequence[Contacts],
        *,
        initial_infections: int = 0,
        estimator: Estimator | None = None,
        aggregation: Aggregation | None = None,
    ) -> None:
        super().__init__()
        names = [s.name for s in settings]
        if len(set(names)) != len(names):
            raise ValueError(f"settings: names must be unique, got {names}")
        for s in settings:
            if not isinstance(s, Contacts):
                raise TypeError(f"settings: expected Contacts, got {type(s).__name__}")
            if s.n_agents != n_agents:
                raise ValueError(f"settings: {s.name} covers {s.n_agents} agents, expected {n_agents}")
        if isinstance(initial_infections, bool) or initial_infections < 0:
            raise ValueError(f"initial_infections: expected a count >= 0, got {initial_infections}")
        if estimator is not None and not isinstance(estimator, Estimator):
            raise TypeError(
                f"estimator: expected an Estimator object (populace.estimators: Sellke(), Gumbel(tau), "
                f"Smoothed()), got {estimator!r}"
            )
        self.n_agents = n_agents
        self.settings = nn.ModuleDict({s.name: s for s in settings})
        self.initial_infections = initial_infections
        self.estimator: Estimator = estimator if estimator is not None else Smoothed()
        self.aggregation: Aggregation = aggregation if aggregation is not None else ExactSums()
        self.modifiers: tuple[Link[Modifier], ...] = ()
        first, last = self.infectious
        self._first_infectious, self._n_infectious = first, last - first + 1
        self._infected_emits = self._emits(self.infected_stage)

    # ------------------------------------------------------------------ wiring
    def contacts(self) -> list[Contacts]:
        """The settings, in order."""
        return [s for s in self.settings.values() if isinstance(s, Contacts)]

    def wire(self, layers: Sequence[Layer]) -> None:
        """Act on the effects of every :class:`Modifier` among ``layers`` (called by the model), checking the
        setting names each modifier uses."""
        modifiers = [m for m in layers if isinstance(m, Modifier)]
        known = tuple(self.settings)
        for m in modifiers:
            unknown = [s for s in m.settings_used() if s not in self.settings]
            if unknown:
                raise ValueError(
                    f"{m.name}: {', '.join(map(repr, unknown))} is not a setting of {self.name} "
                    f"(its settings: {', '.join(known)})"
                )
        self.modifiers = tuple(Link(m) for m in modifiers)

    def stage(self, state: InfectionState) -> torch.Tensor:
        return state.stage

    def stream_names(self) -> tuple[str, ...]:
        return ("threshold", "seeds")

    # ------------------------------------------------------------------ what subclasses declare
    @abc.abstractmethod
    def progress(self, state: Any, ctx: StepContext, effects: list[Effects]) -> None:
        """Move the agents whose due day is today (the disease's course after infection)."""

    @abc.abstractmethod
    def on_infection(
        self, state: Any, new: torch.Tensor, weight: torch.Tensor | None, ctx: StepContext
    ) -> None:
        """What else happens to agents infected today (``new``, ``int64[k]``; ``weight``: their weights in
        differentiable mode): at least their due day."""

    def transmissibility(self) -> torch.Tensor:
        """Per-contact transmissibility, the scale of every setting's force (``beta``)."""
        return self.beta

    def relative_infectiousness(self, state: Any, sources: torch.Tensor) -> torch.Tensor | None:
        """``float32[k]`` emission of each infectious agent of ``sources`` before its weight; ``None``: 1."""
        return None

    def fixed_susceptibility(self) -> torch.Tensor | None:
        """``float32[agents]`` relative susceptibility fixed for the run (thresholds are divided by it), or
        ``None``."""
        return None

    def hazard_factor(self, state: Any) -> torch.Tensor | None:
        """``float32[agents]`` factor on each agent's hazard that may carry gradients (e.g. learnable
        susceptibility by kind), or ``None``."""
        return None

    def external_hazard(self, state: Any, ctx: StepContext) -> torch.Tensor | None:
        """``float32[agents]`` hazard from outside the contact settings (e.g. an environment), or ``None``."""
        return None

    def open_weight(self, state: Any) -> torch.Tensor:
        """Each agent's soft susceptibility in differentiable mode (``1 − weight``)."""
        assert state.weight is not None
        return 1 - state.weight

    def value_groups(self) -> torch.Tensor | None:
        """``int64[agents]`` groups within which the Sellke estimator values an earlier infection."""
        return None

    def value_group_count(self) -> int:
        """The number of groups of :meth:`value_groups` in the whole population (0 without groups)."""
        return 0

    def daily_totals(self, state: Any) -> tuple[str, ...]:
        """Names of the state's fields that are totals of the day over agents (besides ``incidence``,
        ``infectiousness`` and ``by_setting``), summed over the processes of a split population."""
        return ()

    # ------------------------------------------------------------------ set-up
    def infection_state(self, ctx: StepContext, n_stages: int) -> tuple[dict[str, Any], torch.Tensor]:
        """The fields of :class:`InfectionState` at day 0 and the initially infected agents (``int64[k]``),
        drawn and counted; the subclass builds its state, then calls :meth:`seed` for them."""
        n, device = self.n_agents, ctx.streams.device
        everyone = ctx.shard.total if ctx.shard.spans else n
        if self.initial_infections > everyone:
            raise ValueError(f"initial_infections: expected 0..{everyone}, got {self.initial_infections}")
        susceptible = self.fixed_susceptibility()
        agents = ctx.agents(n)
        threshold = ctx.streams.exponential(f"{self.name}.threshold", agents)
        if susceptible is not None:
            threshold = threshold / susceptible
        keys = ctx.streams.bits(f"{self.name}.seeds", agents)
        seeds = ctx.shard.smallest(keys, self.initial_infections)
        stage = torch.zeros(n, dtype=torch.uint8, device=device)
        stage[seeds] = self.infected_stage
        threshold[seeds] = torch.inf
        dtype = torch.float32 if ctx.differentiable else torch.int64
        counts = torch.zeros(n_stages, dtype=dtype, device=device)
        counts[0], counts[self.infected_stage] = n - seeds.numel(), seeds.numel()
        weight = workspace = None
        if ctx.differentiable:
            weight = torch.zeros(n, device=device)
            weight[seeds] = 1.0
        else:
            workspace = torch.empty(2, n, device=device)
        return dict(
            stage=stage,
            due=torch.full((n,), -1, dtype=torch.int32, device=device),
            threshold=threshold,
            counts=counts,
            incidence=torch.zeros((), dtype=dtype, device=device),
            by_setting=torch.zeros(len(self.settings), device=device),
            infectiousness=torch.zeros((), dtype=torch.float32, device=device),
            pressure=[self.aggregation.empty(c) for c in self.contacts()],
            weight=weight,
            susceptible=None if susceptible is None or not ctx.differentiable else susceptible,
            workspace=workspace,
            later=self._later(ctx),
        ), seeds

    def _later(self, ctx: StepContext) -> LaterInfections | None:
        later = self.estimator.later(self.value_groups()) if ctx.differentiable else None
        if later is not None and ctx.shard.spans:
            # Its reverse pass values today's infections over every process. Those sums run inside the
            # backward pass between the chained collectives of the same day (the day's totals use its
            # infections; its pressure feeds them), so every process runs them in the same order.
            later.across(self.value_group_count(), ctx.shard.add_up)
        return later

    def seed(self, state: InfectionState, seeds: torch.Tensor, ctx: StepContext) -> None:
        """Finish set-up for the initially infected ``seeds`` (drawn by :meth:`infection_state`): their
        :meth:`on_infection`, and their emissions if the infected stage is infectious."""
        weight = None if state.weight is None else state.weight[seeds]
        self.on_infection(state, seeds, weight, ctx)
        if self.constant_infectiousness and self._infected_emits:
            self._keep_pressure(state, seeds, torch.ones(seeds.numel(), device=seeds.device))
        self._sum_over_processes(state, ctx, torch.zeros_like(state.counts))

    # ------------------------------------------------------------------ day
    def step(self, state: InfectionState, ctx: StepContext) -> InfectionState:
        before = state.counts.clone() if ctx.shard.spans else state.counts
        effects = [m.layer.effects(m.state(ctx), ctx) for m in self.modifiers]
        self.progress(state, ctx, effects)
        self.transmit(state, ctx, effects)
        self._sum_over_processes(state, ctx, before)
        return state

    def _sum_over_processes(self, state: InfectionState, ctx: StepContext, before: torch.Tensor) -> None:
        """Make the counts and the day's totals those of the whole population (one collective; nothing in
        one process). ``before``: the counts at the start of the day (the same on every process).

        Every total is exact (integers, or per-agent values rounded to 2⁻²⁴ in ``float64``), so the sums do
        not depend on how the population is split."""
        if ctx.shard.spans:
            fields = ("incidence", "infectiousness", "by_setting", *self.daily_totals(state))
            parts = [state.counts - before, *(getattr(state, f) for f in fields)]
            flat = [p.reshape(-1).to(torch.float64) for p in parts]
            summed = ctx.shard.sum(torch.cat(flat)).split([f.numel() for f in flat])
            state.counts = before + summed[0].to(state.counts.dtype)
            for name, part, total in zip(fields, parts[1:], summed[1:], strict=True):
                setattr(state, name, total.reshape(part.shape).to(part.dtype))
        state.infectiousness = state.infectiousness.to(torch.float32)
        state.by_setting = state.by_setting.to(torch.float32)

    def is_infectious(self, stage: torch.Tensor) -> torch.Tensor:
        """``bool`` of each ``uint8`` stage code: infectious or not."""
        return (stage - self._first_infectious) < self._n_infectious  # uint8 wraps below the first

    def due_today(self, state: InfectionState, day: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The agents (``int64[k]``) whose progression is due ``day``, and their current stages."""
        agents = true_indices(state.due == day)
        return agents, state.stage[agents]

    def moving(
        self, state: InfectionState, agents: torch.Tensor, src: int, to: int, duration: int | None
    ) -> Move:
        """A :class:`Move` of ``agents`` carrying their weights (differentiable mode)."""
        return Move(agents, src, to, duration, None if state.weight is None else state.weight[agents])

    def _emits(self, stage: int) -> bool:
        return 0 <= stage - self._first_infectious < self._n_infectious

    def move(self, state: InfectionState, day: int, moves: Sequence[Move]) -> None:
        """Apply today's moves: stages, due days (from ``state.durations``), counts, weights, the kept
        per-place sums, and :meth:`on_move` for each."""
        delta = torch.zeros_like(state.counts)
        moved: list[torch.Tensor] = []
        weights: list[torch.Tensor] = []
        for move in moves:
            group = move.agents
            if group.numel() == 0:
                continue
            state.stage[group] = move.to
            if move.duration is None:
                state.due[group] = -1
            else:
                durations: torch.Tensor = getattr(state, "durations")  # noqa: B009 (subclasses' field)
                state.due[group] = day + durations[move.duration, group].to(torch.int32)
            amount = group.numel() if move.weight is None else move.weight.sum()
            delta[move.src] -= amount
            delta[move.to] += amount
            if self.constant_infectiousness:
                starts, stops = self._emits(move.to), self._emits(move.src)
                if starts != stops:
                    w = torch.ones(group.numel(), device=group.device) if move.weight is None else move.weight
                    self._keep_pressure(state, group, w if starts else -w)
            self.on_move(state, move)
            if move.weight is not None:
                moved.append(group)
                weights.append(move.weight)
        state.counts = state.counts + delta
        if state.weight is not None and moved:
            state.weight = state.weight.index_put((torch.cat(moved),), torch.cat(weights))

    def on_move(self, state: Any, move: Move) -> None:
        """Record what a move means (events such as admissions); nothing by default."""

    def _keep_pressure(self, state: InfectionState, agents: torch.Tensor, emitted: torch.Tensor) -> None:
        state.pressure = [
            self.aggregation.add(c, p, agents, emitted)
            for c, p in zip(self.contacts(), state.pressure, strict=True)
        ]

    def transmit(self, state: InfectionState, ctx: StepContext, effects: list[Effects]) -> None:
        """Today's infections from the contact settings, modifiers' effects and any external hazard."""
        imports = [e.imported for e in effects if e.imported is not None]
        external = self.external_hazard(state, ctx)
        if external is not None:
            imports.insert(0, external)
        imported = sum(imports[1:], imports[0]) if imports else None
        hazard, terms = self._hazard(state, effects, ctx)
        if hazard is None:
            state.infectiousness = torch.zeros_like(state.infectiousness)
            state.by_setting = torch.zeros_like(state.by_setting)
            if imported is None:
                state.incidence = torch.zeros_like(state.incidence)
                return
            hazard = imported.clone()
        elif imported is not None:
            hazard = hazard.add_(imported) if state.weight is None else hazard + imported
        factor = combine(
            [e.susceptibility for e in effects if e.susceptibility is not None]
            + [f for f in (self.hazard_factor(state),) if f is not None]
        )
        if factor is not None:
            fast = state.weight is None and not factor.requires_grad
            hazard = hazard.mul_(factor) if fast else hazard * factor
        if state.weight is None:
            state.threshold.sub_(hazard)
            new = true_indices(state.threshold <= 0)
            self._infect(state, new, ctx, None, None)
            self._attribute(state, terms, new, imported)
            return
        susceptible = state.susceptible
        sample = state.threshold - hazard.detach() <= 0
        # a clamp (~0.2 ms at 1M agents), not torch.where(rate >= 0, rate, 0.0): its tape would keep a bool,
        # not the float rate (3 bytes per agent and day less), but it took 1.5-4 ms a day
        rate = (hazard if susceptible is None else hazard * susceptible).clamp(min=0)
        draw = Draw(
            rate=rate,
            sample=sample,
            threshold=state.threshold,
            susceptible=susceptible,
            opening=functools.partial(self.open_weight, state),
            day=ctx.day,
            later=state.later,
        )
        x = self.estimator.infect(draw)
        state.threshold = state.threshold - hazard.detach()
        new = true_indices(sample)
        state.weight = state.weight + x
        self._infect(state, new, ctx, state.weight[new], x.sum())
        self._attribute(state, terms, new, imported)

    def _hazard(
        self, state: InfectionState, effects: list[Effects], ctx: StepContext
    ) -> tuple[torch.Tensor | None, list[_Term]]:
        """The hazard on every agent from the settings (``None`` if nobody is infectious in a population
        held by one process), and each setting's term (to attribute today's infections)."""
        presences = _products(
            [[e.presence[c.name] for e in effects if c.name in e.presence] for c in self.contacts()]
        )
        kept = self.constant_infectiousness
        sources: torch.Tensor | None = None
        rel: torch.Tensor | None = None
        # today's total, summed over processes at the end of the day: never yesterday's (0 when the kept
        # sums make it unnecessary)
        state.infectiousness = torch.zeros_like(state.infectiousness)
        if not kept or any(p is not None for p in presences):
            sources = true_indices(self.is_infectious(state.stage))
            if sources.numel() == 0 and not ctx.shard.spans:
                return None, []
            rel = self.relative_infectiousness(state, sources)
            if state.weight is not None:
                rel = state.weight[sources] if rel is None else rel * state.weight[sources]
            if rel is None:
                rel = torch.ones(sources.numel(), device=sources.device)
            state.infectiousness = exact(rel).sum()  # float32 once summed over processes
        fast = state.workspace is not None
        transmissibility = self.transmissibility()
        hazard: torch.Tensor | None = None
        terms: list[_Term] = []
        sums = []
        for i, (contacts, presence) in enumerate(zip(self.contacts(), presences, strict=True)):
            if presence is None and kept:
                sums.append(state.pressure[i])
            else:
                assert sources is not None
                assert rel is not None
                emitted = rel if presence is None else rel * presence[sources]
                sums.append(
                    self.aggregation.add(contacts, self.aggregation.empty(contacts), sources, emitted)
                )
        totals = self.aggregation.total(self.contacts(), sums, ctx.shard)
        for contacts, presence, pressure in zip(self.contacts(), presences, totals, strict=True):
            scale = transmissibility
            place_scale = combine(
                [e.place_scale[contacts.name] for e in effects if contacts.name in e.place_scale]
            )
            if place_scale is not None:
                if not isinstance(contacts, Places):
                    raise TypeError(f"place_scale: {contacts.name} is not a Places setting")
                scale = scale * place_scale
            terms.append(_Term(contacts, pressure.detach(), scale.detach(), presence))
            if fast:
                assert state.workspace is not None
                if hazard is None:
                    hazard = self.aggregation.force(contacts, pressure, scale, out=state.workspace[0])
                    if presence is not None:
                        hazard.mul_(presence)
                else:
                    force = self.aggregation.force(contacts, pressure, scale, out=state.workspace[1])
                    if presence is None:
                        hazard.add_(force)
                    else:
                        hazard.addcmul_(force, presence)
            else:
                if presence is None:
                    force = self.aggregation.force(contacts, pressure, scale)
                else:
                    force = self.aggregation.force_times(contacts, pressure, scale, presence)
                hazard = force if hazard is None else hazard + force
        return hazard, terms

    def _attribute(
        self, state: InfectionState, terms: list[_Term], new: torch.Tensor, imported: torch.Tensor | None
    ) -> None:
        """Expected share of today's infections per setting: each new case split by its settings' forces
        and the imported hazard (whose share no setting gets)."""
        if new.numel() == 0 or not terms or not self.attributes_by_setting:
            state.by_setting = torch.zeros_like(state.by_setting)
            return
        forces = []
        for t in terms:
            force = t.contacts.force_at(t.pressure, t.scale, new)
            forces.append(force if t.presence is None else force * t.presence[new].detach())
        f = torch.stack(forces)
        total = f.sum(0) if imported is None else f.sum(0) + imported[new].detach()
        state.by_setting = exact(f / total.clamp(min=1e-30)).sum(1)

    def _infect(
        self,
        state: InfectionState,
        new: torch.Tensor,
        ctx: StepContext,
        weight: torch.Tensor | None,
        amount: torch.Tensor | None,
    ) -> None:
        """Infect ``new`` today: thresholds, stage, counts (``amount``: the soft count in differentiable
        mode), the kept per-place sums when the infected stage is infectious, and :meth:`on_infection`."""
        state.threshold[new] = torch.inf
        state.stage[new] = self.infected_stage
        self.on_infection(state, new, weight, ctx)
        if self.constant_infectiousness and self._infected_emits:
            self._keep_pressure(
                state, new, torch.ones(new.numel(), device=new.device) if weight is None else weight
            )
        if amount is None:
            k = new.numel()
            state.counts[0] -= k
            state.counts[self.infected_stage] += k
            state.incidence = torch.tensor(k, dtype=state.counts.dtype, device=state.counts.device)
        else:
            delta = torch.zeros_like(state.counts)
            delta[0] -= amount
            delta[self.infected_stage] += amount
            state.counts = state.counts + delta
            state.incidence = amount


def _products(factors: list[list[torch.Tensor]]) -> list[torch.Tensor | None]:
    """:func:`~populace.layers.effects.combine` of each list of ``factors``, each distinct list (the same
    tensors) computed once: modifiers give several settings the same presence (a household's members stay
    home from every setting but home), and each product is a pass over every agent."""
    done: dict[tuple[int, ...], torch.Tensor | None] = {}
    out = []
    for group in factors:
        key = tuple(id(f) for f in group)
        if key not in done:
            done[key] = combine(group)
        out.append(done[key])
    return out
