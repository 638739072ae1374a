"""Calibration: fit a model's parameters to observed data streams by gradient descent through the simulator.

A :class:`Calibration` ties three things together:

* **streams** — observed series (e.g. daily deaths by borough), each matched to a model series, with its own
  normalised loss and weight; missing values (NaN) are masked, never zero-filled;
* **direct parameters** — learnable specs of the model (``beta``, a setting's weight, ...), optimised in an
  unconstrained space and mapped into their bounds by :class:`Bounded` (a ``torch.nn.utils.parametrize``
  parametrisation, so the model reads them as usual);
* **calibration networks** — :class:`WeeklyNetwork` (GradABM's CalibNN): a small MLP from covariates (time,
  interventions, group) to a bounded table per period and group, e.g. relative transmission by week and
  borough, or the share of infections that are reported as cases.

Each epoch runs the model with gradients (the lean reverse mode, :mod:`populace.replay`), compares 7-day
averages, and takes one Adam step; several seeds per step average out the estimator's noise. The fitted
model is judged by the mean of several runs on held-out seeds (its expected trajectory, not one draw's
noise). Fitted values are written with :func:`save_parameters` and read back by :func:`load_parameters`
(``populace run --params FILE``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from .distributed import Shard
from .files import atomic_path
from .model import Model
from .params import ParamError
from .simulate import Checkpointed, GradMode, Result, Simulation

__all__ = [
    "Bounded",
    "Calibration",
    "CalibrationReport",
    "Stream",
    "WeeklyNetwork",
    "load_parameters",
    "moving_average",
    "save_parameters",
]

T = TypeVar("T")


class Bounded(nn.Module):
    """Parametrisation ``value = low + (high − low) · sigmoid(raw)``: the optimiser moves ``raw`` freely
    and the model only ever sees values inside the bounds."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if not high > low:
            raise ValueError(f"Bounded: expected low < high, got ({low}, {high})")
        self.low, self.high = float(low), float(high)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(raw)

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        share = ((value - self.low) / (self.high - self.low)).clamp(1e-4, 1 - 1e-4)
        return torch.logit(share)


