"""Synthesising the residents of a region from census marginals: the generic pipeline.

Given a :class:`RegionSpec` (small-area totals, region-level age × sex × ethnicity marginals, household and
workplace parameters, a home-location sampler), :func:`synthesize` builds :class:`Residents`:

1. scale the area totals so that each region's areas add up to the region's census marginal (the
   marginals are authoritative; small-area estimates only distribute residents within a region), then to
   the requested size (largest remainder: exactly ``agents`` in total);
2. fit area × (age band, sex, ethnicity) counts by iterative proportional fitting to the area totals and
   the region marginals, and round them, keeping each area's total (:mod:`populace.synth.stages`);
3. one agent per count, with a single-year age uniform within its band; at small scales an area may draw
   only children, so one of them trades places (its whole age/sex/ethnicity cell) with an adult of a
   well-stocked area of the same region — area and region × cell totals stay exact;
4. households within each area, every household with an adult; agents are then stored household by
   household;
5. one home location per household (inside the area's polygon, or around its centroid);
6. schools (pupils of school age, by area), workplaces (employed adults, work area by a gravity model over
   area centroids, heavy-tailed workplace sizes within the work area), community places (neighbourhoods:
   groups of neighbouring homes within an area).

Every step draws from its own named stream, so the same seed gives the same population.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..people import Residents
from ..random import RandomStreams
from . import stages

__all__ = ["RegionSpec", "TooFewAgents", "morton_key", "scale_totals", "synthesize"]

ADULT_AGE = 18
"""Every household has a resident at least this old."""


class TooFewAgents(ValueError):
    """Too few agents for a population: an area drew residents but no adult, and its region has no adult
    to spare. ``works`` is a larger size that gives every area an adult with the same seed (``None`` if
    none was found)."""

    def __init__(self, agents: int, area: int, works: int | None) -> None:
        self.agents, self.area, self.works = agents, area, works
        super().__init__(self.describe("agents"))

    def describe(self, name: str) -> str:
        """The message, naming the argument ``name`` that gave the size (``--agents`` on the command line)."""
        way_out = f"{name} {self.works} works with this seed" if self.works else f"use a larger {name}"
        return (
            f"{name}: {self.agents} is too few for this population: area {self.area} would have residents "
            f"but no adult, and every area with residents needs one; {way_out}"
        )


HomeSampler = Callable[[Tensor, torch.Generator], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class RegionSpec:
    """What :func:`synthesize` needs about a region (full-scale numbers).

    Attributes:
        area_population: ``float64[areas]`` residents per small area.
        area_region: ``int64[areas]`` region of each area.
        area_xy: ``float64[areas, 2]`` area centroids in Web Mercator metres (commuting distances).
        cell_targets: ``float64[regions, bands, 2, ethnicities]`` residents by region, age band, sex
            (0 female, 1 male) and ethnicity.
        band_start: ``int64[bands + 1]`` first age of each band and, last, one past the oldest age.
        household_size: ``float64[K]`` P(household size = 1..K).
        homes: ``homes(area_of_household, generator) -> (x, y)`` home locations, metres.
        school_ages: pupils are ``school_ages[0] <= age < school_ages[1]``.
        school_size: pupils per school (schools are formed within an area).
        work_ages: workers are drawn from ``work_ages[0] <= age < work_ages[1]``.
        employment_rate: fraction of that age range employed.
        workplace_mean_size: mean employees per workplace.
        commute_scale_m: distance scale of the gravity model's exp(−d / scale).
        job_attraction: ``float64[areas]`` relative attraction of each area as a workplace.
        community_size: residents per community place.
        area_band_seed: ``float64[areas, bands]`` (optional) known residents per area and age band: the
            starting table of the fit, so area-level age structure survives (otherwise uniform).
    """

    area_population: Tensor
    area_region: Tensor
    area_xy: Tensor
    cell_targets: Tensor
    band_start: Tensor
    household_size: Tensor
    homes: HomeSampler
    school_ages: tuple[int, int]
    school_size: int
    work_ages: tuple[int, int]
    employment_rate: float
    workplace_mean_size: float
    commute_scale_m: float
    job_attraction: Tensor
    community_size: int
    area_band_seed: Tensor | None = None

    def __post_init__(self) -> None:
        areas = self.area_population.numel()
        regions, bands = self.cell_targets.shape[:2]
        checks = [
            (self.area_region.shape == (areas,), "area_region", f"[{areas}]"),
            (self.area_xy.shape == (areas, 2), "area_xy", f"[{areas}, 2]"),
            (self.job_attraction.shape == (areas,), "job_attraction", f"[{areas}]"),
            (self.band_start.shape == (bands + 1,), "band_start", f"[{bands + 1}]"),
            (
                self.cell_targets.dim() == 4 and self.cell_targets.shape[2] == 2,
                "cell_targets",
                "4-D, sex axis 2",
            ),
            (
                self.area_band_seed is None or self.area_band_seed.shape == (areas, bands),
                "area_band_seed",
                f"[{areas}, {bands}]",
            ),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ValueError(f"RegionSpec.{name}: expected shape {expected}")
        if int(self.area_region.max()) >= regions or int(self.area_region.min()) < 0:
            raise ValueError(f"RegionSpec.area_region: region indices must lie in [0, {regions})")
        if not 0 <= self.employment_rate <= 1:
            raise ValueError(f"RegionSpec.employment_rate: expected a fraction, got {self.employment_rate}")

    @property
    def total(self) -> float:
        """Residents at full scale: the sum of the region marginals."""
        return float(self.cell_targets.sum())

    def area_totals(self) -> Tensor:
        """``float64[areas]``: area populations scaled so each region's areas sum to its marginal."""
        regions = self.cell_targets.shape[0]
        by_region = torch.zeros(regions, dtype=torch.float64).index_add_(
            0, self.area_region.long(), self.area_population.double()
        )
        target = self.cell_targets.double().sum((1, 2, 3))
        if bool(((by_region == 0) & (target > 0)).any()):
            raise ValueError("RegionSpec.cell_targets: a region with residents has no populated area")
        factor = torch.where(by_region > 0, target / by_region.clamp(min=1e-300), 0.0)
        return self.area_population.double() * factor[self.area_region.long()]


