"""Place aggregation: the one step of a day that gathers what infectious agents emit into each place and
hands each agent back the pressure of its places.

Every disease layer (:class:`~populace.layers.infection.Infection`) sends its settings' emissions through one
:class:`Aggregation` object, so where the sums are computed is a strategy passed in, not code inside the
disease. A day has three steps:

1. :meth:`Aggregation.add`: emitting agents add their emissions into this process's per-place sums;
2. :meth:`Aggregation.total`: the sums of all settings of the day, taken over every process that holds
   members of a place (one collective for all settings that span processes, none for the others);
3. :meth:`Aggregation.force`: each agent reads back its places' pressure.

:class:`ExactSums` does this with exact sums (``index_add`` of emissions rounded to 2⁻²⁴ into ``float64``,
see :mod:`populace.distributed`), in one process or across the processes of a split population (the
:class:`~populace.distributed.Shard` of the run). An aggregation on secret shares sums shares instead.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from .contacts import Contacts
from .distributed import Shard

__all__ = ["Aggregation", "ExactSums"]


class Aggregation(abc.ABC):
    """How emissions become per-place sums (:meth:`add`, :meth:`total`) and per-agent force
    (:meth:`force`)."""

    @abc.abstractmethod
    def add(
        self, contacts: Contacts, pressure: torch.Tensor, agents: torch.Tensor, emitted: torch.Tensor
    ) -> torch.Tensor:
        """``pressure`` (this process's per-place sums of the setting) after ``agents`` (``int64[k]``) add
        ``emitted`` (``float32[k]``, may be negative: agents that stop emitting). In place when nothing needs
        a gradient."""

    @abc.abstractmethod
    def total(
        self, settings: Sequence[Contacts], sums: Sequence[torch.Tensor], shard: Shard
    ) -> list[torch.Tensor]:
        """The per-place sums of ``settings`` over every process of ``shard`` (called once a day, by every
        process, with the same settings in the same order)."""

    @abc.abstractmethod
    def force(
        self,
        contacts: Contacts,
        pressure: torch.Tensor,
        scale: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``float32[agents]``: the hazard on every agent from its places' total pressure, ``scale`` per
        contact per day (see :meth:`~populace.contacts.Contacts.force`); written into ``out`` when given."""

    def force_times(
        self, contacts: Contacts, pressure: torch.Tensor, scale: torch.Tensor, presence: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`force` × ``presence`` (per agent): the hazard on agents only partly there."""
        return self.force(contacts, pressure, scale) * presence

    def empty(self, contacts: Contacts) -> torch.Tensor:
        """Zero per-place sums of ``contacts``."""
        return contacts.empty_pressure()


class ExactSums(Aggregation):
    """Exact per-place sums: ``index_add`` into places, one all-reduce over the processes for the settings
    whose places span them, ``index_select`` back to the agents."""

    def add(
        self, contacts: Contacts, pressure: torch.Tensor, agents: torch.Tensor, emitted: torch.Tensor
    ) -> torch.Tensor:
        return contacts.add_sources(pressure, agents, emitted)

    def total(
        self, settings: Sequence[Contacts], sums: Sequence[torch.Tensor], shard: Shard
    ) -> list[torch.Tensor]:
        out = list(sums)
        spanning = [i for i, c in enumerate(settings) if c.spans]
        if not spanning or not shard.spans:
            return out
        packed = shard.sum(torch.cat([sums[i] for i in spanning]))
        for i, part in zip(spanning, packed.split([sums[i].numel() for i in spanning]), strict=True):
            out[i] = part
        return out

    def force(
        self,
        contacts: Contacts,
        pressure: torch.Tensor,
        scale: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return contacts.force(pressure, scale, out=out)

    def force_times(
        self, contacts: Contacts, pressure: torch.Tensor, scale: torch.Tensor, presence: torch.Tensor
    ) -> torch.Tensor:
        return contacts.force_times(pressure, scale, presence)
