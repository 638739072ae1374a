"""Additive secret sharing on torch integer tensors: fixed-point numbers in the ring Z/2⁶⁴.

A real number ``x`` is encoded as the ``int64`` ``round(x · 2^bits)`` (:func:`encode`); ``int64`` addition
wraps modulo 2⁶⁴, so encoded numbers form the ring Z/2⁶⁴ and sums of encodings are encodings of sums (while
the true sum stays inside ``±2^(63 − bits)``). A secret ``s`` is split among ``parties`` servers as
``parties − 1`` uniformly random ring elements ``r_k`` and ``s − Σ r_k`` (:func:`share`); any
``parties − 1`` of the shares are uniformly distributed whatever ``s`` is, and the sum of all of them,
wrapping, is ``s`` (:func:`reconstruct`). Shares are *additively homomorphic*: a server that adds up the
shares it received from many devices holds a share of the sum of their secrets, so servers can sum per
place, per parameter or per anything without learning any addend (:func:`secure_sum`).

Threat model (the Prio / Exposure Notifications Private Analytics model):

* **Servers are honest but curious and do not collude.** Each follows the protocol but may record and
  analyse everything it receives. As long as at least one server keeps its shares to itself, what any
  coalition of the others sees is uniformly random, independent of every secret (information-theoretic: no
  computational assumption beyond the randomness of the masks).
* **Masks are drawn from the operating system's cryptographic generator** (``os.urandom``) by default;
  a seeded ``torch.Generator`` may be passed instead for reproducible tests only (predictable masks are not
  secret).
* **What is revealed is only what is reconstructed**: sums. A sum over many contributors is an aggregate;
  a "sum" over one contributor is that contributor's value, so what gets reconstructed is a protocol
  decision (see :mod:`populace.private` and :mod:`populace.private_calibration`), not something sharing
  protects against. Nor does sharing hide *who* sends, *how much* or *when*: protocols here send
  fixed-size messages on a fixed schedule so those reveal nothing data-dependent.
* **Not covered**: malicious servers (a server that alters its shares corrupts the sum undetected; Prio's
  validity proofs are out of scope), malicious devices (a device may submit any value in range), and
  side channels (timing, memory).

The fixed-point resolution is ``2^-bits`` (default :data:`BITS` = 24, the resolution of the exact
aggregation of :mod:`populace.distributed`, so the secret-shared simulation reproduces the plaintext one bit
for bit); values and their sums must stay inside ``±2^(63 − bits)`` (:func:`encode` checks the inputs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["BITS", "decode", "encode", "random_ring", "reconstruct", "secure_sum", "share"]

BITS = 24
"""Default fractional bits of the fixed-point encoding: resolution 2⁻²⁴ ≈ 6·10⁻⁸."""


def _check_bits(bits: int) -> None:
    if not 0 <= bits <= 52:
        raise ValueError(f"bits: expected 0 <= bits <= 52 fractional bits, got {bits}")


def encode(values: torch.Tensor, bits: int = BITS) -> torch.Tensor:
    """``int64`` ring elements ``round(values · 2^bits)`` (negative values wrap to the top of the ring).
    Raises ``ValueError`` for a value that is not finite or is outside ``±2^(62 − bits)`` (headroom for sums
    of a few contributors; sums of many must stay inside ``±2^(63 − bits)``)."""
    _check_bits(bits)
    if values.dtype.is_complex or not (values.dtype.is_floating_point or values.dtype == torch.int64):
        raise TypeError(f"values: expected a real tensor, got {values.dtype}")
    scaled = torch.round(values.detach().to(torch.float64) * float(2**bits))
    limit = float(2 ** (62))
    if scaled.numel() and not bool((scaled.abs() < limit).all()):
        bad = values.detach().reshape(-1)[~(scaled.reshape(-1).abs() < limit)][0]
        raise ValueError(
            f"values: {float(bad)!r} cannot be encoded with {bits} fractional bits "
            f"(expected finite values within ±{2.0 ** (62 - bits):.3g})"
        )
    return scaled.to(torch.int64)


def decode(ring: torch.Tensor, bits: int = BITS) -> torch.Tensor:
    """``float64`` values of ``int64`` ring elements (the top half of the ring are negatives). Exact while
    ``|ring| < 2⁵³``."""
    _check_bits(bits)
    if ring.dtype != torch.int64:
        raise TypeError(f"ring: expected an int64 tensor, got {ring.dtype}")
    return ring.to(torch.float64) * (2.0**-bits)


def random_ring(
    shape: Sequence[int] | torch.Size,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``int64`` elements uniform over all of Z/2⁶⁴. ``generator=None``: from ``os.urandom`` (cryptographic);
    a ``torch.Generator``: reproducible, for tests only."""
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if generator is None:
        raw = np.frombuffer(os.urandom(8 * count), dtype=np.int64).copy()
        return torch.from_numpy(raw).reshape(shape).to(device)
    # two 32-bit halves: (hi << 32) wraps over the whole ring, | lo fills the low half
    hi = torch.randint(0, 2**32, shape, dtype=torch.int64, generator=generator, device=generator.device)
    lo = torch.randint(0, 2**32, shape, dtype=torch.int64, generator=generator, device=generator.device)
    return ((hi << 32) | lo).to(device)


def share(
    secret: torch.Tensor, parties: int = 2, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """``parties`` additive shares of ``secret`` (``int64``, e.g. from :func:`encode`): all but the last
    are uniform masks, the last is ``secret − Σ masks`` (wrapping), so any ``parties − 1`` of them are
    uniform and independent of ``secret``."""
    if parties < 2:
        raise ValueError(f"parties: expected at least 2 servers to share among, got {parties}")
    if secret.dtype != torch.int64:
        raise TypeError(f"secret: expected an int64 tensor (see encode), got {secret.dtype}")
    masks = [random_ring(secret.shape, generator, secret.device) for _ in range(parties - 1)]
    last = secret.clone()
    for m in masks:
        last.sub_(m)
    return [*masks, last]


def reconstruct(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """The secret (``int64``) whose shares are ``shares``: their wrapping sum."""
    if not shares:
        raise ValueError("shares: expected at least one share")
    out = shares[0].clone()
    for s in shares[1:]:
        if s.shape != out.shape or s.dtype != torch.int64:
            raise ValueError(
                f"shares: expected int64 tensors shaped {tuple(out.shape)}, got {s.dtype} {tuple(s.shape)}"
            )
        out.add_(s)
    return out


def secure_sum(
    values: Sequence[torch.Tensor],
    parties: int = 2,
    bits: int = BITS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The sum of ``values`` (one tensor per contributor) computed as the protocol does, in one process:
    each contributor shares its encoded tensor, each server adds the shares it holds, and only the servers'
    totals are combined. ``float64``; equals the plaintext sum to within ``len(values) · 2^-(bits+1)``."""
    if not values:
        raise ValueError("values: expected at least one contributor")
    held: list[torch.Tensor] | None = None
    for v in values:
        shares = share(encode(v, bits), parties, generator)
        held = shares if held is None else [h.add_(s) for h, s in zip(held, shares, strict=True)]
    assert held is not None
    return decode(reconstruct(held), bits)
