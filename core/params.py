"""Parameter specs: one declaration per parameter drives the model, calibration, sensitivity and the UI.

A :class:`Param` carries value, bounds, unit, doc and whether it is learnable. :func:`register_param`
turns a spec into module state: learnable specs become ``torch.nn.Parameter`` (so ``named_parameters()``
and any torch optimiser see them), fixed ones become buffers (so ``.to(device)`` moves them).
A :class:`Choice` is a categorical option (e.g. the network structure of a scenario).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, replace

import torch
from torch import nn

__all__ = ["Choice", "Param", "ParamError", "register_param", "register_params"]


class ParamError(ValueError):
    """A parameter value that is unknown, malformed or out of bounds. The message names the parameter."""


@dataclass(frozen=True)
class Param:
    """A scalar model parameter.

    Attributes:
        value: default value.
        bounds: inclusive ``(low, high)``; values outside are rejected.
        unit: unit of ``value`` (e.g. ``"1/contact/day"``, ``"days"``, ``"fraction"``).
        doc: what it means and the source of its default.
        learnable: registered as ``nn.Parameter`` (calibration and sensitivity act on it).
        option: the name of the scenario option this spec is (``Scenario.defaults``), ``""`` if none: how
            the explorer and the CLI find the model tensors an option sets.
    """

    value: float
    bounds: tuple[float, float]
    unit: str
    doc: str
    learnable: bool = False
    option: str = ""

    def __post_init__(self) -> None:
        low, high = self.bounds
        if not low <= high:
            raise ValueError(f"bounds {self.bounds} are not ordered")
        self.validate(self.value, "default")

    def validate(self, value: float, name: str) -> float:
        """Return ``value`` as float or raise :class:`ParamError` naming ``name``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError(f"{name}: expected a number, got {value!r}")
        value = float(value)
        low, high = self.bounds
        if math.isnan(value) or not low <= value <= high:
            raise ParamError(f"{name}: {value:g} is outside the bounds [{low:g}, {high:g}] ({self.unit})")
        return value

    def parse(self, text: str, name: str, start: dt.date | None = None) -> Param:
        """A copy with the value parsed from command-line text. A day index (unit ``"day"``) may be given
        as a date ``YYYY-MM-DD``: the days from ``start``, the date of day 0."""
        if self.unit == "day" and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", text):
            return replace(self, value=self.validate(float(_day_index(text.strip(), name, start)), name))
        try:
            value = float(text)
        except ValueError:
            dates = " or a date YYYY-MM-DD" if self.unit == "day" and start is not None else ""
            raise ParamError(
                f"{name}: expected a number in [{self.bounds[0]:g}, {self.bounds[1]:g}]{dates}, got {text!r}"
            ) from None
        return replace(self, value=self.validate(value, name))


def _day_index(text: str, name: str, start: dt.date | None) -> int:
    """The day index of the date ``text`` when day 0 is ``start``; :class:`ParamError` names ``name``."""
    if start is None:
        raise ParamError(
            f"{name}: {text} is a date, but this scenario has no start date (day 0): give a day index"
        )
    try:
        date = dt.date.fromisoformat(text)
    except ValueError:
        raise ParamError(f"{name}: {text!r} is not a date YYYY-MM-DD") from None
    if date < start:
        raise ParamError(f"{name}: {text} is before day 0 of the run ({start.isoformat()})")
    return (date - start).days


@dataclass(frozen=True)
class Choice:
    """A categorical option: ``value`` must be one of ``options``."""

    value: str
    options: tuple[str, ...]
    doc: str
    option: str = ""

    def __post_init__(self) -> None:
        self.validate(self.value, "default")

    def validate(self, value: str, name: str) -> str:
        if value not in self.options:
            raise ParamError(f"{name}: expected one of {', '.join(self.options)}, got {value!r}")
        return value

    def parse(self, text: str, name: str, start: dt.date | None = None) -> Choice:
        """A copy with the value ``text`` (``start``, for day indices, does not apply)."""
        return replace(self, value=self.validate(text, name))


def register_param(module: nn.Module, name: str, spec: Param) -> None:
    """Attach ``spec`` to ``module`` as ``module.<name>`` (a 0-d float32 tensor) and record the spec.

    Learnable specs become ``nn.Parameter``; fixed ones become buffers. The spec is kept in
    ``module.param_specs[name]`` for calibration bounds, sensitivity and UI widgets.
    """
    specs: dict[str, Param] = module.__dict__.setdefault("param_specs", {})
    specs[name] = spec
    value = torch.tensor(spec.value, dtype=torch.float32)
    if spec.learnable:
        module.register_parameter(name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


def register_params(module: nn.Module, **specs: Param) -> None:
    """:func:`register_param` for each ``name=spec``."""
    for name, spec in specs.items():
        register_param(module, name, spec)
