"""Sensitivity: outcome syntax, reverse = forward mode, agreement with CRN finite differences, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from test_covid import _well_mixed

from populace import Gumbel, Sellke, Simulation
from populace.sensitivity import RESOLVED, Output, sensitivity, standard_error


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POPULACE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_outputs_are_read_and_evaluated() -> None:
    model = _well_mixed(2_000, 20)
    result = Simulation(model, seed=0).run(30)
    series = result.series
    assert float(Output.parse("new_infections")(result)) == float(series["new_infections"].sum())
    assert float(Output.parse("peak:hospitalised")(result)) == float(series["hospitalised"].max())
    assert float(Output.parse("final:R")(result)) == float(series["R"][-1])
    by_age = Output.parse("new_infections_by_age.60+@10-19")
    assert float(by_age(result)) == float(series["new_infections_by_age"][10:20, 2].sum())
    assert by_age.series == "new_infections_by_age"
    for bad, message in [
        ("top:new_deaths", "unknown aggregate"),
        ("new_deaths@9-3", "ends before"),
        ("", "cannot read"),
    ]:
        with pytest.raises(ValueError, match=message):
            Output.parse(bad)
    for bad, message in [
        ("total:new_flu", "unknown series"),
        ("new_deaths_by_age.90-99", "no entry"),
        ("new_deaths@0-99", "past the run"),
    ]:
        with pytest.raises(ValueError, match=message):
            Output.parse(bad).check(model, 30)


def test_each_output_has_its_own_backward_pass() -> None:
    """The Sellke estimator learns later infections' values during a backward pass: with two outputs in one
    report, the second (which never reaches the later days) must not see the first's values."""
    model = _well_mixed(2_000, 20, estimator=Sellke())
    params = ["covid.beta"]
    early = "new_infections@0-14"
    both = sensitivity(model, 30, ["total:new_infections", early], parameters=params)
    alone = sensitivity(model, 30, [early], parameters=params)
    ratio = both.gradients[early]["covid.beta"] / alone.gradients[early]["covid.beta"]
    assert ratio == pytest.approx(1.0, rel=1e-5)


def test_forward_mode_names_the_reverse_only_estimator() -> None:
    with pytest.raises(ValueError, match="forward mode cannot use the 'sellke'"):
        sensitivity(_well_mixed(2_000, 20, estimator=Sellke()), 20, ["total:new_infections"], mode="forward")


def test_reverse_and_forward_mode_give_the_same_gradients() -> None:
    model = _well_mixed(3_000, 20, estimator=Gumbel())  # the default ("sellke") is reverse mode only
    args = dict(
        outputs=["total:new_admissions", "peak:infectious"],
        parameters=["covid.beta", "covid.severe_scale"],
    )
    reverse = sensitivity(model, 40, mode="reverse", **args)  # type: ignore[arg-type]
    forward = sensitivity(model, 40, mode="forward", **args)  # type: ignore[arg-type]
    assert reverse.outputs == pytest.approx(forward.outputs)
    for output, grads in reverse.gradients.items():
        for name, value in grads.items():
            assert value == pytest.approx(forward.gradients[output][name], rel=1e-3, abs=1e-6), (output, name)
            assert value != 0


def test_gradients_agree_with_finite_differences_within_the_estimator_bias() -> None:
    """Severity branches carry unbiased likelihood-ratio weights: AD within 20% of CRN finite differences.
    Infection uses the hard Gumbel estimator, whose measured bias is −16% (``layers/covid.py``): AD/FD
    in 0.6–1.15 in the growth phase (30 days, a few percent infected). Four seeds, 20,000 agents."""
    model = _well_mixed(20_000, 40)
    report = sensitivity(
        model,
        30,
        ["total:new_admissions", "total:new_deaths"],
        seeds=range(4),
        parameters=["covid.beta", "covid.severe_scale", "covid.fatality_scale"],
        fd_check=["covid.severe_scale", "covid.fatality_scale", "covid.beta"],
        fd_step=0.1,
    )
    fd = report.fd
    assert fd["covid.severe_scale"]["total:new_admissions"]["rel_err"] < 0.2
    assert fd["covid.fatality_scale"]["total:new_deaths"]["rel_err"] < 0.2
    beta = fd["covid.beta"]["total:new_admissions"]
    assert 0.6 < beta["ad"] / beta["fd"] < 1.15
    assert report.backward_s > 0
    assert report.forward_s > 0


