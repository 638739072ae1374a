"""Contact structures: how infectious agents exert a force of infection on others.

Four implementations of one interface (:class:`Contacts`):

* :class:`Places` — agents meet in places (households, schools, workplaces, neighbourhoods). The
  infectious "pressure" of a place is the sum of its infectious members' weights (one ``index_add``
  over the agents that change state); the force on an agent is its place's pressure times the per-pair
  contact rate (one ``index_select`` over agents). Cost O(agents) per day, independent of the number of
  contacts, and differentiable.
* :class:`AgeMixing` — agents mix within groups (e.g. neighbourhoods) following an age-structured contact
  matrix (e.g. Mistry et al. 2021's community setting); pressure is kept per (group, age band) cell. Cost
  O(agents + groups × bands²) per day.
* :class:`EdgeNetwork` — an explicit directed edge list in CSR order (edges sorted by target), for
  small models and contact tracing. Cost O(edges) per day.
* :class:`DistanceKernel` — agents at fixed positions (farms) infect each other at a rate that falls with
  distance. Cost O(agents × emitting agents) per day.

A structure keeps a *pressure* tensor (per place, or per agent for networks) that the disease layer
updates incrementally as agents enter or leave the infectious state; in-place when no gradient flows.
Pressures are ``float64`` sums of emissions rounded to multiples of 2⁻²⁴ (:func:`populace.distributed.exact`):
exact, so the same whatever the order of the additions, and so the same when a population is split over
processes (:meth:`Contacts.shard`) and each place's sum is taken across them. The force is computed in
``float32`` from them.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from typing import Any, Self

import torch
from torch import nn

from .distributed import Shard, exact
from .masks import numeric
from .params import Param, register_param

__all__ = [
    "AgeMixing",
    "Contacts",
    "DistanceKernel",
    "EdgeNetwork",
    "GatherTimes",
    "Places",
    "spanning_places",
]

_WEIGHT = Param(
    1.0,
    (0.0, 10.0),
    "relative",
    learnable=True,
    doc="Relative transmissibility of contacts in this setting (1 = the same per-contact beta "
    "everywhere, as in the benchmark model of DESIGN.md §5).",
)


class GatherTimes(torch.autograd.Function):
    """``apply(rate, index, presence)``: ``rate[index] × presence``, each agent's hazard from its place's
    rate (``float32[places]``) times its presence there (``float32`` or ``bool``, per agent). The same
    values as ``rate[index] * presence``, but the tape keeps the per-place rates, not the per-agent hazard
    (4 bytes per agent, setting and day, measured in ``benchmarks/README.md``): the backward pass gathers
    them again."""

    @staticmethod
    def forward(rate: torch.Tensor, index: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        return torch.index_select(rate, 0, index).mul_(numeric(presence))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        rate, index, presence = inputs
        ctx.save_for_backward(rate, index, presence)
        ctx.save_for_forward(rate, index, presence)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None]:
        rate, index, presence = ctx.saved_tensors
        grad_rate = grad_presence = None
        if ctx.needs_input_grad[0]:
            grad_rate = torch.zeros_like(rate).index_add_(0, index, grad * numeric(presence))
        if ctx.needs_input_grad[2]:
            grad_presence = grad * torch.index_select(rate, 0, index)
        return grad_rate, None, grad_presence

    @staticmethod
    def jvp(
        ctx: Any, rate_t: torch.Tensor | None, index_t: Any, presence_t: torch.Tensor | None
    ) -> torch.Tensor:
        rate, index, presence = ctx.saved_tensors
        out = torch.zeros(index.shape, dtype=rate.dtype, device=rate.device)
        if rate_t is not None:
            out = out + torch.index_select(rate_t, 0, index) * numeric(presence)
        if presence_t is not None:
            out = out + torch.index_select(rate, 0, index) * presence_t
        return out


class Contacts(nn.Module, abc.ABC):
    """Abstract contact structure over ``n_agents`` agents; ``weight`` is its relative transmissibility."""

    weight: torch.Tensor
    spans: bool = False
    """Whether some place has members in several shards of a split population (its sums are then taken
    across processes); set by :meth:`shard`."""

    def __init__(self, name: str, n_agents: int, weight: Param = _WEIGHT) -> None:
        super().__init__()
        self.name = name
        self.n_agents = n_agents
        register_param(self, "weight", weight)

    def shard(self, shard: Shard) -> Self:
        """This setting for the agents of ``shard`` only (built on the whole population, so place sizes are
        those of all members): places with members in several shards keep their global numbering and
        :attr:`spans` is set; otherwise places are renumbered locally."""
        raise NotImplementedError(f"{self.name}: a {type(self).__name__} cannot be split over processes yet")

    def _sharded_copy(self, n_agents: int) -> Self:
        """A new structure of this class over ``n_agents`` agents with this one's name and weight."""
        new = type(self).__new__(type(self))
        specs: dict[str, Param] = self.__dict__["param_specs"]
        Contacts.__init__(new, self.name, n_agents, specs["weight"])
        with torch.no_grad():
            new.weight.copy_(self.weight)
        return new

    @abc.abstractmethod
    def empty_pressure(self) -> torch.Tensor:
        """Zero pressure, ``float64[sources]``."""

    @abc.abstractmethod
    def add_sources(
        self, pressure: torch.Tensor, agents: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Pressure after ``agents`` (``int64[k]``) add ``weights`` (``float32[k]``) of infectiousness
        (rounded by :func:`~populace.distributed.exact`)."""

    @abc.abstractmethod
    def force(
        self, pressure: torch.Tensor, scale: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hazard on every agent, ``float32[agents]``: ``scale`` (per contact per day) × contacts × pressure.

        ``scale`` is a scalar, or for :class:`Places` also one value per place plus a trailing 0 slot
        (``float32[places + 1]``: closures scale a place's contacts). With ``out`` (fast mode) the result is
        written there instead of a new tensor."""

    def force_at(self, pressure: torch.Tensor, scale: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
        """The hazard of :meth:`force` on ``agents`` only (``int64[k]``), ``float32[k]``."""
        return self.force(pressure, scale)[agents]

    def force_times(
        self, pressure: torch.Tensor, scale: torch.Tensor, presence: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`force` × ``presence`` (per agent, ``float32`` or ``bool``): the hazard on agents who are
        only partly there (differentiable mode)."""
        return self.force(pressure, scale) * numeric(presence)


def _index_add(pressure: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    if pressure.requires_grad or weights.requires_grad:
        return pressure.index_add(0, index, exact(weights))
    return pressure.index_add_(0, index, exact(weights))


def spanning_places(index: torch.Tensor, outside: int, bounds: Sequence[int]) -> torch.Tensor:
    """``bool[outside]``: which places of ``index`` (``int[agents]``, each agent's place, ``outside`` for
    non-members) have members in two of the shards whose boundaries are ``bounds``."""
    ranks = len(bounds) - 1
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    owner = torch.repeat_interleave(
        torch.arange(ranks, dtype=torch.int32, device=index.device), torch.tensor(sizes, device=index.device)
    )
    index = index.long()
    first = torch.full((outside + 1,), ranks, dtype=torch.int32, device=index.device)
    first = first.scatter_reduce(0, index, owner, "amin")
    last = torch.full((outside + 1,), -1, dtype=torch.int32, device=index.device)
    last = last.scatter_reduce(0, index, owner, "amax")
    return first[:outside] < last[:outside]


def _spanning(index: torch.Tensor, outside: int, shard: Shard) -> bool:
    """Whether some place of ``index`` has members in two of ``shard``'s shards."""
    return bool(spanning_places(index, outside, shard.bounds or ()).any())


def _local_index(index: torch.Tensor, outside: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``index`` renumbered to the places it uses: (new index with ``len(places)`` for non-members,
    ``places``, the old numbers of the new ones)."""
    member = index < outside
    places, inverse = torch.unique(index[member], return_inverse=True)
    local = torch.full_like(index, places.numel())
    local[member] = inverse.to(index.dtype)
    return local, places


class Places(Contacts):
    """Agents grouped in places; every member of a place of size n meets each other member
    ``min(1, contacts / (n − 1))`` times per day (all of them when ``contacts`` is ``None``).

    Args:
        name: setting name (``"household"``, ``"school"``, ...).
        place: ``int[agents]``, each agent's place index, ``-1`` for agents outside this setting.
        contacts: contacts per member per day inside a place; ``None`` means everyone in the place.
        weight: relative transmissibility of the setting.
    """

    place_index: torch.Tensor
    pair_rate: torch.Tensor
    global_places: torch.Tensor | None

    def __init__(
        self, name: str, place: torch.Tensor, contacts: float | None = None, weight: Param = _WEIGHT
    ) -> None:
        super().__init__(name, int(place.numel()), weight)
        if place.dim() != 1 or place.dtype.is_floating_point:
            raise TypeError(f"{name}: place must be a 1-D integer tensor")
        if contacts is not None and contacts <= 0:
            raise ValueError(f"{name}: contacts must be positive, got {contacts}")
        place = place.to(torch.int64)
        n_places = int(place.max()) + 1 if place.numel() else 0
        member = place >= 0
        size = torch.bincount(place[member], minlength=n_places).to(torch.float64)
        others = (size - 1).clamp(min=0)
        if contacts is None:
            pair = (others > 0).to(torch.float64)
        else:
            pair = torch.where(others > 0, (contacts / others.clamp(min=1)).clamp(max=1.0), 0.0)
        self.n_places = n_places
        self.places_total = n_places
        self.contacts = contacts
        self.register_buffer("global_places", None, persistent=False)
        # Agents outside the setting point at an extra slot n_places whose rate is 0.
        index = torch.where(member, place, n_places).to(torch.int32)
        self.register_buffer("place_index", index, persistent=False)
        self.register_buffer(
            "pair_rate", torch.cat([pair, pair.new_zeros(1)]).to(torch.float32), persistent=False
        )

    def place_ids(self) -> torch.Tensor:
        """``int64[n_places]``: each place's number in the whole population (its own index unless this is
        one process's part of a split population whose places were renumbered)."""
        if self.global_places is not None:
            return self.global_places
        return torch.arange(self.n_places, device=self.pair_rate.device)

    def mean_contacts(self) -> float:
        """Mean contacts per agent per day in this setting (over all agents)."""
        size = torch.bincount(self.place_index.long(), minlength=self.n_places + 1)[:-1].double()
        pair = self.pair_rate[:-1].double()
        return float((size * (size - 1).clamp(min=0) * pair).sum() / max(self.n_agents, 1))

    def shard(self, shard: Shard) -> Places:
        if self.n_agents != shard.total:
            raise ValueError(f"{self.name}: covers {self.n_agents} agents, the shards {shard.total}")
        index = self.place_index[shard.start : shard.stop]
        new = self._sharded_copy(shard.size)
        new.contacts = self.contacts
        new.places_total = self.places_total
        new.register_buffer("global_places", None, persistent=False)
        new.spans = shard.spans and _spanning(self.place_index, self.n_places, shard)
        if new.spans:
            new.n_places = self.n_places
            new.register_buffer("place_index", index.clone(), persistent=False)
            new.register_buffer("pair_rate", self.pair_rate.clone(), persistent=False)
            return new
        local, places = _local_index(index, self.n_places)
        new.n_places = places.numel()
        new.register_buffer("global_places", places.long(), persistent=False)
        new.register_buffer("place_index", local, persistent=False)
        rate = torch.cat([self.pair_rate[places.long()], self.pair_rate.new_zeros(1)])
        new.register_buffer("pair_rate", rate, persistent=False)
        return new

    def empty_pressure(self) -> torch.Tensor:
        return torch.zeros(self.n_places + 1, dtype=torch.float64, device=self.pair_rate.device)

    def add_sources(
        self, pressure: torch.Tensor, agents: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        return _index_add(pressure, self.place_index[agents], weights)

    def _rate(self, pressure: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return pressure.to(torch.float32) * (self.pair_rate * (scale * self.weight))

    def force_at(self, pressure: torch.Tensor, scale: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
        # Gathered first: O(len(agents)), not O(places) (the same products as force's, element by element).
        place = self.place_index[agents].long()
        per_contact = scale * self.weight
        if per_contact.dim():
            per_contact = per_contact[place]
        return pressure[place].to(torch.float32) * (self.pair_rate[place] * per_contact)

    def force_times(
        self, pressure: torch.Tensor, scale: torch.Tensor, presence: torch.Tensor
    ) -> torch.Tensor:
        return GatherTimes.apply(self._rate(pressure, scale), self.place_index, presence)

    def force(
        self, pressure: torch.Tensor, scale: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        rate = self._rate(pressure, scale)
        if out is None:
            return torch.index_select(rate, 0, self.place_index)
        if rate.requires_grad:  # out= is not differentiable
            return out.copy_(torch.index_select(rate, 0, self.place_index))
        return torch.index_select(rate, 0, self.place_index, out=out)


class AgeMixing(Contacts):
    """Agents meet members of their group by age: an agent of band ``a`` has ``matrix[a, b]`` contacts per day
    with members of band ``b`` of its own group, drawn at random among them.

    The force on an agent of band ``a`` in group ``g`` is ``scale × Σ_b matrix[a, b] · pressure[g, b] /
    members[g, b]``: frequency-dependent mixing within each (group, band) cell.

    Args:
        name: setting name (``"community"``).
        group: ``int[agents]``, each agent's group (e.g. small area), ``-1`` for agents outside the setting.
        band: ``int[agents]``, each agent's age band, in ``[0, bands)``.
        matrix: ``float[bands, bands]``, contacts per day of a band-``a`` agent with band-``b`` people.
        weight: relative transmissibility of the setting.
    """

    cell_index: torch.Tensor
    inverse_members: torch.Tensor
    matrix: torch.Tensor

    def __init__(
        self,
        name: str,
        group: torch.Tensor,
        band: torch.Tensor,
        matrix: torch.Tensor,
        weight: Param = _WEIGHT,
    ) -> None:
        super().__init__(name, int(group.numel()), weight)
        if group.dim() != 1 or group.dtype.is_floating_point:
            raise TypeError(f"{name}: group must be a 1-D integer tensor")
        if band.shape != group.shape or band.dtype.is_floating_point:
            raise TypeError(f"{name}: band must be an integer tensor shaped like group {tuple(group.shape)}")
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"{name}: matrix must be square, got shape {tuple(matrix.shape)}")
        if bool((matrix < 0).any()) or not bool(torch.isfinite(matrix).all()):
            raise ValueError(f"{name}: matrix must hold finite, non-negative contact numbers")
        bands = matrix.shape[0]
        band = band.to(torch.int64)
        if band.numel() and (int(band.min()) < 0 or int(band.max()) >= bands):
            raise ValueError(f"{name}: band values must lie in [0, {bands}) for a {bands}x{bands} matrix")
        group = group.to(torch.int64)
        n_groups = int(group.max()) + 1 if group.numel() else 0
        cells = n_groups * bands
        member = group >= 0
        index = torch.where(member, group * bands + band, cells)
        members = torch.bincount(index, minlength=cells + 1).to(torch.float64)
        inverse = torch.where(members > 0, 1.0 / members.clamp(min=1), 0.0)
        inverse[cells] = 0.0  # the slot of agents outside the setting
        self.n_groups, self.bands = n_groups, bands
        self.register_buffer("cell_index", index.to(torch.int32), persistent=False)
        self.register_buffer("inverse_members", inverse.to(torch.float32), persistent=False)
        self.register_buffer("matrix", matrix.to(torch.float32), persistent=False)

    def shard(self, shard: Shard) -> AgeMixing:
        if self.n_agents != shard.total:
            raise ValueError(f"{self.name}: covers {self.n_agents} agents, the shards {shard.total}")
        cells = self.n_groups * self.bands
        new = self._sharded_copy(shard.size)
        new.bands = self.bands
        new.register_buffer("matrix", self.matrix.clone(), persistent=False)
        index = self.cell_index[shard.start : shard.stop]
        new.spans = shard.spans and _spanning(self.cell_index, cells, shard)
        if new.spans:
            new.n_groups = self.n_groups
            new.register_buffer("cell_index", index.clone(), persistent=False)
            new.register_buffer("inverse_members", self.inverse_members.clone(), persistent=False)
            return new
        # whole groups only (a group's cells are renumbered together, keeping the band layout)
        group = torch.where(index < cells, index // self.bands, self.n_groups)
        local, groups = _local_index(group, self.n_groups)
        new.n_groups = groups.numel()
        band = index % self.bands
        new.register_buffer(
            "cell_index",
            torch.where(local < new.n_groups, local * self.bands + band, new.n_groups * self.bands).to(
                torch.int32
            ),
            persistent=False,
        )
        kept = (
            groups.long().unsqueeze(1) * self.bands + torch.arange(self.bands, device=index.device)
        ).reshape(-1)
        inverse = torch.cat([self.inverse_members[kept], self.inverse_members.new_zeros(1)])
        new.register_buffer("inverse_members", inverse, persistent=False)
        return new

    def empty_pressure(self) -> torch.Tensor:
        return torch.zeros(self.n_groups * self.bands + 1, dtype=torch.float64, device=self.matrix.device)

    def add_sources(
        self, pressure: torch.Tensor, agents: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        return _index_add(pressure, self.cell_index[agents], weights)

    def _rate(self, pressure: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        share = (pressure.to(torch.float32) * self.inverse_members)[:-1].view(self.n_groups, self.bands)
        rate = (share @ self.matrix.T).reshape(-1) * (scale * self.weight)
        return torch.cat([rate, rate.new_zeros(1)])

    def force_at(self, pressure: torch.Tensor, scale: torch.Tensor, agents: torch.Tensor) -> torch.Tensor:
        return self._rate(pressure, scale)[self.cell_index[agents].long()]

    def force_times(
        self, pressure: torch.Tensor, scale: torch.Tensor, presence: torch.Tensor
    ) -> torch.Tensor:
        return GatherTimes.apply(self._rate(pressure, scale), self.cell_index, presence)

    def force(
        self, pressure: torch.Tensor, scale: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        rate = self._rate(pressure, scale)
        if out is None:
            return torch.index_select(rate, 0, self.cell_index)
        if rate.requires_grad:
            return out.copy_(torch.index_select(rate, 0, self.cell_index))
        return torch.index_select(rate, 0, self.cell_index, out=out)


class _PerAgent(Contacts):
    """A structure whose pressure is per agent (what each emits), not per place."""

    @abc.abstractmethod
    def _device(self) -> torch.device: ...

    def empty_pressure(self) -> torch.Tensor:
        return torch.zeros(self.n_agents, dtype=torch.float64, device=self._device())

    def add_sources(
        self, pressure: torch.Tensor, agents: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        return _index_add(pressure, agents, weights)


class EdgeNetwork(_PerAgent):
    """Explicit directed contacts ``source -> target`` stored in CSR order (sorted by target).

    Args:
        name: network name.
        n_agents: number of agents.
        source, target: ``int[edges]`` endpoints; add both directions for symmetric contacts.
        contacts: ``float[edges]`` contacts per day on each edge (default 1).
    """

    source: torch.Tensor
    target: torch.Tensor
    rate: torch.Tensor
    indptr: torch.Tensor

    def __init__(
        self,
        name: str,
        n_agents: int,
        source: torch.Tensor,
        target: torch.Tensor,
        contacts: torch.Tensor | None = None,
        weight: Param = _WEIGHT,
    ) -> None:
        super().__init__(name, n_agents, weight)
        if source.shape != target.shape or source.dim() != 1:
            raise ValueError(f"{name}: source and target must be 1-D and of equal length")
        if source.numel() and (
            min(int(source.min()), int(target.min())) < 0
            or max(int(source.max()), int(target.max())) >= n_agents
        ):
            raise ValueError(f"{name}: edge endpoints must lie in [0, {n_agents})")
        if contacts is not None and contacts.shape != source.shape:
            raise ValueError(
                f"{name}: contacts must have one value per edge ({source.numel()}), got shape "
                f"{tuple(contacts.shape)}"
            )
        rate = torch.ones(source.numel(), device=source.device) if contacts is None else contacts.float()
        order = torch.argsort(target.long() * n_agents + source.long())
        target = target.long()[order]
        self.register_buffer("source", source.long()[order], persistent=False)
        self.register_buffer("target", target, persistent=False)
        self.register_buffer("rate", rate[order], persistent=False)
        counts = torch.bincount(target, minlength=n_agents)
        self.register_buffer("indptr", torch.cat([counts.new_zeros(1), counts.cumsum(0)]), persistent=False)

    def neighbours(self, agent: int) -> torch.Tensor:
        """Sources of the edges into ``agent``."""
        return self.source[self.indptr[agent] : self.indptr[agent + 1]]

    def _device(self) -> torch.device:
        return self.rate.device

    def force(
        self, pressure: torch.Tensor, scale: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        per_edge = pressure[self.source].to(torch.float32) * self.rate * (scale * self.weight)
        hazard = torch.zeros(self.n_agents, device=pressure.device, dtype=per_edge.dtype)
        hazard = hazard.index_add(0, self.target, per_edge)
        if out is not None:
            return out.copy_(hazard)
        return hazard


class DistanceKernel(_PerAgent):
    """Agents at fixed positions (farms) infect each other at a rate that falls with distance,
    K(d) = 1 / (1 + (d / r0)^α) (the transmission kernel of Boender et al. 2007, PLoS Comput Biol 3:e71).

    The pressure is per agent (what it emits); the force on agent i is ``scale × Σ_j K(d_ij) · pressure_j``
    over the emitting agents only (an ``[agents, emitting]`` block: exact distances, no grid).

    Args:
        name: setting name.
        x, y: ``float[agents]`` positions in km (any planar projection).
        r0, alpha: specs of the kernel's distance scale (km) and exponent (``r0``, ``alpha`` here).
        weight: relative transmissibility of the setting.
    """

    x: torch.Tensor
    y: torch.Tensor
    r0: torch.Tensor
    alpha: torch.Tensor

    def __init__(
        self, name: str, x: torch.Tensor, y: torch.Tensor, *, r0: Param, alpha: Param, weight: Param = _WEIGHT
    ) -> None:
        super().__init__(name, int(x.numel()), weight)
        if x.shape != y.shape or x.dim() != 1:
            raise ValueError(f"{name}: x and y must be 1-D and of equal length")
        self.register_buffer("x", x.to(torch.float32), persistent=False)
        self.register_buffer("y", y.to(torch.float32), persistent=False)
        register_param(self, "r0", r0)
        register_param(self, "alpha", alpha)

    def _device(self) -> torch.device:
        return self.x.device

    def force(
        self, pressure: torch.Tensor, scale: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        scale = scale * self.weight
        sources = torch.nonzero(pressure.detach()).squeeze(1)
        differentiable = torch.is_grad_enabled()
        if sources.numel() == 0 or (not (differentiable and scale.requires_grad) and float(scale) == 0.0):
            hazard = torch.zeros(self.n_agents, device=pressure.device)
        else:
            d2 = (self.x.unsqueeze(1) - self.x[sources]).square_() + (
                self.y.unsqueeze(1) - self.y[sources]
            ).square_()
            kernel = 1.0 / (1.0 + (d2 / self.r0**2).pow(self.alpha / 2))
            emitted = pressure[sources].to(torch.float32)
            near = kernel @ emitted if differentiable else (kernel * emitted).sum(1)
            hazard = scale * near
        if out is not None:
            return out.copy_(hazard)
        return hazard
