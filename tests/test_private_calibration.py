"""Private calibration across data holders (core/private_calibration.py): the holders' losses add up to the
plaintext loss; without noise the fitted values equal plaintext calibration's (same streams and seeds); with
noise ε is reported, the reconstructed sum carries exactly the holders' noise and the fit stays sane; the
coordinator never holds an observed value.

The protocol runs with two holders (Manhattan and the Bronx; the other three boroughs: the streams' borough
columns summed by ``Stream.combine``), so 5 processes, not the 8 of one holder per borough: nothing it checks
depends on the number of holders (the CLI and benchmarks/bench_privacy.py run five)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

import pytest
import torch

from populace import launch
from populace.calibrate import Calibration, Stream
from populace.cli import main, private_calibrate as cli_private
from populace.experiment import Experiment
from populace.params import ParamError
from populace.private_calibration import (
    Holder,
    Roles,
    _public,
    clipped,
    coordinate,
    epsilon_for,
    hold,
    noise_for,
    relay,
    sensitivity,
)

AGENTS, DAYS, EPOCHS = 8_000, 35, 2
FIT = ["covid.beta", "covid.severe_scale", "covid.fatality_scale"]
SETS = ["seeds_per_100k=300", "beta=0.07", "fatality_scale=4", "hospital_death_days=8", "estimator=gumbel"]


GROUPS = {
    "Manhattan and the Bronx": ("Manhattan", "Bronx"),
    "the others": ("Brooklyn", "Queens", "Staten Island"),
}


def _build(groups: bool = True) -> tuple[torch.nn.Module, list[Stream]]:
    """The model and its hosp and deaths streams, by borough or (``groups``) by :data:`GROUPS`."""
    experiment = Experiment.from_texts("nyc-covid", SETS, agents=AGENTS, seed=0)
    model = experiment.model()
    streams = [s for s in experiment.observed(model, days=DAYS) if s.name in ("hosp", "deaths")]
    if not groups:
        return model, streams
    grouped = []
    for s in streams:
        assert s.combine is None
        combine = torch.zeros(len(s.labels), len(GROUPS))
        for j, members in enumerate(GROUPS.values()):
            for borough in members:
                combine[s.labels.index(borough), j] = 1.0
        observed = s.observed @ combine.to(s.observed)
        grouped.append(dataclasses.replace(s, observed=observed, labels=tuple(GROUPS), combine=combine))
    return model, grouped


def _rank(
    rank: int, ranks: int, out: str, columns: list[Holder], runs: list[tuple[float, float, int]]
) -> None:
    """One process of the protocol: the coordinator, a holder (given only its own columns) or a server; the
    same processes run one fit per ``(noise, clip, epochs)`` of ``runs``."""
    roles = Roles(len(columns), 2)
    role, i = roles.role(rank)
    results = []
    for noise, clip, epochs in runs:
        if role == "server":
            relay(roles, i)
        elif role == "holder":  # its own data, and nothing else
            hold(roles, i, columns[i], clip, noise, seed=100 + i)
        else:
            model, streams = _build()  # every fit starts from the same values
            fit = coordinate(roles, model, _public(streams), FIT, DAYS, epochs=epochs, clip=clip, noise=noise)
            results.append(fit.summary() | {"gradients": fit.gradients})
    if role == "coordinator":
        Path(out).write_text(json.dumps(results))


@functools.cache
def _sigma() -> float:
    """The noise multiplier of ε = 8 for one release (computed when a test asks, not at import: the
    spawned processes import this module, and dp-accounting with scipy would add seconds to each)."""
    return noise_for(8.0, 1, 1e-5)


@pytest.fixture(scope="module")
def private_fits(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Fits through the protocol (2 holders, 2 servers, the coordinator): no clipping or noise (two epochs:
    Adam's state carries over); clipped to 1, and clipped with noise for ε = 8 (one epoch each: the same
    first step, with and without the noise)."""
    _, streams = _build()
    holders = [Holder.of(streams, label) for label in streams[0].labels]
    out = tmp_path_factory.mktemp("private") / "fits.json"
    runs = [(0.0, math.inf, EPOCHS), (0.0, 1.0, 1), (_sigma(), 1.0, 1)]
    launch(_rank, 1 + len(holders) + 2, str(out), holders, runs, threads=1, timeout_s=600)
    return json.loads(out.read_text())


def test_holders_losses_add_up_to_the_plaintext_loss() -> None:
    model, streams = _build(groups=False)  # one holder per borough
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
    assert noisy["noise_multiplier"] == pytest.approx(_sigma())
    # clipped: every holder's gradient has norm <= 1, so the sum has norm <= 2 holders
    assert all(math.hypot(*g) <= 2.0 + 1e-9 for g in clipped["gradients"])
    assert max(math.hypot(*g) for g in clipped["gradients"]) > 1.0  # the bound is reached: clipping acts
    # the first step's sum (same start, same run) differs from the clipped one by the holders' noise
    # exactly: each holder adds N(0, (sigma * clip)^2 / holders) from its own generator
    holders = len(GROUPS)
    noise = sum(
        torch.randn(len(FIT), generator=torch.Generator().manual_seed(100 + b), dtype=torch.float64)
        * (_sigma() * 1.0 / math.sqrt(holders))
        for b in range(holders)
    )
    difference = torch.tensor(noisy["gradients"][0], dtype=torch.float64) - torch.tensor(
        clipped["gradients"][0], dtype=torch.float64
    )
    assert torch.allclose(difference, noise, atol=1e-9)
    assert float(noise.norm()) > 0.1  # sd sigma (0.6 for one release) per entry
    assert all(math.isfinite(v) for v in noisy["parameters"].values())
    assert all(math.isfinite(v) for v in noisy["nd"].values())


def test_clipping_by_norm_or_by_parameter_bounds_the_sensitivity() -> None:
    g = torch.tensor([0.4, -0.05, 0.007], dtype=torch.float64)
    by_norm = clipped(g, 0.1)
    assert float(by_norm.norm()) == pytest.approx(0.1)
    assert torch.allclose(by_norm / 0.1, g / g.norm())  # the direction kept: the small entries stay small
    each = clipped(g, 0.01, per_parameter=True)
    assert each.tolist() == pytest.approx([0.01, -0.01, 0.007])  # every parameter gets the same bound
    assert torch.equal(clipped(g, math.inf), g)
    # the bound on one holder's contribution, which the noise is scaled to
    assert sensitivity(0.1, 3, per_parameter=False) == 0.1
    assert sensitivity(0.01, 3, per_parameter=True) == pytest.approx(0.01 * math.sqrt(3))
    for _ in range(20):
        r = torch.randn(3, dtype=torch.float64) * 10
        assert float(clipped(r, 0.01, per_parameter=True).norm()) <= sensitivity(0.01, 3, True) + 1e-12


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


def test_cli_refuses_bad_privacy_arguments_before_starting_processes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("processes started before the arguments were checked")

    monkeypatch.setattr(cli_private, "launch", started)
    base = ["calibrate", "nyc-covid", "--private", "--agents", "8k"]
    for extra, named in (
        (["--epsilon", "lots"], "--epsilon"),
        (["--clip", "-1"], "--clip"),
        (["--streams", "cases"], "--streams"),
    ):
        assert main([*base, *extra]) == 2
        assert named in capsys.readouterr().err.strip().splitlines()[-1]
