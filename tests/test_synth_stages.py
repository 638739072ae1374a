"""Synthetic-population building blocks: IPF, integerisation, expansion, households, groups, commuting and
workplace sizes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from populace.synth.stages import (
    HEAD_AGES,
    PARENT_AGE_LIMIT,
    assign_groups,
    assign_households,
    commute,
    expand,
    household_sizes,
    integerise,
    ipf,
    workplace_sizes,
)

US_SIZES = torch.tensor([0.28, 0.34, 0.15, 0.13, 0.06, 0.02, 0.02], dtype=torch.float64)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def realistic_ages(n: int, generator: torch.Generator) -> Tensor:
    """``uint8[n]`` ages 0–89, a little over a fifth of them children."""
    weight = torch.cat([torch.full((65,), 1.0), torch.linspace(1.0, 0.2, 25)]).double()
    return torch.multinomial(weight, n, replacement=True, generator=generator).to(torch.uint8)


def group_sizes(group: Tensor) -> Tensor:
    return torch.bincount(group[group >= 0].long())


# ----------------------------------------------------------------------------- ipf
def test_ipf_matches_row_and_group_margins():
    g = gen(1)
    rows, cells, groups = 40, 12, 3
    seed = torch.rand(rows, cells, generator=g, dtype=torch.float64) + 0.05
    row_group = torch.arange(rows) % groups
    row_targets = torch.randint(100, 1000, (rows,), generator=g).double()
    row_targets[5] = 0.0
    group_targets = torch.rand(groups, cells, generator=g, dtype=torch.float64) * 500
    group_targets[1, 3] = 0.0
    x = ipf(seed, row_targets, group_targets, row_group)
    assert x.dtype == torch.float64
    assert x.shape == (rows, cells)
    torch.testing.assert_close(x.sum(1), row_targets, atol=1e-6, rtol=0)
    # the group tables disagree with the row totals: they are rescaled to the rows' total
    rows_total = torch.zeros(groups, dtype=torch.float64).index_add_(0, row_group, row_targets)
    expected = group_targets * (rows_total / group_targets.sum(1))[:, None]
    col = torch.zeros(groups, cells, dtype=torch.float64).index_add_(0, row_group, x)
    # tol is relative to the largest target
    torch.testing.assert_close(col, expected, atol=1e-9 * float(expected.max()), rtol=0)
    assert bool((x[5] == 0).all())
    assert bool((x[row_group == 1, 3] == 0).all())
    tight = ipf(seed, row_targets, group_targets, row_group, tol=1e-12)
    torch.testing.assert_close(tight.sum(1), row_targets, atol=1e-6, rtol=0)
    col = torch.zeros(groups, cells, dtype=torch.float64).index_add_(0, row_group, tight)
    torch.testing.assert_close(col, expected, atol=1e-6, rtol=0)


def test_ipf_nested_rows_give_the_analytic_solution():
    g = gen(2)
    rows, cells, groups = 30, 20, 5
    row_group = torch.randint(0, groups, (rows,), generator=g)
    row_group[:groups] = torch.arange(groups)
    pop = torch.randint(50, 5000, (rows,), generator=g).double()
    share = torch.rand(groups, cells, generator=g, dtype=torch.float64)
    share /= share.sum(1, keepdim=True)
    rows_total = torch.zeros(groups, dtype=torch.float64).index_add_(0, row_group, pop)
    # a product-form seed (rows × cells) carries no interaction, so IPF returns pop[row] × share[group, cell]
    seed = torch.rand(rows, 1, generator=g, dtype=torch.float64) * torch.rand(1, cells, generator=g).double()
    x = ipf(seed + 0.0, pop, share * rows_total[:, None], row_group)
    torch.testing.assert_close(x, pop[:, None] * share[row_group], atol=1e-6, rtol=1e-9)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-torch.ones(2, 3), torch.ones(2), torch.ones(1, 3), torch.zeros(2, dtype=torch.long)), "seed"),
        (
            (torch.ones(2, 3), torch.ones(3), torch.ones(1, 3), torch.zeros(2, dtype=torch.long)),
            "row_targets",
        ),
        (
            (torch.ones(2, 3), torch.ones(2), torch.ones(1, 4), torch.zeros(2, dtype=torch.long)),
            "group_targets",
        ),
        (
            (torch.ones(2, 3), torch.ones(2), -torch.ones(1, 3), torch.zeros(2, dtype=torch.long)),
            "group_targets",
        ),
        ((torch.ones(2, 3), torch.ones(2), torch.ones(1, 3), torch.ones(2, dtype=torch.long)), "row_group"),
        ((torch.ones(2, 3), torch.ones(2), torch.ones(1, 3), torch.zeros(2)), "row_group"),
        ((torch.ones(3), torch.ones(2), torch.ones(1, 3), torch.zeros(2, dtype=torch.long)), "seed"),
        (
            (torch.ones(2, 3), torch.ones(2), torch.zeros(1, 3), torch.zeros(2, dtype=torch.long)),
            "group_targets",
        ),
    ],
)
def test_ipf_rejects_bad_input(args: tuple[Tensor, ...], match: str):
    with pytest.raises(ValueError, match=match):
        ipf(*args)


def test_ipf_reports_unreachable_and_inconsistent_targets():
    one_group = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="seed: row 1"):  # row 1 can only use cell 1, whose target is zero
        ipf(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), torch.ones(2), torch.tensor([[2.0, 0.0]]), one_group)
    with pytest.raises(ValueError, match="seed: group 0 cell 1"):
        ipf(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.ones(2), torch.tensor([[1.0, 1.0]]), one_group)
    # row 1 needs 3 in cell 0, whose total is 2: no fit exists
    with pytest.raises(ValueError, match="max_iter"):
        ipf(
            torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
            torch.tensor([1.0, 3.0]),
            torch.tensor([[2.0, 2.0]]),
            one_group,
        )


# ----------------------------------------------------------------------------- integerise and expand
def test_integerise_keeps_row_totals_and_rounds_each_cell():
    g = gen(3)
    expected = torch.empty(60, 45, dtype=torch.float64).exponential_(generator=g) * 3
    expected[expected < 1.0] *= 0.1  # many small cells
    expected[4] = torch.arange(45, dtype=torch.float64)  # whole numbers stay as they are
    expected[:, 7] = 0.0
    expected[3] = 0.0
    counts = integerise(expected, g)
    assert counts.dtype == torch.int64
    assert counts.shape == expected.shape
    assert torch.equal(counts.sum(1), torch.round(expected.sum(1)).long())
    assert bool(((counts - expected).abs() < 1).all())
    assert bool((counts[:, 7] == 0).all())
    assert bool((counts[3] == 0).all())
    assert torch.equal(counts[4], expected[4].long())
    assert torch.equal(integerise(expected, gen(9)), integerise(expected, gen(9)))


def test_integerise_is_unbiased_and_keeps_rare_cells():
    row = torch.tensor([0.6, 0.6, 0.3, 0.3, 0.2, 5.0], dtype=torch.float64)  # sums to 7
    counts = integerise(row.expand(4000, -1).contiguous(), gen(4))
    assert bool((counts.sum(1) == 7).all())
    # largest remainders would never round the 0.2 up; here every cell is right on average
    torch.testing.assert_close(counts.double().mean(0), row, atol=0.03, rtol=0)
    # a row whose sum is not whole: 2.4 rounds to 2, 2.6 to 3
    odd = torch.tensor([[0.8, 0.8, 0.8], [0.2, 1.2, 1.2]], dtype=torch.float64).repeat(100, 1)
    assert torch.equal(integerise(odd, gen(5)).sum(1), torch.tensor([2, 3]).repeat(100))


def test_integerise_rejects_bad_input():
    with pytest.raises(ValueError, match="expected: expected non-negative"):
        integerise(torch.tensor([[1.0, -0.5]]), gen())
    with pytest.raises(ValueError, match="expected: expected finite"):
        integerise(torch.tensor([[1.0, float("nan")]]), gen())
    with pytest.raises(ValueError, match="2-D"):
        integerise(torch.ones(3), gen())


def test_expand_round_trips_counts():
    counts = torch.randint(0, 5, (7, 11), generator=gen(6))
    row, cell = expand(counts)
    assert row.dtype == cell.dtype == torch.int64
    assert row.numel() == int(counts.sum())
    flat = row * 11 + cell
    assert bool((flat[1:] >= flat[:-1]).all())  # sorted by row, then cell
    assert torch.equal(torch.bincount(flat, minlength=77).reshape(7, 11), counts)
    assert expand(torch.zeros(0, 3, dtype=torch.long))[0].numel() == 0
    with pytest.raises(ValueError, match="counts"):
        expand(torch.tensor([[1, -1]]))
    with pytest.raises(ValueError, match="counts"):
        expand(torch.ones(2, 2))


# ----------------------------------------------------------------------------- households
def test_household_sizes_sum_and_follow_probabilities():
    sizes = household_sizes(200_000, US_SIZES, gen(7))
    assert sizes.dtype == torch.int64
    assert int(sizes.sum()) == 200_000
    assert int(sizes.min()) >= 1
    assert int(sizes.max()) <= len(US_SIZES)
    share = torch.bincount(sizes, minlength=8)[1:].double() / sizes.numel()
    torch.testing.assert_close(share, US_SIZES, atol=0.01, rtol=0)
    assert household_sizes(0, US_SIZES, gen()).numel() == 0
    assert torch.equal(household_sizes(10, torch.tensor([0.0, 1.0]), gen()), torch.full((5,), 2))
    assert torch.equal(household_sizes(999, US_SIZES, gen(8)), household_sizes(999, US_SIZES, gen(8)))
    with pytest.raises(ValueError, match="size_probs"):
        household_sizes(10, torch.tensor([0.5, -0.1]), gen())
    with pytest.raises(ValueError, match="size_probs"):
        household_sizes(10, torch.zeros(3), gen())
    with pytest.raises(ValueError, match="n:"):
        household_sizes(-1, US_SIZES, gen())


def check_households(household: Tensor, age: Tensor, block: Tensor, adult_age: int = 18) -> Tensor:
    """Invariants of :func:`assign_households`; returns the household sizes."""
    assert household.dtype == torch.int64
    assert household.shape == age.shape
    n_households = int(household.max()) + 1
    size = torch.bincount(household, minlength=n_households)
    assert bool((size > 0).all())  # ids 0..H-1, none empty
    adults = torch.bincount(household, weights=(age >= adult_age).double(), minlength=n_households)
    assert bool((adults >= 1).all()), "a household without an adult"
    # one block per household, and household ids follow block order
    low = torch.full((n_households,), 1 << 60).scatter_reduce(0, household, block, "amin")
    high = torch.full((n_households,), -1).scatter_reduce(0, household, block, "amax")
    assert torch.equal(low, high)
    assert bool((low[1:] >= low[:-1]).all())
    return size


def test_households_always_have_an_adult_even_in_adversarial_blocks():
    g = gen(10)
    ages = [
        torch.tensor([40] + [5] * 30),  # block 0: one adult, thirty children -> one household of 31
        torch.full((50,), 70),  # block 1: adults only
        torch.tensor([18, 17, 17, 17, 17]),  # block 2: the youngest adult
        torch.tensor([30]),  # block 3: one person
        realistic_ages(500, g),  # block 4
        torch.tensor([20, 21] + [3] * 20),  # block 5: two adults, twenty children
    ]
    age = torch.cat(ages).to(torch.uint8)
    block = torch.repeat_interleave(torch.arange(len(ages)) * 3, torch.tensor([len(a) for a in ages]))
    shuffle = torch.randperm(age.numel(), generator=g)  # agents need not be sorted by block
    age, block = age[shuffle], block[shuffle]
    household = assign_households(age, block, US_SIZES, gen(11))
    size = check_households(household, age, block)
    assert int(size[household[block == 0][0]]) == 31
    assert torch.unique(household[block == 15]).numel() == 2  # block labels are 3 × the list index
    assert torch.unique(household[block == 6]).numel() == 1
    assert torch.unique(household[block == 9]).numel() == 1
    assert 10 <= torch.unique(household[block == 3]).numel() <= 40  # adults only: about 50 / 2.4


def test_households_follow_size_probabilities_on_a_realistic_age_mix():
    g = gen(12)
    n = 60_000
    age = realistic_ages(n, g)
    block = torch.randint(0, 30, (n,), generator=g)
    household = assign_households(age, block, US_SIZES, gen(13))
    size = check_households(household, age, block)
    share = torch.bincount(size, minlength=8)[1:].double() / size.numel()
    torch.testing.assert_close(share, US_SIZES, atol=0.015, rtol=0)

    # heads prefer 25-64, so children mostly live with a head under 60: check through the household's
    # oldest adult under PARENT_AGE_LIMIT (any household with a child has one unless all adults are older)
    child = age < 18
    young_adult = (age >= 18) & (age < PARENT_AGE_LIMIT)
    has_young = torch.bincount(household, weights=young_adult.double(), minlength=size.numel()) > 0
    assert float(has_young[household[child]].double().mean()) > 0.95
    # ...and, the age mix allowing, with a second adult (children take third and later places first)
    kids = torch.bincount(household, weights=child.double(), minlength=size.numel())
    with_kids = kids > 0
    assert float(((size - kids)[with_kids] >= 2).double().mean()) > 0.9
    single = size[household] == 1
    assert not bool((single & child).any())
    # single-person households are adults, most of them of head age
    single_age = age[single].long()
    in_head_ages = (single_age >= HEAD_AGES[0]) & (single_age < HEAD_AGES[1])
    assert float(in_head_ages.double().mean()) > 0.7


def test_households_are_deterministic_by_seed():
    g = gen(14)
    age = realistic_ages(5000, g)
    block = torch.randint(0, 4, (5000,), generator=g)
    first = assign_households(age, block, US_SIZES, gen(15))
    assert torch.equal(first, assign_households(age, block, US_SIZES, gen(15)))
    assert not torch.equal(first, assign_households(age, block, US_SIZES, gen(16)))


def test_households_reject_blocks_without_adults_and_bad_input():
    age = torch.tensor([30, 4, 5], dtype=torch.uint8)
    with pytest.raises(ValueError, match="age: block 7 has 2 children and no adult"):
        assign_households(age, torch.tensor([1, 7, 7]), US_SIZES, gen())
    with pytest.raises(ValueError, match="block"):
        assign_households(age, torch.tensor([1, 7]), US_SIZES, gen())
    with pytest.raises(ValueError, match="size_probs"):
        assign_households(age, torch.zeros(3, dtype=torch.long), torch.tensor([-1.0]), gen())
    assert assign_households(age[:0], torch.zeros(0, dtype=torch.long), US_SIZES, gen()).numel() == 0


# ----------------------------------------------------------------------------- groups
def test_groups_have_the_size_and_stay_in_their_block():
    g = gen(20)
    n = 20_000
    block = torch.randint(0, 7, (n,), generator=g) * 1000 + 5  # sparse block labels
    eligible = torch.rand(n, generator=g) < 0.6
    group = assign_groups(eligible, block, 20, gen(21))
    assert group.dtype == torch.int32
    assert bool((group[~eligible] == -1).all())
    assert bool((group[eligible] >= 0).all())
    size = group_sizes(group)
    assert bool((size >= 10).all())
    assert bool((size < 30).all())
    assert int((size != 20).sum()) <= 7  # only a block's last group differs
    low = torch.full((size.numel(),), 1 << 40).scatter_reduce(
        0, group[eligible].long(), block[eligible], "amin"
    )
    high = torch.full((size.numel(),), -1).scatter_reduce(0, group[eligible].long(), block[eligible], "amax")
    assert torch.equal(low, high)
    assert bool((low[1:] >= low[:-1]).all())
    assert torch.equal(group, assign_groups(eligible, block, 20, gen(21)))


def test_groups_merge_a_small_last_group_and_follow_order():
    block = torch.repeat_interleave(torch.tensor([0, 1, 2]), torch.tensor([24, 25, 3]))
    everyone = torch.ones(52, dtype=torch.bool)
    size = group_sizes(assign_groups(everyone, block, 10, gen()))
    assert size.tolist() == [10, 14, 10, 10, 5, 3]  # 4 < 10/2 merges; 5 does not; a lone small block stays
    key = torch.randperm(52, generator=gen(22)).double()
    group = assign_groups(everyone, block, 10, gen(23), order=key)
    for b in range(3):
        inside = block == b
        by_key = torch.argsort(key[inside])
        assert bool((group[inside][by_key].diff() >= 0).all())  # groups are runs of the sort key


def test_groups_from_a_pool_of_sizes():
    g = gen(24)
    n = 30_000
    block = torch.randint(0, 5, (n,), generator=g)
    pool = torch.tensor([1, 3, 40, 100])
    group = assign_groups(torch.ones(n, dtype=torch.bool), block, pool, gen(25))
    size = group_sizes(group)
    assert int(size.sum()) == n
    interior = torch.isin(size, pool)
    assert int((~interior).sum()) <= 5  # only a block's last group can be cut or merged
    assert bool((size <= 150).all())
    share = torch.bincount(size[interior], minlength=101)[pool].double() / int(interior.sum())
    torch.testing.assert_close(share, torch.full((4,), 0.25, dtype=torch.float64), atol=0.05, rtol=0)
    low = torch.full((size.numel(),), 99).scatter_reduce(0, group.long(), block, "amin")
    high = torch.full((size.numel(),), -1).scatter_reduce(0, group.long(), block, "amax")
    assert torch.equal(low, high)


def test_groups_reject_bad_input():
    eligible = torch.ones(4, dtype=torch.bool)
    block = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="size"):
        assign_groups(eligible, block, 0, gen())
    with pytest.raises(ValueError, match="size"):
        assign_groups(eligible, block, torch.tensor([2, 0]), gen())
    with pytest.raises(ValueError, match="eligible"):
        assign_groups(torch.ones(4), block, 2, gen())
    with pytest.raises(ValueError, match="order"):
        assign_groups(eligible, block, 2, gen(), order=torch.ones(3))
    assert bool((assign_groups(~eligible, block, 2, gen()) == -1).all())


# ----------------------------------------------------------------------------- commuting and workplaces
def grid_areas(side: int) -> Tensor:
    """``float64[side², 2]`` centroids on a 1 km grid."""
    coords = torch.arange(side, dtype=torch.float64) * 1000
    return torch.cartesian_prod(coords, coords)


def test_commute_stays_home_at_a_tiny_scale():
    xy = grid_areas(6)
    attraction = torch.rand(36, generator=gen(30), dtype=torch.float64) + 0.1
    home = torch.randint(0, 36, (10_000,), generator=gen(31))
    work = commute(home, xy, attraction, 1.0, gen(32))
    assert work.dtype == torch.int64
    assert torch.equal(work, home)
    # an area with no jobs sends its workers to the nearest areas with jobs
    attraction[0] = 0.0
    work = commute(home, xy, attraction, 1.0, gen(32))
    assert set(work[home == 0].tolist()) == {1, 6}


def test_commute_follows_attraction_at_a_huge_scale():
    xy = grid_areas(5)
    attraction = torch.arange(25, dtype=torch.float64) % 5  # some areas attract nobody
    n = 200_000
    home = torch.randint(0, 25, (n,), generator=gen(33))
    work = commute(home, xy, attraction, 1e12, gen(34))
    observed = torch.bincount(work, minlength=25).double()
    expected = n * attraction / attraction.sum()
    assert bool((observed[attraction == 0] == 0).all())
    positive = attraction > 0
    chi2 = float(((observed - expected)[positive] ** 2 / expected[positive]).sum())
    assert chi2 < 60  # 19 degrees of freedom: P(chi2 > 60) < 1e-5
    assert torch.equal(work, commute(home, xy, attraction, 1e12, gen(34)))


def test_commute_decays_with_distance():
    xy = torch.tensor([[0.0, 0.0], [1000.0, 0.0], [5000.0, 0.0]], dtype=torch.float64)
    home = torch.zeros(100_000, dtype=torch.long)
    work = commute(home, xy, torch.ones(3, dtype=torch.float64), 1000.0, gen(35))
    weight = torch.exp(-torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64))
    share = torch.bincount(work, minlength=3).double() / home.numel()
    torch.testing.assert_close(share, weight / weight.sum(), atol=0.01, rtol=0)


def test_commute_rejects_bad_input():
    xy = grid_areas(2)
    ones = torch.ones(4, dtype=torch.float64)
    home = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="home_area"):
        commute(home + 4, xy, ones, 100.0, gen())
    with pytest.raises(ValueError, match="area_xy"):
        commute(home, xy[:, :1], ones, 100.0, gen())
    with pytest.raises(ValueError, match="attraction"):
        commute(home, xy, ones * 0, 100.0, gen())
    with pytest.raises(ValueError, match="attraction"):
        commute(home, xy, -ones, 100.0, gen())
    with pytest.raises(ValueError, match="scale_m"):
        commute(home, xy, ones, 0.0, gen())


def test_workplace_sizes_sum_mean_and_heavy_tail():
    n = 500_000
    sizes = workplace_sizes(n, 16.0, gen(40))
    assert sizes.dtype == torch.int64
    assert int(sizes.sum()) == n
    assert int(sizes.min()) >= 1
    assert abs(n / sizes.numel() - 16.0) < 0.3
    median = float(sizes.double().median())
    assert median < 8  # most workplaces are small...
    big = sizes >= 50
    assert float(sizes[big].sum()) / n > 0.4  # ...while many workers are in large ones
    small = workplace_sizes(1000, 16.0, gen(41))
    assert int(small.sum()) == 1000
    assert abs(1000 / small.numel() - 16.0) < 0.5
    assert torch.equal(small, workplace_sizes(1000, 16.0, gen(41)))
    assert workplace_sizes(0, 16.0, gen()).numel() == 0
    assert torch.equal(workplace_sizes(5, 1.0, gen()), torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="mean"):
        workplace_sizes(10, 0.5, gen())
