"""The COVID-19 layer: invariants, determinism, R0 and early growth against its parameters, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from populace import AgeMixing, Model, Places, RandomStreams, Simulation
from populace.estimators import estimator as estimator_named
from populace.layers.covid import AGE_TABLE, DURATIONS, Breakdown, Covid, Stage

CONTACTS = 10.0


def _ages(n: int, seed: int = 1) -> torch.Tensor:
    return (RandomStreams(seed, "cpu").uniform("ages", n) * 95).to(torch.uint8)


def _well_mixed(n: int, seeds: int, **kwargs: object) -> Model:
    age = _ages(n)
    everyone = torch.zeros(n, dtype=torch.int32)
    bands = (age.long() // 30).clamp(max=2)
    covid = Covid(
        age,
        [Places("everyone", everyone, contacts=CONTACTS)],
        initial_infections=seeds,
        breakdowns=[Breakdown("age", bands, ("0-29", "30-59", "60+"))],
        **kwargs,  # type: ignore[arg-type]
    )
    return Model([covid])


def test_stage_counts_are_conserved_and_match_the_agents() -> None:
    n = 20_000
    sim = Simulation(_well_mixed(n, 20), seed=3)
    result = sim.run(90)
    total = sum(result.series[s.name] for s in Stage)
    assert bool((total == n).all())
    state = sim.states[0]
    counted = torch.bincount(state.stage.long(), minlength=len(Stage))
    assert torch.equal(counted, state.counts)
    assert int(result.series["D"][-1]) == int(result.series["new_deaths"].sum())
    # breakdowns add up to the totals
    for event in ("new_infections", "new_symptomatic", "new_admissions", "new_deaths"):
        assert torch.equal(result.series[f"{event}_by_age"].sum(1), result.series[event])
    assert torch.allclose(
        result.series["new_infections_by_setting"].sum(1), result.series["new_infections"].float()
    )
    assert int(result.series["R"][-1]) > 0.5 * n  # an epidemic happened


def test_same_seed_same_run_and_a_different_seed_differs() -> None:
    a = Simulation(_well_mixed(10_000, 10), seed=5).run(60)
    b = Simulation(_well_mixed(10_000, 10), seed=5).run(60)
    c = Simulation(_well_mixed(10_000, 10), seed=6).run(60)
    assert all(torch.equal(a.series[k], b.series[k]) for k in a.series)
    assert not torch.equal(a.series["new_infections"], c.series["new_infections"])


def test_differentiable_mode_runs_the_same_forward() -> None:
    fast = Simulation(_well_mixed(10_000, 10), seed=2).run(60)
    diff = Simulation(_well_mixed(10_000, 10), seed=2, grad="full").run(60)
    for name in ("S", "E", "P", "A", "M", "MH", "H", "HD", "R", "D", "new_deaths_by_age"):
        assert torch.equal(fast.series[name].float(), diff.series[name].detach()), name


def test_ages_follow_the_published_severity_gradient() -> None:
    result = Simulation(_well_mixed(60_000, 60), seed=4).run(150)
    infected = result.series["new_infections_by_age"].sum(0).double()
    deaths = result.series["new_deaths_by_age"].sum(0).double()
    ifr = deaths / infected
    assert ifr[0] < ifr[1] < ifr[2]
    # the 60+ IFR implied by the table, over ages 60-94 (uniform), within sampling error
    expected = float(np.mean([AGE_TABLE["death"][min(a // 10, 9)] for a in range(60, 95)]))
    assert ifr[2] == pytest.approx(expected, rel=0.25)


# ---------------------------------------------------------------- R0 and growth rate from the parameters
def _lognormal_days(rng: np.random.Generator, mean: float, sd: float, n: int) -> np.ndarray:
    sigma2 = math.log1p((sd / mean) ** 2)
    draw = rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), n)
    return np.clip(np.round(draw), 1, 255).astype(int)


def _infectiousness_profile(beta: float, age: np.ndarray, asymptomatic: float) -> np.ndarray:
    """Expected new infections caused on day τ after one's own infection (index τ), in a fully susceptible
    well-mixed population, computed independently of the layer from its published tables (Monte Carlo)."""
    rng = np.random.default_rng(0)
    band = np.minimum(age // 10, 9)
    table = {k: np.asarray(v) for k, v in AGE_TABLE.items()}
    susceptibility = table["susceptibility"][band]
    mean_s = susceptibility.mean()
    m = 400_000
    # infected agents are drawn in proportion to susceptibility (the first generations of an epidemic)
    who = rng.choice(len(age), m, p=susceptibility / susceptibility.sum())
    b = band[who]
    d = {k: _lognormal_days(rng, spec[0].value, spec[1].value, m) for k, spec in DURATIONS.items()}
    symptomatic = rng.random(m) < table["symptomatic"][b]
    severe = rng.random(m) < table["severe"][b] / table["symptomatic"][b]
    latent = d["latent"]
    length = np.where(
        symptomatic, d["presymptomatic"] + np.where(severe, d["to_hospital"], d["recovery"]), d["recovery"]
    )
    weight = np.where(symptomatic, 1.0, asymptomatic)
    profile = np.zeros(latent.max() + length.max() + 2)
    for start, days, w in zip(latent, length, weight, strict=True):
        profile[start : start + days] += w
    # day τ: hazard β·c·infectiousness/N on each of N susceptibles of mean susceptibility s̄
    return beta * CONTACTS * mean_s * profile / m


def test_early_rt_and_growth_rate_match_the_parameters() -> None:
    """Well-mixed, no interventions: R0 = Σ_τ g(τ) and the growth rate r solving the discrete Euler–Lotka
    equation Σ_τ g(τ) e^{−rτ} = 1, with g the infectiousness profile from the layer's own parameters."""
    n, beta = 400_000, 0.03
    model = _well_mixed(n, 100)
    covid = model.ordered_layers()[0]
    with torch.no_grad():
        covid.beta.fill_(beta)  # type: ignore[operator]
    profile = _infectiousness_profile(beta, covid.band.numpy().astype(int) * 10 + 5, 0.5)  # type: ignore[operator]
    r0 = profile.sum()
    tau = np.arange(len(profile))
    low, high = 0.0, 1.0
    for _ in range(60):
        r = (low + high) / 2
        low, high = (r, high) if (profile * np.exp(-r * tau)).sum() > 1 else (low, r)
    result = Simulation(model, seed=11).run(45)
    rt = float(result.series["Rt"][15:35].float().mean())
    incidence = result.series["new_infections"].double()
    days = torch.arange(18, 38, dtype=torch.float64)
    slope = float(
        torch.linalg.lstsq(
            torch.stack([days, torch.ones_like(days)], 1), incidence[18:38].log()[:, None]
        ).solution[0]
    )
    assert 1 - float(result.series["S"][37]) / n < 0.1  # still nearly fully susceptible
    assert rt == pytest.approx(r0, rel=0.06), (rt, r0)
    assert slope == pytest.approx(r, rel=0.1), (slope, r)


