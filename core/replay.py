"""The lean reverse mode: a forward pass that keeps no tape, and segments replayed backwards.

A differentiable day records ~50 bytes per agent on the autograd tape (``benchmarks/tape_bytes.py``), so a
whole run's tape grows with days × agents (14 GB at 1M agents × 120 days) while an agent's state is a few
dozen bytes. :func:`replay_run` keeps the state instead of the tape:

1. **Forward, without a tape.** Each day runs the differentiable code with gradients enabled, but the state
   that carries gradients is detached at the end of every day, so a day's tape is freed once the next day
   starts; only the last segment keeps its tape, which the first backward pass starts from. The state at
   the start of every segment of ``every`` days is kept (:class:`Snapshot`): tensors that carry gradients
   are shared (the model never writes them in place), the others are copied only when they changed since
   the previous snapshot (the population's fixed tables are kept once). When every layer can convert its
   state between the modes (:class:`FastForward`, :meth:`populace.Model.in_mode_of`), the segments
   between the first and the last run in fast mode instead, and their snapshots are converted (nyc-covid,
   1M agents × 120 days: the forward pass 3.9–4.0 s against 4.55–4.84 s).
2. **Backward, one segment at a time, last first.** Each segment is run again from its snapshot with its
   tape; one backward pass through it takes the gradient of the outputs of its days and of the state it
   handed to the next segment (its *adjoint*, from the segment replayed before it), and gives the
   parameters' gradients and the adjoint of the state it started from.

Random draws are addressed by day (:mod:`populace.random`), so a replayed segment draws exactly the same
numbers, and the gradients equal those of the whole tape (tested). Peak memory is the snapshots plus one
segment's tape: ``days / every`` snapshots and ``every`` days of tape, least for ``every`` near a multiple
of √days (:func:`default_every`). Snapshots keep their tensors losslessly in fewer bytes (:class:`Kept`).
The cost is one more forward pass than the whole tape, but for the last segment; several outcomes of one
run share it (:func:`vjps`: each segment is replayed once, and each outcome's reverse pass goes through
its tape).

The run is one :class:`torch.autograd.Function`, whose inputs are every tensor requiring gradients the days
read (found on each day's graph: parameters, or the cached values of parametrised ones) and the state the
run started from, and whose outputs are the daily series and the state it ends with: ``loss.backward()``
and ``torch.autograd.grad`` work as with the whole tape, and a run continued from this one chains.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .masks import copy_as
from .model import LayerState
from .samplers import BackwardRecord

__all__ = ["FastForward", "Kept", "Snapshot", "default_every", "replay_run", "vjps"]

Path = tuple[int, str, int]
"""Where a tensor sits in a model's state: layer index, field, index in a list field (-1: not a list)."""

Step = Callable[[list[LayerState], int], list[LayerState]]
Observe = Callable[[list[LayerState]], dict[str, torch.Tensor]]
_Segment = tuple[dict[str, torch.Tensor], list[LayerState], dict[Path, torch.Tensor]]
"""A replayed segment: its series' rows, the state it ends with, the leaves standing for its first state."""


def default_every(days: int) -> int:
    """Days per segment when none is given: ⌈√days / 2⌉, which balances the snapshots against one
    segment's tape and the backward pass's work space. The peak is ``days / every`` snapshots (s bytes per
    agent each) plus ``every`` days of tape and work space (t per day), least at ``every = √(days · s / t)``;
    nyc-covid keeps s ≈ 23 and needs t ≈ 65 bytes per agent, so ``every ≈ 0.6 √days``; at 1M agents × 120
    days, every 5, 6, 8 and 11 days peaked at 1.76, 1.76, 1.82 and 1.94 GB in the same time
    (``benchmarks/README.md``)."""
    return max(1, math.ceil(math.sqrt(days) / 2))


def tensors(states: Sequence[LayerState]) -> Iterator[tuple[Path, torch.Tensor]]:
    """Every tensor of ``states`` with its :data:`Path`."""
    for i, state in enumerate(states):
        for f in dataclasses.fields(state):
            value = getattr(state, f.name)
            if isinstance(value, torch.Tensor):
                yield (i, f.name, -1), value
            elif isinstance(value, list):
                for j, v in enumerate(value):
                    if isinstance(v, torch.Tensor):
                        yield (i, f.name, j), v