def test_bad_parameters_are_named() -> None:
    model = _well_mixed(500, 5)
    with pytest.raises(ValueError, match="not learnable"):
        sensitivity(model, 5, ["new_deaths"], parameters=["covid.gamma"])
    with pytest.raises(ValueError, match="at least one"):
        sensitivity(model, 5, [])
    with pytest.raises(ValueError, match="mode"):
        sensitivity(model, 5, ["new_deaths"], mode="sideways")  # type: ignore[arg-type]


def test_standard_errors_and_the_fd_check_are_over_the_seeds() -> None:
    """Each mean comes with the standard error of its per-seed values; the FD check pairs AD and the CRN
    difference seed by seed, and calls the difference resolved only when its standard error is small."""
    model = _well_mixed(2_000, 20, estimator=Sellke())
    beta = ["covid.beta"]
    report = sensitivity(model, 20, ["total:new_infections"], seeds=range(3), parameters=beta, fd_check=beta)
    samples = report.samples["total:new_infections"]["covid.beta"]
    assert len(samples) == 3
    assert len(set(samples)) == 3
    mean = sum(samples) / 3
    se = (sum((s - mean) ** 2 for s in samples) / 2 / 3) ** 0.5
    assert report.gradients["total:new_infections"]["covid.beta"] == pytest.approx(mean)
    assert report.errors["total:new_infections"]["covid.beta"] == pytest.approx(se)
    assert report.outputs["total:new_infections"] == pytest.approx(
        sum(report.output_samples["total:new_infections"]) / 3
    )
    check = report.fd["covid.beta"]["total:new_infections"]
    assert check["ad"] == pytest.approx(mean)
    assert check["ad_se"] == pytest.approx(se)
    assert check["fd_se"] > 0
    assert check["resolved"] == (check["fd_se"] < RESOLVED * abs(check["fd"]))
    assert check["rel_err"] == pytest.approx(abs(check["ad"] - check["fd"]) / abs(check["fd"]))
    assert standard_error([1.0]) != standard_error([1.0])  # NaN: unknown from one value
    assert standard_error([1.0, 3.0]) == pytest.approx(1.0)


def test_cli_prints_timings_gradients_and_the_fd_check(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "sensitivity", "nyc-covid", "--agents", "5000", "--days", "30", "--fd-check", "--compare", "--json"
    )
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    for key in ("forward_s", "backward_s", "gradients", "fd_check", "fast_forward_s"):
        assert key in summary
    assert set(summary["gradients"]) == {"total:new_deaths", "peak:hospitalised"}
    beta = next(name for name in summary["fd_check"] if name.endswith(".beta"))
    check = summary["fd_check"][beta]["total:new_deaths"]
    assert set(check) == {"ad", "ad_se", "fd", "fd_se", "resolved", "rel_err", "rel_err_se"}
    assert check["fd_se"] is None  # one seed: unknown (JSON has no NaN)
    assert check["resolved"] is False
    table = run_cli(
        "sensitivity", "nyc-covid", "--agents", "1000", "--days", "10", "--fd-check", "--seeds", "2"
    )
    assert table.code == 0, table.err
    assert "transmission per contact" in table.out  # the parameter in words (nyc-covid's option name)
    assert "deaths (total)" in table.out  # outcomes in words
    assert "peak in hospital" in table.out
    assert "finite differences resolved" in table.out
    assert " ± " in table.out  # standard errors over the 2 seeds
    step = run_cli("sensitivity", "nyc-covid", "--fd-check", "--fd-step", "2")
    assert step.code == 2
    assert "--fd-step" in step.err
    for grads in summary["gradients"].values():
        assert all(torch.isfinite(torch.tensor(v)).all() for v in grads.values())
    step = run_cli("sensitivity", "nyc-covid", "--fd-check", "--fd-step", "2")
    assert step.code == 2
    assert "--fd-step" in step.err
    bad = run_cli("sensitivity", "nyc-covid", "--agents", "2000", "--outputs", "peak:flu")
    assert bad.code == 2
    assert "flu" in bad.err
