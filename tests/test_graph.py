"""The supply graph conserves supply where nothing is lost, propagates losses, and the price response
follows its demand curve (values and gradients)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from populace import Layer, LayerState, Link, Model, Param, Phase, Simulation, StepContext
from populace.layers.graph import Edges, PriceResponse, SupplyGraph


@dataclass
class OutputState(LayerState):
    output: torch.Tensor


class Producers(Layer):
    """Sources with a fixed output, of which the ones in ``lost`` produce nothing from day ``from_day``."""

    phase = Phase.DISEASE

    def __init__(self, output: torch.Tensor, lost: list[int], from_day: int) -> None:
        super().__init__()
        self.register_buffer("full", output)
        self.lost, self.from_day = lost, from_day

    def init_state(self, ctx: StepContext) -> OutputState:
        full: torch.Tensor = self.full
        return OutputState(full.clone())

    def step(self, state: OutputState, ctx: StepContext) -> OutputState:
        full: torch.Tensor = self.full
        out = full.clone()
        if ctx.day >= self.from_day:
            out[self.lost] = 0
        return OutputState(out)


def random_stage(n_src: int, n_dst: int, fanout: int, gen: torch.Generator) -> Edges:
    src = torch.arange(n_src).repeat_interleave(fanout)
    dst = torch.randint(0, n_dst, (n_src * fanout,), generator=gen)
    share = torch.rand(n_src * fanout, generator=gen)
    share = share / torch.zeros(n_src).index_add_(0, src, share)[src]  # each source's shares sum to 1
    return Edges(src, dst, share, n_src, n_dst)


def three_level_graph() -> tuple[torch.Tensor, list[Edges]]:
    gen = torch.Generator().manual_seed(7)
    output = torch.rand(300, 2, generator=gen) * 100
    return output, [random_stage(300, 40, 1, gen), random_stage(40, 12, 3, gen), random_stage(12, 4, 2, gen)]


def test_supply_is_conserved_where_nothing_is_lost() -> None:
    output, stages = three_level_graph()
    assert all(s.conserving() for s in stages)
    producers = Producers(output, lost=[], from_day=0)
    graph = SupplyGraph(Link(producers), output, stages, ("egg", "meat"))
    result = Simulation(Model([producers, graph])).run(3)
    for i, name in enumerate(("egg_supply", "meat_supply")):
        assert result.series[name].tolist() == pytest.approx([float(output[:, i].sum())] * 3, rel=1e-5)
    # every level carries the whole flow
    for level in graph.propagate(output):
        assert level.sum(0).tolist() == pytest.approx(output.sum(0).tolist(), rel=1e-5)


def test_lost_supply_propagates_downstream() -> None:
    output, stages = three_level_graph()
    lost = [3, 50, 120]
    producers = Producers(output, lost=lost, from_day=2)
    graph = SupplyGraph(Link(producers), output, stages, ("egg", "meat"))
    eggs = Simulation(Model([producers, graph])).run(4).series["egg_supply"]
    total, missing = float(output[:, 0].sum()), float(output[lost, 0].sum())
    assert eggs.tolist() == pytest.approx([total, total, total - missing, total - missing], rel=1e-5)


def test_a_leaky_stage_is_detected_and_bad_edges_are_rejected() -> None:
    gen = torch.Generator().manual_seed(1)
    stage = random_stage(10, 3, 2, gen)
    leaky = Edges(stage.src, stage.dst, stage.share * 0.9, 10, 3)
    assert stage.conserving()
    assert not leaky.conserving()
    with pytest.raises(ValueError, match="destination"):
        Edges(torch.tensor([0]), torch.tensor([5]), torch.tensor([1.0]), 1, 3)
    with pytest.raises(ValueError, match="non-negative"):
        Edges(torch.tensor([0]), torch.tensor([0]), torch.tensor([-1.0]), 1, 3)


def test_price_follows_the_demand_curve_and_its_gradient() -> None:
    output, stages = three_level_graph()
    lost = list(range(0, 300, 5))  # a fifth of the sources
    producers = Producers(output, lost=lost, from_day=1)
    graph = SupplyGraph(Link(producers), output, stages, ("egg", "meat"))
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    price = PriceResponse(
        Link(graph),
        "egg",
        base_price=Param(2.0, (0.1, 10.0), "$/dozen", doc="test"),
        weights=weights,
        markets=("a", "b", "c", "d"),
        elasticity=Param(0.25, (0.01, 2.0), "1", doc="test", learnable=True),
    )
    result = Simulation(Model([producers, graph, price]), grad="full").run(2)
    assert float(result.series["egg_price"][0].detach()) == pytest.approx(2.0)
    full = graph.propagate(output)[-1][:, 0]
    now = graph.propagate(Producers(output, lost, 0).step(OutputState(output), _ctx()).output)[-1][:, 0]
    ratio = now / full
    expected = 2.0 * ratio.pow(-1 / 0.25)
    w = weights / weights.sum()
    assert result.series["egg_price_by_market"][1].detach().tolist() == pytest.approx(
        expected.tolist(), rel=1e-5
    )
    assert float(result.series["egg_price"][1].detach()) == pytest.approx(
        float((w * expected).sum()), rel=1e-5
    )
    (grad,) = torch.autograd.grad(result.series["egg_price"][1], [price.elasticity])
    analytic = float((w * expected * torch.log(ratio) / 0.25**2).sum())
    assert float(grad) == pytest.approx(analytic, rel=1e-4)
    assert math.isfinite(float(grad))
    assert float(grad) < 0
    lost_value = float(((full - now) * expected).sum())
    assert float(result.series["egg_lost_value"][1].detach()) == pytest.approx(lost_value, rel=1e-4)


def _ctx() -> StepContext:
    from populace import RandomStreams

    return StepContext(day=5, streams=RandomStreams(0, "cpu"), differentiable=False)
