"""Synthetic populations from census data: marginals, households, homes, scaling, determinism, cache, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from populace import cli
from populace.people import Residents
from populace.scenarios.populations.classroom import ClassroomTown
from populace.scenarios.populations.nyc import BOROUGHS, NewYorkCity, borough_marginals, modzcta_polygons
from populace.scenarios.populations.nz import NewZealand
from populace.synth.recipes import cache_key, describe, find_recipe, load_population


@pytest.fixture(scope="module")
def nyc_100k() -> Residents:
    return NewYorkCity().build(100_000, seed=1)


@pytest.fixture(scope="module")
def nyc_1m() -> Residents:
    return NewYorkCity().build(1_000_000, seed=2)


@pytest.fixture(scope="module")
def nz_100k() -> Residents:
    return NewZealand().build(100_000, seed=1)


def shares(values: torch.Tensor, bins: int) -> torch.Tensor:
    counts = torch.bincount(values.long(), minlength=bins).double()
    return counts / counts.sum()


def test_nyc_borough_and_age_band_totals_match_the_census(nyc_100k):
    census = borough_marginals()  # [borough, band, sex, ethnicity]
    by_borough = census.sum((1, 2, 3)) / census.sum()
    torch.testing.assert_close(shares(nyc_100k.region, 5), by_borough, rtol=0.01, atol=0)
    by_band = census.sum((0, 2, 3)) / census.sum()
    band = (nyc_100k.age.long() // 5).clamp(max=17)
    torch.testing.assert_close(shares(band, 18), by_band, rtol=0.01, atol=0)
    by_sex = census.sum((0, 1, 3)) / census.sum()
    torch.testing.assert_close(shares(nyc_100k.sex, 2), by_sex, rtol=0.01, atol=0)
    by_ethnicity = census.sum((0, 1, 2)) / census.sum()
    torch.testing.assert_close(shares(nyc_100k.ethnicity, 5), by_ethnicity, rtol=0.02, atol=0)


def test_nyc_full_size_is_the_census_total():
    assert NewYorkCity.full_size == round(NewYorkCity().spec().total)
    assert NewYorkCity.full_size == 8_336_817  # the census total of the five counties, 1 July 2019


@pytest.mark.parametrize("fixture", ["nyc_100k", "nz_100k"])
def test_no_household_without_an_adult(fixture, request):
    people = request.getfixturevalue(fixture)
    adults = torch.bincount(people.household.long(), weights=(people.age >= 18).double())
    assert int((adults == 0).sum()) == 0
    # Households are stored in order, each in one area.
    assert bool((people.household[1:] >= people.household[:-1]).all())
    first_area = torch.zeros(int(people.household.max()) + 1, dtype=torch.int16)
    first_area[people.household.long()] = people.area
    assert torch.equal(first_area[people.household.long()], people.area)


def test_every_nyc_home_is_inside_its_area_polygon(nyc_100k):
    polygons = modzcta_polygons()
    areas = NewYorkCity().geography().areas
    polygon_of_area = torch.tensor([polygons.index(a) for a in areas])
    inside = polygons.inside(polygon_of_area[nyc_100k.area.long()], nyc_100k.x, nyc_100k.y)
    assert bool(inside.all()), f"{int((~inside).sum())} homes outside their area"
    # Homes are spread inside the areas, not piled on centroids.
    assert torch.unique(torch.stack([nyc_100k.x, nyc_100k.y], 1), dim=0).shape[0] > 30_000


def test_nyc_scaled_to_100k_keeps_the_proportions_of_1m(nyc_100k, nyc_1m):
    small, large = describe(nyc_100k, NewYorkCity().geography()), describe(nyc_1m, NewYorkCity().geography())
    for name in BOROUGHS:
        assert small["regions"][name] / 100_000 == pytest.approx(large["regions"][name] / 1_000_000, rel=0.02)

    def household_shares(report):
        counts = torch.tensor(list(report["households"]["size_distribution"].values()), dtype=torch.float64)
        return counts / counts.sum()

    torch.testing.assert_close(household_shares(small), household_shares(large), rtol=0.02, atol=0.002)
    assert small["households"]["mean_size"] == pytest.approx(large["households"]["mean_size"], rel=0.02)
    assert small["employment_rate_18_64"] == pytest.approx(large["employment_rate_18_64"], rel=0.02)
    assert small["schools"]["members"] / 1e5 == pytest.approx(large["schools"]["members"] / 1e6, rel=0.02)


def test_nz_regions_match_stats_nz_and_homes_are_near_their_area(nz_100k):
    recipe = NewZealand()
    spec = recipe.spec()
    by_region = torch.zeros(len(recipe.geography().regions), dtype=torch.float64)
    by_region.index_add_(0, spec.area_region, spec.area_population)
    big = by_region > 20_000  # Chatham Islands (690 people) are 14 agents at this scale
    got = shares(nz_100k.region, len(by_region))
    torch.testing.assert_close(got[big], (by_region / by_region.sum())[big], rtol=0.01, atol=0)
    centre = spec.area_xy[nz_100k.area.long()]
    radius = spec.homes.radius[nz_100k.area.long()]  # type: ignore[attr-defined]
    distance = torch.hypot(nz_100k.x.double() - centre[:, 0], nz_100k.y.double() - centre[:, 1])
    assert bool((distance <= radius + 1.0).all())
    assert 4_800_000 < NewZealand.full_size < 5_000_000


def test_same_seed_same_population_other_seed_differs():
    town = ClassroomTown()
    a, b, c = town.build(5_000, seed=3), town.build(5_000, seed=3), town.build(5_000, seed=4)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()


def test_classroom_town_structure():
    people = ClassroomTown().build(20_000, seed=0)
    report = describe(people, ClassroomTown().geography())
    assert report["agents"] == 20_000
    assert report["bytes_per_agent"] == 32.0
    assert report["households"]["without_adult"] == 0
    assert report["schools"]["count"] > 0
    assert 0.6 < report["employment_rate_18_64"] < 0.8
    assert bool(((people.school >= 0) == ((people.age >= 5) & (people.age < 18))).all())
    assert bool((people.work[people.age < 18] == -1).all())


# ----------------------------------------------------------------------------- cache
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POPULACE_CACHE", str(tmp_path))
    return tmp_path


def test_cache_is_reused(cache):
    town = ClassroomTown()
    first = load_population(town, 3_000, seed=1)
    again = load_population(town, 3_000, seed=1)
    assert (first.source, again.source) == ("built", "cache")
    assert again.people.content_hash() == first.people.content_hash()
    assert load_population(town, 3_000, seed=2).source == "built"


def test_stale_cache_is_rebuilt(cache, monkeypatch):
    town = ClassroomTown()
    load_population(town, 3_000, seed=1)
    monkeypatch.setattr(ClassroomTown, "version", "changed")
    messages: list[str] = []
    again = load_population(town, 3_000, seed=1, log=messages.append)
    assert again.source == "rebuilt"
    assert "stale" in messages[0]
    assert cache_key(town, 3_000, 1) == Residents.read_metadata(again.path)["cache_key"]


def test_damaged_cache_is_rebuilt_never_used(cache):
    town = ClassroomTown()
    first = load_population(town, 3_000, seed=1)
    data = bytearray(first.path.read_bytes())
    data[-64] ^= 0xFF
    first.path.write_bytes(bytes(data))
    messages: list[str] = []
    again = load_population(town, 3_000, seed=1, log=messages.append)
    assert again.source == "rebuilt"
    assert "checksum" in messages[0]
    assert again.people.content_hash() == first.people.content_hash()
    first.path.write_bytes(first.path.read_bytes()[:100])  # truncated
    assert load_population(town, 3_000, seed=1, log=messages.append).source == "rebuilt"


# ----------------------------------------------------------------------------- CLI
def test_cli_build_then_describe(cache, capsys):
    assert cli.main(["population", "build", "classroom", "--agents", "4k", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["source"] == "built"
    assert built["agents"] == 4_000
    assert cli.main(["population", "describe", "classroom", "--agents", "4k", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "cache"
    assert report["bytes_per_agent"] == 32.0
    assert sum(report["areas"].values()) == 4_000
    assert sum(report["regions"].values()) == 4_000
    assert cli.main(["population", "describe", "classroom", "--agents", "4k"]) == 0
    text = capsys.readouterr().out
    assert "age pyramid" in text
    assert "households" in text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["population", "build", "atlantis"], "unknown population"),
        (["population", "build", "nyk"], "did you mean 'nyc'"),
        (["population", "build", "classroom", "--agents", "0"], "--agents"),
        (["population", "build", "classroom", "--agents", "1e9"], "--agents"),
        (["population", "build", "classroom", "--seed", "-1"], "--seed"),
    ],
)
def test_cli_bad_population_input(cache, capsys, argv, needle):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1


def test_recipes_are_discovered():
    assert find_recipe("nyc") is NewYorkCity
    assert find_recipe("nz") is NewZealand
    assert find_recipe("classroom") is ClassroomTown


def test_bench_seir_runs_on_a_census_population(cache):
    from populace import simulate
    from populace.scenarios.bench_seir import BenchSEIR

    options = BenchSEIR.options()
    options["population"] = options["population"].parse("classroom", "population")
    model = BenchSEIR().build(5_000, options, seed=1, device="cpu")
    result = simulate(model, 60, seed=1)
    assert sum(int(result.series[c][-1]) for c in "SEIR") == 5_000
    assert int(result.series["R"][-1]) > 0
