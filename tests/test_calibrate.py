"""Calibration: synthetic-truth recovery, gradients of every fitted tensor, masking, files, API = CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator

import pytest
import torch
from test_covid import _well_mixed

from populace import Model, ParamError, Simulation
from populace.calibrate import (
    Bounded,
    Calibration,
    Stream,
    WeeklyNetwork,
    load_parameters,
    moving_average,
    read_parameters,
)
from populace.layers.covid import BETA
from populace.layers.transmission import Transmission
from populace.scenario import parse_sets
from populace.scenarios.nyc_covid import NycCovid


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULACE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_moving_average_is_trailing() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert moving_average(x, 2)[:, 0].tolist() == [1.0, 1.5, 2.5, 3.5]


def test_bounded_maps_into_its_bounds_and_back() -> None:
    bound = Bounded(0.5, 2.0)
    raw = bound.right_inverse(torch.tensor(1.2))
    assert float(bound(raw)) == pytest.approx(1.2, rel=1e-5)
    assert 0.5 < float(bound(torch.tensor(50.0))) <= 2.0
    with pytest.raises(ValueError, match="low < high"):
        Bounded(1.0, 1.0)


def test_weekly_network_starts_flat_inside_its_bounds() -> None:
    net = WeeklyNetwork(torch.rand(6, 3, 4), (0.1, 3.0), initial=1.0)
    table = net()
    assert table.shape == (6, 3)
    assert torch.allclose(table, torch.ones(6, 3), atol=1e-5)
    with pytest.raises(ValueError, match="covariates"):
        WeeklyNetwork(torch.rand(6, 4), (0.1, 3.0), initial=1.0)


def _truth(n: int, days: int) -> dict[str, torch.Tensor]:
    model = _well_mixed(n, 20, beta=dataclasses.replace(BETA, value=0.03))
    with torch.no_grad():
        model.layers[0].severe_scale.fill_(2.0)
    result = Simulation(model, seed=0).run(days)
    return {
        k: moving_average(result.series[k].double()[:, None], 7)
        for k in ("new_symptomatic", "new_admissions")
    }


def test_synthetic_truth_is_recovered_from_perturbed_starts() -> None:
    """Simulate with β = 0.03 and severe_scale = 2, start the fit 25% and 30% off: both come back within 10%.

    Common random numbers (the truth's seed in every epoch): the loss is a deterministic function of the
    parameters with its minimum at the truth, so this tests the gradients and the optimiser, not the noise."""
    days = 60
    observed = _truth(20_000, days)
    model = _well_mixed(20_000, 20)
    with torch.no_grad():
        model.layers[0].beta.fill_(0.03 * 1.25)
        model.layers[0].severe_scale.fill_(2.0 * 0.7)
    streams = [Stream(k, k, v) for k, v in observed.items()]
    calibration = Calibration(model, streams, fit=["covid.beta", "covid.severe_scale"])
    report = calibration.fit(days, epochs=80, lr=0.05, resample=False, grad="full")  # 40: severe 1.70
    assert report.loss[-1] < 0.2 * report.loss[0]
    assert report.parameters["covid.beta"] == pytest.approx(0.03, rel=0.10)
    assert report.parameters["covid.severe_scale"] == pytest.approx(2.0, rel=0.10)
    # parametrisations are gone: the model holds the fitted values as plain parameters again
    assert float(model.layers[0].beta.detach()) == pytest.approx(report.parameters["covid.beta"])
    assert isinstance(model.layers[0].beta, torch.nn.Parameter)


def _with_transmission(n: int) -> tuple[Model, Transmission]:
    model = _well_mixed(n, 20)
    covid = model.layers[0]
    group = torch.arange(n) % 2
    transmission = Transmission(group, 2, periods=6)
    return Model([covid, transmission]), transmission


def test_gradients_reach_every_fitted_tensor_and_are_finite() -> None:
    model, transmission = _with_transmission(5_000)
    table = next(f"{n}.scale" for n, m in model.named_modules() if m is transmission)
    days = 40
    observed = torch.full((days, 1), 5.0)
    x = torch.rand(6, 2, 3)
    cases = Stream("cases", "new_symptomatic", observed, reported=WeeklyNetwork(x, (0.01, 1.0), initial=0.3))
    deaths = Stream("deaths", "new_deaths", observed * 0.1)
    specs = [name for name in model.specs() if name in dict(model.named_parameters())]
    calibration = Calibration(
        model,
        [cases, deaths],
        fit=specs,
        networks={table: WeeklyNetwork(x, (0.05, 3.0), initial=1.0)},
    )
    with calibration.values():
        loss = sum(calibration.losses(calibration.run(days, seed=0, grad="full")).values())
        assert isinstance(loss, torch.Tensor)
        loss.backward()
    trained = dict(calibration.named_parameters())
    assert len(trained) == len(specs) + 8  # two networks of 4 tensors each
    for name, p in trained.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(float(p.grad.abs().sum()) > 0 for n, p in trained.items() if "scale.0.net" in n)


def test_missing_days_are_masked_not_zero_filled() -> None:
    model = _well_mixed(3_000, 10)
    days = 30
    result = Simulation(model, seed=0).run(days)
    full = moving_average(result.series["new_symptomatic"].double()[:, None], 7) * 1.3
    gappy = full.clone()
    gappy[10:20] = math.nan
    calibration = Calibration(model, [Stream("a", "new_symptomatic", gappy)], log_weight=0.0)
    prediction = calibration.run(days, seed=0, grad="off")
    loss = float(calibration.losses(prediction)["a"])
    keep = torch.cat([torch.arange(10), torch.arange(20, days)])
    p = moving_average(prediction["a"], 7)[keep].double()
    expected = float(((p - full[keep]) ** 2).sum() / (full[keep] ** 2).sum())
    assert loss == pytest.approx(expected, rel=1e-5)
    assert calibration.metrics(prediction)["a"]["nd"] == pytest.approx(0.3 / 1.3, rel=1e-4)


def test_the_robust_loss_is_the_log_of_one_plus_the_relative_error() -> None:
    """robust=True: log(1 + e) of the same relative squared error e; a tenfold overshoot costs log(82), not
    81."""
    model = _well_mixed(3_000, 10)
    days = 30
    result = Simulation(model, seed=0).run(days)
    truth = moving_average(result.series["new_symptomatic"].double()[:, None], 7)
    for factor in (1.3, 0.1):
        stream = Stream("a", "new_symptomatic", truth * factor)
        plain = Calibration(model, [stream], log_weight=0.0).losses
        robust = Calibration(model, [stream], log_weight=0.0, robust=True).losses
        prediction = {"a": result.series["new_symptomatic"].float()[:, None]}
        e = float(plain(prediction)["a"])
        assert e == pytest.approx((1 - 1 / factor) ** 2, rel=1e-4)
        assert float(robust(prediction)["a"]) == pytest.approx(math.log1p(e), rel=1e-5)


def test_the_fitted_model_is_judged_by_the_mean_of_runs_on_held_out_seeds() -> None:
    """Two steps on seeds 0 and 1, then three runs on seeds 2-4: the metrics are those of their mean, each
    run's ND is reported, and the plotted range holds the mean."""
    model = _well_mixed(3_000, 10)
    days = 30
    result = Simulation(model, seed=0).run(days)
    observed = moving_average(result.series["new_symptomatic"].double()[:, None], 7) * 1.3
    stream = Stream("a", "new_symptomatic", observed, labels=("all",))
    report = Calibration(model, [stream], fit=["covid.beta"]).fit(days, epochs=2, evaluate=3)

    judge = Calibration(model, [stream])  # the model keeps the fitted β
    runs = [judge.run(days, seed=s, grad="off") for s in (2, 3, 4)]
    mean = {"a": torch.stack([r["a"] for r in runs]).mean(0)}
    assert report.metrics["a"]["nd"] == pytest.approx(judge.metrics(mean)["a"]["nd"], rel=1e-6)
    each = [judge.metrics(r)["a"]["nd"] for r in runs]
    assert report.metrics["a"]["runs"]["nd"] == pytest.approx(each, rel=1e-6)
    assert report.metrics["a"]["runs"]["nd_by"]["all"] == pytest.approx(each, rel=1e-6)
    assert len(set(each)) == 3  # three different draws
    low, high = report.spread["a"]
    mean_line = report.predictions["a"]
    assert bool((low <= mean_line + 1e-6).all() and (mean_line <= high + 1e-6).all())
    assert report.loss[-1] == pytest.approx(float(judge.losses(mean)["a"]), rel=1e-5)
    with pytest.raises(ValueError, match="evaluate must be positive"):
        Calibration(model, [stream]).fit(days, epochs=1, evaluate=0)


def test_load_parameters_checks_names_shapes_and_bounds() -> None:
    model = _well_mixed(100, 1)
    load_parameters(model, {"covid.beta": 0.07})
    assert float(model.layers[0].beta.detach()) == pytest.approx(0.07)
    with pytest.raises(ParamError, match="no tensor"):
        load_parameters(model, {"covid.gamma": 0.1})
    with pytest.raises(ParamError, match="outside the bounds"):
        load_parameters(model, {"covid.beta": 5.0})
    with pytest.raises(ParamError, match="shape"):
        load_parameters(model, {"covid.beta": [0.1, 0.2]})


def test_a_loaded_transmission_table_is_checked_when_the_run_starts() -> None:
    model, transmission = _with_transmission(100)
    table = next(f"{n}.scale" for n, m in model.named_modules() if m is transmission)
    bad = torch.ones(6, 2)
    bad[3, 1] = -0.5
    load_parameters(model, {table: bad.tolist()})  # a table has no spec bounds to check at load
    with pytest.raises(ParamError, match="Transmission scale: expected finite values"):
        Simulation(model, seed=0).run(1)


def test_bad_calibration_input_is_named() -> None:
    model = _well_mixed(100, 1)
    stream = Stream("a", "new_deaths", torch.zeros(5, 1))
    with pytest.raises(ParamError, match=r"fit: 'covid\.nope'"):
        Calibration(model, [stream], fit=["covid.nope"])
    with pytest.raises(ValueError, match="at least one"):
        Calibration(model, [])
    with pytest.raises(ValueError, match="labels"):
        Stream("a", "new_deaths", torch.zeros(5, 2), labels=("x",))


def test_calibration_is_the_same_through_the_api_and_the_cli(tmp_path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """``populace calibrate`` = ``observed_options`` + ``build`` + ``calibration().fit()`` (same seeds)."""
    agents, days, epochs = 5_000, 40, 2
    out = tmp_path / "fit"
    cli = run_cli(
        "calibrate", "nyc-covid", "--agents", str(agents), "--days", str(days), "--epochs", str(epochs),
        "--out", str(out), "--json",
    )  # fmt: skip
    assert cli.code == 0, cli.err
    summary = json.loads(cli.out)
    for key in ("wall_s", "cpu_s", "epochs", "loss_initial", "loss_final", "metrics"):
        assert key in summary
    assert set(summary["metrics"]) == {"cases", "hosp", "deaths"}
    assert (out / "fit.png").read_bytes()[:4] == b"\x89PNG"

    scenario = NycCovid()
    start = NycCovid.default_start
    assert start is not None
    sets = [f"{k}={v}" for k, v in scenario.observed_options(start).items()]
    model = scenario.build(agents, parse_sets(NycCovid, sets), seed=0, device="cpu")
    calibration = scenario.calibration(model, agents=agents, start=start, days=days, streams=None)
    report = calibration.fit(days, epochs=epochs)
    saved = read_parameters(out / "parameters.json")
    assert saved["parameters"] == report.parameters
    assert summary["loss"] == pytest.approx(report.loss)

    # the fitted file drives `populace run`; a broken one is named
    run = run_cli("run", "nyc-covid", "--params", str(out / "parameters.json"), "--days", "10", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["agents"] == agents
    (tmp_path / "bad.json").write_text("{}")
    bad = run_cli("run", "nyc-covid", "--params", str(tmp_path / "bad.json"))
    assert bad.code == 2
    assert "--params" in bad.err


def test_calibrate_names_bad_input(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("calibrate", "bench-seir")
    assert result.code == 2
    assert "no observed data" in result.err
    result = run_cli("calibrate", "nyc-covid", "--streams", "cases,flu", "--agents", "2000", "--days", "5")
    assert result.code == 2
    assert "--streams" in result.err
    assert "flu" in result.err
    result = run_cli("calibrate", "nyc-covid", "--start", "2020-13-01")
    assert result.code == 2
    assert "--start" in result.err


def test_evaluation_runs_two_at_a_time_give_the_runs_one_at_a_time() -> None:
    """The held-out runs of a fit run two at a time on two threads (``_each``, with the overlapped
    backward pass): the same series, in seed order, and torch's thread count restored."""
    from populace.calibrate import _each

    model = NycCovid().build(3_000, parse_sets(NycCovid, ["seeds_per_100k=300"]), seed=0, device="cpu")

    def run(seed: int) -> torch.Tensor:
        return Simulation(model, seed=seed).run(30).series["new_infections"]

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one_at_a_time = _each(run, range(5), two_threads=False)
        two_at_a_time = _each(run, range(5), two_threads=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one_at_a_time, two_at_a_time, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(one_at_a_time[0], one_at_a_time[1])  # other seeds, other runs
