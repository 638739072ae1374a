"""The *Sensitivity* tab: :class:`SensitivityView` — bars of d(outcome)/d(parameter) from one reverse pass,
and a gradient "what if" beside the re-simulated value."""

from __future__ import annotations

from typing import Any

import holoviews as hv
import panel as pn

from populace import ParamError
from populace.glossary import outcome

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
                "from one reverse pass through the simulation (`populace.sensitivity`), at the current "
                "settings."
            ),
            pn.Row(self.outcome_select, self.sens_agents, self.sens_button),
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
        fitted = run.fitted
        with run.snapshot() as (scenario, options, _, days, seed):
            self.session.submit(
                f"sensitivities of {outcome}",
                lambda: jobs.levers(
                    scenario, options, agents=agents, days=days, seed=seed, outcome=outcome, fitted=fitted
                ),
                self._show_levers,
                self.alert,
            )

    def _show_levers(self, result: jobs.Levers) -> None:
        self._levers = result
        words = outcome(result.outcome)
        top = [lever for lever in result.levers if lever.gradient != 0][:14]
        bars = hv.Bars([(lever_label(lever), lever.effect) for lever in top][::-1], "lever", "effect").opts(
            invert_axes=True,
            responsive=True,
            height=380,
            color="#0b5394",
            tools=["hover"],
            xlabel="",
            ylabel=f"change in {words.label} for +10% of the parameter ({words.unit})",
        )
        self.sens_bars.object = bars
        self.sens_text.object = (
            f"**{words.label}** = {result.value:,.1f} {words.unit} on {result.agents:,} agents "
            f"({words.about}). Each bar: how much it changes, to first order, when one parameter rises by "
            f"10% of its value (of its range when it is 0), others fixed; from the gradients of "
            f"{len(result.levers)} parameters in {result.seconds:.1f} s (forward + backward), one seed: "
            f"the estimator's noise is of the order of a bar's change between seeds, so compare large bars "
            f"and check one with **Re-simulate** below."
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
        predicted = self._levers.value + lever.gradient * (value - lever.value)
        self.whatif_text.object = (
            f"**Gradient:** {outcome(self._levers.outcome).label} ≈ {predicted:,.1f} with "
            f"{lever.label or lever.option} = {value:g} "
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

            def done(resimulated: float) -> None:
                predicted = levers.value + lever.gradient * (value - lever.value)
                self.whatif_text.object = (
                    f"**Gradient:** {outcome(levers.outcome).label} ≈ {predicted:,.1f} · "
                    f"**re-simulated:** {resimulated:,.1f} "
                    f"with {lever.label or option} = {value:g} (now {lever.value:g}: {levers.value:,.1f}; "
                    f"same seed)."
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
                ),
                done,
                self.whatif_alert,
            )


def lever_label(lever: jobs.Lever) -> str:
    """A bar's label: the parameter in words and what +10% of it is (``beta (+0.005 1/contact/day)``)."""
    unit = f" {lever.unit}" if lever.unit and lever.unit != "relative" else ""
    return f"{lever.label or lever.parameter} (+{lever.step:.3g}{unit})"
