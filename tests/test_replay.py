"""The lean reverse mode (populace.replay): the gradients of the whole tape, with a fraction of its memory."""

from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import dataclass

import pytest
import torch

from populace import Checkpointed, Simulation, parse_sets
from populace.model import LayerState
from populace.replay import FastForward, default_every, replay_run, tensors, vjps
from populace.scenario import find_scenario
from populace.scenarios.nyc_covid import NycCovid
from populace.simulate import GradMode


def nyc_model(agents: int = 3_000):  # type: ignore[no-untyped-def]
    options = parse_sets(
        NycCovid,
        ["seeds_per_100k=300", "vaccination=on", "mask_adoption=0.5", "school_close=12", "estimator=sellke"],
    )
    return NycCovid().build(agents, options, seed=0, device="cpu")


def gradients(model, grad, days: int = 30) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    model.zero_grad()
    result = Simulation(model, seed=3, grad=grad).run(days)
    loss = result.series["new_deaths"].sum() + result.series["hospitalised"].max()
    loss = loss + result.series["new_infections"][10:20].sum() * 0.01
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_lean_gradients_equal_the_whole_tape_through_every_layer_of_nyc_covid() -> None:
    """Behaviour, testing, masks, closures, vaccination and the Sellke estimator's reverse pass, which
    carries what it learnt of later days from one replayed segment to the one before."""
    model = nyc_model()
    full = gradients(model, "full")
    lean = gradients(model, Checkpointed())
    assert set(full) == set(lean)
    assert len(full) > 5
    assert any(float(g.abs().sum()) > 0 for g in full.values())
    for name in full:
        scale = float(full[name].abs().max())
        torch.testing.assert_close(lean[name], full[name], rtol=1e-4, atol=1e-6 * scale)


def test_the_overlapped_backward_pass_gives_the_gradients_of_the_plain_one() -> None:
    """The backward pass runs on two threads of one intra-op thread each (replays and reverse passes, a
    segment replayed ahead), while the forward pass ran with two: the gradients are those of the plain
    backward, but for the rounding of the reverse pass's sums (split over one thread or two). A replay that
    drifted from the forward pass (an infection more or less) would change them by far more. 40,000
    agents: ops over more than 32,768 elements split over the threads (torch's grain size)."""
    model = nyc_model(40_000)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lean = [
            gradients(model, Checkpointed(every=4, overlap=o, ahead=int(o)), days=16) for o in (False, True)
        ]
    finally:
        torch.set_num_threads(threads)
    assert set(lean[0]) == set(lean[1])
    assert len(lean[0]) > 5
    for name in lean[0]:
        scale = float(lean[0][name].abs().max())
        torch.testing.assert_close(lean[1][name], lean[0][name], rtol=1e-5, atol=1e-7 * scale)


@dataclass
class _Level(LayerState):
    value: torch.Tensor


def _grow(rate: torch.Tensor, replayed: dict[int, int], fail_on: int | None = None):  # type: ignore[no-untyped-def]
    """A day that multiplies a level by ``rate``, counting the threads replaying at once."""
    forward_done = [False]
    busy = [0]

    def step(states: list[LayerState], day: int) -> list[LayerState]:
        (level,) = states
        assert isinstance(level, _Level)
        if forward_done[0]:
            busy[0] += 1
            replayed["most"] = max(replayed.get("most", 0), busy[0])
            if day == fail_on:
                busy[0] -= 1
                raise ValueError(f"a layer failed on day {day}")
            threading.Event().wait(0.01)  # let the other thread in
            busy[0] -= 1
        return [_Level(level.value * rate)]

    return step, forward_done


