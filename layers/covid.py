"""COVID-19: age-specific progression through presymptomatic, asymptomatic, symptomatic, hospitalised,
recovered and dead, with transmission by setting and differentiable sampling.

Stages (``uint8``)::

    S -> E -> P (presymptomatic) -> M  (symptomatic, mild)    -> R
                                    MH (symptomatic, will be admitted) -> H  (hospitalised) -> R
                                                                       -> HD (hospitalised, will die) -> D
           -> A (asymptomatic) -> R

Fates are drawn when an agent reaches a branch (symptoms at the end of the latent period, severity at symptom
onset, death at admission) by comparing one uniform per agent and branch, drawn at set-up, with the age-
specific probability of that day. Durations are lognormal, drawn per agent at set-up and rounded to whole
days (at least 1), as in Covasim. The age tables are Covasim 3.1's defaults (Kerr et al. 2021, PLoS Comput
Biol 17:e1009149); each column's original source is cited at :data:`AGE_TABLE`.

Infection is the infection core's (:mod:`populace.layers.infection`): agent ``i`` is infected on the first day
its accumulated hazard reaches ``T_i / susceptibility_i`` with ``T_i ~ Exp(1)``. The hazard on an agent is
``β × Σ_settings presence × contacts × infectiousness of its contacts``, plus any imported hazard
(:class:`~populace.layers.importation.Importation`: seeding), with presence factors, closures and vaccine
protection from :class:`~populace.layers.effects.Modifier` layers.

In differentiable mode each agent carries a float ``weight`` (1 in value) through its course: the infection
passes its derivative to the hazard (:class:`~populace.samplers.SellkeThreshold`; or the draw's, by hard
Gumbel or :class:`~populace.samplers.SmoothedBernoulli`) and every branch
multiplies the path's likelihood-ratio weight (:func:`~populace.samplers.branch_weights`), so counts of
cases, admissions and deaths carry gradients to β, the setting weights, the severity scales and, through
presence factors, to behaviour parameters. Branch gradients are unbiased; β's carries the infection
estimator's documented bias (:mod:`populace.samplers`).

Rt is the instantaneous reproduction number (Fraser 2007, PLoS ONE 2:e758): today's new infections
(imported ones included) divided by today's total infectiousness, times the expected infectiousness of one
infection over its course (from the drawn durations and branch probabilities, weighted by susceptibility).
In the well-mixed limit with a fully susceptible population it equals R0 (tested).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch

from populace.aggregation import Aggregation
from populace.contacts import Contacts
from populace.estimators import Estimator, Sellke
from populace.masks import true_indices
from populace.model import StepContext
from populace.params import Param, register_params
from populace.samplers import branch_weights

from .effects import Effects, combine
from .infection import Infection, InfectionState, Move

__all__ = ["AGE_TABLE", "Breakdown", "Covid", "CovidState", "Stage"]


class Stage(IntEnum):
    """Disease stage (stored as ``uint8``); P, A, M and MH are infectious."""

    S = 0
    E = 1
    P = 2
    A = 3
    M = 4
    MH = 5
    H = 6
    HD = 7
    R = 8
    D = 9


AGE_TABLE: dict[str, tuple[float, ...]] = {
    # Ten-year bands 0-9, 10-19, ..., 80-89, 90+ (Covasim 3.1 `parameters.get_prognoses`).
    # Relative susceptibility: odds ratios of Zhang et al. 2020, Science 368:1481 (10-19 and 60-69 averaged).
    "susceptibility": (0.34, 0.67, 1.00, 1.00, 1.00, 1.00, 1.24, 1.47, 1.47, 1.47),
    # P(symptoms | infected): Davies et al. 2020 (medRxiv 2020.03.24.20043018), scaled by Covasim.
    "symptomatic": (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.90),
    # P(severe | infected): Verity et al. 2020 via Ferguson et al. 2020 (Imperial Report 9, Table 1).
    "severe": (0.00050, 0.00165, 0.00720, 0.02080, 0.03430, 0.07650, 0.13280, 0.20655, 0.24570, 0.24570),
    # P(death | infected), the IFR: O'Driscoll et al. 2021, Nature 590:140; 90+ from Brazeau et al. 2020
    # (Imperial Report 34).
    "death": (0.00002, 0.00002, 0.00010, 0.00032, 0.00098, 0.00265, 0.00766, 0.02439, 0.08292, 0.16190),
}

BETA = Param(
    0.05,
    (0.0, 1.0),
    "1/contact/day",
    learnable=True,
    doc="Transmission probability per contact per day for a fully susceptible adult. The default gives an "
    "early Rt of about 2.7 in nyc-covid without interventions (measured: tests/test_nyc_covid.py), within "
    "the 2.2–3.3 range estimated for the ancestral strain (Li et al. 2020, NEJM 382:1199; Park et al. 2020, "
    "J Clin Med 9:967). Calibrate it with populace calibrate.",
)
ASYMPTOMATIC_FACTOR = Param(
    0.5,
    (0.0, 1.0),
    "relative",
    learnable=True,
    doc="Infectiousness of asymptomatic relative to (pre)symptomatic infections. Buitrago-Garcia et al. "
    "2020 (PLoS Med 17:e1003346) estimate a secondary attack rate ratio of 0.35 (0.10–1.27); Byambasuren "
    "et al. 2020 (JAMMI 5:223) 0.58. 0.5 lies between.",
)
SYMPTOMATIC_SCALE = Param(
    1.0,
    (0.0, 2.0),
    "relative",
    learnable=True,
    doc="Factor on the age-specific probability of symptoms (AGE_TABLE['symptomatic']: Davies et al. 2020 "
    "via Covasim); 1 = as published.",
)
SEVERE_SCALE = Param(
    1.0,
    (0.0, 4.0),
    "relative",
    learnable=True,
    doc="Factor on the age-specific probability of hospitalisation given symptoms (AGE_TABLE['severe'] / "
    "AGE_TABLE['symptomatic']: Ferguson et al. 2020, Imperial Report 9, via Covasim); 1 = as published.",
)
FATALITY_SCALE = Param(
    1.0,
    (0.0, 10.0),
    "relative",
    learnable=True,
    doc="Factor on the age-specific probability of death given hospitalisation (AGE_TABLE['death'] / "
    "AGE_TABLE['severe']: O'Driscoll et al. 2021, Nature 590:140, via Covasim); 1 = as published. Deaths "
    "happen only after admission here, so the scale also carries deaths outside hospital: NYC's first wave "
    "had 23,343 deaths against 51,884 admissions by 30 June 2020 (NYC DOHMH data-by-day), a ratio of 0.45 "
    "where the tables give about 0.11; hence bounds up to 10.",
)


def _duration(mean: float, sd: float, what: str, source: str) -> tuple[Param, Param]:
    return (
        Param(mean, (0.5, 60.0), "days", doc=f"Mean {what}, lognormal, rounded to whole days. {source}"),
        Param(sd, (0.0, 60.0), "days", doc=f"Standard deviation of the {what}. {source}"),
    )


_KERR = "Covasim's default (Kerr et al. 2021, PLoS Comput Biol 17:e1009149)"
DURATIONS: dict[str, tuple[Param, Param]] = {
    "latent": _duration(
        4.5, 1.5, "time from infection to infectiousness", f"{_KERR}, after Lauer et al. 2020"
    ),
    "presymptomatic": _duration(
        1.1, 0.9, "time from infectiousness to symptoms", f"{_KERR}, after Linton et al. 2020"
    ),
    "recovery": _duration(
        8.0,
        2.0,
        "infectious period of asymptomatic and mild infections",
        f"{_KERR}, after Wölfel et al. 2020",
    ),
    "to_hospital": _duration(
        6.6, 4.9, "time from symptoms to admission", f"{_KERR}, after Linton et al. 2020"
    ),
    "hospital_recovery": _duration(
        18.1, 6.3, "hospital stay of survivors", f"{_KERR} sev2rec, after Verity et al. 2020"
    ),
    "hospital_death": _duration(
        12.2,
        5.2,
        "time from admission to death",
        f"{_KERR}: sev2crit 1.5 ± 2.0 plus crit2die 10.7 ± 4.8 (Verity et al. 2020), summed",
    ),
}
_BRANCHES = ("symptoms", "severe", "death")
"""The branches with a fate uniform per agent (``CovidState.fate``'s rows)."""
_EVENTS = ("new_infections", "new_symptomatic", "new_admissions", "new_deaths")


@dataclass(frozen=True)
class Breakdown:
    """A grouping of agents for reporting (``by_borough``, ``by_age``).

    Attributes:
        name: suffix of the reported series (``"borough"`` gives ``new_deaths_by_borough``).
        index: ``int[agents]``, each agent's group in ``[0, len(labels))``.
        labels: the groups' names.
    """

    name: str
    index: torch.Tensor
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.index.dim() != 1 or self.index.dtype.is_floating_point:
            raise TypeError(f"breakdown {self.name}: index must be a 1-D integer tensor")
        if self.index.numel() and not 0 <= int(self.index.min()) <= int(self.index.max()) < len(self.labels):
            raise ValueError(f"breakdown {self.name}: index values must lie in [0, {len(self.labels)})")

    def count(self, agents: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """Agents (``int64[k]``) counted per group, ``[len(labels)]`` (weighted: differentiable)."""
        groups = self.index[agents].long()
        if weights is None:
            return torch.bincount(groups, minlength=len(self.labels))
        return weights.new_zeros(len(self.labels)).index_add(0, groups, weights)


@dataclass
class CovidState(InfectionState):
    """State of :class:`Covid`: the infection core's (:class:`~populace.layers.infection.InfectionState`) and

    Attributes:
        durations: ``uint8[6, agents]``, each agent's durations in the order of :data:`DURATIONS`.
        fate: ``float32[3, agents]``, each agent's uniforms for the symptoms, severity and death branches.
        events: ``[4, 1 + Σ groups]``: today's new infections, symptom onsets, admissions and deaths, in
            total and per breakdown group.
        generation: ``[]`` expected infectiousness-days of one infection (for Rt).
        expected: ``float32[]``: today's expected deaths (``Covid(expected_deaths=True)``; else stays 0).
        symptomatic: ``int64[k]``, the agents in stage M or MH at the end of the day (read by testing and
            behaviour, so the population is scanned once a day).
    """

    durations: torch.Tensor
    fate: torch.Tensor
    events: torch.Tensor
    generation: torch.Tensor
    expected: torch.Tensor
    symptomatic: torch.Tensor


_EVENT_OF = {Stage.M: 1, Stage.MH: 1, Stage.H: 2, Stage.HD: 2, Stage.D: 3}  # row of CovidState.events


class Covid(Infection):
    """COVID-19 in a population of ``len(age)`` agents (see module docs).

    Args:
        age: ``uint8[agents]`` ages in years.
        settings: contact structures (household, school, work, community, ...); names must be unique.
        initial_infections: agents exposed at day 0, chosen uniformly.
        breakdowns: groupings for the ``*_by_<name>`` series (borough, age band).
        beta, asymptomatic_factor, symptomatic_scale, severe_scale, fatality_scale: specs (defaults cited).
        durations: ``{name: (mean, sd)}`` overrides of :data:`DURATIONS`.
        estimator: gradient estimator of the infection draw (:mod:`populace.estimators`): ``Sellke()``
            (default; reverse mode only), ``Gumbel(tau)`` (hard Gumbel) or ``Smoothed()``. Measured on
            d(infections by day 30)/dβ, well-mixed, 40,000 agents, CRN central differences
            (``tests/test_covid.py``): Sellke AD/FD = 0.97, 1.03, 0.96 (seeds 3-5), hard Gumbel 0.85, 0.81,
            0.80, smoothed 0.29 (its masked-path bias, :mod:`populace.samplers`). Over a whole wave the
            straight-through estimators count an infection that would only have come later as one that
            would never have come: on ``nyc-covid`` (100k, 120 days) d(deaths)/dβ is 0.75 × FD with
            Sellke (32 seeds; 0.90 over the first 8), 1.84 × with hard Gumbel (8 seeds;
            ``benchmarks/estimator_bias_wave.py``). Sellke values an
            earlier infection within the agent's cell of the ``breakdowns`` (borough × age band): with one
            value for the whole city, calibrating ``nyc-covid`` by borough diverged.
        aggregation: how emissions are summed per place (:mod:`populace.aggregation`).
        expected_deaths: also report ``expected_deaths``: each day, the sum over the day's symptom onsets of
            P(admission | symptoms, after vaccine and risk factors) × P(death | admission), the deaths those
            onsets will bring in expectation. Its derivative to a severity factor is pathwise (every onset
            contributes), where counted deaths carry only the branches' likelihood ratios (the few agents
            who died): an objective for optimising vaccine allocation against deaths
            (:mod:`populace.optimize`).

    Modifiers (interventions, behaviour, seeding) act on it by being in the same model.
    """

    shardable = True
    carries = Infection.carries | {"events"}

    name = "covid"
    stage_names = tuple(s.name for s in Stage)
    infected_stage = Stage.E
    infectious = (Stage.P, Stage.MH)
    attributes_by_setting = True  # new_infections_by_setting
    beta: torch.Tensor
    asymptomatic_factor: torch.Tensor
    symptomatic_scale: torch.Tensor
    severe_scale: torch.Tensor
    fatality_scale: torch.Tensor
    band: torch.Tensor
    table: torch.Tensor

    def __init__(
        self,
        age: torch.Tensor,
        settings: Sequence[Contacts],
        *,
        initial_infections: int,
        breakdowns: Sequence[Breakdown] = (),
        beta: Param = BETA,
        asymptomatic_factor: Param = ASYMPTOMATIC_FACTOR,
        symptomatic_scale: Param = SYMPTOMATIC_SCALE,
        severe_scale: Param = SEVERE_SCALE,
        fatality_scale: Param = FATALITY_SCALE,
        durations: Mapping[str, tuple[Param, Param]] | None = None,
        estimator: Estimator | None = None,
        aggregation: Aggregation | None = None,
        expected_deaths: bool = False,
    ) -> None:
        n = int(age.numel())
        if not settings:
            raise ValueError("settings: Covid needs at least one contact structure")
        for b in breakdowns:
            if b.index.numel() != n:
                raise ValueError(f"breakdowns: {b.name} has {b.index.numel()} entries, expected {n}")
        unknown = set(durations or {}) - set(DURATIONS)
        if unknown:
            raise ValueError(f"durations: unknown {sorted(unknown)}; known: {list(DURATIONS)}")
        super().__init__(
            n,
            settings,
            initial_infections=initial_infections,
            estimator=Sellke() if estimator is None else estimator,
            aggregation=aggregation,
        )
        self.breakdowns = tuple(breakdowns)
        self.expected_deaths = expected_deaths
        register_params(
            self,
            beta=beta,
            asymptomatic_factor=asymptomatic_factor,
            symptomatic_scale=symptomatic_scale,
            severe_scale=severe_scale,
            fatality_scale=fatality_scale,
        )
        self.durations = {**DURATIONS, **(durations or {})}
        for name, (mean, sd) in self.durations.items():
            self.param_specs.update({f"{name}_mean": mean, f"{name}_sd": sd})
        self.register_buffer("band", (age.long() // 10).clamp(max=9).to(torch.uint8), persistent=False)
        t = {k: torch.tensor(v, dtype=torch.float64) for k, v in AGE_TABLE.items()}
        # Rows: susceptibility, P(symptoms | infected), P(admission | symptoms), P(death | admission).
        table = torch.stack(
            [t["susceptibility"], t["symptomatic"], t["severe"] / t["symptomatic"], t["death"] / t["severe"]]
        )
        self.register_buffer("table", table.to(torch.float32), persistent=False)

    # ------------------------------------------------------------------ reporting
    def observables(self) -> tuple[str, ...]:
        names = [s.name for s in Stage] + [
            "infectious",
            "hospitalised",
            *_EVENTS,
            "Rt",
            "new_infections_by_setting",
        ]
        names += ["expected_deaths"] if self.expected_deaths else []
        names += [f"{e}_by_{b.name}" for b in self.breakdowns for e in _EVENTS]
        return tuple(names)

    def labels(self) -> dict[str, tuple[str, ...]]:
        out = {f"{e}_by_{b.name}": b.labels for b in self.breakdowns for e in _EVENTS}
        return {**out, "new_infections_by_setting": tuple(self.settings)}

    def observe(self, state: CovidState) -> dict[str, torch.Tensor]:
        counts, events = state.counts.clone(), state.events.clone()
        out = {s.name: counts[s] for s in Stage}
        out["infectious"] = counts[Stage.P : Stage.MH + 1].sum()
        out["hospitalised"] = counts[Stage.H] + counts[Stage.HD]
        out.update({e: events[i, 0] for i, e in enumerate(_EVENTS)})
        rate = state.infectiousness.clamp(min=1e-12)
        out["new_infections_by_setting"] = state.by_setting.clone()
        if self.expected_deaths:
            out["expected_deaths"] = state.expected.clone()
        out["Rt"] = torch.where(state.infectiousness > 0, events[0, 0] / rate * state.generation, 0.0)
        column = 1
        for b in self.breakdowns:
            k = len(b.labels)
            out.update({f"{e}_by_{b.name}": events[i, column : column + k] for i, e in enumerate(_EVENTS)})
            column += k
        return out

    # ------------------------------------------------------------------ set-up
    def probability(self, row: int, agents: torch.Tensor) -> torch.Tensor:
        """Row ``row`` of the age table (times its scale) for ``agents``; rows 1-3 are probabilities."""
        base = self.table[row][self.band[agents].long()]
        scale = (None, self.symptomatic_scale, self.severe_scale, self.fatality_scale)[row]
        return base if scale is None else (base * scale).clamp(0.0, 1.0)

    def fixed_susceptibility(self) -> torch.Tensor:
        return self.probability(0, torch.arange(self.n_agents, device=self.band.device))

    def relative_infectiousness(self, state: CovidState, sources: torch.Tensor) -> torch.Tensor:
        stage = state.stage[sources]
        return torch.where(
            stage == Stage.A, self.asymptomatic_factor, torch.ones_like(self.asymptomatic_factor)
        )

    def stream_names(self) -> tuple[str, ...]:
        return (*super().stream_names(), *self.durations, *(f"fate.{b}" for b in _BRANCHES))

    def init_state(self, ctx: StepContext) -> CovidState:
        n, device = self.n_agents, ctx.streams.device
        agents = ctx.agents(n)
        durations = torch.stack(
            [
                ctx.streams.lognormal(f"{self.name}.{name}", agents, mean.value, sd.value)
                .round_()
                .clamp_(1, 255)
                for name, (mean, sd) in self.durations.items()
            ]
        ).to(torch.uint8)
        fate = torch.stack([ctx.streams.uniform(f"{self.name}.fate.{b}", agents) for b in _BRANCHES])
        fields, seeds = self.infection_state(ctx, len(Stage))
        dtype = fields["counts"].dtype
        columns = 1 + sum(len(b.labels) for b in self.breakdowns)
        state = CovidState(
            **fields,
            durations=durations,
            fate=fate,
            events=torch.zeros(len(_EVENTS), columns, dtype=dtype, device=device),
            generation=self._generation(durations, self.fixed_susceptibility(), ctx),
            expected=torch.zeros((), device=device),
            symptomatic=torch.zeros(0, dtype=torch.int64, device=device),
        )
        self.seed(state, seeds, ctx)  # their due days (and events, cleared when the first day starts)
        return state

    def value_group_count(self) -> int:
        return math.prod(len(b.labels) for b in self.breakdowns) if self.breakdowns else 0

    def daily_totals(self, state: CovidState) -> tuple[str, ...]:
        return ("events", "expected") if self.expected_deaths else ("events",)

    def value_groups(self) -> torch.Tensor | None:
        """Each agent's cell of all breakdowns combined (borough × age band), or ``None`` without any."""
        group: torch.Tensor | None = None
        for b in self.breakdowns:
            index = b.index.long()
            group = index if group is None else group * len(b.labels) + index
        return group

    def _generation(
        self, durations: torch.Tensor, susceptibility: torch.Tensor, ctx: StepContext
    ) -> torch.Tensor:
        """Expected relative infectiousness-days of one infection, weighted by who gets infected first
        (over the whole population: exact sums across the processes of a split one)."""
        everyone = torch.arange(self.n_agents, device=durations.device)
        d = durations.float()
        p_symp, p_severe = self.probability(1, everyone), self.probability(2, everyone)
        symptomatic = d[1] + (1 - p_severe) * d[2] + p_severe * d[3]
        days = p_symp * symptomatic + (1 - p_symp) * self.asymptomatic_factor * d[2]
        weighted = ctx.shard.exact_sum((days * susceptibility).detach())
        return weighted / ctx.shard.exact_sum(susceptibility.detach()).clamp(min=1e-12)

    # ------------------------------------------------------------------ day
    def step(self, state: CovidState, ctx: StepContext) -> CovidState:
        state.events = torch.zeros_like(state.events)
        state.expected = torch.zeros_like(state.expected)
        super().step(state, ctx)
        state.symptomatic = true_indices((state.stage - Stage.M) < 2)  # uint8 wraps below M
        return state

    def progress(self, state: CovidState, ctx: StepContext, effects: list[Effects]) -> None:
        agents, was = self.due_today(state, ctx.day)
        if agents.numel() == 0:
            return
        moves: list[Move] = []
        for src in (Stage.E, Stage.P, Stage.A, Stage.M, Stage.MH, Stage.H, Stage.HD):
            group = agents[was == src]
            if group.numel() == 0:
                continue
            if src == Stage.E:  # symptoms or not, at the end of the latent period
                self._split(
                    state, moves, group, src, 0, self.probability(1, group), (Stage.P, 1), (Stage.A, 2)
                )
            elif src == Stage.P:  # severity, at symptom onset (vaccines lower it)
                p = self.probability(2, group)
                severity = combine([e.severity[group] for e in effects if e.severity is not None])
                if severity is not None:
                    p = p * severity
                if self.expected_deaths:
                    dying = p.clamp(0.0, 1.0) * self.probability(3, group)
                    if state.weight is not None:
                        dying = dying * state.weight[group]
                    state.expected = state.expected + dying.sum()
                self._split(state, moves, group, src, 1, p, (Stage.MH, 3), (Stage.M, 2))
            elif src == Stage.MH:  # death, at admission
                self._split(
                    state, moves, group, src, 2, self.probability(3, group), (Stage.HD, 5), (Stage.H, 4)
                )
            else:
                moves.append(self.moving(state, group, src, Stage.D if src == Stage.HD else Stage.R, None))
        self.move(state, ctx.day, moves)

    def _split(
        self,
        state: CovidState,
        moves: list[Move],
        group: torch.Tensor,
        src: Stage,
        fate: int,
        p: torch.Tensor,
        yes: tuple[Stage, int],
        no: tuple[Stage, int],
    ) -> None:
        """Agents of ``group`` whose fate uniform is below ``p`` go to ``yes``, the others to ``no``
        (each a stage and the duration row of its due day); in differentiable mode each path's weights carry
        its likelihood ratio (:func:`~populace.samplers.branch_weights`), so counts downstream get d/dp."""
        taken = state.fate[fate, group] < p.detach()
        w_yes = w_no = None
        if state.weight is not None:
            ratio_yes, ratio_no = branch_weights(p, taken)
            w = state.weight[group]
            w_yes, w_no = w[taken] * ratio_yes, w[~taken] * ratio_no
        moves.append(Move(group[taken], src, *yes, w_yes))
        moves.append(Move(group[~taken], src, *no, w_no))

    def on_move(self, state: CovidState, move: Move) -> None:
        event = _EVENT_OF.get(Stage(move.to))
        if event is not None:
            self._record(state, event, move.agents, move.weight)

    def on_infection(
        self, state: CovidState, new: torch.Tensor, weight: torch.Tensor | None, ctx: StepContext
    ) -> None:
        state.due[new] = ctx.day + state.durations[0, new].to(torch.int32)
        self._record(state, 0, new, weight)

    def _record(self, state: CovidState, event: int, agents: torch.Tensor, w: torch.Tensor | None) -> None:
        total = torch.as_tensor(agents.numel() if w is None else w.sum(), dtype=state.events.dtype)
        parts = [total.reshape(1).to(state.events.device)]
        parts += [b.count(agents, w).to(state.events.dtype) for b in self.breakdowns]
        row = torch.cat(parts)
        state.events = state.events.index_add(0, torch.tensor([event], device=row.device), row[None])
