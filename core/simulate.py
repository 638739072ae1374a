"""Running a model: :class:`Simulation` (stateful, resumable, streamable) and :func:`simulate` (one call).

Gradient modes:

* ``"off"`` — fast mode: runs under ``torch.no_grad()``; layers keep only compact integer state and
  update it in place; no autograd graph is built.
* ``"full"`` — every day is recorded on the autograd tape; memory grows with days × agents.
* :class:`Checkpointed` ``(every=k)`` — the lean reverse mode (:mod:`populace.replay`): the forward pass
  keeps no tape, only the state at the start of every ``k`` days (``⌈√days / 2⌉`` by default); the backward
  pass replays each segment with its tape, last first (random streams are keyed by day, so a replay sees
  the same numbers and gives the same gradients as ``"full"``). Memory: the snapshots and one segment's
  tape, not the whole run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .distributed import Shard
from .files import atomic_path
from .model import LayerState, Model, StepContext
from .random import RandomStreams
from .replay import FastForward, default_every, replay_run

__all__ = ["Checkpointed", "GradMode", "Result", "Simulation", "simulate"]


@dataclass(frozen=True)
class Checkpointed:
    """The lean reverse mode (:mod:`populace.replay`): a snapshot of the state every ``every`` days
    (``None``: ``⌈√days / 2⌉`` of the run, which balances the snapshots against one segment's tape,
    :func:`~populace.replay.default_every`).

    ``overlap``: the backward pass runs on two threads of one intra-op thread each when torch has two or
    more, which keeps both cores busy where two intra-op threads sped an op up by only ~1.25×: the reverse
    passes of several outcomes run at once on one segment's tape (``populace sensitivity`` at 1M agents,
    two outcomes: a backward pass of 11.5 s against 12.0–13.0, 1.21 GB either way), and a replay
    that the other thread waits for runs with every thread. ``ahead``: segments replayed ahead of the
    reverse passes, each keeping its tape (needs ``overlap``): with ``ahead=1`` one thread replays the
    segment before while the other runs this one's reverse pass, for one more segment's tape (~0.2 GB at
    1M agents × 6 days). Calibration and optimisation, one reverse pass a run, use both
    (``benchmarks/README.md``). ``keep``: the last segments whose tapes the forward pass keeps for the
    first backward pass, which then replays that many fewer (a segment's tape each). Not a default yet:
    a 70-epoch calibration at 1M agents keeping 4 took 587 s instead of ~600, but its resident memory grew
    from 2.2 GB at epoch 25 to 6.1 GB, with a reference to a kept tape since removed (after which keeping
    1 stayed flat at 1.9 GB); keeping 4 has not been run 70 epochs since (``benchmarks/README.md``)."""

    every: int | None = None
    overlap: bool = False
    ahead: int = 0
    keep: int = 1

    def __post_init__(self) -> None:
        if self.every is not None and (isinstance(self.every, bool) or self.every < 1):
            raise ValueError(f"Checkpointed.every: expected a positive number of days, got {self.every}")
        if not isinstance(self.overlap, bool):
            raise ValueError(f"Checkpointed.overlap: expected True or False, got {self.overlap!r}")
        if isinstance(self.ahead, bool) or not isinstance(self.ahead, int) or self.ahead < 0:
            raise ValueError(f"Checkpointed.ahead: expected a number of segments >= 0, got {self.ahead!r}")
        if isinstance(self.keep, bool) or not isinstance(self.keep, int) or self.keep < 1:
            raise ValueError(f"Checkpointed.keep: expected a number of segments >= 1, got {self.keep!r}")
        if self.ahead and not self.overlap:
            raise ValueError(
                "Checkpointed.ahead: segments are replayed ahead by a second thread: set overlap=True"
            )

    def segment(self, days: int) -> int:
        """Days per segment of a run of ``days`` days."""
        return self.every if self.every is not None else default_every(days)


GradMode = Literal["off", "full"] | Checkpointed


@dataclass
class Result:
    """Daily series of a run.

    Attributes:
        days: ``int64[days]``, the index of each simulated day (the first day of a run is 0).
        series: ``{name: tensor[days]}`` or ``tensor[days, k]`` for vector series (by borough, by age
            band, ...); counts are integers in fast mode and float32 carrying gradients in differentiable
            modes.
        labels: names of the ``k`` entries of vector series (``"name.label"`` columns); entries without
            labels are numbered.
    """

    days: torch.Tensor
    series: dict[str, torch.Tensor]
    labels: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def final(self) -> dict[str, float]:
        """The last day's value of every column (vector series give one column per entry)."""
        return {k: v[-1] for k, v in self.to_columns().items() if k != "day" and v}

    def to_columns(self) -> dict[str, list[float] | list[int]]:
        """One flat list per column: ``day``, each scalar series, and ``name.label`` per vector entry."""
        cols: dict[str, list[float] | list[int]] = {"day": self.days.tolist()}
        for name, value in self.series.items():
            value = value.detach().cpu()
            if value.dim() == 1:
                cols[name] = value.tolist()
                continue
            flat = value.reshape(len(value), -1)
            labels = self.labels.get(name) or tuple(str(i) for i in range(flat.shape[1]))
            if len(labels) != flat.shape[1]:
                raise ValueError(f"labels of {name}: {len(labels)} names for {flat.shape[1]} entries")
            for i, label in enumerate(labels):
                cols[f"{name}.{label}"] = flat[:, i].tolist()
        return cols

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the series atomically as ``.parquet``, ``.csv`` or ``.json`` (chosen by extension)."""
        path = Path(path)
        cols = self.to_columns()
        with atomic_path(path) as tmp:
            if path.suffix == ".json":
                tmp.write_text(json.dumps(cols))
            elif path.suffix in (".parquet", ".csv"):
                import pyarrow as pa

                table = pa.table(cols)
                if path.suffix == ".parquet":
                    import pyarrow.parquet as pq

                    pq.write_table(table, tmp)
                else:
                    import pyarrow.csv as pcsv

                    pcsv.write_csv(table, tmp)
            else:
                raise ValueError(f"out: expected a .parquet, .csv or .json file, got {str(path)!r}")


class Simulation:
    """A model, its state and a clock. Repeated :meth:`run` or :meth:`stream` calls continue in time.

    Args:
        model: the model; moved to ``device``.
        seed: base seed of the named random streams.
        device: where state and computation live (``"cpu"``, ``"cuda"``, ...).
        grad: ``"off"``, ``"full"`` or :class:`Checkpointed`.
        shard: this process's part of a population split over processes (:mod:`populace.distributed`;
            ``model`` is built for it); the series are those of the whole population on every process.
    """

    def __init__(
        self,
        model: Model,
        *,
        seed: int = 0,
        device: torch.device | str = "cpu",
        grad: GradMode = "off",
        shard: Shard | None = None,
    ) -> None:
        if grad not in ("off", "full") and not isinstance(grad, Checkpointed):
            raise ValueError(f"grad: expected 'off', 'full' or Checkpointed(every=k), got {grad!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.grad = grad
        self.shard = shard if shard is not None else Shard.single()
        if self.shard.spans and isinstance(grad, Checkpointed):
            raise ValueError(
                "grad: checkpointed gradients do not run on a population split over processes yet"
            )
        self.shard.begin(self.differentiable, self.device)
        self.streams = RandomStreams(seed, self.device, declared=model.stream_names())
        self.day = 0
        with self._autograd():
            self.states: list[LayerState] = self.model.init_state(self._ctx(0))

    @property
    def differentiable(self) -> bool:
        return self.grad != "off"

    def _autograd(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self.differentiable else torch.no_grad()

    def _ctx(self, day: int) -> StepContext:
        return StepContext(
            day=day, streams=self.streams, differentiable=self.differentiable, shard=self.shard
        )

    def _names(self, record: Sequence[str] | None) -> tuple[str, ...]:
        available = self.model.observables()
        if record is None:
            return available
        unknown = [name for name in record if name not in available]
        if unknown:
            raise ValueError(f"record: unknown series {unknown}; available: {list(available)}")
        return tuple(record)

    def _advance(
        self,
        states: list[LayerState],
        first_day: int,
        days: int,
        names: tuple[str, ...],
        on_day: Callable[[int], None] | None = None,
    ) -> tuple[list[LayerState], dict[str, torch.Tensor]]:
        # Without gradients each day's values are copied into one buffer per series: thousands of small
        # long-lived tensors would fragment the heap between the large per-day work buffers (measured: +15 MB
        # of RSS a day at 8.4M agents). With gradients the values stay separate graph nodes and are stacked.
        rows: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        series: dict[str, torch.Tensor] = {}
        for i, day in enumerate(range(first_day, first_day + days)):
            states = self.model.step(states, self._ctx(day))
            observed = self.model.observe(states)
            for name in names:
                value = observed[name]
                if self.differentiable:
                    rows[name].append(value)
                    continue
                if name not in series:
                    series[name] = value.new_empty((days, *value.shape))
                series[name][i] = value
            if on_day is not None:
                on_day(day)
        return states, {name: series[name] if name in series else torch.stack(rows[name]) for name in names}

    def stream(
        self, days: int, record: Sequence[str] | None = None
    ) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Advance day by day, yielding ``(day, {name: value})`` after each.

        Not available with :class:`Checkpointed`, which needs whole segments."""
        _check_days(days)
        if isinstance(self.grad, Checkpointed):
            raise ValueError("stream: checkpointed gradients need whole segments; use run()")
        names = self._names(record)
        for _ in range(days):
            with self._autograd():
                self.states = self.model.step(self.states, self._ctx(self.day))
                observed = self.model.observe(self.states)
            self.day += 1
            yield self.day - 1, {name: observed[name] for name in names}

    def run(
        self, days: int, record: Sequence[str] | None = None, on_day: Callable[[int], None] | None = None
    ) -> Result:
        """Advance ``days`` days and return their daily series; ``on_day(day)`` is called after each day
        of the forward pass."""
        _check_days(days)
        names = self._names(record)
        first = self.day
        with self._autograd():
            if isinstance(self.grad, Checkpointed):
                self.states, series = replay_run(
                    self.states,
                    first,
                    days,
                    self.grad.segment(days),
                    names,
                    _stepper(self.model, self.streams, self.shard),
                    self.model.observe,
                    on_day,
                    overlap=self.grad.overlap,
                    ahead=self.grad.ahead,
                    fast=_fast_forward(self.model, self.streams, self.shard, self.states),
                    keep=self.grad.keep,
                )
            else:
                self.states, series = self._advance(self.states, first, days, names, on_day)
        self.day = first + days
        if self.differentiable and self.shard.spans:
            # every series reaches the chain of collectives, so any loss's backward runs all of them
            series = {name: self.shard.tie(value) for name, value in series.items()}
        labels = {k: v for k, v in self.model.labels().items() if k in series}
        return Result(days=torch.arange(first, first + days), series=series, labels=labels)


