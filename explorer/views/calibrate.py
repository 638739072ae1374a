"""The *Calibrate* tab: :class:`CalibrateView` — fit the scenario to its observed data with progress, and
use the fitted parameters in the run."""

from __future__ import annotations

from typing import Any

import holoviews as hv
import numpy as np
import panel as pn

from populace import ParamError
from populace.glossary import METRICS, term

from .. import jobs
from ..render import colour
from .session import Session, count

__all__ = ["CalibrateView"]


class CalibrateView(pn.viewable.Viewer):
    """Calibration on the session's job thread; its epochs show in the status line."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        guard = session.guard
        self.cal_agents = pn.widgets.TextInput(label="Agents", value="50_000", width=120)
        self.cal_epochs = pn.widgets.IntInput(label="Epochs", value=10, start=1, end=500, width=100)
        self.cal_button = pn.widgets.Button(label="Calibrate to observed data", color="primary", width=240)
        self.cal_use = pn.widgets.Button(
            label="Use the fitted parameters in the run", width=300, disabled=True
        )
        self.cal_plot = pn.pane.HoloViews(
            hv.Curve([]), sizing_mode="stretch_width", height=380, visible=False
        )  # shown with a calibration's result
        self.cal_text = pn.pane.Markdown("")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        """Errors of this tab's buttons, under them."""
        self.no_data = pn.pane.Markdown("", styles={"color": "#555"})
        self.cal_button.on_click(lambda _: guard(self._start_calibration, self.alert))
        self.cal_use.on_click(lambda _: guard(self._use_fitted, self.alert))
        session.param.watch(lambda _: self._enable(), "scenario")
        self._enable()
        self._calibration: tuple[Any, dict[str, str]] | None = None
        self.layout = pn.Column(
            pn.pane.Markdown(
                "Fit the scenario to its observed data by gradient descent through the simulation "
                "(`populace calibrate`): the scenario's observed options (orders, start), then the fitted "
                "scales and weekly transmission."
            ),
            pn.Row(self.cal_agents, self.cal_epochs, self.cal_button),
            self.no_data,
            self.alert,
            self.cal_plot,
            self.cal_text,
            self.cal_use,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _enable(self) -> None:
        """Calibration needs observed data: the button is off, and says why, for a scenario without."""
        scenario = self.session.run.scenario_class
        self.cal_button.disabled = scenario.default_start is None
        self.no_data.object = (
            f"*{scenario.name} has no observed data to calibrate against (a fictional or "
            f"synthetic place); choose nyc-covid to calibrate.*"
            if scenario.default_start is None
            else ""
        )

    def _start_calibration(self) -> None:
        run = self.session.run
        agents = count(self.cal_agents.value, "calibration agents")
        epochs = int(self.cal_epochs.value)
        scenario = run.scenario_class
        if scenario.default_start is None:
            raise ParamError(f"calibrate: {scenario.name} has no observed data to calibrate against")
        days = int(run.days)
        job = self.session.job

        def progress(epoch: int, loss: float) -> None:
            job.progress = (epoch + 1) / epochs
            job.status = f"calibrating: epoch {epoch + 1}/{epochs}, loss {loss:.3f}"

        self.session.submit(
            f"calibrating {scenario.name} on {agents:,} agents",
            lambda: jobs.calibrate(
                scenario, agents=agents, days=days, epochs=epochs, seed=int(run.seed), on_epoch=progress
            ),
            self._show_calibration,
            self.alert,
        )

    def _show_calibration(self, result: tuple[Any, dict[str, str]]) -> None:
        report, _ = result
        self._calibration = result
        curves = []
        for i, (name, predicted) in enumerate(report.predictions.items()):
            observed = report.observed[name].numpy()
            days = np.arange(len(observed))
            total = np.where(np.isnan(observed).all(1), np.nan, np.nansum(observed, 1))
            curves.append(
                hv.Scatter((days, total), "day", "per day", label=f"observed {term(name).label}").opts(
                    color=colour("", i), size=3
                )
            )
            curves.append(
                hv.Curve(
                    (days, predicted.numpy().sum(1)), "day", "per day", label=f"fitted {term(name).label}"
                ).opts(color=colour("", i), line_width=2)
            )
        self.cal_plot.visible = True
        self.cal_plot.object = hv.Overlay(curves).opts(
            responsive=True, height=380, legend_position="top_right", logy=False
        )
        nd = ", ".join(f"{term(k).label} {v['nd']:.2f}" for k, v in report.metrics.items())
        runs = len(next(iter(report.metrics.values()))["runs"]["nd"])
        self.cal_text.object = (
            f"{report.epochs} epochs in {report.wall_s:.0f} s; "
            f"loss {report.loss[0]:.3f} → {report.loss[-1]:.3f}; "
            f"normalised deviation (ND) {nd} (fitted: the mean of {runs} runs; city totals shown; ND over "
            f"boroughs).\n\n*ND, normalised deviation: {METRICS['ND'].about}.*"
        )
        self.cal_use.disabled = False

    def _use_fitted(self) -> None:
        if self._calibration is None:
            raise ParamError("calibrate first")
        report, texts = self._calibration
        run = self.session.run
        run.apply_options(texts)
        run.fitted = report.parameters
        self.session.setup_run()
