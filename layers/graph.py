"""Message passing over a directed, layered supply graph, and a differentiable price response.

:class:`SupplyGraph` carries the daily output of a source layer's agents (``float32[sources, k]``, ``k``
commodities) through stages of directed edges: level 0 are the sources (e.g. farms), level 1 the nodes
their edges reach (processing plants), level 2 the next (regional markets), and so on. A stage is one
scatter pass, inflow[dst] += share · flow[src] (``index_add``), so a day costs O(edges) and is
differentiable in the source output (and in the shares). When every source's outgoing shares sum to 1
(:meth:`Edges.conserving`) and no node has a capacity, what reaches the last level equals what left the
first — nothing is created or lost in transit (tested); supply lost at a source (a culled flock)
propagates downstream in proportion to the shares.

:class:`PriceResponse` turns the last level's supply of one commodity into a price with a constant-
elasticity demand curve: at each market m, p_m = p₀ · (S_m / S̄_m)^(−1/ε), where S̄_m is the market's supply
with every source at capacity and ε the (absolute) price elasticity of demand. The reported price is the
consumption-weighted mean over markets; consumer cost is Σ_m (p_m − p₀)·S_m a day and lost value
Σ_m (S̄_m − S_m)·p_m a day.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from populace.model import Layer, LayerState, Link, Phase, StepContext
from populace.params import Param, register_param

__all__ = ["Edges", "PriceResponse", "PriceState", "Producer", "SupplyGraph", "SupplyState"]


class Producer(Protocol):
    """A layer state with a daily output per agent: ``output: float32[agents, commodities]``."""

    output: torch.Tensor


@dataclass(frozen=True)
class Edges:
    """One stage of a supply graph: edges from ``n_src`` nodes to ``n_dst`` nodes.

    Attributes:
        src, dst: ``int64[edges]`` node indices.
        share: ``float32[edges]`` fraction of the source's flow sent along the edge.
        n_src, n_dst: node counts of the two levels.
    """

    src: torch.Tensor
    dst: torch.Tensor
    share: torch.Tensor
    n_src: int
    n_dst: int

    def __post_init__(self) -> None:
        if not (self.src.shape == self.dst.shape == self.share.shape) or self.src.dim() != 1:
            raise ValueError("Edges: src, dst and share must be 1-d tensors of the same length")
        if len(self.src) and (int(self.src.min()) < 0 or int(self.src.max()) >= self.n_src):
            raise ValueError(f"Edges: a source index is outside 0..{self.n_src - 1}")
        if len(self.dst) and (int(self.dst.min()) < 0 or int(self.dst.max()) >= self.n_dst):
            raise ValueError(f"Edges: a destination index is outside 0..{self.n_dst - 1}")
        if len(self.share) and float(self.share.min()) < 0:
            raise ValueError("Edges: shares must be non-negative")

    def outgoing(self) -> torch.Tensor:
        """``float32[n_src]``: the sum of each source's shares."""
        out = torch.zeros(self.n_src, dtype=self.share.dtype, device=self.share.device)
        return out.index_add_(0, self.src, self.share)

    def conserving(self, tol: float = 1e-5) -> bool:
        """Whether every source sends all its flow on (its shares sum to 1)."""
        return bool(torch.all((self.outgoing() - 1).abs() <= tol))

    def to(self, device: torch.device | str) -> Edges:
        return Edges(self.src.to(device), self.dst.to(device), self.share.to(device), self.n_src, self.n_dst)

    def propagate(self, flow: torch.Tensor) -> torch.Tensor:
        """``[n_dst, k]`` inflows from ``flow: [n_src, k]`` (out of place, differentiable)."""
        sent = flow.index_select(0, self.src) * self.share.unsqueeze(1)
        out = torch.zeros((self.n_dst, flow.shape[1]), dtype=flow.dtype, device=flow.device)
        return out.index_add(0, self.dst, sent)


@dataclass
class SupplyState(LayerState):
    """State of :class:`SupplyGraph`.

    Attributes:
        flows: per level after the sources, ``float32[nodes, commodities]`` inflow on the last day.
        baseline: per level, the inflow with every source at ``capacity`` (constant).
    """

    flows: list[torch.Tensor]
    baseline: list[torch.Tensor]


