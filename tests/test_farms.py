"""Farm agents: the infection law (known answer), the transmission kernel, integral states and accounting,
the same forward values in fast and differentiable modes, restocking and its price response."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from populace import Layer, LayerState, Link, Model, Param, Phase, Simulation, StepContext
from populace.layers.farms import Farms, FarmStatus, PoultryFarms
from populace.layers.ode import ODE, VectorField

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one torch thread (conftest)


class Constant(VectorField):
    """y' = 0: a constant pressure by region."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.names = tuple(f"r{i}" for i in range(len(values)))
        self.values = values

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(y)

    def initial(self, device: torch.device) -> torch.Tensor:
        return torch.tensor(self.values, device=device)


def make_farms(n: int, side_km: float = 200.0, seed: int = 0) -> Farms:
    gen = torch.Generator().manual_seed(seed)
    kind = torch.randint(0, 2, (n,), generator=gen)
    return Farms(
        x=torch.rand(n, generator=gen) * side_km,
        y=torch.rand(n, generator=gen) * side_km,
        kind=kind,
        size=torch.randint(1_000, 100_000, (n,), generator=gen).float(),
        region=torch.zeros(n, dtype=torch.int64),
        group=kind.clone(),
        kinds=("layers", "broilers"),
        groups=("A", "B"),
        output_rate=torch.tensor([[0.07, 0.0], [0.0, 0.016]]),
        commodities=("egg", "chicken"),
    )


def spec(value: float, learnable: bool = False) -> Param:
    return Param(value, (0.0, 1e9), "test", doc="test", learnable=learnable)


def model(
    farms: Farms,
    pressure: float,
    *,
    beta_env: float = 0.01,
    beta_farm: float = 0.0,
    restock: float = 10_000.0,
    restock_rate: float = 1 / 30,
    sus: tuple[float, float] = (1.0, 1.0),
) -> tuple[Model, PoultryFarms]:
    ode = ODE(Constant([pressure]))
    layer = PoultryFarms(
        farms,
        Link(ode),
        susceptibility={"layers": spec(sus[0]), "broilers": spec(sus[1])},
        restock_days={"layers": spec(restock), "broilers": spec(restock)},
        beta_env=spec(beta_env, learnable=True),
        beta_farm=spec(beta_farm, learnable=True),
        restock_rate=spec(restock_rate),
    )
    return Model([ode, layer]), layer


def test_infection_follows_one_minus_exp_of_the_cumulative_hazard() -> None:
    """Constant pressure, no farm-to-farm spread, no restocking: P(infected by day t) = 1 − exp(−σ·β·y·t)."""
    n, days, beta, y = 20_000, 30, 0.002, 2.0
    m, _ = model(make_farms(n), y, beta_env=beta, sus=(2.0, 0.5))
    result = Simulation(m, seed=3).run(days)
    farms = make_farms(n)
    infected = (result.series["farms_infected"] + result.series["farms_depopulated"]).float()
    t = torch.arange(1, days + 1, dtype=torch.float64)
    n_layers = int((farms.kind == 0).sum())
    expected = n_layers * (1 - torch.exp(-2.0 * beta * y * t)) + (n - n_layers) * (
        1 - torch.exp(-0.5 * beta * y * t)
    )
    sd = torch.sqrt(expected * (1 - expected / n))
    assert torch.all((infected.double() - expected).abs() <= 4 * sd + 1), (infected[-1], expected[-1])
    assert int(result.series["new_farm_infections"].sum()) == int(infected[-1])


