"""populace optimize: the roll-out's allocation gradient against finite differences with common random
numbers, the optimiser moving doses to where the epidemic is, and the command line."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator

import pytest
import torch

from populace import Model, Places, Simulation
from populace.cli import main
from populace.experiment import Experiment
from populace.layers.covid import Covid
from populace.layers.importation import Importation
from populace.layers.rollout import Rollout
from populace.optimize import Lever, Objective, optimize, paired
from populace.sensitivity import Output

N = 20_000
DAYS = 60


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULACE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: one torch thread (conftest)


def _two_towns(seeded: tuple[float, float]) -> tuple[Model, Rollout]:
    """Two towns of 10,000 that do not meet, each one well-mixed place, seeded ``seeded`` per 100k on day 0;
    everyone willing, 200 doses a day from 30 days before day 0, shared between the towns by the roll-out."""
    g = torch.Generator().manual_seed(0)
    town = (torch.arange(N) >= N // 2).long()
    age = torch.randint(20, 80, (N,), generator=g).to(torch.uint8)
    covid = Covid(age, [Places("community", town.int(), contacts=8.0)], initial_infections=0)
    seeding = Importation(town, 2, torch.tensor(seeded))
    rollout = Rollout(
        town,
        2,
        age.float(),
        torch.ones(N, dtype=torch.bool),
        torch.full((DAYS,), 200.0),
        first_day=-30,
        shares=torch.tensor([0.5, 0.5]),
        interval=21,
    )
    return Model([covid, seeding, rollout]), rollout


def test_the_allocation_gradient_agrees_with_finite_differences_over_seeds() -> None:
    """d(infections)/d(logit of town 0) by reverse mode (the roll-out's straight-through mean field and the
    infection's Sellke estimator) against central differences with the same seed (h = 0.25), 6 seeds."""
    model, rollout = _two_towns((50.0, 50.0))
    output = Output.parse("total:new_infections")
    h = 0.25
    ad, fd = [], []
    for seed in range(6):
        logits = rollout.learn(torch.zeros(2))
        output(Simulation(model, seed=seed, grad="full").run(DAYS)).backward()
        assert logits.grad is not None
        ad.append(float(logits.grad[0]))
        values = []
        for sign in (1.0, -1.0):
            rollout.learn(torch.tensor([sign * h, 0.0]))
            values.append(float(output(Simulation(model, seed=seed).run(DAYS))))
        fd.append((values[0] - values[1]) / (2 * h))
    assert statistics.correlation(ad, fd) > 0.8, (ad, fd)
    assert 0.6 < sum(ad) / sum(fd) < 1.7, (ad, fd)


def test_optimize_moves_doses_to_the_town_with_the_epidemic() -> None:
    model, rollout = _two_towns((100.0, 0.0))
    lever = Lever(
        "allocation",
        "share of doses by town",
        (),
        attach=lambda m: rollout.learn(torch.zeros(2)),
        table=lambda m: {"values": rollout.shares_on(0).tolist()},
    )
    report = optimize(
        model, lever, Objective("infections", "", "total:new_infections"), days=40, seeds=[0, 1, 2], lr=0.5
    )
    assert report.learned is not None
    assert len(report.steps) == 3
    assert float(torch.softmax(report.learned, 0)[0]) > 0.6


def test_optimize_command_learns_and_compares_with_every_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "optimize",
            "nz-covid",
            "--lever",
            "allocation",
            "--objective",
            "deaths",
            "--agents",
            "5000",
            "--days",
            "5",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--evaluate",
            "2",
            "--start-from",
            "Auckland first",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["steps"]) == 1
    assert summary["objective_output"] == "total:expected_deaths"
    verdict = summary["verdict"]
    assert verdict["counted"] == "total:new_deaths"
    assert verdict["best heuristic"] in summary["comparison"]
    pair = summary["comparison"]["Auckland first"]["optimised minus this"]
    assert len(pair["differences"]) == 2
    assert "optimised minus this" not in summary["comparison"]["optimised"]
    assert len(summary["decision"]["rows"]) == 20
    assert len(summary["decision"]["columns"]) == 6
    assert abs(sum(sum(row) for row in summary["decision"]["values"]) - 1.0) < 1e-4
    assert all(0.0 <= x <= 1.0 for row in summary["decision"]["first_dose_by_day_0"] for x in row)
    assert {"optimised", "as it was", "oldest first", "equity first"} <= set(summary["comparison"])


def test_optimize_command_names_an_unknown_lever(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["optimize", "nz-covid", "--lever", "budget", "--objective", "deaths"])
    assert code == 2
    assert "--lever: nz-covid has no lever 'budget'; known: allocation" in capsys.readouterr().err


def test_paired_differences_and_when_they_are_resolved() -> None:
    """Differences 1, 2, 3 below: mean −2, sd 1, se 1/√3; resolved (−2 + 2/√3 < 0). A difference that
    swings across zero is not."""
    result = paired([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    assert result["differences"] == [-1.0, -2.0, -3.0]
    assert result["mean"] == pytest.approx(-2.0)
    assert result["sd"] == pytest.approx(1.0)
    assert result["se"] == pytest.approx(1 / 3**0.5)
    assert result["resolved"]
    assert not paired([0.0, 0.0, 0.0], [3.0, -2.0, 1.0])["resolved"]
    with pytest.raises(ValueError, match="paired: need two equal-length series"):
        paired([1.0], [2.0])


def test_the_allocation_can_start_from_a_policy() -> None:
    """``--start-from "Auckland first"`` with half the supply (not enough to dose every willing Aucklander
    before day 0): the pro-rata model's table follows what Auckland first gave by day 0, so its softmax puts
    nearly all first doses (all but the 1% floor) on the Auckland DHBs' cells, and the fast roll-out with
    those shares doses mostly Aucklanders before day 0."""
    from populace.scenarios.nz_covid import NzCovid
    from populace.scenarios.nz_covid.data import AUCKLAND, DHBS
    from populace.scenarios.nz_covid.policy import AGE_BANDS

    lever = NzCovid.levers()["allocation"]
    assert lever.start is not None
    half = ["supply_scale=0.5"]
    model = Experiment.from_texts("nz-covid", [*lever.sets, *half], agents=5000).model()
    heuristic = Experiment.from_texts("nz-covid", ["policy=Auckland first", *half], agents=5000).model()
    logits = lever.start(heuristic, model, 0)
    shares = torch.softmax(logits, 0).reshape(len(DHBS), len(AGE_BANDS))
    auckland = [DHBS.index(d) for d in AUCKLAND]
    assert float(shares[auckland].sum()) > 0.95
    lever.attach(model)
    assert lever.apply is not None
    lever.apply(model, logits)
    table = lever.table(model)
    covered = torch.tensor(table["first_dose_by_day_0"])
    rest = [d for d in range(len(DHBS)) if d not in auckland]
    assert float(covered[auckland].mean()) > 3 * float(covered[rest].mean())
