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

Infection uses Sellke thresholds (see :mod:`populace.layers.seir`): agent ``i`` is infected on the first day
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch

from populace.contacts import Contacts, Places
from populace.model import Layer, LayerState, Link, Phase, StepContext
from populace.params import Param, register_params
from populace.samplers import (
    HardGumbel,
    LaterInfections,
    SellkeThreshold,
    SmoothedBernoulli,
    branch_weights,
)

from .effects import Effects, Modifier, combine

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
    "J Clin Med 9:967). Calibrate it (issue 5).",
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
_INFECTIOUS = (Stage.P, Stage.A, Stage.M, Stage.MH)
ESTIMATORS = ("sellke", "gumbel", "smoothed")
"""Gradient estimators of the infection draw (:mod:`populace.samplers`); the first is the default."""
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
class CovidState(LayerState):
    """State of :class:`Covid`.

    Attributes:
        stage: ``uint8[agents]`` :class:`Stage`.
        due: ``int32[agents]``, the day of the next progression (``-1``: none).
        threshold: ``float32[agents]``, hazard still needed to infect the agent; ``inf`` once infected.
        durations: ``uint8[6, agents]``, each agent's durations in the order of :data:`DURATIONS`.
        fate: ``float32[3, agents]``, each agent's uniforms for the symptoms, severity and death branches.
        counts: ``[10]`` agents per stage.
        events: ``[4, 1 + Σ groups]``: today's new infections, symptom onsets, admissions and deaths, in
            total and per breakdown group.
        by_setting: ``float32[settings]`` today's new infections split by setting (expected shares).
        infectiousness: ``[]`` today's total relative infectiousness (for Rt).
        generation: ``[]`` expected infectiousness-days of one infection (for Rt).
        symptomatic: ``int64[k]``, the agents in stage M or MH at the end of the day (read by testing and
            behaviour, so the population is scanned once a day).
        weight: ``float32[agents]`` (differentiable mode): 1 for infected agents, carrying the gradient of
            their infection and branches; ``None`` in fast mode.
        workspace: ``float32[2, agents]`` scratch buffers of fast mode.
        later: what the reverse pass has learnt of later infections (differentiable mode with the
            ``"sellke"`` estimator), else ``None``.
    """

    stage: torch.Tensor
    due: torch.Tensor
    threshold: torch.Tensor
    durations: torch.Tensor
    fate: torch.Tensor
    counts: torch.Tensor
    events: torch.Tensor
    by_setting: torch.Tensor
    infectiousness: torch.Tensor
    generation: torch.Tensor
    symptomatic: torch.Tensor
    weight: torch.Tensor | None
    workspace: torch.Tensor | None
    later: LaterInfections | None = None


@dataclass(frozen=True)
class _Term:
    """One setting's part of today's hazard: force = contacts.force(pressure, scale) × presence."""

    contacts: Contacts
    pressure: torch.Tensor
    scale: torch.Tensor
    presence: torch.Tensor | None


@dataclass(frozen=True)
class _Move:
    """Agents moving from one stage to another today; ``duration``: row of their next due day."""

    agents: torch.Tensor
    src: Stage
    to: Stage
    duration: int | None
    weight: torch.Tensor | None


_EVENT_OF = {Stage.M: 1, Stage.MH: 1, Stage.H: 2, Stage.HD: 2, Stage.D: 3}  # row of CovidState.events


