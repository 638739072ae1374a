"""Wild-bird HPAI infection pressure by state: a linear, seasonally forced ODE on migration flyways.

For the pressure y_s of state s (in detection-equivalents: a day's wild-bird detections sustained for
1/γ days give y = detections/γ)::

    dy_s/dt = ι · D_s(t) − γ · y_s + m(t) · (ȳ_F(s) − y_s),    m(t) = m₀ · (1 + a · cos(4π (t − φ) / 365.25))

* D_s(t): APHIS wild-bird detections in s per day (by collection date), linearly interpolated in t — the
  observed forcing; ι converts sampled detections into pressure (surveillance samples a fraction of
  infected birds, and that fraction varies by state and season — a limit of this forcing).
* γ: decay of the pressure (birds recover, die or move on; virus decays in water).
* ȳ_F(s): the mean pressure over the states of s's flyway; m(t) mixes the flyway's states twice a year,
  with peaks at day-of-year φ (spring) and φ + 182.6 (autumn migration).

Default values are assumptions (no direct estimates exist for these aggregate rates); they are
learnable parameters for calibration and sensitivity.
"""

from __future__ import annotations

import math

import torch

from populace import Param, register_param
from populace.layers.ode import VectorField

from .geo import STATES

__all__ = [
    "DECAY",
    "MIGRATION_PEAK_DAY",
    "MIGRATION_RATE",
    "MIGRATION_SEASONALITY",
    "SPILLOVER",
    "WildBirdPressure",
]

SPILLOVER = Param(
    1.0,
    (0.0, 100.0),
    "pressure per detection",
    learnable=True,
    doc="ι: pressure added per wild-bird detection. Assumed 1 (the pressure is in detection units).",
)
DECAY = Param(
    1 / 14,
    (0.001, 2.0),
    "1/day",
    learnable=True,
    doc="γ: decay rate of the pressure. Assumed 1/14 per day (about two weeks of shedding and environmental "
    "persistence after a detection).",
)
MIGRATION_RATE = Param(
    0.05,
    (0.0, 5.0),
    "1/day",
    learnable=True,
    doc="m₀: mean rate at which a state's pressure relaxes to its flyway's mean. Assumed.",
)
MIGRATION_SEASONALITY = Param(
    0.8,
    (0.0, 1.0),
    "dimensionless",
    learnable=True,
    doc="a: relative amplitude of the semi-annual migration cycle of the mixing rate. Assumed.",
)
MIGRATION_PEAK_DAY = Param(
    100.0,
    (0.0, 182.0),
    "day of year",
    learnable=True,
    doc="φ: day of year of the spring migration peak (autumn peak half a year later); 100 ≈ 10 April, "
    "assumed from the usual March–May and September–November waterfowl migrations.",
)


class WildBirdPressure(VectorField):
    """The flyway ODE of the module docs over the states of :data:`~populace.scenarios.h5n1.geo.STATES`.

    Args:
        forcing: ``float32[days + 2, states]`` detections per day (row t = day t since the start).
        doy0: day of year of t = 0 (0 for 1 January).
    """

    spillover: torch.Tensor
    decay: torch.Tensor
    migration_rate: torch.Tensor
    migration_seasonality: torch.Tensor
    migration_peak_day: torch.Tensor

    def __init__(
        self,
        forcing: torch.Tensor,
        *,
        doy0: float = 0.0,
        spillover: Param = SPILLOVER,
        decay: Param = DECAY,
        migration_rate: Param = MIGRATION_RATE,
        migration_seasonality: Param = MIGRATION_SEASONALITY,
        migration_peak_day: Param = MIGRATION_PEAK_DAY,
    ) -> None:
        super().__init__()
        self.names = tuple(s[0] for s in STATES)
        if forcing.dim() != 2 or forcing.shape[1] != len(self.names):
            raise ValueError(f"forcing: expected [days, {len(self.names)}], got {tuple(forcing.shape)}")
        self.register_buffer("forcing", forcing.to(torch.float32))
        flyways = [s[2] for s in STATES]
        same = torch.tensor([[float(a == b) for b in flyways] for a in flyways])
        self.register_buffer("flyway_mean", same / same.sum(1, keepdim=True))
        self.doy0 = doy0
        register_param(self, "spillover", spillover)
        register_param(self, "decay", decay)
        register_param(self, "migration_rate", migration_rate)
        register_param(self, "migration_seasonality", migration_seasonality)
        register_param(self, "migration_peak_day", migration_peak_day)

    def detections(self, t: float) -> torch.Tensor:
        """``float32[states]`` detections per day at time ``t``, linearly interpolated."""
        forcing: torch.Tensor = self.forcing
        last = forcing.shape[0] - 1
        i = min(max(math.floor(t), 0), last)
        j = min(i + 1, last)
        f = min(max(t - i, 0.0), 1.0)
        return forcing[i] * (1 - f) + forcing[j] * f

    def mixing(self, t: float) -> torch.Tensor:
        """m(t), 1/day."""
        phase = 4 * math.pi * (t + self.doy0 - self.migration_peak_day) / 365.25
        return self.migration_rate * (1 + self.migration_seasonality * torch.cos(phase))

    def forward(self, t: float, y: torch.Tensor) -> torch.Tensor:
        flyway_mean: torch.Tensor = self.flyway_mean
        return self.spillover * self.detections(t) - self.decay * y + self.mixing(t) * (flyway_mean @ y - y)

    def initial(self, device: torch.device) -> torch.Tensor:
        return torch.zeros(len(self.names), device=device)
