"""A two-dose vaccine roll-out driven by a daily dose supply and an allocation table: who gets the next doses.

Every agent belongs to one allocation *cell* (a DHB × sequencing group, a DHB × age band, or the whole
country) and has a *priority* within it (age, or age plus an equity offset); ``willing`` marks the agents who
would take a dose when offered. Willing agents queue cell by cell, highest priority first (ties in random
order). Each day (day indices may be negative: the roll-out may have started before day 0, and those days are
dosed when the state is drawn):

1. the day's supply is a whole number of doses, ``⌊C(t)⌋ − ⌊C(t − 1)⌋`` with ``C`` the cumulative supply, so
   the doses given over any span equal the supply to within one dose and never exceed it;
2. second doses go first to everyone whose first dose is at least the day's ``interval`` old (earliest first);
3. the rest are first doses, split over cells by the day's ``shares`` and capped by each cell's willing people
   not yet dosed; what a full cell cannot take goes to the others in proportion to their shares (water
   filling), then is rounded to whole doses by largest remainders. Doses nobody can take are not given.

Protection starts ``onset_1`` days after dose 1 and ``onset_2`` days after dose 2. Dose ``k`` multiplies the
hazard of infection by ``1 − ve_infection_k`` and, for those infected anyway, the probability of severe
disease by ``(1 − ve_severe_k) / (1 − ve_infection_k)`` (capped at 1), as in :mod:`.vaccination`.

Gradients to the allocation: the shares may be ``softmax(logits)`` of a table that an optimiser changes
(:meth:`Rollout.learn`). Which agents are dosed is discrete, so the susceptibility and severity factors carry
a straight-through term: their value is each agent's own protection, their derivative is that of its cell's
mean protection, computed from the real-valued (unrounded) allocation, ``1 − ve₁ (P₁ − P₂)/N − ve₂ P₂/N`` with
``P₁`` the cell's first doses given ``onset_1`` days ago or earlier, ``P₂`` those given ``interval + onset_2``
days ago or earlier, and ``N`` its agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from populace.model import LayerState, Phase, StepContext
from populace.params import Param, register_params

from . import vaccination
from .effects import Effects, Modifier, check_groups

__all__ = ["Rollout", "RolloutState", "water_fill", "whole_doses"]

NEVER = -32768
"""``dose_day`` of a queue position that has not had the dose (int16)."""


def water_fill(doses: torch.Tensor, shares: torch.Tensor, room: torch.Tensor) -> torch.Tensor:
    """``float[cells]``: ``doses`` split in proportion to ``shares``, no cell getting more than its ``room``;
    what a full cell cannot take goes to the others in proportion to their shares (to cells with room but no
    share last, in proportion to their room). Differentiable in ``doses`` and ``shares``. The total is
    ``min(doses, room.sum())``."""
    room = room.to(shares.dtype)
    out = torch.zeros_like(shares)
    left = doses
    for _ in range(shares.numel() + 1):
        open_ = (room - out.detach()) > 1e-6
        if not bool(open_.any()) or float(left.detach()) <= 1e-6:
            break
        weight = torch.where(open_, shares, torch.zeros_like(shares))
        if float(weight.detach().sum()) <= 0:
            weight = torch.where(open_, room - out.detach(), torch.zeros_like(room))
        want = left * weight / weight.sum()
        take = torch.minimum(want, room - out)
        out = out + take
        left = left - take.sum()
    return out


def whole_doses(allocation: torch.Tensor, total: int, room: torch.Tensor) -> torch.Tensor:
    """``int64[cells]``: ``allocation`` (real, summing to about ``total``) rounded to whole doses that sum
    to exactly ``min(total, room.sum())`` without exceeding ``room``: floors, then one more dose to the cells
    with the largest remainders."""
    room = room.long()
    total = min(int(total), int(room.sum()))
    a = allocation.detach().double().clamp(min=0)
    n = torch.minimum(a.floor().long(), room)
    extra = total - int(n.sum())
    if extra > 0:
        remainder = torch.where(n < room, a - a.floor() + 1e-9 * room.double(), torch.full_like(a, -1.0))
        while extra > 0:
            k = min(extra, int((n < room).sum()))
            n[torch.topk(remainder, k).indices] += 1
            extra -= k
            remainder = torch.where(n < room, remainder - 2.0, torch.full_like(a, -1e9))
    elif extra < 0:  # rounding overshoot: take back from the smallest remainders
        remainder = torch.where(n > 0, a - a.floor(), torch.full_like(a, 2.0))
        n[torch.topk(remainder, -extra, largest=False).indices] -= 1
    return n


@dataclass
class RolloutState(LayerState):
    """State of :class:`Rollout`.

    Attributes:
        queue: ``int32[queue]``: the willing agents, cell by cell, highest priority first.
        starts: ``int64[cells + 1]``: where each cell's segment of the queue starts (and the end).
        dose_day: ``int16[2, queue]``: day of dose 1 / dose 2 of each queue position (``NEVER``: not yet).
        given: ``int64[cells]``: first doses given so far in each cell (the cell's queue pointer).
        order: ``int32[queue]``: queue positions in the order of their first dose (the first ``totals[0]``
            entries are filled). Second doses follow the same order (earliest first dose first), so
            the positions with a second dose, and those protected by one or two doses, are its prefixes.
        order_day: ``int16[2, queue]``: day of dose 1 / dose 2 along ``order`` (non-decreasing).
        protected: ``int64[2]``: length of the prefixes of ``order`` protected by dose 1 / dose 2.
        level: ``uint8[agents]``: protection of each agent today (0 none, 1 or 2 doses).
        factors: fast mode only, ``float32[2, agents]``: each agent's susceptibility and severity factors,
            updated for the newly protected only (differentiable mode computes them from ``level``).
        daily: ``int64[2]``: today's first and second doses.
        totals: ``int64[2]``: first and second doses given so far.
        by_group: ``int64[2, Σ groups]``: first and second doses so far in each breakdown group.
        cumulative: real-valued first doses per cell up to each day, ``[cells]`` per day from the first day of
            the roll-out (differentiable mode only: the mean-field term of the gradient; empty otherwise).
    """

    queue: torch.Tensor
    starts: torch.Tensor
    dose_day: torch.Tensor
    given: torch.Tensor
    order: torch.Tensor
    order_day: torch.Tensor
    protected: torch.Tensor
    level: torch.Tensor
    factors: torch.Tensor | None
    daily: torch.Tensor
    totals: torch.Tensor
    by_group: torch.Tensor
    cumulative: list[torch.Tensor]


class Rollout(Modifier):
    """Two-dose roll-out by allocation cell (see module docs).

    Args:
        cell: ``int[agents]``: each agent's allocation cell, ``0 ≤ cell < cells``.
        cells: number of cells.
        priority: ``float[agents]``: order within a cell, highest first (e.g. age).
        willing: ``bool[agents]``: who takes a dose when offered (eligible and willing).
        supply: ``float[series]``: doses available on each day of the series (first and second together).
        first_day: day index of ``supply[0]`` (negative when the roll-out started before day 0); days past the
            series reuse its last value.
        shares: ``float[periods, cells]``: share of the first doses for each cell, one row per ``period`` days
            from ``first_day``; rows need not sum to 1; days past the last row use the last row.
        interval: ``int[series]`` (or one int): days from dose 1 to dose 2 for second doses given on each day.
        breakdowns: ``(name, index, labels)`` groupings for the ``*_doses_by_<name>`` series.
    """

    phase = Phase.INTERVENTION
    cell: torch.Tensor
    priority: torch.Tensor
    willing: torch.Tensor
    supply: torch.Tensor
    daily_supply: torch.Tensor
    shares: torch.Tensor
    interval: torch.Tensor
    logits: torch.Tensor
    cell_size: torch.Tensor
    onset_1: torch.Tensor
    onset_2: torch.Tensor
    ve_infection_1: torch.Tensor
    ve_infection_2: torch.Tensor
    ve_severe_1: torch.Tensor
    ve_severe_2: torch.Tensor

    def __init__(
        self,
        cell: torch.Tensor,
        cells: int,
        priority: torch.Tensor,
        willing: torch.Tensor,
        supply: torch.Tensor,
        *,
        first_day: int,
        shares: torch.Tensor,
        period: int = 7,
        interval: torch.Tensor | int = 21,
        breakdowns: Sequence[tuple[str, torch.Tensor, tuple[str, ...]]] = (),
        onset_1: Param = vaccination.ONSET_DAYS,
        onset_2: Param = vaccination.ONSET_DAYS,
        ve_infection_1: Param = vaccination.VE_INFECTION_1,
        ve_infection_2: Param = vaccination.VE_INFECTION_2,
        ve_severe_1: Param = vaccination.VE_SEVERE_1,
        ve_severe_2: Param = vaccination.VE_SEVERE_2,
    ) -> None:
        super().__init__()
        n = int(cell.numel())
        if cells < 1 or period < 1:
            raise ValueError(f"Rollout: cells and period must be positive, got {cells} and {period}")
        check_groups(cell, cells)
        for name, t in (("priority", priority), ("willing", willing)):
            if t.numel() != n:
                raise ValueError(f"{name}: expected {n} entries (one per agent), got {t.numel()}")
        supply = torch.as_tensor(supply, dtype=torch.float64).flatten()
        if supply.numel() == 0 or not bool((supply >= 0).all()) or not bool(torch.isfinite(supply).all()):
            raise ValueError("supply: expected a non-empty series of finite doses per day >= 0")
        shares = torch.as_tensor(shares, dtype=torch.float32)
        shares = shares[None] if shares.dim() == 1 else shares
        if shares.dim() != 2 or shares.shape[1] != cells:
            raise ValueError(f"shares: expected [periods, {cells}], got shape {tuple(shares.shape)}")
        if not bool((shares >= 0).all()) or not bool(torch.isfinite(shares).all()):
            raise ValueError("shares: expected finite values >= 0")
        interval = torch.as_tensor(interval, dtype=torch.int64).flatten()
        if interval.numel() == 1:
            interval = interval.expand(supply.numel()).clone()
        if interval.numel() != supply.numel() or not bool((interval >= 1).all()):
            raise ValueError(f"interval: expected one value >= 1 or {supply.numel()} (one per supply day)")
        self.n_agents, self.cells, self.first_day, self.period = n, cells, int(first_day), period
        self.breakdowns = tuple(breakdowns)
        for name, index, labels in self.breakdowns:
            if index.numel() != n:
                raise ValueError(f"breakdowns: {name} has {index.numel()} entries, expected {n}")
            check_groups(index, len(labels))
        cumulative = supply.cumsum(0).floor()
        daily = torch.diff(cumulative, prepend=cumulative.new_zeros(1)).long()
        self.register_buffer("cell", cell.long(), persistent=False)
        self.register_buffer("priority", priority.float(), persistent=False)
        self.register_buffer("willing", willing.bool(), persistent=False)
        self.register_buffer("supply", supply, persistent=False)
        self.register_buffer("daily_supply", daily, persistent=False)
        self.register_buffer("shares", shares.clone())
        self.register_buffer("interval", interval, persistent=False)
        self.register_buffer("logits", torch.zeros(0))
        self.register_buffer(
            "cell_size", torch.bincount(cell.long(), minlength=cells).float(), persistent=False
        )
        if self.breakdowns:
            offsets = torch.tensor([0] + [len(b[2]) for b in self.breakdowns]).cumsum(0)[:-1].tolist()
            group = torch.stack([b[1].long() + o for b, o in zip(self.breakdowns, offsets, strict=True)])
        else:
            group = torch.zeros(0, n, dtype=torch.long)
        self.register_buffer("group", group, persistent=False)
        register_params(
            self,
            onset_1=onset_1,
            onset_2=onset_2,
            ve_infection_1=ve_infection_1,
            ve_infection_2=ve_infection_2,
            ve_severe_1=ve_severe_1,
            ve_severe_2=ve_severe_2,
        )

    # ------------------------------------------------------------------ the lever
    def learn(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Replace the share table by ``softmax(logits)`` (one share per cell, every day) and return the
        logits as a leaf tensor that requires a gradient (default: the log of the table's mean shares)."""
        if logits is None:
            mean = self.shares.mean(0)
            logits = (mean / mean.sum().clamp(min=1e-12)).clamp(min=1e-8).log()
        logits = torch.as_tensor(logits, dtype=torch.float32, device=self.shares.device).detach().clone()
        if logits.shape != (self.cells,):
            raise ValueError(f"logits: expected shape ({self.cells},), got {tuple(logits.shape)}")
        self.logits = logits.requires_grad_(True)
        return self.logits

    def shares_on(self, day: int) -> torch.Tensor:
        """``float[cells]``: the first-dose shares of day ``day`` (from the learned logits if any)."""
        if self.logits.numel():
            return torch.softmax(self.logits, 0)
        row = min(max(day - self.first_day, 0) // self.period, self.shares.shape[0] - 1)
        return self.shares[row]

    def _series(self, table: torch.Tensor, day: int) -> int:
        return int(table[min(max(day - self.first_day, 0), table.numel() - 1)])

    # ------------------------------------------------------------------ reporting
    def observables(self) -> tuple[str, ...]:
        names = ["first_doses", "second_doses", "vaccinated", "fully_vaccinated"]
        names += [f"{k}_by_{b[0]}" for b in self.breakdowns for k in ("vaccinated", "fully_vaccinated")]
        return tuple(names)

    def labels(self) -> dict[str, tuple[str, ...]]:
        return {f"{k}_by_{b[0]}": b[2] for b in self.breakdowns for k in ("vaccinated", "fully_vaccinated")}

    def observe(self, state: RolloutState) -> dict[str, torch.Tensor]:
        out = {
            "first_doses": state.daily[0].clone(),
            "second_doses": state.daily[1].clone(),
            "vaccinated": state.totals[0].clone(),
            "fully_vaccinated": state.totals[1].clone(),
        }
        column = 0
        for name, _, labels in self.breakdowns:
            k = len(labels)
            out[f"vaccinated_by_{name}"] = state.by_group[0, column : column + k].clone()
            out[f"fully_vaccinated_by_{name}"] = state.by_group[1, column : column + k].clone()
            column += k
        return out

    # ------------------------------------------------------------------ set-up
    def stream_names(self) -> tuple[str, ...]:
        return ("queue",)

    def queue(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The willing agents cell by cell, highest priority first (random among equals), and the start of
        each cell's segment (``int64[cells + 1]``)."""
        u = ctx.streams.uniform(f"{self.name}.queue", self.n_agents)
        agents = torch.nonzero(self.willing).squeeze(1)
        # one float64 key: cell, then priority (descending), then the random tie-break
        p = self.priority[agents].double()
        span = float(p.max() - p.min()) + 2.0 if agents.numel() else 2.0
        key = self.cell[agents].double() * span - (p - float(p.min()) if agents.numel() else p) - u[agents]
        order = agents[torch.argsort(key)]
        counts = torch.bincount(self.cell[order], minlength=self.cells)
        return order, torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def init_state(self, ctx: StepContext) -> RolloutState:
        queue, starts = self.queue(ctx)
        device = queue.device
        width = sum(len(b[2]) for b in self.breakdowns)
        state = RolloutState(
            queue=queue.to(torch.int32),
            starts=starts,
            dose_day=torch.full((2, queue.numel()), NEVER, dtype=torch.int16, device=device),
            given=torch.zeros(self.cells, dtype=torch.int64, device=device),
            order=torch.zeros(queue.numel(), dtype=torch.int32, device=device),
            order_day=torch.full((2, queue.numel()), NEVER, dtype=torch.int16, device=device),
            protected=torch.zeros(2, dtype=torch.int64, device=device),
            level=torch.zeros(self.n_agents, dtype=torch.uint8, device=device),
            factors=None if ctx.differentiable else torch.ones(2, self.n_agents, device=device),
            daily=torch.zeros(2, dtype=torch.int64, device=device),
            totals=torch.zeros(2, dtype=torch.int64, device=device),
            by_group=torch.zeros(2, width, dtype=torch.int64, device=device),
            cumulative=[],
        )
        for day in range(self.first_day, 0):  # the roll-out before day 0
            self._dose(state, day, ctx.differentiable)
        self._protect(state, -1)
        state.daily = torch.zeros_like(state.daily)
        return state

    # ------------------------------------------------------------------ day
    def step(self, state: RolloutState, ctx: StepContext) -> RolloutState:
        self._dose(state, ctx.day, ctx.differentiable)
        self._protect(state, ctx.day)
        return state

    def _dose(self, state: RolloutState, day: int, differentiable: bool) -> None:
        if day < self.first_day:
            state.daily = torch.zeros_like(state.daily)
            if differentiable:
                state.cumulative = [*state.cumulative, self.cell_size.new_zeros(self.cells)]
            return
        doses = self._series(self.daily_supply, day)
        interval = self._series(self.interval, day)
        device = state.given.device
        # 1. second doses that are due, along the order of first doses (earliest first)
        first, second = int(state.totals[0]), int(state.totals[1])
        waiting = state.order_day[0, second:first]
        due = int(torch.searchsorted(waiting, torch.tensor(day - interval, dtype=waiting.dtype), right=True))
        n_second = min(due, doses)
        due_positions = state.order[second : second + n_second].long()
        state.dose_day[1, due_positions] = day
        state.order_day[1, second : second + n_second] = day
        # 2. first doses by cell
        starts = state.starts
        room = (starts[1:] - starts[:-1]) - state.given
        left = doses - n_second
        shares = self.shares_on(day)
        allocation = water_fill(torch.as_tensor(float(left), device=device), shares, room)
        n = whole_doses(allocation, left, room)
        positions = _ranges(starts[:-1] + state.given, n)
        n_first = int(n.sum())
        state.dose_day[0, positions] = day
        state.order[first : first + n_first] = positions.to(torch.int32)
        state.order_day[0, first : first + n_first] = day
        state.given = state.given + n
        state.daily = torch.tensor([n_first, n_second], device=device)
        state.totals = state.totals + state.daily
        if self.breakdowns:
            for dose, where in ((0, positions), (1, due_positions)):
                agents = state.queue[where].long()
                for row in self.group:
                    state.by_group[dose].index_add_(
                        0, row[agents], torch.ones_like(agents, dtype=state.by_group.dtype)
                    )
        if differentiable:
            previous = state.cumulative[-1] if state.cumulative else torch.zeros_like(allocation)
            state.cumulative = [*state.cumulative, previous + allocation]

    def _protect(self, state: RolloutState, day: int) -> None:
        """Protect the agents whose dose is ``onset`` days old today: the next stretch of ``order``."""
        given = (int(state.totals[0]), int(state.totals[1]))
        for dose, onset in ((0, self.onset_1), (1, self.onset_2)):
            done = int(state.protected[dose])
            days = state.order_day[dose, done : given[dose]]
            ready = torch.tensor(day - round(float(onset)), dtype=days.dtype)
            now = done + int(torch.searchsorted(days, ready, right=True))
            if now > done:
                agents = state.queue[state.order[done:now].long()].long()
                vaccination.protect(state.level, state.factors, agents, dose, self)
                state.protected[dose] = now

    def _mean_field(self, state: RolloutState, day: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cells' mean susceptibility and severity factors from the real-valued allocation (only their
        derivative is used), or ``None`` before any dose protects."""
        if not state.cumulative:
            return None

        def upto(lag: int) -> torch.Tensor:
            k = day - lag - self.first_day
            if k < 0:
                return state.cumulative[0] * 0
            return state.cumulative[min(k, len(state.cumulative) - 1)]

        p1 = upto(round(float(self.onset_1))) / self.cell_size.clamp(min=1)
        p2 = upto(round(float(self.onset_2)) + self._series(self.interval, day)) / self.cell_size.clamp(min=1)
        p2 = torch.minimum(p2, p1)
        infection, severity = vaccination.protection_tables(self)
        sus = 1 - (p1 - p2) * (1 - infection[1]) - p2 * (1 - infection[2])
        sev = 1 - (p1 - p2) * (1 - severity[1]) - p2 * (1 - severity[2])
        return sus, sev

    def effects(self, state: RolloutState, ctx: StepContext) -> Effects:
        if int(state.protected[0]) == 0:
            return Effects()
        if state.factors is not None:
            return Effects(susceptibility=state.factors[0], severity=state.factors[1])
        infection, severity = vaccination.protection_tables(self)
        level = state.level.long()
        sus, sev = infection[level], severity[level]
        mean = self._mean_field(state, ctx.day) if ctx.differentiable else None
        if mean is not None and mean[0].requires_grad:
            sus = sus + (mean[0] - mean[0].detach())[self.cell]
            sev = sev + (mean[1] - mean[1].detach())[self.cell]
        return Effects(susceptibility=sus, severity=sev)


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``int64[Σ counts]``: ``starts[c], …, starts[c] + counts[c] − 1`` for every ``c``, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=starts.device)
    offsets = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return torch.repeat_interleave(starts, counts) + torch.arange(total, device=starts.device) - offsets
