"""A classroom town: a small synthetic town (20,000 residents by default) for workshops and tests.

Sixteen 800 m × 800 m neighbourhoods on a 4 × 4 grid, grouped into four districts; the centre is denser.
The town is fictional and sits on "Null Island" (longitude 0, latitude 0 in Web Mercator). Ages and sexes
follow the 2020 United States population (UN World Population Prospects 2024); households, schools and
workplaces use US-like parameters. It builds in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from populace.people import Residents
from populace.synth.geography import PolygonSet
from populace.synth.pipeline import RegionSpec, synthesize
from populace.synth.recipes import Geography, PopulationRecipe

from ._data import DATA, un_wpp_2020
from .nyc import HOUSEHOLD_SIZE as US_CITY_HOUSEHOLD_SIZE

GRID = 4
BLOCK_M = 800.0
DISTRICTS = ("north-west", "north-east", "south-west", "south-east")
SCHOOL_SIZE = 300
"""Pupils per school in a small town; an assumption."""
EMPLOYMENT_RATE = 0.72
"""Employed share of 18–64-year-olds in the US, 2019 (about 72%, BLS; approximate)."""
WORKPLACE_MEAN_SIZE = 16.0
"""US employees per establishment (County Business Patterns 2019; approximate)."""


class ClassroomTown(PopulationRecipe):
    name = "classroom"
    summary = "A fictional town of 16 neighbourhoods, 20,000 residents by default (US-like ages)"
    full_size = 20_000
    default_agents = 20_000
    version = "1"

    def inputs(self) -> Sequence[Path]:
        return [DATA / "un_wpp2024_pop_by_age_sex_NZL_USA.csv"]

    def geography(self) -> Geography:
        rows, cols = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        district = (rows.flatten() // 2) * 2 + cols.flatten() // 2
        return Geography(
            areas=tuple(f"N{r}{c}" for r in range(GRID) for c in range(GRID)),
            regions=DISTRICTS,
            area_region=district,
        )

    def outlines(self) -> PolygonSet:
        squares = []
        for r in range(GRID):
            for c in range(GRID):
                x0, y0 = (c - GRID / 2) * BLOCK_M, (GRID / 2 - r - 1) * BLOCK_M
                ring = torch.tensor(
                    [[x0, y0], [x0 + BLOCK_M, y0], [x0 + BLOCK_M, y0 + BLOCK_M], [x0, y0 + BLOCK_M]],
                    dtype=torch.float64,
                )
                squares.append(((ring,),))
        return PolygonSet(self.geography().areas, tuple(squares))

    def spec(self) -> RegionSpec:
        geography = self.geography()
        polygons = self.outlines()
        bounds = polygons.bounds()
        centre = torch.stack([(bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2], dim=1)
        # Denser in the middle: weight 3 for the four central blocks, 1 at the edge.
        population = 1.0 + 2.0 * (centre.abs().max(dim=1).values < BLOCK_M).double()
        wpp = un_wpp_2020("United_States")
        bands = torch.cat([wpp[:17], wpp[17:].sum(0, keepdim=True)])  # 0-4 … 80-84, 85+
        shares = bands / bands.sum()
        by_region = torch.zeros(len(DISTRICTS), dtype=torch.float64).index_add_(
            0, geography.area_region, population
        )
        return RegionSpec(
            area_population=population.double(),
            area_region=geography.area_region,
            area_xy=centre,
            cell_targets=by_region[:, None, None, None] * shares[None, :, :, None],
            band_start=torch.tensor([*range(0, 90, 5), 100]),
            household_size=US_CITY_HOUSEHOLD_SIZE,
            homes=lambda area, generator: polygons.sample(area, generator, dtype=torch.float32),
            school_ages=(5, 18),
            school_size=SCHOOL_SIZE,
            work_ages=(18, 65),
            employment_rate=EMPLOYMENT_RATE,
            workplace_mean_size=WORKPLACE_MEAN_SIZE,
            commute_scale_m=1_500.0,
            job_attraction=population.double(),
            community_size=250,
        )

    def build(self, agents: int, seed: int) -> Residents:
        return synthesize(self.spec(), agents, seed)
