"""Generic synthetic-population building blocks, independent of any region.

A population is built in stages, each a function here:

1. :func:`ipf` fits an ``[areas, cells]`` table (cells: age band × sex × ethnicity, flattened) to area
   totals and to regional cell totals;
2. :func:`integerise` rounds it to whole people, keeping every area's total;
3. :func:`expand` turns counts into one row per agent (area and cell);
4. :func:`assign_households`, :func:`assign_groups`, :func:`commute` and :func:`workplace_sizes` place agents
   in households, schools or community groups, and workplaces.

Every random draw takes an explicit ``torch.Generator`` (no global RNG), so a seed fixes the population;
the same seed gives the same result on the same device. Everything is vectorised: no Python loop runs over
agents, households or areas (sorting and segment arithmetic instead), so an 8-million-agent city takes
seconds. Tensors stay on the device of the inputs; the generator must live on that device too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "HEAD_AGES",
    "PARENT_AGE_LIMIT",
    "WORKPLACE_SIGMA",
    "assign_groups",
    "assign_households",
    "commute",
    "expand",
    "household_sizes",
    "integerise",
    "ipf",
    "workplace_sizes",
]

HEAD_AGES = (25, 65)
"""Ages ``[low, high)`` preferred for the one head (reference person) of each household."""

PARENT_AGE_LIMIT = 60
"""Children preferably live in households whose head is an adult younger than this."""

WORKPLACE_SIGMA = 1.67
"""Log-space standard deviation of workplace sizes (assumption, see :func:`workplace_sizes`)."""

_TIER_SHIFT = 32  # sort keys: group << _GROUP_SHIFT | tier << _TIER_SHIFT | 32 random bits
_GROUP_SHIFT = 34
_MAX_GROUPS = 1 << (63 - _GROUP_SHIFT)


# ----------------------------------------------------------------------------- helpers
def _check_vector(name: str, value: Tensor, n: int | None = None, *, integer: bool = False) -> None:
    if not isinstance(value, Tensor) or value.dim() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name}: expected a 1-D tensor, got {shape}")
    if n is not None and value.numel() != n:
        raise ValueError(f"{name}: expected {n} values, got {value.numel()}")
    if integer and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise ValueError(f"{name}: expected an integer tensor, got {value.dtype}")


def _check_non_negative(name: str, value: Tensor) -> None:
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: expected finite values")
    if value.numel() and bool((value < 0).any()):
        raise ValueError(f"{name}: expected non-negative values, got minimum {value.min().item()}")


def _exclusive_cumsum(x: Tensor) -> Tensor:
    """``out[i] = x[0] + ... + x[i-1]`` (``out[0] = 0``), same dtype as ``x``."""
    out = x.cumsum(0)
    return out - x


def _dense(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(``int64[n]`` dense index in ``[0, k)``, ``int64[k]`` label of each index), in increasing label order.

    Small non-negative labels (the usual area or borough numbers) are their own index, some perhaps unused;
    others go through ``torch.unique``.
    """
    labels = labels.long()
    if labels.numel() == 0:
        return labels, labels
    low, high = int(labels.min()), int(labels.max())
    if low >= 0 and high < max(2 * labels.numel(), 1 << 16):
        return labels, torch.arange(high + 1, device=labels.device)
    values, index = torch.unique(labels, sorted=True, return_inverse=True)
    return index, values