class Covid(Layer):
    """COVID-19 in a population of ``len(age)`` agents (see module docs).

    Args:
        age: ``uint8[agents]`` ages in years.
        settings: contact structures (household, school, work, community, ...); names must be unique.
        initial_infections: agents exposed at day 0, chosen uniformly.
        modifiers: layers whose :class:`Effects` act on this disease each day (interventions, behaviour).
        breakdowns: groupings for the ``*_by_<name>`` series (borough, age band).
        beta, asymptomatic_factor, symptomatic_scale, severe_scale, fatality_scale: specs (defaults cited).
        durations: ``{name: (mean, sd)}`` overrides of :data:`DURATIONS`.
        estimator: gradient estimator of the infection draw, one of :data:`ESTIMATORS`: ``"sellke"``
            (default; reverse mode only), ``"gumbel"`` (hard Gumbel, ``tau``) or ``"smoothed"``. Measured on
            d(infections by day 30)/dβ, well-mixed, 40,000 agents, CRN central differences
            (``tests/test_covid.py``): Sellke AD/FD = 0.97, 1.03, 0.96 (seeds 3-5), hard Gumbel 0.85, 0.81,
            0.80, smoothed 0.29 (its masked-path bias, :mod:`populace.samplers`). Over a whole wave the
            straight-through estimators count an infection that would only have come later as one that
            would never have come: on ``nyc-covid`` (100k, 120 days) d(deaths)/dβ is 0.75 × FD with
            Sellke (32 seeds; 0.90 over the first 8), 1.84 × with hard Gumbel (8 seeds;
            ``benchmarks/estimator_bias_wave.py``). Sellke values an
            earlier infection within the agent's cell of the ``breakdowns`` (borough × age band): with one
            value for the whole city, calibrating ``nyc-covid`` by borough diverged.
    """

    phase = Phase.DISEASE
    stage_names = tuple(s.name for s in Stage)
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
        modifiers: Sequence[Modifier] = (),
        breakdowns: Sequence[Breakdown] = (),
        beta: Param = BETA,
        asymptomatic_factor: Param = ASYMPTOMATIC_FACTOR,
        symptomatic_scale: Param = SYMPTOMATIC_SCALE,
        severe_scale: Param = SEVERE_SCALE,
        fatality_scale: Param = FATALITY_SCALE,
        durations: Mapping[str, tuple[Param, Param]] | None = None,
        estimator: str = ESTIMATORS[0],
        tau: float = 0.1,
    ) -> None:
        super().__init__()
        n = int(age.numel())
        names = [s.name for s in settings]
        if not settings:
            raise ValueError("settings: Covid needs at least one contact structure")
        if len(set(names)) != len(names):
            raise ValueError(f"settings: names must be unique, got {names}")
        for s in settings:
            if s.n_agents != n:
                raise ValueError(f"settings: {s.name} covers {s.n_agents} agents, expected {n}")
        for b in breakdowns:
            if b.index.numel() != n:
                raise ValueError(f"breakdowns: {b.name} has {b.index.numel()} entries, expected {n}")
        if not 0 <= initial_infections <= n:
            raise ValueError(f"initial_infections: expected 0..{n}, got {initial_infections}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator: expected one of {list(ESTIMATORS)}, got {estimator!r}")
        unknown = set(durations or {}) - set(DURATIONS)
        if unknown:
            raise ValueError(f"durations: unknown {sorted(unknown)}; known: {list(DURATIONS)}")
        self.n_agents = n
        self.settings = torch.nn.ModuleList(settings)
        self.modifiers: tuple[Link[Modifier], ...] = ()
        self.add_modifiers(*modifiers)
        self.breakdowns = tuple(breakdowns)
        self.initial_infections = initial_infections
        self.estimator, self.tau = estimator, tau
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

    def add_modifiers(self, *modifiers: Modifier) -> None:
        """Layers whose :class:`Effects` act on this disease each day. Interventions that read the disease's
        state are built after it, so they are added here. Held as links, not submodules (the model owns
        them)."""
        for m in modifiers:
            if not isinstance(m, Modifier):
                raise TypeError(f"modifiers: expected Modifier layers, got {type(m).__name__}")
        self.modifiers += tuple(Link(m) for m in modifiers)

    # ------------------------------------------------------------------ reporting
    def contacts(self) -> list[Contacts]:
        return list(self.settings)

    def stage(self, state: CovidState) -> torch.Tensor:
        return state.stage

    def observables(self) -> tuple[str, ...]:
        names = [s.name for s in Stage] + [
            "infectious",
            "hospitalised",
            *_EVENTS,
            "Rt",
            "new_infections_by_setting",
        ]
        names += [f"{e}_by_{b.name}" for b in self.breakdowns for e in _EVENTS]
        return tuple(names)

    def labels(self) -> dict[str, tuple[str, ...]]:
        out = {f"{e}_by_{b.name}": b.labels for b in self.breakdowns for e in _EVENTS}
        return {**out, "new_infections_by_setting": tuple(c.name for c in self.contacts())}

    def observe(self, state: CovidState) -> dict[str, torch.Tensor]:
        counts, events = state.counts.clone(), state.events.clone()
        out = {s.name: counts[s] for s in Stage}
        out["infectious"] = counts[Stage.P : Stage.MH + 1].sum()
        out["hospitalised"] = counts[Stage.H] + counts[Stage.HD]
        out.update({e: events[i, 0] for i, e in enumerate(_EVENTS)})
        rate = state.infectiousness.clamp(min=1e-12)
        out["new_infections_by_setting"] = state.by_setting.clone()
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

    def init_state(self, ctx: StepContext) -> CovidState:
        n, device = self.n_agents, ctx.streams.device
        durations = torch.stack(
            [
                ctx.streams.lognormal(f"covid.{name}", n, mean.value, sd.value).round_().clamp_(1, 255)
                for name, (mean, sd) in self.durations.items()
            ]
        ).to(torch.uint8)
        everyone = torch.arange(n, device=device)
        susceptibility = self.probability(0, everyone)
        threshold = ctx.streams.exponential("covid.threshold", n) / susceptibility
        fate = torch.stack(
            [ctx.streams.uniform(f"covid.fate.{b}", n) for b in ("symptoms", "severe", "death")]
        )
        seeds = ctx.streams.choose("covid.seeds", n, self.initial_infections)
        stage = torch.zeros(n, dtype=torch.uint8, device=device)
        due = torch.full((n,), -1, dtype=torch.int32, device=device)
        stage[seeds] = Stage.E
        due[seeds] = ctx.day + durations[0, seeds].to(torch.int32)
        threshold[seeds] = torch.inf
        dtype = torch.float32 if ctx.differentiable else torch.int64
        counts = torch.zeros(len(Stage), dtype=dtype, device=device)
        counts[Stage.S], counts[Stage.E] = n - seeds.numel(), seeds.numel()
        columns = 1 + sum(len(b.labels) for b in self.breakdowns)
        weight = workspace = None
        if ctx.differentiable:
            weight = torch.zeros(n, device=device)
            weight[seeds] = 1.0
        else:
            workspace = torch.empty(2, n, device=device)
        return CovidState(
            stage=stage,
            due=due,
            threshold=threshold,
            durations=durations,
            fate=fate,
            counts=counts,
            events=torch.zeros(len(_EVENTS), columns, dtype=dtype, device=device),
            by_setting=torch.zeros(len(self.settings), device=device),
            infectiousness=torch.zeros((), dtype=torch.float32, device=device),
            generation=self._generation(durations, susceptibility),
            symptomatic=torch.zeros(0, dtype=torch.int64, device=device),
            weight=weight,
            workspace=workspace,
            later=LaterInfections(self._value_groups())
            if ctx.differentiable and self.estimator == "sellke"
            else None,
        )

    def _value_groups(self) -> torch.Tensor | None:
        """Each agent's cell of all breakdowns combined (borough × age band), or ``None`` without any."""
        group: torch.Tensor | None = None
        for b in self.breakdowns:
            index = b.index.long()
            group = index if group is None else group * len(b.labels) + index
        return group

    def _generation(self, durations: torch.Tensor, susceptibility: torch.Tensor) -> torch.Tensor:
        """Expected relative infectiousness-days of one infection, weighted by who gets infected first."""
        everyone = torch.arange(self.n_agents, device=durations.device)
        d = durations.float()
        p_symp, p_severe = self.probability(1, everyone), self.probability(2, everyone)
        symptomatic = d[1] + (1 - p_severe) * d[2] + p_severe * d[3]
        days = p_symp * symptomatic + (1 - p_symp) * self.asymptomatic_factor * d[2]
        return ((days * susceptibility).sum() / susceptibility.sum().clamp(min=1e-12)).detach()

    # ------------------------------------------------------------------ day
    def step(self, state: CovidState, ctx: StepContext) -> CovidState:
        effects = [m.layer.effects(m.state(ctx), ctx) for m in self.modifiers]
        state.events = torch.zeros_like(state.events)
        self._progress(state, ctx, effects)
        self._transmit(state, ctx, effects)
        state.symptomatic = torch.nonzero((state.stage - Stage.M) < 2).squeeze(1)  # uint8 wraps below M
        return state

    def _progress(self, state: CovidState, ctx: StepContext, effects: list[Effects]) -> None:
        agents = torch.nonzero(state.due == ctx.day).squeeze(1)
        if agents.numel() == 0:
            return
        was = state.stage[agents]
        moves: list[_Move] = []
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
                self._split(state, moves, group, src, 1, p, (Stage.MH, 3), (Stage.M, 2))
            elif src == Stage.MH:  # death, at admission
                self._split(
                    state, moves, group, src, 2, self.probability(3, group), (Stage.HD, 5), (Stage.H, 4)
                )
            else:
                w = None if state.weight is None else state.weight[group]
                moves.append(_Move(group, src, Stage.D if src == Stage.HD else Stage.R, None, w))
        self._move(state, ctx.day, moves)

    def _split(
        self,
        state: CovidState,
        moves: list[_Move],
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
        moves.append(_Move(group[taken], src, *yes, w_yes))
        moves.append(_Move(group[~taken], src, *no, w_no))

    def _move(self, state: CovidState, day: int, moves: list[_Move]) -> None:
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
                state.due[group] = day + state.durations[move.duration, group].to(torch.int32)
            amount = group.numel() if move.weight is None else move.weight.sum()
            delta[move.src] -= amount
            delta[move.to] += amount
            event = _EVENT_OF.get(move.to)
            if event is not None:
                self._record(state, event, group, move.weight)
            if move.weight is not None:
                moved.append(group)
                weights.append(move.weight)
        state.counts = state.counts + delta
        if state.weight is not None and moved:
            state.weight = state.weight.index_put((torch.cat(moved),), torch.cat(weights))

    def _record(self, state: CovidState, event: int, agents: torch.Tensor, w: torch.Tensor | None) -> None:
        total = torch.as_tensor(agents.numel() if w is None else w.sum(), dtype=state.events.dtype)
        parts = [total.reshape(1).to(state.events.device)]
        parts += [b.count(agents, w).to(state.events.dtype) for b in self.breakdowns]
        row = torch.cat(parts)
        state.events = state.events.index_add(0, torch.tensor([event], device=row.device), row[None])

    def _transmit(self, state: CovidState, ctx: StepContext, effects: list[Effects]) -> None:
        sources = torch.nonzero((state.stage - Stage.P) < len(_INFECTIOUS)).squeeze(1)  # uint8 wraps below P
        imports = [e.imported for e in effects if e.imported is not None]
        imported = sum(imports[1:], imports[0]) if imports else None
        if sources.numel() == 0:
            state.infectiousness = torch.zeros_like(state.infectiousness)
            state.by_setting = torch.zeros_like(state.by_setting)
            if imported is None:
                return
            hazard, terms = imported.clone(), list[_Term]()
        else:
            stage = state.stage[sources]
            rel = torch.where(
                stage == Stage.A, self.asymptomatic_factor, torch.ones_like(self.asymptomatic_factor)
            )
            if state.weight is not None:
                rel = rel * state.weight[sources]
            state.infectiousness = rel.sum()
            hazard, terms = self._hazard(state, sources, rel, effects)
            if imported is not None:
                hazard = hazard.add_(imported) if state.weight is None else hazard + imported
        susceptibility = combine([e.susceptibility for e in effects if e.susceptibility is not None])
        if susceptibility is not None:
            hazard = hazard.mul_(susceptibility) if state.weight is None else hazard * susceptibility
        if state.weight is None:
            state.threshold.sub_(hazard)
            new = torch.nonzero(state.threshold <= 0).squeeze(1)
            self._infect(state, new, ctx.day, None)
            self._attribute(state, terms, new, imported)
            return
        susceptible = self.probability(0, torch.arange(self.n_agents, device=hazard.device))
        sample = state.threshold - hazard.detach() <= 0
        rate = (hazard * susceptible).clamp(min=0)  # the Sellke hazard: thresholds are Exp(1) / susceptible
        if state.later is not None:
            waiting = torch.isfinite(state.threshold) & ~sample
            x = SellkeThreshold.apply(rate, sample, waiting, ctx.day, state.later)
        else:
            p = -torch.expm1(-rate) * (1 - state.weight)
            if self.estimator == "smoothed":
                x = SmoothedBernoulli.apply(p, sample.float())
            else:
                u = -torch.expm1(-state.threshold * susceptible)
                x = HardGumbel.apply(p, u, sample.float(), self.tau)
        state.threshold = state.threshold - hazard.detach()
        new = torch.nonzero(sample).squeeze(1)
        state.weight = state.weight + x
        self._infect(state, new, ctx.day, state.weight[new])
        self._attribute(state, terms, new, imported)

    def _hazard(
        self, state: CovidState, sources: torch.Tensor, rel: torch.Tensor, effects: list[Effects]
    ) -> tuple[torch.Tensor, list[_Term]]:
        """The hazard on every agent, and each setting's term (to attribute today's infections)."""
        fast = state.workspace is not None
        hazard: torch.Tensor | None = None
        terms: list[_Term] = []
        for contacts in self.contacts():
            presence = combine([e.presence[contacts.name] for e in effects if contacts.name in e.presence])
            emitted = rel if presence is None else rel * presence[sources]
            pressure = contacts.add_sources(contacts.empty_pressure(), sources, emitted)
            scale: torch.Tensor = self.beta
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
                    hazard = contacts.force(pressure, scale, out=state.workspace[0])
                    if presence is not None:
                        hazard.mul_(presence)
                else:
                    force = contacts.force(pressure, scale, out=state.workspace[1])
                    if presence is None:
                        hazard.add_(force)
                    else:
                        hazard.addcmul_(force, presence)
            else:
                force = contacts.force(pressure, scale)
                if presence is not None:
                    force = force * presence
                hazard = force if hazard is None else hazard + force
        assert hazard is not None
        return hazard, terms

    def _attribute(
        self, state: CovidState, terms: list[_Term], new: torch.Tensor, imported: torch.Tensor | None
    ) -> None:
        """Expected share of today's infections per setting: each new case split by its settings' forces
        and the imported hazard (whose share no setting gets)."""
        if new.numel() == 0 or not terms:
            state.by_setting = torch.zeros_like(state.by_setting)
            return
        forces = []
        for t in terms:
            force = t.contacts.force_at(t.pressure, t.scale, new)
            forces.append(force if t.presence is None else force * t.presence[new].detach())
        f = torch.stack(forces)
        total = f.sum(0) if imported is None else f.sum(0) + imported[new].detach()
        state.by_setting = (f / total.clamp(min=1e-30)).sum(1)

    def _infect(self, state: CovidState, new: torch.Tensor, day: int, w: torch.Tensor | None) -> None:
        state.threshold[new] = torch.inf
        state.stage[new] = Stage.E
        state.due[new] = day + state.durations[0, new].to(torch.int32)
        amount = new.numel() if w is None else w.sum()
        delta = torch.zeros_like(state.counts)
        delta[Stage.S] -= amount
        delta[Stage.E] += amount
        state.counts = state.counts + delta
        self._record(state, 0, new, w)
