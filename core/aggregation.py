"""Place aggregation: the one step of a day that gathers what infectious agents emit into each place and
hands each agent back the pressure of its places.

Every disease layer (:class:`~populace.layers.infection.Infection`) sends its settings' emissions through one
:class:`Aggregation` object, so where the sums are computed is a strategy passed in, not code inside the
disease: :class:`LocalAggregation` sums in this process (``index_add`` into the places, ``index_select`` back
to the agents). An aggregation that spans processes sums each place's emissions across ranks between the two
steps; one on secret shares sums shares instead of values. The interface sees, per setting, the place
indices (the :class:`~populace.contacts.Contacts`), the emitting agents and their emissions, and returns
per-agent pressure.
"""

from __future__ import annotations

import abc

import torch

from .contacts import Contacts

__all__ = ["Aggregation", "LocalAggregation"]


class Aggregation(abc.ABC):
    """How emissions become per-place sums (:meth:`add`) and per-agent force (:meth:`force`)."""

    @abc.abstractmethod
    def add(
        self, contacts: Contacts, pressure: torch.Tensor, agents: torch.Tensor, emitted: torch.Tensor
    ) -> torch.Tensor:
        """``pressure`` (the setting's per-place sums) after ``agents`` (``int64[k]``) add ``emitted``
        (``float32[k]``, may be negative: agents that stop emitting). In place when nothing needs a
        gradient."""

    @abc.abstractmethod
    def force(
        self,
        contacts: Contacts,
        pressure: torch.Tensor,
        scale: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``float32[agents]``: the hazard on every agent from its places' pressure, ``scale`` per contact
        per day (see :meth:`~populace.contacts.Contacts.force`); written into ``out`` when given."""

    def empty(self, contacts: Contacts) -> torch.Tensor:
        """Zero per-place sums of ``contacts``."""
        return contacts.empty_pressure()


class LocalAggregation(Aggregation):
    """All agents and places in this process: ``index_add`` into places, ``index_select`` back."""

    def add(
        self, contacts: Contacts, pressure: torch.Tensor, agents: torch.Tensor, emitted: torch.Tensor
    ) -> torch.Tensor:
        return contacts.add_sources(pressure, agents, emitted)

    def force(
        self,
        contacts: Contacts,
        pressure: torch.Tensor,
        scale: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return contacts.force(pressure, scale, out=out)
