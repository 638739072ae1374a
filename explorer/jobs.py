"""The explorer's longer jobs, as plain functions of a scenario's settings (no UI code): sensitivities with
a gradient "what if", two settings side by side, and a calibration to observed data. The views run them on
a worker thread and show their progress."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from populace import Choice, Param, ParamError, Scenario, Simulation
from populace.calibrate import CalibrationReport
from populace.experiment import Experiment
from populace.glossary import grouped_name, term
from populace.model import Model
from populace.risk import MASK_EFFICACY, RiskTable, forecast
from populace.scenario import Question
from populace.sensitivity import Output, Sensitivity, sensitivity, standard_error
from populace.simulate import Checkpointed, Result

__all__ = [
    "BAND",
    "Answer",
    "Comparison",
    "Lever",
    "Levers",
    "answer",
    "calibrate",
    "compare",
    "levers",
    "outcomes",
    "reading",
    "risk_forecast",
    "what_if",
]

ANSWER_SERIES = ("new_infections", "new_admissions", "new_deaths")
"""What a question's answer compares (its daily curves and their totals), with every cost's total."""

Options = Mapping[str, Param | Choice]


BAND = 2.0
"""The sensitivity band's half-width in standard errors over the seeds (about a 95% interval for the mean
with many seeds; with 4 seeds a t-interval would be 1.6× wider)."""


@dataclass(frozen=True)
class Lever:
    """One learnable parameter's effect on one outcome.

    Attributes:
        parameter: dotted model name; ``option``: the scenario option it was built from (or ``None``);
            ``label``: its name in words.
        value: its value in the run; ``gradient``: d(outcome)/d(parameter) there, the mean over the seeds;
            ``gradients``: one a seed.
        effect: the outcome's change for +10% of the value (or +10% of the bound range when the value is 0),
            to first order: ``gradient × step``; ``step`` is that change of the parameter.
    """

    parameter: str
    option: str | None
    value: float
    gradient: float
    step: float
    label: str = ""
    """Words an analyst reads for the parameter (:meth:`~populace.Model.label`)."""
    unit: str = ""
    """The parameter's unit (its spec's), ``""`` when unknown."""
    gradients: tuple[float, ...] = ()
    """d(outcome)/d(parameter) of each seed (their mean is ``gradient``)."""

    @property
    def effect(self) -> float:
        return self.gradient * self.step

    @property
    def effects(self) -> tuple[float, ...]:
        """Each seed's effect."""
        return tuple(g * self.step for g in self.gradients)

    @property
    def gradient_se(self) -> float:
        """The standard error of ``gradient`` over the seeds (NaN with fewer than two)."""
        return standard_error(self.gradients)

    def half_band(self, change: float) -> float:
        """:data:`BAND` standard errors of the first-order change of the outcome for ``change`` of the
        parameter (0 with one seed: no band)."""
        return BAND * abs(self.gradient_se * change) if len(self.gradients) > 1 else 0.0

    @property
    def band(self) -> tuple[float, float]:
        """The effect ± :data:`BAND` standard errors (both ends the effect with one seed)."""
        half = self.half_band(self.step)
        return self.effect - half, self.effect + half


@dataclass(frozen=True)
class Levers:
    """:func:`levers`' result: the outcome's value (mean over the seeds; ``values``: one a seed) and every
    scalar lever, largest effect first."""

    outcome: str
    value: float
    levers: tuple[Lever, ...]
    seconds: float
    agents: int
    seeds: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    def predicted(self, lever: Lever, value: float) -> tuple[float, float, float]:
        """The outcome with ``lever`` at ``value`` to first order: (prediction, low, high), the band
        ± :data:`BAND` standard errors of the gradient times the change."""
        change = value - lever.value
        predicted = self.value + lever.gradient * change
        half = lever.half_band(change)
        return predicted, predicted - half, predicted + half


def outcomes(model: Model) -> list[str]:
    """Outcomes worth a sensitivity bar chart: totals of the daily event series, peaks of the counts."""
    names = model.observables()
    found = [f"total:{n}" for n in names if n.startswith("new_") and "_by_" not in n]
    found += [f"peak:{n}" for n in ("hospitalised", "infectious", "I") if n in names]
    return found


