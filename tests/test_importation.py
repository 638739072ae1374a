"""Importation: seeding by group as a hazard, its known day-0 count, and its gradient."""

from __future__ import annotations

import pytest
import torch
from test_covid import _well_mixed

from populace import Model, ParamError, Simulation
from populace.calibrate import load_parameters
from populace.layers.covid import Covid
from populace.layers.importation import Importation


def _seeded(n: int, rate: list[float], *, beta: float | None = None) -> tuple[Model, Covid, Importation]:
    """A well-mixed population in two alternating groups, seeded only by ``rate`` on day 0."""
    model = _well_mixed(n, 0)
    covid = model.layers[0]
    assert isinstance(covid, Covid)
    if beta is not None:
        with torch.no_grad():
            covid.beta.fill_(beta)
    seeding = Importation(torch.arange(n) % 2, 2, torch.tensor(rate))
    return Model([covid, seeding]), covid, seeding


def test_day_zero_imports_match_their_hazard_and_nothing_after() -> None:
    """β = 0: only imports infect. Group 0 (rate 0) gets none; group 1 (2,000 per 100k) gets
    Σ 1 − exp(−0.02 × susceptibility) in expectation, on day 0 only, and no setting is credited."""
    n = 40_000
    model, covid, _ = _seeded(n, [0.0, 2000.0], beta=0.0)
    result = Simulation(model, seed=4).run(5)
    infections = result.series["new_infections"]
    group = torch.arange(n) % 2
    susceptibility = covid.probability(0, torch.arange(n))
    p = -torch.expm1(-0.02 * susceptibility[group == 1])
    expected, sd = float(p.sum()), float((p * (1 - p)).sum().sqrt())
    assert abs(int(infections[0]) - expected) < 4 * sd, (int(infections[0]), expected)
    assert int(infections[1:].sum()) == 0
    sim = Simulation(model, seed=4)
    sim.run(1)
    infected = sim.states[model.ordered_layers().index(covid)].stage != 0
    assert not bool(infected[group == 0].any())
    assert float(result.series["new_infections_by_setting"][0].sum()) == 0.0


def test_seeding_gradient_matches_finite_differences() -> None:
    """d(infections by day 20)/d(rate of group 1) by the Sellke estimator against CRN central differences
    (±20%: about ±40 seeds, so the difference is not a handful of chains), the means over seeds 3-8: one
    seed's difference is noisy (measured 3.23-3.73, AD 3.59-3.78; mean AD/FD 1.037)."""
    n, days, h, rate = 40_000, 20, 0.2, 1000.0
    ads, fds = [], []
    for seed in range(3, 9):
        model, _, seeding = _seeded(n, [rate, rate])
        seeding.rate.requires_grad_(True)
        Simulation(model, seed=seed, grad="full").run(days).series["new_infections"].sum().backward()
        assert seeding.rate.grad is not None
        ads.append(float(seeding.rate.grad[0, 1]))
        seeding.rate.requires_grad_(False)
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                seeding.rate[0, 1] = rate * (1 + sign * h)
            values.append(float(Simulation(model, seed=seed).run(days).series["new_infections"].sum()))
        fds.append((values[0] - values[1]) / (2 * h * rate))
    assert min(fds) > 0
    assert 0.9 < sum(ads) / sum(fds) < 1.1, (ads, fds)


def test_a_loaded_negative_rate_is_named_when_the_run_starts() -> None:
    model, _, seeding = _seeded(100, [1.0, 1.0])
    name = next(f"{n}.rate" for n, m in model.named_modules() if m is seeding)
    load_parameters(model, {name: [[-5.0, 1.0]]})  # a table has no spec bounds to check at load
    with pytest.raises(ParamError, match="rate: expected finite values"):
        Simulation(model, seed=0).run(1)


def test_bad_arguments_are_named() -> None:
    group = torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"rate: expected \[periods, 2\]"):
        Importation(group, 2, torch.zeros(3))
    with pytest.raises(ValueError, match="rate: expected finite values"):
        Importation(group, 1, torch.tensor([-1.0]))
    with pytest.raises(ValueError, match=r"group: expected values in 0\.\.0"):
        Importation(group + 1, 1, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="period must be positive"):
        Importation(group, 1, torch.tensor([1.0]), period=0)
