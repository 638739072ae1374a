"""New Zealand's observed Delta outbreak (Ministry of Health, ``data/SOURCES.md``) as calibration streams.

Streams (``--streams``):

* ``cases`` — daily community cases (by report date, trailing 7-day averages) in three areas: the
  three Auckland DHBs together, Waikato, and the rest of the country; compared with symptom onsets times a
  reported share (one per area, :class:`Grouped`: most cases were found by contact tracing and testing, not
  all);
* ``hosp`` — weekly admissions for COVID-19 in New Zealand, on each week's last day (Sunday) as the daily
  mean.

The calibration fits the P(admission) scale and a handful of values in place of tables: transmission by
restriction level × region (:class:`LevelFactors`), day 0's seeding in the Auckland DHBs, the ``travel``
importation into Waikato and into the rest, and the reported share of cases by area
(:func:`observed_calibration`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import torch

from populace import Model
from populace.calibrate import Calibration, Stream, moving_average
from populace.layers.covid import Covid
from populace.layers.importation import Importation
from populace.layers.transmission import Transmission

from .data import AUCKLAND, DHBS, daily_cases, weekly_admissions
from .policy import LEVELS, levels_as_they_were

__all__ = [
    "AREAS",
    "DEFAULT_STREAMS",
    "REGIONS",
    "STREAMS",
    "Grouped",
    "LevelFactors",
    "level_shares",
    "observed_calibration",
    "observed_streams",
]

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
            weeks = transmission.scale.shape[0]
            built.append(
                Stream(
                    "cases",
                    "new_symptomatic_by_dhb",
                    observed,
                    labels=AREAS,
                    scale=scale,
                    combine=area_matrix(),
                    reported=Grouped(weeks, range(len(AREAS)), REPORTED_BOUNDS, initial=REPORTED_INITIAL),
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
"""Upper bound of the fitted seeding (infections from outside on day 0 per 100k, one rate for the three
Auckland DHBs)."""
TRAVEL_MAX = 5.0
"""Upper bound of the fitted travel importation (infections from outside per 100k per day, one rate into
Waikato and one into the other DHBs outside Auckland)."""
TRAVEL_INITIAL = 0.001
"""Starting value of the travel importation: about one infection a week per 14 million people; the fit
raises it where the data ask."""
REGIONS = ("Auckland", "rest of New Zealand")
"""The regions of :class:`LevelFactors`: each restriction level has one factor in the three Auckland DHBs and
one elsewhere (the outbreak was Auckland's; elsewhere it was seeded by travel)."""
REPORTED_BOUNDS = (0.05, 1.0)
"""Bounds of the reported share of symptomatic infections (the ``cases`` stream), by area."""
REPORTED_INITIAL = 0.5
"""Starting value of the reported share: half the symptomatic infections reported as cases."""


class LogBounded(torch.nn.Module):
    """``float[...]``: values inside ``bounds``, uniform in log scale over the unconstrained ``raw``
    (``exp(log low + (log high − log low) · sigmoid(raw))``): a factor, a rate or a share moves by the same
    ratio for the same step whether it is small or large."""

    def __init__(self, shape: tuple[int, ...], bounds: tuple[float, float], initial: float) -> None:
        super().__init__()
        low, high = bounds
        if not 0 < low < initial < high:
            raise ValueError(f"initial: expected 0 < low < initial < high, got {initial} and {bounds}")
        self.log_low, self.log_high = math.log(low), math.log(high)
        share = (math.log(initial) - self.log_low) / (self.log_high - self.log_low)
        self.raw = torch.nn.Parameter(torch.full(shape, math.log(share / (1 - share))))

    def forward(self) -> torch.Tensor:
        return torch.exp(self.log_low + (self.log_high - self.log_low) * torch.sigmoid(self.raw))


class Grouped(torch.nn.Module):
    """A table ``float32[periods, columns]`` with one learned value per group of columns, the same in every
    period (:class:`LogBounded`); columns of group ``-1`` stay zero. Usable as a
    ``torch.nn.utils.parametrize`` parametrisation (it ignores the tensor it replaces): the day-0 seeding
    shared by the Auckland DHBs, the travel importation into Waikato and into the rest, the reported share of
    each area's cases."""

    group: torch.Tensor

    def __init__(
        self, periods: int, group: Sequence[int], bounds: tuple[float, float], *, initial: float
    ) -> None:
        super().__init__()
        self.periods = periods
        self.register_buffer("group", torch.as_tensor(group, dtype=torch.long))
        self.value = LogBounded((int(self.group.max()) + 1,), bounds, initial)

    def forward(self, _replaced: torch.Tensor | None = None) -> torch.Tensor:
        value = torch.cat([self.value(), self.value.raw.new_zeros(1)])[self.group]  # -1: the zero
        return value[None].expand(self.periods, -1)


class LevelFactors(torch.nn.Module):
    """Relative transmission ``float32[weeks, DHBs]`` from one factor per restriction level (:data:`LEVELS`)
    × region (:data:`REGIONS`): a week's entry in a DHB is the geometric mean of its region's factors over the
    week's days, weighted by the days at each level. What the assumed contact shares kept under each level
    (:data:`~.policy.KEPT`) get wrong, and how people kept the rules, in a handful of values (at most
    levels × regions; a level a region never had gets no gradient and stays at ``initial``), in place of a
    free table of ~400 weeks × DHBs that follows each noisy run's luck. Usable as a
    ``torch.nn.utils.parametrize`` parametrisation."""

    shares: torch.Tensor
    region: torch.Tensor

    def __init__(
        self,
        shares: torch.Tensor,
        region: Sequence[int],
        bounds: tuple[float, float] = (0.05, 5.0),
        *,
        initial: float = 1.0,
    ) -> None:
        super().__init__()
        if shares.dim() != 3 or shares.shape[1] != len(region):
            raise ValueError(
                f"shares: expected [weeks, {len(region)} DHBs, levels], got shape {tuple(shares.shape)}"
            )
        self.register_buffer("shares", shares.float())
        self.register_buffer("region", torch.as_tensor(region, dtype=torch.long))
        self.factor = LogBounded((shares.shape[2], int(self.region.max()) + 1), bounds, initial)

    def factors(self) -> torch.Tensor:
        """``float32[levels, regions]``: the factor of each level in each region."""
        return self.factor()

    def forward(self, _replaced: torch.Tensor | None = None) -> torch.Tensor:
        log_factor = self.factors().log()[:, self.region]  # [levels, DHBs]
        return torch.einsum("wdl,ld->wd", self.shares, log_factor).exp()


def level_shares(start: dt.date, weeks: int) -> torch.Tensor:
    """``float32[weeks, DHBs, levels]``: the share of each week's days at each level, by DHB."""
    levels = levels_as_they_were(start, 7 * weeks)  # [days, DHBs]
    shares = torch.nn.functional.one_hot(levels, len(LEVELS)).float()  # [days, DHBs, levels]
    return shares.reshape(weeks, 7, len(DHBS), len(LEVELS)).mean(1)


def observed_calibration(
    model: Model, *, agents: int, full_size: int, start: dt.date, days: int, streams: Sequence[str]
) -> Calibration:
    """The nz-covid calibration: the chosen :func:`observed_streams`; the P(admission) scale; and a few
    values in place of tables: transmission by restriction level × region (:class:`LevelFactors`, 0.05-5
    times the model's); day 0's seeding, one rate for the three Auckland DHBs (up to
    :data:`SEEDS_PER_100K_MAX` per 100k); the ``travel`` importation into Waikato and into the rest (one
    rate each, every day of the run, up to :data:`TRAVEL_MAX` per 100k per day: the synthetic population has
    almost no contacts across DHBs, where the outbreak reached Waikato, Northland and later the rest by people
    travelling from Auckland); the reported share of cases, one per area (:data:`AREAS`). As ``nyc-covid``'s,
    the loss keeps its log-scale term (weight 0.1) and is ``robust``: New Zealand's outbreak was small (about
    200 reported cases a day at its peak), so runs of a few hundred thousand agents range from fizzling out to
    overshooting; the log term keeps a signal in the first, ``robust`` stops the second from swamping Adam's
    running averages.

    The earlier parametrisation (calibration networks over week × DHB and week × area) had ~400 weights: at
    250,000 agents each step's gradient followed its run's luck, and the fitted table stayed within
    0.83-1.15 where the outbreak needed several-fold changes between levels (``benchmarks/README.md``)."""
    built = observed_streams(
        model, agents=agents, full_size=full_size, start=start, days=days, streams=streams
    )
    covid_name, _ = _find(model, Covid)
    transmission_name, transmission = _find(model, Transmission)
    assert isinstance(transmission, Transmission)
    seeding, travel = _named(model, "importation"), _named(model, "travel")
    weeks = transmission.scale.shape[0]
    region = [0 if d in AUCKLAND else 1 for d in DHBS]
    auckland = [DHBS.index(d) for d in AUCKLAND]
    seeds = float(seeding.rate[0][auckland].mean().clamp(1.0, SEEDS_PER_100K_MAX - 1))
    into = [-1 if d in AUCKLAND else 0 if d == "Waikato" else 1 for d in DHBS]
    return Calibration(
        model,
        built,
        fit=[f"{covid_name}.severe_scale"],
        networks={
            f"{transmission_name}.scale": LevelFactors(level_shares(start, weeks), region),
            "importation.rate": Grouped(
                seeding.rate.shape[0],
                [0 if d in AUCKLAND else -1 for d in DHBS],
                (0.1, SEEDS_PER_100K_MAX),
                initial=seeds,
            ),
            "travel.rate": Grouped(travel.rate.shape[0], into, (1e-4, TRAVEL_MAX), initial=TRAVEL_INITIAL),
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
