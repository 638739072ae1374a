"""The roll-out layer (layers/rollout.py): the day's supply exactly, willingness, the allocation's shares."""

from __future__ import annotations

import torch

from populace import Model, Simulation
from populace.layers.rollout import NEVER, Rollout, water_fill, whole_doses

N = 20_000
CELLS = 4


def _rollout(**kwargs: object) -> Rollout:
    g = torch.Generator().manual_seed(0)
    cell = torch.randint(0, CELLS, (N,), generator=g)
    age = torch.randint(0, 90, (N,), generator=g)
    willing = (torch.rand(N, generator=g) < 0.7) & (age >= 12)
    args: dict[str, object] = {
        "first_day": -10,
        "shares": torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]),
        "period": 20,
        "interval": 5,
    }
    args.update(kwargs)
    supply = args.pop("supply", torch.linspace(50.3, 1200.7, 60))
    return Rollout(cell, CELLS, age.float(), willing, supply, **args)  # type: ignore[arg-type]


def _run(layer: Rollout, days: int) -> tuple[Simulation, dict[str, torch.Tensor]]:
    sim = Simulation(Model([layer]), seed=3)
    return sim, sim.run(days).series


def test_the_doses_given_each_day_are_exactly_the_days_supply_until_the_willing_run_out() -> None:
    layer = _rollout()
    _, series = _run(layer, 50)
    given = series["first_doses"] + series["second_doses"]
    supply = layer.daily_supply[10:60]
    willing = int(layer.willing.sum())
    assert int(given.sum()) <= int(supply.sum())
    for day in range(50):
        if int(series["vaccinated"][day]) < willing:  # someone still waits: the whole supply, never more
            assert int(given[day]) == int(supply[day]), f"day {day}: {int(given[day])} != {int(supply[day])}"
        assert int(given[day]) <= int(supply[day])
    # the supply series is whole doses that add up to the real-valued series
    total = float(layer.supply[:60].sum())
    assert abs(int(layer.daily_supply[:60].sum()) - total) < 1.0
    # the run was long enough for everyone willing, and then doses went unused
    assert int(series["vaccinated"][-1]) == willing
    assert int(given[-1]) < int(supply[-1])


def test_only_willing_agents_are_dosed_and_second_doses_wait_for_the_interval() -> None:
    layer = _rollout(interval=7)
    sim, _ = _run(layer, 30)
    state = sim.states[0]
    dosed = state.queue[(state.dose_day[0] != NEVER)].long()
    assert bool(layer.willing[dosed].all())
    assert not bool(state.level[~layer.willing].any())
    both = (state.dose_day[0] != NEVER) & (state.dose_day[1] != NEVER)
    gap = state.dose_day[1, both].int() - state.dose_day[0, both].int()
    assert int(gap.min()) >= 7
    # within a cell, first doses follow priority (age, oldest first)
    for c in range(CELLS):
        segment = state.queue[int(state.starts[c]) : int(state.starts[c + 1])].long()
        ages = layer.priority[segment]
        assert bool((ages[:-1] >= ages[1:]).all())


def test_first_doses_follow_the_shares_when_no_cell_is_full() -> None:
    supply = torch.full((60,), 200.0)
    layer = _rollout(supply=supply, interval=1000, first_day=0)  # first doses only
    sim, _ = _run(layer, 40)
    state = sim.states[0]
    day = state.dose_day[0].int()
    cell = layer.cell[state.queue.long()]
    for period, rows in ((0, (0, 20)), (1, (20, 40))):
        in_period = (day >= rows[0]) & (day < rows[1])
        counts = torch.bincount(cell[in_period], minlength=CELLS).double()
        expected = layer.shares[period].double() / layer.shares[period].sum() * 200 * 20
        assert torch.allclose(counts, expected, atol=20), (period, counts, expected)  # ±1 dose a day


def test_water_filling_caps_each_cell_by_its_room_and_passes_the_rest_on() -> None:
    shares = torch.tensor([0.7, 0.2, 0.1])
    room = torch.tensor([10.0, 1000.0, 1000.0])
    a = water_fill(torch.tensor(100.0), shares, room)
    assert torch.allclose(a, torch.tensor([10.0, 60.0, 30.0]))
    n = whole_doses(torch.tensor([3.4, 3.3, 3.3]), 10, torch.tensor([5, 5, 5]))
    assert n.tolist() == [4, 3, 3]
    n = whole_doses(torch.tensor([8.0, 2.0]), 10, torch.tensor([3, 100]))
    assert int(n.sum()) == 10
    assert int(n[0]) <= 3
    assert int(whole_doses(torch.tensor([5.0, 5.0]), 10, torch.tensor([2, 3])).sum()) == 5
