"""Every installed scenario at tiny scale (as Mesa's ``test_examples.py``): the tests are parametrised by
``populace.scenario.scenarios()`` when they are collected, so a new scenario is tested without anyone adding
it here.

Each scenario is built with its default options, run for 40 days in fast mode and in differentiable mode, and
checked for invariants: finite series, stage counts that add up to the agents every day, same seed => same
series, differentiable series equal to fast ones, and a finite gradient for every scalar learnable parameter.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from populace import Model, Result, Simulation, simulate
from populace.layers import Infection
from populace.scenario import scenarios, tiny_options

AGENTS = 30_000
"""At most (a scenario's default may be smaller). The fatality parameter of nyc-covid and classroom is reached
only through a hospital admission: 30,000 agents and 40 days give nyc-covid 7 admissions (classroom 5) at this
seed. If a change of random streams leaves none, the gradient test names the parameter: pick another seed."""
DAYS = 40
SEED = 1
SERIES_RTOL = 1e-6
NAMES = sorted(scenarios())


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULACE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one torch thread (conftest)


def _agents(name: str) -> int:
    return min(scenarios()[name].default_agents, AGENTS)


def _build(name: str, seed: int = SEED) -> Model:
    scenario = scenarios()[name]
    return scenario().build(_agents(name), tiny_options(scenario), seed=seed, device="cpu")


@pytest.fixture(scope="module")
def fast() -> dict[str, Result]:
    """Fast-mode results by scenario, each run once for the tests below."""
    return {}


def _fast(name: str, cache: dict[str, Result]) -> Result:
    if name not in cache:
        cache[name] = simulate(_build(name), DAYS, seed=SEED)
    return cache[name]


def _integer(value: torch.Tensor) -> bool:
    return not (value.is_floating_point() or value.is_complex())


@pytest.mark.parametrize("name", NAMES)
def test_fast_mode_is_finite_and_the_same_seed_gives_the_same_series(
    name: str, fast: dict[str, Result]
) -> None:
    first = _fast(name, fast)
    again = simulate(_build(name), DAYS, seed=SEED)
    assert first.series, f"{name}: the model reports no series"
    for key, value in first.series.items():
        assert len(value) == DAYS, key
        assert torch.isfinite(value.double()).all(), f"{name}: {key} is not finite: {value}"
        assert value.dtype == again.series[key].dtype, key
        assert torch.equal(value, again.series[key]), f"{name}: {key} differs between two runs with one seed"


@pytest.mark.parametrize("name", NAMES)
def test_stage_counts_add_up_to_the_agents_every_day(name: str, fast: dict[str, Result]) -> None:
    """Every disease layer's stage codes, counted, equal its stage counts and add up to its agents every day;
    series named after stages report those counts; stepping a day at a time gives the one-call run."""
    model = _build(name)
    diseases = [(i, layer) for i, layer in enumerate(model.ordered_layers()) if isinstance(layer, Infection)]
    assert diseases, f"{name}: no disease layer (populace.layers.Infection)"
    sim = Simulation(model, seed=SEED)
    for day in range(DAYS):
        result = sim.run(1)
        for index, layer in diseases:
            state = sim.states[index]
            stage = layer.stage(state)
            counts = torch.bincount(stage.long(), minlength=len(state.counts))
            where = f"{name} day {day}, {layer.name}"
            assert len(counts) == len(state.counts), f"{where}: a stage code past its {len(state.counts)}"
            assert torch.equal(counts, state.counts), f"{where}: counted {counts}, kept {state.counts}"
            assert int(counts.sum()) == layer.n_agents, where
            for s in (s for s in layer.stage_names if s in model.observables()):
                count = int(counts[layer.stage_names.index(s)])
                assert int(result.series[s][0]) == count, f"{where}: {s} reported {result.series[s][0]}"
        # stepping one day at a time gives the one-call run's series
        for key, value in result.series.items():
            assert torch.equal(value[0], _fast(name, fast).series[key][day]), f"{name} day {day}: {key}"


@pytest.fixture(scope="module")
def differentiable() -> dict[str, tuple[Model, Result]]:
    return {}


def _differentiable(name: str, cache: dict[str, tuple[Model, Result]]) -> tuple[Model, Result]:
    if name not in cache:
        model = _build(name)
        cache[name] = model, Simulation(model, seed=SEED, grad="full").run(DAYS)
    return cache[name]


@pytest.mark.parametrize("name", NAMES)
def test_differentiable_series_equal_the_fast_ones(
    name: str, fast: dict[str, Result], differentiable: dict[str, tuple[Model, Result]]
) -> None:
    expected = _fast(name, fast).series
    _, result = _differentiable(name, differentiable)
    assert list(result.series) == list(expected)
    for key, value in result.series.items():
        value = value.detach().double()
        assert torch.isfinite(value).all(), f"{name}: {key} is not finite in differentiable mode: {value}"
        want = expected[key].double()
        if _integer(expected[key]):
            assert torch.equal(value, want), (
                f"{name}: {key}: differentiable {value.tolist()} != fast {want.tolist()}"
            )
        else:
            torch.testing.assert_close(value, want, rtol=SERIES_RTOL, atol=0.0, msg=f"{name}: {key}")


@pytest.mark.parametrize("name", NAMES)
def test_every_scalar_learnable_parameter_gets_a_finite_gradient(
    name: str, differentiable: dict[str, tuple[Model, Result]]
) -> None:
    model, result = _differentiable(name, differentiable)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and p.dim() == 0}
    assert params, f"{name}: no scalar learnable parameter"
    # One total outcome that reaches every parameter in a tiny run: the sum of every series' total (a default
    # output such as nyc-covid's total:new_deaths is still zero after 40 days of 30,000 agents).
    carried = [value.sum() for value in result.series.values() if value.requires_grad]
    assert carried, f"{name}: no series carries a gradient"
    outcome = torch.stack([v.to(torch.float32) for v in carried]).sum()
    grads = torch.autograd.grad(outcome, list(params.values()), allow_unused=True)
    missing = [n for n, g in zip(params, grads, strict=True) if g is None]
    assert not missing, f"{name}: no gradient reaches {missing}"
    bad = {n: float(g) for n, g in zip(params, grads, strict=True) if g is not None and not torch.isfinite(g)}
    assert not bad, f"{name}: gradients not finite: {bad}"
