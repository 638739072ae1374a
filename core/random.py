"""Named random streams: common random numbers without the global RNG.

Every random decision draws from its own ``torch.Generator``, seeded from a stable hash of
(base seed, stream name, day). Consequences:

* the same seed gives bit-identical results on the same device;
* changing one layer's parameters or draw count does not reshuffle another layer's draws;
* a day can be recomputed (gradient checkpointing) and sees exactly the same numbers.
"""

from __future__ import annotations

import hashlib

import torch

from .plugins import did_you_mean

__all__ = ["RandomStreams"]


class RandomStreams:
    """Factory of seeded generators for one simulation.

    Args:
        seed: base seed of the run.
        device: device the generators (and the numbers they draw) live on.
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
        """The 63-bit seed of stream ``name`` on ``day`` (``None``: a stream used once, at set-up). With
        ``declared`` (a simulation's: its model's :meth:`~populace.Model.stream_names`), a name outside it is
        a ``LookupError``: a misspelt stream would otherwise draw numbers of its own, silently."""
        if self.declared is not None and name not in self.declared:
            hint = did_you_mean(name, self.declared)
            raise LookupError(
                f"random stream {name!r} is not declared by any layer of the model{hint}; a layer lists the "
                "streams it draws from in stream_names()"
            )
        key = f"{self.seed}/{name}/{'init' if day is None else day}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    def generator(self, name: str, day: int | None = None) -> torch.Generator:
        """A fresh generator for stream ``name`` on ``day``."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed_of(name, day))
        return generator

    def uniform(self, name: str, n: int, day: int | None = None) -> torch.Tensor:
        """``float32[n]`` uniform on [0, 1)."""
        return torch.rand(n, generator=self.generator(name, day), device=self.device)

    def exponential(self, name: str, n: int, day: int | None = None) -> torch.Tensor:
        """``float32[n]`` Exp(1) draws."""
        out = torch.empty(n, device=self.device)
        return out.exponential_(generator=self.generator(name, day))

    def lognormal(self, name: str, n: int, mean: float, sd: float, day: int | None = None) -> torch.Tensor:
        """``float32[n]`` lognormal draws with the given mean and standard deviation (not log-space ones)."""
        if mean <= 0 or sd < 0:
            raise ValueError(f"lognormal {name}: need mean > 0 and sd >= 0, got mean={mean}, sd={sd}")
        sigma2 = torch.log1p(torch.tensor((sd / mean) ** 2, dtype=torch.float64))
        mu = float(torch.log(torch.tensor(mean, dtype=torch.float64)) - sigma2 / 2)
        out = torch.empty(n, device=self.device)
        return out.log_normal_(mu, float(sigma2.sqrt()), generator=self.generator(name, day))

    def choose(self, name: str, n: int, k: int, day: int | None = None) -> torch.Tensor:
        """``int64[k]``: ``k`` distinct indices out of ``n``, uniformly."""
        if not 0 <= k <= n:
            raise ValueError(f"choose {name}: cannot choose {k} out of {n}")
        return torch.topk(self.uniform(name, n, day), k, sorted=False).indices
