""" "How can I lower my risk next week?": a person's 7-day infection probability, computed where their profile
is, from a forecast that is the same for everyone.

Two halves, so that nothing of the profile leaves the process that holds it:

* **The forecast** (:func:`forecast`, public, computed once for everyone): the model runs to a day, then 7
  more days, and a recording place aggregation (:class:`ForceRecorder`, on the pluggable aggregation of
  :mod:`populace.aggregation`) keeps, each day, the mean force of infection that a member of each setting
  receives on a day present, by area (NYC's boroughs) and, for households, by household size. The table is
  a few hundred numbers (:class:`RiskTable`, JSON): every device downloads all of it, so no request says
  where anyone lives or goes. In the secret-shared simulation (:mod:`populace.private`) the forces are
  computed from the reconstructed per-place pressures: the forecast needs nobody's state in the clear.
* **The query** (:func:`week_risk`, on the device): the profile (area, household size, days a week in each
  setting, mask) picks its rows; the cumulative hazard over the week is Σ days × settings of the force
  times the share of days present (and ``1 − mask efficacy`` outside the home), and the probability of
  infection ``1 − exp(−hazard)`` (the Sellke threshold of the infection core: an agent is infected when its
  cumulative hazard passes an Exp(1) draw). :func:`alternatives` re-answers for the usual changes: work from
  home, skip school, stay out of the community (shops, gyms, transit), wear a mask.

The same two halves answer in the explorer's *Your risk* tab (``explorer/views/risk.py``): the forecast is a
job of the page's session, the profile the tab's controls, the answer recomputed in the session when one
changes.

Simplifications, said plainly: the profile's own susceptibility is 1 (an unvaccinated adult without prior
infection); a household's force is the mean over households of that size in the area, not the person's own
household (which the device could use if its members shared their state); a setting's force is its members'
mean, so a busier-than-average workplace is not seen.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .aggregation import Aggregation, ExactSums
from .contacts import AgeMixing, Contacts, Places
from .files import atomic_path
from .model import Model

__all__ = [
    "MASK_EFFICACY",
    "Profile",
    "RiskTable",
    "alternatives",
    "answer",
    "forecast",
    "week_risk",
]

MASK_EFFICACY = 0.3
"""Reduction of a wearer's received infectiousness when the scenario has no ``mask_efficacy`` option:
Abaluck et al. 2022 (Science 375:eabi9069), about 30% per wearer (the default of ``populace.layers.npi``)."""

HOUSEHOLD = "household"
MAX_SIZE = 8
"""Households of this size or more share one row."""


@dataclass
class RiskTable:
    """The public forecast: ``force[setting][day][area]`` (mean force of infection on a present member, per
    day) and ``household[day][area][size − 1]`` (by household size, 1 … :data:`MAX_SIZE`)."""

    scenario: str
    agents: int
    seed: int
    first_day: int
    areas: list[str]
    force: dict[str, list[list[float]]]
    household: list[list[list[float]]]
    mask_efficacy: float
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> None:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(self.__dict__))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RiskTable:
        content = json.loads(Path(path).read_text())
        try:
            return cls(**content)
        except TypeError:
            raise ValueError(f"{path}: not a forecast table written by populace risk") from None


class ForceRecorder(ExactSums):
    """Exact sums (the same run as the default aggregation) that also record, while :attr:`recording`, each
    setting's mean force on its members per group of ``groups[setting]`` (``int64[agents]``, ``-1``: not a
    member) for the day."""

    def __init__(self, groups: Mapping[str, tuple[torch.Tensor, int]]) -> None:
        self.groups = dict(groups)
        self.recording = False
        self.day: dict[str, torch.Tensor] = {}
        self.days: list[dict[str, torch.Tensor]] = []

    def force_times(
        self, contacts: Contacts, pressure: torch.Tensor, scale: torch.Tensor, presence: torch.Tensor
    ) -> torch.Tensor:
        return Aggregation.force_times(self, contacts, pressure, scale, presence)  # recorded by force

    def force(
        self,
        contacts: Contacts,
        pressure: torch.Tensor,
        scale: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        force = super().force(contacts, pressure, scale, out=out)
        if self.recording and contacts.name in self.groups:
            index, count = self.groups[contacts.name]
            member = index >= 0
            sums = torch.zeros(count, dtype=torch.float64).index_add_(
                0, index[member], force.detach()[member].to(torch.float64)
            )
            size = torch.bincount(index[member], minlength=count).clamp(min=1).to(torch.float64)
            self.day[contacts.name] = self.day.get(contacts.name, 0) + sums / size
        return force

    def end_day(self) -> None:
        """Close a recorded day (a day with nobody infectious records zeros)."""
        if self.recording:
            self.days.append(
                {name: self.day.get(name, torch.zeros(n)) for name, (_, n) in self.groups.items()}
            )
        self.day = {}


def _area(model: Model) -> tuple[torch.Tensor, list[str]]:
    """Each agent's area (the first layer breakdown called borough, region, area or dhb: New Zealand's
    District Health Boards) and the areas' names."""
    for layer in model.layers:
        for b in getattr(layer, "breakdowns", ()):
            if getattr(b, "name", None) in ("borough", "region", "area", "dhb"):
                return b.index.to(torch.int64).cpu(), list(b.labels)
    raise ValueError(
        "the scenario's model has no borough, region, area or DHB breakdown to group the forecast"
    )


