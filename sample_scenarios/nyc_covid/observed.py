"""NYC's observed COVID-19 series (NYC DOHMH, ``data/SOURCES.md``) as calibration streams, and the
covariates of the calibration networks (the dates of New York's orders).

Streams (``--streams``):

* ``cases``, ``hosp``, ``deaths`` — daily counts by borough, as NYC's trailing 7-day averages; cases are
  compared with symptom onsets times a reported share (a :class:`WeeklyNetwork` by week and borough: testing
  was scarce in March 2020), admissions and deaths with the model's own;
* ``cases_age``, ``hosp_age``, ``deaths_age`` — weekly rates per 100,000 by NYC's age bands (deaths merge
  0-17), on each week's last day as the daily mean.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from populace import Model
from populace.calibrate import Calibration, Stream, WeeklyNetwork
from populace.layers.covid import Covid
from populace.layers.importation import Importation
from populace.layers.transmission import Transmission

__all__ = [
    "BOROUGH_CODES",
    "DEFAULT_STREAMS",
    "ORDERS",
    "STREAMS",
    "covariates",
    "observed_calibration",
    "observed_streams",
]

DATA = Path(__file__).parent / "data"
BOROUGH_CODES = {"Bronx": "BX", "Brooklyn": "BK", "Manhattan": "MN", "Queens": "QN", "Staten Island": "SI"}
STREAMS = ("cases", "hosp", "deaths", "cases_age", "hosp_age", "deaths_age")
_DAILY = {
    "cases": ("CASE_COUNT", "new_symptomatic"),
    "hosp": ("HOSPITALIZED_COUNT", "new_admissions"),
    "deaths": ("DEATH_COUNT", "new_deaths"),
}
SEEDS_PER_100K_MAX = 3000.0
"""Upper bound of the fitted seeding (imported infections per 100k on day 0, by borough)."""
DEFAULT_STREAMS = tuple(_DAILY)
"""What the scenario calibrates to unless told otherwise: daily cases, admissions and deaths by borough."""
_WEEKLY = {"cases_age": "case", "hosp_age": "hosp", "deaths_age": "death"}
_MODEL_SERIES = {"cases_age": "new_symptomatic", "hosp_age": "new_admissions", "deaths_age": "new_deaths"}

ORDERS = {
    "schools_closed": dt.date(2020, 3, 16),
    "pause": dt.date(2020, 3, 22),
    "face_coverings": dt.date(2020, 4, 17),
    "phase_1": dt.date(2020, 6, 8),
}
"""New York's first-wave orders, the covariates of the calibration networks: NYC public schools closed from
16 March 2020 (Mayor's announcement of 15 March); "New York State on PAUSE", Executive Order 202.8, from
22 March; face coverings in public, Executive Order 202.17, from 17 April; NYC's reopening phase 1 from
8 June 2020 (New York Forward)."""


def covariates(start: dt.date, weeks: int, groups: int) -> torch.Tensor:
    """``float32[weeks, groups, 4 + 2 + groups]``: per week, the share of its days under each order, the
    week index (scaled to 0-1) and its square, and a one-hot group (borough)."""
    rows = []
    for w in range(weeks):
        days = [start + dt.timedelta(days=7 * w + d) for d in range(7)]
        orders = [sum(day >= since for day in days) / 7 for since in ORDERS.values()]
        t = w / max(weeks - 1, 1)
        rows.append([*orders, t, t * t])
    time = torch.tensor(rows, dtype=torch.float32)[:, None, :].expand(weeks, groups, -1)
    onehot = torch.eye(groups)[None].expand(weeks, groups, groups)
    return torch.cat([time, onehot], dim=-1)


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as f:
        return list(csv.DictReader(f))


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%m/%d/%Y").date()


def _number(text: str) -> float:
    return float(text) if text.strip() else math.nan


def daily(stream: str, start: dt.date, days: int, boroughs: Sequence[str]) -> torch.Tensor:
    """``float64[days, boroughs]``: NYC's trailing 7-day averages of ``stream`` (cases, hosp or deaths); NaN
    on days the file does not cover."""
    column = _DAILY[stream][0]
    out = torch.full((days, len(boroughs)), math.nan, dtype=torch.float64)
    for row in _rows("nyc_covid_data_by_day.csv"):
        day = (_date(row["date_of_interest"]) - start).days
        if 0 <= day < days:
            out[day] = torch.tensor([_number(row[f"{BOROUGH_CODES[b]}_{column}_7DAY_AVG"]) for b in boroughs])
    return out


def weekly(stream: str, start: dt.date, days: int) -> tuple[torch.Tensor, tuple[str, ...]]:
    """``float64[days, bands]``: weekly rates per 100,000 / 7 on each week's last day, NaN elsewhere."""
    rows = _rows(f"nyc_weekly_{_WEEKLY[stream]}_rate_age.csv")
    bands = tuple(k.removeprefix("age_") for k in rows[0] if k.startswith("age_") and k != "age_all_ages")
    out = torch.full((days, len(bands)), math.nan, dtype=torch.float64)
    for row in rows:
        day = (_date(row["week_ending"]) - start).days
        if 6 <= day < days:  # a whole week inside the run
            out[day] = torch.tensor([_number(row[f"age_{b}"]) / 7 for b in bands])
    return out, bands


def observed_streams(
    model: Model,
    *,
    agents: int,
    full_size: int,
    start: dt.date,
    days: int,
    streams: Sequence[str],
) -> list[Stream]:
    """The chosen streams of NYC's data from ``start`` for ``days`` days, matched to ``model``'s series
    (``agents`` agents standing for ``full_size`` residents); cases get a learnable reported share."""
    unknown = [s for s in streams if s not in STREAMS]
    if unknown or not streams:
        raise ValueError(f"streams: expected some of {', '.join(STREAMS)}, got {list(streams)}")
    _, covid = _find(model, Covid)
    _, transmission = _find(model, Transmission)
    breakdowns = {b.name: b for b in covid.breakdowns}
    boroughs, ages = breakdowns["borough"].labels, breakdowns["age"]
    x = covariates(start, transmission.scale.shape[0], len(boroughs))
    scale = full_size / agents
    band_pop = torch.bincount(ages.index.cpu(), minlength=len(ages.labels)).double()
    built: list[Stream] = []
    for name in streams:
        if name in _DAILY:
            reported = WeeklyNetwork(x, (0.01, 1.0), initial=0.3, seed=1) if name == "cases" else None
            built.append(
                Stream(
                    name,
                    f"{_DAILY[name][1]}_by_borough",
                    daily(name, start, days, boroughs),
                    labels=boroughs,
                    scale=scale,
                    reported=reported,
                )
            )
            continue
        observed, bands = weekly(name, start, days)
        combine = _band_matrix(ages.labels, bands)
        built.append(
            Stream(
                name,
                f"{_MODEL_SERIES[name]}_by_age",
                observed,
                labels=bands,
                weight=0.5,
                combine=combine,
                scale=(100_000 / (band_pop @ combine).clamp(min=1)).float(),
            )
        )
    return built


def observed_calibration(
    model: Model,
    *,
    agents: int,
    full_size: int,
    start: dt.date,
    days: int,
    streams: Sequence[str],
) -> Calibration:
    """The nyc-covid calibration: the chosen :func:`observed_streams`; direct parameters: the P(admission)
    and P(death) scales; networks: transmission by week × borough, day 0's imported infections by borough
    (the seeding, per 100k, up to :data:`SEEDS_PER_100K_MAX`), reported share of cases by week × borough.
    The networks learn at the direct parameters' rate and the loss has no log-scale term: at 100k agents and
    40 epochs (seed 0) that gave ND 0.29 / 0.36 on admissions / deaths against 0.46 / 0.51 with the library
    defaults (networks at 0.2 × the rate, log weight 0.1), which left the transmission table nearly flat
    after New York's orders; networks at 3 × diverged (0.65 / 0.70)."""
    built = observed_streams(
        model, agents=agents, full_size=full_size, start=start, days=days, streams=streams
    )
    covid_name, covid = _find(model, Covid)
    transmission_name, transmission = _find(model, Transmission)
    seeding_name, seeding = _find(model, Importation)
    boroughs = next(b for b in covid.breakdowns if b.name == "borough").labels
    x = covariates(start, transmission.scale.shape[0], len(boroughs))
    seeds = float(seeding.rate.mean().clamp(1.0, SEEDS_PER_100K_MAX - 1))
    return Calibration(
        model,
        built,
        fit=[f"{covid_name}.severe_scale", f"{covid_name}.fatality_scale"],
        networks={
            f"{transmission_name}.scale": WeeklyNetwork(x, (0.05, 3.0), initial=1.0, seed=0),
            f"{seeding_name}.rate": WeeklyNetwork(
                x[: seeding.rate.shape[0]], (0.0, SEEDS_PER_100K_MAX), initial=seeds, seed=2
            ),
        },
        log_weight=0.0,
        network_lr=1.0,
    )


def _band_matrix(model_bands: tuple[str, ...], data_bands: tuple[str, ...]) -> torch.Tensor:
    """``float64[model, data]``: 1 where a model band (``"5-12"``, ``"75+"``) lies in a data band
    (``"5_12"``, ``"0_17"``, ``"75up"``)."""

    def span(label: str) -> tuple[int, int]:
        label = label.replace("up", "+").replace("_", "-")
        lo, _, hi = label.rstrip("+").partition("-")
        return int(lo), int(hi) if hi else 200

    m = torch.zeros(len(model_bands), len(data_bands), dtype=torch.float64)
    for i, mb in enumerate(model_bands):
        lo, hi = span(mb)
        for j, db in enumerate(data_bands):
            dlo, dhi = span(db)
            if dlo <= lo and hi <= dhi:
                m[i, j] = 1.0
    if not bool((m.sum(1) == 1).all()):
        raise ValueError(f"age bands {model_bands} do not nest in the data's {data_bands}")
    return m


def _find(model: Model, kind: type) -> tuple[str, torch.nn.Module]:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]
    if len(found) != 1:
        raise ValueError(f"calibration: expected one {kind.__name__} layer in the model, found {len(found)}")
    return found[0]