class WeeklyNetwork(nn.Module):
    """GradABM's calibration network: ``covariates[periods, groups, features]`` → a table
    ``float32[periods, groups]`` bounded to ``bounds``.

    A two-layer MLP shared by all periods and groups; the last layer starts at zero weight and a bias
    giving ``initial`` everywhere, so a calibration starts from a known, flat table. Usable as a
    ``torch.nn.utils.parametrize`` parametrisation (it ignores the tensor it replaces).
    """

    def __init__(
        self,
        covariates: torch.Tensor,
        bounds: tuple[float, float],
        *,
        initial: float,
        hidden: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if covariates.dim() != 3:
            raise ValueError(
                f"covariates: expected [periods, groups, features], got shape {tuple(covariates.shape)}"
            )
        self.bound = Bounded(*bounds)
        if not bounds[0] < initial < bounds[1]:
            raise ValueError(f"initial: {initial} is not inside the bounds {bounds}")
        self.register_buffer("covariates", covariates.float())
        generator = torch.Generator().manual_seed(seed)
        first, last = nn.Linear(covariates.shape[-1], hidden), nn.Linear(hidden, 1)
        with torch.no_grad():
            bound = 1 / math.sqrt(covariates.shape[-1])
            first.weight.copy_(torch.empty_like(first.weight).uniform_(-bound, bound, generator=generator))
            first.bias.copy_(torch.empty_like(first.bias).uniform_(-bound, bound, generator=generator))
            last.weight.zero_()
            last.bias.fill_(float(self.bound.right_inverse(torch.tensor(initial))))
        self.net = nn.Sequential(first, nn.Tanh(), last)

    def forward(self, _replaced: torch.Tensor | None = None) -> torch.Tensor:
        return self.bound(self.net(self.covariates).squeeze(-1))


@dataclass
class Stream:
    """One observed data stream, matched to a model series.

    Attributes:
        name: e.g. ``"deaths"``.
        series: the model series it is compared with, e.g. ``"new_deaths_by_borough"`` (``[days, k]``) or
            a scalar series (``[days]``).
        observed: ``float[days, k]`` (or ``[days]``) from day 0 of the run: trailing ``window``-day averages
            of the daily counts (as NYC publishes them); a weekly rate goes on its week's last day as the
            daily mean, other days NaN. NaN = missing (masked out of loss and metrics).
        labels: names of the ``k`` columns.
        weight: weight of this stream's loss.
        scale: factor from model counts to observed counts (e.g. population size / agents), a number or
            ``float[k]`` per column (rates per 100k of each group).
        combine: optional ``float[k_model, k]`` summing model columns into observed ones (age bands).
        reported: ``nn.Module`` returning the reported share ``[periods, k]`` (a :class:`WeeklyNetwork`,
            learnable), for streams that see only part of the events (cases); ``None``: all are seen.
        period: days per row of ``reported``.
    """

    name: str
    series: str
    observed: torch.Tensor
    labels: tuple[str, ...] = ()
    weight: float = 1.0
    scale: float | torch.Tensor = 1.0
    combine: torch.Tensor | None = None
    reported: nn.Module | None = None
    period: int = 7

    def __post_init__(self) -> None:
        if self.observed.dim() == 1:
            self.observed = self.observed[:, None]
        if self.observed.dim() != 2:
            raise ValueError(f"stream {self.name}: observed must be [days] or [days, k]")
        if self.labels and len(self.labels) != self.observed.shape[1]:
            raise ValueError(
                f"stream {self.name}: {len(self.labels)} labels for {self.observed.shape[1]} columns"
            )
        if not self.weight > 0 or not bool((torch.as_tensor(self.scale) > 0).all()):
            raise ValueError(f"stream {self.name}: weight and scale must be positive")

    def predict(self, result: Result) -> torch.Tensor:
        """``float[days, k]``: the model's prediction of this stream (scaled, times the reported share)."""
        if self.series not in result.series:
            raise ValueError(f"stream {self.name}: the run did not record {self.series!r}")
        value = result.series[self.series].to(torch.float32)
        value = value if value.dim() == 2 else value[:, None]
        if self.combine is not None:
            value = value @ self.combine.to(value)
        value = value * torch.as_tensor(self.scale, dtype=value.dtype, device=value.device)
        if self.reported is not None:
            table = self.reported()
            rows = (result.days // self.period).clamp(max=table.shape[0] - 1).to(table.device)
            value = value * table[rows]
        return value


def moving_average(x: torch.Tensor, window: int) -> torch.Tensor:
    """Trailing ``window``-day mean over dim 0 of ``x[days, k]`` (the first days average what there is)."""
    csum = torch.cat([x.new_zeros(1, *x.shape[1:]), x.cumsum(0)])
    hi = torch.arange(1, len(x) + 1, device=x.device)
    lo = (hi - window).clamp(min=0)
    return (csum[hi] - csum[lo]) / (hi - lo).to(x.dtype).reshape(-1, *[1] * (x.dim() - 1))


@dataclass
class CalibrationReport:
    """What a calibration did: wall time, the loss per epoch (the last entry: the fitted model's), fit
    metrics and the fitted values. ``predictions`` are the fitted model's mean 7-day averages over the
    evaluation runs (:meth:`Calibration.fit`), ``spread`` their daily (lowest, highest) over those runs,
    ``observed`` the data on the same days."""

    wall_s: float
    epochs: int
    loss: list[float]
    stream_loss: list[dict[str, float]]
    metrics: dict[str, dict[str, Any]]
    parameters: dict[str, Any]
    observation: dict[str, Any]
    predictions: dict[str, torch.Tensor] = field(repr=False)
    observed: dict[str, torch.Tensor] = field(repr=False)
    spread: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 2),
            "epochs": self.epochs,
            "loss_initial": self.loss[0],
            "loss_final": self.loss[-1],
            "loss": self.loss,
            "metrics": self.metrics,
            "parameters": self.parameters,
        }


