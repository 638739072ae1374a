"""nz-covid: agents' DHB and ethnicity, the real roll-out's DHB shares, the policies, the alert levels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import torch

from populace import Model, Simulation, simulate
from populace.layers.covid import Covid
from populace.layers.rollout import Rollout
from populace.scenario import find_scenario, parse_sets
from populace.scenarios.nz_covid import START
from populace.scenarios.nz_covid.data import AUCKLAND, DHBS, _group_weeks, uptake_table
from populace.scenarios.nz_covid.observed import Grouped, LevelFactors, level_shares
from populace.scenarios.nz_covid.policy import LEVELS, POLICIES, interval_as_it_was, levels_as_they_were
from populace.synth.geography import EARTH_RADIUS_M
from populace.synth.recipes import load_population

AGENTS = 40_000


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULACE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _build(*sets: str, agents: int = AGENTS) -> Model:
    scenario = find_scenario("nz-covid")
    return scenario().build(agents, parse_sets(scenario, sets), seed=1, device="cpu")


def _rollout(model: Model) -> Rollout:
    return next(layer for layer in model.layers if isinstance(layer, Rollout))


def test_agents_have_their_dhb_and_the_ministrys_ethnic_mix() -> None:
    model = _build()
    covid = next(layer for layer in model.layers if isinstance(layer, Covid))
    dhb = covid.breakdowns[0].index
    ethnicity = covid.breakdowns[2].index
    assert covid.breakdowns[0].labels == DHBS
    auckland = torch.isin(dhb, torch.tensor([DHBS.index(d) for d in AUCKLAND])).float().mean()
    assert 0.30 < float(auckland) < 0.38  # 1.72 of 4.90 million (Stats NZ 2018)
    population, _ = uptake_table()
    expected = population.sum((0, 2)) / population.sum()
    got = torch.bincount(ethnicity, minlength=4).double() / ethnicity.numel()
    assert torch.allclose(got, expected, atol=0.03), (got, expected)


def test_homes_lie_in_new_zealand_each_in_its_sa2() -> None:
    """The map's coordinates: every home inside New Zealand's bounding box (North Cape 34.4° S to Stewart
    Island 47.3° S, Fiordland 166.4° E to East Cape 178.6° E; approximate) or on the Chatham Islands
    (176.55° W, kept east of 180° beside the rest), and within its SA2: in the disc of the SA2's land area
    around its Stats NZ centroid (no SA2 polygons are shipped)."""
    scenario = find_scenario("nz-covid")
    recipe = scenario().recipe(scenario.defaults())
    people = load_population(recipe, AGENTS, seed=1).people
    lon = torch.rad2deg(people.x.double() / EARTH_RADIUS_M)
    lat = torch.rad2deg(torch.atan(torch.sinh(people.y.double() / EARTH_RADIUS_M)))
    mainland = (lon > 166.4) & (lon < 178.6) & (lat > -47.3) & (lat < -34.35)
    chatham = (lon > 183.1) & (lon < 183.9) & (lat > -44.4) & (lat < -43.6)
    assert bool((mainland | chatham).all()), f"{int((~(mainland | chatham)).sum())} homes outside New Zealand"
    on_chathams = people.area.long() == recipe.geography().areas.index("343000")
    assert int(on_chathams.sum()) > 0  # 690 of 4.9 million: a few agents at this size
    assert torch.equal(chatham, on_chathams)
    spec = recipe.spec()
    centre = spec.area_xy[people.area.long()]
    radius = spec.homes.radius[people.area.long()]  # type: ignore[attr-defined]
    distance = torch.hypot(people.x.double() - centre[:, 0], people.y.double() - centre[:, 1])
    assert bool((distance <= radius + 1.0).all())  # float32 homes: within a metre
    assert torch.unique(torch.stack([people.x, people.y], 1), dim=0).shape[0] > AGENTS // 4  # spread out


def test_the_real_rollout_follows_the_ministrys_shares_by_dhb() -> None:
    """First doses by DHB before day 0 (17 August 2021) against the Ministry's weekly table to 15 August."""
    model = _build()
    state = Simulation(model, seed=1).states[model.layers.index(_rollout(model))]
    layer = _rollout(model)
    dosed = state.queue[state.dose_day[0] != -32768].long()
    dhb = layer.breakdowns[0][1]
    got = torch.bincount(dhb[dosed], minlength=len(DHBS)).double()
    weeks, table = _group_weeks()
    upto = [i for i, w in enumerate(weeks) if w <= dt.date(2021, 8, 15)]
    expected = table[upto].sum((0, 2))
    got, expected = got / got.sum(), expected / expected.sum()
    assert float((got - expected).abs().max()) < 0.01, (got, expected)
    # the doses before day 0 are the national series' (scaled), to within one dose a day
    total = int(state.totals.sum())
    assert abs(total - float(layer.supply[: -layer.first_day].sum())) <= -layer.first_day


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_runs_and_gives_the_same_doses(policy: str) -> None:
    result = simulate(_build(f"policy={policy}", agents=20_000), 20, seed=1)
    assert int(result.series["vaccinated"][-1]) > 0
    given = result.series["first_doses"] + result.series["second_doses"]
    assert int(given.sum()) > 0


