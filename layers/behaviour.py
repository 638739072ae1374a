"""Behaviour from archetypes: agents decide as their demographic group does, not by per-agent rules.

An :class:`Archetypes` table groups agents by age × income × occupation (e.g. "adult, low income, on-site
worker"). Each day the :class:`Behaviour` layer builds a context per (archetype, region) cell — local
prevalence, income shock, stimulus received — and asks a :class:`DecisionBackend` for three decision
probabilities per cell: go to work, isolate when symptomatic, seek a test when symptomatic. Agents act on
their cell's probabilities with a fixed personal disposition (one uniform per agent and decision, drawn at
set-up), so the same agents are the first to stay home as conditions change, and runs with different
parameters are coupled (common random numbers).

Backends:

* :class:`LogisticBackend` — ``p = σ(logit(baseline[a]) + slope[a] · context)``: small, differentiable and
  calibratable (its tables are ``nn.Parameter``\\ s). In differentiable mode work attendance and isolation
  pass through :class:`~populace.samplers.SmoothedBernoulli`, so gradients reach the tables.
* :class:`CachedQueryBackend` — asks any callable (a language model behind a prompt, a survey table) once
  per archetype and rounded context, and caches the answer: the number of queries grows with archetypes ×
  distinct contexts, never with agents. Not differentiable.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from populace.model import LayerState, Link, Phase, StepContext
from populace.samplers import SmoothedBernoulli

from .covid import Covid, CovidState
from .effects import Decider, Effects, combine
from .npi import Closures
from .stimulus import Stimulus

__all__ = [
    "DECISIONS",
    "FEATURES",
    "Archetypes",
    "Behaviour",
    "BehaviourState",
    "CachedQueryBackend",
    "DecisionBackend",
    "LogisticBackend",
]

DECISIONS = ("work", "isolate", "test")
"""Decision probabilities a backend returns: go to work (workers), isolate when symptomatic, seek a test
when symptomatic."""
FEATURES = ("prevalence", "income_shock", "stimulus")
"""Context of a decision: symptomatic residents per 1,000 in the agent's region (yesterday); share of income
lost (while work closures last); stimulus received in the last month, in thousands of dollars."""


@dataclass(frozen=True)
class Archetypes:
    """Agents grouped into archetypes.

    Attributes:
        index: ``int[agents]``, each agent's archetype.
        names: the archetypes' names.
        low_income: ``bool[archetypes]``, archetypes of low-income households.
        worker: ``bool[archetypes]``, archetypes with an on-site workplace.
    """

    index: torch.Tensor
    names: tuple[str, ...]
    low_income: torch.Tensor
    worker: torch.Tensor

    @classmethod
    def by_age_income_work(
        cls, age: torch.Tensor, low_income: torch.Tensor, worker: torch.Tensor
    ) -> Archetypes:
        """Children (0-17), adults (18-64) and seniors (65+) × low / other income × worker / not."""
        group = (age.long() >= 18).long() + (age.long() >= 65).long()
        index = (group * 4 + low_income.long() * 2 + worker.long()).to(torch.uint8)
        names, low, work = [], [], []
        for g in ("child", "adult", "senior"):
            for income in ("other income", "low income"):
                for job in ("not working", "on-site worker"):
                    names.append(f"{g}, {income}, {job}")
                    low.append(income == "low income")
                    work.append(job == "on-site worker")
        return cls(index, tuple(names), torch.tensor(low), torch.tensor(work))

    def __len__(self) -> int:
        return len(self.names)


class DecisionBackend(nn.Module, abc.ABC):
    """Maps archetypes and contexts to decision probabilities."""

    @abc.abstractmethod
    def forward(self, archetype: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``float32[cells, len(DECISIONS)]`` for ``archetype`` (``int64[cells]``) in ``context``
        (``float32[cells, len(FEATURES)]``)."""


