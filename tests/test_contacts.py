"""Contact structures: ``Places`` and ``EdgeNetwork`` forces against hand and dense computations."""

from __future__ import annotations

import pytest
import torch

from populace import Contacts, EdgeNetwork, Param, Places

# 6 agents: place 0 holds agents 0, 1, 2; place 1 holds 3, 4; agent 5 is outside the setting.
PLACE = torch.tensor([0, 0, 0, 1, 1, -1], dtype=torch.int32)
SCALE = torch.tensor(0.3)
HALF = Param(0.5, (0.0, 10.0), "relative", "a setting half as transmissive", learnable=True)


def hand_force(pair_rate: list[float], pressure: list[float], scale: float, weight: float) -> torch.Tensor:
    """hazard_i = scale * weight * pair_rate[place_i] * pressure[place_i]; 0 outside the setting."""
    out = []
    for p in PLACE.tolist():
        out.append(0.0 if p < 0 else scale * weight * pair_rate[p] * pressure[p])
    return torch.tensor(out)


# ----------------------------------------------------------------------------- Places
def test_places_is_a_contacts_module():
    places = Places("household", PLACE)
    assert isinstance(places, Contacts)
    assert places.name == "household"
    assert places.n_agents == 6
    assert places.n_places == 2
    assert places.place_index.tolist() == [0, 0, 0, 1, 1, 2], "outsiders point at the extra slot"
    assert places.empty_pressure().tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("contacts", "pair_rate"),
    [
        (None, [1.0, 1.0]),  # everyone meets everyone in the place
        (1.5, [0.75, 1.0]),  # size 3: 1.5 / 2 others; size 2: min(1, 1.5 / 1)
        (0.5, [0.25, 0.5]),
    ],
)
def test_places_force_by_hand(contacts, pair_rate):
    places = Places("setting", PLACE, contacts=contacts, weight=HALF)
    assert places.pair_rate.tolist() == pytest.approx([*pair_rate, 0.0])
    with torch.no_grad():
        pressure = places.empty_pressure()
        # agents 1 and 4 infectious with weights 1 and 0.5; agent 5 (outside) adds to the dead slot.
        pressure = places.add_sources(pressure, torch.tensor([1, 4, 5]), torch.tensor([1.0, 0.5, 2.0]))
        assert pressure.tolist() == [1.0, 0.5, 2.0]
        hazard = places.force(pressure, SCALE)
    expected = hand_force(pair_rate, [1.0, 0.5], 0.3, 0.5)
    torch.testing.assert_close(hazard, expected)
    assert hazard[5] == 0.0, "an agent outside the setting feels nothing, whatever the dead slot holds"


def test_places_force_with_out_buffer():
    places = Places("setting", PLACE, contacts=1.5)
    pressure = torch.tensor([2.0, 1.0, 0.0])
    with torch.no_grad():
        expected = places.force(pressure, SCALE)
        out = torch.full((6,), 99.0)
        got = places.force(pressure, SCALE, out=out)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(got, expected)


def test_force_out_buffer_works_with_autograd_enabled():
    """``force(..., out=buf)`` is part of the ``Contacts`` interface; ``EdgeNetwork`` honours it with grad
    enabled, so ``Places`` should too (its learnable ``weight`` makes ``index_select(out=)`` refuse)."""
    places = Places("setting", PLACE, contacts=1.5)
    pressure = torch.tensor([2.0, 1.0, 0.0])
    expected = places.force(pressure, SCALE).detach()
    out = torch.empty(6)
    try:
        got = places.force(pressure, SCALE, out=out)
    except RuntimeError as exc:
        pytest.fail(f"Places.force(out=...) with autograd enabled raised: {exc}")
    torch.testing.assert_close(got.detach(), expected)


