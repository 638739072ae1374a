"""Words an analyst reads (populace.glossary): every stage code and every series of the shipped scenarios
has a label, a one-line explanation and a unit; docs lose their markup; ``populace scenarios NAME`` prints
them."""

from __future__ import annotations

import pytest

from populace import cli
from populace.glossary import STAGES, option_groups, outcome, plain, term
from populace.scenario import scenarios

SMALL = {"bench-seir": 2_000, "classroom": 2_000, "h5n1-fowl-to-fork": None}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_series_and_stage_of_a_scenario_has_words(name):
    cls = scenarios()[name]
    model = cls().build(SMALL[name] or cls.default_agents, cls.defaults(), seed=0, device="cpu")
    for series in model.observables():
        words = term(series)
        assert words.about, f"{name}: {series} has no explanation"
        assert words.unit, f"{name}: {series} has no unit"
        assert "_" not in words.label, f"{name}: {series} reads {words.label!r}"
    for layer in model.ordered_layers():
        for code in layer.stage_names:
            assert code in STAGES
            assert term(code).label.lower() != code.lower()


def test_series_words_follow_their_parts():
    assert term("new_deaths_by_borough").label == "new deaths by borough"
    assert term("new_deaths_by_borough").unit == "agents per day"
    assert term("cost_tests_antigen").label == "antigen test cost"
    assert term("cost_tests_antigen").unit == "$ per day"
    assert term("farm_new_infections").label == "farm: new infections"
    assert term("ND").label == "normalised deviation"
    assert term("no_such_thing").label == "no such thing"  # words, never an error


def test_outcomes_in_words():
    assert outcome("total:new_deaths").label == "deaths (total)"
    assert outcome("total:new_deaths").unit == "agents"
    assert outcome("peak:hospitalised").label == "peak in hospital"


def test_plain_drops_markup_and_issue_pointers():
    text = "seeding (:class:`~.importation.Importation`), see :func:`populace.simulate` (issue 5). ``x``"
    assert plain(text) == "seeding (`Importation`), see `simulate`. `x`"


def test_option_groups_keep_every_option_once():
    nyc = scenarios()["nyc-covid"]
    names = list(nyc.options())
    groups = option_groups(nyc.option_groups, [*names, "extra_option"])
    flat = [n for labels in groups.values() for n in labels]
    assert sorted(flat) == sorted([*names, "extra_option"])
    assert groups["Other"] == {"extra_option": "extra option"}
    assert groups["Closures"]["school_close"] == "schools close on day"


def test_the_cli_describes_a_scenario_in_words(capsys):
    assert cli.main(["scenarios", "classroom"]) == 0
    out = capsys.readouterr().out
    assert "Closures:" in out
    assert "schools close on day [day]" in out
    assert "MH                           symptomatic, will be admitted" in out
    assert "new deaths by borough [agents per day]" in out
    assert ":class:" not in out
    assert "(issue" not in out


def test_the_cli_names_an_unknown_scenario(capsys):
    assert cli.main(["scenarios", "nope"]) == 2
    assert "name:" in capsys.readouterr().err
