"""New Zealand's observed Delta outbreak (Ministry of Health, ``data/SOURCES.md``) as calibration streams.

Streams (``--streams``):

* ``cases`` — daily community cases (by report date, trailing 7-day averages) in three areas: the
  three Auckland DHBs together, Waikato, and the rest of the country; compared with symptom onsets times a
  reported share (a :class:`WeeklyNetwork` by week and area: most cases were found by contact tracing and
  testing, not all);
* ``hosp`` — weekly admissions for COVID-19 in New Zealand, on each week's last day (Sunday) as the daily
  mean.

The calibration fits the P(admission) scale and four networks: transmission by week × DHB (its covariates:
the share of each week's days at each alert level or traffic light in the DHB, the week and its square, the
DHB), day 0's seeding in the Auckland DHBs, the ``travel`` importation by week into the other DHBs, and the
reported share of cases by week × area (:func:`observed_calibration`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast

import torch

from populace import Model
from populace.calibrate import Calibration, Stream, WeeklyNetwork, moving_average
from populace.layers.covid import Covid
from populace.layers.importation import Importation
from populace.layers.transmission import Transmission

from .data import AUCKLAND, DHBS, daily_cases, weekly_admissions
from .policy import LEVELS, levels_as_they_were

__all__ = ["AREAS", "DEFAULT_STREAMS", "STREAMS", "covariates", "observed_calibration", "observed_streams"]

STREAMS = ("cases", "hosp")
DEFAULT_STREAMS = STREAMS
AREAS = ("Auckland", "Waikato", "rest of New Zealand")
"""The areas of the ``cases`` stream: the three Auckland DHBs, Waikato DHB, the other 16 DHBs."""


def area_matrix() -> torch.Tensor:
    """``float64[DHBs, areas]``: 1 where a DHB lies in an area of :data:`AREAS`."""
    m = torch.zeros(len(DHBS), len(AREAS), dtype=torch.float64)
    for d, name in enumerate(DHBS):
        m[d, 0 if name in AUCKLAND else 1 if name == "Waikato" else 2] = 1.0
    return m


def covariates(start: dt.date, weeks: int) -> torch.Tensor:
    """``float32[weeks, DHBs, levels + 2 + DHBs]``: per week and DHB, the share of its days at each level
    (:data:`~.policy.LEVELS`), the week index (scaled to 0-1) and its square, and a one-hot DHB."""
    levels = levels_as_they_were(start, 7 * weeks)  # [days, DHBs]
    shares = torch.nn.functional.one_hot(levels, len(LEVELS)).float()  # [days, DHBs, levels]
    shares = shares.reshape(weeks, 7, len(DHBS), len(LEVELS)).mean(1)
    t = torch.arange(weeks, dtype=torch.float32) / max(weeks - 1, 1)
    time = torch.stack([t, t * t], dim=1)[:, None, :].expand(weeks, len(DHBS), 2)
    onehot = torch.eye(len(DHBS))[None].expand(weeks, len(DHBS), len(DHBS))
    return torch.cat([shares, time, onehot], dim=-1)


def _area_covariates(x: torch.Tensor) -> torch.Tensor:
    """The DHB covariates averaged into :data:`AREAS` (weighted equally by DHB)."""
    m = area_matrix().float()
    return torch.einsum("wdf,da->waf", x, m / m.sum(0, keepdim=True))


def observed_streams(
    model: Model, *, agents: int, full_size: int, start: dt.date, days: int, streams: Sequence[str]
) -> list[Stream]:
    """The chosen streams from ``start`` for ``days`` days, matched to ``model``'s series (``agents`` agents
    standing for ``full_size`` residents)."""
    unknown = [s for s in streams if s not in STREAMS]
    if unknown or not streams:
        raise ValueError(f"streams: expected some of {', '.join(STREAMS)}, got {list(streams)}")
    transmission = _find(model, Transmission)[1]
    assert isinstance(transmission, Transmission)
    scale = full_size / agents
    built: list[Stream] = []
    for name in streams:
        if name == "cases":
            observed = moving_average(daily_cases(start, days) @ area_matrix(), 7)
            x = _area_covariates(covariates(start, transmission.scale.shape[0]))
            built.append(
                Stream(
                    "cases",
                    "new_symptomatic_by_dhb",
                    observed,
                    labels=AREAS,
                    scale=scale,
                    combine=area_matrix(),
                    reported=WeeklyNetwork(x, (0.05, 1.0), initial=0.5, seed=1),
                )
            )
        else:
            weeks, admissions = weekly_admissions(start, days)
            observed = torch.full((days,), float("nan"), dtype=torch.float64)
            for week, value in zip(weeks, admissions.tolist(), strict=True):
                if (week - start).days >= 6:  # a whole week inside the run
                    observed[(week - start).days] = value / 7
            built.append(Stream("hosp", "new_admissions", observed, labels=("New Zealand",), scale=scale))
    return built


SEEDS_PER_100K_MAX = 3000.0
"""Upper bound of the fitted seeding (infections from outside on day 0 per 100k, by Auckland DHB)."""
TRAVEL_MAX = 5.0
"""Upper bound of the fitted travel importation (infections from outside per 100k per day, by week and DHB
outside Auckland)."""
TRAVEL_INITIAL = 0.001
"""Starting value of the travel importation: about one infection a week per 14 million people; the fit
raises it where the data ask."""


class Masked(torch.nn.Module):
    """``module()`` times a fixed 0/1 ``mask`` (broadcast over its rows): a learned table held at zero where
    nothing is to be learned (the seeding outside Auckland, the travel into Auckland). Usable as a
    ``torch.nn.utils.parametrize`` parametrisation (it ignores the tensor it replaces)."""

    mask: torch.Tensor

    def __init__(self, module: torch.nn.Module, mask: torch.Tensor) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mask", mask.float())

    def forward(self, _replaced: torch.Tensor | None = None) -> torch.Tensor:
        return cast(torch.Tensor, self.module()) * self.mask


def observed_calibration(
    model: Model, *, agents: int, full_size: int, start: dt.date, days: int, streams: Sequence[str]
) -> Calibration:
    """The nz-covid calibration: the chosen :func:`observed_streams`; the P(admission) scale; networks:
    transmission by week × DHB (:func:`covariates`), bounded to 0.05-3 times the model's; day 0's seeding in
    each Auckland DHB (up to :data:`SEEDS_PER_100K_MAX` per 100k); the ``travel`` importation by week into
    each DHB outside Auckland (up to :data:`TRAVEL_MAX` per 100k per day: the synthetic population has
    almost no contacts across DHBs, where the outbreak reached Waikato, Northland and later the rest by people
    travelling from Auckland); the reported share of cases by week × area. As ``nyc-covid``'s, the networks
    learn at the direct parameters' rate. Unlike ``nyc-covid``'s, the loss keeps its log-scale term (weight
    0.1) and is ``robust``: New Zealand's outbreak was small (about 200 reported cases a day at its peak), so
    runs of a few hundred thousand agents range from fizzling out to overshooting tenfold; the log term keeps
    a signal in the first, ``robust`` stops the second from swamping Adam's running averages."""
    built = observed_streams(
        model, agents=agents, full_size=full_size, start=start, days=days, streams=streams
    )
    covid_name, _ = _find(model, Covid)
    transmission_name, transmission = _find(model, Transmission)
    assert isinstance(transmission, Transmission)
    seeding, travel = _named(model, "importation"), _named(model, "travel")
    x = covariates(start, transmission.scale.shape[0])
    auckland = area_matrix()[:, 0].float()
    seeds = float(seeding.rate[0][auckland > 0].mean().clamp(1.0, SEEDS_PER_100K_MAX - 1))
    weeks = travel.rate.shape[0]
    if weeks > x.shape[0]:
        raise ValueError(f"travel: {weeks} weeks of importation, but covariates for {x.shape[0]}")
    return Calibration(
        model,
        built,
        fit=[f"{covid_name}.severe_scale"],
        networks={
            f"{transmission_name}.scale": WeeklyNetwork(x, (0.05, 3.0), initial=1.0, seed=0),
            "importation.rate": Masked(
                WeeklyNetwork(x[: seeding.rate.shape[0]], (0.0, SEEDS_PER_100K_MAX), initial=seeds, seed=2),
                auckland,
            ),
            "travel.rate": Masked(
                WeeklyNetwork(x[:weeks], (0.0, TRAVEL_MAX), initial=TRAVEL_INITIAL, seed=3), 1 - auckland
            ),
        },
        log_weight=0.1,
        network_lr=1.0,
        robust=True,
    )


def _named(model: Model, name: str) -> Importation:
    layer = getattr(model, name, None)
    if not isinstance(layer, Importation):
        raise ValueError(f"calibration: expected an Importation layer named {name!r} in the model")
    return layer


def _find(model: Model, kind: type[torch.nn.Module]) -> tuple[str, torch.nn.Module]:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]
    if len(found) != 1:
        raise ValueError(f"calibration: expected one {kind.__name__} layer in the model, found {len(found)}")
    name, module = found[0]
    return name, module