def scale_totals(totals: Tensor, agents: int) -> Tensor:
    """``int64`` counts proportional to ``totals`` summing to exactly ``agents`` (largest remainder)."""
    share = totals.double() / totals.double().sum() * agents
    counts = share.floor().long()
    short = agents - int(counts.sum())
    if short:
        counts[torch.argsort(share - counts, descending=True, stable=True)[:short]] += 1
    return counts


def morton_key(x: Tensor, y: Tensor, bits: int = 16) -> Tensor:
    """``int64`` Z-order key of points: sorting by it keeps neighbouring points together."""

    def spread(v: Tensor) -> Tensor:
        v = v & 0xFFFF
        v = (v | (v << 8)) & 0x00FF00FF
        v = (v | (v << 4)) & 0x0F0F0F0F
        v = (v | (v << 2)) & 0x33333333
        return (v | (v << 1)) & 0x55555555

    def grid(v: Tensor) -> Tensor:
        lo, hi = v.min(), v.max()
        return ((v - lo) / (hi - lo).clamp(min=1e-9) * (2**bits - 1)).long()

    return spread(grid(x)) | (spread(grid(y)) << 1)


def _give_every_area_an_adult(
    area: Tensor, region: Tensor, attributes: tuple[Tensor, ...], adult_age: int, generator: torch.Generator
) -> None:
    """In place: for every area with residents but no adult, swap the attributes (``attributes[0]`` is the
    age) of one of its children with those of a random adult of the same region whose area keeps an adult."""
    age = attributes[0]
    adult = age >= adult_age
    n_areas = int(area.max()) + 1
    adults = torch.bincount(area[adult], minlength=n_areas)
    residents = torch.bincount(area, minlength=n_areas)
    for a in ((residents > 0) & (adults == 0)).nonzero().squeeze(1).tolist():
        child = int((area == a).nonzero()[0])
        donors = (adult & (region == region[child]) & (adults[area] >= 2)).nonzero().squeeze(1)
        if donors.numel() == 0:
            raise TooFewAgents(area.numel(), a, None)
        donor = int(donors[torch.randint(donors.numel(), (1,), generator=generator)])
        for values in attributes:
            values[child], values[donor] = values[donor].clone(), values[child].clone()
        adults[area[donor]] -= 1
        adults[a] += 1
        adult[child], adult[donor] = True, False


