"""Named random streams: common random numbers without the global RNG, addressed by counter.

Every random decision draws from its own stream, keyed by (base seed, stream name, day). Within a stream,
value ``i`` is a pure function of the key and ``i`` (a counter-based generator: SplitMix64's output
function over ``key + (i + 1) · γ``, Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
generators", OOPSLA). Consequences:

* the same seed gives bit-identical results, on any device;
* changing one layer's parameters or draw count does not reshuffle another layer's draws;
* a day can be recomputed (gradient checkpointing) and sees exactly the same numbers;
* **a draw for an agent depends on its global index only**: a population split over several processes
  (:mod:`populace.distributed`) draws, for each of its agents, the number a single process would draw, so
  results do not depend on the number of processes.

Per-agent draws take the agents' global indices (``ctx.shard.agents``, or a subset of it); draws of
``n`` things that are not agents take ``n`` (counters ``0 … n − 1``). :meth:`RandomStreams.generator` gives
a seeded ``torch.Generator`` for work that is not split over processes (building a population, a shuffled
queue of a few thousand candidates).
"""

from __future__ import annotations

import hashlib
import math

import torch

from .plugins import did_you_mean

__all__ = ["RandomStreams"]


def _signed(value: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return value - (1 << 64) if value >= 1 << 63 else value


_GAMMA = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)


def _shr(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (z >> bits).bitwise_and_((1 << (64 - bits)) - 1)


def _mix_(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on int64 bit patterns (wrapping multiplication), in place: ``z``."""
    shifted = torch.empty_like(z)
    for bits, factor in ((30, _M1), (27, _M2), (31, None)):
        torch.bitwise_right_shift(z, bits, out=shifted).bitwise_and_((1 << (64 - bits)) - 1)
        z.bitwise_xor_(shifted)
        if factor is not None:
            z.mul_(factor)
    return z


def _to_unit(bits: torch.Tensor) -> torch.Tensor:
    """``float32`` uniform on [0, 1) from the top 24 of 64 random bits."""
    return _shr(bits, 40).to(torch.float32).mul_(2.0**-24)


class RandomStreams:
    """Counter-based random numbers for one simulation (see the module docs).

    Args:
        seed: base seed of the run.
        device: device the numbers are drawn on.
        declared: the stream names a model declares (:meth:`~populace.Model.stream_names`); any other name
            is refused, so a misspelt stream cannot draw numbers of its own.
    """

    def __init__(
        self, seed: int, device: torch.device | str, *, declared: frozenset[str] | None = None
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self.seed = seed
        self.device = torch.device(device)
        self.declared = declared

    def seed_of(self, name: str, day: int | None = None) -> int:
        """The 63-bit key of stream ``name`` on ``day`` (``None``: a stream used once, at set-up)."""
        if self.declared is not None and name not in self.declared:
            hint = did_you_mean(name, self.declared)
            raise LookupError(
                f"random stream {name!r} is not declared by any layer of the model{hint}; a layer lists the "
                "streams it draws from in stream_names()"
            )
        key = f"{self.seed}/{name}/{'init' if day is None else day}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    def generator(self, name: str, day: int | None = None) -> torch.Generator:
        """A fresh ``torch.Generator`` for stream ``name`` on ``day`` (work that is never split over
        processes: per-agent draws use :meth:`uniform` and the others, which are addressed by index)."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed_of(name, day))
        return generator

    def _counters(self, at: int | torch.Tensor) -> torch.Tensor:
        if isinstance(at, torch.Tensor):
            if at.dtype != torch.int64 or at.dim() != 1:
                raise TypeError(f"at: expected int64[k] indices, got {at.dtype}{list(at.shape)}")
            return at.to(self.device)
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ValueError(f"at: expected a count or int64 indices, got {at!r}")
        return torch.arange(at, device=self.device)

    def bits(self, name: str, at: int | torch.Tensor, day: int | None = None) -> torch.Tensor:
        """``int64[k]`` 64 random bits for each index of ``at`` (``int``: indices ``0 … at − 1``)."""
        key = self.seed_of(name, day)
        return _mix_(self._counters(at).add(1).mul_(_GAMMA).add_(key))

    def uniform(self, name: str, at: int | torch.Tensor, day: int | None = None) -> torch.Tensor:
        """``float32[k]`` uniform on [0, 1), 24 random bits each."""
        return _to_unit(self.bits(name, at, day))

    def exponential(self, name: str, at: int | torch.Tensor, day: int | None = None) -> torch.Tensor:
        """``float32[k]`` Exp(1) draws (by inversion)."""
        return self.uniform(name, at, day).neg_().log1p_().neg_()

    def normal(self, name: str, at: int | torch.Tensor, day: int | None = None) -> torch.Tensor:
        """``float32[k]`` standard normal draws (Box–Muller on two uniforms from one counter)."""
        bits = self.bits(name, at, day)
        radius = _to_unit(bits).neg_().log1p_().mul_(-2.0).sqrt_()
        angle = _to_unit(_mix_(bits.bitwise_xor_(_GAMMA))).mul_(2 * math.pi).cos_()
        return radius.mul_(angle)

    def lognormal(
        self, name: str, at: int | torch.Tensor, mean: float, sd: float, day: int | None = None
    ) -> torch.Tensor:
        """``float32[k]`` lognormal draws with the given mean and standard deviation (not log-space ones)."""
        if mean <= 0 or sd < 0:
            raise ValueError(f"lognormal {name}: need mean > 0 and sd >= 0, got mean={mean}, sd={sd}")
        sigma2 = math.log1p((sd / mean) ** 2)
        mu = math.log(mean) - sigma2 / 2
        return self.normal(name, at, day).mul_(math.sqrt(sigma2)).add_(mu).exp_()

    def choose(self, name: str, n: int, k: int, day: int | None = None) -> torch.Tensor:
        """``int64[k]``: ``k`` distinct indices out of ``n``, uniformly (the ``k`` smallest keys; for agents
        split over processes, :meth:`~populace.distributed.Shard.smallest` does the same across them)."""
        if not 0 <= k <= n:
            raise ValueError(f"choose {name}: cannot choose {k} out of {n}")
        return torch.topk(self.bits(name, n, day), k, largest=False, sorted=False).indices