# ---------------------------------------------------------------- gradients against finite differences
def _gradient_and_fd(
    model: Model, param: str, series: str, days: int, seed: int, h: float
) -> tuple[float, float]:
    """Autodiff of the summed series, and its central finite difference (step ``h`` relative) under common
    random numbers (the same seed at θ ± h)."""
    layer = model.ordered_layers()[0]
    tensor = getattr(layer, param)
    base = float(tensor.detach())
    Simulation(model, seed=seed, grad="full").run(days).series[series].sum().backward()
    ad = float(tensor.grad)
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            tensor.fill_(base * (1 + sign * h))
            values.append(float(Simulation(model, seed=seed).run(days).series[series].sum()))
        with torch.no_grad():
            tensor.fill_(base)
    return ad, (values[0] - values[1]) / (2 * h * base)


@pytest.mark.parametrize(
    ("param", "series", "h"),
    [
        ("symptomatic_scale", "new_symptomatic", 0.1),  # 0.9 × 1.1 < 1: no clamping
        ("severe_scale", "new_admissions", 0.5),  # counts are linear in the scale: a wide step, less noise
        ("fatality_scale", "new_deaths", 0.5),
    ],
)
def test_branch_gradients_match_finite_differences(param: str, series: str, h: float) -> None:
    """Branches alone (β = 0, half the population infected at day 0): the path weights of
    ``branch_weights`` are unbiased, so autodiff agrees with CRN central differences."""
    model = _well_mixed(40_000, 20_000)
    with torch.no_grad():
        model.ordered_layers()[0].beta.fill_(0.0)  # type: ignore[operator]
    ad, fd = _gradient_and_fd(model, param, series, days=80, seed=7, h=h)
    assert ad == pytest.approx(fd, rel=0.08), (ad, fd)


