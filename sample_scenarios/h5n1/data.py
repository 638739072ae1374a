"""The data of ``h5n1-fowl-to-fork`` (``data/SOURCES.md``) and the farms, plants and markets built from it.

* Farm counts: the 2022 Census of Agriculture's US inventory of each kind (layers, broilers, turkeys)
  divided by the mean flock size of the commercial flocks of that kind detected by APHIS (2022–2025), i.e.
  the number of commercial farms that holds the census birds at the detected flocks' mean size (assumes
  nearly all birds are on commercial farms). Flock sizes are lognormal with the detected flocks' mean and
  standard deviation, rescaled so that each kind's total equals its census inventory (× agents / default).
* Placement: there are no farm coordinates in the shipped data. Each farm is attached to a processing plant
  of the USDA FSIS directory — layers to plants with "Egg Products", turkeys to poultry-slaughter plants
  whose name marks them as turkey plants, broilers to the other poultry-slaughter plants — chosen with
  probability proportional to the plant's FSIS size class (Large 10, Small 3, Very Small 1, n/a 1;
  assumed), and placed around it with a 2-D normal offset of ``GROWER_RADIUS_KM`` per axis (growers
  contract with a plant within tens of km; assumed). A farm is in its plant's county and state (the
  plant's FIPS code), so farms are placed by county where plants are.
* Wild-bird forcing: APHIS wild-bird detections by state and collection day.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from populace import RandomStreams
from populace.layers.farms import Farms
from populace.layers.graph import Edges

from .geo import REGION_CENTRES, REGION_POPULATION, REGIONS, STATES, km

__all__ = [
    "DATA",
    "KINDS",
    "START",
    "FarmCounts",
    "Network",
    "build_network",
    "farm_counts",
    "observed_detections",
    "wild_detections",
]

DATA = Path(__file__).with_name("data")
START = dt.date(2022, 1, 1)
KINDS = ("layers", "broilers", "turkeys")
_CENSUS = {"layers": "ckn-layers", "broilers": "ckn-broilers", "turkeys": "turkeys"}
_APHIS = {"ckn-layers": "layers", "ckn-broilers": "broilers", "turkeys": "turkeys"}
COMMODITIES = ("egg", "chicken", "turkey")
EGGS_PER_HEN_DAY = 300 / 365
"""About 300 eggs per hen per year (USDA NASS Chickens and Eggs, rounded); eggs a layer lays a day."""
BROILER_CYCLE_DAYS = 63.0
"""Days per broiler flock: ~7 weeks grow-out + ~2 weeks clean-out (assumed); birds sold a day = size / 63."""
TURKEY_CYCLE_DAYS = 140.0
"""Days per turkey flock: ~16–20 weeks grow-out + clean-out (assumed)."""
GROWER_RADIUS_KM = 30.0
MARKET_DISTANCE_KM = 1000.0
"""Distance scale of the gravity shares plant -> regional market, exp(−d / 1000 km) (assumed)."""
_SIZE_WEIGHT = {"Large": 10.0, "Small": 3.0, "Very Small": 1.0}
_TURKEY = re.compile(r"turkey|butterball|jennie|cargill|dakota provisions", re.IGNORECASE)

_CODES = {s[0]: i for i, s in enumerate(STATES)}
_NAMES = {s[1]: i for i, s in enumerate(STATES)}


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True)
class FarmCounts:
    """Commercial farms of each kind at full scale, the census inventory, and the flock-size moments."""

    farms: dict[str, int]
    heads: dict[str, float]
    mean: dict[str, float]
    sd: dict[str, float]

    @property
    def total(self) -> int:
        return sum(self.farms.values())


@functools.cache
def farm_counts() -> FarmCounts:
    """See module docs (census heads / mean detected commercial flock size)."""
    heads = {
        kind: float(r["value"])
        for r in _rows("nass_agcensus2022_totals.csv")
        for kind, census in _CENSUS.items()
        if r["livestock"] == census
        and r["subtype"] == "all"
        and r["unit"] == "heads"
        and r["value_type"] == "state"
    }
    sizes: dict[str, list[float]] = {k: [] for k in KINDS}
    for r in _rows("aphis_hpai_poultry_detections_us.csv"):
        kind = _APHIS.get(r["type"])
        if kind and r["commercial"] == "True" and float(r["heads"]) > 0:
            sizes[kind].append(float(r["heads"]))
    mean = {k: sum(v) / len(v) for k, v in sizes.items()}
    sd = {k: math.sqrt(sum((x - mean[k]) ** 2 for x in v) / (len(v) - 1)) for k, v in sizes.items()}
    farms = {k: round(heads[k] / mean[k]) for k in KINDS}
    return FarmCounts(farms=farms, heads=heads, mean=mean, sd=sd)


def day_of(text: str) -> int:
    """Days from :data:`START` of an ISO date."""
    return (dt.date.fromisoformat(text[:10]) - START).days


@functools.cache
def wild_detections(days: int) -> torch.Tensor:
    """``float32[days + 2, states]``: APHIS wild-bird HPAI detections by collection day and state (rows
    past the data are 0; detections before day 0 are dropped)."""
    out = torch.zeros(days + 2, len(STATES))
    for r in _rows("aphis_hpai_wild_birds_us.csv"):
        day, state = day_of(r["collection_date"]), _NAMES.get(r["state"])
        if state is not None and 0 <= day < days + 2:
            out[day, state] += 1
    return out


def observed_detections() -> list[tuple[int, str, str]]:
    """Confirmed commercial flock detections of layers, broilers and turkeys: ``(day, state code, kind)``."""
    codes = {s[1]: s[0] for s in STATES}
    out = []
    for r in _rows("aphis_hpai_poultry_detections_us.csv"):
        if r["commercial"] == "True" and r["type"] in _APHIS and r["state"] in codes:
            out.append((day_of(r["start_date"]), codes[r["state"]], _APHIS[r["type"]]))
    return out


@dataclass(frozen=True)
class Plant:
    name: str
    state: int
    county: str
    x: float
    y: float
    lat: float
    lon: float
    weight: float
    egg: bool
    slaughter: bool
    turkey: bool


@functools.cache
def plants() -> tuple[Plant, ...]:
    """The FSIS poultry-slaughter and egg-products plants in the 50 states and DC."""
    out = []
    for r in _rows("fsis_mpi_poultry_slaughter_egg_establishments_us.csv"):
        state = _CODES.get(r["state"])
        if state is None or not r["latitude"]:
            continue
        lat, lon = float(r["latitude"]), float(r["longitude"])
        x, y = km(lat, lon)
        slaughter = "Poultry Slaughter" in r["activities"]
        out.append(
            Plant(
                name=r["establishment_name"],
                state=state,
                county=r["fips_code"],
                x=x,
                y=y,
                lat=lat,
                lon=lon,
                weight=_SIZE_WEIGHT.get(r["size"], 1.0),
                egg="Egg Products" in r["activities"],
                slaughter=slaughter,
                turkey=slaughter and bool(_TURKEY.search(r["establishment_name"])),
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class Network:
    """Farms, the farm -> plant -> market supply graph and the market weights."""

    farms: Farms
    plant_of_farm: torch.Tensor
    stages: tuple[Edges, Edges]
    market_weights: torch.Tensor
    plants: tuple[Plant, ...]


def _hosts(kind: str, all_plants: tuple[Plant, ...]) -> list[int]:
    if kind == "layers":
        return [i for i, p in enumerate(all_plants) if p.egg]
    if kind == "turkeys":
        return [i for i, p in enumerate(all_plants) if p.turkey]
    return [i for i, p in enumerate(all_plants) if p.slaughter and not p.turkey]


def build_network(agents: int, streams: RandomStreams) -> Network:
    """``agents`` farms (kinds in census proportions) and their supply graph (see module docs)."""
    counts = farm_counts()
    scale = agents / counts.total
    n_kind = {k: round(counts.farms[k] * scale) for k in KINDS}
    n_kind["broilers"] += agents - sum(n_kind.values())  # exact total
    all_plants = plants()
    px = torch.tensor([p.x for p in all_plants])
    py = torch.tensor([p.y for p in all_plants])
    pstate = torch.tensor([p.state for p in all_plants])
    kinds, hosts, sizes = [], [], []
    for k_index, kind in enumerate(KINDS):
        n = n_kind[kind]
        if n <= 0:
            continue
        eligible = torch.tensor(_hosts(kind, all_plants))
        weight = torch.tensor([all_plants[i].weight for i in eligible.tolist()])
        gen = streams.generator(f"h5n1.host.{kind}")
        pick = torch.multinomial(weight.to(streams.device), n, replacement=True, generator=gen).cpu()
        hosts.append(eligible[pick])
        kinds.append(torch.full((n,), k_index))
        mean, sd = counts.mean[kind], counts.sd[kind]
        raw = streams.lognormal(f"h5n1.size.{kind}", n, mean, sd).cpu().to(torch.float64)
        sizes.append((raw * counts.heads[kind] * n / counts.farms[kind] / raw.sum()).round().clamp(min=1))
    host = torch.cat(hosts)
    gen = streams.generator("h5n1.offset")
    offset = torch.randn(2, len(host), generator=gen, device=streams.device).cpu()
    rate = torch.zeros(len(KINDS), len(COMMODITIES))
    rate[0, 0] = EGGS_PER_HEN_DAY / 12  # dozens
    rate[1, 1] = 1 / BROILER_CYCLE_DAYS
    rate[2, 2] = 1 / TURKEY_CYCLE_DAYS
    state = pstate[host]
    farms = Farms(
        x=(px[host] + GROWER_RADIUS_KM * offset[0]).float(),
        y=(py[host] + GROWER_RADIUS_KM * offset[1]).float(),
        kind=torch.cat(kinds),
        size=torch.cat(sizes).float(),
        region=state,
        group=state,
        kinds=KINDS,
        groups=tuple(s[0] for s in STATES),
        output_rate=rate,
        commodities=COMMODITIES,
    )
    n_plants = len(all_plants)
    to_plants = Edges(torch.arange(len(host)), host, torch.ones(len(host)), len(host), n_plants)
    src, dst, share = [], [], []
    pop = torch.tensor([REGION_POPULATION[r] for r in REGIONS], dtype=torch.float64)
    for i, p in enumerate(all_plants):
        gravity = []
        for r in REGIONS:
            cx, cy = km(*REGION_CENTRES[r])
            gravity.append(math.exp(-math.hypot(p.x - cx, p.y - cy) / MARKET_DISTANCE_KM))
        w = pop * torch.tensor(gravity, dtype=torch.float64)
        w = w / w.sum()
        src += [i] * len(REGIONS)
        dst += list(range(len(REGIONS)))
        share += w.tolist()
    to_markets = Edges(
        torch.tensor(src), torch.tensor(dst), torch.tensor(share, dtype=torch.float32), n_plants, len(REGIONS)
    )
    return Network(
        farms=farms,
        plant_of_farm=host,
        stages=(to_plants, to_markets),
        market_weights=pop.float(),
        plants=all_plants,
    )
