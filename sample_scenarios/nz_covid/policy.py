"""Who gets the next doses: the allocation of each roll-out policy (cells, priorities, shares), the dose
interval as it was, and the alert levels and traffic lights as they were."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import torch

from .data import AUCKLAND, DHBS, ROLLOUT_START, TIERS, frontline_people, tier_shares

__all__ = [
    "AGE_BANDS",
    "KEPT",
    "LEVELS",
    "POLICIES",
    "Allocation",
    "allocation",
    "interval_as_it_was",
    "levels_as_they_were",
]

POLICIES = (
    "as it was",
    "oldest first",
    "sequencing groups as planned",
    "Auckland first",
    "equity first",
    "pro rata",
)
"""Roll-out policies (the scenario's ``policy`` option). All use the real daily supply (times
``supply_scale``) from 15 February 2021:

* ``as it was``: each week's first doses split by DHB of residence × sequencing group as the Ministry's 2021
  table shows (``nz_vaccine_weekly_doses_by_group_dhb_2021.csv``; after its last week, 2021-11-07, the mean of
  its last four weeks), oldest first within each;
* ``oldest first``: one national queue by age;
* ``sequencing groups as planned``: frontline workers (groups 1-2), then everyone 65 and over (group 3), then
  everyone else (group 4) oldest first, nationally (Ministry of Health, "COVID-19 vaccine rollout plan",
  Groups 1-4, March 2021);
* ``Auckland first``: everyone willing in the three Auckland DHBs first (oldest first), then the rest;
* ``equity first``: one national queue by age, Māori and Pacific people ``equity_age_offset`` years earlier;
* ``pro rata``: first doses shared over DHB × age band in proportion to the willing people of each, oldest
  first within each (the starting table of ``populace optimize``).
