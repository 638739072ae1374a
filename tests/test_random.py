"""Counter-based random streams (core/random.py): a draw depends on (seed, stream, day, index) only, so a
process holding agents 1000-1999 draws for them exactly what one process holding everyone draws; and the
numbers have the distributions they claim."""

from __future__ import annotations

import math

import pytest
import torch

from populace import RandomStreams


def test_a_draw_depends_on_its_index_only() -> None:
    streams = RandomStreams(7, "cpu")
    for draw in (streams.uniform, streams.exponential, streams.normal):
        everyone = draw("covid.threshold", 5_000, None)
        part = draw("covid.threshold", torch.arange(1_000, 2_000), None)
        assert torch.equal(part, everyone[1_000:2_000])
        picked = torch.tensor([4_999, 3, 3, 2_500])
        assert torch.equal(draw("covid.threshold", picked, None), everyone[picked])
    bits = streams.bits("seeds", 100)
    assert torch.equal(streams.bits("seeds", torch.arange(50, 100)), bits[50:])


def test_streams_days_and_seeds_differ() -> None:
    a = RandomStreams(1, "cpu")
    u = a.uniform("x", 10_000, 0)
    assert not torch.equal(u, a.uniform("x", 10_000, 1))
    assert not torch.equal(u, a.uniform("y", 10_000, 0))
    assert not torch.equal(u, RandomStreams(2, "cpu").uniform("x", 10_000, 0))
    assert torch.equal(u, RandomStreams(1, "cpu").uniform("x", 10_000, 0))
    # neighbouring streams are uncorrelated
    v = a.uniform("y", 10_000, 0)
    assert abs(float(torch.corrcoef(torch.stack([u, v]))[0, 1])) < 0.05


def test_distributions() -> None:
    n = 400_000
    streams = RandomStreams(3, "cpu")
    u = streams.uniform("u", n)
    assert float(u.min()) >= 0.0
    assert float(u.max()) < 1.0
    counts = torch.histc(u, bins=20, min=0.0, max=1.0)
    chi2 = float(((counts - n / 20) ** 2 / (n / 20)).sum())
    assert chi2 < 43.8  # 19 degrees of freedom, p = 0.001
    e = streams.exponential("e", n)
    assert float(e.mean()) == pytest.approx(1.0, abs=0.01)
    assert float(e.var()) == pytest.approx(1.0, abs=0.02)
    z = streams.normal("z", n)
    assert float(z.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(z.std()) == pytest.approx(1.0, abs=0.01)
    assert float((z.abs() > 1.96).float().mean()) == pytest.approx(0.05, abs=0.003)
    ln = streams.lognormal("l", n, 4.5, 1.5)
    assert float(ln.mean()) == pytest.approx(4.5, rel=0.01)
    assert float(ln.std()) == pytest.approx(1.5, rel=0.03)
    # serial correlation of consecutive counters
    assert abs(float(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1])) < 0.01
    assert math.isfinite(float(e.max()))


def test_choose_and_bad_input() -> None:
    streams = RandomStreams(0, "cpu")
    chosen = streams.choose("seeds", 1_000, 10)
    assert chosen.unique().numel() == 10
    with pytest.raises(ValueError, match="cannot choose 11 out of 10"):
        streams.choose("seeds", 10, 11)
    with pytest.raises(TypeError, match="expected int64"):
        streams.uniform("x", torch.arange(5, dtype=torch.int32))
    with pytest.raises(ValueError, match="at: expected a count"):
        streams.uniform("x", -1)
