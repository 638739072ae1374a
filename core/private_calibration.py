"""Private calibration across data holders: the simulation goes to the data, the data never leave.

Each **data holder** (a borough's health department, a hospital) keeps its own observed series in its own
process. A **coordinator** runs the public model (the synthetic population) and two or more
**non-colluding servers** add secret shares (:mod:`populace.secret`). One epoch:

1. The coordinator runs the model with forward-mode AD (one run per fitted parameter,
   ``torch.autograd.forward_ad``) and sends holder ``b`` its column of every stream's prediction and their
   Jacobian with respect to the fitted parameters (in the optimiser's unconstrained space): ``days × P``
   numbers per stream, all of them computed from the public model only.
2. Holder ``b`` computes its own loss (the calibration's loss restricted to its columns, so the holders'
   losses add up to the plaintext loss) and its gradient ``g_b = Σ_streams Jᵀ ∂L_b/∂prediction``; clips it
   (to L2 norm ``clip``, or with ``per_parameter`` each entry to ``[−clip, clip]``: sensitivity
   ``Δ = clip · √P``); adds its share of Gaussian noise, ``N(0, (σ·Δ)² / H)`` for ``H`` holders, so that the
   sum carries ``N(0, (σ·Δ)²)``; encodes it in fixed point and sends one share to each server.
3. Each server adds the shares of all holders and sends its sum-share to the coordinator, which reconstructs
   the **sum over holders** of the noisy clipped gradients, and takes one Adam step (the optimiser, learning
   rate schedule and seeds of :meth:`populace.calibrate.Calibration.fit`).

Without clipping and noise (``clip=inf``, ``epsilon=inf``) the fitted values equal plaintext calibration's
on the same streams and seeds, to float tolerance (forward- and reverse-mode derivatives of the same run).

What each message reveals (threat model of :mod:`populace.secret`: honest-but-curious, non-colluding
servers; the coordinator may collude with at most all servers but one):

* **coordinator → holder**: the model's predictions and Jacobians: public (computed from the synthetic
  population and the current parameters).
* **holder → server**: shares, uniform on Z/2⁶⁴: nothing.
* **servers → coordinator**: the sum over holders of clipped, noised gradients (``P`` numbers an epoch). A
  per-holder gradient would reveal a lot (with ``P`` parameters and a known Jacobian, ``P`` linear
  functions of that holder's residuals); the sum mixes every holder, and the Gaussian noise makes the whole
  sequence of released sums (ε, δ)-differentially private with respect to **replacing one holder's entire
  series** ... strictly, adding or removing one holder's contribution (sensitivity ``Δ``); an individual
  inside a holder's data is protected at least as well. ε is computed for the number of epochs with the
  Rényi-DP accountant of Google's ``dp-accounting`` package (:func:`epsilon_for`), and ``σ`` chosen for a
  target ε (:func:`noise_for`).
* **never sent**: an observed value, a residual, a per-holder loss or gradient in the clear.

Caveats, written down: the noise is split among holders, so the guarantee assumes they all add theirs
(``t`` holders that leave theirs out, or collude and subtract theirs, leave ``(H − t)/H`` of the variance);
the fit's quality figure (ND) is computed by each holder on its own data and only its sum over holders,
``Σ|error|`` and ``Σ|observed|`` per stream, is reconstructed, without noise, once at the end (leave it out
of a deployment, or count it in the budget); servers are not checked for correctness (a malicious server
can corrupt the step, not learn the data).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd import forward_ad
from torch.func import functional_call

from .calibrate import Bounded, Calibration, Stream, moving_average
from .model import Model
from .params import ParamError
from .secret import decode, encode, reconstruct, share
from .simulate import Result, Simulation

__all__ = [
    "GRADIENT_BITS",
    "Holder",
    "PrivateFit",
    "Roles",
    "clipped",
    "coordinate",
    "epsilon_for",
    "hold",
    "noise_for",
    "relay",
    "sensitivity",
]

GRADIENT_BITS = 40
"""Fractional bits of shared gradients: resolution 2⁻⁴⁰ ≈ 9·10⁻¹³ (gradients of tiny parameters still
move Adam as in the plaintext fit), range ±2²² per holder."""

_STOP, _ROUND = 0, 1


# ---------------------------------------------------------------------- differential privacy
def epsilon_for(noise_multiplier: float, epochs: int, delta: float) -> float:
    """ε after ``epochs`` releases of a sum with Gaussian noise of ``noise_multiplier`` × the sensitivity
    (Rényi-DP accountant, ``dp-accounting``); ``inf`` without noise."""
    if noise_multiplier <= 0:
        return math.inf
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), epochs)
    return float(accountant.get_epsilon(delta))


def noise_for(epsilon: float, epochs: int, delta: float) -> float:
    """The noise multiplier σ for which ``epochs`` Gaussian releases spend ``epsilon`` at ``delta``
    (``0`` for ``epsilon = inf``)."""
    if math.isinf(epsilon):
        return 0.0
    if not epsilon > 0:
        raise ValueError(f"epsilon: expected a positive privacy budget, got {epsilon}")
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    return float(
        dp_accounting.calibrate_dp_mechanism(
            RdpAccountant,
            lambda sigma: dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma), epochs),
            epsilon,
            delta,
            bracket_interval=dp_accounting.ExplicitBracketInterval(1e-3, 1e4),
        )
    )


# ---------------------------------------------------------------------- roles
@dataclass(frozen=True)
class Roles:
    """Ranks of the processes: 0 the coordinator, then the holders, then the servers."""

    holders: int
    servers: int = 2

    @property
    def world(self) -> int:
        return 1 + self.holders + self.servers

    def holder(self, b: int) -> int:
        return 1 + b

    def server(self, k: int) -> int:
        return 1 + self.holders + k

    def role(self, rank: int) -> tuple[str, int]:
        if rank == 0:
            return "coordinator", 0
        if rank <= self.holders:
            return "holder", rank - 1
        return "server", rank - 1 - self.holders


def _send(tensor: torch.Tensor, dst: int) -> None:
    dist.send(tensor.contiguous(), dst=dst)


def _recv(shape: Sequence[int], dtype: torch.dtype, src: int) -> torch.Tensor:
    out = torch.empty(tuple(shape), dtype=dtype)
    dist.recv(out, src=src)
    return out


def relay(roles: Roles, k: int) -> int:
    """Server ``k``'s loop: each round, add the shares (``int64[length]``) of every holder and send the sum to
    the coordinator, until the coordinator says stop. Returns the rounds."""
    rounds = 0
    while True:
        command, length = (int(v) for v in _recv((2,), torch.int64, 0))
        if command == _STOP:
            return rounds
        total = torch.zeros(length, dtype=torch.int64)
        for b in range(roles.holders):
            total.add_(_recv((length,), torch.int64, roles.holder(b)))  # wraps mod 2^64
        _send(total, 0)
        rounds += 1


# ---------------------------------------------------------------------- holders
class _View:
    """What :meth:`Calibration.losses` reads of a calibration, over one holder's columns (so a holder's
    loss is the plaintext formula, not a copy of it)."""

    _aligned = Calibration._aligned

    def __init__(self, streams: list[Stream], window: int, log_weight: float) -> None:
        self.streams, self.window, self.log_weight = streams, window, log_weight
        self.robust = False  # the plain relative squared error (private calibration has no robust option)


@dataclass
class Holder:
    """One data holder's private state: its column ``column`` (label ``label``) of each stream."""

    label: str
    column: int
    streams: list[Stream]
    window: int = 7
    log_weight: float = 0.0

    @classmethod
    def of(cls, streams: Sequence[Stream], label: str, window: int = 7, log_weight: float = 0.0) -> Holder:
        """Holder ``label``'s columns of ``streams`` (each a single-column stream weighted ``weight / k``,
        so that the holders' losses add up to the whole calibration loss)."""
        mine = []
        column = -1
        for s in streams:
            if label not in s.labels:
                raise ParamError(f"holder {label!r}: stream {s.name} has no column for it ({s.labels})")
            column = s.labels.index(label)
            k = s.observed.shape[1]
            mine.append(
                Stream(s.name, s.series, s.observed[:, column : column + 1].clone(), (label,), s.weight / k)
            )
        return cls(label, column, mine, window, log_weight)

    def loss(self, predictions: dict[str, torch.Tensor]) -> torch.Tensor:
        """This holder's loss from its columns of the predictions (``float[days, 1]`` per stream)."""
        view = _View(self.streams, self.window, self.log_weight)
        parts = Calibration.losses(view, predictions)  # type: ignore[arg-type]
        total = sum(parts.values())
        assert isinstance(total, torch.Tensor)
        return total

    def gradient(
        self, predictions: dict[str, torch.Tensor], jacobians: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``float64[P]``: Σ over streams of Jᵀ ∂loss/∂prediction (``jacobians[s]``: ``[days, P]``)."""
        leaves = {n: p.detach().clone().requires_grad_(True) for n, p in predictions.items()}
        loss = self.loss(leaves)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        out = torch.zeros(next(iter(jacobians.values())).shape[1], dtype=torch.float64)
        for (name, _), g in zip(leaves.items(), grads, strict=True):
            if g is not None:
                out += jacobians[name].to(torch.float64).T @ g.reshape(-1).to(torch.float64)
        return out

    def sums(self, predictions: dict[str, torch.Tensor]) -> torch.Tensor:
        """``float64[2 · streams]``: per stream Σ|error| and Σ|observed| on 7-day averages, over this holder's
        observed days (the parts of the pooled ND)."""
        out = []
        for s in self.streams:
            view = _View(self.streams, self.window, 0.0)
            predicted, observed = Calibration._aligned(view, s, predictions[s.name])  # type: ignore[arg-type]
            present = ~torch.isnan(observed)
            out.append(torch.where(present, (predicted - observed.nan_to_num()).abs(), 0.0).sum().double())
            out.append(torch.where(present, observed.abs(), 0.0).sum().double())
        return torch.stack(out)


def sensitivity(clip: float, parameters: int, per_parameter: bool) -> float:
    """``Δ``: the L2 bound of one holder's clipped gradient (``clip``, or ``clip · √P`` clipped entry by
    entry)."""
    return clip * math.sqrt(parameters) if per_parameter else clip


def clipped(gradient: torch.Tensor, clip: float, per_parameter: bool = False) -> torch.Tensor:
    """``gradient`` scaled to L2 norm at most ``clip``, or (``per_parameter``) each entry clamped to
    ``[−clip, clip]``. Per parameter, every parameter gets the same share of the noise's budget however
    small its gradient: with one L2 bound, a parameter whose gradient is a tenth of another's (NYC's fatality
    scale beside β) gets a tenth of the signal under the same noise."""
    if not math.isfinite(clip):
        return gradient
    if per_parameter:
        return gradient.clamp(-clip, clip)
    norm = float(gradient.norm())
    return gradient * (clip / norm) if norm > clip else gradient


def hold(
    roles: Roles,
    b: int,
    holder: Holder,
    clip: float,
    noise: float,
    seed: int | None = None,
    per_parameter: bool = False,
) -> int:
    """Holder ``b``'s loop: each round, receive its predictions and Jacobians, send shares of its clipped
    (:func:`clipped`), noised gradient (or of its fit sums, in the last round); until the coordinator says
    stop. ``noise``: the noise multiplier σ of the whole sum (this holder adds ``N(0, (σ · Δ)² / H)``,
    :func:`sensitivity`). ``seed``: a seeded noise generator (tests only; ``None``: the operating
    system's)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    rounds = 0
    streams = [s.name for s in holder.streams]
    while True:
        command, days, params, final = (int(v) for v in _recv((4,), torch.int64, 0))
        if command == _STOP:
            return rounds
        packed = _recv((len(streams), days, 1 + params), torch.float64, 0)
        predictions = {n: packed[i, :, :1].float() for i, n in enumerate(streams)}
        if final:
            value = holder.sums(predictions)
        else:
            jacobians = {n: packed[i, :, 1:] for i, n in enumerate(streams)}
            value = clipped(holder.gradient(predictions, jacobians), clip, per_parameter)
            if noise > 0:
                scale = noise * sensitivity(clip, params, per_parameter) / math.sqrt(roles.holders)
                value = value + torch.randn(value.shape, generator=generator, dtype=torch.float64) * scale
        for k, part in enumerate(share(encode(value, GRADIENT_BITS), roles.servers)):
            _send(part, roles.server(k))
        rounds += 1


# ---------------------------------------------------------------------- coordinator
@dataclass
class PrivateFit:
    """What the coordinator learned: fitted values, the gradient sums it reconstructed, the privacy spent and
    the pooled ND per stream (from the holders' secret-shared sums)."""

    parameters: dict[str, Any]
    epochs: int
    epsilon: float
    delta: float
    noise_multiplier: float
    clip: float
    wall_s: float
    per_parameter: bool = False
    lr: float = 0.0
    """The learning rate used (``lr_by_noise`` scales it)."""
    epoch_s: list[float] = field(default_factory=list)
    gradients: list[list[float]] = field(default_factory=list)
    nd: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, torch.Tensor] = field(default_factory=dict)
    """The fitted model's mean over the evaluation runs, per stream (``float[days, holders]``): public, like
    every prediction (each holder can score its own column with it)."""

    def summary(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "epochs": self.epochs,
            "epsilon": self.epsilon if math.isfinite(self.epsilon) else "inf",
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "clip": self.clip if math.isfinite(self.clip) else "inf",
            "clip_per_parameter": self.per_parameter,
            "lr": self.lr,
            "wall_s": round(self.wall_s, 2),
            "epoch_s": [round(t, 3) for t in self.epoch_s],
            "nd": self.nd,
        }


