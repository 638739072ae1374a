"""How interventions and behaviour act on a disease layer: each day a :class:`Modifier` returns
:class:`Effects`, and the disease layer multiplies them into its transmission and severity.

One concept covers absence and protection alike: a *presence* factor of an agent in a setting multiplies
both what it emits and what it receives there. An agent who stays home has presence 0 at work, school and
in the community; a mask wearer has presence ``1 − efficacy`` in the settings where masks are worn.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import torch

from populace.masks import numeric
from populace.model import Layer, StepContext
from populace.params import ParamError

__all__ = ["Decider", "Effects", "Modifier", "check_groups", "check_table", "combine"]


@dataclass
class Effects:
    """What a modifier does today. Every entry is optional.

    Attributes:
        presence: setting name -> ``bool`` or ``float32[agents]`` factor on each agent's contacts there
            (as source and as target).
        place_scale: setting name -> ``float32[places + 1]`` factor on each place's contacts (closures);
            only for :class:`~populace.Places` settings; the last slot is the "no place" slot and stays 0.
        susceptibility: ``float32[agents]`` factor on each agent's hazard of infection (vaccines).
        severity: ``float32[agents]`` factor on each agent's probability of severe disease if infected.
        imported: ``float32[agents]`` hazard of infection from outside the population, added to the
            contacts' hazard (:class:`~populace.layers.importation.Importation`).
    """

    presence: dict[str, torch.Tensor] = field(default_factory=dict)
    place_scale: dict[str, torch.Tensor] = field(default_factory=dict)
    susceptibility: torch.Tensor | None = None
    severity: torch.Tensor | None = None
    imported: torch.Tensor | None = None


class Modifier(Layer):
    """A layer whose state changes a disease layer's transmission or severity (see module docs)."""

    @abc.abstractmethod
    def effects(self, state: Any, ctx: StepContext) -> Effects:
        """Today's effects, given this layer's state after today's step."""


class Decider(Modifier):
    """A modifier that also decides, per agent, whether a symptomatic agent seeks a test (``Behaviour``)."""

    @abc.abstractmethod
    def seeks_test(self, state: Any, agents: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """``bool[len(agents)]``: which of ``agents`` (``int64``) seek a test today."""


def combine(factors: list[torch.Tensor]) -> torch.Tensor | None:
    """The product of several per-agent factors; ``bool`` factors are combined with ``&`` first (cheap), and
    multiply the others as bytes (:func:`~populace.masks.numeric`)."""
    if not factors:
        return None
    masks = [f for f in factors if f.dtype == torch.bool]
    scales = [f for f in factors if f.dtype != torch.bool]
    out: torch.Tensor | None = None
    for mask in masks:
        out = mask if out is None else out & mask
    for scale in scales:
        out = scale if out is None else numeric(out) * scale  # uint8 * float is float
    return out


def check_groups(group: torch.Tensor, groups: int) -> None:
    """``ValueError`` unless every agent's ``group`` (its column of a modifier's table) is in
    ``0 … groups − 1``."""
    if group.numel() and not 0 <= int(group.min()) <= int(group.max()) < groups:
        raise ValueError(f"group: expected values in 0..{groups - 1}")


def check_table(name: str, table: torch.Tensor, unit: str) -> None:
    """:class:`ParamError` unless every entry of a modifier's table is finite and ≥ 0. Layers check when a
    run starts too: a fitted table loaded from a file (``populace run --params``) has no spec bounds."""
    if not bool(torch.isfinite(table).all() and (table >= 0).all()):
        raise ParamError(f"{name}: expected finite values ≥ 0 ({unit})")
