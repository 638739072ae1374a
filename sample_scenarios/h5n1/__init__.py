"""``h5n1-fowl-to-fork``: HPAI H5N1 from wild birds to farms to the egg market, 2022–2025, in one
differentiable model that composes three paradigms in the same daily loop:

1. an ODE (:class:`~populace.layers.ode.ODE` with :class:`.wild.WildBirdPressure`): wild-bird infection
   pressure by state, mixed along the four migration flyways with a semi-annual migration cycle and
   forced by APHIS's wild-bird detections;
2. farm agents (:class:`~populace.layers.farms.PoultryFarms`): every US commercial layer, broiler and
   turkey farm (counts and flock sizes from the 2022 Census of Agriculture and APHIS's detected flock
   sizes, placed around the FSIS plants they supply, by county), infected by the wild-bird pressure of
   their state and by nearby infected farms (distance kernel), detected, culled and restocked;
3. a supply graph (:class:`~populace.layers.graph.SupplyGraph` and
   :class:`~populace.layers.graph.PriceResponse`): farms → the 484 FSIS poultry-slaughter and egg-products
   plants → the four Census-region markets; output lost to culls propagates, and a constant-elasticity
   demand curve gives the egg price and the losses in dollars.

Day 0 is 1 January 2022; the default run is 1,461 days (to 31 December 2025). ``--agents`` is the number
of commercial farms (default: all of them, ~14,000; fewer keep the kinds' proportions and scale the birds).
Gradients flow end to end: d(egg price)/d(migration rate) is one backward pass (``populace sensitivity``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import torch

from populace import Choice, Link, Model, Param, RandomStreams, Scenario, Shard
from populace.estimators import estimator
from populace.layers.farms import (
    BETA_ENV,
    BETA_FARM,
    DETECTION_MEAN,
    DETECTION_SD,
    KERNEL_ALPHA,
    KERNEL_R0,
    RESTOCK_PRICE_RESPONSE,
    RESTOCK_RATE,
    PoultryFarms,
)
from populace.layers.graph import ELASTICITY, PriceResponse, SupplyGraph
from populace.layers.ode import ODE

from .data import KINDS, START, build_network, farm_counts, observed_detections, wild_detections
from .geo import REGIONS
from .wild import (
    DECAY,
    MIGRATION_PEAK_DAY,
    MIGRATION_RATE,
    MIGRATION_SEASONALITY,
    SPILLOVER,
    WildBirdPressure,
)

__all__ = ["H5N1FowlToFork"]

EGG_BASE_PRICE = Param(
    1.79,
    (0.1, 20.0),
    "$/dozen",
    doc="Egg price with every flock producing: about $1.79 a dozen, the BLS average retail price of Grade A "
    "large eggs (series APU0000708111) in December 2021 (value recalled, not in the shipped data).",
)
RESTOCK_DAYS = {
    "layers": Param(
        150.0,
        (1.0, 730.0),
        "days",
        doc="Least time from culling to restocking a layer farm (cleaning, virus elimination, fallow, "
        "pullets of laying age). Assumed; with the restocking rate, about 180 days on average at base "
        "prices.",
    ),
    "broilers": Param(
        30.0, (1.0, 730.0), "days", doc="Least time from culling to restocking a broiler farm. Assumed."
    ),
    "turkeys": Param(
        60.0, (1.0, 730.0), "days", doc="Least time from culling to restocking a turkey farm. Assumed."
    ),
}


def _susceptibility() -> dict[str, Param]:
    """Relative hazard by kind: observed commercial detections per farm, relative to broilers (in-sample)."""
    counts = farm_counts()
    seen = dict.fromkeys(KINDS, 0)
    for _, _, kind in observed_detections():
        seen[kind] += 1
    per_farm = {k: seen[k] / counts.farms[k] for k in KINDS}
    out = {}
    for kind in KINDS:
        value = round(per_farm[kind] / per_farm["broilers"], 2)
        out[kind] = Param(
            value,
            (0.0, 1000.0),
            "relative hazard",
            doc=f"Hazard of a {kind} farm relative to a broiler farm: APHIS commercial detections per farm, "
            f"2022-2025 ({seen[kind]} detections / {counts.farms[kind]:,} farms), relative to broilers "
            "(in-sample: set from the data the model is compared with; to be calibrated).",
        )
    return out


class H5N1FowlToFork(Scenario):
    name = "h5n1-fowl-to-fork"
    summary = "H5N1 wild birds (ODE) -> farms (agents) -> plants and markets (graph): egg price, 2022-2025"
    default_agents = farm_counts().total
    default_days = (dt.date(2025, 12, 31) - START).days + 1
    default_outputs = ("mean:egg_price", "total:birds_culled")

    @classmethod
    def options(cls) -> dict[str, Param | Choice]:
        susceptibility = _susceptibility()
        return {
            "solver": Choice(
                "rk4", ("rk4", "dopri5"), "ODE solver: fixed-step RK4 or adaptive Dormand-Prince"
            ),
            "substeps": Param(4.0, (1.0, 96.0), "steps/day", doc="RK4 steps per day"),
            "estimator": Choice(
                "gumbel",
                ("smoothed", "gumbel"),
                "gradient estimator of the farm infection and restocking draws",
            ),
            "spillover": SPILLOVER,
            "decay": DECAY,
            "migration_rate": MIGRATION_RATE,
            "migration_seasonality": MIGRATION_SEASONALITY,
            "migration_peak_day": MIGRATION_PEAK_DAY,
            "beta_env": BETA_ENV,
            "beta_farm": BETA_FARM,
            "kernel_r0": KERNEL_R0,
            "kernel_alpha": KERNEL_ALPHA,
            "detection_mean": DETECTION_MEAN,
            "detection_sd": DETECTION_SD,
            **{f"susceptibility_{k}": v for k, v in susceptibility.items()},
            **{f"restock_days_{k}": v for k, v in RESTOCK_DAYS.items()},
            "restock_rate": RESTOCK_RATE,
            "restock_price_response": RESTOCK_PRICE_RESPONSE,
            "elasticity": ELASTICITY,
            "egg_base_price": EGG_BASE_PRICE,
        }

    def build(
        self,
        agents: int,
        options: Mapping[str, Param | Choice],
        *,
        seed: int,
        device: torch.device | str,
        shard: Shard | None = None,
    ) -> Model:
        opts = dict(options)

        def p(name: str) -> Param:
            value = opts[name]
            assert isinstance(value, Param)
            return value

        def c(name: str) -> str:
            value = opts[name]
            assert isinstance(value, Choice)
            return value.value

        streams = RandomStreams(seed, device)
        network = build_network(agents, streams)
        field = WildBirdPressure(
            wild_detections(self.default_days + 366),
            spillover=p("spillover"),
            decay=p("decay"),
            migration_rate=p("migration_rate"),
            migration_seasonality=p("migration_seasonality"),
            migration_peak_day=p("migration_peak_day"),
        )
        ode = ODE(field, solver=c("solver"), substeps=round(p("substeps").value), name="wild_pressure")
        farms = PoultryFarms(
            network.farms,
            Link(ode),
            susceptibility={k: p(f"susceptibility_{k}") for k in KINDS},
            restock_days={k: p(f"restock_days_{k}") for k in KINDS},
            beta_env=p("beta_env"),
            beta_farm=p("beta_farm"),
            kernel_r0=p("kernel_r0"),
            kernel_alpha=p("kernel_alpha"),
            detection_mean=p("detection_mean"),
            detection_sd=p("detection_sd"),
            restock_rate=p("restock_rate"),
            restock_price_response=p("restock_price_response"),
            estimator=estimator(c("estimator")),
        )
        graph = SupplyGraph(Link(farms), network.farms.capacity(), network.stages, network.farms.commodities)
        price = PriceResponse(
            Link(graph),
            "egg",
            base_price=p("egg_base_price"),
            weights=network.market_weights,
            markets=REGIONS,
            elasticity=p("elasticity"),
        )
        farms.respond_to(Link(price), ["layers"])  # egg prices speed the restocking of layer farms
        return Model([ode, farms, graph, price])