def _members(contacts: Contacts) -> tuple[torch.Tensor, torch.Tensor]:
    """Each agent's place in ``contacts`` and whether it is a member."""
    if isinstance(contacts, Places):
        index = contacts.place_index.to(torch.int64).cpu()
        return index, index < contacts.n_places
    if isinstance(contacts, AgeMixing):
        index = contacts.cell_index.to(torch.int64).cpu()
        return index, index < contacts.n_groups * contacts.bands
    raise TypeError(f"{contacts.name}: a {type(contacts).__name__} setting has no places to forecast")


def forecast(
    model: Model,
    *,
    scenario: str,
    agents: int,
    seed: int,
    first_day: int,
    mask_efficacy: float = MASK_EFFICACY,
    simulate: Callable[[Model, int, Callable[[int], None]], Any],
) -> RiskTable:
    """Run ``model`` to ``first_day`` and 7 days more (``simulate(model, days, on_day)``), recording the
    forces of :class:`RiskTable`."""
    area, areas = _area(model)
    layers = [layer for layer in model.layers if isinstance(getattr(layer, "aggregation", None), ExactSums)]
    if not layers:
        raise ValueError(f"{scenario}: no disease layer with place sums to forecast")
    layer: Any = layers[0]
    groups: dict[str, tuple[torch.Tensor, int]] = {}
    for contacts in layer.contacts():
        place, member = _members(contacts)
        if contacts.name == HOUSEHOLD:
            size = torch.bincount(place[member], minlength=int(place.max()) + 1)[place].clamp(max=MAX_SIZE)
            index = area * MAX_SIZE + (size - 1)
            groups[contacts.name] = (torch.where(member, index, -1), len(areas) * MAX_SIZE)
        else:
            groups[contacts.name] = (torch.where(member, area, -1), len(areas))
    if HOUSEHOLD not in groups:
        raise ValueError(f"{scenario}: no household setting to forecast")
    recorder = ForceRecorder(groups)
    layer.aggregation = recorder

    def on_day(day: int) -> None:
        recorder.end_day()
        recorder.recording = day + 1 >= first_day

    recorder.recording = first_day == 0
    simulate(model, first_day + 7, on_day)
    rows = recorder.days[-7:]
    force = {name: [r[name].tolist() for r in rows] for name in groups if name != HOUSEHOLD}
    household = [r[HOUSEHOLD].view(len(areas), MAX_SIZE).tolist() for r in rows]
    return RiskTable(scenario, agents, seed, first_day, areas, force, household, mask_efficacy)