def replace(states: Sequence[LayerState], new: dict[Path, torch.Tensor]) -> list[LayerState]:
    """``states`` with the tensors at the paths of ``new`` replaced (other fields shared)."""
    out = []
    for i, state in enumerate(states):
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(state):
            value = getattr(state, f.name)
            if isinstance(value, torch.Tensor) and (i, f.name, -1) in new:
                changes[f.name] = new[(i, f.name, -1)]
            elif isinstance(value, list) and any((i, f.name, j) in new for j in range(len(value))):
                changes[f.name] = [new.get((i, f.name, j), v) for j, v in enumerate(value)]
        out.append(dataclasses.replace(state, **changes) if changes else state)
    return out


@dataclass(frozen=True)
class Kept:
    """A tensor kept by a snapshot, losslessly in fewer bytes where its values allow (``bool`` for a float
    tensor of 0s and 1s, such as an agent's attendance; ``int16`` for integers within its range, such as
    days): ``value`` as stored, ``dtype`` the tensor's own."""

    value: torch.Tensor
    dtype: torch.dtype

    @classmethod
    def pack(cls, tensor: torch.Tensor, *, copy: bool = False) -> Kept:
        """``tensor``'s values (detached): stored anew when they fit a smaller type, else shared (or copied
        if ``copy``)."""
        t = tensor.detach()
        value = t
        if t.numel() >= _SMALLEST_PACKED:
            if t.is_floating_point():
                value = _zero_one_as_bool(t)
            elif t.dtype in (torch.int32, torch.int64) and -(2**15) <= int(t.min()) <= int(t.max()) < 2**15:
                value = t.to(torch.int16)
        if value is t:
            return cls(t.clone() if copy else t, t.dtype)
        return cls(value, t.dtype)

    def unpack(self) -> torch.Tensor:
        """A new tensor of the kept values, in their own type."""
        return copy_as(self.value, self.dtype)


_SMALLEST_PACKED = 1024
"""Tensors with fewer elements are kept as they are (a check would cost more than it saves)."""


def _zero_one_as_bool(t: torch.Tensor) -> torch.Tensor:
    """``t`` (floating) as ``bool`` if it holds only 0s and 1s, else ``t``. ``x (1 − x)`` is 0 only at 0 and
    1 and is ≥ 0 on [0, 1], so within [0, 1] its sum is 0 only if every term is: a min/max and a dot
    product, 0.9 ms per million elements on the 2-core machine against 2.2 ms for ``((t == 0) | (t == 1))
    .all()``."""
    flat = t.reshape(-1)
    lo, hi = torch.aminmax(flat)
    if bool(lo >= 0) and bool(hi <= 1) and float(torch.dot(flat, 1 - flat)) == 0:
        return t.bool()
    return t


class _Copies:
    """What the snapshots keep of the tensors without gradients: a tensor that is the same object, not
    written since (its version counter), reuses what was kept of it last time."""

    def __init__(self) -> None:
        self._last: dict[Path, tuple[weakref.ref[torch.Tensor], int, Kept]] = {}

    def keep(self, path: Path, tensor: torch.Tensor) -> Kept:
        last = self._last.get(path)
        if last is not None and last[0]() is tensor and last[1] == tensor._version:
            return last[2]
        kept = Kept.pack(tensor, copy=True)  # a copy even when not packed: the day writes in place
        self._last[path] = (weakref.ref(tensor), tensor._version, kept)
        return kept


