"""A population split over processes: :class:`Shard` (this process's agents and the sums across processes)
and :func:`launch` (start N local processes, or join ``torchrun``'s).

The engine is PyTorch's own ``torch.distributed`` (c10d: gloo on CPU, NCCL on GPU); nothing here is a
transport of its own. What the simulation adds on top:

* **Shards are contiguous ranges of global agent indices** whose boundaries fall where whole households
  (and areas) start (:func:`split`), so households are never split and most places stay on one process.
* **Results do not depend on the number of processes.** Random draws are addressed by global agent index
  (:mod:`populace.random`), and every sum over agents that feeds the dynamics or a series is exact: place
  emissions are rounded to multiples of 2⁻²⁴ and summed in float64 (:func:`exact`; exact for per-place
  totals below 2²⁹), totals of per-agent floats in int64 fixed point (:meth:`Shard.exact_sum`). Exact
  sums are the same in any order, so 1, 2 or 4 processes give bit-identical daily series.
* **Gradients cross processes.** :meth:`Shard.sum` is differentiable: its backward pass sums the gradients
  across processes (the adjoint of a sum). Every collective of a differentiable run is chained to the
  previous one through a token, so the backward collectives run in the same order on every process (the
  autograd engine would otherwise be free to order independent branches differently). Each process
  back-propagates ``loss / ranks`` (:meth:`Shard.loss`), and the parameter gradients are summed across
  processes (:meth:`Shard.reduce_gradients`): the result equals the single-process gradient.
* **Failures stop everyone**: :func:`launch` runs the processes with ``torch.multiprocessing``; the first
  that raises makes the others stop and the parent raise :class:`RankFailed` with that rank's message;
  collectives time out (``timeout``) instead of hanging; Ctrl-C stops every process.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import socket
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["RankFailed", "Shard", "exact", "launch", "split"]

QUANTUM = 2.0**-24
"""Resolution of exact sums: per-agent values are rounded to multiples of this."""


def exact(values: torch.Tensor) -> torch.Tensor:
    """``float64`` copies of ``values`` rounded to multiples of :data:`QUANTUM`, so that sums of them (below
    2²⁹) are exact and independent of order; the gradient passes through unchanged."""
    rounded = torch.round(values.detach().to(torch.float64) * 2.0**24) * QUANTUM
    if not _carries_derivative(values):
        return rounded
    return values.to(torch.float64) + (rounded - values.detach().to(torch.float64))


def _carries_derivative(values: torch.Tensor) -> bool:
    """Whether ``values`` carry a derivative: reverse mode (``requires_grad``) or forward mode (a dual
    tensor's tangent, which ``requires_grad`` does not show)."""
    return values.requires_grad or torch.autograd.forward_ad.unpack_dual(values).tangent is not None


def split(total: int, ranks: int, starts: torch.Tensor | None = None) -> tuple[int, ...]:
    """Boundaries ``(0, b1, …, total)`` of ``ranks`` contiguous shards of about equal size, each boundary
    moved forward to the next index where ``starts`` (``bool[total]``: where a household, or an area, begins)
    is true, so no household is split. Raises ``ValueError`` when a shard would be empty."""
    if ranks < 1:
        raise ValueError(f"ranks: expected at least 1, got {ranks}")
    bounds = [0]
    allowed = None if starts is None else torch.nonzero(starts.cpu()).squeeze(1)
    for r in range(1, ranks):
        target = (total * r) // ranks
        if allowed is not None:
            i = int(torch.searchsorted(allowed, torch.tensor(target)))
            target = int(allowed[i]) if i < allowed.numel() else total
        bounds.append(target)
    bounds.append(total)
    if any(b <= a for a, b in itertools.pairwise(bounds)):
        raise ValueError(
            f"cannot split {total:,} agents over {ranks} processes without splitting a household "
            f"(boundaries {bounds}); use fewer processes or more agents"
        )
    return tuple(bounds)


class _Sum(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient; chained through ``token``."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, token: torch.Tensor, group: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.group = group
        out = x.detach().clone()
        dist.all_reduce(out, group=group)
        return out, token.detach().clone()

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor, grad_token: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, grad_token, None


class Shard:
    """This process's part of a population split over ``ranks`` processes: the global agents
    ``bounds[rank] … bounds[rank + 1] − 1``. The scenario that builds the population fixes the bounds
    (:meth:`divide`), where households begin.

    Args:
        rank: this process's index.
        ranks: number of processes.
        group: the ``torch.distributed`` process group (``None``: the default group; unused with one rank).
    """

    def __init__(self, rank: int = 0, ranks: int = 1, group: Any = None) -> None:
        if ranks < 1 or not 0 <= rank < ranks:
            raise ValueError(f"rank {rank} of {ranks}: expected 0 <= rank < ranks")
        if ranks > 1 and not dist.is_initialized():
            raise RuntimeError("a Shard over several processes needs torch.distributed to be initialised")
        self.rank, self.ranks, self.group = rank, ranks, group
        self.bounds: tuple[int, ...] | None = None
        self._token: torch.Tensor | None = None
        self.payload_bytes = 0
        """Bytes this process has contributed to collectives so far (each all-reduce's tensor, each
        all-gather's part; the transport moves about twice that for a ring all-reduce)."""

    @classmethod
    def whole(cls, n: int) -> Shard:
        """Everyone (``n`` agents) in this one process."""
        return cls().divide(n)

    @classmethod
    def single(cls) -> Shard:
        """One process holding everyone, whatever the layers' sizes (not divided)."""
        return cls()

    def divide(self, total: int, starts: torch.Tensor | None = None) -> Shard:
        """Fix the bounds for a population of ``total`` agents (:func:`split`; ``starts``: where households
        begin). Every process computes the same bounds; a second call must agree with the first."""
        bounds = split(total, self.ranks, starts)
        if self.bounds is not None and self.bounds != bounds:
            raise ValueError(f"shard: divided as {self.bounds}, now {bounds}")
        self.bounds = bounds
        return self

    def _bounds(self) -> tuple[int, ...]:
        if self.bounds is None:
            raise RuntimeError("shard: not divided yet (the scenario's build divides it)")
        return self.bounds

    @property
    def start(self) -> int:
        return self._bounds()[self.rank]

    @property
    def stop(self) -> int:
        return self._bounds()[self.rank + 1]

    @property
    def size(self) -> int:
        """Agents in this shard."""
        return self.stop - self.start

    @property
    def total(self) -> int:
        """Agents in all shards."""
        return self._bounds()[-1]

    @property
    def spans(self) -> bool:
        """Whether the population is split over several processes."""
        return self.ranks > 1

    def sizes(self) -> list[int]:
        """Agents in each shard."""
        bounds = self._bounds()
        return [b - a for a, b in itertools.pairwise(bounds)]

    def agents(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """``int64[size]``: the global indices of this shard's agents."""
        return torch.arange(self.start, self.stop, device=device)

    # ------------------------------------------------------------------ collectives
    def begin(self, differentiable: bool, device: torch.device | str) -> None:
        """Start a run: a fresh token for the chain of differentiable collectives."""
        self._token = torch.zeros((), device=device, requires_grad=True) if differentiable else None

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over all processes (every process calls it with the same shape, in the same order).
        Differentiable: the backward pass sums the gradients over processes."""
        if not self.spans:
            return x
        self.payload_bytes += x.numel() * x.element_size()
        if self._token is not None and torch.is_grad_enabled():
            out, self._token = _Sum.apply(x, self._token, self.group)
            return out
        out = x.clone()
        dist.all_reduce(out, group=self.group)
        return out

    def exact_sum(self, values: torch.Tensor) -> torch.Tensor:
        """The exact sum over all processes of per-agent ``values`` (``float32[k]``): int64 fixed point at
        :data:`QUANTUM`, so the same in any order; a ``float32`` scalar whose gradient is that of the plain
        sum."""
        fixed = torch.round(values.detach().to(torch.float64) * 2.0**24).to(torch.int64).sum()
        fixed = self.sum(fixed) if self.spans else fixed
        value = (fixed.to(torch.float64) * QUANTUM).to(torch.float32)
        if not _carries_derivative(values):
            return value
        plain = self.sum(values.sum())
        return plain + (value - plain.detach())

    def add_up(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over the processes outside autograd (for a backward pass that needs a total)."""
        if not self.spans:
            return x
        out = x.detach().clone()
        dist.all_reduce(out, group=self.group)
        return out

    def positions(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For this process's ``keys`` (``int64[k]``, sorted), their positions in the sorted keys of all
        processes (ties: the lower process first, as one process holding everyone in order would sort
        them stably), and the total count."""
        if not self.spans:
            return torch.arange(keys.numel(), device=keys.device), torch.tensor(keys.numel())
        counts = [torch.zeros(1, dtype=torch.int64, device=keys.device) for _ in range(self.ranks)]
        dist.all_gather(counts, torch.tensor([keys.numel()], device=keys.device), group=self.group)
        longest = max(int(c) for c in counts)
        padded = torch.full((longest,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=keys.device)
        padded[: keys.numel()] = keys
        gathered = [torch.empty_like(padded) for _ in range(self.ranks)]
        self.payload_bytes += padded.numel() * padded.element_size()
        dist.all_gather(gathered, padded, group=self.group)
        position = torch.arange(keys.numel(), device=keys.device)
        for r, (other, count) in enumerate(zip(gathered, counts, strict=True)):
            if r != self.rank:
                other = other[: int(count)]
                position += torch.searchsorted(other, keys, right=r < self.rank)
        return position, torch.stack(counts).sum()

    def smallest(self, keys: torch.Tensor, k: int) -> torch.Tensor:
        """Local indices of this shard's entries among the ``k`` smallest ``keys`` (``int64[size]``) of all
        processes (keys are distinct random bits: ties have probability ~2⁻⁶⁴ per pair)."""
        local = torch.topk(keys, min(k, keys.numel()), largest=False, sorted=False)
        if not self.spans:
            return local.indices
        gathered = [torch.empty(k, dtype=torch.int64, device=keys.device) for _ in range(self.ranks)]
        padded = torch.full((k,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=keys.device)
        padded[: local.values.numel()] = local.values
        self.payload_bytes += padded.numel() * padded.element_size()
        dist.all_gather(gathered, padded, group=self.group)
        if k == 0:
            return local.indices
        cut = torch.topk(torch.cat(gathered), k, largest=False).values.max()
        return torch.nonzero(keys <= cut).squeeze(1)

    def tie(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` joined to the last collective of a differentiable run (adds zero), so that the backward
        pass reaches every collective on every process, in order."""
        if self._token is None:
            return value
        return value + 0.0 * self._token

    def loss(self, loss: torch.Tensor) -> torch.Tensor:
        """What each process back-propagates of a ``loss`` that all of them computed from the summed series:
        ``loss / ranks`` (the sums' backward adds the processes' shares back together)."""
        return self.tie(loss / self.ranks)

    def reduce_gradients(self, parameters: Sequence[torch.nn.Parameter] | Any) -> None:
        """Sum each parameter's gradient over the processes (each holds its agents' share)."""
        if not self.spans:
            return
        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad, group=self.group)

    def gather_object(self, obj: Any) -> list[Any] | None:
        """Every process's ``obj`` on rank 0 (``None`` elsewhere)."""
        if not self.spans:
            return [obj]
        out: list[Any] | None = [None] * self.ranks if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out


# ---------------------------------------------------------------------- processes
class RankFailed(RuntimeError):
    """A process of a multi-process run failed; the message is that process's error."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(
    rank: int, ranks: int, port: int, timeout_s: float, fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=ranks,
        timeout=dt.timedelta(seconds=timeout_s),
    )
    try:
        fn(rank, ranks, *args)
    except BaseException as exc:
        # One line a user reads, then the traceback for whoever debugs it (on stderr of that process).
        traceback.print_exc()
        raise RankFailed(f"rank {rank} of {ranks}: {type(exc).__name__}: {exc}") from None
    finally:
        dist.destroy_process_group()


def launch(
    fn: Callable[..., Any], ranks: int, *args: Any, timeout_s: float = 120.0, threads: int | None = None
) -> None:
    """Run ``fn(rank, ranks, *args)`` in ``ranks`` new local processes joined by a gloo process group
    (``torch.distributed`` is initialised in each). Returns when all have finished; the first failure stops
    the others and raises :class:`RankFailed` naming the rank and its error. ``fn`` and ``args`` must be
    importable/picklable (spawned processes). ``threads``: torch threads per process (default: the cores
    divided among the processes)."""
    if ranks < 1:
        raise ValueError(f"ranks: expected at least 1, got {ranks}")
    per_rank = threads or max(1, (os.cpu_count() or 1) // ranks)
    context = mp.start_processes(
        _threaded,
        args=(per_rank, ranks, _free_port(), timeout_s, fn, args),
        nprocs=ranks,
        join=False,
        start_method="spawn",
    )
    try:
        while not context.join():
            pass
    except mp.ProcessRaisedException as exc:
        lines = [line for line in str(exc).splitlines() if "RankFailed:" in line]
        message = lines[-1].split("RankFailed:", 1)[1].strip() if lines else str(exc).strip()
        raise RankFailed(message) from None
    except mp.ProcessExitedException as exc:
        raise RankFailed(f"rank {exc.error_index} of {ranks} exited with code {exc.exit_code}") from None
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        for process in context.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()


def _threaded(
    rank: int,
    threads: int,
    ranks: int,
    port: int,
    timeout_s: float,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    torch.set_num_threads(threads)
    _entry(rank, ranks, port, timeout_s, fn, args)