@dataclass(frozen=True)
class Profile:
    """One person's week: their area, household size, days a week in each setting (0–7) and mask use
    outside the home. Read from JSON by :meth:`read`; never sent anywhere."""

    area: str
    household_size: int
    days: Mapping[str, float]
    mask: bool = False

    @classmethod
    def read(cls, path: str | os.PathLike[str], table: RiskTable) -> Profile:
        """``{"area": "Brooklyn", "household_size": 3, "days": {"work": 5, "community": 7}, "mask": false}``
        (``"borough"`` is read as ``"area"``), checked against ``table``'s areas and settings."""
        try:
            content = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"--profile: cannot read {str(path)!r}: {exc}") from None
        if not isinstance(content, dict):
            raise ValueError("--profile: expected a JSON object")
        area = content.get("area", content.get("borough"))
        if area not in table.areas:
            raise ValueError(f"--profile: area {area!r} is not one of {', '.join(table.areas)}")
        size = content.get("household_size", 1)
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"--profile: household_size must be a whole number >= 1, got {size!r}")
        days = content.get("days", {})
        if not isinstance(days, dict):
            raise ValueError("--profile: days must map settings to days a week")
        for name, value in days.items():
            if name not in table.force:
                raise ValueError(
                    f"--profile: days: {name!r} is not a setting; settings: {', '.join(table.force)}"
                )
            if not isinstance(value, int | float) or not 0 <= value <= 7:
                raise ValueError(
                    f"--profile: days: {name} must be between 0 and 7 days a week, got {value!r}"
                )
        return cls(area, size, {k: float(v) for k, v in days.items()}, bool(content.get("mask", False)))


def week_risk(table: RiskTable, profile: Profile) -> dict[str, float]:
    """The probability of infection over the table's 7 days, and each setting's share of the hazard."""
    a = table.areas.index(profile.area)
    size = min(profile.household_size, MAX_SIZE)
    parts = {HOUSEHOLD: sum(day[a][size - 1] for day in table.household) if size > 1 else 0.0}
    outside = 1.0 - table.mask_efficacy if profile.mask else 1.0
    for name, days in profile.days.items():
        parts[name] = sum(day[a] for day in table.force[name]) * (days / 7.0) * outside
    hazard = sum(parts.values())
    out = {"probability": -math.expm1(-hazard), "hazard": hazard}
    out.update({f"hazard_{k}": v for k, v in parts.items()})
    return out


def alternatives(profile: Profile) -> list[tuple[str, Profile]]:
    """The planned week and the usual changes to it, in words."""
    out = [("as planned", profile)]
    words = {
        "work": "work from home",
        "school": "keep out of school",
        "community": "skip the gym, shops and outings (community)",
    }
    for name, days in profile.days.items():
        if days > 0:
            changed = dict(profile.days)
            changed[name] = 0.0
            out.append(
                (
                    words.get(name, f"skip {name}"),
                    Profile(profile.area, profile.household_size, changed, profile.mask),
                )
            )
    if not profile.mask:
        out.append(
            (
                "wear a mask outside the home",
                Profile(profile.area, profile.household_size, profile.days, True),
            )
        )
    return out


def answer(
    table: RiskTable, profile: Profile, choices: Sequence[tuple[str, Profile]] | None = None
) -> list[dict[str, Any]]:
    """Each choice's 7-day probability (and its change from the plan)."""
    choices = list(choices) if choices is not None else alternatives(profile)
    base = week_risk(table, profile)["probability"]
    rows = []
    for label, p in choices:
        risk = week_risk(table, p)
        rows.append(
            {"choice": label, "probability": risk["probability"], "change": risk["probability"] - base}
        )
    return rows