@dataclass
class Snapshot:
    """The state at the start of a segment (``first`` day, ``days`` long): ``carried`` keeps the tensors
    that carry gradients (shared, or packed: :class:`Kept`), ``fixed`` copies of the others; ``states`` the
    layer states they belong in (their other fields: objects shared by the run, such as the Sellke
    estimator's record)."""

    first: int
    days: int
    states: list[LayerState]
    carried: dict[Path, Kept]
    fixed: dict[Path, Kept]

    @classmethod
    def take(cls, states: list[LayerState], first: int, days: int, copies: _Copies) -> Snapshot:
        carried, fixed = {}, {}
        for path, t in tensors(states):
            if t.requires_grad:
                carried[path] = Kept.pack(t)  # never written in place: shared unless packed
            else:
                fixed[path] = copies.keep(path, t)
        # the states hold what was kept, not the live tensors (a day may replace those, not only write them)
        kept = {p: k.value for p, k in (*carried.items(), *fixed.items())}
        return cls(first, days, replace(states, kept), carried, fixed)

    @property
    def nbytes(self) -> int:
        """Bytes this snapshot keeps (those shared with an earlier snapshot included)."""
        return sum(
            k.value.numel() * k.value.element_size() for k in (*self.carried.values(), *self.fixed.values())
        )

    def restore(self) -> tuple[list[LayerState], dict[Path, torch.Tensor]]:
        """Fresh states to replay the segment from (new tensors of the fixed values, which a day writes in
        place) and the leaves standing for the carried tensors, by path."""
        leaves = {p: k.unpack().requires_grad_() for p, k in self.carried.items()}
        copies = {p: k.unpack() for p, k in self.fixed.items()}
        return replace(self.states, {**copies, **leaves}), leaves


def _detach(states: list[LayerState]) -> tuple[list[LayerState], list[torch.Tensor]]:
    """``states`` with every tensor carrying gradients cut from today's tape (a new leaf of the same
    values), and the tensors that were cut."""
    cut = {p: t for p, t in tensors(states) if t.requires_grad}
    return replace(states, {p: t.detach().requires_grad_() for p, t in cut.items()}), list(cut.values())


def _leaves(roots: Sequence[torch.Tensor], own: set[int]) -> list[torch.Tensor]:
    """The tensors requiring gradients that ``roots`` were computed from (the leaves of their graph, or
    what is cached behind a parametrisation), except the run's own state leaves (``own``, by id)."""
    found: dict[int, torch.Tensor] = {}
    seen: set[torch.autograd.graph.Node] = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            if id(variable) not in own:
                found[id(variable)] = variable
            continue
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return list(found.values())