def _random_bits(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``int64[n]`` uniform in ``[0, 2^32)``: random tie-breaking bits of sort keys."""
    return torch.randint(0, 1 << _TIER_SHIFT, (n,), generator=generator, device=device)


def _sorted_by(group: Tensor, tier: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Sort by (group, tier, random): (sorted ``group``, permutation). ``group < 2^29``, ``tier < 4``."""
    key = _random_bits(group.numel(), generator, group.device)
    key |= group << _GROUP_SHIFT
    if tier is not None:
        key |= tier << _TIER_SHIFT
    key, perm = torch.sort(key)
    return key.bitwise_right_shift_(_GROUP_SHIFT), perm


def _size_cdf(size_probs: Tensor) -> Tensor:
    """``float64[K]`` cumulative distribution of household sizes ``1..K``, last entry exactly 1."""
    _check_vector("size_probs", size_probs)
    if size_probs.numel() == 0:
        raise ValueError("size_probs: expected at least one size probability")
    _check_non_negative("size_probs", size_probs)
    probs = size_probs.to(torch.float64)
    total = probs.sum()
    if not bool(total > 0):
        raise ValueError("size_probs: expected a positive sum")
    cdf = (probs / total).cumsum(0)
    cdf[-1] = 1.0
    return cdf


def _cdf_moments(cdf: Tensor) -> tuple[float, float]:
    """(mean, variance) of the sizes ``1..K`` of a :func:`_size_cdf`."""
    probs = torch.diff(cdf, prepend=cdf.new_zeros(1))
    size = torch.arange(1, cdf.numel() + 1, dtype=torch.float64, device=cdf.device)
    mean = float((probs * size).sum())
    return mean, float((probs * (size - mean) ** 2).sum())


def _draw_sizes(n: int, cdf: Tensor, generator: torch.Generator) -> Tensor:
    """``int64[n]`` sizes ``1..K`` drawn by inverse CDF."""
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=cdf.device)
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.numel() - 1) + 1


def _enough_draws(capacity: Tensor, mean: float, var: float) -> Tensor:
    """Draws per block so that sizes of this mean and variance cover ``capacity`` but for a 6-sd miss.

    The number of draws needed is a renewal count, about normal with mean ``c / mean`` and variance
    ``c × var / mean³``; never more than ``capacity`` (sizes are at least 1).
    """
    c = capacity.to(torch.float64)
    draws = torch.ceil(c / mean + 6 * torch.sqrt(c * var / mean**3) + 16).long()
    return torch.minimum(draws, capacity)


