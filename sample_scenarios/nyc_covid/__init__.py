"""``nyc-covid``: COVID-19 in New York City with testing, vaccination, masks, closures, stimulus payments and
archetype behaviour, on the census-based synthetic population of the ``nyc`` recipe.

Transmission settings (contact numbers from Mistry et al. 2021, New York, ``data/SOURCES.md``):

* household — every member meets every other member each day (the synthetic households);
* school and work — the synthetic schools and workplaces, each member meeting a fixed number of others a
  day, chosen so that the setting's total contacts equal Mistry's (weight × matrix, summed over the
  population's age structure);
* community — residents of each MODZCTA mix by five-year age band with Mistry's community matrix.

Every option is a ``--set NAME=VALUE`` on the command line and a control in the explorer; defaults give a
first wave with no interventions but the behaviour of the archetypes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import torch

from populace import AgeMixing, Choice, Model, Param, Places, RandomStreams, Scenario, Shard
from populace.calibrate import Calibration, Stream
from populace.estimators import ESTIMATORS, Sellke, estimator
from populace.layers import covid, npi, stimulus, testing, vaccination
from populace.layers.behaviour import DECISIONS, FEATURES, Archetypes, Behaviour, LogisticBackend
from populace.layers.covid import Breakdown, Covid
from populace.layers.effects import Modifier
from populace.layers.importation import Importation
from populace.layers.npi import Closures, Masks
from populace.layers.stimulus import Stimulus
from populace.layers.testing import Testing
from populace.layers.transmission import Transmission
from populace.layers.vaccination import Vaccination
from populace.people import Residents
from populace.scenario import Question
from populace.synth.recipes import PopulationRecipe, find_recipe, load_population

from .observed import DEFAULT_STREAMS, ORDERS, STREAMS, observed_calibration, observed_streams

__all__ = ["AGE_BANDS", "STREAMS", "Classroom", "NycCovid", "mistry_matrix", "setting_contacts"]

DATA = Path(__file__).parent / "data"
MISTRY_WEIGHTS = {"household": 4.11, "school": 11.41, "work": 8.07, "community": 2.79}
"""Mistry et al. 2021's setting weights (contacts per day): ``M = Σ weight × F_setting``."""

AGE_BANDS = ((0, 4), (5, 12), (13, 17), (18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 74), (75, 255))
"""The age bands of NYC DOHMH's weekly case and hospitalisation rates (``nyc_weekly_*_rate_age.csv``)."""

LOW_INCOME_SHARE = {
    "Bronx": 0.26,
    "Brooklyn": 0.19,
    "Manhattan": 0.16,
    "Queens": 0.12,
    "Staten Island": 0.11,
}
"""Share of residents below the federal poverty line by borough, American Community Survey 2019 1-year
estimates (table S1701), rounded to the percent; approximate (the table is not shipped). Whole households are
low income together. Other populations use the city-wide 0.17."""


def mistry_matrix(setting: str) -> torch.Tensor:
    """``float64[18, 18]`` contacts per day in ``setting`` (weight × F matrix), five-year bands."""
    if setting not in ("school", "work", "community"):
        raise ValueError(f"setting: expected school, work or community, got {setting!r}")
    path = DATA / f"mistry2021_NewYork_F_{setting}_setting_18.csv"
    rows = [[float(x) for x in line.split(",")] for line in path.read_text().split()]
    return torch.tensor(rows, dtype=torch.float64) * MISTRY_WEIGHTS[setting]


def setting_contacts(setting: str, band: torch.Tensor, member: torch.Tensor) -> float:
    """Contacts per member per day that give ``setting`` Mistry's total contacts for this population:
    ``Σ_a agents_a × Σ_b matrix[a, b] / members`` (``band``: five-year band of each agent, ``member``:
    whether the agent belongs to a place of the setting)."""
    agents = torch.bincount(band.long(), minlength=18).double()
    total = float((agents * mistry_matrix(setting).sum(1)).sum())
    members = int(member.sum())
    return total / members if members else 0.0