class _TwoWorkers:
    """The backward pass of a lean run on two threads, the caller's and a helper, each taking whatever work
    is ready:

    * pass ``j``'s reverse pass through the next segment (last first: each needs the adjoint the segment
      after gave), once the segment is replayed and no thread runs pass ``j``; passes are independent
      (several outcomes of one run, :func:`vjps`), so two can run at once on one tape;
    * else the replay of the next segment no thread has started (replays are independent: each starts
      from its snapshot), while fewer than ``tapes`` segments are replayed or being replayed and not yet
      through every pass.

    Reverse passes run with one intra-op thread, so their sums round the same whichever thread runs them
    (a calibration is reproducible). A replay runs with every intra-op thread when the other thread has
    nothing to do until it ends (with one tape, every replay; torch's thread count is the process's, so
    only then); else with one: a day's values do not depend on the number of threads.

    With one thread replaying ahead of the other's reverse passes (``tapes=2``), the replays set the pace
    when they take longer (at 8.4M agents a segment's replay on one core took ~1.4× its reverse pass):
    1.19× the ideal in a model of 20 segments, against 1.04× with both threads taking either kind of work.
    An error on either thread stops the other after its current piece of work and is raised in the
    caller; the helper never outlives :meth:`run`."""

    def __init__(
        self,
        segments: list[Snapshot],
        replay: Callable[[Snapshot], _Segment],
        reverse: Callable[[Snapshot, _Segment, int], None],
        passes: int,
        tapes: int,
        threads: int,
    ) -> None:
        self.segments, self.replay, self.reverse = segments, replay, reverse
        self.tapes, self.threads = tapes, threads
        self.ready: dict[int, _Segment] = {}
        self.started = 0  # segments whose replay a thread has taken (in order)
        self.next = [0] * passes  # each pass's next segment
        self.running = [False] * passes
        self.busy = 0  # threads at work
        self.error: BaseException | None = None
        self.changed = threading.Condition()

    def run(self) -> None:
        helper = threading.Thread(target=self._work, name="populace-backward", daemon=True)
        helper.start()
        try:
            self._work()
        finally:
            helper.join()
        if self.error is not None:
            raise self.error  # as the thread raised it, its traceback attached

    def _done(self) -> int:
        """Segments through every pass (their tapes freed)."""
        return min(self.next)

    def _take(self) -> tuple[int, int, int] | None:
        """The next piece of work (lock held): ``(segment, pass, intra-op threads)``, pass ``-1`` for a
        replay; ``None`` when none is left or a thread failed."""
        n = len(self.segments)
        while self.error is None and self._done() < n:
            waiting = [j for j, i in enumerate(self.next) if not self.running[j] and i in self.ready]
            if waiting:
                j = min(waiting, key=lambda j: self.next[j])
                self.running[j] = True
                return self.next[j], j, 1
            if self.started < n and self.started - self._done() < self.tapes:
                self.started += 1
                full = self.started - self._done() == self.tapes or self.started == n
                alone = self.busy == 0 and full  # nothing for the other thread until this replay ends
                return self.started - 1, -1, self.threads if alone else 1
            self.changed.wait()
        return None

    def _work(self) -> None:
        while True:
            with self.changed:
                job = self._take()
                if job is None:
                    return
                self.busy += 1
                i, j, threads = job
                if threads > 1:  # the thread count is the process's: the other thread waits meanwhile
                    torch.set_num_threads(threads)
            failed: BaseException | None = None
            try:
                if j < 0:
                    replayed = self.replay(self.segments[i])
                else:
                    self.reverse(self.segments[i], self.ready[i], j)
            except BaseException as error:  # handed to the caller (run)
                failed = error
            with self.changed:
                self.busy -= 1
                if threads > 1:
                    torch.set_num_threads(1)
                if failed is not None:
                    self.error = self.error or failed
                    self.changed.notify_all()
                    return
                if j < 0:
                    self.ready[i] = replayed
                    del replayed
                else:
                    self.next[j] += 1
                    self.running[j] = False
                    if self._done() > i:
                        del self.ready[i]  # through every pass: its tape is freed
                self.changed.notify_all()


