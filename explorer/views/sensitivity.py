"""The *Sensitivity* tab: :class:`SensitivityView` — bars of d(outcome)/d(parameter) from one reverse pass a
seed, with a band of ± 2 standard errors over the seeds and each seed's estimate as a dot, and a gradient
"what if" (with its band) beside the re-simulated value over the same seeds."""

from __future__ import annotations

from typing import Any

import holoviews as hv
import panel as pn

from populace import ParamError
from populace.glossary import outcome
from populace.sensitivity import standard_error

from .. import jobs
from .session import Session, count

__all__ = ["SensitivityView"]


class SensitivityView(pn.viewable.Viewer):
    """Which levers matter, at the run's current settings (jobs run on the session's job thread)."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        guard = session.guard
        self.outcome_select = pn.widgets.Select(label="Outcome", options={}, width=260)
        self.sens_agents = pn.widgets.TextInput(
            label="Agents",
            value="50_000",
            width=120,
            description="size of the differentiable run (tape memory)",
        )
        self.sens_seeds = pn.widgets.IntInput(
            label="Seeds",
            value=SEEDS,
            start=1,
            end=32,
            width=90,
            description="runs averaged; the band is ± 2 standard errors over them (one backward pass each)",
        )
        self.sens_button = pn.widgets.Button(label="Compute sensitivities", color="primary", width=200)
        self.sens_bars = pn.pane.HoloViews(
            hv.Bars([], "lever", "effect"), sizing_mode="stretch_width", height=380
        )
        self.sens_text = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.whatif_select = pn.widgets.Select(label="What if this option…", options={}, width=260)
        self.whatif_value = pn.widgets.FloatInput(label="…took this value", width=160)
        self.whatif_button = pn.widgets.Button(label="Re-simulate", width=140)
        self.whatif_text = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        """Errors of this tab's buttons (the sensitivity's above the bars, the what-if's under its row)."""
        self.whatif_alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.sens_button.on_click(lambda _: guard(self._start_sensitivity, self.alert))
        self.whatif_select.param.watch(lambda _: self._whatif_changed(reset_value=True), "value")
        self.whatif_value.param.watch(lambda _: self._whatif_changed(), "value")
        self.whatif_button.on_click(lambda _: guard(self._start_whatif, self.whatif_alert))
        self.session.param.watch(lambda _: self._new_setup(), "setup")
        self._levers: jobs.Levers | None = None
        self.layout = pn.Column(
            pn.pane.Markdown(
                "Which levers matter: the change of the outcome for +10% of each parameter, to first order, "
                "from one reverse pass through the simulation a seed (`populace.sensitivity`), at the "
                "current settings; the band across each bar is ± 2 standard errors over the seeds, the dots "
                "each seed's estimate."
            ),
            pn.Row(self.outcome_select, self.sens_agents, self.sens_seeds, self.sens_button),
            self.alert,
            self.sens_bars,
            self.sens_text,
            pn.Row(self.whatif_select, self.whatif_value, self.whatif_button),
            self.whatif_alert,
            self.whatif_text,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _new_setup(self) -> None:
        model = self.session.run.model
        names = jobs.outcomes(model) if model is not None else []
        self.outcome_select.options = {outcome(name).label: name for name in names}

    def _start_sensitivity(self) -> None:
        run = self.session.run
        agents = count(self.sens_agents.value, "sensitivity agents")
        outcome = self.outcome_select.value
        if not outcome:
            raise ParamError("outcome: set up the run first")
        seeds = self.sens_seeds.value
        if seeds is None or not 1 <= seeds <= 32:
            raise ParamError(f"seeds: expected a whole number from 1 to 32, got {seeds}")
        fitted = run.fitted
        job = self.session.job
        what = f"sensitivities of {outcome} over {seeds} seed{'s' if seeds > 1 else ''}"

        def progress(done: int, total: int) -> None:
            job.progress = done / total
            job.status = f"{what}: {done} of {total} done"

        with run.snapshot() as (scenario, options, _, days, seed):
            self.session.submit(
                what,
                lambda: jobs.levers(
                    scenario,
                    options,
                    agents=agents,
                    days=days,
                    seed=seed,
                    outcome=outcome,
                    fitted=fitted,
                    seeds=seeds,
                    on_seed=progress,
                ),
                self._show_levers,
                self.alert,
            )

    def _show_levers(self, result: jobs.Levers) -> None:
        self._levers = result
        words = outcome(result.outcome)
        self.sens_bars.object = lever_plot(result)
        seeds = len(result.seeds)
        if seeds > 1:
            trust = (
                f"mean over {seeds} seeds; the band across a bar is ± 2 standard errors over them (the dots: "
                f"each seed), so a bar whose band crosses 0 has no sign you can trust. The estimator also "
                f"reads transmission parameters low over a whole wave (0.6–0.85 of a finite "
                f"difference on nyc-covid, `benchmarks/README.md`): check a large bar with **Re-simulate** "
                f"below."
            )
        else:
            trust = (
                "one seed: no band; the estimator's noise is of the order of a bar's change between "
                "seeds, so compare large bars and check one with **Re-simulate** below (or use 4 seeds)."
            )
        self.sens_text.object = (
            f"**{words.label}** = {result.value:,.1f} {words.unit} on {result.agents:,} agents "
            f"({words.about}). Each bar: how much it changes, to first order, when one parameter rises by "
            f"10% of its value (of its range when it is 0), others fixed; from the gradients of "
            f"{len(result.levers)} parameters in {result.seconds:.1f} s (forward + backward); {trust}"
        )
        self.whatif_select.options = {
            lever_label(lever): lever.option for lever in result.levers if lever.option
        }
        self._whatif_changed(reset_value=True)

    def _whatif_lever(self) -> jobs.Lever | None:
        if self._levers is None:
            return None
        return next((lev for lev in self._levers.levers if lev.option == self.whatif_select.value), None)

    def _whatif_changed(self, reset_value: bool = False) -> None:
        lever = self._whatif_lever()
        if lever is None or self._levers is None:
            self.whatif_text.object = ""
            return
        if reset_value:
            self.whatif_value.value = round(lever.value + lever.step, 6)
            return
        value = float(self.whatif_value.value if self.whatif_value.value is not None else lever.value)
        self.whatif_text.object = (
            f"**Gradient:** {outcome(self._levers.outcome).label} ≈ {_predicted(self._levers, lever, value)} "
            f"with {lever.label or lever.option} = {value:g} "
            f"(now {lever.value:g}: {self._levers.value:,.1f})."
        )

    def _start_whatif(self) -> None:
        lever, levers = self._whatif_lever(), self._levers
        if lever is None or levers is None or lever.option is None:
            raise ParamError("what if: compute the sensitivities first, then pick an option")
        value = float(self.whatif_value.value)
        option = lever.option
        agents = levers.agents
        run = self.session.run
        fitted = run.fitted
        with run.snapshot() as (scenario, options, _, days, seed):
            options[option].parse(str(value), option)  # a bad value is reported now, not in the job

            def done(resimulated: tuple[float, ...]) -> None:
                self.whatif_text.object = (
                    f"**Gradient:** {outcome(levers.outcome).label} ≈ {_predicted(levers, lever, value)} · "
                    f"**re-simulated:** {_resimulated(levers, resimulated)} "
                    f"with {lever.label or option} = {value:g} (now {lever.value:g}: {levers.value:,.1f}; "
                    f"{_same_seeds(levers)})."
                )

            self.session.submit(
                f"re-simulating with {option} = {value:g}",
                lambda: jobs.what_if(
                    scenario,
                    options,
                    agents=agents,
                    days=days,
                    seed=seed,
                    outcome=levers.outcome,
                    option=option,
                    value=value,
                    fitted=fitted,
                    seeds=len(levers.seeds) or 1,
                ),
                done,
                self.whatif_alert,
            )


def lever_label(lever: jobs.Lever) -> str:
    """A bar's label: the parameter in words and what +10% of it is (``beta (+0.005 1/contact/day)``)."""
    unit = f" {lever.unit}" if lever.unit and lever.unit != "relative" else ""
    return f"{lever.label or lever.parameter} (+{lever.step:.3g}{unit})"


SEEDS = 4
"""Seeds of a sensitivity by default: the fewest that give a band (a standard error from 3 degrees of
freedom), at 4× the cost of one."""


def lever_plot(levers: jobs.Levers, top: int = 14) -> hv.Overlay:
    """The ``top`` largest effects as horizontal bars (the mean over the seeds), each with its band
    (:attr:`jobs.Lever.band`, as error bars) and each seed's effect as a dot."""
    words = outcome(levers.outcome)
    shown = [lever for lever in levers.levers if lever.gradient != 0][:top][::-1]
    labels = [lever_label(lever) for lever in shown]
    bars = hv.Bars([(lab, lev.effect) for lab, lev in zip(labels, shown, strict=True)], "lever", "effect")
    band = hv.ErrorBars(
        [
            (lab, lev.effect, lev.effect - lev.band[0], lev.band[1] - lev.effect)
            for lab, lev in zip(labels, shown, strict=True)
        ],
        "lever",
        ["effect", "below", "above"],
    )
    dots = hv.Scatter(
        [(lab, e) for lab, lev in zip(labels, shown, strict=True) for e in lev.effects], "lever", "effect"
    )
    axis = f"change in {words.label} for +10% of the parameter ({words.unit})"
    return (
        bars.opts(color="#0b5394", tools=["hover"], invert_axes=True)
        * band.opts(color="#e69138", line_width=3, invert_axes=True)
        * dots.opts(color="#222222", size=4, alpha=0.6, invert_axes=True)
    ).opts(responsive=True, height=380, xlabel="", ylabel=axis)


def _predicted(levers: jobs.Levers, lever: jobs.Lever, value: float) -> str:
    predicted, low, high = levers.predicted(lever, value)
    if len(lever.gradients) < 2:
        return f"{predicted:,.1f}"
    return f"{predicted:,.1f} ({low:,.1f} to {high:,.1f}, ± 2 standard errors)"


def _resimulated(levers: jobs.Levers, values: tuple[float, ...]) -> str:
    """The mean of the re-simulated seeds and, with several, ± 2 standard errors of the change: each seed
    against its own sensitivity run (common random numbers)."""
    mean = sum(values) / len(values)
    if len(values) < 2 or len(levers.values) != len(values):
        return f"{mean:,.1f}"
    changes = [v - w for v, w in zip(values, levers.values, strict=True)]
    change, se = sum(changes) / len(changes), standard_error(changes)
    return f"{mean:,.1f} (a change of {change:+,.1f} ± {2 * se:,.1f}, ± 2 standard errors)"


def _same_seeds(levers: jobs.Levers) -> str:
    n = len(levers.seeds)
    return "the same seed" if n <= 1 else f"the same {n} seeds"
