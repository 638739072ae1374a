"""Parameter specs: bounds, parsing, choices, registration as module state, and ``--set`` overrides."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import torch
from torch import nn

from populace import Choice, Param, ParamError, parse_sets, register_param
from populace.scenarios.bench_seir import BenchSEIR

RATE = Param(0.2, (0.0, 1.0), "1/day", "a test rate", learnable=True)
DAYS = Param(5.0, (1.0, 30.0), "days", "a test duration")
NETWORK = Choice("households", ("households", "well-mixed"), "contact structure")


# ----------------------------------------------------------------------------- Param
def test_param_error_is_a_value_error():
    assert issubclass(ParamError, ValueError)


def test_param_default_must_lie_in_bounds():
    with pytest.raises(ParamError, match=r"default: 2 is outside the bounds \[0, 1\]"):
        Param(2.0, (0.0, 1.0), "fraction", "too high")
    with pytest.raises(ValueError, match="not ordered"):
        Param(0.5, (1.0, 0.0), "fraction", "bounds reversed")


@pytest.mark.parametrize("value", [0.0, 0.25, 1.0, 0, 1])
def test_validate_accepts_inclusive_bounds(value):
    out = RATE.validate(value, "gamma")
    assert isinstance(out, float)
    assert out == value


@pytest.mark.parametrize("value", [-0.001, 1.001, float("nan"), float("inf"), -float("inf")])
def test_validate_rejects_out_of_bounds_naming_the_parameter(value):
    with pytest.raises(ParamError) as info:
        RATE.validate(value, "gamma")
    message = str(info.value)
    assert message.startswith("gamma: ")
    assert "[0, 1]" in message
    assert "1/day" in message


@pytest.mark.parametrize("value", [True, False, "0.5", None, [0.5], torch.tensor(0.5)])
def test_validate_rejects_non_numbers(value):
    with pytest.raises(ParamError, match=r"^gamma: expected a number"):
        RATE.validate(value, "gamma")


def test_parse_returns_a_new_spec_and_leaves_the_original():
    parsed = DAYS.parse(" 7.5 ", "incubation")
    assert parsed.value == 7.5
    assert parsed == dataclasses.replace(DAYS, value=7.5)
    assert parsed is not DAYS
    assert DAYS.value == 5.0
    assert DAYS.parse("1e1", "incubation").value == 10.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("abc", "expected a number in [1, 30], got 'abc'"),
        ("", "got ''"),
        ("0.5", "0.5 is outside the bounds [1, 30]"),
        ("31", "31 is outside"),
        ("nan", "outside"),
    ],
)
def test_parse_rejects_naming_the_parameter(text, fragment):
    with pytest.raises(ParamError) as info:
        DAYS.parse(text, "incubation")
    assert str(info.value).startswith("incubation: ")
    assert fragment in str(info.value)


def test_param_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RATE.value = 0.3  # type: ignore[misc]


# ----------------------------------------------------------------------------- Choice
def test_choice():
    assert NETWORK.parse("well-mixed", "network").value == "well-mixed"
    assert NETWORK.value == "households"
    with pytest.raises(ParamError) as info:
        NETWORK.parse("ring", "network")
    assert str(info.value) == "network: expected one of households, well-mixed, got 'ring'"
    with pytest.raises(ParamError, match="default"):
        Choice("ring", ("households", "well-mixed"), "bad default")


# ----------------------------------------------------------------------------- register_param
class Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        register_param(self, "rate", RATE)
        register_param(self, "days", DAYS)


def test_learnable_is_a_parameter_fixed_is_a_buffer():
    module = Holder()
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    assert set(params) == {"rate"}
    assert set(buffers) == {"days"}
    assert isinstance(module.rate, nn.Parameter)
    assert module.rate.requires_grad
    assert not isinstance(module.days, nn.Parameter)
    assert not module.days.requires_grad
    for tensor, spec in ((module.rate, RATE), (module.days, DAYS)):
        assert tensor.dim() == 0
        assert tensor.dtype == torch.float32
        assert tensor.item() == pytest.approx(spec.value)
    assert set(module.state_dict()) == {"rate", "days"}
    assert module.param_specs == {"rate": RATE, "days": DAYS}


def test_specs_are_per_instance():
    a, b = Holder(), Holder()
    register_param(a, "extra", DAYS)
    assert "extra" in a.param_specs
    assert "extra" not in b.param_specs


def test_registered_params_move_and_cast_with_the_module():
    module = Holder().to(torch.float64)
    assert module.rate.dtype == torch.float64
    assert module.days.dtype == torch.float64
    module = module.to("meta")
    assert module.rate.device.type == "meta"
    assert module.days.device.type == "meta"
    assert isinstance(module.rate, nn.Parameter)


def test_learnable_param_receives_gradients_and_optimiser_moves_it():
    module = Holder()
    loss = (module.rate * module.days - 2.0) ** 2  # d/drate = 2 (0.2*5 - 2) * 5 = -10
    loss.backward()
    assert module.rate.grad is not None
    assert module.rate.grad.item() == pytest.approx(-10.0)
    torch.optim.SGD(module.parameters(), lr=0.01).step()
    assert module.rate.item() == pytest.approx(0.3)
    assert module.days.item() == 5.0


# ----------------------------------------------------------------------------- parse_sets
def test_parse_sets_without_overrides_gives_defaults():
    options = parse_sets(BenchSEIR, [])
    assert options == BenchSEIR.defaults()
    assert options["network"].value == "households"
    assert options["beta"].value == pytest.approx(0.016)


def test_parse_sets_applies_overrides():
    options = parse_sets(BenchSEIR, ["beta=0.05", " latent_mean = 3 ", "network=well-mixed", "beta=0.03"])
    assert options["beta"].value == pytest.approx(0.03), "the last --set of a name wins"
    assert options["latent_mean"].value == 3.0
    assert options["network"].value == "well-mixed"
    assert options["infectious_mean"] == BenchSEIR.defaults()["infectious_mean"]
    assert BenchSEIR.options()["beta"].value == pytest.approx(0.016), "defaults are not changed"
    assert isinstance(options["beta"], Param)
    assert options["beta"].learnable


@pytest.mark.parametrize(
    ("sets", "fragments"),
    [
        (
            ["betta=0.1"],
            [
                "--set betta: unknown parameter of bench-seir",
                "did you mean 'beta'",
                "known: population, network",
            ],
        ),
        (["beta=1.5"], ["--set beta: 1.5 is outside the bounds [0, 1]"]),
        (["beta=x"], ["--set beta: expected a number"]),
        (["beta"], ["--set: expected NAME=VALUE, got 'beta'"]),
        (["=1"], ["--set: expected NAME=VALUE"]),
        (["network=ring"], ["--set network: expected one of households, well-mixed"]),
    ],
)
def test_parse_sets_errors_name_the_culprit(sets, fragments):
    with pytest.raises(ParamError) as info:
        parse_sets(BenchSEIR, sets)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- dates for day indices
DAY = Param(10_000.0, (0.0, 10_000.0), "day", "first day of a closure (10000: never)")
START = dt.date(2020, 3, 1)


def test_a_day_index_may_be_a_date_counted_from_day_0():
    assert DAY.parse("2020-03-16", "--set close", START).value == 15
    assert DAY.parse("2020-03-01", "--set close", START).value == 0
    assert DAY.parse("15", "--set close", START).value == 15


@pytest.mark.parametrize(
    ("text", "start", "fragments"),
    [
        ("2020-03-16", None, ["--set close", "no start date"]),
        ("2020-02-29", START, ["--set close", "before day 0", "2020-03-01"]),
        ("2020-13-01", START, ["--set close", "'2020-13-01'", "YYYY-MM-DD"]),
        ("soon", START, ["--set close", "or a date YYYY-MM-DD", "'soon'"]),
    ],
)
def test_a_bad_date_for_a_day_index_names_the_option(text, start, fragments):
    with pytest.raises(ParamError) as info:
        DAY.parse(text, "--set close", start)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_only_day_indices_take_dates():
    with pytest.raises(ParamError, match="--set rate: expected a number"):
        RATE.parse("2020-03-16", "--set rate", START)


def test_parse_sets_counts_dates_from_the_scenarios_start_or_the_one_given():
    from populace.scenarios.nyc_covid import NycCovid

    assert NycCovid.default_start == START
    assert parse_sets(NycCovid, ["school_close=2020-03-16"])["school_close"].value == 15
    assert parse_sets(NycCovid, ["school_close=2020-03-16"], dt.date(2020, 3, 6))["school_close"].value == 10