"""

AGE_BANDS = ((12, 29), (30, 49), (50, 59), (60, 69), (70, 79), (80, 255))
"""Age bands of the ``pro rata`` cells and of the optimised allocation (DHB × band)."""

LEVELS = (
    "alert level 1",
    "alert level 2",
    "alert level 3",
    "alert level 4",
    "alert level 3, step 1",
    "alert level 3, step 2",
    "orange",
    "red",
)
"""The restriction levels of 2021: the COVID-19 Alert Level system and, from 3 December 2021, the COVID-19
Protection Framework ("traffic lights")."""

KEPT = torch.tensor(
    [
        [1.00, 1.00, 1.00],
        [1.00, 0.90, 0.70],
        [0.10, 0.50, 0.40],
        [0.05, 0.30, 0.20],
        [0.10, 0.50, 0.50],
        [0.30, 0.60, 0.60],
        [1.00, 0.95, 0.85],
        [1.00, 0.85, 0.70],
    ]
)
"""Share of school, work and community contacts kept under each of :data:`LEVELS`. Assumptions, read from the
rules of each level (New Zealand Government, covid19.govt.nz, "Alert level system", 2020-21; "COVID-19
Protection Framework", November 2021): level 4 closes schools and all but essential workplaces and keeps
people in their household bubbles; level 3 keeps schools closed except to children of workers, work at home
where possible; step 1 allows outdoor meetings of two households (10 people); step 2 opens retail and outdoor
gatherings of 25, and senior secondary students returned (26 October 2021); level 2 and the traffic lights
keep schools and workplaces open with limits on gatherings. The weekly calibrated transmission table
(:class:`~populace.layers.transmission.Transmission`) absorbs what these shares miss."""

_AUCKLAND = tuple(DHBS.index(d) for d in AUCKLAND)
_ALL = tuple(range(len(DHBS)))
_REST = tuple(d for d in _ALL if d not in _AUCKLAND)
_NORTHLAND = (DHBS.index("Northland"),)
_WAIKATO = (DHBS.index("Waikato"),)
_RED_DEC = (*_AUCKLAND, *_NORTHLAND, DHBS.index("Lakes"), DHBS.index("Tairawhiti"), DHBS.index("Whanganui"))

_TIMELINE: tuple[tuple[dt.date, tuple[int, ...], int], ...] = (
    # (first full day in force, DHBs, level). Changes took effect at 23:59, so from the next day.
    (dt.date(2021, 8, 18), _ALL, 3),  # all of New Zealand to alert level 4 (23:59 17 August 2021)
    (dt.date(2021, 9, 1), tuple(d for d in _REST if d not in _NORTHLAND), 2),  # south of Auckland: level 3
    (dt.date(2021, 9, 3), _NORTHLAND, 2),  # Northland to level 3 (23:59 2 September)
    (dt.date(2021, 9, 8), _REST, 1),  # all but Auckland to level 2 (23:59 7 September)
    (dt.date(2021, 9, 22), _AUCKLAND, 2),  # Auckland to level 3 (23:59 21 September)
    (dt.date(2021, 10, 4), _WAIKATO, 2),  # parts of Waikato to level 3 (23:59 3 October; whole DHB here)
    (dt.date(2021, 10, 6), _AUCKLAND, 4),  # Auckland level 3 step 1 (23:59 5 October)
    (dt.date(2021, 10, 9), _NORTHLAND, 2),  # Northland (parts) to level 3 (23:59 8 October)
    (dt.date(2021, 10, 20), _NORTHLAND, 1),  # Northland back to level 2 (23:59 19 October)
    (dt.date(2021, 11, 10), _AUCKLAND, 5),  # Auckland level 3 step 2 (23:59 9 November)
    (dt.date(2021, 12, 3), _ALL, 6),  # traffic lights from 23:59 2 December: orange, and red for:
    (dt.date(2021, 12, 3), _RED_DEC, 7),  # Auckland, Northland, Rotorua/Taupō, Gisborne, Whanganui (red)
    (dt.date(2021, 12, 31), _AUCKLAND, 6),  # Auckland to orange (23:59 30 December)
)
"""The alert levels and traffic lights of the 2021 Delta outbreak by DHB. Dates as announced by the Prime
Minister and reported at the time (e.g. RNZ, "What you need to know: updated alert levels for Auckland,
Waikato, rest of NZ", 20 September 2021; Reuters/Forexlive, 27 August 2021, for the move south of Auckland to
level 3 from 23:59 31 August). Where a level applied to part of a DHB (Waikato's northern towns from
3 October, Northland's in October, districts at red in December) the whole DHB is given it: approximate."""


def levels_as_they_were(start: dt.date, days: int) -> torch.Tensor:
    """``int64[days, DHBs]``: the level (index into :data:`LEVELS`) in force in each DHB on each day from
    ``start``; alert level 1 before 18 August 2021."""
    out = torch.zeros(days, len(DHBS), dtype=torch.int64)
    for date, dhbs, level in _TIMELINE:
        k = max((date - start).days, 0)
        if k < days:
            out[k:, list(dhbs)] = level
    return out


INTERVALS = ((dt.date(2021, 2, 15), 21), (dt.date(2021, 8, 12), 42), (dt.date(2021, 10, 6), 21))
"""Days between doses as it was: 21 days from the start (Pfizer-BioNTech's licensed schedule, Medsafe 2021);
6 weeks as the standard from 12 August 2021 (Ministry of Health media release "Time between doses of COVID-19
vaccine extended", 12 August 2021); back to 3 weeks from October 2021, when the Ministry urged people to bring
their second dose forward to at least 3 weeks after the first (Director of Public Health, COVID-19 update of
6 October 2021, Newshub)."""


def interval_as_it_was(days: int, first: dt.date = ROLLOUT_START) -> torch.Tensor:
    """``int64[days]``: the dose interval on each day from ``first``."""
    out = torch.empty(days, dtype=torch.int64)
    for date, interval in INTERVALS:
        out[max((date - first).days, 0) :] = interval
    return out


@dataclass(frozen=True)
class Allocation:
    """Cells, priorities and first-dose shares of one policy (the arguments of
    :class:`~populace.layers.rollout.Rollout`)."""

    cell: torch.Tensor
    cells: int
    priority: torch.Tensor
    shares: torch.Tensor
    period: int
    labels: tuple[str, ...]


def frontline(
    dhb: torch.Tensor,
    age: torch.Tensor,
    works: torch.Tensor,
    willing: torch.Tensor,
    scale: float,
    u: torch.Tensor,
) -> torch.Tensor:
    """``bool[agents]``: the frontline tier (sequencing groups 1-2): in each DHB, as many willing workers aged
    18-64 as had a first dose in groups 1-2 there (:func:`~.data.frontline_people`, times ``scale`` = agents
    per person), chosen at random (``u``: one uniform per agent)."""
    wanted = (frontline_people() * scale).round().long().to(dhb.device)
    pool = willing & works & (age >= 18) & (age < 65)
    out = torch.zeros_like(pool)
    key = dhb.double() * 2 + torch.where(pool, u.double(), torch.full_like(u, 1.5, dtype=torch.float64))
    order = torch.argsort(key)
    counts = torch.bincount(dhb[order].long(), minlength=len(DHBS))
    starts = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
    available = torch.bincount(dhb[pool].long(), minlength=len(DHBS))
    take = torch.minimum(wanted, available)
    for d in range(len(DHBS)):
        out[order[int(starts[d]) : int(starts[d]) + int(take[d])]] = True
    return out


def allocation(
    policy: str,
    *,
    dhb: torch.Tensor,
    age: torch.Tensor,
    ethnicity: torch.Tensor,
    willing: torch.Tensor,
    front: torch.Tensor,
    equity_age_offset: float,
) -> Allocation:
    """The cells, priorities and shares of ``policy`` (one of :data:`POLICIES`)."""
    device = age.device
    years = age.float()
    tier = torch.where(front, 0, torch.where(age >= 65, 1, 2))
    one = torch.zeros_like(dhb, dtype=torch.long)
    national = torch.ones(1, 1, device=device)
    if policy == "as it was":
        labels = tuple(f"{d}, {t}" for d in DHBS for t in TIERS)
        cell = dhb.long() * len(TIERS) + tier
        return Allocation(cell, len(labels), years, tier_shares().float().to(device), 7, labels)
    if policy == "oldest first":
        return Allocation(one, 1, years, national, 7, ("New Zealand",))
    if policy == "sequencing groups as planned":
        return Allocation(one, 1, years + 1000.0 * (2 - tier).float(), national, 7, ("New Zealand",))
    if policy == "Auckland first":
        auckland = torch.isin(dhb.long(), torch.tensor(_AUCKLAND, device=device))
        return Allocation(one, 1, years + 1000.0 * auckland.float(), national, 7, ("New Zealand",))
    if policy == "equity first":
        priority = years + equity_age_offset * (ethnicity < 2).float()  # Māori (0) and Pacific (1)
        return Allocation(one, 1, priority, national, 7, ("New Zealand",))
    if policy == "pro rata":
        band = age_band(age)
        cell = dhb.long() * len(AGE_BANDS) + band.clamp(min=0)
        cells = len(DHBS) * len(AGE_BANDS)
        counts = torch.bincount(cell[willing & (band >= 0)], minlength=cells).float()
        labels = tuple(f"{d}, {_band_label(b)}" for d in DHBS for b in AGE_BANDS)
        return Allocation(cell, cells, years, (counts / counts.sum().clamp(min=1))[None], 7, labels)
    raise ValueError(f"policy: expected one of {', '.join(POLICIES)}, got {policy!r}")


def age_band(age: torch.Tensor) -> torch.Tensor:
    """``int64[agents]``: index into :data:`AGE_BANDS`, ``-1`` under 12."""
    edges = torch.tensor([lo for lo, _ in AGE_BANDS], device=age.device)
    return torch.bucketize(age.long(), edges, right=True) - 1


def _band_label(band: tuple[int, int]) -> str:
    lo, hi = band
    return f"{lo}-{hi}" if hi < 255 else f"{lo}+"
