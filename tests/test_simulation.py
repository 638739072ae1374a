"""Simulation-level tests: invariants, determinism, known answers, gradients, time."""

from __future__ import annotations

import math

import pytest
import torch

from populace import (
    Checkpointed,
    EdgeNetwork,
    Gumbel,
    Layer,
    LayerState,
    Model,
    Param,
    Phase,
    Places,
    Simulation,
    simulate,
)
from populace.layers import SEIR, Stage
from populace.scenarios.bench_seir import BenchSEIR

COMPARTMENTS = ("S", "E", "I", "R")
SEIR_BETA_HIGH = Param(0.1, (0.0, 1.0), "1/contact/day", "a high test value", learnable=True)


def bench_model(agents: int, seed: int = 1, **sets: str) -> Model:
    options = BenchSEIR.options()
    for name, text in sets.items():
        options[name] = options[name].parse(text, name)
    return BenchSEIR().build(agents, options, seed=seed, device="cpu")


def total(result, day: int = -1) -> float:
    return sum(float(result.series[c][day].detach()) for c in COMPARTMENTS)


@pytest.mark.parametrize("grad", ["off", "full"])
def test_invariants_every_day(grad):
    agents = 20_000
    sim = Simulation(bench_model(agents), seed=2, grad=grad)
    result = sim.run(80)
    counts = torch.stack([result.series[c] for c in COMPARTMENTS]).detach()
    assert torch.all(counts.sum(0) == agents), "S+E+I+R must equal N every day"
    assert torch.all(counts >= 0)
    assert torch.equal(counts, counts.round()), "counts must be whole numbers"
    assert float(counts[3, -1]) > 0, "the epidemic should have progressed"
    # The state behind the counts is integral and agrees with them.
    state = sim.states[0]
    assert state.stage.dtype == torch.uint8
    assert state.due.dtype == torch.int32
    assert torch.equal(torch.bincount(state.stage.long(), minlength=4).float(), counts[:, -1].float())
    # Susceptible = S is the one stage that still has a finite infection threshold.
    assert torch.equal(torch.isfinite(state.threshold), state.stage == Stage.S)
    # New infections are the daily drop of S.
    drop = -(result.series["S"][1:] - result.series["S"][:-1]).detach()
    assert torch.equal(drop, result.series["new_infections"][1:].detach())


def test_same_seed_same_series_other_seed_differs():
    a = simulate(bench_model(20_000), 60, seed=5)
    b = simulate(bench_model(20_000), 60, seed=5)
    c = simulate(bench_model(20_000), 60, seed=6)
    for name in COMPARTMENTS:
        assert torch.equal(a.series[name], b.series[name])
    assert any(not torch.equal(a.series[n], c.series[n]) for n in COMPARTMENTS)


def test_population_seed_changes_population():
    a, b = bench_model(5_000, seed=1), bench_model(5_000, seed=2)
    pa, pb = a.layers[0].contacts()[1].place_index, b.layers[0].contacts()[1].place_index
    assert not torch.equal(pa, pb)


def test_differentiable_forward_equals_fast_forward():
    model = bench_model(20_000)
    fast = simulate(model, 70, seed=3)
    diff = simulate(model, 70, seed=3, grad="full")
    for name in (*COMPARTMENTS, "new_infections"):
        assert torch.equal(fast.series[name].float(), diff.series[name].detach())


def test_fast_mode_builds_no_graph_and_keeps_compact_state():
    sim = Simulation(bench_model(10_000), seed=1)
    result = sim.run(30)
    for name, value in result.series.items():
        assert not value.requires_grad
        assert value.grad_fn is None
        if not name.endswith("_by_setting"):  # counts are integers; shares by setting are expected values
            assert not value.dtype.is_floating_point, name
    state = sim.states[0]
    assert state.weight is None
    assert state.durations.dtype == torch.uint8


def test_time_advances_across_calls_and_stream_matches_run():
    model = bench_model(20_000)
    whole = simulate(model, 50, seed=4)
    sim = Simulation(model, seed=4)
    first, second = sim.run(30), sim.run(20)
    assert sim.day == 50
    assert first.days.tolist() == list(range(30))
    assert second.days.tolist() == list(range(30, 50))
    for name in COMPARTMENTS:
        assert torch.equal(torch.cat([first.series[name], second.series[name]]), whole.series[name])
    streamed = Simulation(model, seed=4)
    rows = list(streamed.stream(50))
    assert [day for day, _ in rows] == list(range(50))
    assert torch.equal(torch.stack([obs["I"] for _, obs in rows]), whole.series["I"])


def test_common_random_numbers_across_parameters():
    """Changing beta changes neither the thresholds, durations nor seeds (each has its own stream)."""
    low = Simulation(bench_model(10_000, beta="0.01"), seed=9).states[0]
    high = Simulation(bench_model(10_000, beta="0.03"), seed=9).states[0]
    for field in ("threshold", "durations", "stage", "due"):
        assert torch.equal(getattr(low, field), getattr(high, field)), field


def final_size(r0: float) -> float:
    z = 0.5
    for _ in range(200):
        z = 1 - math.exp(-r0 * z)
    return z


def test_well_mixed_matches_final_size_equation_at_1m():
    agents = 1_000_000
    model = bench_model(agents, network="well-mixed")
    sim = Simulation(model, seed=11)
    result = sim.run(300)
    assert float(result.series["E"][-1]) + float(result.series["I"][-1]) == 0, "epidemic must be over"
    seir = model.layers[0]
    mean_infectious = float(sim.states[0].durations[1].double().mean())
    contacts = seir.contacts()[0].contacts
    r0 = float(seir.beta.detach()) * contacts * mean_infectious * agents / (agents - 1)
    attack = 1 - float(result.series["S"][-1]) / agents
    expected = final_size(r0)
    assert abs(attack - expected) < 0.01, f"attack {attack:.4f} vs final size {expected:.4f} (R0={r0:.3f})"


