"""Synthetic-population recipes and their cache.

A :class:`PopulationRecipe` builds :class:`~populace.people.Residents` for a region from shipped data.
Recipes are discovered through the ``populace.populations`` entry-point group (so ``core`` never imports
one). :func:`load_population` reuses a cached build when one exists for the same recipe version, input
data, size and seed — the *content key* — and rebuilds when the cache is missing, stale (another key) or
damaged (its checksum fails); a damaged file is never used.

The cache lives in ``$POPULACE_CACHE`` (default ``~/.cache/populace``), under ``populations/``.
"""

from __future__ import annotations

import abc
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from ..people import Residents
from ..plugins import find, installed
from ..population import FORMAT_VERSION, PopulationFileError
from .geography import PolygonSet

GROUP = "populace.populations"

__all__ = [
    "Geography",
    "LoadedPopulation",
    "PopulationRecipe",
    "cache_dir",
    "cache_key",
    "describe",
    "find_recipe",
    "load_population",
    "recipes",
]


@dataclass(frozen=True)
class Geography:
    """Names behind the indices of :class:`Residents`.

    Attributes:
        areas: small-area names (``Residents.area`` indexes them).
        regions: region names (``Residents.region``).
        area_region: ``int64[areas]``, the region of each area.
        ethnicities: ethnicity names (``Residents.ethnicity``).
        area_names: the areas' names for a reader where ``areas`` are codes (New Zealand's SA2 codes), in
            the order of ``areas``; empty where ``areas`` are the names.
    """

    areas: tuple[str, ...]
    regions: tuple[str, ...]
    area_region: torch.Tensor
    ethnicities: tuple[str, ...] = ("all",)
    area_names: tuple[str, ...] = ()


class PopulationRecipe(abc.ABC):
    """How to build the residents of one region."""

    name: ClassVar[str]
    summary: ClassVar[str]
    full_size: ClassVar[int]
    """Agents of the full-scale population (its census total)."""
    default_agents: ClassVar[int]
    version: ClassVar[str]
    """Bump whenever the generator's output changes: it is part of the cache key."""

    @abc.abstractmethod
    def inputs(self) -> Sequence[Path]:
        """The data files the build reads (their bytes enter the cache key)."""

    @abc.abstractmethod
    def geography(self) -> Geography: ...

    def outlines(self) -> PolygonSet | None:
        """The small areas' outlines (ids: :attr:`Geography.areas`) in Web Mercator metres, for maps;
        ``None`` where the data has none."""
        return None

    @abc.abstractmethod
    def build(self, agents: int, seed: int) -> Residents:
        """``agents`` residents (the population scaled to that size, same structure), on the CPU."""


def recipes() -> dict[str, type[PopulationRecipe]]:
    """Installed recipes by name."""
    return installed(GROUP)


def find_recipe(name: str) -> type[PopulationRecipe]:
    """The recipe ``name``; ``LookupError`` lists the installed ones."""
    recipe: type[PopulationRecipe] = find(GROUP, name, "population")
    return recipe


def cache_dir() -> Path:
    return Path(os.environ.get("POPULACE_CACHE", "~/.cache/populace")).expanduser() / "populations"