class Calibration(nn.Module):
    """Fit ``model`` to ``streams`` (see module docs).

    Args:
        model: the model; its parameters are changed in place by :meth:`fit`.
        streams: observed data streams.
        fit: dotted names of the model's learnable parameters to fit (``model.specs()`` names, e.g.
            ``"covid.beta"``); each is kept inside its spec's bounds. Other parameters stay fixed.
        networks: dotted name of a model tensor → a module computing it (e.g. a :class:`WeeklyNetwork` for
            a ``Transmission`` layer's ``scale`` table).
        window: days of the trailing average applied to the predictions (observed series come averaged).
        log_weight: weight of the log-scale term of each stream's loss (:meth:`losses`).
        network_lr: the networks' learning rate as a share of the direct parameters' (:meth:`fit`).
        robust: take each column's relative squared error ``e`` as ``log(1 + e)`` (:meth:`losses`): about
            ``e`` near a fit, but one run that overshoots tenfold (a small outbreak's runs range over
            orders of magnitude) no longer outweighs every other step in Adam's running averages.
    """

    def __init__(
        self,
        model: Model,
        streams: Sequence[Stream],
        *,
        fit: Sequence[str] = (),
        networks: Mapping[str, nn.Module] | None = None,
        window: int = 7,
        log_weight: float = 0.1,
        network_lr: float = 0.2,
        robust: bool = False,
    ) -> None:
        super().__init__()
        if not streams:
            raise ValueError("streams: a calibration needs at least one observed stream")
        names = [s.name for s in streams]
        if len(set(names)) != len(names):
            raise ValueError(f"streams: names must be unique, got {names}")
        specs = model.specs()
        learnable = dict(model.named_parameters())
        for name in fit:
            if name not in learnable:
                known = ", ".join(n for n in learnable if n in specs)
                raise ParamError(f"fit: {name!r} is not a learnable parameter of the model; known: {known}")
        self.model = model
        self.streams = list(streams)
        self.fit_names = tuple(fit)
        self.network_names = tuple(networks or {})
        self.window, self.log_weight, self.network_lr = window, log_weight, network_lr
        self.robust = robust
        self.released = False
        self.reporting = nn.ModuleDict({s.name: s.reported for s in streams if s.reported is not None})
        for name in fit:
            module, attr = _owner(model, name)
            low, high = specs[name].bounds
            parametrize.register_parametrization(module, attr, Bounded(low, high))
        for name, network in (networks or {}).items():
            module, attr = _owner(model, name)
            parametrize.register_parametrization(module, attr, network)

    # ------------------------------------------------------------------ one run
    @contextlib.contextmanager
    def values(self) -> Iterator[None]:
        """Compute every parametrised tensor once and reuse it until the context ends. Runs and their
        backward passes go inside: checkpointed segments recompute in the backward pass and must find
        the same tensors, not recompute the networks."""
        if self.released:  # plain tensors: nothing to cache
            yield
            return
        with parametrize.cached():
            for name in (*self.fit_names, *self.network_names):
                module, attr = _owner(self.model, name)
                getattr(module, attr)
            yield

    def run(
        self, days: int, *, seed: int, grad: GradMode, shard: Shard | None = None
    ) -> dict[str, torch.Tensor]:
        """The streams' predictions (``[days, k]``, carrying gradients unless ``grad="off"``); call inside
        :meth:`values` when differentiating. With ``shard``, the model is one process's part of a split
        population and the predictions are the whole population's."""
        record = sorted({s.series for s in self.streams})
        with self.values():
            simulation = Simulation(self.model, seed=seed, device=_device(self.model), grad=grad, shard=shard)
            result = simulation.run(days, record=record)
        with torch.enable_grad() if grad != "off" else torch.no_grad():
            return {s.name: s.predict(result) for s in self.streams}

    def losses(self, predictions: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each stream's loss, per column over the days observed (7-day averages): the relative squared error
        Σ(ŷ − y)² / Σy², plus ``log_weight`` × the mean of (log(1 + ŷ) − log(1 + y))²; the mean over columns,
        times the stream's weight. The log term keeps a signal where the model has (almost) no cases, and
        weighs the growth and decline phases, not only the peak. With ``robust``, the relative squared
        error ``e`` of each column enters as ``log(1 + e)``."""
        out = {}
        for s in self.streams:
            predicted, observed = self._aligned(s, predictions[s.name])
            present = ~torch.isnan(observed)
            y = observed.nan_to_num()
            zero = torch.zeros_like(predicted)
            error = torch.where(present, predicted - y, zero).pow(2).sum(0)
            norm = torch.where(present, y, zero).pow(2).sum(0).clamp(min=1e-9)
            log_error = torch.where(present, torch.log1p(predicted.clamp(min=0)) - torch.log1p(y), zero)
            log_mse = log_error.pow(2).sum(0) / present.sum(0).clamp(min=1)
            relative = torch.log1p(error / norm) if self.robust else error / norm
            out[s.name] = s.weight * (relative + self.log_weight * log_mse).mean()
        return out

    def _aligned(self, stream: Stream, predicted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted ``window``-day trailing averages and the observed ones, over the common days."""
        days = min(len(predicted), len(stream.observed))
        observed = stream.observed[:days].to(predicted.device, torch.float32)
        return moving_average(predicted, self.window)[:days], observed

    def metrics(self, predictions: Mapping[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
        """Per stream, on 7-day averages: ``nd`` = Σ|ŷ − y| / Σ|y| and ``mae``, pooled and per column."""
        out: dict[str, dict[str, Any]] = {}
        for s in self.streams:
            predicted, observed = (t.detach().double() for t in self._aligned(s, predictions[s.name]))
            present = ~torch.isnan(observed)
            error = torch.where(present, (predicted - observed.nan_to_num()).abs(), 0.0)
            size = torch.where(present, observed.abs(), 0.0)
            labels = s.labels or tuple(str(i) for i in range(observed.shape[1]))
            out[s.name] = {
                "nd": float(error.sum() / size.sum().clamp(min=1e-12)),
                "mae": float(error.sum() / present.sum().clamp(min=1)),
                "nd_by": {
                    label: float(error[:, i].sum() / size[:, i].sum().clamp(min=1e-12))
                    for i, label in enumerate(labels)
                },
                "mae_by": {
                    label: float(error[:, i].sum() / present[:, i].sum().clamp(min=1))
                    for i, label in enumerate(labels)
                },
            }
        return out

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        days: int,
        *,
        epochs: int = 30,
        lr: float = 0.05,
        network_lr: float | None = None,
        seeds: int = 1,
        seed: int = 0,
        resample: bool = True,
        evaluate: int = 8,
        grad: GradMode | None = None,
        on_epoch: Callable[[int, float, dict[str, float]], None] | None = None,
        shard: Shard | None = None,
    ) -> CalibrationReport:
        """Run ``epochs`` Adam steps; each averages the loss over ``seeds`` runs (seeds differ between epochs
        so that no one draw is over-fitted; ``resample=False`` keeps seeds ``seed … seed + seeds − 1`` in
        every epoch: common random numbers, a deterministic objective). The learning rate decays from ``lr``
        to a tenth (cosine).
        Networks learn at ``lr × network_lr`` (default: the calibration's ``network_lr``): Adam moves every
        weight by about its learning rate and a network's hidden units add up, so the same rate would move
        a table many times more than a direct parameter (and an epidemic grows exponentially in it). The
        model keeps the fitted values (parametrisations are removed at the end). ``on_epoch(epoch, loss,
        stream_losses)`` reports progress.

        The fitted model is then judged by the mean of ``evaluate`` runs without gradients on seeds no step
        used: its expected trajectory. One run of a scaled-down population carries Monte Carlo noise that
        the data do not (an agent stands for ``full size / agents`` people): at 1M agents for NYC's
        8.4M, Staten Island's ND on admissions ranged 0.19–0.34 over six seeds with the same fitted values.
        The report's metrics are of that mean; ``metrics[stream]["runs"]`` has each run's ND, and
        ``spread`` the runs' daily range.

        With ``shard`` (the model is one process's part of a population split over processes), every
        process computes the same loss from the whole population's series, back-propagates its share
        (:meth:`~populace.distributed.Shard.loss`) and the gradients are summed over the processes, so every
        process takes the same step (the default ``grad`` is then ``"full"``: checkpointing does not run
        split yet)."""
        if epochs < 1 or seeds < 1 or evaluate < 1:
            raise ValueError(
                f"epochs, seeds and evaluate must be positive, got {epochs}, {seeds} and {evaluate}"
            )
        if self.released:
            raise RuntimeError("fit: this calibration has already run; build a new Calibration to fit again")
        split = shard is not None and shard.spans
        grad = grad if grad is not None else ("full" if split else Checkpointed(overlap=True, ahead=1))
        start = time.perf_counter()
        frozen = [
            p for n, p in self.model.named_parameters() if p.requires_grad and "parametrizations." not in n
        ]
        for p in frozen:
            p.requires_grad_(False)
        networks = {id(p) for name in self.network_names for p in _network(self.model, name).parameters()}
        networks |= {id(p) for p in self.reporting.parameters()}
        trained = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trained if id(p) not in networks], "lr": lr},
            {
                "params": [p for p in trained if id(p) in networks],
                "lr": lr * (self.network_lr if network_lr is None else network_lr),
            },
        ]
        losses: list[float] = []
        stream_losses: list[dict[str, float]] = []
        try:
            optimiser = torch.optim.Adam([g for g in groups if g["params"]])
            # cosine decay to a tenth: large steps while far off, small ones to settle in the noise
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda e: 0.1 + 0.45 * (1 + math.cos(math.pi * e / epochs))
            )
            for epoch in range(epochs):
                optimiser.zero_grad()
                total = 0.0
                parts: dict[str, float] = {s.name: 0.0 for s in self.streams}
                for k in range(seeds):
                    with self.values():
                        draw = seed + (epoch * seeds if resample else 0) + k
                        run = self.run(days, seed=draw, grad=grad, shard=shard)
                        per_stream = self.losses(run)
                        loss = sum(per_stream.values()) / seeds
                        assert isinstance(loss, torch.Tensor)
                        (shard.loss(loss) if shard is not None else loss).backward()
                    total += float(loss.detach())
                    for name, value in per_stream.items():
                        parts[name] += float(value.detach()) / seeds
                if shard is not None:
                    shard.reduce_gradients(trained)
                bad = [
                    n
                    for n, p in self.named_parameters()
                    if p.grad is not None and not p.grad.isfinite().all()
                ]
                if bad:
                    raise FloatingPointError(f"calibration: non-finite gradient of {bad} at epoch {epoch}")
                optimiser.step()
                schedule.step()
                losses.append(total)
                stream_losses.append(parts)
                if on_epoch is not None:
                    on_epoch(epoch, total, parts)
            # held-out draws: the seeds after every one the steps used
            first = seed + (epochs if resample else 1) * seeds
            self.release()  # plain tensors from here: nothing to recompute, nothing shared to cache
            two = isinstance(grad, Checkpointed) and grad.overlap and shard is None
            runs = _each(
                lambda k: self.run(days, seed=first + k, grad="off", shard=shard), range(evaluate), two
            )
            final = {s.name: torch.stack([r[s.name] for r in runs]).mean(0) for s in self.streams}
            final_loss = {k: float(v) for k, v in self.losses(final).items()}
            losses.append(sum(final_loss.values()))
            stream_losses.append(final_loss)
            observation = {name: module().detach().tolist() for name, module in self.reporting.items()}
            metrics = self.metrics(final)
            for name, by_run in _per_run(self.metrics(r) for r in runs).items():
                metrics[name]["runs"] = by_run
        finally:
            for p in frozen:
                p.requires_grad_(True)
            self.release()
        aligned = {s.name: self._aligned(s, final[s.name]) for s in self.streams}
        each = {s.name: torch.stack([self._aligned(s, r[s.name])[0] for r in runs]) for s in self.streams}
        return CalibrationReport(
            wall_s=time.perf_counter() - start,
            epochs=epochs,
            loss=losses,
            stream_loss=stream_losses,
            metrics=metrics,
            parameters=self.fitted(),
            observation=observation,
            predictions={name: pair[0].detach() for name, pair in aligned.items()},
            observed={name: pair[1] for name, pair in aligned.items()},
            spread={name: (runs_.min(0).values, runs_.max(0).values) for name, runs_ in each.items()},
        )

    def release(self) -> None:
        """Replace the parametrisations by their current values (plain parameters and buffers); :meth:`fit`
        does this at its end, also when it fails."""
        self.released = True
        for name in (*self.fit_names, *self.network_names):
            module, attr = _owner(self.model, name)
            if parametrize.is_parametrized(module, attr):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)

    def fitted(self) -> dict[str, Any]:
        """The current values of the fitted model tensors, by dotted name."""
        out = {}
        for name in (*self.fit_names, *self.network_names):
            module, attr = _owner(self.model, name)
            out[name] = getattr(module, attr).detach().cpu().tolist()
        return out


