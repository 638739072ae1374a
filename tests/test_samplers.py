"""Gradient estimators of :mod:`populace.samplers`: exact forward samples, (un)biasedness against finite
differences with common random numbers (CRN), forward mode, and the bias through the bench-seir model.

All random numbers come from fixed seeds, so every number below is deterministic; the bands around the
measured values only absorb numerical drift (other BLAS/threading, small refactors). The measured values
(and more thorough ones) are recorded in the docstring of ``core/samplers.py`` and produced by
``benchmarks/estimator_bias.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from populace import Result, Smoothed, find_scenario, simulate
from populace.estimators import estimator as estimator_named
from populace.samplers import LaterInfections, SellkeThreshold, bernoulli, binomial

TAU = 0.1


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one torch thread (conftest)


def _population(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slopes ``a``, offsets ``b`` and uniforms ``u`` (float64) of ``n`` agents with
    p_i(θ) = σ(θ·a_i + b_i), a spread of probabilities over (0, 1) with dp/dθ = a·p·(1 − p) > 0."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(n, generator=g, dtype=torch.float64)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return a, b, u


def _exact_dsum(a: torch.Tensor, b: torch.Tensor, theta: float, n: torch.Tensor | float = 1.0) -> float:
    """d/dθ of E[Σ x_i] = Σ n_i·p_i(θ): the derivative every unbiased estimator must match on average."""
    p = torch.sigmoid(theta * a + b)
    return float((n * a * p * (1 - p)).sum())


def _reverse(fn: Callable[[torch.Tensor], torch.Tensor], theta: float) -> float:
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    fn(th).backward()
    assert th.grad is not None
    return float(th.grad)


# ---------------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("estimator", ["smoothed", "gumbel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bernoulli_forward_is_the_exact_sample(estimator: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.rand(10_000, generator=g, dtype=dtype)
    p[:3] = torch.tensor([0.0, 1.0, 0.5], dtype=dtype)
    u = torch.rand(10_000, generator=g, dtype=dtype)
    p.requires_grad_(True)
    x = bernoulli(p, u, estimator=estimator, tau=TAU)
    assert x.dtype == dtype
    assert x.requires_grad
    assert torch.equal(x.detach(), (u < p.detach()).to(dtype))
    assert x[0] == 0
    assert x[1] == 1


def test_bernoulli_rejects_unknown_estimator() -> None:
    with pytest.raises(ValueError, match="estimator"):
        bernoulli(torch.full((3,), 0.5), torch.rand(3), estimator="straight-through")


def test_binomial_forward_is_an_integer_count_in_range() -> None:
    g = torch.Generator().manual_seed(2)
    n = torch.randint(0, 40, (20_000,), generator=g).to(torch.float32)
    p = torch.rand(20_000, generator=g)
    p[:2] = torch.tensor([0.0, 1.0])
    n[:2] = 25.0
    k = binomial(n, p.clone().requires_grad_(True), generator=g)
    assert k.requires_grad
    assert k.dtype == torch.float32
    k = k.detach()
    assert torch.equal(k, k.round())
    assert bool((k >= 0).all())
    assert bool((k <= n).all())
    assert k[0] == 0
    assert k[1] == 25
    assert bool((k[n == 0] == 0).all())
    # and it is Binomial(n, p): the total is within 5 standard deviations of Σ n·p
    mean, sd = float((n * p).sum()), math.sqrt(float((n * p * (1 - p)).sum()))
    assert abs(float(k.sum()) - mean) < 5 * sd


# ------------------------------------------------------------------------------------ single draw, bias

N_DRAW = 200_000
THETA = 0.5
H = 0.05


def _crn_fd(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor, theta: float, h: float) -> float:
    """Central finite difference of Σ 1[u_i < p_i(θ)] with the same uniforms at θ ± h."""
    up = (u < torch.sigmoid((theta + h) * a + b)).sum()
    down = (u < torch.sigmoid((theta - h) * a + b)).sum()
    return float(up - down) / (2 * h)


@pytest.mark.parametrize(("estimator", "band"), [("smoothed", 0.01), ("gumbel", 0.03)])
def test_bernoulli_single_draw_matches_crn_finite_differences(estimator: str, band: float) -> None:
    # Measured (seed 0, N = 200k): AD/exact − 1 = −0.04% (smoothed), −1.31% (gumbel, τ = 0.1: its small
    # bias plus its larger noise); CRN FD/exact − 1 = −1.19% (h = 0.05: the FD's own noise, ~4,000
    # agents change state); AD/FD − 1 = +1.16% (smoothed), −0.13% (gumbel).
    a, b, u = _population(N_DRAW)
    ad = _reverse(
        lambda th: bernoulli(torch.sigmoid(th * a + b), u, estimator=estimator, tau=TAU).sum(), THETA
    )
    fd = _crn_fd(a, b, u, THETA, H)
    exact = _exact_dsum(a, b, THETA)
    assert abs(fd / exact - 1) < 0.03  # the reference itself is sound
    assert abs(ad / fd - 1) < 0.04
    assert abs(ad / exact - 1) < band


def test_smoothed_bernoulli_is_exactly_unbiased_on_stratified_uniforms() -> None:
    # With u on a regular grid the sum over agents *is* the expectation over u (up to the grid), so
    # unbiasedness is checked without sampling noise: Σ ½[x/p + (1−x)/(1−p)] = N at any p.
    n = 100_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    for p0 in (0.001, 0.01, 0.3, 0.5, 0.9):
        p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
        bernoulli(p.expand(n), u, estimator="smoothed").sum().backward()
        assert p.grad is not None
        assert float(p.grad) / n == pytest.approx(1.0, abs=1e-4)


# Hard Gumbel-softmax, τ = 0.1: relative bias of E_u[dx/dp] for one draw, measured on a grid of 10⁶
# stratified uniforms (numerical quadrature of the expectation, no sampling noise). It differentiates a
# smoothed step, so it is biased, but only slightly: for p → 0 the bias tends to πτ/sin(πτ) − 1 = +1.66%.
GUMBEL_SINGLE_DRAW_BIAS = {0.001: 0.01654, 0.01: 0.01561, 0.1: 0.00743, 0.5: -0.00804, 0.9: 0.00743}


@pytest.mark.parametrize(("p0", "measured"), sorted(GUMBEL_SINGLE_DRAW_BIAS.items()))
def test_hard_gumbel_single_draw_bias_is_the_measured_one(p0: float, measured: float) -> None:
    n = 1_000_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    bernoulli(p.expand(n), u, estimator="gumbel", tau=TAU).sum().backward()
    assert p.grad is not None
    bias = float(p.grad) / n - 1
    assert bias == pytest.approx(measured, abs=5e-4)
    if p0 <= 0.001:
        assert bias == pytest.approx(math.pi * TAU / math.sin(math.pi * TAU) - 1, abs=2e-3)


def test_binomial_single_draw_is_unbiased() -> None:
    # Measured (seeds as below, N = 200k): AD/exact − 1 = −0.02%; CRN FD/exact − 1 = +0.18% (h = 0.05).
    # torch.binomial with the same generator seed at θ ± h couples the draws only loosely (36% of the
    # counts move against the change in p at h = 0.05), so the FD is noisy and only checked loosely;
    # the tight check is against the exact derivative Σ n·dp/dθ of the expectation.
    a, b, _ = _population(N_DRAW)
    n = torch.randint(1, 50, (N_DRAW,), generator=torch.Generator().manual_seed(3)).to(torch.float64)

    def total(th: torch.Tensor) -> torch.Tensor:
        return binomial(n, torch.sigmoid(th * a + b), generator=torch.Generator().manual_seed(7)).sum()

    ad = _reverse(total, THETA)
    with torch.no_grad():
        fd = float(
            total(torch.tensor(THETA + H, dtype=torch.float64))
            - total(torch.tensor(THETA - H, dtype=torch.float64))
        ) / (2 * H)
    exact = _exact_dsum(a, b, THETA, n)
    assert abs(ad / exact - 1) < 0.005
    assert abs(ad / fd - 1) < 0.05


# -------------------------------------------------------------------------------------------- forward mode


def _sampler_sums() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    a, b, u = _population(5_000, seed=4)
    n = torch.randint(0, 30, (5_000,), generator=torch.Generator().manual_seed(5)).to(torch.float64)
    return {
        "smoothed": lambda th: (a * bernoulli(torch.sigmoid(th * a + b), u, estimator="smoothed")).sum(),
        "gumbel": lambda th: (a * bernoulli(torch.sigmoid(th * a + b), u, estimator="gumbel", tau=TAU)).sum(),
        "binomial": lambda th: (
            a * binomial(n, torch.sigmoid(th * a + b), generator=torch.Generator().manual_seed(6))
        ).sum(),
    }


@pytest.mark.parametrize("name", ["smoothed", "gumbel", "binomial"])
def test_forward_mode_matches_reverse_mode(name: str) -> None:
    fn = _sampler_sums()[name]
    theta = torch.tensor(0.3, dtype=torch.float64)
    value, tangent = torch.func.jvp(fn, (theta,), (torch.ones((), dtype=torch.float64),))
    reverse = _reverse(fn, 0.3)
    assert float(value) == float(fn(theta))
    assert reverse != 0
    assert float(tangent) == pytest.approx(reverse, rel=1e-10)
    assert float(torch.func.grad(fn)(theta)) == pytest.approx(reverse, rel=1e-10)
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        out = fn(fwad.make_dual(theta, torch.ones((), dtype=torch.float64)))
        assert float(fwad.unpack_dual(out).tangent) == pytest.approx(reverse, rel=1e-10)


# ------------------------------------------------------------------------------ through the simulator

SEIR_AGENTS = 10_000
SEIR_DAYS = 50
SEIR_SEEDS = range(16)
SEIR_REL_H = 0.10  # central FD step, relative to β
# Relative bias of Σ_seeds AD / Σ_seeds FD − 1 for d(attack at day 50)/dβ, bench-seir, 10k agents
# (population seed 1), run seeds 0..15, measured: smoothed −0.605, gumbel (τ = 0.1) +0.021. Over 96
# seeds: smoothed −0.598 (bootstrap s.d. 0.004), gumbel +0.049 (s.d. 0.018).
SEIR_BIAS = {"smoothed": (-0.605, 0.06), "gumbel": (0.021, 0.12)}


@pytest.fixture(scope="module")
def seir_gradients() -> dict[str, list[float]]:
    """Per run seed: AD of the attack (agents ever infected at the last day) w.r.t. β for each
    estimator, and the CRN central FD of the same attack (same seed at β ± h, fast mode)."""
    scenario = find_scenario("bench-seir")
    model = scenario().build(SEIR_AGENTS, scenario.options(), seed=1, device="cpu")
    seir = model.layers[0]
    beta = seir.beta
    beta0 = float(beta.detach())

    def attack(result: Result) -> torch.Tensor:
        # N − S on the last day. Only the last row: in fast mode the earlier rows of a series currently
        # all alias the final counts (observe() returns views of counts updated in place).
        return SEIR_AGENTS - result.series["S"][-1]

    def set_beta(value: float) -> None:
        with torch.no_grad():
            beta.fill_(value)

    out: dict[str, list[float]] = {"smoothed": [], "gumbel": [], "fd": [], "ad_value": [], "fast_value": []}
    try:
        for seed in SEIR_SEEDS:
            for estimator in ("smoothed", "gumbel"):
                seir.estimator = estimator_named(estimator)
                model.zero_grad()
                value = attack(simulate(model, SEIR_DAYS, seed=seed, grad="full"))
                value.backward()
                assert beta.grad is not None
                out[estimator].append(float(beta.grad))
            out["ad_value"].append(float(value.detach()))
            ends = []
            for v in (beta0 * (1 + SEIR_REL_H), beta0 * (1 - SEIR_REL_H)):
                set_beta(v)
                ends.append(float(attack(simulate(model, SEIR_DAYS, seed=seed))))
            set_beta(beta0)
            out["fd"].append((ends[0] - ends[1]) / (2 * SEIR_REL_H * beta0))
            if seed < 2:
                out["fast_value"].append(float(attack(simulate(model, SEIR_DAYS, seed=seed))))
    finally:
        set_beta(beta0)
        seir.estimator = Smoothed()
    return out


def test_seir_grad_mode_forward_equals_fast_mode(seir_gradients: dict[str, list[float]]) -> None:
    # The FD reference runs in fast mode; it is only a valid reference if the forward values agree.
    fast = seir_gradients["fast_value"]
    assert fast == seir_gradients["ad_value"][: len(fast)]
    assert all(v > 100 for v in seir_gradients["ad_value"])  # epidemics took off: a real signal
    assert all(fd > 0 for fd in seir_gradients["fd"])


@pytest.mark.parametrize("estimator", ["smoothed", "gumbel"])
def test_seir_estimator_bias_is_the_measured_one(
    seir_gradients: dict[str, list[float]], estimator: str
) -> None:
    measured, margin = SEIR_BIAS[estimator]
    bias = sum(seir_gradients[estimator]) / sum(seir_gradients["fd"]) - 1
    assert bias == pytest.approx(measured, abs=margin), f"{estimator}: bias {bias:+.3f}"


def test_later_infections_start_afresh_with_each_backward_pass() -> None:
    """Reverse mode visits days last to first: reaching a day at or after the last one seen is a new pass,
    which must not read the previous pass's values (a pass that stops short of the later days would)."""
    later = LaterInfections()
    like = torch.zeros(3)
    own = later.values(29, like)
    own[1] = 5.0
    assert later.values(12, like)[1] == 5.0  # the same pass, an earlier day
    assert later.values(20, like).tolist() == [0.0, 0.0, 0.0]  # a new pass