@pytest.mark.parametrize("fail_on", [None, 1, 17])
def test_two_threads_replay_and_a_failure_in_either_reaches_the_caller(fail_on: int | None) -> None:
    """The overlapped backward pass (2 threads, a segment replayed ahead): both threads replay segments and
    the gradient is the plain one; a replay that fails, on the helper thread or the caller's, raises its
    own error in the caller and leaves no thread behind."""
    rate = torch.tensor(1.01, requires_grad=True)
    replayed: dict[int, int] = {}
    step, forward_done = _grow(rate, replayed, fail_on)
    start = [_Level(torch.ones(3))]
    threads, before = torch.get_num_threads(), threading.active_count()
    torch.set_num_threads(2)
    try:
        _, series = replay_run(
            start, 0, 24, 2, ("total",), step, lambda s: {"total": s[0].value.sum()}, overlap=True, ahead=1
        )
        forward_done[0] = True
        if fail_on is None:
            series["total"].sum().backward()
        else:
            with pytest.raises(ValueError, match=f"a layer failed on day {fail_on}"):
                series["total"].sum().backward()
        assert torch.get_num_threads() == 2  # the backward pass's one thread each, undone
    finally:
        torch.set_num_threads(threads)
    assert threading.active_count() == before
    if fail_on is None:
        assert replayed["most"] == 2  # both threads replayed at once
        expected = sum(3 * (d + 1) * 1.01**d for d in range(24))  # d/dr Σ_days 3 r^(d+1)
        assert rate.grad is not None
        assert float(rate.grad) == pytest.approx(expected, rel=1e-5)


def test_the_forward_pass_keeps_the_last_segments_tape_for_the_first_backward_pass() -> None:
    """The first backward pass starts from the tape the forward pass kept of the last segment (one replay
    fewer); a second one replays every segment, with the same gradient."""
    rate = torch.tensor(1.01, requires_grad=True)
    days: list[int] = []

    def step(states: list[LayerState], day: int) -> list[LayerState]:
        (level,) = states
        assert isinstance(level, _Level)
        days.append(day)
        return [_Level(level.value * rate)]

    _, series = replay_run(
        [_Level(torch.ones(3))], 0, 10, 4, ("total",), step, lambda s: {"total": s[0].value.sum()}
    )
    total = series["total"].sum()
    days.clear()
    (first,) = torch.autograd.grad(total, rate, retain_graph=True)
    assert sorted(days) == list(range(8))  # days 8 and 9: the forward pass's tape
    days.clear()
    (second,) = torch.autograd.grad(total, rate)
    assert sorted(days) == list(range(10))
    expected = sum(3 * (d + 1) * 1.01**d for d in range(10))  # d/dr Σ_days 3 r^(d+1)
    assert float(first) == float(second) == pytest.approx(expected, rel=1e-5)


def test_a_run_continued_from_a_lean_run_chains_its_gradients() -> None:
    """The state a lean run ends with carries gradients into the next run of the same simulation."""
    model = nyc_model(4_000)
    grads = []
    for grad in ("full", Checkpointed(every=4)):
        model.zero_grad()
        sim = Simulation(model, seed=5, grad=grad)
        sim.run(15)
        later = sim.run(15)
        later.series["new_infections"].sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    beta = "covid.beta"
    assert float(grads[0][beta]) != 0
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)


def test_torch_autograd_grad_works_and_the_series_values_equal_the_fast_run() -> None:
    model = nyc_model()
    fast = Simulation(model, seed=2).run(30)
    lean = Simulation(model, seed=2, grad=Checkpointed()).run(30)
    for name, series in fast.series.items():
        assert torch.equal(lean.series[name].detach().to(series.dtype), series), name
    beta = model.covid.beta  # type: ignore[union-attr]
    (d,) = torch.autograd.grad(lean.series["new_infections"].sum(), [beta])
    assert float(d) > 0


def test_several_outcomes_in_one_replay_equal_one_whole_tape_pass_each() -> None:
    """vjps replays each segment once for several outcomes; the Sellke estimator keeps one record of later
    infections per pass, so each outcome's gradient equals its own backward pass through the whole tape, also
    with the passes run at once on two threads (overlap). The run continues an earlier lean run, so the
    passes also chain into that run's replay one by one."""
    model = nyc_model(4_000)
    params = [p for p in model.parameters() if p.requires_grad]

    def outcomes(grad: GradMode) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        sim = Simulation(model, seed=4, grad=grad)
        sim.run(8)
        result = sim.run(20)
        deaths, peak = result.series["new_deaths"], result.series["hospitalised"]
        return [deaths, peak], [deaths.sum(), peak.max()]

    series, values = outcomes("full")
    expected = [torch.autograd.grad(v, params, retain_graph=True, allow_unused=True) for v in values]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in expected[1])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # with overlap, the two passes run at once on two threads
    try:
        for grad in (Checkpointed(every=6), Checkpointed(every=6, overlap=True)):
            series, values = outcomes(grad)
            cotangents = [
                torch.autograd.grad(v, series, retain_graph=True, allow_unused=True) for v in values
            ]
            got = vjps(series, cotangents, params)
            for want, have in zip(expected, got, strict=True):
                for w, h in zip(want, have, strict=True):
                    if w is None:
                        assert h is None or float(h.abs().max()) == 0
                        continue
                    assert h is not None
                    torch.testing.assert_close(h, w, rtol=1e-4, atol=1e-6 * float(w.abs().max()))
    finally:
        torch.set_num_threads(threads)


