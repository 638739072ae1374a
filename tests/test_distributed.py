"""Runs split over processes (core/distributed.py): the same seed gives bit-identical series with 1, 2 and 4
processes, gradients equal the single-process ones, and a failing process stops the run with its message.

Processes are real (``torch.multiprocessing`` spawn, gloo over loopback), as in ``populace run --ranks``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from populace import Model, Places, Sellke, Shard, Simulation, Smoothed, launch
from populace.distributed import RankFailed, exact, split
from populace.experiment import Experiment
from populace.layers import SEIR

AGENTS = 12_000


def _series(rank: int, ranks: int, scenario: str, sets: list[str], days: int, out: str) -> None:
    experiment = Experiment.from_texts(scenario, sets, agents=AGENTS, seed=3)
    shard = Shard(rank, ranks)
    result = Simulation(experiment.model(shard), seed=3, shard=shard).run(days)
    if rank == 0:
        Path(out).write_text(json.dumps(result.to_columns()))


@pytest.mark.parametrize(
    ("scenario", "sets"),
    [
        ("bench-seir", []),
        ("bench-seir", ["network=well-mixed"]),
        # closures (workplaces drawn by global number), masks, screening, the capacity-limited test queue
        # and the vaccination queue (positions over all processes)
        (
            "nyc-covid",
            [
                *("seeds_per_100k=300", "mask_adoption=0.6", "work_close=20", "school_close=15"),
                "screening=0.002",
                *("vaccination=on", "vaccine_start=5", "vaccine_capacity=2000", "second_dose_interval=10"),
            ],
        ),
    ],
)
def test_series_do_not_depend_on_the_number_of_processes(
    tmp_path: Path, scenario: str, sets: list[str]
) -> None:
    runs = {}
    for ranks in (1, 2, 4):
        out = tmp_path / f"{ranks}.json"
        launch(_series, ranks, scenario, sets, 40, str(out), threads=1)
        runs[ranks] = json.loads(out.read_text())
    assert sum(runs[1]["new_infections"]) > 100  # an epidemic, not an empty run
    if scenario == "nyc-covid":
        assert sum(runs[1]["tests_pcr"]) > 100
        assert max(runs[1]["workplaces_closed"]) > 0
        assert sum(runs[1]["second_doses"]) > 1000
    assert runs[2] == runs[1]
    assert runs[4] == runs[1]


def _seir_model(shard: Shard, estimator: str) -> Model:
    n = 8_000
    household = torch.arange(n, dtype=torch.int32) // 4
    school = (torch.arange(n, dtype=torch.int32) * 7919) % 200  # places spread over every shard
    settings = [Places("household", household), Places("school", school, contacts=8.0)]
    starts = torch.ones(n, dtype=torch.bool)
    starts[1:] = household[1:] != household[:-1]
    shard.divide(n, starts)
    seir = SEIR(
        shard.size,
        [c.shard(shard) for c in settings],
        initial_infections=20,
        estimator=Sellke() if estimator == "sellke" else Smoothed(),
    )
    return Model([seir])


def _gradient(rank: int, ranks: int, estimator: str, out: str) -> None:
    shard = Shard(rank, ranks)
    model = _seir_model(shard, estimator)
    result = Simulation(model, seed=5, grad="full", shard=shard).run(30)
    loss = result.series["new_infections"].sum() + 0.01 * result.series["I"].square().sum()
    shard.loss(loss).backward()
    shard.reduce_gradients(model.parameters())
    if rank == 0:
        grads = {name: float(p.grad) for name, p in model.named_parameters() if p.grad is not None}
        Path(out).write_text(json.dumps({"loss": float(loss), "grads": grads}))


@pytest.mark.parametrize("estimator", ["smoothed", "sellke"])
def test_gradients_across_processes_equal_one_process(tmp_path: Path, estimator: str) -> None:
    found = {}
    for ranks in (1, 2, 4):
        out = tmp_path / f"{ranks}.json"
        launch(_gradient, ranks, estimator, str(out), threads=1)
        found[ranks] = json.loads(out.read_text())
    one = found[1]
    assert set(one["grads"]) >= {"seir.beta", "seir.settings.school.weight"}
    assert all(abs(g) > 0 for g in one["grads"].values()), one
    for ranks in (2, 4):
        assert found[ranks]["loss"] == pytest.approx(one["loss"], rel=1e-5)
        for name, g in one["grads"].items():
            assert found[ranks]["grads"][name] == pytest.approx(g, rel=1e-4), (ranks, name)


def _fails(rank: int, ranks: int) -> None:
    if rank == 1:
        raise ValueError("beta: expected a number, got 'x'")
    time.sleep(600)  # the others would wait forever: launch must stop them


def test_a_failing_process_stops_all_with_its_message() -> None:
    start = time.perf_counter()
    with pytest.raises(RankFailed, match=r"rank 1 of 3: ValueError: beta: expected a number"):
        launch(_fails, 3, threads=1)
    assert time.perf_counter() - start < 30


def _spawned() -> set[int]:
    """Process ids of the spawned workers of torch.multiprocessing on this machine."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[0]) for line in ps.splitlines() if "multiprocessing.spawn" in line}


