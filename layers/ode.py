"""A continuous-time compartment model stepped inside the daily loop, differentiable end to end.

A :class:`VectorField` is a ``torch.nn.Module`` computing dy/dt = f(t, y) from its parameters (``Param``
specs) and any forcing it holds (e.g. an observed series interpolated in time). The :class:`ODE` layer
integrates it over each simulated day, from t = day to t = day + 1 (t in days), with

* ``"rk4"`` — the classical fourth-order Runge–Kutta method with ``substeps`` equal steps a day (global
  error O(h⁴); ``tests/test_ode.py`` measures the order against ``torch.linalg.matrix_exp``), or
* ``"dopri5"`` — Dormand–Prince 5(4) with adaptive steps (error per step controlled by ``rtol``/``atol``
  on the 5th-order solution, FSAL, the standard step-size controller with safety 0.9 and growth in
  [0.2, 5]).

Both are written with out-of-place tensor arithmetic, so reverse mode (``backward``) and forward mode
(``torch.func.jvp``) differentiate through every stage ("discretise-then-optimise"). The adaptive
controller's step sizes are computed from detached error norms: they are treated as constants by the
derivative, which is then the exact derivative of the discrete scheme actually run.

Other layers read the solution through a :class:`~populace.model.Link` to the ODE: ``ODEState.y``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from populace.model import Layer, LayerState, Phase, StepContext
from populace.params import Param

__all__ = ["ODE", "ODEState", "VectorField", "dopri5", "rk4"]

Field = Callable[[float, torch.Tensor], torch.Tensor]


class VectorField(nn.Module, abc.ABC):
    """dy/dt = f(t, y): abstract. Subclasses register their parameters with
    :func:`populace.register_params` and name the components of ``y``.

    Attributes:
        names: names of the entries of ``y`` (its length is the state size).
    """

    names: tuple[str, ...]

    @abc.abstractmethod
    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        """``float32[len(names)]`` derivative at time ``t`` (days since day 0)."""

    @abc.abstractmethod
    def initial(self, device: torch.device) -> torch.Tensor:
        """``float32[len(names)]`` state at t = 0."""


def rk4(f: Field, t0: float, y0: torch.Tensor, t1: float, steps: int) -> torch.Tensor:
    """y(t1) from y(t0) by ``steps`` equal classical Runge–Kutta steps."""
    if steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps}")
    h = (t1 - t0) / steps
    y = y0
    for i in range(steps):
        t = t0 + i * h
        k1 = f(t, y)
        k2 = f(t + h / 2, y + (h / 2) * k1)
        k3 = f(t + h / 2, y + (h / 2) * k2)
        k4 = f(t + h, y + h * k3)
        y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


# Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae", J. Comput. Appl. Math. 6:19-26.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4, strict=True))


@dataclass
class AdaptiveStats:
    """What the last :func:`dopri5` call did: accepted and rejected steps, last accepted step size."""

    accepted: int = 0
    rejected: int = 0
    last_h: float = 0.0


def dopri5(
    f: Field,
    t0: float,
    y0: torch.Tensor,
    t1: float,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    h0: float | None = None,
    max_steps: int = 10_000,
    stats: AdaptiveStats | None = None,
) -> torch.Tensor:
    """y(t1) from y(t0) by adaptive Dormand–Prince 5(4) steps (local extrapolation: the 5th-order
    solution is propagated). ``h0``: first trial step (default: the whole interval)."""
    if t1 == t0:
        return y0
    span = t1 - t0
    h = span if h0 is None else min(h0, span)
    t, y = t0, y0
    k1 = f(t, y)
    stats = stats if stats is not None else AdaptiveStats()
    for _ in range(max_steps):
        h = min(h, t1 - t)
        ks = [k1]
        for i in range(1, 7):
            inc = sum((a * k for a, k in zip(_A[i], ks, strict=False) if a != 0.0), torch.zeros_like(y))
            ks.append(f(t + _C[i] * h, y + h * inc))
        y_new = y + h * sum((b * k for b, k in zip(_B5, ks, strict=True) if b != 0.0), torch.zeros_like(y))
        err = h * sum((e * k for e, k in zip(_E, ks, strict=True) if e != 0.0), torch.zeros_like(y))
        with torch.no_grad():
            scale = atol + rtol * torch.maximum(y.detach().abs(), y_new.detach().abs())
            norm = float(torch.sqrt(torch.mean((err.detach() / scale) ** 2)))
        if norm <= 1.0:
            t, y = t + h, y_new
            k1 = ks[6]  # first same as last
            stats.accepted += 1
            stats.last_h = h
            if t >= t1 - 1e-12 * abs(span):
                return y
        else:
            stats.rejected += 1
        factor = 5.0 if norm == 0 else min(5.0, max(0.2, 0.9 * norm ** (-1 / 5)))
        h = h * factor if math.isfinite(norm) else h * 0.2
    raise RuntimeError(f"dopri5: more than {max_steps} steps from t={t0} to t={t1} (at t={t}, h={h:g})")


@dataclass
class ODEState(LayerState):
    """State of :class:`ODE`.

    Attributes:
        y: ``float32[k]`` solution at the end of the last simulated day (carries gradients when
            differentiable).
        h: ``float64[]`` the adaptive solver's last accepted step (its first trial step next day).
    """

    y: torch.Tensor
    h: torch.Tensor


class ODE(Layer):
    """Integrates ``field`` over each day (see module docs).

    Args:
        field: the vector field; its parameters (specs) are the layer's.
        solver: ``"rk4"`` or ``"dopri5"``.
        substeps: RK4 steps a day.
        rtol, atol: tolerances of ``"dopri5"``.
        name: the reported series: ``name`` is ``y`` (a vector labelled by ``field.names``).
    """

    phase = Phase.MOBILITY

    def __init__(
        self,
        field: VectorField,
        *,
        solver: str = "rk4",
        substeps: int = 4,
        rtol: float = 1e-5,
        atol: float = 1e-7,
        name: str = "ode",
    ) -> None:
        super().__init__()
        if solver not in ("rk4", "dopri5"):
            raise ValueError(f"solver: expected 'rk4' or 'dopri5', got {solver!r}")
        if substeps < 1:
            raise ValueError(f"substeps: expected a positive integer, got {substeps}")
        self.field = field
        self.solver = solver
        self.substeps = substeps
        self.rtol, self.atol = rtol, atol
        self.name = name
        self.param_specs: dict[
            str, Param
        ] = {}  # the field's specs are listed under it (``<layer name>.field.<name>``)

    def observables(self) -> tuple[str, ...]:
        return (self.name,)

    def labels(self) -> dict[str, tuple[str, ...]]:
        return {self.name: tuple(self.field.names)}

    def observe(self, state: ODEState) -> dict[str, torch.Tensor]:
        return {self.name: state.y.clone()}

    def init_state(self, ctx: StepContext) -> ODEState:
        y = self.field.initial(ctx.streams.device)
        if len(y) != len(self.field.names):
            raise ValueError(
                f"{type(self.field).__name__}.initial: {len(y)} values for {len(self.field.names)}"
            )
        return ODEState(y=y, h=torch.tensor(1.0, dtype=torch.float64))

    def integrate(
        self, y: torch.Tensor, t0: float, t1: float, state_h: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The solution at ``t1`` from ``y`` at ``t0`` with this layer's solver."""
        if self.solver == "rk4":
            return rk4(self.field, t0, y, t1, self.substeps)
        stats = AdaptiveStats()
        h0 = float(state_h) if state_h is not None else None
        out = dopri5(self.field, t0, y, t1, rtol=self.rtol, atol=self.atol, h0=h0, stats=stats)
        if state_h is not None:
            state_h.fill_(stats.last_h if stats.last_h > 0 else float(state_h))
        return out

    def step(self, state: ODEState, ctx: StepContext) -> ODEState:
        y = self.integrate(state.y, float(ctx.day), float(ctx.day + 1), state.h)
        return ODEState(y=y, h=state.h)
