"""Farm agents: flocks that are infected from an environmental pressure and from nearby infected farms,
detected, culled and restocked. Agents are farms (no people), with integer states.

Each farm is susceptible (S), infected and not yet detected (I), or depopulated (D: culled, cleaned and
waiting to restock). A day:

1. farms whose detection day is today are detected: the whole flock is culled (``birds_culled``) and the
   farm stays empty, producing nothing, for at least ``restock_days_<kind>`` (cleaning, disinfection,
   fallow); after that it restocks (S, with a fresh infection threshold) with daily probability
   1 − exp(−r · ρ^η): r = ``restock_rate``, ρ the price of the kind's product relative to its base (read
   from a linked :class:`~populace.layers.graph.PriceResponse`, yesterday's; 1 for kinds without one), η =
   ``restock_price_response`` — high prices speed repopulation;
2. infection: the hazard of susceptible farm i is
   λ_i = σ_kind(i) · (β_env · pressure[region_i] + β_farm · Σ_{j in I} K(d_ij)),
   K(d) = 1 / (1 + (d/r₀)^α) the transmission kernel of Boender et al. (2007); ``pressure`` is read from a
   linked layer's state ``y`` (e.g. an :class:`~populace.layers.ode.ODE` of wild-bird infection pressure).
   Infection uses the Sellke construction of :mod:`populace.layers.seir`: a farm is infected on the first
   day its accumulated hazard since (re)stocking reaches an Exp(1) threshold — exactly the daily Bernoulli
   model with p = 1 − exp(−λ), with common random numbers across parameter values. Newly infected farms
   get a detection delay (lognormal, drawn from the ``farms.detection`` stream of the day);
3. output: each stocked farm produces ``size × output_rate[kind]`` of each commodity a day (``output``,
   read by :class:`~populace.layers.graph.SupplyGraph`).

Transmission is the infection core's (:class:`~populace.layers.infection.Infection`): the kernel is a
contact setting (:class:`~populace.contacts.DistanceKernel`, over today's infected farms only: exact
distances, no grid), the environment an external hazard. In differentiable mode the infection draw goes
through the layer's estimator (:mod:`populace.estimators`; forward: the exact sample): ``weight:
float32[farms]`` is 1 for farms infected since their last restock and carries the derivative of that
infection to their onward transmission and to the birds culled when they are detected; ``stocked:
float32[farms]`` is 1 for farms with birds and carries the derivatives of culling (−infected) and of the
restocking draw (a second sampler), so output lost while a farm is empty, and the risk of a farm restocked
early, depend on every parameter upstream, the demand elasticity included. Fast mode keeps ``uint8``
status, ``int32`` due days and ``float32`` thresholds, updated in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import torch

from populace.aggregation import Aggregation
from populace.contacts import DistanceKernel
from populace.estimators import Estimator
from populace.model import Link, StepContext
from populace.params import Param, register_param

from .effects import Effects
from .infection import Infection, InfectionState

__all__ = ["FarmState", "FarmStatus", "Farms", "PoultryFarms"]


class FarmStatus(IntEnum):
    """Status of a farm (stored as ``uint8``)."""

    S = 0
    I = 1  # noqa: E741
    D = 2


@dataclass(frozen=True)
class Farms:
    """The static attributes of farm agents (``farms`` = their number).

    Attributes:
        x, y: ``float32[farms]`` position in km (any planar projection).
        kind: ``int64[farms]`` index into ``kinds`` (e.g. layers, broilers, turkeys).
        size: ``float32[farms]`` birds on the farm when stocked.
        region: ``int64[farms]`` index into the environmental pressure vector.
        group: ``int64[farms]`` index into ``groups``, the reporting unit (e.g. state).
        kinds, groups: names.
        output_rate: ``float32[kinds, commodities]`` output per bird per day.
        commodities: names of the output columns.
    """

    x: torch.Tensor
    y: torch.Tensor
    kind: torch.Tensor
    size: torch.Tensor
    region: torch.Tensor
    group: torch.Tensor
    kinds: tuple[str, ...]
    groups: tuple[str, ...]
    output_rate: torch.Tensor
    commodities: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.x)
        for name in ("y", "kind", "size", "region", "group"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Farms.{name}: {len(getattr(self, name))} values for {n} farms")
        if n and (int(self.kind.max()) >= len(self.kinds) or int(self.group.max()) >= len(self.groups)):
            raise ValueError("Farms: a kind or group index is out of range")
        if self.output_rate.shape != (len(self.kinds), len(self.commodities)):
            raise ValueError(
                f"Farms.output_rate: expected shape ({len(self.kinds)}, {len(self.commodities)})"
            )

    @property
    def n(self) -> int:
        return len(self.x)

    def capacity(self) -> torch.Tensor:
        """``float32[farms, commodities]``: daily output with every farm stocked."""
        return self.size.unsqueeze(1) * self.output_rate[self.kind]


BETA_ENV = Param(
    1.2e-6,
    (0.0, 1.0),
    "1/day per unit of pressure",
    learnable=True,
    doc="Infection hazard of a farm per unit of environmental pressure. Set by hand (in-sample) so that the "
    "h5n1-fowl-to-fork default run has as many detections as observed (766 commercial layer, broiler and "
    "turkey flocks, APHIS 2022-2025); to be calibrated.",
)
BETA_FARM = Param(
    0.002,
    (0.0, 1.0),
    "1/day",
    learnable=True,
    doc="Farm-to-farm transmission hazard at distance 0, h0 of the kernel h0/(1+(d/r0)^alpha): 0.0020/day "
    "estimated for H7N7 in the Netherlands, 2003 (Boender et al. 2007, PLoS Comput Biol 3:e71).",
)
KERNEL_R0 = Param(1.9, (0.1, 100.0), "km", doc="Kernel distance scale r0: 1.9 km (Boender et al. 2007).")
KERNEL_ALPHA = Param(
    2.1, (0.5, 6.0), "dimensionless", doc="Kernel exponent alpha: 2.1 (Boender et al. 2007)."
)
DETECTION_MEAN = Param(
    5.0,
    (1.0, 60.0),
    "days",
    doc="Mean time from infection to detection (lognormal). Assumed: HPAI kills galliform flocks within "
    "days and producers must report sudden mortality.",
)
DETECTION_SD = Param(2.0, (0.0, 60.0), "days", doc="Standard deviation of the detection delay. Assumed.")
RESTOCK_RATE = Param(
    1 / 30,
    (0.0, 10.0),
    "1/day",
    doc="Daily rate of restocking once the fallow period is over, at base prices (mean wait 30 days). "
    "Assumed.",
)
RESTOCK_PRICE_RESPONSE = Param(
    1.0,
    (0.0, 10.0),
    "dimensionless",
    doc="Exponent η of the relative price in the restocking rate (1: twice the price, twice as fast). "
    "Assumed.",
)


@dataclass
class FarmState(InfectionState):
    """State of :class:`PoultryFarms`: the infection core's
    (:class:`~populace.layers.infection.InfectionState`: ``stage`` is a :class:`FarmStatus`; ``due`` the
    detection day of I farms and the restocking day of D farms; ``weight`` 1 for farms infected since their
    last restock) and

    Attributes:
        stocked: ``float32[farms]`` (differentiable mode only): 1 for farms with birds, carrying the
            derivatives of culling and restocking; ``None`` in fast mode.
        output: ``float32[farms, commodities]`` today's output.
        detections, birds_culled: ``[]`` today's; ``detections_by_group``: ``[groups]``;
            ``culled_by_kind``: ``[kinds]`` birds.
    """

    stocked: torch.Tensor | None
    output: torch.Tensor
    detections: torch.Tensor
    birds_culled: torch.Tensor
    detections_by_group: torch.Tensor
    culled_by_kind: torch.Tensor


class PoultryFarms(Infection):
    """Farm agents infected by environmental pressure and by a distance kernel (see module docs).

    Args:
        farms: the farms.
        pressure: link to the layer whose state ``y`` is the environmental pressure by region.
        susceptibility: one spec per kind (relative hazard, ``susceptibility_<kind>``).
        restock_days: one spec per kind (days from culling to restocking, ``restock_days_<kind>``).
        restock_rate, restock_price_response: restocking after the fallow period (see module docs).
        beta_env, beta_farm, kernel_r0, kernel_alpha, detection_mean, detection_sd: specs (defaults cited).
        estimator: gradient estimator of the infection and restocking draws (:mod:`populace.estimators`;
            default ``Smoothed()``).
        aggregation: how emissions are summed (:mod:`populace.aggregation`).

    Call :meth:`respond_to` to link the restocking of some kinds to a price.
    """

    name = "farms"
    infected_stage = FarmStatus.I
    infectious = (FarmStatus.I, FarmStatus.I)
    beta_env: torch.Tensor
    beta_farm: torch.Tensor
    restock_rate: torch.Tensor
    restock_price_response: torch.Tensor

    def __init__(
        self,
        farms: Farms,
        pressure: Link[Any],
        *,
        susceptibility: Mapping[str, Param],
        restock_days: Mapping[str, Param],
        beta_env: Param = BETA_ENV,
        beta_farm: Param = BETA_FARM,
        kernel_r0: Param = KERNEL_R0,
        kernel_alpha: Param = KERNEL_ALPHA,
        detection_mean: Param = DETECTION_MEAN,
        detection_sd: Param = DETECTION_SD,
        restock_rate: Param = RESTOCK_RATE,
        restock_price_response: Param = RESTOCK_PRICE_RESPONSE,
        estimator: Estimator | None = None,
        aggregation: Aggregation | None = None,
    ) -> None:
        for what, specs in (("susceptibility", susceptibility), ("restock_days", restock_days)):
            if set(specs) != set(farms.kinds):
                raise ValueError(f"{what}: expected one spec per kind {farms.kinds}, got {sorted(specs)}")
        kernel = DistanceKernel("kernel", farms.x, farms.y, r0=kernel_r0, alpha=kernel_alpha)
        super().__init__(farms.n, [kernel], estimator=estimator, aggregation=aggregation)
        self.farms = farms
        self.pressure = pressure
        self.register_buffer("farm_size", farms.size.to(torch.float32))
        for name, tensor in (("kind", farms.kind), ("region", farms.region), ("group", farms.group)):
            self.register_buffer(f"farm_{name}", tensor.to(torch.int64))
        self.register_buffer("capacity", farms.capacity().to(torch.float32))
        register_param(self, "beta_env", beta_env)
        register_param(self, "beta_farm", beta_farm)
        register_param(self, "restock_rate", restock_rate)
        register_param(self, "restock_price_response", restock_price_response)
        self.market: Link[Any] | None = None
        self.register_buffer("market_kind", torch.zeros(len(farms.kinds), dtype=torch.bool))
        for kind in farms.kinds:
            register_param(self, f"susceptibility_{kind}", susceptibility[kind])
        self.restock = torch.tensor([restock_days[k].value for k in farms.kinds]).round().to(torch.int32)
        self.detection = (detection_mean.value, detection_sd.value)
        for kind in farms.kinds:
            self.param_specs[f"restock_days_{kind}"] = restock_days[kind]
        self.param_specs.update(detection_mean=detection_mean, detection_sd=detection_sd)

    def respond_to(self, market: Link[Any], kinds: Sequence[str]) -> None:
        """Restock farms of ``kinds`` at a rate that grows with ``market``'s relative price (its state's
        ``relative``, e.g. :class:`~populace.layers.graph.PriceResponse`)."""
        unknown = [k for k in kinds if k not in self.farms.kinds]
        if unknown:
            raise ValueError(f"kinds: {unknown} are not kinds of these farms {self.farms.kinds}")
        self.market = market
        market_kind: torch.Tensor = self.market_kind
        market_kind.copy_(torch.tensor([k in kinds for k in self.farms.kinds]))

    # ------------------------------------------------------------------ reporting
    def observables(self) -> tuple[str, ...]:
        return (
            "farms_infected",
            "farms_depopulated",
            "new_farm_infections",
            "detections",
            "birds_culled",
            "detections_by_state",
            "birds_culled_by_kind",
        )

    def labels(self) -> dict[str, tuple[str, ...]]:
        return {"detections_by_state": self.farms.groups, "birds_culled_by_kind": self.farms.kinds}

    def observe(self, state: FarmState) -> dict[str, torch.Tensor]:
        c = state.counts.clone()
        return {
            "farms_infected": c[FarmStatus.I],
            "farms_depopulated": c[FarmStatus.D],
            "new_farm_infections": state.incidence.clone(),
            "detections": state.detections.clone(),
            "birds_culled": state.birds_culled.clone(),
            "detections_by_state": state.detections_by_group.clone(),
            "birds_culled_by_kind": state.culled_by_kind.clone(),
        }

    # ------------------------------------------------------------------ what the core asks
    def susceptibility(self) -> torch.Tensor:
        """``float32[kinds]`` relative hazard of each kind."""
        return torch.stack([getattr(self, f"susceptibility_{k}") for k in self.farms.kinds])

    def transmissibility(self) -> torch.Tensor:
        return self.beta_farm

    def hazard_factor(self, state: FarmState) -> torch.Tensor:
        kind: torch.Tensor = self.farm_kind
        return self.susceptibility().index_select(0, kind)

    def external_hazard(self, state: FarmState, ctx: StepContext) -> torch.Tensor:
        """The environmental pressure of each farm's region times ``beta_env``."""
        env: torch.Tensor = self.pressure.state(ctx).y
        region: torch.Tensor = self.farm_region
        return self.beta_env * env.clamp(min=0).index_select(0, region)

    def open_weight(self, state: FarmState) -> torch.Tensor:
        assert state.stocked is not None
        return state.stocked * (state.stage == FarmStatus.S)  # value 1; d(stocked) for restocked farms

    def on_infection(
        self, state: FarmState, new: torch.Tensor, weight: torch.Tensor | None, ctx: StepContext
    ) -> None:
        if new.numel():
            delay = ctx.streams.lognormal(
                f"{self.name}.detection", self.farms.n, *self.detection, day=ctx.day
            )
            state.due[new] = ctx.day + delay[new].round().clamp(1, 365).to(torch.int32)

    # ------------------------------------------------------------------ set-up
    def stream_names(self) -> tuple[str, ...]:
        return (*super().stream_names(), "restock", "detection")

    def init_state(self, ctx: StepContext) -> FarmState:
        device = ctx.streams.device
        groups, kinds = len(self.farms.groups), len(self.farms.kinds)
        fields, _ = self.infection_state(ctx, len(FarmStatus))
        dtype = fields["counts"].dtype
        capacity: torch.Tensor = self.capacity
        return FarmState(
            **fields,
            stocked=torch.ones(self.farms.n, device=device) if ctx.differentiable else None,
            output=capacity.clone(),
            detections=torch.zeros((), dtype=dtype, device=device),
            birds_culled=torch.zeros((), device=device),
            detections_by_group=torch.zeros(groups, dtype=dtype, device=device),
            culled_by_kind=torch.zeros(kinds, device=device),
        )

    # ------------------------------------------------------------------ day
    def step(self, state: FarmState, ctx: StepContext) -> FarmState:
        super().step(state, ctx)
        capacity: torch.Tensor = self.capacity
        if state.stocked is None:
            state.output = capacity * (state.stage != FarmStatus.D).to(capacity.dtype).unsqueeze(1)
        else:
            state.output = capacity * state.stocked.unsqueeze(1)
        return state

    def _restock_probability(self, ctx: StepContext) -> torch.Tensor:
        """``float32[farms]`` probability that a farm past its fallow period restocks today."""
        kind: torch.Tensor = self.farm_kind
        rate = self.restock_rate * torch.ones(len(self.farms.kinds), device=kind.device)
        if self.market is not None:
            relative = self.market.state(ctx).relative.clamp(min=1e-3)
            market_kind: torch.Tensor = self.market_kind
            rate = torch.where(market_kind, rate * relative.pow(self.restock_price_response), rate)
        return (-torch.expm1(-rate)).index_select(0, kind)

    def progress(self, state: FarmState, ctx: StepContext, effects: list[Effects]) -> None:
        """Detection (I → D: culled) and restocking (D → S after the fallow period, a random draw)."""
        day = ctx.day
        detected = torch.nonzero((state.due == day) & (state.stage == FarmStatus.I)).squeeze(1)
        ready = (state.stage == FarmStatus.D) & (state.due <= day) & (state.due >= 0)
        kind: torch.Tensor = self.farm_kind
        size: torch.Tensor = self.farm_size
        groups, kinds = len(self.farms.groups), len(self.farms.kinds)
        restocked = torch.zeros(0, dtype=torch.int64, device=kind.device)
        x_restock: torch.Tensor | None = None
        if bool(ready.any()):
            u = ctx.streams.uniform(f"{self.name}.restock", self.farms.n, day)
            q = self._restock_probability(ctx)
            sample = ready & (u < q.detach())
            restocked = torch.nonzero(sample).squeeze(1)
            if state.stocked is not None:
                x_restock = self.estimator.bernoulli(q * ready, u, sample)
        state.stage[detected] = FarmStatus.D
        state.due[detected] = day + self.restock.to(state.due.device)[kind[detected]]
        state.stage[restocked] = FarmStatus.S
        state.due[restocked] = -1
        if restocked.numel():
            fresh = ctx.streams.exponential(f"{self.name}.threshold", self.farms.n, day)
            state.threshold[restocked] = fresh[restocked]
        if state.weight is None or state.stocked is None:
            w_det = torch.ones(detected.numel(), device=kind.device)
            w_res = torch.ones(restocked.numel(), device=kind.device)
        else:
            w_det = state.weight[detected]
            culled_now = torch.zeros_like(state.weight)
            culled_now[detected] = 1.0
            stocked = state.stocked - culled_now * state.weight  # 1 - 1 = 0, derivative -d(infected)
            if x_restock is not None:
                stocked = stocked + x_restock  # 0 + 1 for restocked farms, the draw's derivative for all
                w_res = x_restock[restocked]
                keep = torch.ones_like(state.weight)
                keep[restocked] = 0.0
                state.weight = state.weight * keep  # restocked flocks start uninfected
            else:
                w_res = torch.zeros(0, device=kind.device)
            state.stocked = stocked
        group: torch.Tensor = self.farm_group
        by_group = torch.zeros(groups, device=kind.device).index_add(0, group[detected], w_det)
        culled = size[detected] * w_det
        by_kind = torch.zeros(kinds, device=kind.device).index_add(0, kind[detected], culled)
        n_det, n_res = w_det.sum(), w_res.sum()
        flow = torch.stack([n_res, -n_det, n_det - n_res])
        if state.weight is None:
            state.counts.add_(flow.to(state.counts.dtype))
            state.detections_by_group = by_group.to(torch.int64)
            state.detections = n_det.to(torch.int64)
        else:
            state.counts = state.counts + flow
            state.detections_by_group = by_group
            state.detections = n_det
        state.birds_culled = culled.sum()
        state.culled_by_kind = by_kind