def cache_key(recipe: PopulationRecipe, agents: int, seed: int) -> str:
    """SHA-256 over the recipe name and version, file format, size, seed and the bytes of every input."""
    digest = hashlib.sha256(f"{recipe.name}|{recipe.version}|{FORMAT_VERSION}|{agents}|{seed}".encode())
    for path in sorted(recipe.inputs()):
        digest.update(f"|{Path(path).name}|".encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class LoadedPopulation:
    """A population and where it came from."""

    people: Residents
    path: Path
    key: str
    source: Literal["cache", "built", "rebuilt"]
    seconds: float


def load_population(
    recipe: PopulationRecipe,
    agents: int | None = None,
    seed: int = 0,
    *,
    rebuild: bool = False,
    log: Callable[[str], None] | None = None,
) -> LoadedPopulation:
    """The cached population for (recipe, agents, seed), built and cached first if needed.

    A cache file with another key is stale and a file that fails its checksum is damaged: both are rebuilt
    (and ``log`` is told why), never used.
    """
    agents = recipe.default_agents if agents is None else agents
    if agents < 1:
        raise ValueError(f"agents: expected a positive number, got {agents}")
    key = cache_key(recipe, agents, seed)
    path = cache_dir() / f"{recipe.name}-{agents}-seed{seed}.safetensors"
    start = time.perf_counter()
    source: Literal["cache", "built", "rebuilt"] = "built"
    if path.exists() and not rebuild:
        try:
            if Residents.read_metadata(path).get("cache_key") != key:
                raise PopulationFileError(
                    f"{path}: stale (built from other data or another generator version)"
                )
            people = Residents.load(path)
            return LoadedPopulation(people, path, key, "cache", time.perf_counter() - start)
        except PopulationFileError as exc:
            if log is not None:
                log(f"rebuilding the {recipe.name} population: {exc}")
            source = "rebuilt"
    people = recipe.build(agents, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    people.save(
        path, metadata={"cache_key": key, "recipe": recipe.name, "agents": str(agents), "seed": str(seed)}
    )
    return LoadedPopulation(people, path, key, source, time.perf_counter() - start)


def _sizes(place: torch.Tensor) -> torch.Tensor:
    """Members per place (``place`` = index per agent, ``-1`` = none), for places with members."""
    members = place[place >= 0].long()
    counts = torch.bincount(members) if members.numel() else members.new_zeros(0)
    return counts[counts > 0]


def _summary(sizes: torch.Tensor) -> dict[str, float | int]:
    if sizes.numel() == 0:
        return {"count": 0, "members": 0}
    q = torch.quantile(sizes.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return {
        "count": int(sizes.numel()),
        "members": int(sizes.sum()),
        "mean": round(float(sizes.double().mean()), 2),
        "p10": float(q[0]),
        "median": float(q[1]),
        "p90": float(q[2]),
        "max": int(sizes.max()),
    }


def describe(people: Residents, geography: Geography) -> dict:
    """Totals by region and area, the age pyramid, and household, school, workplace and community sizes."""
    n = people.n
    region_counts = torch.bincount(people.region.long(), minlength=len(geography.regions))
    area_counts = torch.bincount(people.area.long(), minlength=len(geography.areas))
    band = (people.age.long() // 5).clamp(max=17)
    pyramid = torch.zeros(18, 2, dtype=torch.int64)
    pyramid.index_put_((band, people.sex.long()), torch.ones(n, dtype=torch.int64), accumulate=True)
    household = people.household.long()
    household_size = torch.bincount(household)
    adults = torch.bincount(household, weights=(people.age >= 18).double()).long()
    size_hist = torch.bincount(household_size.clamp(max=7), minlength=8)[1:]
    working_age = (people.age >= 18) & (people.age < 65)
    return {
        "agents": n,
        "bytes_per_agent": round(people.nbytes() / n, 2),
        "regions": {name: int(c) for name, c in zip(geography.regions, region_counts, strict=True)},
        "areas": {name: int(c) for name, c in zip(geography.areas, area_counts, strict=True)},
        "age_pyramid": [
            {"band": f"{5 * b}-{5 * b + 4}" if b < 17 else "85+", "female": int(f), "male": int(m)}
            for b, (f, m) in enumerate(pyramid.tolist())
        ],
        "households": {
            "count": int(household_size.numel()),
            "mean_size": round(n / household_size.numel(), 3),
            "size_distribution": {(str(k + 1) if k < 6 else "7+"): int(c) for k, c in enumerate(size_hist)},
            "without_adult": int((adults == 0).sum()),
        },
        "schools": _summary(_sizes(people.school)),
        "workplaces": _summary(_sizes(people.work)),
        "employment_rate_18_64": round(float((people.work[working_age] >= 0).double().mean()), 4)
        if bool(working_age.any())
        else 0.0,
        "community_places": _summary(_sizes(people.community)),
    }
