"""The secret-shared simulation (core/private.py): servers are separate processes that only receive shares;
the private run's daily series equal the plaintext run's bit for bit; what a server receives looks uniform."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from populace import Model, Places, Simulation, launch
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


@pytest.mark.parametrize(
    ("scenario", "sets", "days"),
    [("bench-seir", [], 40), ("nyc-covid", ["seeds_per_100k=200"], 30)],
)
def test_private_series_equal_plaintext_bit_for_bit(
    tmp_path: Path, scenario: str, sets: list[str], days: int
) -> None:
    plain, private = tmp_path / "plain" / "out.json", tmp_path / "private" / "out.json"
    plain.parent.mkdir()
    private.parent.mkdir()
    _run(0, 1, scenario, sets, days, False, str(plain))  # plaintext, in this process
    launch(_run, 3, scenario, sets, days, True, str(private), threads=1)
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


def test_cli_run_private(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "populace", "run", "bench-seir", "--agents", "5000", "--days", "15"]
    plain = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True)
    private = subprocess.run([*cmd, "--json", "--private"], capture_output=True, text=True, check=True)
    first, traffic = private.stdout.splitlines()
    assert json.loads(first)["daily"] == json.loads(plain.stdout)["daily"]
    info = json.loads(traffic)["private"]
    assert info["servers"] == 2
    assert info["bytes_to_each_server_per_day"] >= 5000 * 8  # one share per agent and setting, at least
    bad = subprocess.run([*cmd, "--private", "--ranks", "2"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--private" in bad.stderr