def _people(spec: RegionSpec, agents: int, streams: RandomStreams) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Steps 1-3: counts by area and cell, then one agent per count: ``(area, age, sex, ethnicity)``."""
    regions, bands, sexes, ethnicities = spec.cell_targets.shape

    area_total = scale_totals(spec.area_totals(), agents)
    scale = agents / spec.total
    seed_table = torch.ones(area_total.numel(), bands, sexes * ethnicities, dtype=torch.float64)
    if spec.area_band_seed is not None:
        seed_table = seed_table * spec.area_band_seed.double()[:, :, None]
    fitted = stages.ipf(
        seed_table.reshape(area_total.numel(), -1),
        area_total.double(),
        spec.cell_targets.reshape(regions, -1).double() * scale,
        spec.area_region.long(),
    )
    counts = stages.integerise(fitted, streams.generator("population.integerise"))
    area, cell = stages.expand(counts)
    band = cell // (sexes * ethnicities)
    sex = (cell // ethnicities) % sexes
    ethnicity = cell % ethnicities
    width = (spec.band_start[1:] - spec.band_start[:-1]).double()
    u = torch.rand(area.numel(), generator=streams.generator("population.age"), dtype=torch.float64)
    age = (spec.band_start[band] + (u * width[band]).long()).clamp(max=255)
    return area, age, sex, ethnicity


def _area_left_without_an_adult(spec: RegionSpec, area: Tensor, age: Tensor) -> int | None:
    """An area with residents that no swap can give an adult, or ``None``: the swaps of
    :func:`_give_every_area_an_adult` succeed exactly when each region has at least as many adults as
    areas with residents."""
    regions = spec.cell_targets.shape[0]
    n_areas = spec.area_population.numel()
    area_region = spec.area_region.long()
    residents = torch.bincount(area, minlength=n_areas)
    adults = torch.bincount(area[age >= ADULT_AGE], minlength=n_areas)
    populated = torch.bincount(area_region[residents > 0], minlength=regions)
    adults_by_region = torch.zeros(regions, dtype=torch.long).index_add_(0, area_region, adults)
    short = (adults_by_region < populated)[area_region] & (residents > 0) & (adults == 0)
    found = short.nonzero()
    return int(found[0]) if found.numel() else None


def _size_that_works(spec: RegionSpec, agents: int, seed: int, tries: int = 40) -> int | None:
    """The first of ``agents`` × 1.25, × 1.25², ... (two significant digits) at which every area with
    residents gets an adult with ``seed``, or ``None`` within ``tries``."""
    size = agents
    for _ in range(tries):
        size = max(size + 1, round(size * 1.25))
        digits = 10 ** max(len(str(size)) - 2, 0)
        size = -(-size // digits) * digits
        area, age, _, _ = _people(spec, size, RandomStreams(seed, "cpu"))
        if _area_left_without_an_adult(spec, area, age) is None:
            return size
    return None


def synthesize(spec: RegionSpec, agents: int, seed: int) -> Residents:
    """``agents`` residents of the region (scaled: same proportions and structure), on the CPU."""
    if agents < 1:
        raise ValueError(f"agents: expected a positive number, got {agents}")
    streams = RandomStreams(seed, "cpu")
    area, age, sex, ethnicity = _people(spec, agents, streams)
    lacking = _area_left_without_an_adult(spec, area, age)
    if lacking is not None:
        raise TooFewAgents(agents, lacking, _size_that_works(spec, agents, seed))

    _give_every_area_an_adult(
        area,
        spec.area_region.long()[area],
        (age, sex, ethnicity),
        ADULT_AGE,
        streams.generator("population.adult_swap"),
    )

    # 4. Households, then store agents household by household.
    household = stages.assign_households(
        age.to(torch.uint8),
        area,
        spec.household_size,
        streams.generator("population.households"),
        adult_age=ADULT_AGE,
    )
    order = torch.argsort(household, stable=True)
    area, age, sex, ethnicity, household = (
        area[order],
        age[order],
        sex[order],
        ethnicity[order],
        household[order],
    )

    # 5. Homes: one location per household.
    first = torch.ones_like(household, dtype=torch.bool)
    first[1:] = household[1:] != household[:-1]
    hx, hy = spec.homes(area[first], streams.generator("population.homes"))
    x, y = hx[household], hy[household]

    # 6. Schools, workplaces, community places.
    pupils = (age >= spec.school_ages[0]) & (age < spec.school_ages[1])
    school = stages.assign_groups(pupils, area, spec.school_size, streams.generator("population.schools"))
    working_age = (age >= spec.work_ages[0]) & (age < spec.work_ages[1])
    draw = torch.rand(area.numel(), generator=streams.generator("population.employment"), dtype=torch.float64)
    workers = working_age & (draw < spec.employment_rate)
    work_area = torch.full_like(area, -1)
    work_area[workers] = stages.commute(
        area[workers],
        spec.area_xy,
        spec.job_attraction,
        spec.commute_scale_m,
        streams.generator("population.commute"),
    )
    workplace_pool = stages.workplace_sizes(
        max(int(workers.sum()), 1), spec.workplace_mean_size, streams.generator("population.workplace_sizes")
    )
    work = stages.assign_groups(
        workers, work_area.clamp(min=0), workplace_pool, streams.generator("population.workplaces")
    )
    community = stages.assign_groups(
        torch.ones_like(workers),
        area,
        spec.community_size,
        streams.generator("population.community"),
        order=morton_key(x, y),
    )
    return Residents(
        area=area.to(torch.int16),
        region=spec.area_region[area].to(torch.uint8),
        age=age.to(torch.uint8),
        sex=sex.to(torch.uint8),
        ethnicity=ethnicity.to(torch.uint8),
        household=household.to(torch.int32),
        school=school.to(torch.int32),
        work=work.to(torch.int32),
        work_area=work_area.to(torch.int16),
        community=community.to(torch.int32),
        x=x.to(torch.float32),
        y=y.to(torch.float32),
    )