def test_sellke_gradient_is_the_earlier_infection_value() -> None:
    """Three agents over days 6 and 7: the hazard's gradient is (the day's mean value of infection) − (the
    agent's own later value) for the agents still waiting after the day, and 0 for the others."""
    later = LaterInfections()
    hazard = torch.tensor([0.5, 0.2, 0.1], requires_grad=True)
    # day 6: agent 0 infected; agents 1 and 2 wait
    day6 = SellkeThreshold.apply(
        hazard * 1, torch.tensor([True, False, False]), torch.tensor([False, True, True]), 6, later
    )
    # day 7 (its hazard depends on day 6's infections, as in a simulation): agent 1 infected; agent 2 waits
    day7 = SellkeThreshold.apply(
        hazard + 0 * day6.sum(),
        torch.tensor([False, True, False]),
        torch.tensor([False, False, True]),
        7,
        later,
    )
    (
        2.0 * day6[0] + 3.0 * day7[1]
    ).backward()  # values of infection: agent 0 on day 6: 2, agent 1 on day 7: 3
    # day 7: agent 2: 3 − 0; day 6: agent 1: 2 − 3 (infected later anyway), agent 2: 2 − 0
    assert hazard.grad is not None
    assert hazard.grad.tolist() == [0.0, -1.0, 5.0]


def test_sellke_values_an_earlier_infection_within_the_agents_group() -> None:
    """Groups 0 and 1 each have an infection today (values 2 and 6); group 2 has none and takes the day's
    overall mean (4). Every waiting agent gets its group's value (no later infections here)."""
    later = LaterInfections(torch.tensor([0, 1, 0, 1, 2]))
    hazard = torch.full((5,), 0.1, requires_grad=True)
    infected = torch.tensor([True, True, False, False, False])
    x = SellkeThreshold.apply(hazard * 1, infected, ~infected, 3, later)
    (2.0 * x[0] + 6.0 * x[1]).backward()
    assert hazard.grad is not None
    assert hazard.grad.tolist() == [0.0, 0.0, 2.0, 6.0, 4.0]