def levers(
    scenario: type[Scenario],
    options: Options,
    *,
    agents: int,
    days: int,
    seed: int,
    outcome: str,
    fitted: Mapping[str, Any] | None = None,
    seeds: int = 1,
    on_seed: Callable[[int, int], None] | None = None,
) -> Levers:
    """d(``outcome``)/d(every scalar learnable parameter) by one reverse pass a seed (the lean mode,
    :mod:`populace.replay`) for runs of ``days`` days with these options, on ``agents`` agents: the
    population built with ``seed``, the runs with seeds ``seed`` … ``seed + seeds − 1``; ``on_seed(done,
    seeds)`` after each seed (progress)."""
    if seeds < 1:
        raise ParamError(f"seeds: expected at least 1, got {seeds}")
    model = _build(scenario, options, agents, seed, fitted)
    specs = model.specs()
    by_spec = _options_by_spec(model, options)
    scalars = [n for n, p in model.named_parameters() if p.requires_grad and p.numel() == 1]
    report: Sensitivity = sensitivity(
        model,
        days,
        [outcome],
        seeds=range(seed, seed + seeds),
        grad=Checkpointed(),  # no overlap: it sets torch's thread count, the whole server's
        parameters=scalars,
        on_seed=on_seed,
    )
    values = dict(model.named_parameters())
    found = []
    for name in scalars:
        value = float(values[name].detach())
        low, high = specs[name].bounds if name in specs else (value - 1.0, value + 1.0)
        step = 0.1 * (abs(value) if value != 0 else high - low)
        grad = float(report.gradients[outcome][name])
        per_seed = tuple(float(g) for g in report.samples[outcome][name])
        unit = specs[name].unit if name in specs else ""
        option = by_spec.get(name)
        label = grouped_name(scenario.option_groups, option) if option else ""
        found.append(Lever(name, option, value, grad, step, label or model.label(name), unit, per_seed))
    found.sort(key=lambda lever: -abs(lever.effect))
    return Levers(
        outcome,
        report.outputs[outcome],
        tuple(found),
        (report.forward_s + report.backward_s) * seeds,
        agents,
        tuple(report.seeds),
        tuple(report.output_samples[outcome]),
    )


def what_if(
    scenario: type[Scenario],
    options: Options,
    *,
    agents: int,
    days: int,
    seed: int,
    outcome: str,
    option: str,
    value: float,
    fitted: Mapping[str, Any] | None = None,
    seeds: int = 1,
) -> tuple[float, ...]:
    """``outcome`` re-simulated (fast mode) with ``option`` at ``value``, one value a seed: the population
    built with ``seed``, the runs with seeds ``seed`` … ``seed + seeds − 1`` (the seeds of :func:`levers`:
    common random numbers)."""
    if seeds < 1:
        raise ParamError(f"seeds: expected at least 1, got {seeds}")
    changed = dict(options)
    changed[option] = changed[option].parse(str(value), option)
    model = _build(scenario, changed, agents, seed, fitted)
    read = Output.parse(outcome)
    with torch.no_grad():
        return tuple(float(read(Simulation(model, seed=s).run(days))) for s in range(seed, seed + seeds))


@dataclass(frozen=True)
class Comparison:
    """Two settings run with the same seed: their results and the options that differ (``{name: (a, b)}``)."""

    a: Result
    b: Result
    differences: dict[str, tuple[Any, Any]]
    agents: int

    def totals(self) -> dict[str, tuple[float, float]]:
        """``{series: (total of a, total of b)}`` for deaths, admissions, infections and every cost."""
        out = {}
        for name in self.a.series:
            if name in ("new_deaths", "new_admissions", "new_infections") or name.startswith("cost_"):
                out[name] = (float(self.a.series[name].sum()), float(self.b.series[name].sum()))
        return out


def compare(
    scenario: type[Scenario],
    a: Options,
    b: Options,
    *,
    agents: int,
    days: int,
    seed: int,
    fitted: Mapping[str, Any] | None = None,
) -> Comparison:
    """Run settings ``a`` and ``b`` for ``days`` days with the same seed."""
    differences = {k: (a[k].value, b[k].value) for k in a if k in b and a[k].value != b[k].value}
    return Comparison(
        a=_run(scenario, a, agents=agents, days=days, seed=seed, fitted=fitted),
        b=_run(scenario, b, agents=agents, days=days, seed=seed, fitted=fitted),
        differences=differences,
        agents=agents,
    )


@dataclass(frozen=True)
class Answer:
    """A :class:`~populace.scenario.Question` run over seeds: per arm, the daily series of every seed.

    Attributes:
        question: what was asked; ``names``: the two arms' names.
        series: ``{arm name: {series: float64[seeds, days]}}`` (:data:`ANSWER_SERIES` and every cost).
        seeds: the seeds (the same for both arms: common random numbers); ``agents``, ``days``.
    """

    question: Question
    names: tuple[str, str]
    series: dict[str, dict[str, np.ndarray]]
    seeds: tuple[int, ...]
    agents: int
    days: int

    def totals(self, arm: str, name: str) -> np.ndarray:
        """``float64[seeds]``: the total of ``name`` over the run in each seed."""
        return self.series[arm][name].sum(axis=1)


def answer(
    scenario: type[Scenario],
    options: Options,
    question: Question,
    *,
    agents: int,
    days: int,
    seeds: Sequence[int],
    fitted: Mapping[str, Any] | None = None,
    on_run: Callable[[int, int], None] | None = None,
) -> Answer:
    """Both arms of ``question`` (its ``--set`` texts over ``options``) for each seed; ``on_run(done,
    total)`` after each run."""
    names = (question.a[0], question.b[0])
    series: dict[str, dict[str, np.ndarray]] = {}
    total, done = 2 * len(seeds), 0
    for name, sets in (question.a, question.b):
        arm = dict(options)
        for option, text in sets.items():
            arm[option] = arm[option].parse(text, option)
        runs: dict[str, list[np.ndarray]] = {}
        for seed in seeds:
            result = _run(scenario, arm, agents=agents, days=days, seed=seed, fitted=fitted)
            for key, values in result.series.items():
                if (key in ANSWER_SERIES or key.startswith("cost_")) and values.ndim == 1:
                    runs.setdefault(key, []).append(values.double().cpu().numpy())
            done += 1
            if on_run is not None:
                on_run(done, total)
        series[name] = {key: np.stack(values) for key, values in runs.items()}
    return Answer(question, names, series, tuple(seeds), agents, days)


