"""Private calibration across data holders (core/private_calibration.py): the holders' losses add up to the
plaintext loss; without noise the fitted values equal plaintext calibration's (same streams and seeds); with
noise ε is reported and the fit stays sane; the coordinator never holds an observed value."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from populace import launch
from populace.calibrate import Calibration, Stream
from populace.experiment import Experiment
from populace.params import ParamError
from populace.private_calibration import (
    Holder,
    Roles,
    _public,
    coordinate,
    epsilon_for,
    hold,
    noise_for,
    relay,
)

AGENTS, DAYS, EPOCHS = 8_000, 35, 2
FIT = ["covid.beta", "covid.severe_scale", "covid.fatality_scale"]
SETS = ["seeds_per_100k=300", "beta=0.07", "fatality_scale=4", "hospital_death_days=8", "estimator=gumbel"]


def _build() -> tuple[torch.nn.Module, list[Stream]]:
    experiment = Experiment.from_texts("nyc-covid", SETS, agents=AGENTS, seed=0)
    model = experiment.model()
    streams = [s for s in experiment.observed(model, days=DAYS) if s.name in ("hosp", "deaths")]
    return model, streams


def _rank(rank: int, ranks: int, out: str, columns: list[Holder], runs: list[tuple[float, float]]) -> None:
    """One process of the protocol: the coordinator, a holder (given only its own columns) or a server; the
    same processes run one fit per ``(noise, clip)`` of ``runs``."""
    roles = Roles(len(columns), 2)
    role, i = roles.role(rank)
    model = _build()[0] if role == "coordinator" else None
    results = []
    for noise, clip in runs:
        if role == "server":
            relay(roles, i)
        elif role == "holder":  # its own data, and nothing else
            hold(roles, i, columns[i], clip, noise, seed=100 + i)
        else:
            assert model is not None
            _, streams = _build()
            fit = coordinate(roles, model, _public(streams), FIT, DAYS, epochs=EPOCHS, clip=clip, noise=noise)
            results.append(fit.summary() | {"gradients": fit.gradients})
            model = _build()[0]  # the next fit starts from the same values
    if role == "coordinator":
        Path(out).write_text(json.dumps(results))


SIGMA = noise_for(8.0, EPOCHS, 1e-5)
RUNS = [(0.0, math.inf), (0.0, 1.0), (SIGMA, 1.0)]


@pytest.fixture(scope="module")
def private_fits(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Fits through the protocol (8 processes): no clipping or noise; clipped to 1; clipped with noise for
    ε = 8."""
    _, streams = _build()
    holders = [Holder.of(streams, label) for label in streams[0].labels]
    out = tmp_path_factory.mktemp("private") / "fits.json"
    launch(_rank, 1 + len(holders) + 2, str(out), holders, RUNS, threads=1, timeout_s=600)
    return json.loads(out.read_text())


def test_holders_losses_add_up_to_the_plaintext_loss() -> None:
    model, streams = _build()
    calibration = Calibration(model, streams, fit=FIT, log_weight=0.1)
    predictions = {s.name: torch.rand(DAYS, 5) * 3 for s in streams}
    whole = sum(calibration.losses(predictions).values())
    parts = 0.0
    for b, label in enumerate(streams[0].labels):
        holder = Holder.of(streams, label, log_weight=0.1)
        parts += float(holder.loss({n: p[:, b : b + 1] for n, p in predictions.items()}))
    assert parts == pytest.approx(float(whole), rel=1e-5)
    # the coordinator's copies of the streams carry no observed value
    assert all(bool(torch.isnan(s.observed).all()) for s in _public(streams))
    with pytest.raises(ParamError, match="holder 'Narnia'"):
        Holder.of(streams, "Narnia")


def test_private_fit_without_noise_equals_plaintext_calibration(private_fits: list[dict]) -> None:
    model, streams = _build()
    plain = Calibration(model, streams, fit=FIT, log_weight=0.0).fit(
        DAYS, epochs=EPOCHS, seed=0, evaluate=1, grad="full"
    )
    private = private_fits[0]
    assert private["epsilon"] == "inf"
    for name in FIT:
        assert private["parameters"][name] == pytest.approx(plain.parameters[name], rel=1e-5), name
    # the holders' pooled ND (from secret-shared sums) equals the plaintext metric
    for stream, nd in private["nd"].items():
        assert nd == pytest.approx(plain.metrics[stream]["nd"], rel=1e-5)
    # and the fit moved: the steps were not zero
    assert any(abs(g) > 1e-3 for g in private["gradients"][0])


def test_private_fit_with_noise_reports_epsilon(private_fits: list[dict]) -> None:
    _, clipped, noisy = private_fits
    assert noisy["epsilon"] == pytest.approx(8.0, rel=0.02)
    assert noisy["noise_multiplier"] == pytest.approx(SIGMA)
    # clipped: every holder's gradient has norm <= 1, so the sum has norm <= 5 holders
    assert all(math.hypot(*g) <= 5.0 + 1e-9 for g in clipped["gradients"])
    # noise of sd sigma * clip on the sum: the steps differ, every value stays finite
    assert noisy["gradients"] != clipped["gradients"]
    for name, value in noisy["parameters"].items():
        assert math.isfinite(value)
        assert value != pytest.approx(clipped["parameters"][name], rel=1e-9)
    assert all(math.isfinite(v) for v in noisy["nd"].values())


def test_epsilon_accounting() -> None:
    assert math.isinf(epsilon_for(0.0, 10, 1e-5))
    eps = [epsilon_for(s, 20, 1e-5) for s in (0.5, 1.0, 2.0, 4.0)]
    assert eps == sorted(eps, reverse=True)  # more noise, less privacy spent
    assert epsilon_for(1.0, 40, 1e-5) > epsilon_for(1.0, 20, 1e-5)  # more epochs, more spent
    for target in (1.0, 8.0):
        assert epsilon_for(noise_for(target, 30, 1e-5), 30, 1e-5) == pytest.approx(target, rel=0.01)
    assert noise_for(math.inf, 30, 1e-5) == 0.0
    with pytest.raises(ValueError, match="epsilon"):
        noise_for(-1.0, 30, 1e-5)


def test_cli_refuses_bad_privacy_arguments_before_starting_processes() -> None:
    base = [sys.executable, "-m", "populace", "calibrate", "nyc-covid", "--private", "--agents", "8k"]
    for extra, named in (
        (["--epsilon", "lots"], "--epsilon"),
        (["--clip", "-1"], "--clip"),
        (["--streams", "cases"], "--streams"),
    ):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert named in done.stderr.strip().splitlines()[-1]