def _each(work: Callable[[int], T], items: Iterable[int], two_threads: bool) -> list[T]:
    """``work(i)`` for each of ``items``, in order; with ``two_threads`` and two or more intra-op threads,
    two at a time on two threads of one intra-op thread each (a day's values do not depend on the number
    of threads; two intra-op threads ran a fast run of nyc-covid at 1M agents only ~1.45× faster than
    one). Sets torch's thread count, the process's, while it runs."""
    items = list(items)
    threads = torch.get_num_threads()
    if not two_threads or threads < 2 or len(items) < 2:
        return [work(i) for i in items]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="populace-evaluate") as pool:
            return list(pool.map(work, items))
    finally:
        torch.set_num_threads(threads)


def _per_run(metrics: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per stream, each run's ``nd`` and ``nd_by`` (label → one value per run), from the
    :meth:`~Calibration.metrics` of several runs."""
    out: dict[str, dict[str, Any]] = {}
    for run in metrics:
        for name, m in run.items():
            entry = out.setdefault(name, {"nd": [], "nd_by": {label: [] for label in m["nd_by"]}})
            entry["nd"].append(m["nd"])
            for label, value in m["nd_by"].items():
                entry["nd_by"][label].append(value)
    return out


def _network(model: nn.Module, name: str) -> nn.Module:
    module, attr = _owner(model, name)
    network: nn.Module = getattr(module.parametrizations, attr)
    return network


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        raise ParamError(f"{name}: the model has no module {path!r}") from None
    if not hasattr(module, attr):
        raise ParamError(f"{name}: {type(module).__name__} has no tensor {attr!r}")
    return module, attr


def _device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def save_parameters(path: str | os.PathLike[str], parameters: Mapping[str, Any], **info: Any) -> None:
    """Write fitted values (dotted name → number or nested list) and ``info`` atomically as JSON."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({**info, "parameters": dict(parameters)}, indent=1))


def read_parameters(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The contents of a :func:`save_parameters` file; :class:`ParamError` if it is not one."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ParamError(f"--params: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    not_one = f"--params: {str(path)!r} is not a parameters.json written by populace calibrate"
    try:
        content = json.loads(text)
    except ValueError as exc:  # not JSON, or not text
        raise ParamError(f"{not_one} (not JSON: {exc})") from None
    if not isinstance(content, dict) or not isinstance(content.get("parameters"), dict):
        raise ParamError(f"{not_one} (it has no 'parameters' object)")
    return content


_RENAMED = {
    "contacts": "settings",
    "kernel_r0": "settings.kernel.r0",
    "kernel_alpha": "settings.kernel.alpha",
}
"""Attributes renamed when the infection core arrived (SEIR's ``contacts``, the farms' kernel)."""


def legacy_name(model: Model, name: str) -> str:
    """The name today of a parameter address written before layers had names (``layers.7.severe_scale``,
    ``layers.0.contacts.1.weight``: positions in the model and in its settings), or ``name`` itself if it
    is not one. Positions are resolved against ``model``; a position that no longer holds the same kind of
    layer lands on a module without that tensor, and :func:`load_parameters` then refuses the name."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "layers" or not parts[1].isdigit():
        return name
    layers = model.ordered_layers()
    index = int(parts[1])
    if index >= len(layers):
        raise ParamError(
            f"{name}: written before layers had names, and the model has only {len(layers)} layers "
            f"({', '.join(layer.name for layer in layers)})"
        )
    rest = ".".join(parts[2:])
    for old, new in _RENAMED.items():
        rest = new + rest[len(old) :] if rest == old or rest.startswith(old + ".") else rest
    out, module = [layers[index].name], cast(nn.Module, layers[index])
    for part in rest.split("."):
        children = list(module._modules)
        if part.isdigit() and isinstance(module, nn.ModuleDict) and int(part) < len(children):
            part = children[int(part)]
        out.append(part)
        child = module._modules.get(part)
        if child is None:
            break
        module = child
    return ".".join(out)


def load_parameters(model: Model, parameters: Mapping[str, Any]) -> None:
    """Set model tensors from dotted name → value, checking names, shapes and the specs' bounds. Names
    written before layers had names are read by :func:`legacy_name`, and refused, naming both, when the
    model has no such tensor there."""
    specs = model.specs()
    for written, value in parameters.items():
        name = legacy_name(model, written)
        if name != written:
            try:
                _owner(model, name)
            except ParamError as exc:
                raise ParamError(
                    f"{written}: written before layers had names; read as {name!r}, but {exc}. Calibrate "
                    "again, or rename it in the file"
                ) from None
        module, attr = _owner(model, name)
        current = getattr(module, attr)
        if not isinstance(current, torch.Tensor):
            raise ParamError(f"{name}: not a tensor of the model")
        try:
            new = torch.as_tensor(value, dtype=current.dtype)
        except (TypeError, ValueError):
            raise ParamError(f"{name}: expected numbers, got {value!r}") from None
        if new.shape != current.shape:
            raise ParamError(f"{name}: expected shape {tuple(current.shape)}, got {tuple(new.shape)}")
        if not torch.isfinite(new).all():
            raise ParamError(f"{name}: values must be finite")
        if name in specs:
            low, high = specs[name].bounds
            if not ((new >= low) & (new <= high)).all():
                raise ParamError(f"{name}: {value} is outside the bounds [{low:g}, {high:g}]")
        with torch.no_grad():
            current.copy_(new.to(current.device))


def plot_fit(report: CalibrationReport, path: str | os.PathLike[str], *, title: str = "") -> None:
    """Write a PNG of observed (dots) and fitted (lines: the mean of the evaluation runs, shaded: their
    range) 7-day averages, one panel per stream and column, and the loss curve. Needs matplotlib
    (``pip install 'populace[plot]'``), else ``ImportError``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.observed)
    columns = max(report.observed[n].shape[1] for n in names)
    fig, axes = plt.subplots(
        len(names) + 1, columns, figsize=(3.2 * columns, 2.4 * (len(names) + 1)), squeeze=False
    )
    for row, name in enumerate(names):
        observed, predicted = report.observed[name].cpu(), report.predictions[name].cpu()
        labels = report.metrics[name]["nd_by"]
        for col, label in enumerate(labels):
            ax = axes[row][col]
            ax.plot(observed[:, col], ".", ms=3, color="0.3", label="observed")
            if name in report.spread:
                low, high = (t[:, col].cpu() for t in report.spread[name])
                ax.fill_between(range(len(low)), low, high, color="C3", alpha=0.2, lw=0, label="runs' range")
            ax.plot(predicted[:, col], "-", color="C3", label="fitted (mean of runs)")
            ax.set_title(f"{name}: {label} (ND {labels[label]:.2f})", fontsize=8)
            ax.tick_params(labelsize=7)
        for col in range(len(labels), columns):
            axes[row][col].axis("off")
    axes[0][0].legend(fontsize=7)
    ax = axes[-1][0]
    ax.plot(range(1, len(report.loss) + 1), report.loss, "-o", ms=2)
    ax.set_title("loss by epoch (last: the fitted model)", fontsize=8)
    ax.set_yscale("log")
    for col in range(1, columns):
        axes[-1][col].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