def _p(value: float, bounds: tuple[float, float], unit: str, doc: str, learnable: bool = False) -> Param:
    return Param(value, bounds, unit, doc=doc, learnable=learnable)


_ASSUMED = "Assumed; a behaviour parameter to calibrate."
_PROBABILITY = (0.01, 0.99)
_SLOPE = (-10.0, 10.0)


class NycCovid(Scenario):
    name = "nyc-covid"
    summary = "COVID-19 in NYC: testing, vaccination, masks, closures, stimulus, archetype behaviour"
    default_agents = 100_000
    default_days = 120
    default_outputs = ("total:new_deaths", "peak:hospitalised")
    default_start = dt.date(2020, 3, 1)
    shardable = True
    transmission_weeks = 52
    option_groups: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "Disease": {
            "beta": "transmission per contact (β)",
            "seeds_per_100k": "imported infections per 100k",
            "asymptomatic_factor": "infectiousness without symptoms",
            "severe_scale": "hospitalisation risk (× published)",
            "fatality_scale": "death risk in hospital (× published)",
            "hospital_death_days": "days from admission to death",
        },
        "Closures": {
            "school_close": "schools close on day",
            "school_reopen": "schools reopen on day",
            "work_close": "workplaces close on day",
            "work_reopen": "workplaces reopen on day",
            "work_closed_share": "share of workplaces closed",
        },
        "Masks": {
            "mask_adoption": "share wearing masks",
            "mask_efficacy": "mask efficacy",
            "mask_start": "masks from day",
        },
        "Testing": {
            "test_type": "test type",
            "test_capacity": "tests per day",
            "pcr_delay": "PCR turnaround (days)",
            "screening": "screening of people without symptoms",
            "isolation_compliance": "positives who isolate",
            "quarantine_compliance": "contacts who quarantine",
        },
        "Vaccination": {
            "vaccination": "vaccination",
            "vaccine_start": "vaccination starts on day",
            "vaccine_capacity": "doses per day",
            "second_dose_interval": "days between doses",
            "vaccine_uptake": "share willing to be vaccinated",
            "ve_infection_1": "protection from infection, one dose",
            "ve_infection_2": "protection from infection, two doses",
            "ve_severe_1": "protection from hospital, one dose",
            "ve_severe_2": "protection from hospital, two doses",
            "vaccine_onset_days": "days until a dose protects",
        },
        "Stimulus": {
            "stimulus_amount": "stimulus per adult ($)",
            "stimulus_day": "paid on day",
            "stimulus_recipients": "who receives it",
        },
        "Behaviour": {
            "work_low_income": "low-income workers go to work",
            "work_other": "other workers go to work",
            "isolate_low_income": "low-income symptomatic isolate",
            "isolate_other": "other symptomatic isolate",
            "test_low_income": "low-income symptomatic seek a test",
            "test_other": "other symptomatic seek a test",
            "prevalence_effect": "fear of local prevalence",
            "income_shock": "income lost in a closure",
            "income_shock_effect": "need to work after lost income",
            "stimulus_effect_low_income": "stimulus keeps low-income home",
            "stimulus_effect_other": "stimulus keeps others home",
        },
        "Method": {"population": "population", "estimator": "gradient estimator"},
    }
    """The options by theme with plain names (the explorer's control groups)."""
    questions = (
        Question(
            "PCR or antigen testing?",
            ("PCR tests", {"test_type": "pcr"}),
            ("antigen tests", {"test_type": "antigen"}),
            "PCR results take pcr_delay days (2) and miss fewer infections; antigen results are the same "
            "day but less sensitive (layers/testing.py KINDS). Same capacity either way.",
        ),
        Question(
            "A $500 stimulus to low-income households?",
            ("no stimulus", {"stimulus_amount": "0"}),
            (
                "$500 on day 20",
                {"stimulus_amount": "500", "stimulus_recipients": "low-income", "stimulus_day": "20"},
            ),
            "Low-income on-site workers who receive a payment go to work less (stimulus_effect_low_income): "
            "fewer contacts at work, at the payment's cost.",
        ),
        Question(
            "Delay the second dose?",
            (
                "second dose at 21 days",
                {"vaccination": "on", "vaccine_start": "0", "second_dose_interval": "21"},
            ),
            (
                "second dose at 84 days",
                {"vaccination": "on", "vaccine_start": "0", "second_dose_interval": "84"},
            ),
            "With the same doses a day, a later second dose gives more people a first dose sooner (the UK's "
            "policy of 30 Dec 2020, JCVI), at less protection each until the second.",
        ),
    )
    """Rows of the calibrated transmission table (:class:`Transmission`); later weeks reuse the last."""

    @classmethod
    def options(cls) -> dict[str, Param | Choice]:
        return {
            "population": Choice("nyc", ("nyc", "classroom"), "who: NYC residents, or the classroom town"),
            "seeds_per_100k": _p(
                10.0,
                (0.0, 100_000.0),
                "per 100k per day",
                "hazard of infection from outside on day 0 in every region (NYC: borough; the classroom town:"
                " quarter): about the agents infected per 100k while small, scaled by the age table's"
                " susceptibility; a calibration fits it by region",
            ),
            "beta": covid.BETA,
            "asymptomatic_factor": covid.ASYMPTOMATIC_FACTOR,
            "severe_scale": covid.SEVERE_SCALE,
            "fatality_scale": covid.FATALITY_SCALE,
            "estimator": Choice(
                Sellke.name,
                tuple(ESTIMATORS),
                "gradient estimator of the infection (populace.estimators); 'sellke' is reverse mode only",
            ),
            "hospital_death_days": _p(
                covid.DURATIONS["hospital_death"][0].value,
                (1.0, 60.0),
                "days",
                "mean time from admission to death; default: " + covid.DURATIONS["hospital_death"][0].doc,
            ),
            # testing
            "test_type": Choice(
                "pcr", ("none", "pcr", "antigen"), "test technology (layers/testing.py KINDS)"
            ),
            "test_capacity": testing.CAPACITY,
            "pcr_delay": _p(2.0, (0.0, 30.0), "days", "PCR turnaround (NYC 2020: 1-3 days); antigen: 0"),
            "screening": testing.SCREENING,
            "isolation_compliance": testing.ISOLATION_COMPLIANCE,
            "quarantine_compliance": testing.QUARANTINE_COMPLIANCE,
            # vaccination
            "vaccination": Choice("off", ("off", "on"), "two-dose vaccination (layers/vaccination.py)"),
            "vaccine_start": vaccination.START_DAY,
            "vaccine_capacity": vaccination.CAPACITY,
            "second_dose_interval": vaccination.INTERVAL,
            "vaccine_uptake": vaccination.UPTAKE,
            "ve_infection_1": vaccination.VE_INFECTION_1,
            "ve_infection_2": vaccination.VE_INFECTION_2,
            "ve_severe_1": vaccination.VE_SEVERE_1,
            "ve_severe_2": vaccination.VE_SEVERE_2,
            "vaccine_onset_days": vaccination.ONSET_DAYS,
            # masks and closures
            "mask_adoption": _p(
                0.0, (0.0, 1.0), "fraction", "share wearing masks (0: no mask policy); see Masks"
            ),
            "mask_efficacy": npi.MASK_EFFICACY,
            "mask_start": npi.START,
            "school_close": _p(
                10_000.0, (0.0, 10_000.0), "day", "first day schools are closed (10000: never)"
            ),
            "school_reopen": _p(10_000.0, (0.0, 10_000.0), "day", "first day schools are open again"),
            "work_close": _p(
                10_000.0, (0.0, 10_000.0), "day", "first day of the work closure (10000: never)"
            ),
            "work_reopen": _p(10_000.0, (0.0, 10_000.0), "day", "first day workplaces are open again"),
            "work_closed_share": npi.WORK_CLOSED_SHARE,
            # stimulus
            "stimulus_amount": _p(
                0.0, (0.0, 100_000.0), "$ per adult", "stimulus per adult (0: none); " + stimulus.AMOUNT.doc
            ),
            "stimulus_day": stimulus.DAY,
            "stimulus_recipients": stimulus.RECIPIENTS,
            # behaviour archetypes
            "work_low_income": _p(
                0.9,
                _PROBABILITY,
                "probability",
                "P(a low-income on-site worker goes to work), calm times. Dingel & Neiman 2020 (J Public "
                "Econ 189:104235): 37% of US jobs can be done at home, far fewer low-wage ones. " + _ASSUMED,
            ),
            "work_other": _p(
                0.75,
                _PROBABILITY,
                "probability",
                "P(other on-site workers go to work), calm times. " + _ASSUMED,
            ),
            "isolate_low_income": _p(
                0.35,
                _PROBABILITY,
                "probability",
                "P(a symptomatic low-income agent isolates). Smith et al. 2021 (BMJ 372:n608): 42.5% "
                "adherence, lower with financial hardship. " + _ASSUMED,
            ),
            "isolate_other": _p(
                0.5, _PROBABILITY, "probability", "P(other symptomatic agents isolate). " + _ASSUMED
            ),
            "test_low_income": _p(
                0.3,
                _PROBABILITY,
                "probability",
                "P(a symptomatic low-income agent seeks a test). " + _ASSUMED,
            ),
            "test_other": _p(
                0.4, _PROBABILITY, "probability", "P(other symptomatic agents seek a test). " + _ASSUMED
            ),
            "prevalence_effect": _p(
                0.2,
                _SLOPE,
                "log-odds per symptomatic/1,000",
                "fear: less work, more isolation and testing as local prevalence rises. " + _ASSUMED,
            ),
            "income_shock": _p(
                0.3,
                (0.0, 1.0),
                "fraction",
                "income lost by low-income households while work closures last. " + _ASSUMED,
            ),
            "income_shock_effect": _p(
                2.0,
                _SLOPE,
                "log-odds per income share lost",
                "need: low-income workers whose income drops go to (open) work more. " + _ASSUMED,
            ),
            "stimulus_effect_low_income": _p(
                -1.5,
                _SLOPE,
                "log-odds per $1,000",
                "a stimulus lets low-income workers stay home: effect on going to work. " + _ASSUMED,
            ),
            "stimulus_effect_other": _p(
                -0.2,
                _SLOPE,
                "log-odds per $1,000",
                "effect of a stimulus on other workers going to work. " + _ASSUMED,
            ),
        }

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
        recipe = find_recipe(str(o["population"]))()
        people = load_population(recipe, agents, seed).people.to(streams.device)
        regions = recipe.geography().regions

        band18 = (people.age.long() // 5).clamp(max=17)
        household = Places("household", people.household)
        school = Places(
            "school", people.school, contacts=setting_contacts("school", band18, people.school >= 0)
        )
        work = Places("work", people.work, contacts=setting_contacts("work", band18, people.work >= 0))
        community = AgeMixing("community", people.area, band18, mistry_matrix("community"))
        low_income = _low_income(people, regions, streams)
        archetypes = Archetypes.by_age_income_work(people.age, low_income, people.work >= 0)
        adults = torch.bincount(archetypes.index[people.age >= 18].long(), minlength=len(archetypes))
        if shard is not None:  # built on everyone (place sizes, draws by household), kept for this process
            starts = torch.ones(people.n, dtype=torch.bool, device=people.area.device)
            starts[1:] = people.area[1:] != people.area[:-1]  # areas (so households) kept whole
            shard.divide(people.n, starts)
            household, school, work, community = (
                s.shard(shard) for s in (household, school, work, community)
            )
            people = people.slice(shard.start, shard.stop)
            archetypes = replace(archetypes, index=archetypes.index[shard.start : shard.stop])
        n = people.n
        breakdowns = [
            Breakdown("borough", people.region.long(), tuple(regions)),
            Breakdown(
                "age",
                _age_band(people.age),
                tuple(f"{lo}-{hi}" if hi < 255 else f"{lo}+" for lo, hi in AGE_BANDS),
            ),
        ]

        closures = Closures(
            school,
            work,
            school_start=spec["school_close"],
            school_end=spec["school_reopen"],
            work_start=spec["work_close"],
            work_end=spec["work_reopen"],
            work_closed_share=spec["work_closed_share"],
        )
        payments = Stimulus(
            adults,
            archetypes.low_income,
            recipients=str(o["stimulus_recipients"]),
            amount=spec["stimulus_amount"],
            day=spec["stimulus_day"],
        )
        disease = Covid(
            people.age,
            [household, school, work, community],
            initial_infections=0,  # seeded by importation on day 0
            breakdowns=breakdowns,
            beta=spec["beta"],
            asymptomatic_factor=spec["asymptomatic_factor"],
            severe_scale=spec["severe_scale"],
            fatality_scale=spec["fatality_scale"],
            durations={
                "hospital_death": (
                    spec["hospital_death_days"],
                    covid.DURATIONS["hospital_death"][1],
                )
            },
            estimator=estimator(str(o["estimator"])),
        )
        behaviour = Behaviour(
            archetypes,
            people.region,
            disease,
            _backend(archetypes, o),
            income_shock=(closures, float(o["income_shock"])),
            stimulus=payments,
            n_regions=len(regions),
        )
        transmission = Transmission(people.region, len(regions), periods=self.transmission_weeks)
        seeding = Importation(
            people.region, len(regions), torch.full((len(regions),), float(o["seeds_per_100k"]))
        )
        modifiers: list[Modifier] = [behaviour, closures, transmission, seeding]
        if o["test_type"] != "none":
            kind = str(o["test_type"])
            modifiers.append(
                Testing(
                    disease,
                    people.household,
                    kind=kind,
                    seek=behaviour,
                    breakdowns=breakdowns,
                    delay=float(o["pcr_delay"]) if kind == "pcr" else None,
                    capacity=spec["test_capacity"],
                    screening=spec["screening"],
                    isolation_compliance=spec["isolation_compliance"],
                    quarantine_compliance=spec["quarantine_compliance"],
                )
            )
        if o["vaccination"] == "on":
            modifiers.append(
                Vaccination(
                    people.age,
                    start_day=spec["vaccine_start"],
                    capacity=spec["vaccine_capacity"],
                    interval=spec["second_dose_interval"],
                    uptake=spec["vaccine_uptake"],
                    onset_days=spec["vaccine_onset_days"],
                    ve_infection_1=spec["ve_infection_1"],
                    ve_infection_2=spec["ve_infection_2"],
                    ve_severe_1=spec["ve_severe_1"],
                    ve_severe_2=spec["ve_severe_2"],
                )
            )
        if float(o["mask_adoption"]) > 0:
            modifiers.append(
                Masks(
                    n,
                    efficacy=spec["mask_efficacy"],
                    adoption=spec["mask_adoption"],
                    start=spec["mask_start"],
                )
            )
        return Model([disease, payments, *modifiers])

    def recipe(self, options: Mapping[str, Param | Choice]) -> PopulationRecipe:
        return find_recipe(str(options["population"].value))()

    def observed(self, model: Model, *, agents: int, start: dt.date, days: int) -> list[Stream]:
        """NYC's daily cases, admissions and deaths by borough (:func:`.observed.observed_streams`)."""
        return observed_streams(
            model,
            agents=agents,
            full_size=find_recipe("nyc")().full_size,
            start=start,
            days=days,
            streams=DEFAULT_STREAMS,
        )

    def observed_options(self, start: dt.date) -> dict[str, str]:
        """The first-wave orders (:data:`.observed.ORDERS`) as day indices from ``start``, masks at the
        default adoption, and a starting point for the fit: 300 infections per 100k on 1 March 2020 (so that
        admissions rise with the data), β 0.07 and deaths ×4 (see ``FATALITY_SCALE``). Admission to death
        takes 8 days on average, not Covasim's 12.2: NYC's deaths peaked about 7 days after its admissions
        in April 2020 (data-by-day: admissions 1,687/day around 4 April, deaths 775/day around 11 April);
        the duration is not differentiable, so it is set here rather than fitted."""
        day = {name: max((date - start).days, 0) for name, date in ORDERS.items()}
        return {
            "seeds_per_100k": "300",
            "beta": "0.07",
            "fatality_scale": "4",
            "hospital_death_days": "8",
            "school_close": str(day["schools_closed"]),
            "work_close": str(day["pause"]),
            "work_reopen": str(day["phase_1"]),
            "mask_adoption": "0.7",
            "mask_start": str(day["face_coverings"]),
        }

    def calibration(
        self, model: Model, *, agents: int, start: dt.date, days: int, streams: Sequence[str] | None
    ) -> Calibration:
        """Fit to NYC DOHMH's daily cases, admissions and deaths by borough (default streams; also weekly
        rates by age band, :mod:`.observed`): the admission and death scales, and calibration networks
        for transmission and reported cases by week and borough."""
        return observed_calibration(
            model,
            agents=agents,
            full_size=find_recipe("nyc")().full_size,
            start=start,
            days=days,
            streams=list(streams) if streams is not None else DEFAULT_STREAMS,
        )


def _low_income(people: Residents, regions: tuple[str, ...], streams: RandomStreams) -> torch.Tensor:
    """``bool[agents]``: members of low-income households, drawn per household with its borough's share."""
    share = torch.tensor([LOW_INCOME_SHARE.get(r, 0.17) for r in regions], device=people.age.device)
    household = people.household.long()
    draw = streams.uniform("nyc_covid.income", int(household.max()) + 1 if people.n else 0)
    return draw[household] < share[people.region.long()]


def _backend(archetypes: Archetypes, o: Mapping[str, float | str]) -> LogisticBackend:
    """The logistic backend with the options' baseline probabilities and effects (see the option docs)."""
    a = len(archetypes)
    baseline = torch.empty(a, len(DECISIONS))
    slope = torch.zeros(a, len(DECISIONS), len(FEATURES))
    work, isolate, test = (DECISIONS.index(d) for d in ("work", "isolate", "test"))
    prevalence, shock, paid = (FEATURES.index(f) for f in ("prevalence", "income_shock", "stimulus"))
    for i in range(a):
        tier = "low_income" if bool(archetypes.low_income[i]) else "other"
        baseline[i] = torch.tensor([float(o[f"{d}_{tier}"]) for d in DECISIONS])
        fear = float(o["prevalence_effect"])
        slope[i, work, prevalence], slope[i, isolate, prevalence], slope[i, test, prevalence] = (
            -fear,
            fear,
            fear,
        )
        slope[i, work, shock] = float(o["income_shock_effect"])
        slope[i, work, paid] = float(o[f"stimulus_effect_{tier}"])
    return LogisticBackend(baseline, slope)


def _age_band(age: torch.Tensor) -> torch.Tensor:
    edges = torch.tensor([lo for lo, _ in AGE_BANDS[1:]], device=age.device)
    return torch.bucketize(age.long(), edges, right=True)


class Classroom(NycCovid):
    """``classroom``: the ``nyc-covid`` model on the 20,000 residents of the classroom town, for workshops:
    it sets up in a second and runs hundreds of days a second. The town is fictional, so there is no
    observed data to calibrate against."""

    name = "classroom"
    summary = (
        "COVID-19 in the fictional classroom town (20,000 residents): the nyc-covid model, for workshops"
    )
    default_agents = 20_000
    default_start = None
    observed = Scenario.observed
    observed_options = Scenario.observed_options
    calibration = Scenario.calibration

    @classmethod
    def options(cls) -> dict[str, Param | Choice]:
        options = super().options()
        options["population"] = Choice("classroom", ("classroom",), "who: the classroom town")
        options["seeds_per_100k"] = replace(options["seeds_per_100k"], value=50.0)  # ~10 of 20,000
        return options
