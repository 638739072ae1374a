"""The benchmark population of DESIGN.md §5: households, schools, workplaces and community places.

Structure (everything drawn from named random streams, so a seed fixes the population):

* ages: United States 2020, UN World Population Prospects 2024 five-year bands (``data/SOURCES.md``),
  uniform within a band;
* households: sizes 1 + Poisson(2) (mean 3, 2.67 contacts per member); agents are stored household by
  household, so the household kernel reads memory in order;
* schools: agents aged 6–21 in classes of 20, 10 contacts/day each (Starsim's ``HybridNet`` school ages);
* workplaces: agents aged 22–64 in groups of 16, 8 contacts/day each (``HybridNet`` work ages);
* community: everyone, in random groups of 20, 10 contacts/day each.

Place sizes are twice the contact numbers, so contacts repeat within a place as they would on a static
network of that degree. Mean total: about 19 contacts per agent per day (Starsim's network: 19.7).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib.resources import files

import torch
from torch import Tensor

from populace import Population, RandomStreams, column

SCHOOL_AGES = (6, 22)
WORK_AGES = (22, 65)
SCHOOL_CLASS, SCHOOL_CONTACTS = 20, 10.0
WORK_GROUP, WORK_CONTACTS = 16, 8.0
COMMUNITY_GROUP, COMMUNITY_CONTACTS = 20, 10.0
HOUSEHOLD_EXTRA_MEAN = 2.0


@dataclass
class People(Population):
    """Agents of the benchmark model; place indices are ``-1`` for agents outside a setting."""

    age: Tensor = column(torch.uint8, "age in whole years")
    household: Tensor = column(torch.int32, "household index (agents are sorted by household)")
    school: Tensor = column(torch.int32, "school class index, -1 if not in school")
    work: Tensor = column(torch.int32, "workplace index, -1 if not working")
    community: Tensor = column(torch.int32, "community place index")


def us_age_distribution() -> tuple[Tensor, Tensor]:
    """(band start ages ``int64[bands]``, population share ``float64[bands]``), US 2020, both sexes."""
    text = files("populace.scenarios.bench_seir").joinpath("data/un_wpp2024_pop_by_age_sex_NZL_USA.csv")
    totals: dict[int, float] = {}
    with text.open() as handle:
        for row in csv.DictReader(handle):
            if row["location"] == "United_States" and row["year"] == "2020":
                start = int(row["age_group_start"])
                totals[start] = totals.get(start, 0.0) + float(row["population"])
    starts = sorted(totals)
    share = torch.tensor([totals[s] for s in starts], dtype=torch.float64)
    return torch.tensor(starts), share / share.sum()


def _groups(eligible: Tensor, size: int, streams: RandomStreams, name: str, n: int) -> Tensor:
    """Place index per agent: eligible agents shuffled into consecutive groups of ``size``; others -1."""
    members = torch.nonzero(eligible).squeeze(1)
    order = torch.randperm(members.numel(), generator=streams.generator(name), device=members.device)
    place = torch.full((n,), -1, dtype=torch.int32, device=members.device)
    place[members[order]] = (torch.arange(members.numel(), device=members.device) // size).to(torch.int32)
    return place


def build_people(n: int, streams: RandomStreams) -> People:
    """The benchmark population of ``n`` agents on ``streams.device``."""
    device = streams.device
    starts, share = us_age_distribution()
    cdf = share.cumsum(0).to(torch.float32).to(device)
    band = torch.searchsorted(cdf, streams.uniform("population.age_band", n)).clamp_(max=len(starts) - 1)
    age = starts.to(device)[band] + (streams.uniform("population.age_year", n) * 5).long()
    age = age.clamp_(max=255).to(torch.uint8)

    n_households = n // 2 + 16  # mean size 3, so enough households with a wide margin
    lam = torch.full((n_households,), HOUSEHOLD_EXTRA_MEAN, device=device)
    sizes = torch.poisson(lam, generator=streams.generator("population.household_size")).long() + 1
    household = torch.repeat_interleave(torch.arange(n_households, device=device), sizes)[:n]
    if household.numel() < n:
        raise RuntimeError("household sizes did not cover the population")  # not reachable: mean 3 > 2
    household = household.to(torch.int32)

    in_school = (age >= SCHOOL_AGES[0]) & (age < SCHOOL_AGES[1])
    at_work = (age >= WORK_AGES[0]) & (age < WORK_AGES[1])
    everyone = torch.ones(n, dtype=torch.bool, device=device)
    return People(
        age=age,
        household=household,
        school=_groups(in_school, SCHOOL_CLASS, streams, "population.school", n),
        work=_groups(at_work, WORK_GROUP, streams, "population.work", n),
        community=_groups(everyone, COMMUNITY_GROUP, streams, "population.community", n),
    )