class SupplyGraph(Layer):
    """Daily supply through a layered directed graph (see module docs).

    Args:
        source: the producing layer; its state has ``output: float32[sources, commodities]``.
        capacity: ``float32[sources, commodities]`` output with nothing lost (gives the baselines).
        stages: the edge stages, level by level (``stages[0].n_src`` = number of sources).
        commodities: names of the commodity columns; the series ``<name>_supply`` is the last level's
            total inflow a day.
    """

    phase = Phase.OBSERVE

    def __init__(
        self,
        source: Link[Any],
        capacity: torch.Tensor,
        stages: Sequence[Edges],
        commodities: Sequence[str],
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("stages: a supply graph needs at least one stage of edges")
        if capacity.dim() != 2 or capacity.shape[1] != len(commodities):
            raise ValueError(f"capacity: expected [sources, {len(commodities)}], got {tuple(capacity.shape)}")
        if stages[0].n_src != capacity.shape[0]:
            raise ValueError(f"stages[0]: {stages[0].n_src} sources, capacity has {capacity.shape[0]}")
        for a, b in itertools.pairwise(stages):
            if a.n_dst != b.n_src:
                raise ValueError("stages: each stage must start from the previous stage's destinations")
        self.source = source
        self.register_buffer("capacity", capacity.to(torch.float32))
        self.stages = list(stages)
        self.commodities = tuple(commodities)
        self.param_specs: dict[str, Param] = {}

    def _apply(self, fn: Any, recurse: bool = True) -> SupplyGraph:  # move the edges with .to(device)
        super()._apply(fn, recurse)
        device = self.capacity.device
        self.stages = [s.to(device) for s in self.stages]
        return self

    def propagate(self, output: torch.Tensor) -> list[torch.Tensor]:
        """Inflows at every level after the sources for source ``output: [sources, commodities]``."""
        flows = []
        flow = output
        for stage in self.stages:
            flow = stage.propagate(flow)
            flows.append(flow)
        return flows

    def observables(self) -> tuple[str, ...]:
        return tuple(f"{c}_supply" for c in self.commodities)

    def observe(self, state: SupplyState) -> dict[str, torch.Tensor]:
        total = state.flows[-1].sum(0)
        return {f"{c}_supply": total[i] for i, c in enumerate(self.commodities)}

    def init_state(self, ctx: StepContext) -> SupplyState:
        capacity: torch.Tensor = self.capacity
        baseline = self.propagate(capacity)
        return SupplyState(flows=[b.clone() for b in baseline], baseline=baseline)

    def step(self, state: SupplyState, ctx: StepContext) -> SupplyState:
        output: torch.Tensor = self.source.state(ctx).output
        return SupplyState(flows=self.propagate(output), baseline=state.baseline)


ELASTICITY = Param(
    0.15,
    (0.02, 2.0),
    "dimensionless (|d log Q / d log p|)",
    learnable=True,
    doc="Absolute own-price elasticity of demand. Assumed: retail demand for eggs is very inelastic; "
    "published US estimates are of the order of 0.1-0.3 in absolute value.",
)


@dataclass
class PriceState(LayerState):
    """State of :class:`PriceResponse` on the last day.

    Attributes:
        price: ``float32[markets]`` price at each market.
        mean: ``float32[]`` consumption-weighted mean price.
        relative: ``float32[]`` ``mean`` divided by the base price.
        supply, baseline: ``float32[markets]`` the commodity's supply and its baseline.
    """

    price: torch.Tensor
    mean: torch.Tensor
    relative: torch.Tensor
    supply: torch.Tensor
    baseline: torch.Tensor


class PriceResponse(Layer):
    """Constant-elasticity price of one commodity at the last level of a :class:`SupplyGraph`.

    Args:
        graph: the supply graph (linked; runs before this layer in the same phase when listed first).
        commodity: the commodity's name in the graph.
        base_price: price with every source at capacity (a ``Param``; unit e.g. ``"$/dozen"``).
        weights: ``float32[markets]`` consumption weights of the markets (normalised here).
        markets: names of the markets (labels of ``<commodity>_price_by_market``).
        elasticity: the demand elasticity spec (learnable by default).
    """

    phase = Phase.OBSERVE
    elasticity: torch.Tensor
    base_price: torch.Tensor

    def __init__(
        self,
        graph: Link[SupplyGraph],
        commodity: str,
        base_price: Param,
        weights: torch.Tensor,
        markets: Sequence[str],
        elasticity: Param = ELASTICITY,
    ) -> None:
        super().__init__()
        if commodity not in graph.layer.commodities:
            raise ValueError(
                f"commodity: {commodity!r} is not carried by the graph {graph.layer.commodities}"
            )
        n = graph.layer.stages[-1].n_dst
        if weights.shape != (n,) or len(markets) != n:
            raise ValueError(f"weights and markets: expected {n} markets")
        self.graph = graph
        self.commodity = commodity
        self.index = graph.layer.commodities.index(commodity)
        self.markets = tuple(markets)
        self.register_buffer("weights", (weights / weights.sum()).to(torch.float32))
        register_param(self, "elasticity", elasticity)
        register_param(self, "base_price", base_price)

    def observables(self) -> tuple[str, ...]:
        c = self.commodity
        return (f"{c}_price", f"{c}_price_by_market", f"{c}_consumer_cost", f"{c}_lost_value")

    def labels(self) -> dict[str, tuple[str, ...]]:
        return {f"{self.commodity}_price_by_market": self.markets}

    def prices(self, supply: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
        """``float32[markets]`` prices for market ``supply`` against its ``baseline``."""
        ratio = (supply / baseline.clamp(min=1e-12)).clamp(min=1e-3)
        return self.base_price * ratio.pow(-1.0 / self.elasticity)

    def _state(self, graph: SupplyState) -> PriceState:
        supply = graph.flows[-1][:, self.index]
        baseline = graph.baseline[-1][:, self.index]
        price = self.prices(supply, baseline)
        weights: torch.Tensor = self.weights
        mean = (weights * price).sum()
        return PriceState(
            price=price, mean=mean, relative=mean / self.base_price, supply=supply, baseline=baseline
        )

    def init_state(self, ctx: StepContext) -> PriceState:
        n = len(self.markets)
        one = torch.ones(n, device=ctx.streams.device)
        base = self.base_price.detach()
        return PriceState(
            price=base * one, mean=base.clone(), relative=torch.ones_like(base), supply=one, baseline=one
        )

    def step(self, state: PriceState, ctx: StepContext) -> PriceState:
        return self._state(self.graph.state(ctx))

    def observe(self, state: PriceState) -> dict[str, torch.Tensor]:
        c = self.commodity
        consumer = ((state.price - self.base_price) * state.supply).sum()
        lost = ((state.baseline - state.supply) * state.price).sum()
        return {
            f"{c}_price": state.mean,
            f"{c}_price_by_market": state.price.clone(),
            f"{c}_consumer_cost": consumer,
            f"{c}_lost_value": lost,
        }
