"""New Zealand: 4.90 million residents of 2,260 statistical areas (SA2, 2022 boundaries) in 17 regions.

Inputs (``data/SOURCES.md``): Stats NZ population estimates by SA2 and 5-year age band, 30 June 2018,
with SA2 centroids and land areas; UN World Population Prospects 2024 sex ratios by age (the SA2 file has
no sex). There are no SA2 polygons in the data, so homes are placed uniformly in a disc of the SA2's land
area around its centroid. Ethnicity is not modelled here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from populace.people import Residents
from populace.synth.geography import lonlat_to_mercator, sample_in_disc
from populace.synth.pipeline import RegionSpec, synthesize
from populace.synth.recipes import Geography, PopulationRecipe

from ._data import DATA, read_csv, un_wpp_2020

AREAS = "nz_pop_by_region_sa2_age_2018.csv"
BANDS = (*(f"{a}-{a + 4}" for a in range(0, 90, 5)), "90+")
CHATHAM_ISLANDS = (-43.95, 183.45)
"""(lat, lon) used for the 18 SA2 of the Chatham Islands ("Area Outside Region", 690 residents), which have
no centroid in the file: the islands' approximate centre, 176.55° W written as 183.45° E so that the islands
lie 800 km east of the rest of New Zealand on the map (Web Mercator x continues past 180°), not at the far
side of the world, which stretched the explorer's map of New Zealand over the whole globe."""

HOUSEHOLD_SIZE = torch.tensor([0.23, 0.34, 0.16, 0.15, 0.07, 0.03, 0.02], dtype=torch.float64)
"""P(size = 1..7+): New Zealand households, 2018 Census (Stats NZ; approximate), mean 2.66 against the census
average of 2.7 people per household."""
SCHOOL_AGES = (5, 18)
"""Years 1–13."""
SCHOOL_SIZE = 320
"""Pupils per school: about 800,000 pupils in about 2,500 schools (NZ Ministry of Education, Education
Counts 2018; approximate)."""
WORK_AGES = (18, 65)
EMPLOYMENT_RATE = 0.76
"""Employed share of residents aged 18–64: the employment rate of 15–64-year-olds was about 77% in 2018
(Stats NZ Household Labour Force Survey; approximate)."""
WORKPLACE_MEAN_SIZE = 10.0
"""Employees per workplace; an assumption (New Zealand's businesses are smaller than the US average)."""
COMMUTE_SCALE_M = 15_000.0
"""Gravity-model distance scale (Web Mercator metres, about 11 km on the ground at 41°S); an assumption."""
COMMUNITY_SIZE = 500
"""Residents per community place; an assumption."""


class NewZealand(PopulationRecipe):
    name = "nz"
    summary = "New Zealand, 4.90M residents in 2,260 SA2 areas of 17 regions (Stats NZ 2018)"
    full_size = 4_900_740
    default_agents = 4_900_740
    version = "2"

    def inputs(self) -> Sequence[Path]:
        return [DATA / AREAS, DATA / "un_wpp2024_pop_by_age_sex_NZL_USA.csv"]

    def _rows(self) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        rows = read_csv(AREAS)
        regions = [r for r in rows if r["level"] == "regional_council"]
        return regions, [r for r in rows if r["level"] == "sa2_2022"]

    def geography(self) -> Geography:
        return _geography(*self._rows())

    def spec(self) -> RegionSpec:
        regions, areas = self._rows()
        geography = _geography(regions, areas)
        counts = torch.tensor([[float(r[b]) for b in BANDS] for r in areas], dtype=torch.float64)
        lat = torch.tensor([float(r["lat"] or CHATHAM_ISLANDS[0]) for r in areas], dtype=torch.float64)
        lon = torch.tensor([float(r["lon"] or CHATHAM_ISLANDS[1]) for r in areas], dtype=torch.float64)
        land_m2 = torch.tensor([float(r["land_area_km2"] or 0.0) * 1e6 for r in areas], dtype=torch.float64)
        x, y = lonlat_to_mercator(lon, lat)
        # Web Mercator stretches lengths by 1 / cos(latitude).
        radius = (land_m2 / math.pi).sqrt() / torch.cos(torch.deg2rad(lat))
        by_region = torch.zeros(len(regions), len(BANDS), dtype=torch.float64)
        by_region.index_add_(0, geography.area_region, counts)
        targets = by_region[:, :, None, None] * sex_shares()[None, :, :, None]
        return RegionSpec(
            area_population=counts.sum(1),
            area_region=geography.area_region,
            area_xy=torch.stack([x, y], dim=1),
            cell_targets=targets,
            band_start=torch.tensor([*range(0, 95, 5), 100]),
            household_size=HOUSEHOLD_SIZE,
            homes=_DiscHomes(x, y, radius),
            school_ages=SCHOOL_AGES,
            school_size=SCHOOL_SIZE,
            work_ages=WORK_AGES,
            employment_rate=EMPLOYMENT_RATE,
            workplace_mean_size=WORKPLACE_MEAN_SIZE,
            commute_scale_m=COMMUTE_SCALE_M,
            job_attraction=counts.sum(1),
            community_size=COMMUNITY_SIZE,
            area_band_seed=counts,
        )

    def build(self, agents: int, seed: int) -> Residents:
        return synthesize(self.spec(), agents, seed)


def _geography(regions: list[dict[str, str]], areas: list[dict[str, str]]) -> Geography:
    codes = [r["code"] for r in regions]
    return Geography(
        areas=tuple(r["code"] for r in areas),
        regions=tuple(r["name"] for r in regions),
        area_region=torch.tensor([codes.index(r["regional_council_code"]) for r in areas]),
        area_names=tuple(r["name"] for r in areas),
    )


def sex_shares() -> Tensor:
    """``float64[19 bands, 2]``: female and male shares of New Zealand's 2020 population per age band
    (90+ pooled)."""
    wpp = un_wpp_2020("New_Zealand")
    bands = torch.cat([wpp[:18], wpp[18:].sum(0, keepdim=True)])
    return bands / bands.sum(1, keepdim=True)


class _DiscHomes:
    def __init__(self, x: Tensor, y: Tensor, radius: Tensor) -> None:
        self.x, self.y, self.radius = x, y, radius

    def __call__(self, area: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return sample_in_disc(self.x[area], self.y[area], self.radius[area], generator)
