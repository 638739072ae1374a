"""Experiment: the one way from scenario, options, agents, seed and fitted values to a model."""

from __future__ import annotations

import pytest
import torch

from populace.calibrate import save_parameters
from populace.experiment import Experiment
from populace.params import ParamError
from populace.scenarios.bench_seir import BenchSEIR


def test_texts_become_options_and_fitted_values_are_loaded(tmp_path) -> None:
    path = tmp_path / "parameters.json"
    save_parameters(path, {"seir.beta": 0.02}, scenario="bench-seir", agents=2_000, options={"beta": 0.03})
    experiment = Experiment.from_texts("bench-seir", ["latent_mean=3"], params=path, seed=4)
    assert experiment.scenario is BenchSEIR
    assert experiment.agents == 2_000  # the file's
    assert experiment.options["latent_mean"].value == 3.0
    assert experiment.options["beta"].value == 0.03  # the file's options, then --set
    model = experiment.model()
    assert float(model.layer("seir").beta.detach()) == pytest.approx(0.02)  # fitted values win
    again = Experiment.from_texts("bench-seir", ["latent_mean=3"], params=path, seed=4).model()
    with torch.no_grad():
        assert torch.equal(
            model.layer("seir").contacts()[0].place_index,  # the same population
            again.layer("seir").contacts()[0].place_index,
        )


def test_a_file_fitted_for_another_scenario_is_refused(tmp_path) -> None:
    path = tmp_path / "parameters.json"
    save_parameters(path, {"covid.beta": 0.05}, scenario="nyc-covid")
    with pytest.raises(ParamError, match="was fitted for nyc-covid, not bench-seir"):
        Experiment.from_texts("bench-seir", params=path)


def test_observed_options_need_a_start_date() -> None:
    with pytest.raises(ParamError, match="no observed data"):
        Experiment.from_texts("bench-seir", observed=True)
    experiment = Experiment.from_texts("bench-seir", agents=1_000)
    model = experiment.model()
    with pytest.raises(ParamError, match="no observed data to calibrate against"):
        experiment.calibration(model, days=5)


def test_parameters_have_labels_an_analyst_reads() -> None:
    """Sensitivity bars show these (the explorer's levers): the option's name, or the setting in words."""
    model = Experiment.from_texts("classroom", agents=3_000).model()
    assert model.label("covid.beta") == "beta"
    assert model.label("covid.settings.school.weight") == "school contacts (relative transmissibility)"
    assert model.label("covid.symptomatic_scale") == "symptomatic scale (covid)"  # no option: its layer named
    labels = [model.label(n) for n, _ in model.named_parameters()]
    assert not any("." in label for label in labels), labels
