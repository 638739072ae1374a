"""Readers of the Ministry of Health's files shipped in ``data/`` (``data/SOURCES.md``: sources, licence).

Everything here is computed from the CSV files when asked for; nothing derived is stored.
"""

from __future__ import annotations

import csv
import datetime as dt
from functools import cache
from importlib.resources import files
from pathlib import Path

import torch

__all__ = [
    "AGE_GROUPS",
    "AUCKLAND",
    "DATA",
    "DHBS",
    "ETHNICITIES",
    "ROLLOUT_START",
    "TIERS",
    "daily_cases",
    "dhb_of_areas",
    "dose_supply",
    "frontline_people",
    "tier_shares",
    "uptake_table",
    "weekly_admissions",
    "weekly_deaths",
]

DATA = Path(str(files("populace.scenarios.nz_covid").joinpath("data")))

DHBS = (
    "Northland",
    "Waitemata",
    "Auckland",
    "Counties Manukau",
    "Waikato",
    "Bay of Plenty",
    "Lakes",
    "Tairawhiti",
    "Hawke's Bay",
    "Taranaki",
    "Whanganui",
    "MidCentral",
    "Wairarapa",
    "Capital and Coast",
    "Hutt Valley",
    "Nelson Marlborough",
    "Canterbury",
    "West Coast",
    "South Canterbury",
    "Southern",
)
"""The 20 District Health Boards of 2021, north to south (the order of the Ministry's case files)."""
AUCKLAND = ("Waitemata", "Auckland", "Counties Manukau")
"""The three DHBs of the Auckland region ("Auckland Metro" in the Ministry's grouped tables)."""
ETHNICITIES = ("Māori", "Pacific", "Asian", "European/Other")
"""Prioritised ethnic groups of the uptake file (its "Unknown" is counted with European or Other)."""
_ETHNIC_GROUP = {
    "Maori": 0,
    "Pacific Peoples": 1,
    "Asian": 2,
    "European or Other": 3,
    "Unknown": 3,
}
AGE_GROUPS = (
    (5, 11),
    (12, 17),
    (18, 24),
    *((a, a + 4) for a in range(25, 90, 5)),
    (90, 255),
)
"""The uptake file's age groups (5-11, 12-17, 18-24, 25-29 … 85-89, 90+)."""
TIERS = ("frontline", "65 and over", "general")
"""Sequencing groups of the 2021 roll-out as modelled: groups 1 and 2 (border, MIQ and frontline health
workers, high-risk settings: here willing workers), group 3 (65 and over; underlying conditions are not
modelled), group 4 (everyone else eligible)."""
_TIER_OF_GROUP = {"Group 1": 0, "Group 2": 0, "Group 3": 1, "Group 4": 2}
ROLLOUT_START = dt.date(2021, 2, 15)
"""Monday of the first week of the weekly DHB table (week ending Sunday 2021-02-21); the national series
has 3 doses before it (2021-02-14 … 16), which are dropped."""