def test_benchmark_attack_rate_is_in_the_reference_range():
    """DESIGN.md §5: the benchmark model's attack rate after 100 days lands near 0.75–0.8."""
    agents = 200_000
    result = simulate(bench_model(agents), 100, seed=1)
    attack = 1 - float(result.series["S"][-1]) / agents
    assert 0.70 < attack < 0.85


def test_gradients_are_finite_for_every_learnable_parameter():
    model = bench_model(10_000)
    result = simulate(model, 60, seed=1, grad="full")
    (result.series["R"][-1] + result.series["I"][-1]).backward()
    params = dict(model.named_parameters())
    assert {"seir.beta", "seir.settings.household.weight", "seir.settings.community.weight"} <= set(params)
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert float(p.grad) > 0, f"{name}: more transmission must mean more infections"


@pytest.mark.parametrize("every", [1, 7, 25])
def test_checkpointed_gradients_equal_full_gradients(every):
    model = bench_model(10_000)
    grads = []
    for grad in ("full", Checkpointed(every=every)):
        model.zero_grad()
        result = simulate(model, 50, seed=2, grad=grad)
        (result.series["R"][-1] * 2 + result.series["new_infections"].sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=0)


def test_gumbel_estimator_runs_and_gives_gradients():
    places = Places("everyone", torch.zeros(5_000, dtype=torch.int32), contacts=15.0)
    model = Model([SEIR(5_000, [places], initial_infections=10, estimator=Gumbel())])
    result = simulate(model, 40, seed=1, grad="full")
    result.series["R"][-1].backward()
    assert torch.isfinite(model.layers[0].beta.grad)


def test_seir_on_an_edge_network():
    n = 3_000
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, n, (n * 5,), generator=gen)
    dst = torch.randint(0, n, (n * 5,), generator=gen)
    net = EdgeNetwork("random", n, torch.cat([src, dst]), torch.cat([dst, src]))
    model = Model([SEIR(n, [net], initial_infections=10, beta=SEIR_BETA_HIGH)])
    result = simulate(model, 60, seed=1, grad="full")
    assert total(result) == n
    assert float(result.series["R"][-1].detach()) > 100
    result.series["R"][-1].backward()
    assert model.layers[0].beta.grad is not None
    assert torch.isfinite(model.layers[0].beta.grad)


def test_a_model_holds_several_agent_types():
    """People on places and farms on an edge network, each with its own SEIR layer, in one model."""
    people = Places("everyone", torch.zeros(4_000, dtype=torch.int32), contacts=15.0)
    farm_ids = torch.arange(500)
    farms = EdgeNetwork(
        "farm_links",
        500,
        torch.cat([farm_ids, (farm_ids + 1) % 500]),
        torch.cat([(farm_ids + 1) % 500, farm_ids]),
    )
    model = Model(
        {
            "people": SEIR(4_000, [people], initial_infections=10),
            "farms": SEIR(500, [farms], initial_infections=5, beta=SEIR_BETA_HIGH, prefix="farm_"),
        }
    )
    assert model.observables() == (
        "S",
        "E",
        "I",
        "R",
        "new_infections",
        "farm_S",
        "farm_E",
        "farm_I",
        "farm_R",
        "farm_new_infections",
    )
    result = simulate(model, 60, seed=1, grad="full")
    assert total(result) == 4_000
    assert sum(float(result.series[f"farm_{c}"][-1].detach()) for c in COMPARTMENTS) == 500
    (result.series["R"][-1] + result.series["farm_R"][-1]).backward()
    assert all(torch.isfinite(p.grad) for p in model.parameters())
    with pytest.raises(ValueError, match="reported by two layers"):
        Model(
            {
                "a": SEIR(100, [Places("a", torch.zeros(100, dtype=torch.int32))], initial_infections=1),
                "b": SEIR(100, [Places("b", torch.zeros(100, dtype=torch.int32))], initial_infections=1),
            }
        )


def test_layers_run_in_phase_order():
    calls: list[str] = []

    class Probe(Layer):
        def __init__(self, name: str, phase: Phase) -> None:
            super().__init__()
            self.label, self.phase = name, phase

        def init_state(self, ctx):
            return LayerState()

        def step(self, state, ctx):
            calls.append(self.label)
            return state

    model = Model(
        {
            "disease": Probe("disease", Phase.DISEASE),
            "behaviour": Probe("behaviour", Phase.BEHAVIOUR),
            "demography": Probe("demography", Phase.DEMOGRAPHY),
        }
    )
    simulate(model, 1)
    assert calls == ["demography", "behaviour", "disease"]


def test_bad_arguments_are_rejected():
    model = bench_model(1_000)
    with pytest.raises(ValueError, match="days"):
        simulate(model, 0)
    with pytest.raises(ValueError, match="record"):
        simulate(model, 3, record=["nonsense"])
    with pytest.raises(ValueError, match="grad"):
        Simulation(model, grad="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        Checkpointed(every=0)
    with pytest.raises(ValueError, match=r"Checkpointed\.ahead: expected a number of segments >= 0, got -1"):
        Checkpointed(overlap=True, ahead=-1)
    with pytest.raises(ValueError, match="set overlap=True"):
        Checkpointed(ahead=1)
    with pytest.raises(ValueError, match="seed"):
        Simulation(model, seed=-1)
