"""The *Sensitivity* tab: :class:`SensitivityView` — bars of d(outcome)/d(parameter) from one reverse pass,
and a gradient "what if" beside the re-simulated value."""

from __future__ import annotations

from typing import Any

import holoviews as hv
import panel as pn

from populace import ParamError

from .. import jobs
from .session import Session, count

__all__ = ["SensitivityView"]


class SensitivityView(pn.viewable.Viewer):
    """Which levers matter, at the run's current settings (jobs run on the session's job thread)."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        guard = session.guard
        self.outcome_select = pn.widgets.Select(label="Outcome", options=[], width=260)
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
        self.whatif_select = pn.widgets.Select(label="What if this option…", options=[], width=260)
        self.whatif_value = pn.widgets.FloatInput(label="…took this value", width=160)
        self.whatif_button = pn.widgets.Button(label="Re-simulate", width=140)
        self.whatif_text = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.sens_button.on_click(lambda _: guard(self._start_sensitivity))
        self.whatif_select.param.watch(lambda _: self._whatif_changed(reset_value=True), "value")
        self.whatif_value.param.watch(lambda _: self._whatif_changed(), "value")
        self.whatif_button.on_click(lambda _: guard(self._start_whatif))
        self.session.param.watch(lambda _: self._new_setup(), "setup")
        self._levers: jobs.Levers | None = None
        self.layout = pn.Column(
            pn.pane.Markdown(
                "Which levers matter: the change of the outcome for +10% of each parameter, to first order, "
                "from one reverse pass through the simulation (`populace.sensitivity`), at the current "
                "settings."
            ),
            pn.Row(self.outcome_select, self.sens_agents, self.sens_button),
            self.sens_bars,
            self.sens_text,
            pn.Row(self.whatif_select, self.whatif_value, self.whatif_button),
            self.whatif_text,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _new_setup(self) -> None:
        model = self.session.run.model
        self.outcome_select.options = jobs.outcomes(model) if model is not None else []

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
            )

    def _show_levers(self, result: jobs.Levers) -> None:
        self._levers = result
        top = [lever for lever in result.levers if lever.gradient != 0][:14]
        bars = hv.Bars(
            [(lever.label or lever.parameter, lever.effect) for lever in top][::-1], "lever", "effect"
        ).opts(
            invert_axes=True,
            responsive=True,
            height=380,
            color="#0b5394",
            tools=["hover"],
            xlabel="",
            ylabel=f"change of {result.outcome} for +10%",
        )
        self.sens_bars.object = bars
        self.sens_text.object = (
            f"{result.outcome} = {result.value:,.1f} on {result.agents:,} agents; gradients of "
            f"{len(result.levers)} parameters in {result.seconds:.1f} s (forward + backward)."
        )
        self.whatif_select.options = [lever.option for lever in result.levers if lever.option]
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
            f"**Gradient:** {self._levers.outcome} ≈ {predicted:,.1f} with {lever.option} = {value:g} "
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
                    f"**Gradient:** {levers.outcome} ≈ {predicted:,.1f} · "
                    f"**re-simulated:** {resimulated:,.1f} "
                    f"with {option} = {value:g} (now {lever.value:g}: {levers.value:,.1f}; same seed)."
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
            )