class LogisticBackend(DecisionBackend):
    """``p[a, d] = σ(logit(baseline[a, d]) + Σ_f slope[a, d, f] · context[f])`` (see module docs).

    Args:
        baseline: ``[archetypes, decisions]`` probabilities with a zero context, in (0, 1).
        slope: ``[archetypes, decisions, features]`` log-odds change per unit of each feature.
    """

    def __init__(self, baseline: torch.Tensor, slope: torch.Tensor) -> None:
        super().__init__()
        if baseline.dim() != 2 or baseline.shape[1] != len(DECISIONS):
            raise ValueError(
                f"baseline: expected shape [archetypes, {len(DECISIONS)}], got {tuple(baseline.shape)}"
            )
        if slope.shape != (*baseline.shape, len(FEATURES)):
            raise ValueError(
                f"slope: expected shape {(*baseline.shape, len(FEATURES))}, got {tuple(slope.shape)}"
            )
        if bool(((baseline <= 0) | (baseline >= 1)).any()):
            raise ValueError("baseline: probabilities must lie strictly between 0 and 1")
        self.logit = nn.Parameter(torch.logit(baseline.double()).float())
        self.slope = nn.Parameter(slope.float())

    def forward(self, archetype: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        shift = (self.slope[archetype] * context[:, None, :]).sum(-1)
        return torch.sigmoid(self.logit[archetype] + shift)


class CachedQueryBackend(DecisionBackend):
    """Decisions from ``ask(archetype_name, context) -> {decision: probability}``, cached.

    Contexts are rounded to ``resolution`` (per feature) before asking, so a language model behind ``ask``
    is queried once per archetype and rounded context — ``queries`` counts them.

    Args:
        names: archetype names, passed to ``ask``.
        ask: the oracle; must return a probability in [0, 1] for every decision in :data:`DECISIONS`.
        resolution: rounding step per feature (default: 1 symptomatic per 1,000; 0.1 of income; $100).
    """

    def __init__(
        self,
        names: Sequence[str],
        ask: Callable[[str, Mapping[str, float]], Mapping[str, float]],
        resolution: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.names = tuple(names)
        self.ask = ask
        self.resolution = {"prevalence": 1.0, "income_shock": 0.1, "stimulus": 0.1, **(resolution or {})}
        self.cache: dict[tuple[int, tuple[float, ...]], tuple[float, ...]] = {}
        self.queries = 0

    def _answer(self, archetype: int, context: tuple[float, ...]) -> tuple[float, ...]:
        key = (archetype, context)
        if key not in self.cache:
            answer = self.ask(self.names[archetype], dict(zip(FEATURES, context, strict=True)))
            self.queries += 1
            missing = [d for d in DECISIONS if d not in answer]
            if missing:
                raise ValueError(f"ask({self.names[archetype]!r}): no probability for {missing}")
            values = tuple(float(answer[d]) for d in DECISIONS)
            if not all(0.0 <= v <= 1.0 for v in values):
                raise ValueError(f"ask({self.names[archetype]!r}): probabilities outside [0, 1]: {values}")
            self.cache[key] = values
        return self.cache[key]

    def forward(self, archetype: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        step = torch.tensor([self.resolution[f] for f in FEATURES], dtype=torch.float64)
        rounded = (context.detach().cpu().double() / step).round() * step
        rows = [
            self._answer(int(a), tuple(round(float(x), 6) for x in ctx))
            for a, ctx in zip(archetype.tolist(), rounded, strict=True)
        ]
        return torch.tensor(rows, dtype=torch.float32, device=context.device)


@dataclass
class BehaviourState(LayerState):
    """State of :class:`Behaviour`.

    Attributes:
        disposition: ``float32[3, agents]`` personal uniforms for the decisions in :data:`DECISIONS`.
        probability: ``[cells, 3]`` today's decision probabilities per (archetype, region) cell.
        attend: ``bool[agents]`` today's work attendance (``float32`` carrying gradients when
            differentiable).
        home: ``bool[agents]``, symptomatic agents isolating today (``float32`` when differentiable).
        attendance: ``[2]`` expected share of on-site workers at work today (the cells' probabilities
            averaged over their workers): low income, other income.
        isolating: ``[]`` symptomatic agents isolating today in the whole population.
        residents: ``float32[regions]`` residents per region (the whole population's).
        workers: ``float32[2, cells]`` on-site workers per cell and income tier (the whole population's).
    """

    disposition: torch.Tensor
    probability: torch.Tensor
    attend: torch.Tensor
    home: torch.Tensor
    attendance: torch.Tensor
    isolating: torch.Tensor
    residents: torch.Tensor
    workers: torch.Tensor


class Behaviour(Decider):
    """Archetype behaviour acting on a disease layer (see module docs).

    Args:
        archetypes: the agents' archetypes.
        region: ``int[agents]`` region of each agent (the context is regional).
        disease: the :class:`~populace.layers.covid.Covid` layer (symptoms, prevalence).
        backend: the decision backend.
        income_shock: ``(layer, share)``: while ``layer.work_closed(day)`` (a ``Closures``), low-income
            archetypes lose ``share`` of their income.
        stimulus: a ``Stimulus`` layer whose payments enter the context.
        work: name of the work setting; home_settings: settings an isolating agent leaves.
    """

    shardable = True

    phase = Phase.BEHAVIOUR
    carries = frozenset({"attend", "attendance", "home", "isolating", "probability"})
    cell: torch.Tensor
    cell_archetype: torch.Tensor
    cell_region: torch.Tensor
    residents: torch.Tensor
    workers: torch.Tensor

    def __init__(
        self,
        archetypes: Archetypes,
        region: torch.Tensor,
        disease: Covid,
        backend: DecisionBackend,
        *,
        income_shock: tuple[Closures, float] | None = None,
        stimulus: Stimulus | None = None,
        work: str = "work",
        home_settings: Sequence[str] = ("school", "work", "community"),
        n_regions: int | None = None,
    ) -> None:
        super().__init__()
        n = int(archetypes.index.numel())
        if region.shape != archetypes.index.shape:
            raise ValueError(f"region: expected {n} entries like archetypes.index, got {tuple(region.shape)}")
        self.n_agents = n
        self.archetypes = archetypes
        self.names = archetypes.names
        self.n_regions = n_regions if n_regions is not None else (int(region.max()) + 1 if n else 1)
        a, r = archetypes.index.long(), region.long()
        self.register_buffer("cell", (a * self.n_regions + r).to(torch.int32), persistent=False)
        cells = torch.arange(len(archetypes) * self.n_regions)
        self.register_buffer("cell_archetype", cells // self.n_regions, persistent=False)
        self.register_buffer("cell_region", cells % self.n_regions, persistent=False)
        residents = torch.bincount(r, minlength=self.n_regions).float()
        self.register_buffer("local_residents", residents, persistent=False)
        low, works = archetypes.low_income[a], archetypes.worker[a]
        tier = torch.where(low, 0, 1)  # on-site workers per cell, low-income tier first
        workers = torch.zeros(2, len(archetypes) * self.n_regions)
        workers.index_put_(
            (tier[works], self.cell[works].long()), torch.ones(int(works.sum())), accumulate=True
        )
        self.register_buffer("local_workers", workers, persistent=False)
        self.disease = Link(disease)
        self.backend = backend
        self.closures = None if income_shock is None else Link(income_shock[0])
        self.shock = 0.0 if income_shock is None else float(income_shock[1])
        self.stimulus = None if stimulus is None else Link(stimulus)
        self.work = work
        self.home_settings = tuple(home_settings)

    def observables(self) -> tuple[str, ...]:
        return ("work_attendance_low_income", "work_attendance_other", "isolating_symptomatic", "p_work")

    def labels(self) -> dict[str, tuple[str, ...]]:
        return {"p_work": self.names}

    def observe(self, state: BehaviourState) -> dict[str, torch.Tensor]:
        attendance = state.attendance.clone()
        p_work = state.probability[:, 0].reshape(len(self.names), self.n_regions)
        weights = state.residents / state.residents.sum()
        return {
            "work_attendance_low_income": attendance[0],
            "work_attendance_other": attendance[1],
            "isolating_symptomatic": state.isolating.clone(),
            "p_work": (p_work * weights).sum(1),
        }

    def stream_names(self) -> tuple[str, ...]:
        return DECISIONS

    def init_state(self, ctx: StepContext) -> BehaviourState:
        n, device = self.n_agents, ctx.streams.device
        disposition = torch.stack([ctx.streams.uniform(f"{self.name}.{d}", ctx.agents(n)) for d in DECISIONS])
        return BehaviourState(
            disposition=disposition,
            probability=torch.zeros(len(self.names) * self.n_regions, len(DECISIONS), device=device),
            attend=torch.ones(n, dtype=torch.bool, device=device),
            home=torch.zeros(n, dtype=torch.bool, device=device),
            attendance=torch.ones(2, device=device),
            isolating=torch.zeros((), dtype=torch.int64, device=device),
            residents=ctx.shard.sum(self.local_residents),
            workers=ctx.shard.sum(self.local_workers),
        )

    def context(self, state: BehaviourState, ctx: StepContext) -> torch.Tensor:
        """``float32[cells, len(FEATURES)]`` today's context of every (archetype, region) cell."""
        disease: CovidState = self.disease.state(ctx)
        device = self.cell.device
        symptomatic = disease.symptomatic
        regions = self.cell_region
        per_region = ctx.shard.sum(
            torch.bincount((self.cell[symptomatic].long() % self.n_regions), minlength=self.n_regions)
        )
        prevalence = (per_region.float() / state.residents.clamp(min=1) * 1000)[regions]
        low = self.archetypes.low_income.to(device)[self.cell_archetype]
        shock = torch.zeros_like(prevalence)
        if self.closures is not None and self.closures.layer.work_closed(ctx.day):
            shock = low.float() * self.shock
        stimulus = torch.zeros_like(prevalence)
        if self.stimulus is not None:
            received = self.stimulus.layer.received(ctx.day)
            stimulus = received.to(device)[self.cell_archetype] / 1000
        return torch.stack([prevalence, shock, stimulus], dim=1)

    def step(self, state: BehaviourState, ctx: StepContext) -> BehaviourState:
        probability = self.backend(self.cell_archetype, self.context(state, ctx))
        state.probability = probability
        p_work = torch.index_select(probability[:, 0], 0, self.cell)
        attend = state.disposition[0] < p_work.detach()
        symptomatic = self.disease.state(ctx).symptomatic
        p_isolate = probability[:, 1][self.cell[symptomatic].long()]
        isolates = state.disposition[1, symptomatic] < p_isolate.detach()
        if ctx.differentiable:
            state.attend = SmoothedBernoulli.apply(p_work, attend)
            x = SmoothedBernoulli.apply(p_isolate, isolates)
            state.home = torch.zeros(self.n_agents, device=x.device).index_put((symptomatic,), x)
            state.isolating = ctx.shard.sum(x.sum())
        else:
            state.attend = attend
            home = torch.zeros(self.n_agents, dtype=torch.bool, device=attend.device)
            home[symptomatic[isolates]] = True
            state.home = home
            state.isolating = ctx.shard.sum(torch.count_nonzero(isolates))
        workers = state.workers
        state.attendance = (workers * probability[:, 0]).sum(1) / workers.sum(1).clamp(min=1)
        return state

    def seeks_test(self, state: BehaviourState, agents: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        p = state.probability[:, 2].detach()[self.cell[agents].long()]
        return state.disposition[2, agents] < p

    def settings_used(self) -> tuple[str, ...]:
        return (*self.home_settings, self.work)

    def effects(self, state: BehaviourState, ctx: StepContext) -> Effects:
        present = ~state.home if state.home.dtype == torch.bool else 1 - state.home
        presence = dict.fromkeys(self.home_settings, present)
        at_work = combine([present, state.attend] if self.work in presence else [state.attend])
        assert at_work is not None
        presence[self.work] = at_work
        return Effects(presence=presence)