class _Replay(torch.autograd.Function):
    """The run as one function of its inputs (see module docs); the backward pass replays the segments."""

    @staticmethod
    def forward(ctx: Any, run: _Run, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.run = run
        ctx.set_materialize_grads(False)  # an output the loss does not use sends no gradient back
        return tuple(t.detach().clone() for t in run.outputs)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        return (None, *ctx.run.backward(grads))


@dataclass
class _Run:
    """What the backward pass of a replayed run needs."""

    step: Step
    observe: Observe
    names: tuple[str, ...]
    snapshots: list[Snapshot]
    inputs: list[torch.Tensor]
    start: dict[Path, torch.Tensor]
    end: dict[Path, torch.Tensor]
    series: dict[str, torch.Tensor]
    overlap: bool
    ahead: int
    kept: list[_Segment] = dataclasses.field(default_factory=list)
    """The last segments with the forward pass's tapes (last first), for the first backward pass (later
    ones replay them)."""

    @property
    def outputs(self) -> list[torch.Tensor]:
        return [*self.series.values(), *self.end.values()]

    @property
    def records(self) -> list[BackwardRecord]:
        """The backward records the run's states hold (the same objects in every snapshot)."""
        found: dict[int, BackwardRecord] = {}
        for state in self.snapshots[0].states if self.snapshots else []:
            for f in dataclasses.fields(state):
                value = getattr(state, f.name)
                if isinstance(value, BackwardRecord):
                    found[id(value)] = value
        return list(found.values())

    def backward(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        return self.vjps([grads])[0]

    def vjps(self, passes: Sequence[Sequence[torch.Tensor | None]]) -> list[list[torch.Tensor | None]]:
        """One reverse pass per entry of ``passes`` (the gradients of the outputs: the series, then the end
        state), each segment replayed once for all of them: per pass, the gradients of the inputs, then the
        adjoint of the start state."""
        k = len(self.names)
        by_name = [dict(zip(self.names, g[:k], strict=True)) for g in passes]
        adjoints = [{p: a for p, a in zip(self.end, g[k:], strict=True) if a is not None} for g in passes]
        totals: list[list[torch.Tensor | None]] = [[None] * len(self.inputs) for _ in passes]
        records = self.records
        # the pass each record continues: this run's own, or for one pass the caller's (a run that a later
        # run's pass j chains into continues pass j, on whichever thread runs it)
        ids = [list(range(len(passes))) if len(passes) > 1 else [r.current_pass()] for r in records]
        first = self.snapshots[0].first if self.snapshots else 0

        def reverse(snap: Snapshot, segment: _Segment, j: int) -> None:
            rows, states, leaves = segment
            for record, chosen in zip(records, ids, strict=True):
                record.use_pass(chosen[j])
            with torch.enable_grad():
                got = self._gradients(
                    rows, states, leaves, by_name[j], adjoints[j], snap.first - first, snap.days
                )
            adjoints[j] = {}
            if got is None:
                return
            for i, g in enumerate(got[: len(self.inputs)]):
                if g is not None:
                    total = totals[j][i]
                    totals[j][i] = g if total is None else total + g
            adjoints[j] = {
                p: g for p, g in zip(leaves, got[len(self.inputs) :], strict=True) if g is not None
            }

        self._each_segment(reverse, len(passes))
        return [[*totals[j], *(adjoints[j].get(p) for p in self.start)] for j in range(len(passes))]

    def _each_segment(self, reverse: Callable[[Snapshot, _Segment, int], None], passes: int) -> None:
        """Replay each segment with its tape and run ``reverse(snapshot, segment, j)`` on it for each pass
        ``j``, last segment first. With ``overlap`` and at least two intra-op threads
        (``torch.get_num_threads()``), on two threads (:class:`_TwoWorkers`): two intra-op threads sped one
        op at a time up by only ~1.25× (nyc-covid, 1M agents), two threads of one intra-op thread each
        keep both cores busy. A day's values do not depend on the number of threads (the daily series of
        nyc-covid at 300k agents are identical with one and two), so the replay still reproduces the
        forward pass; the reverse pass's sums round differently (tested)."""
        segments = list(reversed(self.snapshots))
        kept, self.kept = self.kept, []
        threads = torch.get_num_threads()
        # two threads when there is something to share: several passes, or replays ahead of one pass
        if not (self.overlap and threads > 1 and (passes > 1 or (self.ahead > 0 and len(segments) > 1))):
            for snap in segments:
                segment = kept.pop(0) if kept else self._replay(snap)
                for j in range(passes):
                    reverse(snap, segment, j)
                del segment  # its tape, before the next segment's is recorded
            return
        torch.set_num_threads(1)  # the process's count, for both threads
        try:
            workers = _TwoWorkers(
                segments, self._replay, reverse, passes, tapes=1 + self.ahead, threads=threads
            )
            # handed over, not held here (no name left on them): their tapes are freed once reversed
            workers.ready.update(enumerate(kept))
            workers.started, kept = len(kept), []
            workers.run()
        finally:
            torch.set_num_threads(threads)

    def _replay(self, snap: Snapshot) -> _Segment:
        """Run one segment again from its snapshot, with its tape: the series' rows of its days, the state
        it ends with and the leaves standing for the state it started from."""
        states, leaves = snap.restore()
        rows: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        with torch.enable_grad():
            for day in range(snap.first, snap.first + snap.days):
                states = self.step(states, day)
                observed = self.observe(states)
                for n in self.names:
                    rows[n].append(observed[n])
            self._check_carried(snap, states)
            return {n: torch.stack(r) for n, r in rows.items()}, states, leaves

    def _check_carried(self, snap: Snapshot, ended: list[LayerState]) -> None:
        """Raise if a segment ended with a tensor carrying gradients that the next snapshot does not carry:
        its gradient would be lost (a snapshot converted from the fast forward pass, :class:`FastForward`,
        whose first segment did not show that it carries them)."""
        after = next((s for s in self.snapshots if s.first == snap.first + snap.days), None)
        if after is None:
            return
        lost = [p for p, t in tensors(ended) if t.requires_grad and p not in after.carried]
        if lost:
            layer, field, _ = lost[0]
            raise RuntimeError(
                f"lean reverse mode: on day {after.first}, field {field!r} of layer {layer}'s state carries "
                "gradients that the fast forward pass did not keep (they first appear after its first "
                "segment); run with a longer checkpoint interval, or report it"
            )

    def _gradients(
        self,
        rows: dict[str, torch.Tensor],
        states: list[LayerState],
        leaves: dict[Path, torch.Tensor],
        by_name: dict[str, torch.Tensor | None],
        adjoint: dict[Path, torch.Tensor],
        offset: int,
        days: int,
    ) -> tuple[torch.Tensor | None, ...] | None:
        """The gradients of a replayed segment's outputs (the series' ``rows`` of its days, ``offset`` into
        the run, and the ``states`` it ends with) with respect to the run's inputs and the ``leaves`` of its
        first state; ``None`` if nothing of the segment reaches the loss. The tape is kept for the next pass
        (and for what the segment shares with the rest of the graph, e.g. a parametrisation's cached
        value)."""
        outs, outs_grad = [], []
        for n in self.names:
            g = by_name[n]
            if g is not None and rows[n].requires_grad:
                outs.append(rows[n])
                outs_grad.append(g[offset : offset + days])
        for path, t in tensors(states):
            if path in adjoint and t.requires_grad:
                outs.append(t)
                outs_grad.append(adjoint[path])
        if not outs:
            return None
        wrt = [*self.inputs, *leaves.values()]
        return torch.autograd.grad(outs, wrt, outs_grad, allow_unused=True, retain_graph=True)


def vjps(
    outputs: Sequence[torch.Tensor],
    cotangents: Sequence[Sequence[torch.Tensor | None]],
    wrt: Sequence[torch.Tensor],
) -> list[list[torch.Tensor | None]]:
    """For each cotangent (a gradient, or ``None``, per output), the gradient of Σ ⟨cotangent, output⟩ with
    respect to ``wrt``: ``torch.autograd.grad(outputs, wrt, cotangent)`` for each. When the outputs are
    series of one lean run (:func:`replay_run`), its segments are replayed once for all the cotangents
    instead of once each (:func:`populace.sensitivity.sensitivity`: several outcomes of one run)."""
    node = outputs[0].grad_fn if outputs else None
    run = getattr(node, "run", None)
    out: list[list[torch.Tensor | None]] = []
    if not isinstance(run, _Run) or any(o.grad_fn is not node for o in outputs):
        for j, cotangent in enumerate(cotangents):
            used = [(o, c) for o, c in zip(outputs, cotangent, strict=True) if c is not None]
            if not used:
                out.append([None] * len(wrt))
                continue
            found = torch.autograd.grad(
                [o for o, _ in used],
                wrt,
                [c for _, c in used],
                allow_unused=True,
                retain_graph=j < len(cotangents) - 1,
            )
            out.append(list(found))
        return out
    passes = []
    for cotangent in cotangents:
        full: list[torch.Tensor | None] = [None] * len(run.outputs)
        for o, c in zip(outputs, cotangent, strict=True):
            if c is not None:
                before = full[o.output_nr]
                full[o.output_nr] = c if before is None else before + c
        passes.append(full)
    index = {id(t): i for i, t in enumerate(run.inputs)}
    records = run.records
    for j, got in enumerate(run.vjps(passes)):
        grads: list[torch.Tensor | None] = [got[index[id(w)]] if id(w) in index else None for w in wrt]
        chain = [
            (t, a) for t, a in zip(run.start.values(), got[len(run.inputs) :], strict=True) if a is not None
        ]
        if chain:  # the start state depends on parameters (e.g. the seeding), or on an earlier run
            for record in records:
                record.use_pass(j)
            more: tuple[torch.Tensor | None, ...] = torch.autograd.grad(
                [t for t, _ in chain], wrt, [a for _, a in chain], allow_unused=True, retain_graph=True
            )
            grads = [g if m is None else m if g is None else g + m for g, m in zip(grads, more, strict=True)]
        out.append(grads)
    for record in records:
        record.use_pass(0)
    return out


def _to_fast(fast: FastForward, states: list[LayerState]) -> list[LayerState] | None:
    """``states`` in fast mode, or ``None`` when the model cannot convert them both ways."""
    with torch.no_grad():
        converted = fast.to_fast(states)
        if converted is None or fast.to_differentiable(converted) is None:
            return None
    return converted


def _to_differentiable(fast: FastForward, states: list[LayerState], carrying: set[Path]) -> list[LayerState]:
    """The fast ``states`` in differentiable mode, as leaves carrying gradients: the tensors at
    ``carrying`` or of fields the layers say carry them (copies where they would share memory with the fast
    state, which the next days write in place), and every float that fast mode keeps as an integer or a
    flag, or not at all (an agent's weight, a count, a presence: what differentiable mode carries
    gradients by)."""
    with torch.no_grad():
        converted = fast.to_differentiable(states)
    assert converted is not None  # checked by _to_fast
    integral = {p: t for p, t in tensors(states)}
    live = {t.untyped_storage().data_ptr() for t in integral.values()}
    leaves = {}
    for path, t in tensors(converted):
        was = integral.get(path)
        marked = path in carrying or path[:2] in fast.carries
        if marked or (t.is_floating_point() and (was is None or not was.is_floating_point())):
            own = t.clone() if t.untyped_storage().data_ptr() in live else t
            leaves[path] = own.detach().requires_grad_()
    return replace(converted, leaves)


@dataclass(frozen=True)
class FastForward:
    """How the forward pass of :func:`replay_run` may run its middle segments in fast mode, which keeps no
    float copies of integral state (a day of nyc-covid at 1M agents: ~25 ms against ~38 without a tape):
    ``step`` a day in fast mode; ``to_fast`` and ``to_differentiable`` convert states between the modes
    (:meth:`populace.Model.in_mode_of`; ``None`` when a layer cannot, and the forward pass stays
    differentiable); ``candidates``: every tensor requiring gradients that a day may read (the model's
    parameters and buffers), the inputs of the run where no graph of those days shows which; ``carries``:
    the (layer index, field) of the differentiable state that carry gradients
    (:attr:`populace.Layer.carries`)."""

    step: Step
    to_fast: Callable[[list[LayerState]], list[LayerState] | None]
    to_differentiable: Callable[[list[LayerState]], list[LayerState] | None]
    candidates: Sequence[torch.Tensor]
    carries: frozenset[tuple[int, str]]


def replay_run(
    states: list[LayerState],
    first: int,
    days: int,
    every: int,
    names: tuple[str, ...],
    step: Step,
    observe: Observe,
    on_day: Callable[[int], None] | None = None,
    *,
    overlap: bool = False,
    ahead: int = 0,
    fast: FastForward | None = None,
    keep: int = 1,
) -> tuple[list[LayerState], dict[str, torch.Tensor]]:
    """Run ``days`` days from ``states`` (day ``first``) in the lean reverse mode (module docs): the state
    at the end and the series ``names``, both carrying gradients through :class:`_Replay`.

    ``step(states, day)`` advances a day (in differentiable mode), ``observe(states)`` reports its values;
    ``on_day(day)`` is called after each day of the forward pass. ``overlap``: the backward pass runs on two
    threads (:meth:`_Run._each_segment`); ``ahead``: segments replayed ahead of the reverse passes (each
    keeps its tape alive), with ``overlap``.

    ``fast``: the segments between the first and the last run in fast mode (:class:`FastForward`). The
    first runs differentiable as before and shows which state tensors carry gradients from one day to the
    next; each later segment's snapshot is its fast state converted, those tensors carrying gradients.
    Values are the same in both modes (every scenario's series are tested equal), and a replay that ends
    with a tensor carrying gradients that the next snapshot does not carry raises (:meth:`_Run._replay`):
    gradients are never silently lost.

    ``keep``: the last segments whose tapes the forward pass keeps (at least the last one), so the first
    backward pass starts from them without replaying them: one segment's tape more each."""
    start = {p: t for p, t in tensors(states) if t.requires_grad}
    inputs: dict[int, torch.Tensor] = {}
    copies = _Copies()
    snapshots: list[Snapshot] = []
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    current = replace(states, {p: t.detach().requires_grad_() for p, t in start.items()})
    starts = range(first, first + days, every)
    taped = starts[max(0, len(starts) - keep)]  # the first kept segment's first day: tapes kept from here
    segments_kept: list[_Segment] = []  # last segment first
    kept: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    kept_leaves: dict[Path, torch.Tensor] = {}
    carrying: set[Path] = set(start)  # paths of the state carrying gradients after a differentiable day
    fast_states: list[LayerState] | None = None  # the state, on the days run in fast mode

    def close_segment(ended: list[LayerState]) -> None:
        """Keep the segment that ends with ``ended`` (its rows, end state and leaves, with its tape)."""
        tail = {n: torch.stack(r) for n, r in kept.items()}
        roots = [*(r for r in tail.values() if r.requires_grad)]
        roots += [t for _, t in tensors(ended) if t.requires_grad]
        for t in _leaves(roots, {id(t) for t in kept_leaves.values()}):
            inputs.setdefault(id(t), t)
        segments_kept.insert(0, (tail, ended, kept_leaves))

    with torch.enable_grad():
        for day in range(first, first + days):
            if day > taped and (day - first) % every == 0:  # a kept segment ends: cut its tape here
                close_segment(current)
                current, _ = _detach(current)
                kept = {n: [] for n in names}
            if fast is not None and day == first + every and day < taped:
                fast_states = _to_fast(fast, current)
                if fast_states is None:
                    fast = None
                else:
                    for t in fast.candidates:
                        inputs.setdefault(id(t), t)
            if fast_states is not None and (day - first) % every == 0:
                assert fast is not None
                current = _to_differentiable(fast, fast_states, carrying)
                fast_states = None if day == taped else fast_states
            if (day - first) % every == 0:
                snapshots.append(Snapshot.take(current, day, min(every, first + days - day), copies))
            if fast_states is not None:  # a day without gradients
                assert fast is not None
                with torch.no_grad():
                    fast_states = fast.step(fast_states, day)
                    observed = observe(fast_states)
                for n in names:
                    rows[n].append(observed[n].to(rows[n][0].dtype))
                if on_day is not None:
                    on_day(day)
                continue
            if day >= taped and (day - first) % every == 0:  # every tensor carrying gradients is a leaf
                kept_leaves = {p: t for p, t in tensors(current) if t.requires_grad}  # (cut, or the start's)
            if day < taped:  # today's graph starts at the state's tensors carrying gradients
                own = {id(t) for _, t in tensors(current) if t.requires_grad}
            current = step(current, day)
            observed = observe(current)
            if day < taped:
                roots = [observed[n] for n in names if observed[n].requires_grad]
                carrying.update(p for p, t in tensors(current) if t.requires_grad)
                current, cut = _detach(current)
                for t in _leaves([*roots, *cut], own):
                    inputs.setdefault(id(t), t)
            for n in names:
                rows[n].append(observed[n].detach())
                if day >= taped:
                    kept[n].append(observed[n])
            if on_day is not None:
                on_day(day)
    close_segment(current)
    ended = {p: t for p, t in tensors(current) if t.requires_grad}
    series = {n: torch.stack(rows[n]) for n in names}
    end = {p: t.detach() for p, t in ended.items()}
    run = _Run(
        step,
        observe,
        names,
        snapshots,
        list(inputs.values()),
        start,
        end,
        series,
        overlap,
        ahead,
        segments_kept,
    )
    if not run.inputs and not start:
        return current, series  # nothing depends on a tensor requiring gradients
    outputs = _Replay.apply(run, *run.inputs, *start.values())
    k = len(names)
    series = dict(zip(names, outputs[:k], strict=True))
    return replace(current, dict(zip(end, outputs[k:], strict=True))), series