@pytest.mark.parametrize(
    ("estimator", "low", "high"), [("sellke", 0.9, 1.1), ("gumbel", 0.7, 1.1), ("smoothed", 0.2, 0.4)]
)
def test_beta_gradient_in_the_growth_phase_is_within_the_documented_bias(
    estimator: str, low: float, high: float
) -> None:
    """d(infections by day 30)/dβ chains the infection estimator through generations. Measured (Covid
    docstring): AD/FD 0.97 with the Sellke estimator (the default), 0.84 with hard Gumbel, 0.29 with the
    smoothed rule."""
    model = _well_mixed(40_000, 40, estimator=estimator_named(estimator))
    ad, fd = _gradient_and_fd(model, "beta", "new_infections", days=30, seed=3, h=0.1)
    assert fd > 0
    assert ad > 0
    assert low < ad / fd < high, (ad, fd)


def test_age_mixing_follows_its_matrix() -> None:
    """Two bands that only meet their own band: infection never crosses."""
    n = 4_000
    band = (torch.arange(n) >= n // 2).long()
    group = torch.zeros(n, dtype=torch.int64)
    mixing = AgeMixing("community", group, band, torch.tensor([[8.0, 0.0], [0.0, 8.0]]))
    age = torch.where(band == 0, 30, 40).to(torch.uint8)
    covid = Covid(age, [mixing], initial_infections=0)
    state = Simulation(Model([covid]), seed=0).states[0]
    seeds = torch.arange(10)  # all in band 0
    state.stage[seeds] = Stage.P
    pressure = mixing.add_sources(mixing.empty_pressure(), seeds, torch.ones(10))
    force = mixing.force(pressure, torch.tensor(0.1)).detach()
    assert float(force[band == 1].abs().max()) == 0.0
    assert float(force[band == 0].min()) == pytest.approx(0.1 * 8.0 * 10 / (n // 2))


def test_bad_arguments_are_named() -> None:
    age = _ages(100)
    places = Places("everyone", torch.zeros(100, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"initial_infections: expected 0\.\.100"):  # checked at set-up
        Simulation(Model([Covid(age, [places], initial_infections=101)]))
    with pytest.raises(ValueError, match="initial_infections"):
        Covid(age, [places], initial_infections=-1)
    with pytest.raises(ValueError, match="settings: names must be unique"):
        Covid(age, [places, places], initial_infections=1)
    with pytest.raises(ValueError, match="durations: unknown"):
        Covid(age, [places], initial_infections=1, durations={"incubation": DURATIONS["latent"]})
    with pytest.raises(ValueError, match="breakdown age: index values"):
        Breakdown("age", torch.full((100,), 3), ("a", "b"))


def test_expected_deaths_match_counted_deaths_and_their_gradient_is_pathwise() -> None:
    """``Covid(expected_deaths=True)``: β = 0 and half the population infected on day 0, so every death
    comes from those infections within 80 days. The day's expected deaths (P(admission | symptoms) ×
    P(death | admission) summed over the day's onsets) add up to the counted deaths within 4 standard
    deviations of a sum of Bernoulli draws, and their derivative to ``fatality_scale`` is exactly
    value / scale (pathwise, linear in the scale), with no draw in between."""
    assert "expected_deaths" not in _well_mixed(1_000, 10).observables()
    model = _well_mixed(40_000, 20_000, expected_deaths=True)
    layer = model.ordered_layers()[0]
    with torch.no_grad():
        layer.beta.fill_(0.0)  # type: ignore[operator]
    fast = Simulation(model, seed=7).run(80)
    expected = float(fast.series["expected_deaths"].sum())
    counted = float(fast.series["new_deaths"].sum())
    assert counted > 100
    assert abs(counted - expected) < 4 * math.sqrt(expected), (counted, expected)
    value = Simulation(model, seed=7, grad="full").run(80).series["expected_deaths"].sum()
    value.backward()
    scale = float(layer.fatality_scale.detach())  # type: ignore[operator]
    grad = float(layer.fatality_scale.grad)  # type: ignore[union-attr]
    assert float(value.detach()) == pytest.approx(expected, rel=1e-4)
    assert grad == pytest.approx(float(value.detach()) / scale, rel=1e-4)