def test_the_kernel_hazard_is_the_boender_formula() -> None:
    """The farms' contact setting (a DistanceKernel) gives β_farm Σ_j K(d_ij) over the infected farms j."""
    farms = make_farms(50)
    _, layer = model(farms, 0.0, beta_env=0.0, beta_farm=0.002)
    kernel = layer.settings["kernel"]
    with torch.no_grad():
        pressure = kernel.add_sources(kernel.empty_pressure(), torch.tensor([4, 9]), torch.ones(2))
        hazard = kernel.force(pressure, layer.transmissibility())
    for i in (0, 1, 30):
        total = 0.0
        for j in (4, 9):
            d = math.hypot(float(farms.x[i] - farms.x[j]), float(farms.y[i] - farms.y[j]))
            total += 1 / (1 + (d / 1.9) ** 2.1)
        assert float(hazard[i]) == pytest.approx(0.002 * total, rel=1e-4)


def test_states_stay_integral_and_add_up_and_both_modes_agree() -> None:
    farms = make_farms(600, side_km=60.0)
    kwargs = dict(beta_env=0.0005, beta_farm=0.02, restock=20.0, restock_rate=0.2)
    fast_model, _fast_layer = model(farms, 1.0, **kwargs)  # type: ignore[arg-type]
    fast = Simulation(fast_model, seed=1).run(150)
    diff_model, _ = model(farms, 1.0, **kwargs)  # type: ignore[arg-type]
    diff = Simulation(diff_model, seed=1, grad="full").run(150)
    for name in ("farms_infected", "farms_depopulated", "new_farm_infections", "detections", "birds_culled"):
        a, b = fast.series[name].double(), diff.series[name].detach().double()
        assert torch.equal(a, b), name
    assert fast.series["detections"].dtype == torch.int64
    total = fast.series["farms_infected"] + fast.series["farms_depopulated"]
    assert int(total.min()) >= 0
    assert int(total.max()) <= 600
    assert int(fast.series["detections"].sum()) > 50  # outbreaks happened and were detected
    assert torch.equal(fast.series["detections_by_state"].sum(1), fast.series["detections"])
    assert torch.allclose(fast.series["birds_culled_by_kind"].sum(1), fast.series["birds_culled"].float())
    # restocked farms were infected again: more detections than farms ever depopulated at once
    assert int(fast.series["detections"].sum()) > int(fast.series["farms_depopulated"].max())


def test_culled_birds_are_the_flocks_of_detected_farms() -> None:
    farms = make_farms(500)
    m, _layer = model(farms, 1.0, beta_env=0.003)  # no restocking within the run
    sim = Simulation(m, seed=5)
    result = sim.run(60)
    state = sim.states[1]
    depopulated = state.stage == FarmStatus.D
    assert float(result.series["birds_culled"].double().sum()) == pytest.approx(
        float(farms.size[depopulated].double().sum())
    )
    assert int(result.series["detections"].sum()) == int(depopulated.sum())
    egg_capacity = float((farms.size * (farms.kind == 0)).sum() * 0.07)
    lost = float((farms.size * (farms.kind == 0) * depopulated).sum() * 0.07)
    assert float(state.output[:, 0].sum()) == pytest.approx(egg_capacity - lost, rel=1e-5)


@dataclass
class PriceLike(LayerState):
    relative: torch.Tensor


class FixedPrice(Layer):
    phase = Phase.OBSERVE

    def __init__(self, relative: float) -> None:
        super().__init__()
        self.relative = relative

    def init_state(self, ctx: StepContext) -> PriceLike:
        return PriceLike(torch.tensor(self.relative))

    def step(self, state: PriceLike, ctx: StepContext) -> PriceLike:
        return state


def test_higher_prices_speed_restocking() -> None:
    farms = make_farms(2_000)
    empty = []
    for relative in (1.0, 4.0):
        m, layer = model(farms, 1.0, beta_env=0.05, restock=10.0, restock_rate=0.02)
        price = FixedPrice(relative)
        layer.respond_to(Link(price), ["layers"])
        result = Simulation(Model([*m.ordered_layers(), price]), seed=2).run(80)
        empty.append(float(result.series["farms_depopulated"].float().mean()))
    assert empty[1] < 0.9 * empty[0]
    with pytest.raises(ValueError, match="kinds"):
        layer.respond_to(Link(price), ["ducks"])