def _stepper(
    model: Model, streams: RandomStreams, shard: Shard
) -> Callable[[list[LayerState], int], list[LayerState]]:
    """A differentiable day of ``model``, for the lean reverse mode to replay. It must not hold the
    :class:`Simulation`: the run's autograd node keeps it, and the simulation's state keeps the node (through
    its tensors' ``grad_fn``), a cycle Python's collector cannot see through, which kept every run's snapshots
    alive (a calibration grew by ~1 GB an epoch at 1M agents until the kernel killed it)."""

    def step(states: list[LayerState], day: int) -> list[LayerState]:
        return model.step(states, StepContext(day=day, streams=streams, differentiable=True, shard=shard))

    return step


def _fast_forward(model: Model, streams: RandomStreams, shard: Shard, like: list[LayerState]) -> FastForward:
    """The fast mode of ``model`` for the lean reverse mode's forward pass (:class:`~populace.replay.
    FastForward`); ``like``: the run's differentiable state. Holds no :class:`Simulation` (see
    :func:`_stepper`)."""

    def context(day: int) -> StepContext:
        return StepContext(day=day, streams=streams, differentiable=False, shard=shard)

    fast_like = model.fast_skeleton(streams, shard)

    def step(states: list[LayerState], day: int) -> list[LayerState]:
        return model.step(states, context(day))

    return FastForward(
        step=step,
        to_fast=lambda states: model.in_mode_of(states, fast_like),
        to_differentiable=lambda states: model.in_mode_of(states, like),
        candidates=[t for t in (*model.parameters(), *model.buffers()) if t.requires_grad],
        carries=frozenset((i, f) for i, layer in enumerate(model.ordered_layers()) for f in layer.carries),
    )


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days: expected a positive integer, got {days!r}")


def simulate(
    model: Model,
    days: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    record: Sequence[str] | None = None,
    grad: GradMode = "off",
) -> Result:
    """Run ``model`` for ``days`` days from its initial state and return the daily series."""
    return Simulation(model, seed=seed, device=device, grad=grad).run(days, record=record)