def test_places_mean_contacts():
    # sizes 3 and 2, one outsider: (3 * 2 * pair0 + 2 * 1 * pair1) / 6 agents
    assert Places("all", PLACE).mean_contacts() == pytest.approx((6 + 2) / 6)
    assert Places("k", PLACE, contacts=1.5).mean_contacts() == pytest.approx((6 * 0.75 + 2 * 1.0) / 6)
    singletons = Places("alone", torch.arange(4))
    assert singletons.mean_contacts() == 0.0
    assert singletons.pair_rate.tolist() == [0.0] * 5
    big = Places("big", torch.zeros(1000, dtype=torch.int64), contacts=19.0)
    assert big.mean_contacts() == pytest.approx(19.0)


def test_places_everyone_outside():
    places = Places("none", torch.full((4,), -1))
    assert places.n_places == 0
    assert places.mean_contacts() == 0.0
    pressure = places.add_sources(places.empty_pressure(), torch.tensor([0, 1]), torch.ones(2))
    assert places.force(pressure, SCALE).tolist() == [0.0] * 4


@pytest.mark.parametrize(
    ("place", "contacts", "error"),
    [
        (torch.tensor([0.0, 1.0]), None, TypeError),
        (torch.zeros(2, 2, dtype=torch.int64), None, TypeError),
        (torch.tensor([0, 1]), 0.0, ValueError),
        (torch.tensor([0, 1]), -2.0, ValueError),
    ],
)
def test_places_rejects_bad_input(place, contacts, error):
    with pytest.raises(error, match="bad"):
        Places("bad", place, contacts=contacts)


def test_places_weight_is_learnable_and_bounded_spec():
    places = Places("setting", PLACE)
    assert dict(places.named_parameters()).keys() == {"weight"}
    assert places.param_specs["weight"].bounds == (0.0, 10.0)
    assert places.weight.item() == 1.0


# ----------------------------------------------------------------------------- EdgeNetwork
def random_graph(n: int = 12, edges: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (edges,), generator=g)
    dst = torch.randint(0, n, (edges,), generator=g)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    rate = torch.rand(src.numel(), generator=g) + 0.1
    # both directions, the same contact rate each way
    return n, torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([rate, rate])


