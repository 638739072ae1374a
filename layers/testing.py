"""Testing with isolation of positives and quarantine of their households.

Each day (before transmission), up to ``capacity`` tests are given: first to symptomatic agents who seek a
test (with the probability their behaviour archetype gives, or ``seek_probability``) and were not tested in
the last ``retest_days``, in random order; the rest of the capacity goes to random screening of
``screening`` of the population. A test is positive with the sensitivity of the agent's stage (false
positives with ``1 − specificity``). Results arrive ``delay`` days later; then a positive agent isolates for
``isolation_days`` with probability ``isolation_compliance``, and each member of its household quarantines
for ``quarantine_days`` with probability ``quarantine_compliance``. Isolated and quarantined agents stay
home: presence 0 in every setting but the household.

Test kinds (:data:`KINDS`) differ in sensitivity, turnaround and cost; their defaults cite their sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from populace.masks import true_indices
from populace.model import LayerState, Link, Phase, StepContext
from populace.params import Param, register_params

from .covid import Breakdown, Covid, CovidState, Stage
from .effects import Decider, Effects, Modifier

__all__ = ["KINDS", "TestKind", "Testing", "TestingState"]


@dataclass(frozen=True)
class TestKind:
    """A test technology.

    Attributes:
        sensitivity: P(positive) by stage: exposed, presymptomatic, asymptomatic, symptomatic.
        specificity: P(negative | not infected).
        delay: days from test to result.
        cost: dollars per test.
        source: where the numbers come from.
    """

    sensitivity: tuple[float, float, float, float]
    specificity: float
    delay: float
    cost: float
    source: str


RETEST_DAYS = 7
"""An agent is not tested again within this many days of its last test."""

KINDS: dict[str, TestKind] = {
    "pcr": TestKind(
        sensitivity=(0.0, 0.55, 0.7, 0.8),
        specificity=0.998,
        delay=2,
        cost=100.0,
        source="Sensitivity: Kucirka et al. 2020 (Ann Intern Med 173:262), false-negative rate ~67% four "
        "days after infection, 38% at symptom onset, 20% three days later (presymptomatic 0.55, symptomatic "
        "0.8; asymptomatic taken between). Turnaround 2 days (NYC 2020 median 1–3 d). Cost: the $100 "
        "Medicare payment for high-throughput PCR (CMS ruling CMS-2020-1-R2, April 2020).",
    ),
    "antigen": TestKind(
        sensitivity=(0.0, 0.58, 0.58, 0.72),
        specificity=0.996,
        delay=0,
        cost=5.0,
        source="Dinnes et al. 2021 (Cochrane CD013705): average sensitivity 72% in symptomatic and 58% in "
        "asymptomatic people, specificity 99.6%. Result in 15 minutes. Cost: Abbott BinaxNOW's $5 price "
        "(August 2020).",
    ),
}

CAPACITY = Param(
    600.0,
    (0.0, 100_000.0),
    "tests/100k people/day",
    doc="Tests available per day per 100,000 people. NYC ran roughly 1,200 per 100k per day at its late-2020 "
    "peak (about 100,000 tests/day; NYC DOHMH coronavirus-data, trends/tests.csv); 600 is half of that.",
)
SEEK_PROBABILITY = Param(
    0.5,
    (0.0, 1.0),
    "probability",
    doc="P(a symptomatic agent seeks a test) when no behaviour layer decides it. Assumed; calibrate.",
)
SCREENING = Param(
    0.0,
    (0.0, 1.0),
    "fraction/day",
    doc="Share of the population offered a random screening test each day (within the spare capacity).",
)
ISOLATION_COMPLIANCE = Param(
    0.8,
    (0.0, 1.0),
    "probability",
    doc="P(a positive agent isolates). Smith et al. 2021 (BMJ 372:n608) found 42.5% full adherence to "
    "self-isolation in the UK; mandated isolation with support reaches more. Covasim's isolation factor "
    "0.2 (80% fewer contacts) is the default here.",
)
ISOLATION_DAYS = Param(
    10.0, (0.0, 60.0), "days", doc="Isolation after a positive result (CDC 2020: 10 days)."
)
QUARANTINE_COMPLIANCE = Param(
    0.5,
    (0.0, 1.0),
    "probability",
    doc="P(a household member of a positive agent quarantines). Smith et al. 2021 (BMJ 372:n608) found "
    "10.9% full adherence among UK contacts; 0.5 assumes NYC's Test & Trace support. Calibrate.",
)
QUARANTINE_DAYS = Param(
    14.0, (0.0, 60.0), "days", doc="Quarantine of household contacts (CDC guidance of 2020: 14 days)."
)


@dataclass
class TestingState(LayerState):
    """State of :class:`Testing`.

    Attributes:
        last_test: ``int32[agents]``, day of the agent's last test (−32,768: never).
        result_day: ``int32[agents]``, day a pending result arrives (``-1``: none).
        positive: ``bool[agents]``, the pending result.
        home_until: ``int32[agents]``, last day of isolation or quarantine (``-1``: none).
        daily: ``[3]`` today's tests, positives received, and agents newly staying home.
        detected: ``int64[Σ groups]`` today's positives per breakdown group.
        isolating: ``[]`` agents at home today because of testing.
        present: ``bool[agents]``, agents not staying home today.
    """

    last_test: torch.Tensor
    result_day: torch.Tensor
    positive: torch.Tensor
    home_until: torch.Tensor
    daily: torch.Tensor
    detected: torch.Tensor
    isolating: torch.Tensor
    present: torch.Tensor


class Testing(Modifier):
    """Testing of one :data:`KINDS` kind, acting on the disease layer ``disease`` (see module docs).

    Args:
        disease: the :class:`~populace.layers.covid.Covid` layer whose agents are tested.
        household: ``int[agents]`` household index, households stored as consecutive agents.
        kind: ``"pcr"`` or ``"antigen"``.
        settings: settings a staying-home agent leaves (not the household).
        seek: a layer deciding per agent whether a symptomatic agent seeks a test (``Behaviour``), or
            ``None`` to use ``seek_probability``.
        breakdowns: groupings of the ``detected_by_*`` series.
        delay, cost: override the kind's turnaround (days) and price ($/test).
    """

    shardable = True

    __test__ = False  # not a pytest test class despite its name
    phase = Phase.INTERVENTION
    capacity: torch.Tensor
    seek_probability: torch.Tensor
    screening: torch.Tensor
    isolation_compliance: torch.Tensor
    isolation_days: torch.Tensor
    quarantine_compliance: torch.Tensor
    quarantine_days: torch.Tensor
    sensitivity: torch.Tensor
    household_start: torch.Tensor
    household_of: torch.Tensor

    def __init__(
        self,
        disease: Covid,
        household: torch.Tensor,
        *,
        kind: str = "pcr",
        settings: Sequence[str] = ("school", "work", "community"),
        seek: Decider | None = None,
        breakdowns: Sequence[Breakdown] = (),
        delay: float | None = None,
        cost: float | None = None,
        capacity: Param = CAPACITY,
        seek_probability: Param = SEEK_PROBABILITY,
        screening: Param = SCREENING,
        isolation_compliance: Param = ISOLATION_COMPLIANCE,
        isolation_days: Param = ISOLATION_DAYS,
        quarantine_compliance: Param = QUARANTINE_COMPLIANCE,
        quarantine_days: Param = QUARANTINE_DAYS,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        spec = KINDS[kind]
        self.kind, self.spec = kind, spec
        self.delay = int(spec.delay if delay is None else delay)
        self.cost = float(spec.cost if cost is None else cost)
        if self.delay < 0 or self.cost < 0:
            raise ValueError(f"delay and cost must be non-negative, got {self.delay} and {self.cost}")
        self.disease = Link(disease)
        self.seek = None if seek is None else Link(seek)
        self.settings = tuple(settings)
        self.breakdowns = tuple(breakdowns)
        household = household.long()
        n = int(household.numel())
        if n and bool((household[1:] < household[:-1]).any()):
            raise ValueError("household: households must be stored as consecutive agents (sorted index)")
        self.n_agents = n
        _, first, sizes = torch.unique_consecutive(household, return_inverse=True, return_counts=True)
        self.register_buffer("household_of", first.to(torch.int32), persistent=False)
        starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        self.register_buffer(
            "household_start", torch.stack([starts, sizes]).to(torch.int32), persistent=False
        )
        self.register_buffer("sensitivity", torch.tensor(spec.sensitivity), persistent=False)
        register_params(
            self,
            capacity=capacity,
            seek_probability=seek_probability,
            screening=screening,
            isolation_compliance=isolation_compliance,
            isolation_days=isolation_days,
            quarantine_compliance=quarantine_compliance,
            quarantine_days=quarantine_days,
        )

    def observables(self) -> tuple[str, ...]:
        k = self.kind
        names = [f"tests_{k}", f"detected_{k}", f"cost_tests_{k}", f"home_{k}"]
        return tuple(names + [f"detected_{k}_by_{b.name}" for b in self.breakdowns])

    def labels(self) -> dict[str, tuple[str, ...]]:
        return {f"detected_{self.kind}_by_{b.name}": b.labels for b in self.breakdowns}

    def observe(self, state: TestingState) -> dict[str, torch.Tensor]:
        k, daily, detected = self.kind, state.daily.clone(), state.detected.clone()
        out = {
            f"tests_{k}": daily[0],
            f"detected_{k}": daily[1],
            f"cost_tests_{k}": daily[0].double() * self.cost,
            f"home_{k}": state.isolating.clone(),
        }
        column = 0
        for b in self.breakdowns:
            out[f"detected_{k}_by_{b.name}"] = detected[column : column + len(b.labels)]
            column += len(b.labels)
        return out

    def stream_names(self) -> tuple[str, ...]:
        return ("seek", "queue", "screen", "result", "isolate", "quarantine")

    def init_state(self, ctx: StepContext) -> TestingState:
        n, device = self.n_agents, ctx.streams.device
        # far enough back for any run's retest window, and within int16: the lean reverse mode's snapshots
        # then keep it in 2 bytes an agent, not 4 (replay.Kept; 38 MB less over a 1M-agent, 120-day run)
        never = torch.iinfo(torch.int16).min
        return TestingState(
            last_test=torch.full((n,), never, dtype=torch.int32, device=device),
            result_day=torch.full((n,), -1, dtype=torch.int32, device=device),
            positive=torch.zeros(n, dtype=torch.bool, device=device),
            home_until=torch.full((n,), -1, dtype=torch.int32, device=device),
            daily=torch.zeros(3, dtype=torch.int64, device=device),
            detected=torch.zeros(
                sum(len(b.labels) for b in self.breakdowns), dtype=torch.int64, device=device
            ),
            isolating=torch.zeros((), dtype=torch.int64, device=device),
            present=torch.ones(n, dtype=torch.bool, device=device),
        )

    def step(self, state: TestingState, ctx: StepContext) -> TestingState:
        disease: CovidState = self.disease.state(ctx)
        tested = self._test(state, disease, ctx)
        self._results(state, ctx)
        state.daily[0] = tested
        state.present = state.home_until < ctx.day
        state.isolating = self.n_agents - torch.count_nonzero(state.present)  # bool.sum() widens first
        if ctx.shard.spans:  # the whole population's counts (one collective)
            parts = [state.daily, state.detected, state.isolating.reshape(1)]
            summed = ctx.shard.sum(torch.cat(parts)).split([p.numel() for p in parts])
            state.daily, state.detected, state.isolating = summed[0], summed[1], summed[2].reshape(())
        return state

    def _test(self, state: TestingState, disease: CovidState, ctx: StepContext) -> int:
        day, n = ctx.day, ctx.population(self.n_agents)
        capacity = round(float(self.capacity) * n / 100_000)
        if capacity <= 0:
            return 0
        symptomatic = disease.symptomatic
        recent = state.last_test[symptomatic] > day - RETEST_DAYS
        candidates = symptomatic[~recent & (state.home_until[symptomatic] < day)]
        if self.seek is None:
            seek = ctx.streams.uniform(f"{self.name}.seek", ctx.global_ids(candidates), day)
            seeks = seek < self.seek_probability
        else:
            seeks = self.seek.layer.seeks_test(self.seek.state(ctx), candidates, ctx)
        candidates = candidates[seeks]
        # a random queue: the candidates with the smallest keys, over all processes of a split population
        keys = ctx.streams.bits(f"{self.name}.queue", ctx.global_ids(candidates), day)
        chosen = candidates[ctx.shard.smallest(keys, capacity)]
        spare = capacity - int(ctx.shard.sum(torch.tensor(chosen.numel(), device=chosen.device)))
        screening = min(spare, round(float(self.screening) * n))
        if screening > 0:
            # everyone's draw of the population's agents (the same on every process), kept for this one's
            draw = ctx.streams.generator(f"{self.name}.screen", day)
            drawn = torch.unique(torch.randint(n, (screening,), generator=draw, device=chosen.device))
            if ctx.shard.spans:
                drawn = drawn[(drawn >= ctx.shard.start) & (drawn < ctx.shard.stop)] - ctx.shard.start
            alive = disease.stage[drawn] < Stage.H
            drawn = drawn[alive & (state.last_test[drawn] <= day - RETEST_DAYS)]
            chosen = torch.cat([chosen, drawn])
        if chosen.numel() == 0:
            return 0
        chosen = chosen.sort().values  # draws are keyed by agent, so order only matters for speed
        stage = disease.stage[chosen].long()
        infected = (stage >= Stage.E) & (stage <= Stage.MH)
        column = (stage - Stage.E).clamp(0, 3)  # MH tests like M
        p_positive = torch.where(
            infected,
            self.sensitivity[column],
            torch.full_like(self.sensitivity[column], 1 - self.spec.specificity),
        )
        positive = ctx.streams.uniform(f"{self.name}.result", ctx.global_ids(chosen), day) < p_positive
        state.last_test[chosen] = day
        state.result_day[chosen] = day + self.delay
        state.positive[chosen] = positive
        return int(chosen.numel())

    def _results(self, state: TestingState, ctx: StepContext) -> None:
        day = ctx.day
        arrived = true_indices(state.result_day == day)
        positives = arrived[state.positive[arrived]]
        state.result_day[arrived] = -1
        state.positive[arrived] = False
        state.daily[1] = positives.numel()
        parts = [b.count(positives, None) for b in self.breakdowns]
        state.detected = torch.cat(parts) if parts else state.detected
        if positives.numel() == 0:
            state.daily[2] = 0
            return
        isolates = (
            ctx.streams.uniform(f"{self.name}.isolate", ctx.global_ids(positives), day)
            < self.isolation_compliance
        )
        isolating = positives[isolates]
        until = day + round(float(self.isolation_days)) - 1
        state.home_until[isolating] = torch.clamp(state.home_until[isolating], min=until)
        contacts = self._household_members(positives)
        quarantines = (
            ctx.streams.uniform(f"{self.name}.quarantine", ctx.global_ids(contacts), day)
            < self.quarantine_compliance
        )
        quarantined = contacts[quarantines]
        until = day + round(float(self.quarantine_days)) - 1
        state.home_until[quarantined] = torch.clamp(state.home_until[quarantined], min=until)
        state.daily[2] = isolating.numel() + quarantined.numel()

    def _household_members(self, agents: torch.Tensor) -> torch.Tensor:
        """The other members of each agent's household (``int64``, may repeat across agents)."""
        households = torch.unique(self.household_of[agents].long())
        start, size = self.household_start[0, households].long(), self.household_start[1, households].long()
        offsets = torch.arange(int(size.sum()), device=agents.device) - torch.repeat_interleave(
            size.cumsum(0) - size, size
        )
        members = torch.repeat_interleave(start, size) + offsets
        return members[~torch.isin(members, agents)]

    def settings_used(self) -> tuple[str, ...]:
        return self.settings

    def effects(self, state: TestingState, ctx: StepContext) -> Effects:
        if int(state.isolating) == 0:
            return Effects()
        return Effects(presence=dict.fromkeys(self.settings, state.present))
