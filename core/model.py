"""Layers and models.

A :class:`Layer` is a ``torch.nn.Module`` with a fixed lifecycle:

1. ``init_state(ctx) -> state``: draw the layer's initial state (a :class:`LayerState` dataclass of
   tensors) from the named random streams in ``ctx``.
2. ``step(state, ctx) -> state``: advance one day. Integer state may be updated in place; tensors that
   carry gradients are replaced (never written in place).
3. ``observe(state) -> {name: tensor}``: what the layer reports at the end of each day (snapshots,
   never views of state that is later updated in place).

A :class:`Model` runs its layers every day in this phase order (stable within a phase)::

    DEMOGRAPHY -> MOBILITY -> BEHAVIOUR -> INTERVENTION -> DISEASE -> OBSERVE

Layers may act on different agent types (people, farms, plants) or on none (an ODE): each layer is
built with the population it acts on, so one model can mix paradigms.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

import torch
from torch import nn

from .distributed import Shard
from .params import Param
from .random import RandomStreams

__all__ = ["Layer", "LayerState", "Link", "Model", "Phase", "StepContext"]


class Phase(IntEnum):
    """When a layer runs within a day."""

    DEMOGRAPHY = 0
    MOBILITY = 1
    BEHAVIOUR = 2
    INTERVENTION = 3
    DISEASE = 4
    OBSERVE = 5


@dataclass(frozen=True)
class StepContext:
    """What a layer may use besides its own state.

    Attributes:
        day: index of the day being simulated (0 for the first day; ``init_state`` sees 0 too).
        streams: the run's named random streams.
        differentiable: whether gradients are being tracked (layers keep their soft state only then).
        states: every layer's state at the start of this phase, for layers that read others.
        shard: the part of a population split over processes that this process holds
            (:mod:`populace.distributed`); one process holds everyone by default.
    """

    day: int
    streams: RandomStreams
    differentiable: bool
    states: Mapping[Layer, LayerState] = dataclasses.field(default_factory=dict)
    shard: Shard = dataclasses.field(default_factory=Shard.single)

    def agents(self, n: int) -> int | torch.Tensor:
        """What addresses the per-agent random draws of a layer over this process's ``n`` agents
        (:meth:`~populace.RandomStreams.uniform`): their global indices when the population is split,
        else ``n``."""
        if not self.shard.spans:
            return n
        if n != self.shard.size:
            raise ValueError(f"a layer over {n} agents in a shard of {self.shard.size}")
        return self.shard.agents(self.streams.device)

    def global_ids(self, local: torch.Tensor) -> torch.Tensor:
        """The global indices of this process's agents ``local`` (``int64[k]``), which address per-agent
        draws for a subset of agents."""
        return local + self.shard.start if self.shard.spans else local

    def population(self, n: int) -> int:
        """Agents in the whole population of a layer over this process's ``n`` agents."""
        return self.shard.total if self.shard.spans else n