def _cut(sizes: Tensor, draws: Tensor, capacity: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cut every block's ``capacity`` into its drawn sizes, in order, the last one cut to fit.

    Args:
        sizes: ``int64[draws.sum()]`` drawn sizes, block by block, ``draws[b]`` for block ``b``.
        draws: ``int64[blocks]``.
        capacity: ``int64[blocks]``.

    Returns:
        (block, size, drawn size), ``int64[kept]`` each, of the draws that start before their block is
        full, block by block in draw order. A block whose draws fall short is left partly uncovered.
    """
    n_draws = sizes.numel()
    draw_block = torch.repeat_interleave(torch.arange(draws.numel(), device=sizes.device), draws)
    before = _exclusive_cumsum(sizes)
    before -= before[_exclusive_cumsum(draws).clamp_(max=max(n_draws - 1, 0))][draw_block]
    room = capacity[draw_block] - before
    keep = room > 0
    return draw_block[keep], torch.minimum(sizes, room)[keep], sizes[keep]


# ----------------------------------------------------------------------------- tables
def ipf(
    seed: Tensor,
    row_targets: Tensor,
    group_targets: Tensor,
    row_group: Tensor,
    *,
    tol: float = 1e-9,
    max_iter: int = 1000,
) -> Tensor:
    """Iterative proportional fitting of a ``float64[rows, cells]`` table to row and group-cell totals.

    Rows are small areas, cells are flattened categories (e.g. age band × sex × ethnicity), and every row
    belongs to one group (a region) whose cell totals are known. The result ``x`` has the seed's zeros and
    odds ratios, row sums ``row_targets`` and, for every group ``g``, column sums over the rows of ``g``
    equal to ``group_targets[g]``. Alternates a column step (scale each group's cells) and a row step (scale
    each row) until the largest column-sum error is at most ``tol × max(1, largest target)``; row sums are
    then exact up to rounding.

    If a group's cell targets and the targets of its rows disagree in total, the cell targets are rescaled
    to the rows' total (areas are taken as the reliable count; the group table gives the composition). A
    group with no rows therefore gets zero cell targets. Zero targets are allowed: their rows or cells come
    out zero.

    Args:
        seed: ``float64[rows, cells]`` non-negative prior (e.g. all ones, or a national table).
        row_targets: ``float64[rows]`` row totals.
        group_targets: ``float64[groups, cells]`` cell totals of every group.
        row_group: ``int64[rows]`` group of every row, in ``[0, groups)``.
        tol: relative tolerance on the column sums.
        max_iter: most iterations before giving up.

    Returns:
        ``float64[rows, cells]``.

    Raises:
        ValueError: negative or non-finite values, mismatched shapes, a positive target that the seed's zeros
            make unreachable, or no convergence within ``max_iter`` iterations.
    """
    if not isinstance(seed, Tensor) or seed.dim() != 2:
        shape = tuple(seed.shape) if isinstance(seed, Tensor) else type(seed).__name__
        raise ValueError(f"seed: expected a 2-D [rows, cells] table, got {shape}")
    rows, cells = seed.shape
    _check_vector("row_targets", row_targets, rows)
    if not isinstance(group_targets, Tensor) or group_targets.dim() != 2 or group_targets.shape[1] != cells:
        shape = tuple(group_targets.shape) if isinstance(group_targets, Tensor) else group_targets
        raise ValueError(f"group_targets: expected a [groups, {cells}] table, got {shape}")
    _check_vector("row_group", row_group, rows, integer=True)
    groups = group_targets.shape[0]
    if rows and (int(row_group.min()) < 0 or int(row_group.max()) >= groups):
        low, high = int(row_group.min()), int(row_group.max())
        raise ValueError(f"row_group: expected values in [0, {groups}), got values in [{low}, {high}]")
    for name, value in (("seed", seed), ("row_targets", row_targets), ("group_targets", group_targets)):
        _check_non_negative(name, value)
    if not tol > 0:
        raise ValueError(f"tol: expected a positive tolerance, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter: expected at least 1, got {max_iter}")

    f64 = torch.float64
    rt = row_targets.to(f64)
    group = row_group.long()
    rows_total = torch.zeros(groups, dtype=f64, device=seed.device).index_add_(0, group, rt)
    cells_total = group_targets.to(f64).sum(1)
    orphan = (cells_total == 0) & (rows_total > 0)
    if bool(orphan.any()):
        g = int(orphan.nonzero()[0])
        raise ValueError(
            f"group_targets: group {g} has no cell targets, but its rows' targets total "
            f"{float(rows_total[g]):g}"
        )
    gt = group_targets.to(f64) * torch.where(cells_total > 0, rows_total / cells_total, 0.0)[:, None]

    x = seed.to(f64) * (rt > 0)[:, None] * (gt[group] > 0)
    unreachable = (rt > 0) & (x.sum(1) == 0)
    if bool(unreachable.any()):
        r = int(unreachable.nonzero()[0])
        raise ValueError(f"seed: row {r} has a positive target but no seed in any cell its group allows")

    def column_sums(table: Tensor) -> Tensor:
        return torch.zeros(groups, cells, dtype=f64, device=table.device).index_add_(0, group, table)

    col = column_sums(x)
    unreachable = (gt > 0) & (col == 0)
    if bool(unreachable.any()):
        g, c = (int(i) for i in unreachable.nonzero()[0])
        raise ValueError(
            f"seed: group {g} cell {c} has a positive target but no seed in any row with a target"
        )

    tiny = torch.finfo(f64).tiny
    scale = tol * max(1.0, float(rt.max()) if rows else 0.0, float(gt.max()) if gt.numel() else 0.0)
    err = math.inf
    for _ in range(max_iter):
        x *= (gt / col.clamp(min=tiny))[group]
        x *= (rt / x.sum(1).clamp(min=tiny))[:, None]
        col = column_sums(x)
        err = float((col - gt).abs().max()) if col.numel() else 0.0
        if err <= scale:
            return x
    raise ValueError(
        f"max_iter: IPF did not converge in {max_iter} iterations (largest cell-total error {err:.3g}); "
        "the seed's zeros may make the targets inconsistent"
    )


def integerise(expected: Tensor, generator: torch.Generator) -> Tensor:
    """Round a ``float64[rows, cells]`` table of expected counts to ``int64[rows, cells]`` whole counts.

    Every row total is exactly ``round(row sum)`` (half to even) and every cell is its expected value rounded
    down or up, so ``|count - expected| < 1``. Which cells round up is random (no cell is systematically
    lost, unlike with largest remainders): each cell rounds up with probability ``π``, its fractional part
    rescaled so that the ``π`` of a row sum to the number of cells it must round up, and exactly that many
    are chosen by systematic sampling (one uniform per row) over the row's cells in a random order. When the
    row sum is whole, as after :func:`ipf` with whole targets, ``π`` is the fractional part and the
    rounding is unbiased: ``E[count] = expected``.

    Args:
        expected: ``float64[rows, cells]`` non-negative.
        generator: random source, on the device of ``expected``.
    """
    if not isinstance(expected, Tensor) or expected.dim() != 2:
        shape = tuple(expected.shape) if isinstance(expected, Tensor) else type(expected).__name__
        raise ValueError(f"expected: expected a 2-D [rows, cells] table, got {shape}")
    _check_non_negative("expected", expected)
    if expected.numel() == 0:
        return torch.zeros(expected.shape, dtype=torch.int64, device=expected.device)
    x = expected.to(torch.float64)
    base = torch.floor(x)
    frac = x - base
    frac_sum = frac.sum(1)
    has_frac = frac > 0
    n_frac = has_frac.sum(1).to(torch.float64)
    up = torch.round(frac_sum).minimum(n_frac)  # cells to round up per row
    tiny = torch.finfo(torch.float64).tiny
    # Rescale fractional parts to inclusion probabilities that sum to `up`, staying in [0, 1].
    grow = (n_frac - up) / (n_frac - frac_sum).clamp(min=tiny)
    prob_more = torch.where(has_frac, 1 - (1 - frac) * grow[:, None], 0.0)
    prob_less = frac * (up / frac_sum.clamp(min=tiny))[:, None]
    prob = torch.where((up > frac_sum)[:, None], prob_more, prob_less).clamp_(0, 1)

    rows, cells = x.shape
    device = x.device
    perm = torch.argsort(torch.rand(rows, cells, generator=generator, device=device, dtype=torch.float64), 1)
    edges = prob.gather(1, perm).cumsum(1)
    edges *= (up / edges[:, -1].clamp(min=tiny))[:, None]
    edges = torch.minimum(edges, up[:, None])
    edges[:, -1] = up  # so the increments telescope to exactly `up`
    u = torch.rand(rows, 1, generator=generator, device=device, dtype=torch.float64)
    hits = torch.ceil(edges - u)
    step = torch.diff(hits, dim=1, prepend=torch.zeros(rows, 1, dtype=torch.float64, device=device))
    rounded_up = torch.zeros_like(x).scatter_(1, perm, step)
    return (base + rounded_up).to(torch.int64)


def expand(counts: Tensor) -> tuple[Tensor, Tensor]:
    """One entry per agent of an ``int64[rows, cells]`` count table.

    Returns:
        (row ``int64[agents]``, cell ``int64[agents]``), sorted by row then cell; ``agents = counts.sum()``.
    """
    if not isinstance(counts, Tensor) or counts.dim() != 2:
        shape = tuple(counts.shape) if isinstance(counts, Tensor) else type(counts).__name__
        raise ValueError(f"counts: expected a 2-D [rows, cells] table, got {shape}")
    if counts.is_floating_point() or counts.dtype == torch.bool or counts.is_complex():
        raise ValueError(f"counts: expected an integer tensor, got {counts.dtype}")
    _check_non_negative("counts", counts)
    rows, cells = counts.shape
    flat = torch.arange(rows * cells, device=counts.device)
    index = torch.repeat_interleave(flat, counts.reshape(-1).long())
    return index // cells, index % cells


# ----------------------------------------------------------------------------- households
def household_sizes(n: int, size_probs: Tensor, generator: torch.Generator) -> Tensor:
    """``int64[households]`` sizes ``1..K`` drawn with ``P(size = k) = size_probs[k-1]``, summing to ``n``.

    Sizes are drawn until they cover ``n`` people; the last household is cut to fit. ``size_probs`` need not
    be normalised. On the device of ``size_probs``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {n!r}")
    cdf = _size_cdf(size_probs)
    device = cdf.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    mean, _ = _cdf_moments(cdf)
    chunks: list[Tensor] = []
    covered = 0
    while covered < n:
        chunk = _draw_sizes(int((n - covered) / mean * 1.05) + 16, cdf, generator)
        chunks.append(chunk)
        covered += int(chunk.sum())
    sizes = torch.cat(chunks)
    ends = sizes.cumsum(0)
    last = int(torch.searchsorted(ends, torch.tensor(n, device=device)))  # first household reaching n
    sizes = sizes[: last + 1].clone()
    sizes[last] -= int(ends[last]) - n
    return sizes


def assign_households(
    age: Tensor,
    block: Tensor,
    size_probs: Tensor,
    generator: torch.Generator,
    *,
    adult_age: int = 18,
) -> Tensor:
    """Group the agents of every block (small area) into households, each with at least one adult.

    Algorithm, per block with ``N`` agents, ``A`` adults (``age >= adult_age``) and ``C`` children,
    vectorised over all blocks at once (two sorts, of the agents and of the places; no loop):

    1. sizes: draw household sizes from ``size_probs`` until they cover ``N``, cutting the last one to fit
       (as :func:`household_sizes`). A household needs an adult, so at most ``A`` are drawn; if they do not
       cover ``N``, the people left over are spread evenly over the households (they grow: a block of one
       adult and 30 children is one household of 31). Otherwise sizes follow ``size_probs``, whatever the
       age mix.
    2. heads: one adult per household, drawn at random among the block's adults, those aged
       :data:`HEAD_AGES` (25–64) first.
    3. members: the other places of the block's households are ranked for children: third and later places
       of households whose head is younger than :data:`PARENT_AGE_LIMIT` (60) first, then their second
       places (the partner's), then third and later places, then second places, of households with older
       heads; random order within each rank. The children take the ``C`` best places (a child never
       lives alone: every household has its adult head), the other adults the rest, in random order. With
       a usual age mix, children so live with their head and a second adult, and older people alone or in
       couples.

    A block with children but no adult cannot be split this way and raises ``ValueError``.

    Args:
        age: ``uint8[agents]`` age in years.
        block: ``int64[agents]`` small area; households never cross blocks.
        size_probs: ``float64[K]`` probability of household sizes ``1..K`` (need not be normalised).
        generator: random source, on the device of ``age``.
        adult_age: youngest adult age.

    Returns:
        ``int64[agents]`` household in ``[0, households)``: ids are contiguous within a block, and the
        households of block values in increasing order follow one another.
    """
    _check_vector("age", age, integer=True)
    n = age.numel()
    _check_vector("block", block, n, integer=True)
    if isinstance(adult_age, bool) or not isinstance(adult_age, int):
        raise ValueError(f"adult_age: expected an integer, got {adult_age!r}")
    cdf = _size_cdf(size_probs).to(age.device)
    device = age.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    index, labels = _dense(block)
    n_blocks = labels.numel()
    if n_blocks >= _MAX_GROUPS:
        raise ValueError(f"block: at most {_MAX_GROUPS} distinct blocks, got {n_blocks}")
    age_ = age.to(torch.int32)
    adult = age_ >= adult_age
    people = torch.bincount(index, minlength=n_blocks)
    adults = torch.bincount(index[adult], minlength=n_blocks)
    orphans = (people > 0) & (adults == 0)
    if bool(orphans.any()):
        b = int(orphans.nonzero()[0])
        raise ValueError(
            f"age: block {int(labels[b])} has {int(people[b])} children and no adult (age >= {adult_age}); "
            "every household needs one"
        )

    # 1. Household sizes, at most one household per adult.
    mean, var = _cdf_moments(cdf)
    draws = torch.minimum(_enough_draws(people, mean, var), adults)
    hh_block, hh_size, _ = _cut(_draw_sizes(int(draws.sum()), cdf, generator), draws, people)
    n_households = hh_block.numel()
    households = torch.bincount(hh_block, minlength=n_blocks)
    hh_offset = _exclusive_cumsum(households)
    hh_local = torch.arange(n_households, device=device) - hh_offset[hh_block]
    excess = people - torch.zeros_like(people).index_add_(0, hh_block, hh_size)
    per = households.clamp(min=1)
    hh_size += (excess // per)[hh_block] + (hh_local < (excess % per)[hh_block]).long()

    # 2. Heads: agents sorted by (block, preferred adult / other adult / child, random); the first
    # `households[b]` agents of block b are its heads, then come its other adults, then its children.
    preferred = (age_ >= HEAD_AGES[0]) & (age_ < HEAD_AGES[1])
    tier = torch.where(adult, torch.where(preferred, 0, 1), 2)
    _, perm = _sorted_by(index, tier, generator)
    del tier, preferred, adult
    start = _exclusive_cumsum(people)
    head = perm[start[hh_block] + hh_local]
    young_head = age_[head] < PARENT_AGE_LIMIT  # heads are adults
    household = torch.empty(n, dtype=torch.int64, device=device)
    household[head] = torch.arange(n_households, device=device)
    del head, hh_local

    # 3. Places, ranked the other way round (adults' places first) so that, block by block, they line up
    # with the sorted non-heads: other adults, then children.
    places = hh_size - 1
    place_hh = torch.repeat_interleave(torch.arange(n_households, device=device), places)
    partner = torch.zeros(place_hh.numel(), dtype=torch.long, device=device)
    partner[_exclusive_cumsum(places)[places > 0]] = 1
    place_tier = (1 - partner) + 2 * young_head.long()[place_hh]
    del partner
    place_block, place_order = _sorted_by(hh_block[place_hh], place_tier, generator)
    del place_tier
    # Place i (in that order) of block b is filled by sorted agent i + (heads of blocks up to b).
    position = torch.arange(place_hh.numel(), device=device) + (hh_offset + households)[place_block]
    household[perm[position]] = place_hh[place_order]
    return household


# ----------------------------------------------------------------------------- groups and work
def assign_groups(
    eligible: Tensor,
    block: Tensor,
    size: int | Tensor,
    generator: torch.Generator,
    *,
    order: Tensor | None = None,
) -> Tensor:
    """Cut the eligible agents of every block into consecutive groups (classes, community places, workplaces).

    Within each block (an area, a borough...), eligible agents are put in random order, or in increasing
    ``order`` (ties at random) if given, e.g. a spatial key so that groups are neighbourhoods, and cut into
    consecutive groups. A block's last group may be smaller; if it is smaller than half its intended size,
    it is merged into the previous group of the same block.

    Args:
        eligible: ``bool[agents]``.
        block: ``int64[agents]``; groups never cross blocks.
        size: group size, an ``int``; or ``int64[k]`` a pool of sizes (e.g. :func:`workplace_sizes`) from
            which each group's size is drawn uniformly, with replacement.
        generator: random source, on the device of ``eligible``.
        order: optional ``[agents]`` real sort key within blocks.

    Returns:
        ``int32[agents]`` group in ``[0, groups)``, ``-1`` for agents not eligible; ids are contiguous within
        a block, blocks in increasing order.
    """
    _check_vector("eligible", eligible)
    if eligible.dtype != torch.bool:
        raise ValueError(f"eligible: expected a bool tensor, got {eligible.dtype}")
    n = eligible.numel()
    _check_vector("block", block, n, integer=True)
    if isinstance(size, Tensor):
        _check_vector("size", size, integer=True)
        if size.numel() == 0 or bool((size < 1).any()):
            raise ValueError("size: expected a non-empty pool of sizes >= 1")
    elif isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size: expected an integer >= 1 or a tensor of sizes, got {size!r}")
    if order is not None:
        _check_vector("order", order, n)
        if order.is_complex() or order.dtype == torch.bool:
            raise ValueError(f"order: expected a real tensor, got {order.dtype}")
    device = eligible.device
    group = torch.full((n,), -1, dtype=torch.int32, device=device)
    members = eligible.nonzero().squeeze(1)
    m = members.numel()
    if m == 0:
        return group
    index, labels = _dense(block[members])
    n_blocks = labels.numel()
    if n_blocks >= _MAX_GROUPS:
        raise ValueError(f"block: at most {_MAX_GROUPS} distinct blocks, got {n_blocks}")
    if order is None:
        _, perm = _sorted_by(index, None, generator)
    else:
        perm = torch.randperm(m, generator=generator, device=device)
        perm = perm[torch.sort(order[members][perm], stable=True).indices]
        perm = perm[torch.sort(index[perm], stable=True).indices]
    count = torch.bincount(index, minlength=n_blocks)
    del index
    blocks = torch.arange(n_blocks, device=device)
    if isinstance(size, int):
        n_groups = (count + size - 1) // size
        n_groups -= ((n_groups > 1) & (2 * (count - (n_groups - 1) * size) < size)).long()
        group_size = torch.full((int(n_groups.sum()),), size, dtype=torch.int64, device=device)
        last = n_groups.cumsum(0) - 1
        has = n_groups > 0
        group_size[last[has]] = (count - (n_groups - 1) * size)[has]
    else:
        pool = size.to(device=device, dtype=torch.int64)
        draws = _enough_draws(count, float(pool.double().mean()), float(pool.double().var(unbiased=False)))
        picks = torch.randint(0, pool.numel(), (int(draws.sum()),), generator=generator, device=device)
        group_block, group_size, drawn = _cut(pool[picks], draws, count)
        n_groups = torch.bincount(group_block, minlength=n_blocks)
        local = torch.arange(group_block.numel(), device=device) - _exclusive_cumsum(n_groups)[group_block]
        # a cut (hence last) group under half its drawn size joins the previous group of its block
        merge = ((group_size < drawn) & (local > 0) & (2 * group_size < drawn)).nonzero().squeeze(1)
        group_size[merge - 1] += group_size[merge]
        n_groups -= torch.bincount(group_block[merge], minlength=n_blocks)
        keep = torch.ones_like(group_size, dtype=torch.bool)
        keep[merge] = False
        group_size = group_size[keep]
        # a block whose draws fell short (a 6-sd miss) gets the rest in its last group
        short = count - torch.zeros_like(count).index_add_(0, blocks.repeat_interleave(n_groups), group_size)
        last = n_groups.cumsum(0) - 1
        has = short > 0
        group_size[last[has]] += short[has]
    n_all = group_size.numel()
    sorted_group = torch.repeat_interleave(torch.arange(n_all, dtype=torch.int32, device=device), group_size)
    group[members[perm]] = sorted_group
    return group


def commute(
    home_area: Tensor,
    area_xy: Tensor,
    attraction: Tensor,
    scale_m: float,
    generator: torch.Generator,
) -> Tensor:
    """Work area of every worker by a gravity model.

    ``P(work = j | home = i) ∝ attraction[j] · exp(-d_ij / scale_m)`` with ``d_ij`` the Euclidean distance
    between area centroids. Sampled by inverse CDF, fully vectorised: the per-home-area CDFs are laid end to
    end with row ``i`` shifted by ``i``, so one ``searchsorted`` of ``home + u`` (one uniform per worker)
    finds every worker's area. Probabilities below about ``areas × 1e-16`` are lost to rounding. Memory is
    a few ``float64[areas, areas]`` matrices (40 MB each for 2,260 areas).

    Args:
        home_area: ``int64[workers]`` in ``[0, areas)``.
        area_xy: ``float64[areas, 2]`` centroids in metres (any projected coordinates).
        attraction: ``float64[areas]`` non-negative pull of each area (e.g. jobs); a positive sum.
        scale_m: distance decay in metres, positive.
        generator: random source, on the device of ``home_area``.

    Returns:
        ``int64[workers]`` work area.
    """
    if not isinstance(area_xy, Tensor) or area_xy.dim() != 2 or area_xy.shape[1] != 2:
        shape = tuple(area_xy.shape) if isinstance(area_xy, Tensor) else type(area_xy).__name__
        raise ValueError(f"area_xy: expected an [areas, 2] tensor, got {shape}")
    if not bool(torch.isfinite(area_xy).all()):
        raise ValueError("area_xy: expected finite coordinates")
    n_areas = area_xy.shape[0]
    _check_vector("attraction", attraction, n_areas)
    _check_non_negative("attraction", attraction)
    if n_areas == 0 or not bool(attraction.sum() > 0):
        raise ValueError("attraction: expected a positive sum")
    _check_vector("home_area", home_area, integer=True)
    if home_area.numel() and (int(home_area.min()) < 0 or int(home_area.max()) >= n_areas):
        raise ValueError(f"home_area: expected values in [0, {n_areas})")
    if not (isinstance(scale_m, int | float) and math.isfinite(scale_m) and scale_m > 0):
        raise ValueError(f"scale_m: expected a positive distance, got {scale_m!r}")
    device = home_area.device
    f64 = torch.float64
    xy = area_xy.to(device=device, dtype=f64)
    log_weight = torch.cdist(xy, xy, compute_mode="donot_use_mm_for_euclid_dist").div_(-float(scale_m))
    log_weight += attraction.to(device=device, dtype=f64).log()[None, :]
    log_weight -= log_weight.max(1, keepdim=True).values  # the largest weight of a row is 1
    weight = log_weight.exp_()
    cdf = weight.cumsum(1)
    cdf /= cdf[:, -1:].clone()
    cdf[:, -1] = 1.0
    # Last area with a positive probability of each row: where a draw rounding up to the next row goes.
    last_positive = n_areas - 1 - torch.argmax((weight > 0).flip(1).to(torch.uint8), dim=1)
    del weight
    rows = torch.arange(n_areas, device=device, dtype=f64)
    flat = (cdf + rows[:, None]).reshape(-1)
    del cdf
    home = home_area.long()
    u = torch.rand(home.numel(), generator=generator, device=device, dtype=f64)
    work = torch.searchsorted(flat, home.to(f64) + u, right=True)
    work -= home * n_areas
    return torch.where(work >= n_areas, last_positive[home], work)


def workplace_sizes(
    n: int, mean: float, generator: torch.Generator, *, sigma: float = WORKPLACE_SIGMA
) -> Tensor:
    """``int64[workplaces]`` heavy-tailed workplace sizes summing to ``n``, with mean about ``mean``.

    Assumption: sizes are ``1 +`` a lognormal share of the remaining workers. There are
    ``round(n / mean)`` workplaces; each gets one worker, and the other ``n - workplaces`` are split in
    proportion to lognormal weights (log-space standard deviation ``sigma``), rounded by :func:`integerise`.
    The sum and the mean are exact (up to the rounding of the number of workplaces), the shape
    lognormal. The default ``sigma`` = 1.67 makes the mean about 4 times the median, as for US
    establishments (mean about 16 employees, median about 4): most workplaces are small, while most
    workers are in large ones (half of them in workplaces of more than about 16 × the median).

    Args:
        n: workers, non-negative.
        mean: mean size, at least 1.
        generator: random source; the result is on its device.
        sigma: log-space standard deviation of the weights, non-negative.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative integer, got {n!r}")
    if not (isinstance(mean, int | float) and math.isfinite(mean) and mean >= 1):
        raise ValueError(f"mean: expected a finite mean size >= 1, got {mean!r}")
    if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma: expected a finite non-negative value, got {sigma!r}")
    device = generator.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    count = min(n, max(1, round(n / mean)))
    weight = torch.empty(count, dtype=torch.float64, device=device).log_normal_(
        0.0, sigma, generator=generator
    )
    extra = weight * ((n - count) / weight.sum())
    return 1 + integerise(extra[None, :], generator)[0]
