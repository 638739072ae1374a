"""The on-device risk query (core/risk.py, populace risk): the public forecast does not change the run, the
answers move the right way under each alternative, and a bad profile is one line naming it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from populace.cli import main
from populace.experiment import Experiment
from populace.risk import MASK_EFFICACY, Profile, RiskTable, alternatives, answer, forecast, week_risk
from populace.scenarios.nz_covid.data import DHBS
from populace.simulate import Simulation

SETS = ["seeds_per_100k=300"]


@pytest.fixture(scope="module")
def table() -> RiskTable:
    experiment = Experiment.from_texts("nyc-covid", SETS, agents=12_000, seed=2)
    model = experiment.model()
    recorded = forecast(
        model,
        scenario="nyc-covid",
        agents=12_000,
        seed=2,
        first_day=10,
        simulate=lambda m, days, on_day: Simulation(m, seed=2).run(days, on_day=on_day),
    )
    return recorded


def test_recording_the_forecast_does_not_change_the_run() -> None:
    experiment = Experiment.from_texts("nyc-covid", SETS, agents=12_000, seed=2)
    plain = Simulation(experiment.model(), seed=2).run(17).to_columns()
    model = experiment.model()
    runs = []
    forecast(
        model,
        scenario="nyc-covid",
        agents=12_000,
        seed=2,
        first_day=10,
        simulate=lambda m, days, on_day: runs.append(Simulation(m, seed=2).run(days, on_day=on_day)),
    )
    assert runs[0].to_columns() == plain


def test_answers_move_the_right_way(table: RiskTable) -> None:
    assert len(table.household) == 7
    assert set(table.force) == {"school", "work", "community"}
    assert any(v > 0 for day in table.force["community"] for v in day)  # an epidemic is under way
    me = Profile("Brooklyn", 3, {"work": 5, "community": 7})
    plan = week_risk(table, me)
    assert 0 < plan["probability"] < 1
    assert plan["probability"] == pytest.approx(-math.expm1(-plan["hazard"]))
    rows = {row["choice"]: row for row in answer(table, me)}
    assert set(rows) == {label for label, _ in alternatives(me)}
    assert rows["work from home"]["probability"] < plan["probability"]
    assert rows["skip the gym, shops and outings (community)"]["probability"] < plan["probability"]
    masked = week_risk(table, Profile("Brooklyn", 3, me.days, mask=True))
    outside = plan["hazard"] - plan["hazard_household"]
    assert masked["hazard"] == pytest.approx(plan["hazard_household"] + (1 - MASK_EFFICACY) * outside)
    # alone at home all week: no one to catch it from in the model
    assert week_risk(table, Profile("Brooklyn", 1, {}))["probability"] == 0.0
    # a bigger household, more days at work: more risk
    assert week_risk(table, Profile("Brooklyn", 6, me.days))["hazard_household"] >= 0
    more = week_risk(table, Profile("Brooklyn", 3, {"work": 7, "community": 7}))
    assert more["probability"] >= plan["probability"]


def test_cli_reads_a_saved_forecast_and_refuses_a_bad_profile(
    table: RiskTable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "forecast.json"
    table.save(saved)
    me = tmp_path / "me.json"
    me.write_text(json.dumps({"borough": "Queens", "household_size": 2, "days": {"work": 5}}))
    cmd = ["risk", "nyc-covid", "--table", str(saved)]
    assert main([*cmd, "--profile", str(me), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["forecast_s"] is None  # read, not recomputed
    assert out["query_s"] < 1.0
    assert [r["choice"] for r in out["choices"]][:2] == ["as planned", "work from home"]
    for bad, named in (
        ({"area": "Narnia"}, "area 'Narnia'"),
        ({"area": "Queens", "days": {"gym": 2}}, "'gym' is not a setting"),
        ({"area": "Queens", "days": {"work": 9}}, "between 0 and 7"),
    ):
        me.write_text(json.dumps(bad))
        assert main([*cmd, "--profile", str(me)]) == 2
        assert named in capsys.readouterr().err


def test_nz_covid_forecasts_by_district_health_board(tmp_path, monkeypatch) -> None:
    """New Zealand's agents live in DHBs (its rollout's breakdowns are plain tuples, skipped): the explorer's
    "Your risk" offers the 20 DHBs as where you live."""
    monkeypatch.setenv("POPULACE_CACHE", str(tmp_path))
    experiment = Experiment.from_texts("nz-covid", ["seeds_per_100k=300"], agents=20_000, seed=1)
    recorded = forecast(
        experiment.model(),
        scenario="nz-covid",
        agents=20_000,
        seed=1,
        first_day=7,
        simulate=lambda m, days, on_day: Simulation(m, seed=1).run(days, on_day=on_day),
    )
    assert recorded.areas == list(DHBS)
    chance = week_risk(recorded, Profile("Auckland", 3, {"work": 5, "community": 7}, False))["probability"]
    assert 0.0 < chance < 1.0  # infections seeded in Auckland reach a household of three