@dataclass
class LayerState:
    """Base of layer states: a dataclass whose fields are tensors, lists of tensors, or ``None``."""

    def fork(self) -> Self:
        """A copy safe to update in place: tensors without gradients are cloned, the rest shared."""

        def copy(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value if value.requires_grad else value.clone()
            if isinstance(value, list):
                return [copy(v) for v in value]
            return value

        return dataclasses.replace(
            self, **{f.name: copy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        )


class Layer(nn.Module, abc.ABC):
    """Abstract model component (see module docs for the lifecycle).

    ``name`` is the layer's name in its model (given by the scenario, else the class's default): parameter
    addresses (``covid.beta``) and random stream names (``covid.threshold``) start with it.
    """

    name: str = ""
    phase: ClassVar[Phase]
    param_specs: dict[str, Param]
    setup_params: ClassVar[frozenset[str]] = frozenset()
    """Parameters read only when the state is drawn (:meth:`init_state`): a new value takes effect after
    a reset. The others are read every day, so a new value applies from the next day."""
    stage_names: ClassVar[tuple[str, ...]] = ()
    """Names of the per-agent stage codes :meth:`stage` returns; empty for layers without one."""
    shardable: ClassVar[bool] = False
    """Whether the layer runs on a population split over processes (:mod:`populace.distributed`): its
    per-agent draws are addressed by global index and every total it reads or reports is summed across
    the processes."""

    @abc.abstractmethod
    def init_state(self, ctx: StepContext) -> LayerState: ...

    @abc.abstractmethod
    def step(self, state: Any, ctx: StepContext) -> LayerState: ...

    def observe(self, state: Any) -> dict[str, torch.Tensor]:
        """Scalars (0-d tensors) or small vectors reported at the end of each day.

        Return snapshots: a returned tensor must not be changed by later in-place updates of the state.
        """
        return {}

    def observables(self) -> tuple[str, ...]:
        """Names :meth:`observe` returns."""
        return ()

    def labels(self) -> dict[str, tuple[str, ...]]:
        """Names of the entries of vector observables (``{"deaths_by_borough": ("Bronx", ...)}``)."""
        return {}

    def stage(self, state: Any) -> torch.Tensor:
        """``uint8[agents]``: each agent's stage, an index into :attr:`stage_names` (a view of the state,
        updated in place in fast mode: copy it to keep it)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-agent stage")

    def wire(self, layers: Sequence[Layer]) -> None:
        """Called by the model with all its layers once they are named: a layer that acts on others (a
        disease on the effects of modifiers) finds them here and checks what it needs."""

    def settings_used(self) -> tuple[str, ...]:
        """Names of the contact settings this layer refers to (checked against each disease it acts on)."""
        return ()

    def stream_names(self) -> tuple[str, ...]:
        """The random streams this layer draws from, without its name (``"threshold"`` is drawn as
        ``covid.threshold``): a simulation refuses a draw from any stream no layer declares."""
        return ()

    carries: ClassVar[frozenset[str]] = frozenset()
    """Fields of this layer's differentiable-mode state that carry gradients from one day to the next (the
    lean reverse mode's forward pass in fast mode marks them so in the snapshots it converts; floats that
    fast mode keeps as integers or flags are marked anyway, :class:`~populace.replay.FastForward`)."""
    mode_shared: ClassVar[frozenset[str]] = frozenset()
    """Fields of this layer's state that only differentiable mode has and that a differentiable state of
    the same run lends as they are: constants, the estimator's record for the reverse pass
    (:meth:`in_mode_of`). Values only fast mode has are built by the layer (scratch buffers, factors that
    follow from the state): converting to fast mode, ``like`` gives dtypes only
    (:meth:`Model.fast_skeleton`)."""

    def in_mode_of(self, state: Any, like: Any) -> LayerState | None:
        """``state``, a state of this layer in one mode, as a state of the mode of ``like`` (the other
        mode, same run), equal in value; ``None`` when this layer cannot tell.

        The lean reverse mode runs most days of its forward pass in fast mode (a day costs about two
        thirds) and converts at the start of each segment to replay (:mod:`populace.replay`). By default a
        field both modes have takes ``like``'s dtype (a fast ``bool`` or ``int64`` becomes the
        differentiable ``float32`` of the same value), a field ``like`` lacks is dropped, one only ``like``
        has comes from ``like`` if named in :attr:`mode_shared`; any other (a field only one mode has
        and that changes day by day, or only fast mode has) makes it ``None``: a layer with one overrides
        this and fills it in first (:class:`~populace.layers.infection.Infection`'s weights and scratch
        buffers)."""
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(state):
            value, target = getattr(state, f.name), getattr(like, f.name)
            converted = _in_mode_of(value, target, f.name in self.mode_shared)
            if converted is _UNKNOWN:
                return None
            changes[f.name] = converted
        result: LayerState = dataclasses.replace(like, **changes)
        return result


_UNKNOWN = object()


def _in_mode_of(value: Any, like: Any, shared: bool) -> Any:
    """One field of :meth:`Layer.in_mode_of`: ``value`` as ``like`` has it, or ``_UNKNOWN``."""
    if like is None:
        return None
    if isinstance(like, torch.Tensor):
        if isinstance(value, torch.Tensor):  # (a shape may change day by day)
            if value.dtype == like.dtype and not value.requires_grad:
                return value  # the same object: a snapshot shares what did not change since the last
            return value.detach().to(like.dtype)
        return like if shared and value is None else _UNKNOWN
    if isinstance(like, list):
        if isinstance(value, list) and len(value) == len(like):
            items = [_in_mode_of(v, t, shared) for v, t in zip(value, like, strict=True)]
            return _UNKNOWN if any(i is _UNKNOWN for i in items) else items
        return _UNKNOWN
    if value is None:
        return like if shared else _UNKNOWN
    return value  # a plain value both modes have (a number, an object of the run): the state's own


def _skeleton(state: LayerState) -> LayerState:
    """``state`` with every tensor empty (its dtype and device kept)."""

    def empty(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.new_empty(0)
        if isinstance(value, list):
            return [empty(v) for v in value]
        return value

    return dataclasses.replace(
        state, **{f.name: empty(getattr(state, f.name)) for f in dataclasses.fields(state)}
    )


L = TypeVar("L", bound="Layer")


@dataclass(frozen=True, eq=False)
class Link(Generic[L]):
    """A reference from one layer to another whose state it reads each day.

    Holding the other layer in a ``Link`` (not as an attribute) keeps it out of the reader's submodules:
    the model owns every layer once, so parameters and specs are listed once.
    """

    layer: L

    def state(self, ctx: StepContext) -> Any:
        """The linked layer's current state (today's if it ran earlier in the day, else yesterday's)."""
        try:
            return ctx.states[self.layer]
        except KeyError:
            raise LookupError(
                f"{type(self.layer).__name__} is linked to but not part of the model; add it to the layers"
            ) from None