def test_a_finished_run_and_its_snapshots_are_freed() -> None:
    """Nothing of a run outlives its results: a calibration runs one a step (a cycle through the
    simulation's state once kept every run's snapshots until the machine ran out of memory)."""
    model = nyc_model()
    runs = []
    for seed in range(2):
        result = Simulation(model, seed=seed, grad=Checkpointed()).run(12)
        runs.append(weakref.ref(result.series["new_infections"].grad_fn.run))  # type: ignore[union-attr]
        result.series["new_infections"].sum().backward()
        del result
    gc.collect()
    assert [r() for r in runs] == [None, None]


def test_snapshots_keep_a_tensor_once_while_it_does_not_change() -> None:
    model = nyc_model()
    result = Simulation(model, seed=1, grad=Checkpointed(every=5)).run(30)
    run = result.series["new_infections"].grad_fn.run  # type: ignore[union-attr]
    assert len(run.snapshots) == 6
    first, last = run.snapshots[0], run.snapshots[-1]
    shared = [p for p in first.fixed if p in last.fixed and first.fixed[p] is last.fixed[p]]
    changed = [p for p in first.fixed if p in last.fixed and first.fixed[p] is not last.fixed[p]]
    names = {p[1] for p in shared}
    assert "durations" in names  # the course drawn at the start is kept once
    assert "stage" in {p[1] for p in changed}
    assert "threshold" in {p[1] for p in changed}


def test_snapshots_pack_losslessly_into_fewer_bytes() -> None:
    """Days as int16, 0/1 floats (attendance, infection weights) as bool; restored values equal the live
    state's."""
    model = nyc_model()
    sim = Simulation(model, seed=1, grad=Checkpointed(every=5))
    result = sim.run(30)
    run = result.series["new_infections"].grad_fn.run  # type: ignore[union-attr]
    snap = run.snapshots[-1]
    packed = {p[1]: k.value.dtype for p, k in (*snap.carried.items(), *snap.fixed.items())}
    assert packed["due"] == torch.int16
    assert packed["weight"] == torch.bool
    assert packed["attend"] == torch.bool
    states, _ = snap.restore()
    replayed = Simulation(model, seed=1, grad="full")
    replayed.run(25)  # the same days as the last snapshot's start
    live = dict(tensors(replayed.states))
    for path, value in tensors(states):
        assert value.dtype == live[path].dtype, path
        assert torch.equal(value.detach(), live[path].detach()), path
    assert snap.nbytes < sum(t.numel() * t.element_size() for t in live.values())


def test_default_segment_is_half_the_square_root_of_the_days() -> None:
    assert [default_every(d) for d in (1, 4, 5, 120, 121, 400)] == [1, 1, 2, 6, 6, 10]
    assert Checkpointed().segment(120) == 6
    assert Checkpointed(every=7).segment(120) == 7


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("nyc-covid", ["mask_adoption=0.5", "vaccination=on", "school_close=12", "seeds_per_100k=300"]),
        ("bench-seir", []),
        ("classroom", []),
    ],
)
def test_fast_states_convert_to_the_differentiable_ones_of_the_same_day(
    name: str, options: list[str]
) -> None:
    """The lean forward pass runs its middle segments in fast mode and converts their states
    (Model.in_mode_of): after 25 days, a fast run's state converted equals the differentiable run's,
    field by field and dtype by dtype, and back (the scratch buffer aside)."""
    scenario = find_scenario(name)
    model = scenario().build(2_000, parse_sets(scenario, options), seed=0, device="cpu")
    fast, exact = Simulation(model, seed=4, grad="off"), Simulation(model, seed=4, grad="full")
    fast.run(25)
    exact.run(25)
    to_differentiable = model.in_mode_of(fast.states, exact.states)
    to_fast = model.in_mode_of(exact.states, fast.states)
    assert to_differentiable is not None
    assert to_fast is not None
    for converted, reference in ((to_differentiable, exact.states), (to_fast, fast.states)):
        pairs = list(zip(tensors(converted), tensors(reference), strict=True))
        assert len(pairs) > 5
        for (path, value), (want_path, want) in pairs:
            assert path == want_path
            assert value.dtype == want.dtype, path
            if path[1] != "workspace":
                assert torch.equal(value, want.detach()), path