class _Runner(nn.Module):
    def __init__(self, model: Model, days: int, seed: int, record: list[str]) -> None:
        super().__init__()
        self.model, self.days, self.seed, self.record = model, days, seed, record

    def forward(self) -> Result:
        # "full" selects the differentiable code paths; nothing requires grad, so no tape is kept
        return Simulation(self.model, seed=self.seed, grad="full").run(self.days, record=self.record)


def _public(streams: Sequence[Stream]) -> list[Stream]:
    """The coordinator's copies of ``streams``: how to predict them, with every observed value removed."""
    out = []
    for s in streams:
        if s.reported is not None:
            raise ParamError(
                f"streams: {s.name} has a learnable reported share (a calibration network), which private "
                "calibration does not fit; choose streams without one (e.g. admissions, deaths)"
            )
        blank = torch.full_like(s.observed, math.nan)
        out.append(Stream(s.name, s.series, blank, s.labels, s.weight, s.scale, s.combine, None, s.period))
    return out


def _jacobian(
    model: Model,
    names: Sequence[str],
    raw: dict[str, torch.Tensor],
    bounds: dict[str, Bounded],
    streams: Sequence[Stream],
    days: int,
    seed: int,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each stream's prediction (``[days, k]``) and its Jacobian (``[days, k, P]``) with respect to the raw
    (unconstrained) fitted values, one forward-mode run per entry."""
    record = sorted({s.series for s in streams})
    runner = _Runner(model, days, seed, record)
    columns: list[dict[str, torch.Tensor]] = []
    primal: dict[str, torch.Tensor] = {}
    for name in names:
        value = bounds[name](raw[name]).detach()
        raw_flat = raw[name].detach().reshape(-1)
        for index in range(value.numel()):
            # d value / d raw of the bounded map low + (high − low) · sigmoid(raw)
            tangent = torch.zeros(value.numel(), dtype=value.dtype)
            s = torch.sigmoid(raw_flat[index])
            tangent[index] = (bounds[name].high - bounds[name].low) * s * (1 - s)
            with forward_ad.dual_level(), torch.no_grad():
                dual = forward_ad.make_dual(value, tangent.reshape(value.shape))
                result = functional_call(runner, {f"model.{name}": dual}, ())
                derivative: dict[str, torch.Tensor] = {}
                for st in streams:
                    unpacked = forward_ad.unpack_dual(st.predict(result))
                    primal[st.name] = unpacked.primal.detach().clone()
                    t = unpacked.tangent
                    derivative[st.name] = (
                        torch.zeros_like(primal[st.name]) if t is None else t.detach().clone()
                    )
            columns.append(derivative)
    jacobians = {st.name: torch.stack([c[st.name] for c in columns], dim=-1) for st in streams}
    return primal, jacobians


def coordinate(
    roles: Roles,
    model: Model,
    streams: Sequence[Stream],
    fit: Sequence[str],
    days: int,
    *,
    epochs: int = 30,
    lr: float = 0.05,
    seed: int = 0,
    evaluate: int = 1,
    clip: float = math.inf,
    noise: float = 0.0,
    delta: float = 1e-5,
    per_parameter: bool = False,
    lr_by_noise: bool = False,
    on_epoch: Callable[[int, list[float]], None] | None = None,
) -> PrivateFit:
    """The coordinator's side of private calibration (see the module doc): ``epochs`` Adam steps on the
    reconstructed sums of the holders' gradients, then ``evaluate`` runs whose mean the holders score. The
    holders' columns are the streams' labels, in order (holder ``b`` is column ``b``). ``clip``, ``noise``
    and ``per_parameter``: what the holders were given (:func:`hold`), for the report and its ε.
    ``lr_by_noise``: scale the learning rate by ``min(1, H / (σ √P))`` (``H / σ`` under one L2 bound), the
    largest signal-to-noise ratio a step can have (every holder at the clip, in agreement): with more noise
    than a unanimous signal, Adam's steps (about the learning rate whatever the gradient) would walk with
    the noise; scaled, the fit stays near its start instead."""
    public = _public(streams)
    specs = model.specs()
    learnable = dict(model.named_parameters())
    for name in fit:
        if name not in learnable or name not in specs:
            raise ParamError(f"fit: {name!r} is not a learnable parameter of the model; known: {list(specs)}")
    for s in public:
        if len(s.labels) != roles.holders:
            raise ParamError(
                f"streams: {s.name} has {len(s.labels)} columns ({', '.join(s.labels)}), expected one per "
                f"holder ({roles.holders})"
            )
    start = time.perf_counter()
    bounds = {n: Bounded(*specs[n].bounds) for n in fit}
    raw = {n: bounds[n].right_inverse(learnable[n].detach().clone()).requires_grad_(True) for n in fit}
    for p in model.parameters():
        p.requires_grad_(False)
    sizes = [raw[n].numel() for n in fit]
    if lr_by_noise and noise > 0:
        lr = lr * min(1.0, roles.holders / (noise * (math.sqrt(sum(sizes)) if per_parameter else 1.0)))
    optimiser = torch.optim.Adam(list(raw.values()), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda e: 0.1 + 0.45 * (1 + math.cos(math.pi * e / epochs))
    )
    report = PrivateFit(
        {}, epochs, epsilon_for(noise, epochs, delta), delta, noise, clip, 0.0, per_parameter=per_parameter
    )
    report.lr = lr

    def apply() -> None:
        with torch.no_grad():
            for n in fit:
                learnable[n].copy_(bounds[n](raw[n]))

    def secure_round(packed: torch.Tensor, length: int, final: bool) -> torch.Tensor:
        for k in range(roles.servers):
            _send(torch.tensor([_ROUND, length]), roles.server(k))
        for b in range(roles.holders):
            header = torch.tensor([_ROUND, packed.shape[2], packed.shape[3] - 1, int(final)])
            _send(header, roles.holder(b))
            _send(packed[b], roles.holder(b))
        totals = [_recv((length,), torch.int64, roles.server(k)) for k in range(roles.servers)]
        return decode(reconstruct(totals), GRADIENT_BITS)

    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            apply()
            primal, jac = _jacobian(model, fit, raw, bounds, public, days, seed + epoch)
            # per holder: [streams, days, 1 + P] (prediction, then its derivatives)
            packed = torch.stack(
                [
                    torch.stack(
                        [torch.cat([primal[s.name][:, b : b + 1], jac[s.name][:, b, :]], 1) for s in public]
                    )
                    for b in range(roles.holders)
                ]
            ).to(torch.float64)
            gradient = secure_round(packed, sum(sizes), final=False)
            optimiser.zero_grad()
            for n, part in zip(fit, gradient.split(sizes), strict=True):
                raw[n].grad = part.reshape(raw[n].shape).to(raw[n].dtype)
            optimiser.step()
            schedule.step()
            report.gradients.append(gradient.tolist())
            report.epoch_s.append(time.perf_counter() - t0)
            if on_epoch is not None:
                on_epoch(epoch, gradient.tolist())
        apply()
        # the fitted model's mean over held-out seeds, scored by the holders (pooled ND per stream)
        first = seed + epochs
        runs = []
        for k in range(evaluate):
            result = Simulation(model, seed=first + k).run(days, record=sorted({s.series for s in public}))
            runs.append({s.name: s.predict(result).detach() for s in public})
        mean = {s.name: torch.stack([r[s.name] for r in runs]).mean(0) for s in public}
        report.predictions = mean
        packed = torch.stack(
            [torch.stack([mean[s.name][:, b : b + 1] for s in public]) for b in range(roles.holders)]
        ).to(torch.float64)
        sums = secure_round(packed, 2 * len(public), final=True)
        report.nd = {
            s.name: float(sums[2 * i] / sums[2 * i + 1].clamp(min=1e-12)) for i, s in enumerate(public)
        }
    finally:
        for k in range(roles.servers):
            _send(torch.tensor([_STOP, 0]), roles.server(k))
        for b in range(roles.holders):
            _send(torch.tensor([_STOP, 0, 0, 0]), roles.holder(b))
        for p in model.parameters():
            p.requires_grad_(True)
    report.parameters = {n: learnable[n].detach().cpu().tolist() for n in fit}
    report.wall_s = time.perf_counter() - start
    return report


def pooled_nd(
    streams: Sequence[Stream], predictions: dict[str, torch.Tensor], window: int = 7
) -> dict[str, float]:
    """The plaintext pooled ND per stream (for comparison with :attr:`PrivateFit.nd`)."""
    out = {}
    for s in streams:
        predicted = moving_average(predictions[s.name], window)
        days = min(len(predicted), len(s.observed))
        observed = s.observed[:days].to(predicted)
        present = ~torch.isnan(observed)
        error = torch.where(present, (predicted[:days] - observed.nan_to_num()).abs(), 0.0).sum()
        out[s.name] = float(error / torch.where(present, observed.abs(), 0.0).sum().clamp(min=1e-12))
    return out
