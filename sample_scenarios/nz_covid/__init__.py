"""``nz-covid``: the Delta outbreak of August-December 2021 in New Zealand and the vaccine roll-out that met
it, on the ``nz`` synthetic population (4.9 million residents of 2,260 SA2 areas).

Each agent gets its District Health Board from its SA2 (the Ministry of Health's concordance) and a
prioritised ethnic group (Māori, Pacific, Asian, European/Other) drawn from the Ministry's health-service-user
population by DHB × age group, one uniform per household (so households mostly share one group). Contacts come
from the synthetic households, schools, workplaces and neighbourhood places (no contact matrices but the
numbers of school and work contacts of Mistry et al. 2021, as in ``nyc-covid``). The disease is
``nyc-covid``'s (:class:`~populace.layers.covid.Covid`, Covasim's age tables) with what Delta changed; the
roll-out is :class:`~populace.layers.rollout.Rollout` driven by the real daily doses; the alert levels and
traffic lights are :class:`~populace.layers.restrictions.Restrictions` as they were (:mod:`.policy`). The
outbreak is seeded on day 0 in the Auckland DHBs (``importation``); a second importation layer, ``travel``, by
week and DHB, is zero unless a calibration fits it (people carrying the virus out of Auckland: the synthetic
population has almost no contacts across DHBs).

Day 0 is 17 August 2021, the day the first community case was reported in Auckland; the default run ends on 31
December 2021.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import ClassVar

import torch

from populace import Choice, Model, Param, Places, RandomStreams, Scenario, Shard, Simulation
from populace.calibrate import Calibration, Stream
from populace.estimators import ESTIMATORS, Sellke, estimator
from populace.layers import covid
from populace.layers.covid import Breakdown, Covid
from populace.layers.effects import Effects, Modifier
from populace.layers.importation import Importation
from populace.layers.restrictions import Restrictions
from populace.layers.rollout import NEVER, Rollout
from populace.layers.transmission import Transmission
from populace.model import LayerState, Phase, StepContext
from populace.optimize import Lever, Objective
from populace.people import Residents
from populace.scenarios.nyc_covid import setting_contacts
from populace.synth.recipes import PopulationRecipe, find_recipe, load_population

from .data import (
    AGE_GROUPS,
    AUCKLAND,
    DHBS,
    ETHNICITIES,
    ROLLOUT_START,
    dhb_of_areas,
    dose_supply,
    uptake_table,
)
from .observed import DEFAULT_STREAMS, observed_calibration, observed_streams
from .policy import (
    AGE_BANDS,
    KEPT,
    LEVELS,
    POLICIES,
    allocation,
    frontline,
    interval_as_it_was,
    levels_as_they_were,
)

__all__ = ["ADMISSION_BANDS", "NzCovid", "RiskGroups"]

START = dt.date(2021, 8, 17)
ADMISSION_BANDS = ((0, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 255))
"""The age bands of the Ministry's weekly admissions."""
COMMUNITY_CONTACTS = 3.0
"""Contacts per day in the neighbourhood place (about 500 residents): an assumption of the order of Mistry
et al. 2021's community weight (2.79 contacts a day in New York)."""
ELIGIBLE_AGE = 12
"""Youngest age offered a dose in 2021: Medsafe approved the Pfizer vaccine for 12-15-year-olds on 21 June
2021 (Ministry of Health); 5-11-year-olds only from 17 January 2022."""

TRAVEL_PERIOD = 7
"""Days per row of the ``travel`` importation table (weekly)."""

_FISMAN = "Fisman & Tuite 2021 (CMAJ 193:E1619), Delta against non-variant strains in Ontario"
_DELTA_VE = "against Delta"


def _p(value: float, bounds: tuple[float, float], unit: str, doc: str, learnable: bool = False) -> Param:
    return Param(value, bounds, unit, doc=doc, learnable=learnable)


