"""Additive secret sharing (core/secret.py): exact reconstruction (wrap-around, negatives), one server's view
is uniform whatever the secret, and secure sums equal plaintext sums within the fixed-point resolution."""

from __future__ import annotations

import pytest
import torch

from populace.secret import BITS, decode, encode, random_ring, reconstruct, secure_sum, share

TOP = torch.iinfo(torch.int64).max
BOTTOM = torch.iinfo(torch.int64).min


def test_shares_reconstruct_exactly_including_wrap_around_and_negatives() -> None:
    g = torch.Generator().manual_seed(1)
    secret = torch.tensor([0, 1, -1, TOP, BOTTOM, TOP - 5, BOTTOM + 7, -(2**40), 2**62], dtype=torch.int64)
    for parties in (2, 3, 5):
        shares = share(secret, parties, g)
        assert len(shares) == parties
        assert torch.equal(reconstruct(shares), secret)
    # the masks really wrap: at least one share pair overflows int64 when added
    a, b = share(secret, 2, g)
    assert bool(((a > 0) & (b > 0) & (a + b < 0)).any() or ((a < 0) & (b < 0) & (a + b >= 0)).any())
    # from os.urandom (the default) too
    assert torch.equal(reconstruct(share(secret, 3)), secret)


def test_encoding_round_trips_negatives_and_refuses_out_of_range() -> None:
    x = torch.tensor([-3.25, 0.0, 1e-7, -1e-7, 12345.5, -(2.0**30)], dtype=torch.float64)
    back = decode(encode(x))
    assert torch.all((back - x).abs() <= 2.0 ** -(BITS + 1))
    assert float(decode(encode(torch.tensor([-1.0])))[0]) == -1.0
    with pytest.raises(ValueError, match="values"):
        encode(torch.tensor([2.0**40]))
    with pytest.raises(ValueError, match="values"):
        encode(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="parties"):
        share(encode(x), 1)
    with pytest.raises(TypeError, match="secret"):
        share(x, 2)


def _byte_chi2(values: torch.Tensor) -> list[float]:
    """Chi-square statistic (255 degrees of freedom) of each of the 8 bytes of ``values`` against uniform."""
    out = []
    for k in range(8):
        byte = (values >> (8 * k)) & 0xFF
        counts = torch.bincount(byte, minlength=256).double()
        expected = values.numel() / 256
        out.append(float(((counts - expected) ** 2 / expected).sum()))
    return out


@pytest.mark.parametrize("secret_value", [0, 1, -1, 123_456_789])
def test_one_servers_view_is_uniform_whatever_the_secret(secret_value: int) -> None:
    n = 200_000
    secret = torch.full((n,), secret_value, dtype=torch.int64)
    for parties in (2, 3):
        shares = share(secret, parties)
        for view in shares:  # any single share, the masks and the last one alike
            # chi-square with 255 dof: mean 255, sd ~22.6; 400 is beyond 6 sd (false alarm ~1e-9)
            assert max(_byte_chi2(view)) < 400
            # sign bit and mean: a secret-dependent bias would show here
            assert abs(float((view < 0).double().mean()) - 0.5) < 0.01
    # a constant secret with no masking fails the same test (the test can fail)
    assert max(_byte_chi2(secret)) > 10_000


def test_two_secrets_give_indistinguishable_views() -> None:
    n = 100_000
    a = share(torch.zeros(n, dtype=torch.int64), 2)[1]
    b = share(torch.full((n,), 2**40, dtype=torch.int64), 2)[1]
    # two-sample Kolmogorov-Smirnov on the top 32 bits: critical value at alpha = 1e-6 is about 0.0118
    ta, tb = torch.sort((a >> 32).double()).values, torch.sort((b >> 32).double()).values
    grid = torch.cat([ta, tb]).sort().values
    ecdf_a = torch.searchsorted(ta, grid, right=True).double() / n
    ecdf_b = torch.searchsorted(tb, grid, right=True).double() / n
    assert float((ecdf_a - ecdf_b).abs().max()) < 0.012


def test_random_ring_covers_the_whole_ring_reproducibly() -> None:
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x, y = random_ring((50_000,), g1), random_ring((50_000,), g2)
    assert torch.equal(x, y)
    assert max(_byte_chi2(x)) < 400
    assert int(x.min()) < -(2**62)
    assert int(x.max()) > 2**62
    assert not torch.equal(random_ring((4,)), random_ring((4,)))  # os.urandom differs each call


def test_secure_sum_equals_plaintext_sum_within_resolution() -> None:
    g = torch.Generator().manual_seed(3)
    values = [torch.randn(1_000, generator=g, dtype=torch.float64) * 1000 for _ in range(50)]
    plain = torch.stack(values).sum(0)
    for parties in (2, 3):
        secure = secure_sum(values, parties)
        assert float((secure - plain).abs().max()) <= len(values) * 2.0 ** -(BITS + 1) + 1e-9
    # values already on the grid (multiples of 2^-24, as the simulation's emissions) sum exactly
    on_grid = [torch.round(v * 2**BITS) / 2**BITS for v in values]
    assert torch.equal(secure_sum(on_grid), torch.stack(on_grid).sum(0))
    # negative totals and wrap-around of the shares: still exact
    total = secure_sum([torch.tensor([-5.0, 3.0]), torch.tensor([-7.5, -3.0])])
    assert torch.equal(total, torch.tensor([-12.5, 0.0], dtype=torch.float64))
