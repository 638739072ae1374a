"""New York City: 8.34 million residents of 177 modified ZIP code areas (MODZCTA) in 5 boroughs.

Inputs (``data/SOURCES.md``): MODZCTA populations and boroughs (NYC DOHMH), borough × age × sex ×
race/Hispanic-origin estimates for 1 July 2019 (US Census Bureau), MODZCTA polygons (NYC DOHMH).
The borough totals are the census estimates; the MODZCTA populations (which add up to 8.33 million)
distribute each borough's residents over its areas. Ethnicity has five classes: non-Hispanic White,
Black, Asian, Hispanic (any race), and the rest (other non-Hispanic groups: the census total minus the
four). Homes are placed uniformly inside each
area's polygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from populace.people import Residents
from populace.synth.geography import PolygonSet, lonlat_to_mercator
from populace.synth.pipeline import RegionSpec, synthesize
from populace.synth.recipes import Geography, PopulationRecipe

from ._data import DATA, read_csv

BOROUGHS = ("Bronx", "Brooklyn", "Manhattan", "Queens", "Staten Island")
ETHNICITIES = (
    "White non-Hispanic",
    "Black non-Hispanic",
    "Asian non-Hispanic",
    "Hispanic",
    "other non-Hispanic",
)
TOTALS = "nyc_modzcta_totals_pop_centroids.csv"
MARGINALS = "nyc_borough_pop_by_age_sex_2019.csv"
POLYGONS = "nyc_modzcta_2010.geo.json"

# Generator parameters. Sources are given; "approximate" marks figures rounded from the cited tables, not
# read from a shipped file.
HOUSEHOLD_SIZE = torch.tensor([0.32, 0.28, 0.16, 0.12, 0.06, 0.035, 0.025], dtype=torch.float64)
"""P(size = 1..7+): NYC households, American Community Survey 2019 1-year, table S2501 (approximate:
1 person 32%, 2 28%, 3 16%, 4+ 24%, the 4+ share split 12/6/3.5/2.5%); mean 2.52 against the ACS
average household size 2.63 (which also counts larger 7+ households)."""
SCHOOL_AGES = (5, 18)
"""Kindergarten to grade 12."""
SCHOOL_SIZE = 600
"""Pupils per school: NYC public schools enrol about 1.1 million pupils in about 1,800 schools (NYC DOE,
'DOE data at a glance', 2019–20; approximate)."""
WORK_AGES = (18, 65)
EMPLOYMENT_RATE = 0.70
"""Employed share of residents aged 18–64: about 4.0 million employed NYC residents (NYS DOL Local Area
Unemployment Statistics, 2019 annual average; approximate) over about 5.6 million residents aged 18–64
(census file above)."""
WORKPLACE_MEAN_SIZE = 16.0
"""Employees per establishment in the US: about 130 million employees in about 8 million establishments
(US Census Bureau, County Business Patterns 2019; approximate)."""
COMMUTE_SCALE_M = 8_000.0
"""Distance scale of the gravity model (Web Mercator metres, about 6 km on the ground at NYC's latitude);
an assumption: job locations are not in the shipped data, so jobs are attracted to areas by population."""
COMMUNITY_SIZE = 500
"""Residents per community place (a block of neighbouring homes within a MODZCTA); an assumption."""


class NewYorkCity(PopulationRecipe):
    name = "nyc"
    summary = "New York City, 8.34M residents in 177 MODZCTA areas of 5 boroughs (census 2019)"
    full_size = 8_336_817
    default_agents = 8_336_817
    version = "1"

    def inputs(self) -> Sequence[Path]:
        return [DATA / TOTALS, DATA / MARGINALS, DATA / POLYGONS]

    def geography(self) -> Geography:
        rows = read_csv(TOTALS)
        return Geography(
            areas=tuple(r["MODIFIED_ZCTA"] for r in rows),
            regions=BOROUGHS,
            area_region=torch.tensor([BOROUGHS.index(r["BOROUGH_GROUP"]) for r in rows]),
            ethnicities=ETHNICITIES,
        )

    def spec(self) -> RegionSpec:
        rows = read_csv(TOTALS)
        geography = self.geography()
        lon = torch.tensor([float(r["lon"]) for r in rows], dtype=torch.float64)
        lat = torch.tensor([float(r["lat"]) for r in rows], dtype=torch.float64)
        x, y = lonlat_to_mercator(lon, lat)
        population = torch.tensor([float(r["POP_DENOMINATOR"]) for r in rows], dtype=torch.float64)
        return RegionSpec(
            area_population=population,
            area_region=geography.area_region,
            area_xy=torch.stack([x, y], dim=1),
            cell_targets=borough_marginals(),
            band_start=torch.tensor([*range(0, 90, 5), 100]),
            household_size=HOUSEHOLD_SIZE,
            homes=_PolygonHomes(geography.areas),
            school_ages=SCHOOL_AGES,
            school_size=SCHOOL_SIZE,
            work_ages=WORK_AGES,
            employment_rate=EMPLOYMENT_RATE,
            workplace_mean_size=WORKPLACE_MEAN_SIZE,
            commute_scale_m=COMMUTE_SCALE_M,
            job_attraction=population,
            community_size=COMMUNITY_SIZE,
        )

    def build(self, agents: int, seed: int) -> Residents:
        return synthesize(self.spec(), agents, seed)

    def outlines(self) -> PolygonSet:
        """NYC DOHMH's MODZCTA polygons."""
        return modzcta_polygons()


def borough_marginals() -> Tensor:
    """``float64[5 boroughs, 18 age bands, 2 sexes, 5 ethnicities]`` residents, 1 July 2019."""
    out = torch.zeros(len(BOROUGHS), 18, 2, len(ETHNICITIES), dtype=torch.float64)
    for row in read_csv(MARGINALS):
        band = int(row["AGEGRP"])
        if band == 0:
            continue  # the all-ages total
        b = BOROUGHS.index(row["BOROUGH"])
        for s, sex in enumerate(("FEMALE", "MALE")):
            groups = [float(row[f"{g}_{sex}"]) for g in ("NHWA", "NHBA", "NHAA", "H")]
            other = float(row[f"TOT_{sex}"]) - sum(groups)
            out[b, band - 1, s] = torch.tensor([*groups, other], dtype=torch.float64)
    if (out < 0).any():
        raise ValueError(f"{MARGINALS}: the four groups exceed the total in some row")
    return out


@cache
def modzcta_polygons() -> PolygonSet:
    return PolygonSet.from_geojson(DATA / POLYGONS, "MODZCTA", drop=["99999"])


class _PolygonHomes:
    """Homes uniform inside each area's polygon; ``areas`` gives the order of the recipe's area indices."""

    def __init__(self, areas: Sequence[str]) -> None:
        polygons = modzcta_polygons()
        self.to_polygon = torch.tensor([polygons.index(a) for a in areas])

    def __call__(self, area: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        # float32 like Residents.x/y, so that the stored homes are inside too.
        return modzcta_polygons().sample(self.to_polygon[area], generator, dtype=torch.float32)