class RiskGroups(Modifier):
    """A fixed factor on the probability of severe disease per agent (ethnic groups' higher risk)."""

    phase = Phase.INTERVENTION
    factor: torch.Tensor

    def __init__(self, factor: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("factor", factor.float(), persistent=False)

    def init_state(self, ctx: StepContext) -> LayerState:
        return LayerState()

    def step(self, state: LayerState, ctx: StepContext) -> LayerState:
        return state

    def effects(self, state: LayerState, ctx: StepContext) -> Effects:
        return Effects(severity=self.factor)


class NzCovid(Scenario):
    name = "nz-covid"
    summary = "Delta in New Zealand, Aug-Dec 2021: alert levels, the real vaccine roll-out and other policies"
    default_agents = 100_000
    default_days = 137
    default_outputs = ("total:new_deaths", "total:new_admissions")
    default_start = START
    transmission_weeks = 20
    tiny_sets = ("seeds_per_100k=300",)
    """A few tens of thousands of agents hold only a handful of Aucklanders: seed 300 per 100k there."""
    option_groups: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "Roll-out": {
            "policy": "who gets the next first doses",
            "dose_interval": "days between doses",
            "supply_scale": "vaccine supply (× real)",
            "equity_age_offset": "equity first: years earlier for Māori and Pacific",
        },
        "Restrictions": {"restrictions": "alert levels and traffic lights"},
        "Disease": {
            "beta": "transmission per contact (β)",
            "seeds_per_100k": "infections in Auckland on day 0, per 100k",
            "asymptomatic_factor": "infectiousness without symptoms",
            "severe_scale": "hospitalisation risk (× published)",
            "fatality_scale": "death risk in hospital (× published)",
            "maori_severity": "hospitalisation risk of Māori (× European/Other)",
            "pacific_severity": "hospitalisation risk of Pacific people (× European/Other)",
        },
        "Vaccine": {
            "ve_infection_1": "protection from infection, one dose",
            "ve_infection_2": "protection from infection, two doses",
            "ve_severe_1": "protection from hospital, one dose",
            "ve_severe_2": "protection from hospital, two doses",
            "vaccine_onset_1": "days until the first dose protects",
            "vaccine_onset_2": "days until the second dose protects",
        },
        "Method": {"population": "population", "estimator": "gradient estimator"},
    }
    """The options by theme with plain names (the explorer's control groups; the roll-out first, open)."""

    @classmethod
    def options(cls) -> dict[str, Param | Choice]:
        delta_severe = replace(
            covid.SEVERE_SCALE,
            value=2.08,
            doc="Factor on the age table's P(admission | symptoms): Delta raised the odds of admission "
            f"2.08-fold ({_FISMAN}). " + covid.SEVERE_SCALE.doc,
        )
        delta_fatal = replace(
            covid.FATALITY_SCALE,
            value=1.12,
            doc="Factor on P(death | admission): Delta raised the odds of death 2.33-fold and of admission "
            f"2.08-fold ({_FISMAN}), so death given admission about 2.33 / 2.08 = 1.12-fold. "
            + covid.FATALITY_SCALE.doc,
        )
        return {
            "population": Choice("nz", ("nz",), "who: New Zealand residents (Stats NZ 2018)"),
            "seeds_per_100k": _p(
                10.0,
                (0.0, 10_000.0),
                "per 100k on day 0",
                "infections from outside on day 0 in the three Auckland DHBs (about 170 in 1.7 million, "
                "uncalibrated: the outbreak had been spreading 7-10 days when it was found, Prime Minister, "
                "20 September 2021)",
            ),
            "beta": replace(
                covid.BETA,
                value=0.07,
                doc="Transmission probability per contact per day. Delta's reproduction number was 1.97 times"
                " the ancestral strain's (Campbell et al. 2021, Eurosurveillance 26:2100509): nyc-covid's"
                " 0.05 times 1.97 is 0.099 in New York's contact structure. 0.07 gave this model the "
                "outbreak's 10,888 community cases from 17 August to 31 December 2021 (a scan of 0.05, "
                "0.07 and 0.1 at 100,000 agents: 234 symptomatic infections at 0.07 against 222 cases "
                "scaled); it absorbs the error of the assumed contact shares kept under each alert level.",
            ),
            "asymptomatic_factor": covid.ASYMPTOMATIC_FACTOR,
            "severe_scale": delta_severe,
            "fatality_scale": delta_fatal,
            "maori_severity": _p(
                2.5,
                (0.1, 10.0),
                "relative",
                "P(admission | symptoms) of Māori relative to European/Other of the same age: odds ratio 2.5 "
                "(Steyn et al. 2021, NZMJ 134(1538):28, 2020-21 cases in New Zealand)",
            ),
            "pacific_severity": _p(
                3.0,
                (0.1, 10.0),
                "relative",
                "P(admission | symptoms) of Pacific people relative to European/Other: odds ratio 3.0 "
                "(Steyn et al. 2021)",
            ),
            "estimator": Choice(Sellke.name, tuple(ESTIMATORS), "gradient estimator of the infection"),
            "restrictions": Choice(
                "as they were",
                ("as they were", "none"),
                "alert levels and traffic lights by DHB as they were (dates in policy.py), or none",
            ),
            # the roll-out
            "policy": Choice(
                POLICIES[0],
                POLICIES,
                "who gets the next first doses, from 15 February 2021 with the real daily supply: as it was "
                "(each week's shares by DHB and sequencing group, the Ministry's 2021 table), oldest first, "
                "sequencing groups as planned (frontline workers, then 65 and over, then everyone oldest "
                "first), Auckland first, equity first (Māori and Pacific people equity_age_offset years "
                "earlier), pro rata (DHB x age band by willing people); details in policy.POLICIES",
            ),
            "dose_interval": Choice(
                "as it was",
                ("as it was", "21", "42", "84"),
                "days from first to second dose: as it was (21, 42 from 12 August 2021, 21 from 6 October), "
                "or a fixed number of days",
            ),
            "supply_scale": _p(
                1.0, (0.0, 10.0), "relative", "factor on the real daily doses (0.5: half, 2: double)"
            ),
            "equity_age_offset": _p(
                10.0,
                (0.0, 40.0),
                "years",
                "equity first: Māori and Pacific people queue as if this many years older (an assumption; "
                "Steyn et al. 2021 argued for prioritising them by their higher risk at a given age)",
            ),
            "ve_infection_1": _p(
                0.36,
                (0.0, 1.0),
                "fraction",
                f"one dose {_DELTA_VE}, infection: 35.6% against symptomatic disease (Lopez Bernal et al. "
                "2021, NEJM 385:585, BNT162b2)",
                learnable=True,
            ),
            "ve_infection_2": _p(
                0.80,
                (0.0, 1.0),
                "fraction",
                f"two doses {_DELTA_VE}, infection: 80% (Pouwels et al. 2021, Nat Med 27:2127, BNT162b2)",
                learnable=True,
            ),
            "ve_severe_1": _p(
                0.94,
                (0.0, 1.0),
                "fraction",
                f"one dose {_DELTA_VE}, admission: 94% (Stowe et al. 2021, Public Health England preprint, "
                "14 June 2021, BNT162b2)",
                learnable=True,
            ),
            "ve_severe_2": _p(
                0.96,
                (0.0, 1.0),
                "fraction",
                f"two doses {_DELTA_VE}, admission: 96% (Stowe et al. 2021)",
                learnable=True,
            ),
            "vaccine_onset_1": _p(
                14.0,
                (0.0, 60.0),
                "days",
                "days from dose 1 to its protection (Dagan et al. 2021, NEJM 384:1412)",
            ),
            "vaccine_onset_2": _p(
                14.0, (0.0, 60.0), "days", "days from dose 2 to its protection (Lopez Bernal et al. 2021)"
            ),
        }

    @classmethod
    def levers(cls) -> dict[str, Lever]:
        """``allocation``: the share of each day's first doses going to each DHB × age band
        (:data:`~.policy.AGE_BANDS`), one softmax table for the whole roll-out from 15 February 2021, the real
        daily supply unchanged and no group given more doses than it has willing people (water filling,
        :class:`~populace.layers.rollout.Rollout`). It starts from ``pro rata``, or (``--start-from POLICY``)
        from the shares of first doses each cell had under a policy by day 0 (:func:`_follow`), and is
        compared with every policy of :data:`~.policy.POLICIES`."""
        return {
            "allocation": Lever(
                name="allocation",
                doc="share of first doses by DHB x age band",
                sets=("policy=pro rata",),
                attach=lambda model: _rollout_of(model).learn(),
                table=_allocation_table,
                alternatives=tuple((p, (f"policy={p}",)) for p in POLICIES),
                apply=_learned,
                start=_follow,
            )
        }

    @classmethod
    def objectives(cls) -> dict[str, Objective]:
        return {
            "deaths": Objective(
                "deaths",
                "deaths over the run: the optimiser follows their expectation from the day's symptom onsets "
                "(Covid's expected_deaths), the held-out comparison counts them",
                "total:expected_deaths",
                counted="total:new_deaths",
            ),
            "admissions": Objective("admissions", "hospital admissions over the run", "total:new_admissions"),
            "infections": Objective("infections", "infections over the run", "total:new_infections"),
        }

    def recipe(self, options: Mapping[str, Param | Choice]) -> PopulationRecipe:
        return find_recipe(str(options["population"].value))()

    def observed_options(self, start: dt.date) -> dict[str, str]:
        """A starting point for the fit: 40 infections per 100k on day 0 in the Auckland DHBs (about 690 in
        1.7 million; the calibration fits the seeding from there, :mod:`.observed`). The default of 10 gives
        a run at a few hundred thousand agents only a few dozen infected Aucklanders, too few to follow."""
        return {"seeds_per_100k": "40"}

    def observed(self, model: Model, *, agents: int, start: dt.date, days: int) -> list[Stream]:
        """Daily community cases by area and weekly admissions (:mod:`.observed`)."""
        full = find_recipe("nz")().full_size
        return observed_streams(
            model, agents=agents, full_size=full, start=start, days=days, streams=DEFAULT_STREAMS
        )

    def calibration(
        self, model: Model, *, agents: int, start: dt.date, days: int, streams: Sequence[str] | None
    ) -> Calibration:
        """Fit to daily cases (Auckland, Waikato, the rest) and weekly admissions (:mod:`.observed`)."""
        return observed_calibration(
            model,
            agents=agents,
            full_size=find_recipe("nz")().full_size,
            start=start,
            days=days,
            streams=list(streams) if streams is not None else DEFAULT_STREAMS,
        )

    def build(
        self,
        agents: int,
        options: Mapping[str, Param | Choice],
        *,
        seed: int,
        device: torch.device | str,
        shard: Shard | None = None,
    ) -> Model:
        o = {k: v.value for k, v in options.items()}
        spec = {k: v for k, v in options.items() if isinstance(v, Param)}
        streams = RandomStreams(seed, device)
        recipe = self.recipe(options)
        people = load_population(recipe, agents, seed).people.to(streams.device)
        scale = people.n / recipe.full_size
        dhb = dhb_of_areas(recipe.geography().areas).to(streams.device)[people.area.long()]
        ethnicity = _ethnicity(people, dhb, streams)
        willing = _willing(people, dhb, ethnicity, streams)

        band18 = (people.age.long() // 5).clamp(max=17)
        household = Places("household", people.household)
        school = Places(
            "school", people.school, contacts=setting_contacts("school", band18, people.school >= 0)
        )
        work = Places("work", people.work, contacts=setting_contacts("work", band18, people.work >= 0))
        community = Places("community", people.community, contacts=COMMUNITY_CONTACTS)
        bands = _bands(people.age, ADMISSION_BANDS)
        breakdowns = [
            Breakdown("dhb", dhb, DHBS),
            Breakdown(
                "age", bands, tuple(f"{lo}-{hi}" if hi < 255 else f"{lo}+" for lo, hi in ADMISSION_BANDS)
            ),
            Breakdown("ethnicity", ethnicity, ETHNICITIES),
        ]
        disease = Covid(
            people.age,
            [household, school, work, community],
            initial_infections=0,
            breakdowns=breakdowns,
            beta=spec["beta"],
            asymptomatic_factor=spec["asymptomatic_factor"],
            severe_scale=spec["severe_scale"],
            fatality_scale=spec["fatality_scale"],
            estimator=estimator(str(o["estimator"])),
            expected_deaths=True,  # the smooth objective of `populace optimize nz-covid --objective deaths`
        )
        auckland = torch.zeros(len(DHBS))
        auckland[[DHBS.index(d) for d in AUCKLAND]] = float(o["seeds_per_100k"])
        travel = Importation(
            dhb, len(DHBS), torch.zeros(self.transmission_weeks, len(DHBS)), period=TRAVEL_PERIOD
        )
        travel.name = "travel"
        modifiers: list[Modifier] = [
            Transmission(dhb, len(DHBS), periods=self.transmission_weeks),
            Importation(dhb, len(DHBS), auckland),
            travel,
            RiskGroups(_severity_factor(people.age, ethnicity, o)),
        ]
        if o["restrictions"] == "as they were":
            modifiers.append(
                Restrictions(
                    dhb, levels_as_they_were(START, 400), KEPT, ("school", "work", "community"), LEVELS
                )
            )
        modifiers.append(self.rollout(people, dhb, ethnicity, willing, o, spec, scale, streams))
        return Model([disease, *modifiers])

    def rollout(
        self,
        people: Residents,
        dhb: torch.Tensor,
        ethnicity: torch.Tensor,
        willing: torch.Tensor,
        o: Mapping[str, float | str],
        spec: Mapping[str, Param],
        scale: float,
        streams: RandomStreams,
    ) -> Rollout:
        """The roll-out of ``o["policy"]`` from 15 February 2021 with the real daily supply."""
        supply = dose_supply() * scale * float(o["supply_scale"])
        front = frontline(
            dhb, people.age, people.work >= 0, willing, scale, streams.uniform("nz_covid.frontline", people.n)
        )
        plan = allocation(
            str(o["policy"]),
            dhb=dhb,
            age=people.age,
            ethnicity=ethnicity,
            willing=willing,
            front=front,
            equity_age_offset=float(o["equity_age_offset"]),
        )
        text = str(o["dose_interval"])
        interval = interval_as_it_was(supply.numel()) if text == "as it was" else torch.tensor(int(text))
        return Rollout(
            plan.cell,
            plan.cells,
            plan.priority,
            willing,
            supply,
            first_day=(ROLLOUT_START - START).days,
            shares=plan.shares,
            period=plan.period,
            interval=interval,
            breakdowns=(("dhb", dhb, DHBS), ("ethnicity", ethnicity, ETHNICITIES)),
            onset_1=spec["vaccine_onset_1"],
            onset_2=spec["vaccine_onset_2"],
            ve_infection_1=spec["ve_infection_1"],
            ve_infection_2=spec["ve_infection_2"],
            ve_severe_1=spec["ve_severe_1"],
            ve_severe_2=spec["ve_severe_2"],
        )


def _rollout_of(model: Model) -> Rollout:
    found = [layer for layer in model.layers if isinstance(layer, Rollout)]
    if len(found) != 1:
        raise ValueError(f"model: expected one roll-out layer, found {len(found)}")
    return found[0]


def _follow(heuristic: Model, model: Model, seed: int) -> torch.Tensor:
    """Logits of ``model``'s DHB × age-band table (``policy=pro rata``) that give each cell the share of the
    first doses it had under ``heuristic`` by day 0, when the outbreak was found (the roll-out before day 0 as
    a fast run with ``seed`` draws it); every cell also gets 1% of its pro-rata share, so that none starts at
    zero (a softmax's logit of -∞)."""
    source, target = _rollout_of(heuristic), _rollout_of(model)
    state = Simulation(heuristic, seed=seed, device=source.cell.device).states[
        heuristic.ordered_layers().index(source)
    ]
    dosed = state.queue[state.dose_day[0] != NEVER].long()
    counts = torch.bincount(target.cell[dosed], minlength=target.cells).double()
    willing = torch.bincount(target.cell[target.willing], minlength=target.cells).double()
    shares = counts / counts.sum().clamp(min=1) + 0.01 * willing / willing.sum().clamp(min=1)
    return shares.clamp(min=1e-12).log().float()


def _learned(model: Model, logits: torch.Tensor) -> None:
    """Give a fresh ``pro rata`` model the learned allocation ``logits``."""
    _rollout_of(model).learn(logits)


def _allocation_table(model: Model) -> dict[str, object]:
    """The first-dose shares by DHB (rows) × age band (columns) of a ``pro rata`` or learned roll-out, the
    willing people of each cell, and the share of them with a first dose by day 0 (the roll-out before the
    outbreak as a fast run with seed 0 draws it)."""
    layer = _rollout_of(model)
    if layer.cells != len(DHBS) * len(AGE_BANDS):
        raise ValueError("model: the allocation table needs the DHB x age band cells of policy=pro rata")
    shape = (len(DHBS), len(AGE_BANDS))
    shares = layer.shares_on(0).detach().reshape(shape)
    willing = torch.bincount(layer.cell[layer.willing], minlength=layer.cells).double()
    state = Simulation(model, seed=0, device=layer.cell.device).states[model.ordered_layers().index(layer)]
    dosed = torch.bincount(layer.cell[state.queue[state.dose_day[0] != NEVER].long()], minlength=layer.cells)
    return {
        "rows": list(DHBS),
        "columns": [f"{lo}-{hi}" if hi < 255 else f"{lo}+" for lo, hi in AGE_BANDS],
        "values": shares.tolist(),
        "willing": willing.long().reshape(shape).tolist(),
        "first_dose_by_day_0": (dosed.double() / willing.clamp(min=1)).reshape(shape).tolist(),
    }


def _bands(age: torch.Tensor, bands: tuple[tuple[int, int], ...]) -> torch.Tensor:
    edges = torch.tensor([lo for lo, _ in bands[1:]], device=age.device)
    return torch.bucketize(age.long(), edges, right=True)


def _uptake_group(age: torch.Tensor) -> torch.Tensor:
    """Index into :data:`~.data.AGE_GROUPS` (children under 5 take the 5-11 group)."""
    return _bands(age, AGE_GROUPS)


def _ethnicity(people: Residents, dhb: torch.Tensor, streams: RandomStreams) -> torch.Tensor:
    """``int64[agents]``: index into :data:`~.data.ETHNICITIES`, drawn from the Ministry's population by DHB ×
    age group with one uniform per household (members of a household mostly share a group; each agent's
    group keeps its DHB × age marginal)."""
    population, _ = uptake_table()
    share = population / population.sum(1, keepdim=True).clamp(min=1)  # [DHB, ethnicity, age group]
    cdf = share.permute(0, 2, 1).cumsum(2).float().to(dhb.device)  # [DHB, age group, ethnicity]
    u = streams.uniform("nz_covid.ethnicity", int(people.household.max()) + 1 if people.n else 0)
    draw = u[people.household.long()]
    rows = cdf[dhb.long(), _uptake_group(people.age)]
    return (draw[:, None] >= rows[:, :-1]).sum(1)


def _willing(
    people: Residents, dhb: torch.Tensor, ethnicity: torch.Tensor, streams: RandomStreams
) -> torch.Tensor:
    """``bool[agents]``: eligible (12 and over) and willing, with the probability that the Ministry's final
    uptake (at least one dose by 2 May 2023) gives for the agent's DHB × ethnicity × age group (at most 0.97:
    the health-service-user denominators undercount some groups)."""
    population, vaccinated = uptake_table()
    rate = (vaccinated / population.clamp(min=1)).clamp(max=0.97).float().to(dhb.device)
    p = rate[dhb.long(), ethnicity, _uptake_group(people.age)]
    u = streams.uniform("nz_covid.willing", people.n)
    return (u < p) & (people.age >= ELIGIBLE_AGE)


def _severity_factor(
    age: torch.Tensor, ethnicity: torch.Tensor, o: Mapping[str, float | str]
) -> torch.Tensor:
    """Māori and Pacific people's factor on P(admission | symptoms), capped so that the age table's
    probability times the Delta scale and the factor stays at most 0.95."""
    factor = torch.ones(age.numel(), device=age.device)
    factor[ethnicity == 0] = float(o["maori_severity"])
    factor[ethnicity == 1] = float(o["pacific_severity"])
    table = torch.tensor(covid.AGE_TABLE["severe"]) / torch.tensor(covid.AGE_TABLE["symptomatic"])
    base = (table.to(age.device)[(age.long() // 10).clamp(max=9)] * float(o["severe_scale"])).clamp(min=1e-6)
    return torch.minimum(factor, (0.95 / base).clamp(min=1.0))