def test_the_policies_differ_in_who_is_vaccinated_first() -> None:
    old = _rollout(_build("policy=oldest first"))
    auckland = _rollout(_build("policy=Auckland first"))
    s_old = Simulation(Model([old]), seed=1).states[0]
    s_auck = Simulation(Model([auckland]), seed=1).states[0]
    dhb = old.breakdowns[0][1]
    akl = torch.isin(dhb, torch.tensor([DHBS.index(d) for d in AUCKLAND]))
    dosed = [
        torch.zeros_like(akl).index_fill(0, s.queue[s.dose_day[0] != -32768].long(), True)
        for s in (s_old, s_auck)
    ]
    willing = old.willing & akl
    covered = [float(d[willing].float().mean()) for d in dosed]  # willing Aucklanders with a dose by day 0
    assert covered[1] == 1.0 > covered[0]
    ages = [float(old.priority[s.queue[s.dose_day[0] != -32768].long()].mean()) for s in (s_old, s_auck)]
    assert ages[0] > ages[1]


def test_alert_levels_and_the_dose_interval_as_they_were() -> None:
    levels = levels_as_they_were(START, 137)
    day = {d: (d - START).days for d in (dt.date(2021, 8, 20), dt.date(2021, 9, 10), dt.date(2021, 12, 10))}
    auckland = DHBS.index("Auckland")
    canterbury = DHBS.index("Canterbury")
    assert LEVELS[int(levels[0, auckland])] == "alert level 1"
    assert LEVELS[int(levels[day[dt.date(2021, 8, 20)], canterbury])] == "alert level 4"
    assert LEVELS[int(levels[day[dt.date(2021, 9, 10)], auckland])] == "alert level 4"
    assert LEVELS[int(levels[day[dt.date(2021, 9, 10)], canterbury])] == "alert level 2"
    assert LEVELS[int(levels[day[dt.date(2021, 12, 10)], auckland])] == "red"
    assert LEVELS[int(levels[day[dt.date(2021, 12, 10)], canterbury])] == "orange"
    interval = interval_as_it_was(300)
    first = dt.date(2021, 2, 15)
    assert int(interval[(dt.date(2021, 8, 11) - first).days]) == 21
    assert int(interval[(dt.date(2021, 9, 1) - first).days]) == 42
    assert int(interval[(dt.date(2021, 11, 1) - first).days]) == 21


def test_the_calibration_seeds_auckland_and_imports_into_the_rest() -> None:
    """The fitted seeding is zero outside the Auckland DHBs and starts at the option's value in them; the
    travel importation is zero into Auckland and small elsewhere; a step's gradient reaches every network."""
    scenario = find_scenario("nz-covid")
    model = _build("seeds_per_100k=40", agents=20_000)
    assert not bool(model.travel.rate.any())  # the default run imports nothing after day 0
    days = 28
    calibration = scenario().calibration(model, agents=20_000, start=START, days=days, streams=None)
    auckland = torch.tensor([d in AUCKLAND for d in DHBS])
    with calibration.values():
        seeding, travel = model.importation.rate.detach(), model.travel.rate.detach()
        assert seeding.shape == (1, len(DHBS))
        assert travel.shape == (20, len(DHBS))
        assert not bool(seeding[0, ~auckland].any())
        assert torch.allclose(seeding[0, auckland], torch.tensor(40.0), rtol=1e-3)
        assert not bool(travel[:, auckland].any())
        assert bool((travel[:, ~auckland] > 0).all())
        loss = sum(calibration.losses(calibration.run(days, seed=0, grad="full")).values())
        assert isinstance(loss, torch.Tensor)
        loss.backward()
    for name in ("importation", "travel", "transmission"):
        grads = [p.grad for p in getattr(model, name).parametrizations.parameters()]
        assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads), name
    seeding_grads = [p.grad for p in model.importation.parametrizations.parameters()]
    assert any(float(g.abs().sum()) > 0 for g in seeding_grads if g is not None)


def test_the_calibrations_transmission_is_one_factor_per_level_and_region() -> None:
    """A week spent at one level takes that level's factor in the DHB's region, a week split between two
    the days-weighted geometric mean; the other region's factors do not reach it."""
    start = dt.date(2021, 9, 16)  # Auckland: level 4 until 21 September, level 3 from the 22nd
    shares = level_shares(start, 3)
    region = [0 if d in AUCKLAND else 1 for d in DHBS]
    table = LevelFactors(shares, region)
    level4, level3, level2 = (LEVELS.index(f"alert level {k}") for k in (4, 3, 2))
    with torch.no_grad():
        table.factor.raw[level4, 0] = -1.0  # a factor below 1 in Auckland at level 4
        table.factor.raw[level3, 0] = 1.0
        table.factor.raw[:, 1] = 2.0  # elsewhere: all large, never seen in Auckland
    f = table.factors()
    out = table()
    akl, chc = DHBS.index("Auckland"), DHBS.index("Canterbury")
    assert torch.allclose(out[0, akl], (f[level4, 0] ** 6 * f[level3, 0]) ** (1 / 7))  # 16-21, then the 22nd
    assert torch.allclose(out[1, akl], f[level3, 0])  # 23-29 September: level 3
    assert torch.allclose(out[1, chc], f[level2, 1])  # Canterbury: level 2 since 8 September
    assert bool((f > 0.05).all() and (f < 5.0).all())
    seeding = Grouped(1, [0 if d in AUCKLAND else -1 for d in DHBS], (0.1, 3000.0), initial=40.0)
    rate = seeding()
    assert rate.shape == (1, len(DHBS))
    assert int((rate > 0).sum()) == len(AUCKLAND)
    assert torch.allclose(rate[0, akl], torch.tensor(40.0))
