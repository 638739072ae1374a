"""Shared access to the shipped data files (``data/SOURCES.md`` gives their sources and licences)."""

from __future__ import annotations

import csv
from importlib.resources import files
from pathlib import Path

import torch

DATA = Path(str(files("populace.scenarios.populations").joinpath("data")))


def read_csv(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as handle:
        return list(csv.DictReader(handle))


def un_wpp_2020(location: str) -> torch.Tensor:
    """``float64[21, 2]`` population by 5-year age group (0-4 … 100+) and sex (female, male), 2020,
    UN World Population Prospects 2024; ``location`` is ``United_States`` or ``New_Zealand``."""
    out = torch.zeros(21, 2, dtype=torch.float64)
    for row in read_csv("un_wpp2024_pop_by_age_sex_NZL_USA.csv"):
        if row["location"] == location and row["year"] == "2020":
            out[int(row["age_group_start"]) // 5, 0 if row["sex"] == "Female" else 1] += float(
                row["population"]
            )
    if out.sum() == 0:
        raise ValueError(f"location: no UN WPP rows for {location!r}")
    return out
