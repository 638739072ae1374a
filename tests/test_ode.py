"""The ODE layer against analytic solutions: convergence order of RK4, accuracy of adaptive Dormand–Prince,
gradients through the solver, and the layer in the daily loop."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from populace import Model, Param, Simulation, register_param
from populace.layers.ode import ODE, AdaptiveStats, VectorField, dopri5, rk4

# A damped rotation: y' = A y, solution expm(A t) y0 (computed in float64 by torch.linalg.matrix_exp).
A = torch.tensor([[-0.3, 2.0], [-2.0, -0.3]], dtype=torch.float64)
Y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)


def linear(t: float, y: torch.Tensor) -> torch.Tensor:
    return A @ y


def exact(t: float) -> torch.Tensor:
    return torch.linalg.matrix_exp(A * t) @ Y0


def test_rk4_converges_with_order_four() -> None:
    errors = [float((rk4(linear, 0.0, Y0, 5.0, n) - exact(5.0)).norm()) for n in (25, 50, 100, 200)]
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(3.85 < p < 4.15 for p in orders), orders
    assert errors[-1] < 2e-7


def test_dopri5_meets_its_tolerance_and_adapts() -> None:
    for rtol in (1e-4, 1e-7, 1e-10):
        stats = AdaptiveStats()
        y = dopri5(linear, 0.0, Y0, 5.0, rtol=rtol, atol=rtol * 1e-2, stats=stats)
        err = float((y - exact(5.0)).norm() / exact(5.0).norm())
        assert err < 50 * rtol, (rtol, err)
        assert stats.accepted > 0
    # tighter tolerance, more steps; a stiff-ish decay forces rejections from a too-large first step
    coarse, fine = AdaptiveStats(), AdaptiveStats()
    dopri5(linear, 0.0, Y0, 5.0, rtol=1e-4, stats=coarse)
    dopri5(linear, 0.0, Y0, 5.0, rtol=1e-9, stats=fine)
    assert fine.accepted > 3 * coarse.accepted
    assert coarse.rejected >= 1  # the first trial step (the whole interval) is too large


def test_dopri5_is_fifth_order_on_a_fixed_grid_of_steps() -> None:
    """With a huge tolerance every first trial step is accepted: the global error of the propagated
    5th-order solution then falls with order 5."""
    errors = []
    for n in (40, 80, 160):
        y = Y0
        for i in range(n):
            y = dopri5(linear, 5.0 * i / n, y, 5.0 * (i + 1) / n, rtol=1e9, atol=1e9)
        errors.append(float((y - exact(5.0)).norm()))
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(4.85 < p < 5.15 for p in orders), orders


class Decay(VectorField):
    """y' = −k·y (+ a constant source s): y(t) = s/k + (y0 − s/k)·exp(−k t)."""

    k: torch.Tensor

    def __init__(self, k: float, y0: float, source: float = 0.0) -> None:
        super().__init__()
        self.names = ("y",)
        self.y0, self.source = y0, source
        register_param(self, "k", Param(k, (0.0, 10.0), "1/day", doc="decay rate (test)", learnable=True))

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return self.source - self.k * y

    def initial(self, device: torch.device) -> torch.Tensor:
        return torch.full((1,), self.y0, device=device)


@pytest.mark.parametrize("solver", ["rk4", "dopri5"])
def test_ode_layer_in_the_daily_loop_matches_the_solution_and_its_gradient(solver: str) -> None:
    k, y0, s, days = 0.3, 2.0, 0.5, 20
    ode = ODE(Decay(k, y0, s), solver=solver, substeps=8, rtol=1e-7, atol=1e-9)
    result = Simulation(Model([ode]), grad="full").run(days)
    y = result.series["ode"][:, 0]
    t = torch.arange(1, days + 1, dtype=torch.float64)
    truth = s / k + (y0 - s / k) * torch.exp(-k * t)
    assert torch.allclose(y.detach().double(), truth, rtol=1e-5)
    # d y(T) / dk = −s/k² + (s/k² − (y0 − s/k)·T)·exp(−kT)
    (grad,) = torch.autograd.grad(y[-1], [ode.field.k])
    T = float(days)
    expected = -s / k**2 + (s / k**2 - (y0 - s / k) * T) * math.exp(-k * T)
    assert float(grad) == pytest.approx(expected, rel=1e-4)
    assert result.labels["ode"] == ("y",)


def test_ode_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="solver"):
        ODE(Decay(0.1, 1.0), solver="euler")
    with pytest.raises(ValueError, match="steps"):
        rk4(linear, 0.0, Y0, 1.0, 0)