def _read(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _number(text: str) -> float:
    """A count of the Ministry's files: thousands separators removed, suppressed ``<5`` read as 0."""
    text = text.replace(",", "").strip()
    return 0.0 if text in ("", "<5", "NA") else float(text)


def _dhb(name: str) -> int | None:
    name = name.replace("Hawkes Bay", "Hawke's Bay").replace("\u2019", "'").removesuffix(" only")
    return DHBS.index(name) if name in DHBS else None


def dhb_of_areas(codes: tuple[str, ...]) -> torch.Tensor:
    """``int64[areas]``: the DHB (index into :data:`DHBS`) of each SA2 code, from ``nz_sa2_2022_to_dhb.csv``.
    The 85 unpopulated SA2 without a DHB take the DHB holding most of their regional council's people; the
    90 people outside any DHB (Waitemata Harbour) are counted in Waitemata."""
    rows = {r["sa2_2022_code"]: r for r in _read("nz_sa2_2022_to_dhb.csv")}
    by_council: dict[str, dict[int, float]] = {}
    for row in rows.values():
        d = _dhb(row["dhb"])
        if d is not None:
            votes = by_council.setdefault(row["regional_council_code"], {})
            votes[d] = votes.get(d, 0.0) + float(row["pop_2018_statsnz"] or 0)
    out = []
    for code in codes:
        r = rows.get(code)
        if r is None:
            raise ValueError(f"codes: SA2 {code} is not in nz_sa2_2022_to_dhb.csv")
        d = _dhb(r["dhb"])
        if d is None and r["dhb"] == "Area outside District Health Board":
            d = DHBS.index("Waitemata")
        if d is None:
            votes = by_council[r["regional_council_code"]]
            d = max(votes, key=lambda k: votes[k])
        out.append(d)
    return torch.tensor(out)


def dose_supply(first: dt.date = ROLLOUT_START) -> torch.Tensor:
    """``float64[days]``: first plus second doses given in New Zealand on each day from ``first`` to the end
    of the national series (2023-05-02; days missing from the file had no doses)."""
    rows = _read("nz_vaccine_doses_by_date.csv")
    last = dt.date.fromisoformat(rows[-1]["Date"])
    out = torch.zeros((last - first).days + 1, dtype=torch.float64)
    for r in rows:
        k = (dt.date.fromisoformat(r["Date"]) - first).days
        if 0 <= k < out.numel():
            out[k] = _number(r["First doses"]) + _number(r["Second doses"])
    return out


@cache
def _group_weeks() -> tuple[list[dt.date], torch.Tensor]:
    rows = _read("nz_vaccine_weekly_doses_by_group_dhb_2021.csv")
    weeks = sorted({dt.date.fromisoformat(r["Week ending"]) for r in rows})
    table = torch.zeros(len(weeks), len(DHBS), len(TIERS), dtype=torch.float64)
    for r in rows:
        d = _dhb(r["DHB of residence"])
        if d is None or r["Dose number"] != "1":
            continue
        w = weeks.index(dt.date.fromisoformat(r["Week ending"]))
        table[w, d, _TIER_OF_GROUP[r["Group"]]] += _number(r["# doses administered"])
    return weeks, table


def tier_shares() -> torch.Tensor:
    """``float64[weeks, DHBs × tiers]``: share of the week's first doses by DHB of residence × tier, weeks
    ending 2021-02-21 … 2021-11-07 (doses to "Overseas / Unknown" left out), then one more row: the mean of
    the last four weeks, used for the weeks after the table ends."""
    _, table = _group_weeks()
    flat = table.flatten(1)
    flat = flat / flat.sum(1, keepdim=True).clamp(min=1)
    tail = flat[-4:].mean(0, keepdim=True)
    return torch.cat([flat, tail / tail.sum()])


def frontline_people() -> torch.Tensor:
    """``float64[DHBs]``: people who had a first dose in sequencing groups 1 and 2 by 2021-11-07, by DHB of
    residence: the size of the frontline tier."""
    _, table = _group_weeks()
    return table[:, :, 0].sum(0)


@cache
def uptake_table() -> tuple[torch.Tensor, torch.Tensor]:
    """``(population, vaccinated)``, each ``float64[DHBs, ethnicities, age groups]`` (:data:`AGE_GROUPS`):
    the Ministry's health-service-user population and people with at least one dose by 2023-05-02, summed over
    gender ("Various" and "Overseas / Unknown" rows left out)."""
    population = torch.zeros(len(DHBS), len(ETHNICITIES), len(AGE_GROUPS), dtype=torch.float64)
    vaccinated = torch.zeros_like(population)
    labels = [f"{lo}-{hi}" if hi < 255 else f"{lo}+" for lo, hi in AGE_GROUPS]
    for r in _read("nz_vaccine_uptake_dhb_ethnicity_age_sex_20230502.csv"):
        d = _dhb(r["DHB of residence"])
        e = _ETHNIC_GROUP.get(r["Ethnic group"])
        if d is None or e is None or r["Age group"] not in labels:
            continue
        a = labels.index(r["Age group"])
        population[d, e, a] += _number(r["Population"])
        vaccinated[d, e, a] += _number(r["At least partially vaccinated"])
    return population, vaccinated


def daily_cases(start: dt.date, days: int) -> torch.Tensor:
    """``float64[days, DHBs]``: community cases reported each day by DHB from ``start``."""
    out = torch.zeros(days, len(DHBS), dtype=torch.float64)
    for r in _read("nz_covid_daily_cases_by_dhb.csv"):
        k = (dt.date.fromisoformat(r["report_date"]) - start).days
        if not 0 <= k < days:
            continue
        for column, value in r.items():
            d = _dhb(column) if column not in ("Capital, Coast & Hutt", "Canterbury & West Coast") else None
            if d is not None:
                out[k, d] = _number(value)
    return out


def weekly_admissions(start: dt.date, days: int) -> tuple[list[dt.date], torch.Tensor]:
    """Weeks (ending Sunday) that end within ``days`` days of ``start``, and ``float64[weeks]`` COVID-19
    admissions in New Zealand in each (sum over age bands)."""
    end = start + dt.timedelta(days=days - 1)
    totals: dict[dt.date, float] = {}
    for r in _read("nz_covid_weekly_hospitalisations.csv"):
        week = dt.date.fromisoformat(r["Admissions for COVID-19 in the week ending"])
        if r["Variable Label"] == "Age band" and start <= week <= end:
            totals[week] = totals.get(week, 0.0) + _number(r["Hospitalisations"])
    weeks = [
        start + dt.timedelta(days=k) for k in range(days) if (start + dt.timedelta(days=k)).weekday() == 6
    ]
    return weeks, torch.tensor([totals.get(w, 0.0) for w in weeks], dtype=torch.float64)


def weekly_deaths(start: dt.date, days: int) -> tuple[list[dt.date], torch.Tensor]:
    """Weeks (ending Sunday) within ``days`` days of ``start`` and deaths within 28 days of being a case."""
    end = start + dt.timedelta(days=days - 1)
    totals = {
        dt.date.fromisoformat(r["Week ending"]): _number(r["Deaths within 28 days of being reported as case"])
        for r in _read("nz_covid_weekly_deaths.csv")
    }
    weeks = [w for w in sorted(totals) if start <= w <= end]
    return weeks, torch.tensor([totals[w] for w in weeks], dtype=torch.float64)
