"""The secret-shared simulation: agents' infectious states never leave their devices in the clear.

The place aggregation (:mod:`populace.aggregation`) is the one step of a day where agents' states meet: every
place's pressure is the sum of what its infectious members emit. :class:`SecretSums` does that step on
additive secret shares (:mod:`populace.secret`):

1. **Devices share.** Every device holds its own agent's emission into each of its settings (``0`` when not
   infectious), encodes it in fixed point (2⁻²⁴, the grid of the exact plaintext sums) and sends one
   uniformly random share to each server: *every* agent, *every* day, *every* setting, so the pattern of
   messages says nothing about who is infectious.
2. **Servers add shares per place.** Each server (a separate process: :func:`serve`) knows the public
   contact structure (which place each agent's share goes to: the synthetic population's places, sent once)
   and adds the shares it received per place (``index_add`` on ``int64``, wrapping). It holds a share of
   every place's pressure and nothing else.
3. **Devices reconstruct their own pressure.** Each device fetches, from every server, the share-sums of
   its own places and adds them: the pressure of its places, exactly. It then draws its own infection
   locally, as in the plaintext run.

Because the plaintext run's sums are exact too (multiples of 2⁻²⁴ summed in ``float64``), the private run's
daily series equal the plaintext run's bit for bit (same seed).

What each party sees (threat model of :mod:`populace.secret`: honest-but-curious, non-colluding servers):

* **a server**: the public structure (each agent's place in each setting), then per day one share per agent
  per setting, uniform on Z/2⁶⁴ whatever the emission; it never sees an emission, a place's pressure, or
  who is infectious. Two colluding servers (all of them) would see every agent's emission.
* **a device**: its own state, and the pressure of its own places, which is what a plaintext simulation
  would give it anyway (how much infection there is where it goes, not who is infectious).
* **the timing**: the infection core skips a day's sums when nobody in the whole population is infectious
  (no exchange that day), which tells the servers that aggregate; in a deployment every device would send
  its (zero) shares every day regardless.
* **in this implementation** the devices are simulated by one process holding all agents (the issue allows
  it); it fetches the share-sums of every place, because together its agents attend all of them. In a
  deployment each device would ask for its own places' entries only (their indices are public, so the
  request reveals nothing new).

Scope: settings whose pressure is kept per place or per cell (:class:`~populace.contacts.Places`,
:class:`~populace.contacts.AgeMixing`); per-agent structures (edge networks, distance kernels) would hand a
device each neighbour's own emission, so they are refused. Fast mode only (no gradient through shares), and
one device process (``--ranks`` is not combined with ``--private``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from .aggregation import Aggregation
from .contacts import AgeMixing, Contacts, Places
from .distributed import RankFailed, Shard, exact, launch
from .model import Model
from .secret import BITS, decode, encode, reconstruct, share

__all__ = ["SecretSums", "ServerLink", "TrafficLog", "run_private", "serve", "use_aggregation"]

_STOP, _ROUTE, _SHARES = 0, 1, 2
_HEADER = 4  # int64: command, key, length, cells


@dataclass
class TrafficLog:
    """Bytes the devices sent to and received from each server, and the number of exchanges."""

    sent: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    exchanges: int = 0


class ServerLink:
    """The devices' side of the connection to the servers (ranks ``servers`` of the default process group).

    ``register`` sends a public route (the place each entry of a share vector goes to) once; ``exchange``
    sends one share vector to each server and returns each server's per-place sums of the shares."""

    def __init__(self, servers: Sequence[int], generator: torch.Generator | None = None) -> None:
        if len(servers) < 2:
            raise ValueError(f"servers: expected at least 2 non-colluding servers, got {len(servers)}")
        self.servers = list(servers)
        self.generator = generator
        self.log = TrafficLog([0] * len(servers), [0] * len(servers))
        self._routes: dict[int, int] = {}  # key -> cells

    def _send(self, k: int, command: int, key: int, body: torch.Tensor | None, cells: int) -> None:
        length = 0 if body is None else body.numel()
        header = torch.tensor([command, key, length, cells], dtype=torch.int64)
        dist.send(header, dst=self.servers[k])
        self.log.sent[k] += header.numel() * 8
        if body is not None:
            dist.send(body.contiguous(), dst=self.servers[k])
            self.log.sent[k] += body.numel() * 8

    def register(self, route: torch.Tensor, cells: int) -> int:
        """Send ``route`` (``int64[entries]``, values in ``[0, cells)``) to every server; its key."""
        key = len(self._routes)
        self._routes[key] = cells
        for k in range(len(self.servers)):
            self._send(k, _ROUTE, key, route.to(torch.int64).cpu(), cells)
        return key

    def exchange(self, key: int, shares: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Send ``shares[k]`` to server ``k``; each server's per-place sums (``int64[cells]``)."""
        cells = self._routes[key]
        for k, s in enumerate(shares):
            self._send(k, _SHARES, key, s.cpu(), cells)
        out = []
        for k in range(len(self.servers)):
            total = torch.empty(cells, dtype=torch.int64)
            dist.recv(total, src=self.servers[k])
            self.log.received[k] += cells * 8
            out.append(total)
        self.log.exchanges += 1
        return out

    def close(self) -> None:
        """Tell every server to stop."""
        for k in range(len(self.servers)):
            self._send(k, _STOP, 0, None, 0)


def serve(devices: int = 0, record: Callable[[int, torch.Tensor], None] | None = None) -> int:
    """A server's loop (in its own process): keep the routes it is sent, add the shares of each exchange per
    place and send the sums back to ``devices`` (its rank), until told to stop. ``record(command, body)``
    sees every message body it receives (tests inspect what a server learns). Returns the exchanges."""
    routes: dict[int, tuple[torch.Tensor, int]] = {}
    exchanges = 0
    while True:
        header = torch.empty(_HEADER, dtype=torch.int64)
        dist.recv(header, src=devices)
        command, key, length, cells = (int(v) for v in header)
        if command == _STOP:
            return exchanges
        body = torch.empty(length, dtype=torch.int64)
        dist.recv(body, src=devices)
        if record is not None:
            record(command, body)
        if command == _ROUTE:
            if length and (int(body.min()) < 0 or int(body.max()) >= cells):
                raise ValueError(f"route {key}: places outside [0, {cells})")
            routes[key] = (body, cells)
        elif command == _SHARES:
            route, cells = routes[key]
            if length != route.numel():
                raise ValueError(f"shares for route {key}: {length} entries, expected {route.numel()}")
            total = torch.zeros(cells, dtype=torch.int64).index_add_(0, route, body)  # wraps mod 2^64
            dist.send(total, dst=devices)
            exchanges += 1
        else:
            raise ValueError(f"unknown command {command} from the devices")


def _route(contacts: Contacts) -> tuple[torch.Tensor, int]:
    """Each agent's place (cell) in ``contacts`` and the number of places (with the non-members' slot)."""
    if isinstance(contacts, Places):
        return contacts.place_index.to(torch.int64), contacts.n_places + 1
    if isinstance(contacts, AgeMixing):
        return contacts.cell_index.to(torch.int64), contacts.n_groups * contacts.bands + 1
    raise TypeError(
        f"{contacts.name}: a {type(contacts).__name__} setting cannot run on secret shares (its pressure is "
        "per agent, so a device would see its neighbours' own emissions); the private mode supports "
        "places and age-mixing settings"
    )


class SecretSums(Aggregation):
    """Per-place sums on secret shares (see the module doc). Between days it keeps, per setting, every
    agent's own emission (``float64[agents]``, on the 2⁻²⁴ grid): the devices' local state."""

    def __init__(self, link: ServerLink, bits: int = BITS) -> None:
        self.link, self.bits = link, bits
        self._keys: dict[tuple[int, ...], int] = {}

    def empty(self, contacts: Contacts) -> torch.Tensor:
        route, _ = _route(contacts)
        return torch.zeros(route.numel(), dtype=torch.float64, device=route.device)

    def add(
        self, contacts: Contacts, pressure: torch.Tensor, agents: torch.Tensor, emitted: torch.Tensor
    ) -> torch.Tensor:
        if emitted.requires_grad or pressure.requires_grad:
            raise RuntimeError("the private mode runs without gradients (fast mode: grad=None)")
        return pressure.index_add_(0, agents, exact(emitted))

    def total(
        self, settings: Sequence[Contacts], sums: Sequence[torch.Tensor], shard: Shard
    ) -> list[torch.Tensor]:
        if shard.spans:
            raise ValueError("the private mode runs the devices in one process (not with --ranks)")
        key = self._keys.get(tuple(id(c) for c in settings))
        routes = [_route(c) for c in settings]
        cells = [n for _, n in routes]
        if key is None:
            offsets = torch.tensor([0, *cells[:-1]]).cumsum(0).tolist()
            joined = torch.cat([r + o for (r, _), o in zip(routes, offsets, strict=True)])
            key = self.link.register(joined, sum(cells))
            self._keys[tuple(id(c) for c in settings)] = key
        emissions = torch.cat([s.reshape(-1) for s in sums])
        shares = share(encode(emissions.cpu(), self.bits), len(self.link.servers), self.link.generator)
        totals = reconstruct(self.link.exchange(key, shares))
        pressure = decode(totals, self.bits).to(emissions.device)
        return list(pressure.split(cells))

    def force(
        self,
        contacts: Contacts,
        pressure: torch.Tensor,
        scale: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return contacts.force(pressure, scale, out=out)


def use_aggregation(model: Model, aggregation: Aggregation) -> int:
    """Make every disease layer of ``model`` sum its places with ``aggregation`` (before the simulation
    draws its state); the number of layers changed. Raises ``TypeError`` for a setting it cannot handle."""
    layers: list[Any] = [
        layer for layer in model.layers if isinstance(getattr(layer, "aggregation", None), Aggregation)
    ]
    for layer in layers:
        for contacts in layer.contacts():
            if isinstance(aggregation, SecretSums):
                _route(contacts)
        layer.aggregation = aggregation
    return len(layers)


# ---------------------------------------------------------------------- populace run --private
def run_private(command: Any, args: argparse.Namespace, servers: int, timeout_s: float) -> int:
    """``populace run ... --private``: the simulation in a device process and ``servers`` server processes
    (gloo over loopback); prints what ``populace run`` prints, plus the traffic per server."""
    try:
        launch(_private_rank, 1 + servers, command, args, servers, timeout_s=timeout_s)
    except RankFailed as exc:
        print(f"populace run: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("populace run: interrupted; every process stopped", file=sys.stderr)
        return 130
    return 0


def _private_rank(rank: int, ranks: int, command: Any, args: argparse.Namespace, servers: int) -> None:
    if rank > 0:
        serve(devices=0)
        return
    link = ServerLink(list(range(1, ranks)))
    t0 = time.perf_counter()
    try:
        code = command.on_shard(args, None, aggregation=SecretSums(link))
    finally:
        link.close()
    if code:
        raise RuntimeError(f"the run ended with exit code {code}")
    days = max(1, link.log.exchanges)
    traffic = {
        "servers": servers,
        "exchanges": link.log.exchanges,
        "bytes_to_each_server_per_day": round(link.log.sent[0] / days),
        "bytes_from_each_server_per_day": round(link.log.received[0] / days),
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    if args.json:
        print(json.dumps({"private": traffic}))
    else:
        print(
            f"private: {servers} servers, {link.log.exchanges} exchanges; per day each server received "
            f"{traffic['bytes_to_each_server_per_day'] / 1e6:.2f} MB of shares and sent back "
            f"{traffic['bytes_from_each_server_per_day'] / 1e6:.2f} MB"
        )