def _default_name(layer: Layer) -> str:
    """``SupplyGraph`` → ``supply_graph``: a layer's name when neither it nor its scenario gives one."""
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", type(layer).__name__).lower()


class Model(nn.Module):
    r"""An ordered composition of named layers (sorted by phase, stable).

    ``layers``: a mapping name → layer (the names a scenario gives), or a sequence of layers named by their
    ``name`` (their class's default). Each layer becomes the model's submodule of that name, so parameter
    addresses read ``covid.beta`` or ``covid.settings.school.weight``; names must be unique identifiers.
    Every layer is then :meth:`~Layer.wire`\ d: each disease takes the effects of every modifier of the model,
    and a setting name a modifier uses that a disease lacks fails here, with a message.
    """

    def __init__(self, layers: Sequence[Layer] | Mapping[str, Layer]) -> None:
        super().__init__()
        if not layers:
            raise ValueError("layers: a model needs at least one layer")
        given = layers.values() if isinstance(layers, Mapping) else layers
        for layer in given:
            if not isinstance(layer, Layer):
                raise TypeError(f"layers: expected Layer instances, got {type(layer).__name__}")
        if isinstance(layers, Mapping):
            for name, layer in layers.items():
                layer.name = name
        ordered = sorted(given, key=lambda layer: layer.phase)
        for layer in ordered:
            name = layer.name or _default_name(layer)
            if not name.isidentifier():
                raise ValueError(f"layers: {name!r} is not a valid layer name (letters, digits and _)")
            if name in self._modules:
                raise ValueError(
                    f"layers: two layers are named {name!r}; give them names: Model({{'{name}_a': ..., ...}})"
                )
            if hasattr(type(self), name) or name in self.__dict__:
                raise ValueError(f"layers: {name!r} is a reserved name (a Model attribute), choose another")
            layer.name = name
            self.add_module(name, layer)
        self._order = tuple(layer.name for layer in ordered)
        self._streams = frozenset(f"{layer.name}.{s}" for layer in ordered for s in layer.stream_names())
        for layer in ordered:
            layer.wire(ordered)
        names: dict[str, Layer] = {}
        for layer in ordered:
            for name in layer.observables():
                if name in names:
                    raise ValueError(
                        f"observable {name!r} is reported by two layers, {names[name].name} and "
                        f"{layer.name}; give one a prefix for its series (e.g. SEIR(..., prefix='farm_'))"
                    )
                names[name] = layer
        self._observables = tuple(names)
        self._fast_skeleton: list[LayerState] | None = None

    def observables(self) -> tuple[str, ...]:
        return self._observables

    def labels(self) -> dict[str, tuple[str, ...]]:
        """Entry names of the vector observables of every layer."""
        out: dict[str, tuple[str, ...]] = {}
        for layer in self.ordered_layers():
            out.update(layer.labels())
        return out

    @property
    def layers(self) -> list[Layer]:
        """The layers in the order they run."""
        return self.ordered_layers()

    def ordered_layers(self) -> list[Layer]:
        """The layers in the order they run."""
        return [cast(Layer, self._modules[name]) for name in self._order]

    def layer(self, name: str) -> Layer:
        """The layer called ``name``; ``KeyError`` naming the model's layers."""
        if name not in self._order:
            raise KeyError(f"no layer {name!r} in the model; its layers: {', '.join(self._order)}")
        return cast(Layer, self._modules[name])

    def label(self, path: str) -> str:
        """Words an analyst reads for the parameter at ``path`` (``covid.settings.school.weight`` → "school
        contacts (relative transmissibility)", ``covid.beta`` → "beta (covid)"): the scenario option it was
        built from when there is one (``Param.option``), else its setting and attribute in words."""
        spec = self.specs().get(path)
        if spec is not None and spec.option:
            return spec.option.replace("_", " ")
        parts = path.split(".")
        if len(parts) == 4 and parts[1] == "settings":
            setting, attr = parts[2].replace("_", " "), parts[3]
            return (
                f"{setting} contacts (relative transmissibility)" if attr == "weight" else f"{setting} {attr}"
            )
        layer, attr = parts[0], " ".join(parts[1:]).replace("_", " ")
        return f"{attr} ({layer.replace('_', ' ')})"

    def stream_names(self) -> frozenset[str]:
        """Every random stream the layers declare, namespaced by layer (``covid.threshold``)."""
        return self._streams

    def specs(self) -> dict[str, Param]:
        """Every parameter spec, by dotted module path (``covid.beta``)."""
        out: dict[str, Param] = {}
        for path, module in self.named_modules():
            for name, spec in getattr(module, "param_specs", {}).items():
                out[f"{path}.{name}" if path else name] = spec
        return out

    def staged_layer(self) -> int | None:
        """Index (in :meth:`ordered_layers`) of the first layer with per-agent stages, or ``None``."""
        return next((i for i, layer in enumerate(self.ordered_layers()) if layer.stage_names), None)

    def init_state(self, ctx: StepContext) -> list[LayerState]:
        return [layer.init_state(ctx) for layer in self.ordered_layers()]

    def step(self, states: list[LayerState], ctx: StepContext) -> list[LayerState]:
        layers = self.ordered_layers()
        current: dict[Layer, LayerState] = dict(zip(layers, states, strict=True))
        for layer in layers:
            current[layer] = layer.step(current[layer], dataclasses.replace(ctx, states=current))
        return [current[layer] for layer in layers]

    def in_mode_of(self, states: list[LayerState], like: list[LayerState]) -> list[LayerState] | None:
        """``states`` of one mode as states of ``like``'s mode (:meth:`Layer.in_mode_of`), or ``None`` when
        a layer cannot tell."""
        out = []
        for layer, state, target in zip(self.ordered_layers(), states, like, strict=True):
            converted = layer.in_mode_of(state, target)
            if converted is None:
                return None
            out.append(converted)
        return out

    def fast_skeleton(self, streams: RandomStreams, shard: Shard) -> list[LayerState]:
        """The fields and dtypes of this model's fast-mode state, its tensors empty: what :meth:`in_mode_of`
        needs to convert a differentiable state to fast mode (a layer builds the values only fast mode has,
        :meth:`Layer.in_mode_of`). Drawn once (a state at 1M agents takes ~0.16 s) and kept."""
        if self._fast_skeleton is None:
            with torch.no_grad():
                ctx = StepContext(day=0, streams=streams, differentiable=False, shard=shard)
                self._fast_skeleton = [_skeleton(state) for state in self.init_state(ctx)]
        return self._fast_skeleton

    def observe(self, states: list[LayerState]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for layer, state in zip(self.ordered_layers(), states, strict=True):
            out.update(layer.observe(state))
        return out
