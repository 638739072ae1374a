"""The secret-shared simulation (core/private.py): servers are separate processes that only receive shares;
the private run's daily series equal the plaintext run's bit for bit; what a server receives looks uniform."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from populace import Model, Places, Simulation, launch
from populace.cli import main
from populace.contacts import EdgeNetwork
from populace.experiment import Experiment
from populace.layers import SEIR
from populace.private import SecretSums, ServerLink, serve, use_aggregation

AGENTS = 12_000


class _Recorder:
    """What a server receives, written to ``folder/server{rank}-{n}.pt`` (the first ``keep`` messages)."""

    def __init__(self, folder: str, rank: int, keep: int = 8) -> None:
        self.folder, self.rank, self.keep, self.n = folder, rank, keep, 0

    def __call__(self, command: int, body: torch.Tensor) -> None:
        if self.n < self.keep:
            torch.save((command, body.clone()), Path(self.folder) / f"server{self.rank}-{self.n}.pt")
        self.n += 1


CASES = {"bench-seir": ([], 40), "nyc-covid": (["seeds_per_100k=200"], 30)}


def _run(rank: int, ranks: int, scenario: str, sets: list[str], days: int, private: bool, out: str) -> None:
    if rank > 0:
        serve(devices=0, record=_Recorder(str(Path(out).parent), rank))
        return
    experiment = Experiment.from_texts(scenario, sets, agents=AGENTS, seed=3)
    model = experiment.model()
    link = ServerLink(list(range(1, ranks))) if private else None
    if link is not None:
        use_aggregation(model, SecretSums(link))
    try:
        result = Simulation(model, seed=3).run(days)
    finally:
        if link is not None:
            link.close()
    exchanges = 0 if link is None else link.log.exchanges
    Path(out).write_text(json.dumps({"series": result.to_columns(), "exchanges": exchanges}))


def _run_cases(rank: int, ranks: int, folder: str) -> None:
    """Every case of :data:`CASES` in turn, by the same three processes (the servers serve each run)."""
    for scenario, (sets, days) in CASES.items():
        _run(rank, ranks, scenario, sets, days, True, str(Path(folder) / scenario / "out.json"))


@pytest.fixture(scope="module")
def private_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The private runs of every case (one device process and two server processes, started once)."""
    folder = tmp_path_factory.mktemp("private")
    for scenario in CASES:
        (folder / scenario).mkdir()
    launch(_run_cases, 3, str(folder), threads=1)
    return folder


@pytest.mark.parametrize("scenario", list(CASES))
def test_private_series_equal_plaintext_bit_for_bit(
    tmp_path: Path, private_runs: Path, scenario: str
) -> None:
    sets, days = CASES[scenario]
    plain, private = tmp_path / "out.json", private_runs / scenario / "out.json"
    _run(0, 1, scenario, sets, days, False, str(plain))  # plaintext, in this process
    a, b = json.loads(plain.read_text()), json.loads(private.read_text())
    assert sum(a["series"]["new_infections"]) > 50  # an epidemic, not an empty run
    assert b["series"] == a["series"]
    assert b["exchanges"] >= days // 2  # the servers did the sums (none on days when nobody is infectious)

    # what each server received: one route (public structure), then shares only
    for rank in (1, 2):
        messages = [torch.load(p) for p in sorted(private.parent.glob(f"server{rank}-*.pt"))]
        assert messages[0][0] == 1  # the route
        shares = torch.cat([body for command, body in messages[1:] if command == 2])
        assert shares.numel() > 5 * AGENTS
        # plaintext fixed-point emissions are mostly 0 (most agents are not infectious) and small; shares
        # are uniform on Z/2^64: no zeros, every byte uniform, half negative
        assert float((shares == 0).double().mean()) < 1e-4
        assert abs(float((shares < 0).double().mean()) - 0.5) < 0.01
        for k in range(8):
            counts = torch.bincount((shares >> (8 * k)) & 0xFF, minlength=256).double()
            expected = shares.numel() / 256
            assert float(((counts - expected) ** 2 / expected).sum()) < 400  # chi-square, 255 dof


def test_per_agent_settings_are_refused_naming_the_setting() -> None:
    n = 200
    edges = EdgeNetwork("friends", n, torch.arange(n), (torch.arange(n) + 1) % n)
    model = Model([SEIR(n, [Places("household", torch.arange(n) // 4), edges], initial_infections=2)])
    # refused when the aggregation is set, before any message is sent
    with pytest.raises(TypeError, match="friends: a EdgeNetwork setting cannot run on secret shares"):
        use_aggregation(model, SecretSums(ServerLink([1, 2])))
    with pytest.raises(ValueError, match="servers: expected at least 2"):
        ServerLink([1])


def test_cli_run_private(capfd: pytest.CaptureFixture[str]) -> None:
    cmd = ["run", "bench-seir", "--agents", "5000", "--days", "15", "--json"]
    assert main(cmd) == 0  # in this process
    plain = capfd.readouterr().out
    assert main([*cmd, "--private"]) == 0  # the device and server processes print to this one's output
    first, traffic = capfd.readouterr().out.splitlines()
    assert json.loads(first)["daily"] == json.loads(plain)["daily"]
    info = json.loads(traffic)["private"]
    assert info["servers"] == 2
    assert info["bytes_to_each_server_per_day"] >= 5000 * 8  # one share per agent and setting, at least
    assert main([*cmd, "--private", "--ranks", "2"]) == 2
    assert "--private" in capfd.readouterr().err