def dense(n: int, source: torch.Tensor, target: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """A[target, source] = total contact rate from source to target (duplicate edges add up)."""
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    adjacency.index_put_((target, source), rate.double(), accumulate=True)
    return adjacency


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_network_force_equals_dense(seed):
    n, src, dst, rate = random_graph(seed=seed)
    net = EdgeNetwork("net", n, src, dst, contacts=rate, weight=HALF)
    adjacency = dense(n, src, dst, rate)
    assert torch.equal(adjacency, adjacency.T), "the test graph is symmetric"
    pressure = torch.rand(n, generator=torch.Generator().manual_seed(100 + seed))
    with torch.no_grad():
        hazard = net.force(pressure, SCALE)
    expected = 0.3 * 0.5 * adjacency @ pressure.double()
    torch.testing.assert_close(hazard.double(), expected, rtol=1e-5, atol=1e-6)


def test_edge_network_direction_matters():
    net = EdgeNetwork("one-way", 3, torch.tensor([0]), torch.tensor([2]), contacts=torch.tensor([4.0]))
    with torch.no_grad():
        assert net.force(torch.tensor([1.0, 0.0, 0.0]), SCALE).tolist() == pytest.approx([0.0, 0.0, 1.2])
        assert net.force(torch.tensor([0.0, 0.0, 1.0]), SCALE).tolist() == [0.0, 0.0, 0.0]


def test_edge_network_default_contacts_are_one():
    n, src, dst, _ = random_graph(seed=5)
    net = EdgeNetwork("net", n, src, dst)
    pressure = torch.rand(n, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        hazard = net.force(pressure, torch.tensor(1.0))
    expected = dense(n, src, dst, torch.ones(src.numel())) @ pressure.double()
    torch.testing.assert_close(hazard.double(), expected, rtol=1e-5, atol=1e-6)


def test_edge_network_force_with_out_buffer():
    n, src, dst, rate = random_graph(seed=3)
    net = EdgeNetwork("net", n, src, dst, contacts=rate)
    pressure = torch.rand(n, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = net.force(pressure, SCALE)
        out = torch.full((n,), 99.0)
        got = net.force(pressure, SCALE, out=out)
    torch.testing.assert_close(out, expected)
    assert got.data_ptr() == out.data_ptr()


def test_edge_network_neighbours_and_csr_order():
    n, src, dst, rate = random_graph(seed=4)
    net = EdgeNetwork("net", n, src, dst, contacts=rate)
    assert bool((net.target[1:] >= net.target[:-1]).all()), "edges are sorted by target"
    assert net.indptr.tolist()[0] == 0
    assert net.indptr.tolist()[-1] == src.numel()
    for agent in range(n):
        expected = sorted(src[dst == agent].tolist())
        assert sorted(net.neighbours(agent).tolist()) == expected, agent
        assert net.neighbours(agent).tolist() == expected, "sources are sorted within a target"
    # the stored rate travels with its edge (the graph may repeat an edge, so compare as multisets)
    given = sorted(zip(src.tolist(), dst.tolist(), rate.tolist(), strict=True))
    stored = sorted(zip(net.source.tolist(), net.target.tolist(), net.rate.tolist(), strict=True))
    assert stored == given


def test_edge_network_isolated_agent_has_no_neighbours():
    net = EdgeNetwork("net", 4, torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert net.neighbours(3).tolist() == []
    assert net.neighbours(2).tolist() == []
    assert net.neighbours(1).tolist() == [0]


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (torch.tensor([0, 1]), torch.tensor([1])),
        (torch.tensor([0, 5]), torch.tensor([1, 0])),
        (torch.tensor([-1, 0]), torch.tensor([1, 0])),
        (torch.zeros(2, 1, dtype=torch.int64), torch.zeros(2, 1, dtype=torch.int64)),
    ],
)
def test_edge_network_rejects_bad_edges(source, target):
    with pytest.raises(ValueError, match="net"):
        EdgeNetwork("net", 3, source, target)


def test_edge_network_rejects_contacts_of_the_wrong_length():
    """``contacts`` is one rate per edge; a longer or shorter tensor must be refused, not silently cut."""
    source, target = torch.tensor([0, 1]), torch.tensor([1, 2])
    for contacts in (torch.ones(3), torch.ones(1)):
        with pytest.raises(ValueError, match="net"):
            EdgeNetwork("net", 3, source, target, contacts=contacts)


def test_edge_network_pressure_is_per_agent():
    net = EdgeNetwork("net", 5, torch.tensor([0]), torch.tensor([1]))
    assert net.empty_pressure().shape == (5,)
    with torch.no_grad():
        pressure = net.add_sources(net.empty_pressure(), torch.tensor([0, 3]), torch.tensor([1.0, 2.0]))
    assert pressure.tolist() == [1.0, 0.0, 0.0, 2.0, 0.0]


# ----------------------------------------------------------------------------- add_sources and gradients
def structures() -> list[Contacts]:
    n, src, dst, rate = random_graph(n=6, seed=9)
    return [Places("places", PLACE, contacts=1.5), EdgeNetwork("edges", n, src, dst, contacts=rate)]


@pytest.mark.parametrize("index", [0, 1])
def test_add_sources_in_place_without_grad(index):
    contacts = structures()[index]
    pressure = contacts.empty_pressure()
    out = contacts.add_sources(pressure, torch.tensor([0, 3]), torch.tensor([1.0, 2.0]))
    assert out is pressure, "no gradient: the pressure is updated in place"
    assert float(pressure.sum()) == 3.0
    out = contacts.add_sources(pressure, torch.tensor([3]), torch.tensor([-2.0]))
    assert out is pressure
    assert float(pressure.sum()) == 1.0


@pytest.mark.parametrize("index", [0, 1])
def test_add_sources_out_of_place_with_grad(index):
    contacts = structures()[index]
    pressure = contacts.empty_pressure()
    weights = torch.tensor([1.0, 2.0], requires_grad=True)
    out = contacts.add_sources(pressure, torch.tensor([0, 3]), weights)
    assert out is not pressure
    assert torch.equal(pressure, torch.zeros_like(pressure)), "the original pressure is unchanged"
    assert float(out.detach().sum()) == 3.0
    assert out.requires_grad
    # and once the pressure itself carries a gradient, the next update is out of place too
    again = contacts.add_sources(out, torch.tensor([1]), torch.tensor([5.0]))
    assert again is not out
    assert float(out.detach().sum()) == 3.0


def test_places_gradients_flow_from_force_to_weights():
    places = Places("places", PLACE, contacts=1.5, weight=HALF)
    agents = torch.tensor([0, 1, 3])
    weights = torch.tensor([1.0, 0.5, 2.0], requires_grad=True)
    scale = torch.tensor(0.3, requires_grad=True)
    pressure = places.add_sources(places.empty_pressure(), agents, weights)
    places.force(pressure, scale).sum().backward()
    # d/dw_j sum_i hazard_i = scale * weight * pair_rate[place_j] * size[place_j]
    pair, size = [0.75, 1.0], [3, 2]
    expected = [0.3 * 0.5 * pair[p] * size[p] for p in (0, 0, 1)]
    torch.testing.assert_close(weights.grad, torch.tensor(expected))
    # d/dweight = total / weight and d/dscale = total / scale
    total = sum(w * e for w, e in zip([1.0, 0.5, 2.0], expected, strict=True))
    assert places.weight.grad.item() == pytest.approx(total / 0.5)
    assert scale.grad.item() == pytest.approx(total / 0.3)


def test_edge_network_gradients_flow_from_force_to_weights():
    n, src, dst, rate = random_graph(seed=6)
    net = EdgeNetwork("net", n, src, dst, contacts=rate, weight=HALF)
    agents = torch.tensor([0, 2, 5, 7])
    weights = torch.tensor([1.0, 0.5, 2.0, 1.5], requires_grad=True)
    pressure = net.add_sources(net.empty_pressure(), agents, weights)
    probe = torch.rand(n, generator=torch.Generator().manual_seed(1))
    (net.force(pressure, SCALE) * probe).sum().backward()
    adjacency = dense(n, src, dst, rate)
    # hazard = 0.15 * A @ pressure, so d(probe . hazard)/d pressure = 0.15 * A^T probe
    expected = (0.3 * 0.5 * adjacency.T @ probe.double())[agents]
    torch.testing.assert_close(weights.grad.double(), expected, rtol=1e-5, atol=1e-6)
    assert net.weight.grad is not None
    assert net.weight.grad.item() != 0.0


def test_gather_times_equals_the_plain_product_and_passes_gradcheck_in_both_modes() -> None:
    """Places.force_times keeps the per-place rates on the tape instead of the per-agent hazard; its values
    and derivatives (reverse and forward mode, against finite differences) are those of force × presence."""
    from populace.contacts import GatherTimes

    places = Places("work", PLACE)
    pressure = torch.tensor([0.5, 2.0, 0.0], dtype=torch.float64)
    presence = torch.tensor([1.0, 0.0, 0.5, 1.0, 1.0, 1.0], requires_grad=True)
    scale = torch.tensor(0.3, requires_grad=True)
    fused = places.force_times(pressure, scale, presence)
    plain = places.force(pressure, scale) * presence
    torch.testing.assert_close(fused, plain)
    g_fused = torch.autograd.grad(fused.square().sum(), [scale, presence])
    g_plain = torch.autograd.grad(plain.square().sum(), [scale, presence])
    for a, b in zip(g_fused, g_plain, strict=True):
        torch.testing.assert_close(a, b)
    rate = torch.rand(4, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 2, 2, 3, 1, 0])
    weight = torch.rand(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GatherTimes.apply, (rate, index, weight), check_forward_ad=True)
    mask = torch.tensor([True, False, True, True, False, True])  # a bool presence (closures) needs no grad
    torch.testing.assert_close(GatherTimes.apply(rate, index, mask), rate[index] * mask)