def reading(answer: Answer) -> str:
    """One paragraph reading the answer: each outcome's total in both arms (mean and range over seeds),
    their difference seed by seed, and whether it stands out from the spread between seeds."""
    a, b = answer.names
    n = len(answer.seeds)
    parts = []
    for name in (*ANSWER_SERIES, *sorted(k for k in answer.series[a] if k.startswith("cost_"))):
        if name not in answer.series[a] or name not in answer.series[b]:
            continue
        ta, tb = answer.totals(a, name), answer.totals(b, name)
        if not (ta.any() or tb.any()):
            continue
        words = term(name)
        what = words.label.removeprefix("new ")
        money = words.unit.startswith("$")
        fmt = (lambda v: f"${v:,.0f}") if money else (lambda v: f"{v:,.0f}")
        diff = tb - ta
        clear = (diff > 0).all() or (diff < 0).all()
        verdict = (
            "in every seed" if clear and n > 1 else "but not in every seed: within the noise at this size"
        )
        parts.append(
            f"{what}: {fmt(tb.mean())} ({fmt(tb.min())}–{fmt(tb.max())}) with {b} against "
            f"{fmt(ta.mean())} ({fmt(ta.min())}–{fmt(ta.max())}) with {a}, "
            f"{'more' if diff.mean() > 0 else 'fewer' if not money else 'less'} by {fmt(abs(diff.mean()))} "
            f"on average, {verdict}"
        )
    head = (
        f"Over {n} seed{'s' if n > 1 else ''} of {answer.agents:,} agents and {answer.days} days (the same "
        f"seeds for both; ranges are lowest–highest over seeds). "
    )
    if not parts:
        return head + "Nothing happened in either arm: run longer or with more agents."
    return head + "; ".join(p[0].upper() + p[1:] for p in parts) + ". " + answer.question.about


def calibrate(
    scenario: type[Scenario],
    *,
    agents: int,
    days: int,
    epochs: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    start: dt.date | None = None,
) -> tuple[CalibrationReport, dict[str, str]]:
    """Calibrate ``scenario`` to its observed data from its start date (options: its observed ones);
    returns the report and the options used (``--set`` texts)."""
    start = start or scenario.default_start
    if start is None:
        raise ValueError(f"{scenario.name}: this scenario has no observed data to calibrate against")
    texts = scenario().observed_options(start)
    experiment = Experiment.from_texts(scenario, agents=agents, seed=seed, observed=True, start=start)
    model = experiment.model()
    calibration = experiment.calibration(model, days=days)
    report = calibration.fit(
        days,
        epochs=epochs,
        seed=seed,
        on_epoch=None if on_epoch is None else lambda e, loss, _: on_epoch(e, loss),
    )
    return report, texts


def risk_forecast(
    scenario: type[Scenario],
    options: Options,
    *,
    agents: int,
    seed: int,
    first_day: int,
    fitted: Mapping[str, Any] | None = None,
) -> RiskTable:
    """The public forecast of :mod:`populace.risk` for the week after ``first_day``: the scenario with these
    options, re-run from day 0 to ``first_day + 7``, recording the mean force of infection in each setting
    by area (and household size). The same table for everyone; nobody's profile goes into it."""
    model = _build(scenario, options, agents, seed, fitted)
    efficacy = options.get("mask_efficacy")
    with torch.no_grad():
        return forecast(
            model,
            scenario=scenario.name,
            agents=agents,
            seed=seed,
            first_day=first_day,
            mask_efficacy=float(efficacy.value) if efficacy is not None else MASK_EFFICACY,
            simulate=lambda m, days, on_day: Simulation(m, seed=seed).run(days, on_day=on_day),
        )


def _build(
    scenario: type[Scenario], options: Options, agents: int, seed: int, fitted: Mapping[str, Any] | None
) -> Model:
    return Experiment(scenario, options, agents, seed, fitted=fitted).model()


def _run(
    scenario: type[Scenario],
    options: Options,
    *,
    agents: int,
    days: int,
    seed: int,
    fitted: Mapping[str, Any] | None,
) -> Result:
    model = _build(scenario, options, agents, seed, fitted)
    with torch.no_grad():
        return Simulation(model, seed=seed).run(days)


def _options_by_spec(model: Model, options: Options) -> dict[str, str]:
    """Dotted model name → the option its spec came from."""
    return {path: spec.option for path, spec in model.specs().items() if spec.option in options}