def test_populace_run_ranks_reports_a_failing_process_and_leaves_nothing_behind() -> None:
    before = _spawned()
    # 6 agents in about 2 households cannot be split over 4 processes: each process raises
    cmd = [sys.executable, "-m", "populace", "run", "bench-seir", "--agents", "6", "--ranks", "4"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("populace run: error: rank ")
    assert "without splitting a household" in last
    assert time.perf_counter() - start < 60
    time.sleep(0.5)
    assert _spawned() - before == set()


def test_populace_run_ranks_refuses_a_scenario_that_cannot_split() -> None:
    cmd = [sys.executable, "-m", "populace", "run", "h5n1-fowl-to-fork", "--ranks", "2", "--days", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "populace run: error: --ranks: h5n1-fowl-to-fork does not run on several processes yet"
    )


def test_split_keeps_households_whole() -> None:
    household = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    starts = torch.ones(10, dtype=torch.bool)
    starts[1:] = household[1:] != household[:-1]
    assert split(10, 2, starts) == (0, 5, 10)
    assert split(10, 3, starts) == (0, 3, 6, 10)
    with pytest.raises(ValueError, match="without splitting a household"):
        split(4, 3, torch.tensor([True, False, False, True]))


def test_exact_sums_do_not_depend_on_order() -> None:
    values = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 3
    forward = exact(values).sum()
    backward = exact(values.flip(0)).sum()
    shuffled = exact(values[torch.randperm(values.numel())]).cumsum(0)[-1]
    assert forward == backward == shuffled
    assert float(forward) == pytest.approx(float(values.double().sum()), abs=1e-3)


def test_ctrl_c_stops_every_process() -> None:
    before = _spawned()
    cmd = [sys.executable, "-m", "populace", "run", "bench-seir", "--agents", "2M", "--days", "2000"]
    process = subprocess.Popen(
        [*cmd, "--ranks", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    deadline = time.perf_counter() + 90
    while len(_spawned() - before) < 2 and time.perf_counter() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # running
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: SIGINT to the whole group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "populace run: interrupted; every process stopped"
    time.sleep(0.5)
    assert _spawned() - before == set()


def test_calibration_across_processes_fits_the_same_values(tmp_path: Path) -> None:
    fitted = {}
    for ranks in (1, 2):
        out = tmp_path / str(ranks)
        cmd = [sys.executable, "-m", "populace", "calibrate", "nyc-covid", "--agents", "8000", "--days", "35"]
        cmd += ["--epochs", "2", "--evaluate", "1", "--out", str(out)]  # Sellke, by borough x age
        done = subprocess.run([*cmd, "--ranks", str(ranks)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        fitted[ranks] = json.loads((out / "parameters.json").read_text())["parameters"]
    flat = {
        r: torch.tensor([x for v in p.values() for x in torch.tensor(v).reshape(-1).tolist()])
        for r, p in fitted.items()
    }
    start = torch.tensor(1.0)  # the fit moved: not all parameters at their defaults
    assert flat[1].numel() > 10
    assert not torch.allclose(flat[1], start.expand_as(flat[1]))
    torch.testing.assert_close(flat[2], flat[1], rtol=1e-5, atol=1e-7)