def test_a_state_only_one_mode_has_and_that_changes_is_not_converted() -> None:
    """h5n1's farms keep a float of stocked farms only in differentiable mode, changing day by day: the
    model cannot convert (None), so a lean run steps every day differentiably."""
    scenario = find_scenario("h5n1-fowl-to-fork")
    model = scenario().build(2_000, parse_sets(scenario, []), seed=0, device="cpu")
    fast, exact = Simulation(model, seed=0, grad="off"), Simulation(model, seed=0, grad="full")
    assert model.in_mode_of(fast.states, exact.states) is None


@pytest.mark.parametrize("declared", [True, False])
def test_the_fast_forward_pass_marks_what_carries_gradients_or_the_backward_pass_says_so(
    declared: bool,
) -> None:
    """A level that starts carrying gradients on day 4, after the first segment (days 0-1): declared by its
    layer (``carries``), the middle segments' converted snapshots carry it and the gradient is exact; not
    declared, the replay that ends carrying it raises instead of losing its gradient."""
    rate = torch.tensor(1.01, requires_grad=True)

    def step(states: list[LayerState], day: int) -> list[LayerState]:
        (level,) = states
        assert isinstance(level, _Level)
        return [_Level(level.value * (rate if day >= 4 else rate.detach()))]

    fast = FastForward(
        step=step,
        to_fast=list,
        to_differentiable=list,
        candidates=[rate],
        carries=frozenset({(0, "value")}) if declared else frozenset(),
    )
    _, series = replay_run(
        [_Level(torch.ones(3))], 0, 12, 2, ("total",), step, lambda s: {"total": s[0].value.sum()}, fast=fast
    )
    loss = series["total"].sum()
    if not declared:
        with pytest.raises(RuntimeError, match="field 'value' of layer 0's state carries gradients"):
            loss.backward()
        return
    loss.backward()
    # total on day d is 3 r^(d+1-4) r0^4 for d >= 4 (r0 = r, not differentiated): d/dr = 3 (d-3) r^(d+1)/r
    expected = sum(3 * (d - 3) * 1.01**d for d in range(4, 12))
    assert rate.grad is not None
    assert float(rate.grad) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("overlap", [False, True])
def test_tapes_the_forward_pass_keeps_give_the_same_gradients(overlap: bool) -> None:
    """``Checkpointed(keep=3)``: the forward pass keeps the last three segments' tapes and the first
    backward pass starts from them (one or two threads); the gradients are the whole tape's, and a second
    backward pass, which replays every segment, gives them again."""
    model = nyc_model()
    full = gradients(model, "full")
    grad = Checkpointed(keep=3, overlap=overlap, ahead=1 if overlap else 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lean = gradients(model, grad)
        model.zero_grad()
        result = Simulation(model, seed=3, grad=grad).run(30)
        loss = result.series["new_deaths"].sum() + result.series["hospitalised"].max()
        loss = loss + result.series["new_infections"][10:20].sum() * 0.01
        loss.backward(retain_graph=True)
        first = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        loss.backward()
        second = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    finally:
        torch.set_num_threads(threads)
    assert set(full) == set(lean) == set(second)
    for name in full:
        scale = float(full[name].abs().max())
        torch.testing.assert_close(lean[name], full[name], rtol=1e-4, atol=1e-6 * scale)
        torch.testing.assert_close(second[name], first[name], rtol=1e-4, atol=1e-6 * scale)
