"""The explorer's views: :class:`Explorer`, a ``pn.viewable.Viewer`` over a :class:`~.live.LiveRun`.

Layout: a sidebar (scenario, size, seed, set-up/reset, step, play/pause, speed, days per redraw, the day
counter, errors, and one control per scenario option, grouped into live ones and ones that need a reset)
and tabs: *Run* (the Datashader map of every agent over the area outlines, the curves, the tapped area's
counts), *Sensitivity* (bars of d(outcome)/d(parameter) and a gradient "what if" beside the re-simulated
value), *Compare* (two settings side by side), *Calibrate* (fit to observed data with progress), *Export*
(curves as CSV/Parquet, map as PNG) and *About*.

Each browser session (or notebook cell) polls the run every ``refresh_ms`` and redraws when a new frame is
out; slow work (set-up, simulation, jobs) runs on worker threads, so the page never blocks on it.
"""

from __future__ import annotations

import datetime as dt
import importlib
import io
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import panel as pn
import param
import torch
from bokeh.events import RangesUpdate, Tap
from panel.io.notebook import push_notebook

from populace import Choice, Param, ParamError
from populace.cli import UsageError, parse_count
from populace.simulate import Result

from . import jobs
from .figures import CurveFigure, Line, MapFigure, Points
from .live import MAX_AGENTS, AgentMap, Frame, LiveRun
from .render import Extent, MapPainter, View, colour, composite, palette, to_png

__all__ = ["Explorer"]

log = logging.getLogger(__name__)

SIDEBAR_WIDTH = 340
MAP_SIZE = (620, 560)
CURVES_WIDTH = 450
DAY_VIEWS = ("stage groups", "daily events", "tests and costs")
CURVES_EVERY_S = 0.2
"""While playing, the curves take the new days at most this often: each update re-ranges and re-lays out the
plot in the browser, which held the classroom at 18 days/s with every day sent and 29 without curves."""


class Explorer(pn.viewable.Viewer):
    """The Populace Explorer for one scenario run (see module docs).

    ``Explorer(scenario="classroom")`` builds its own :class:`LiveRun`; ``Explorer(run=shared)`` views a
    run shared with other sessions (``populace explore`` does this, so the population and simulation are
    built once per server process).

    Args:
        scenario, agents: passed to a new :class:`LiveRun` (ignored with ``run``).
        run: an existing run to view.
        refresh_ms: how often the session looks for a new frame.
    """

    def __init__(
        self,
        scenario: str = "classroom",
        *,
        agents: int | None = None,
        run: LiveRun | None = None,
        refresh_ms: int = 25,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        _extensions()
        self.run = run if run is not None else LiveRun(scenario, agents=agents)
        self.refresh_ms = refresh_ms
        self._layers: tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None = None
        self._shown_homes: np.ndarray | None = None
        self._painter: MapPainter | None = None
        self._curves_at = 0.0
        self._drawn = -1
        self._tapped: int | None = None
        self._syncing = False
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix="populace-job")
        self._job = _JobState()
        self._job_seen = 0
        self._pinned: dict[str, Param | Choice] | None = None
        self._option_widgets: dict[str, pn.widgets.Widget] = {}
        self._options_layout: tuple | None = None
        self._build()

    # ================================================================== layout
    def _build(self) -> None:
        run = self.run
        self.scenario_select = pn.widgets.Select(
            label="Scenario", options=list(run.param.scenario.objects), value=run.scenario, width=300
        )
        self.agents_input = pn.widgets.TextInput(
            label="Agents", value=f"{run.agents:,}".replace(",", "_"), width=140, description=_AGENTS_DOC
        )
        self.seed_text = pn.pane.Markdown("", width=140, margin=(18, 5, 0, 5))
        self.setup_button = pn.widgets.Button(label="Set up / reset", color="primary", width=140)
        self.seed_button = pn.widgets.Button(label="New seed", width=140)
        self.step_button = pn.widgets.Button(label="Step", width=90)
        self.play_toggle = pn.widgets.Toggle(label="▶ Play", color="success", width=90)
        self.days_input = pn.widgets.IntInput(label="Days", value=run.days, start=1, end=3650, width=90)
        self.speed_slider = pn.widgets.FloatSlider(
            label="Speed (days/s, 0 = fastest)", start=0, end=50, step=0.5, value=run.speed, width=300
        )
        self.frame_slider = pn.widgets.IntSlider(
            label="Days per redraw", start=1, end=30, value=run.days_per_frame, width=300
        )
        self.day_text = pn.pane.Markdown("", width=300, css_classes=["populace-day"])
        self.status_text = pn.pane.Markdown("", width=300, styles={"color": "#555"})
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, width=300)
        self.pending_text = pn.pane.Alert("", alert_type="warning", visible=False, width=300)
        self.observed_button = pn.widgets.Button(
            label="Use what happened (orders, start)", width=300, visible=False
        )
        self.live_card = pn.Card(title="Live: apply from the next day", width=320, collapsed=False)
        self.reset_card = pn.Card(title="Apply after a reset", width=320, collapsed=True)

        self.scenario_select.param.watch(self._on_scenario, "value")
        self.setup_button.on_click(lambda _: self._guard(self._setup))
        self.seed_button.on_click(lambda _: self._guard(self.run.new_seed))
        self.step_button.on_click(lambda _: self._guard(self.run.step))
        self.play_toggle.param.watch(self._on_play, "value")
        self.days_input.param.watch(lambda e: self._guard(lambda: setattr(self.run, "days", e.new)), "value")
        self.speed_slider.param.watch(lambda e: setattr(self.run, "speed", e.new), "value_throttled")
        self.frame_slider.param.watch(lambda e: setattr(self.run, "days_per_frame", e.new), "value_throttled")
        self.observed_button.on_click(lambda _: self._guard(self._use_observed))

        sidebar = pn.Column(
            pn.pane.Markdown("## Populace Explorer", margin=(0, 5)),
            self.scenario_select,
            pn.Row(self.agents_input, self.seed_text),
            pn.Row(self.setup_button, self.seed_button),
            pn.Row(self.step_button, self.play_toggle, self.days_input),
            self.speed_slider,
            self.frame_slider,
            self.day_text,
            self.status_text,
            self.alert,
            self.pending_text,
            self.observed_button,
            self.live_card,
            self.reset_card,
            width=SIDEBAR_WIDTH,
            scroll=True,
            sizing_mode="stretch_height",
        )
        self.tabs = pn.Tabs(
            ("Run", self._run_tab()),
            ("Sensitivity", self._sensitivity_tab()),
            ("Compare", self._compare_tab()),
            ("Calibrate", self._calibrate_tab()),
            ("Export", self._export_tab()),
            ("About", self._about_tab()),
            dynamic=False,
        )
        self.layout = pn.Row(sidebar, self.tabs, sizing_mode="stretch_both", min_height=760)
        self._sync_options()

    def __panel__(self) -> pn.viewable.Viewable:
        pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)
        self.run.viewers += 1
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _: self._detach())
        return self.layout

    def _detach(self) -> None:
        self.run.viewers = max(0, self.run.viewers - 1)
        self.close()

    # ------------------------------------------------------------------ run tab
    def _run_tab(self) -> pn.viewable.Viewable:
        width, height = MAP_SIZE
        self.map_figure = MapFigure(width, height)
        self.map_figure.figure.on_event(RangesUpdate, self._on_ranges)
        self.map_figure.figure.on_event(Tap, lambda event: self._on_tap(event.x, event.y))
        self._extent: Extent | None = None  # what the map shows: set by zoom and pan, or the whole area
        self._map_stale = False
        self.map_pane = pn.pane.Bokeh(self.map_figure.figure, width=width + 20, height=height + 40)
        self.legend = pn.pane.HTML("", width=width)
        self.curve_select = pn.widgets.Select(label="Curves", options=list(DAY_VIEWS), width=260)
        self.observed_toggle = pn.widgets.Checkbox(label="observed data", value=True, width=140)
        self.curve_select.param.watch(lambda _: self._new_curves(), "value")
        self.observed_toggle.param.watch(lambda _: self._new_curves(), "value")
        self.curve_figure = self._curve_figure()
        self.curve_pane = pn.pane.Bokeh(self.curve_figure.figure, width=CURVES_WIDTH + 10, height=340)
        self.area_text = pn.pane.Markdown("*Tap an area on the map for its counts.*", width=520)
        return pn.Row(
            pn.Column(self.map_pane, self.legend),
            pn.Column(
                pn.Row(self.curve_select, self.observed_toggle),
                self.curve_pane,
                self.area_text,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def _on_ranges(self, event: RangesUpdate) -> None:
        """Zoom or pan ended: re-aggregate at the new extent (on the next refresh, so that a burst of wheel
        events costs one painting)."""
        extent = (event.x0, event.x1, event.y0, event.y1)
        if all(v is not None and math.isfinite(v) for v in extent) and extent != self._extent:
            self._extent = extent
            self._map_stale = True

    def _paint_map(self) -> None:
        frame, agents = self.run.frame, self.run.map
        self._map_stale = False
        if agents is None or self._extent is None:
            return
        groups = frame.groups if frame.groups is not None and len(frame.groups) == len(agents.x) else None
        if self._painter is None or self._painter.x is not agents.x:
            self._painter = MapPainter(agents.x, agents.y)
        view = View(self._extent, *MAP_SIZE)
        homes = self._painter.homes(view)
        if homes is not self._shown_homes:  # a new extent
            self.map_figure.show_homes(homes, self._extent)
            self._shown_homes = homes
        index = self._painter.overlay(groups, frame.group_names, view)
        self.map_figure.show_groups(index, self._extent, palette(frame.group_names))
        self._layers = (homes, index, frame.group_names)

    @property
    def image(self) -> np.ndarray | None:
        """The map as last drawn, ``uint8[height, width, 4]`` (exported as PNG)."""
        return composite(*self._layers) if self._layers is not None else None

    def _new_population(self) -> None:
        """A set-up: show the whole area and its outlines (zoom and tap start over)."""
        agents = self.run.map
        self._tapped = None
        if agents is None:
            self._extent = None
            self.map_figure.set_outlines([])
            return
        x0, y0, x1, y1 = agents.extent
        self._extent = self.map_figure.fit((x0, x1, y0, y1))
        self.map_figure.set_outlines(_outline_rings(agents))

    def _on_tap(self, x: float | None, y: float | None) -> None:
        agents = self.run.map
        if agents is None or agents.outlines is None or x is None or y is None:
            return
        n = agents.outlines.n
        px, py = torch.full((n,), float(x)), torch.full((n,), float(y))
        hits = agents.outlines.inside(torch.arange(n), px, py).nonzero().flatten().tolist()
        if hits:
            area_id = agents.outlines.ids[hits[0]]
            self._tapped = agents.areas.index(area_id) if area_id in agents.areas else None
        else:
            self._tapped = None
        self._show_area()

    def _show_area(self) -> None:
        agents, frame = self.run.map, self.run.frame
        if agents is None or self._tapped is None:
            self.area_text.object = "*Tap an area on the map for its counts.*"
            return
        a = self._tapped
        members = agents.area == a
        lines = [
            f"**{agents.areas[a]}** ({agents.regions[int(agents.area_region[a])]}), day {frame.day}: "
            f"{int(members.sum()):,} residents"
        ]
        if frame.groups is not None and len(frame.groups) == len(members):
            counts = np.bincount(frame.groups[members], minlength=len(frame.group_names))
            lines.append(
                " · ".join(f"{g} {int(c):,}" for g, c in zip(frame.group_names, counts, strict=True))
            )
        self.area_text.object = "\n\n".join(lines)

    def _new_curves(self) -> None:
        """A new plot when the curves shown change (a new set of lines needs a new legend)."""
        self.curve_figure = self._curve_figure()
        self.curve_pane.object = self.curve_figure.figure

    def _curve_figure(self) -> CurveFigure:
        view = self.curve_select.value
        return CurveFigure(
            self._lines(),
            self._observed_points(view),
            ylabel="agents per day" if view != "stage groups" else "agents",
            width=CURVES_WIDTH,
            height=320,
        )

    def _lines(self) -> list[Line]:
        """The curves of the chosen view, from day 0 to the frame's day (the same lines every frame, empty
        at day 0: the legend stays put)."""
        frame = self.run.frame
        view = self.curve_select.value
        if view == "stage groups":
            return [
                Line(group, values, colour(group, i))
                for i, (group, values) in enumerate(frame.group_series().items())
            ]
        if view == "daily events":
            names = [n for n in frame.names() if n.startswith("new_") and "_by_" not in n]
            return [Line(name, frame.series(name), colour("", i)) for i, name in enumerate(names)]
        if view == "tests and costs":
            out = []
            for name in (n for n in frame.names() if _is_test_or_cost(n)):
                values = frame.series(name)
                if values.ndim == 1:
                    cost = name.startswith("cost_")
                    label = f"{name} (cumulative $)" if cost else name
                    out.append(Line(label, np.cumsum(values) if cost else values, colour("", len(out))))
            return out
        if view in frame.history:
            values = frame.series(view)
            labels = frame.labels.get(view, ())
            columns = values.shape[1] if values.ndim == 2 else 0
            return [
                Line(labels[i] if i < len(labels) else str(i), values[:, i], colour("", i))
                for i in range(columns)
            ]
        return []

    def _observed_points(self, view: str) -> list[Points]:
        """Observed data in agents (observed ÷ the stream's scale), by column for a vector series or summed
        for the daily-events view."""
        if not self.observed_toggle.value or view not in ("daily events", *self.run.frame.history):
            return []
        out: list[Points] = []
        for i, stream in enumerate(self.run.observed):
            if (
                stream.reported is not None
                or stream.combine is not None
                or not isinstance(stream.scale, float)
            ):
                continue  # reported shares and rates per group have no plain count to compare with
            observed = stream.observed.numpy() / stream.scale
            days = np.arange(len(observed))
            if view == "daily events":
                total = np.where(np.isnan(observed).all(1), np.nan, np.nansum(observed, 1))
                event = stream.series.removesuffix("_by_borough")
                out.append(Points(f"observed {stream.name} ({event})", days, total, colour("", i + 3)))
            elif stream.series == view:
                for j, name in enumerate(stream.labels):
                    out.append(Points(f"observed {name}", days, observed[:, j], colour("", j), alpha=0.6))
        return out

    # ------------------------------------------------------------------ sensitivity tab
    def _sensitivity_tab(self) -> pn.viewable.Viewable:
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
        self.sens_button.on_click(lambda _: self._guard(self._start_sensitivity))
        self.whatif_select.param.watch(lambda _: self._whatif_changed(reset_value=True), "value")
        self.whatif_value.param.watch(lambda _: self._whatif_changed(), "value")
        self.whatif_button.on_click(lambda _: self._guard(self._start_whatif))
        self._levers: jobs.Levers | None = None
        return pn.Column(
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

    def _start_sensitivity(self) -> None:
        agents = _count(self.sens_agents.value, "sensitivity agents")
        outcome = self.outcome_select.value
        if not outcome:
            raise ParamError("outcome: set up the run first")
        fitted = self.run.fitted
        with self.run.snapshot() as (scenario, options, _, days, seed):
            self._submit_job(
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
            [(lever.option or lever.parameter, lever.effect) for lever in top][::-1], "lever", "effect"
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
        fitted = self.run.fitted
        with self.run.snapshot() as (scenario, options, _, days, seed):
            options[option].parse(str(value), option)  # a bad value is reported now, not in the job

            def done(resimulated: float) -> None:
                predicted = levers.value + lever.gradient * (value - lever.value)
                self.whatif_text.object = (
                    f"**Gradient:** {levers.outcome} ≈ {predicted:,.1f} · "
                    f"**re-simulated:** {resimulated:,.1f} "
                    f"with {option} = {value:g} (now {lever.value:g}: {levers.value:,.1f}; same seed)."
                )

            self._submit_job(
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

    # ------------------------------------------------------------------ compare tab
    def _compare_tab(self) -> pn.viewable.Viewable:
        self.pin_button = pn.widgets.Button(label="Pin the current settings as A", width=260)
        self.compare_button = pn.widgets.Button(
            label="Run A and the current settings (B)", color="primary", width=280
        )
        self.pin_text = pn.pane.Markdown("*Nothing pinned yet.*")
        self.compare_plot = pn.pane.HoloViews(hv.Curve([]), sizing_mode="stretch_width", height=360)
        self.compare_text = pn.pane.Markdown("")
        self.pin_button.on_click(lambda _: self._pin())
        self.compare_button.on_click(lambda _: self._guard(self._start_compare))
        return pn.Column(
            pn.Row(self.pin_button, self.compare_button),
            self.pin_text,
            self.compare_plot,
            self.compare_text,
            sizing_mode="stretch_width",
        )

    def _pin(self) -> None:
        with self.run.snapshot() as (scenario, options, *_):
            self._pinned = options
            self.pin_text.object = f"A = the {scenario.name} settings pinned at {dt.datetime.now():%H:%M:%S}."

    def _start_compare(self) -> None:
        if self._pinned is None:
            raise ParamError("compare: pin a setting as A first")
        pinned, fitted = self._pinned, self.run.fitted
        with self.run.snapshot() as (scenario, options, agents, days, seed):
            if set(pinned) != set(options):
                raise ParamError("compare: A was pinned on another scenario; pin again")
            self._submit_job(
                f"comparing two settings on {agents:,} agents",
                lambda: jobs.compare(
                    scenario, pinned, options, agents=agents, days=days, seed=seed, fitted=fitted
                ),
                self._show_comparison,
            )

    def _show_comparison(self, c: jobs.Comparison) -> None:
        curves = []
        for i, name in enumerate(n for n in ("infectious", "hospitalised", "I") if n in c.a.series):
            for tag, result, dash in (("A", c.a, "dashed"), ("B", c.b, "solid")):
                values = result.series[name].numpy()
                curves.append(
                    hv.Curve((result.days.numpy(), values), "day", "agents", label=f"{name} {tag}").opts(
                        color=colour("", i), line_dash=dash, line_width=2
                    )
                )
        self.compare_plot.object = hv.Overlay(curves).opts(
            responsive=True, height=360, legend_position="top_left"
        )
        rows = ["| total | A | B | B − A |", "|---|---:|---:|---:|"]
        for name, (a, b) in c.totals().items():
            rows.append(f"| {name} | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} |")
        changed = (
            ", ".join(f"{k}: {a} → {b}" for k, (a, b) in c.differences.items()) or "none (same settings)"
        )
        self.compare_text.object = (
            f"Same seed, {c.agents:,} agents. Options that differ: {changed}.\n\n" + "\n".join(rows)
        )

    # ------------------------------------------------------------------ calibrate tab
    def _calibrate_tab(self) -> pn.viewable.Viewable:
        self.cal_agents = pn.widgets.TextInput(label="Agents", value="50_000", width=120)
        self.cal_epochs = pn.widgets.IntInput(label="Epochs", value=10, start=1, end=500, width=100)
        self.cal_button = pn.widgets.Button(label="Calibrate to observed data", color="primary", width=240)
        self.cal_use = pn.widgets.Button(
            label="Use the fitted parameters in the run", width=300, disabled=True
        )
        self.cal_plot = pn.pane.HoloViews(hv.Curve([]), sizing_mode="stretch_width", height=380)
        self.cal_text = pn.pane.Markdown("")
        self.cal_button.on_click(lambda _: self._guard(self._start_calibration))
        self.cal_use.on_click(lambda _: self._guard(self._use_fitted))
        self._calibration: tuple[Any, dict[str, str]] | None = None
        return pn.Column(
            pn.pane.Markdown(
                "Fit the scenario to its observed data by gradient descent through the simulation "
                "(`populace calibrate`): the scenario's observed options (orders, start), then the fitted "
                "scales and weekly transmission."
            ),
            pn.Row(self.cal_agents, self.cal_epochs, self.cal_button),
            self.cal_plot,
            self.cal_text,
            self.cal_use,
            sizing_mode="stretch_width",
        )

    def _start_calibration(self) -> None:
        agents = _count(self.cal_agents.value, "calibration agents")
        epochs = int(self.cal_epochs.value)
        scenario = self.run.scenario_class
        if scenario.default_start is None:
            raise ParamError(f"calibrate: {scenario.name} has no observed data to calibrate against")
        days = int(self.run.days)
        job = self._job

        def progress(epoch: int, loss: float) -> None:
            job.progress = (epoch + 1) / epochs
            job.status = f"calibrating: epoch {epoch + 1}/{epochs}, loss {loss:.3f}"

        self._submit_job(
            f"calibrating {scenario.name} on {agents:,} agents",
            lambda: jobs.calibrate(
                scenario, agents=agents, days=days, epochs=epochs, seed=int(self.run.seed), on_epoch=progress
            ),
            self._show_calibration,
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
                hv.Scatter((days, total), "day", "per day", label=f"observed {name}").opts(
                    color=colour("", i), size=3
                )
            )
            curves.append(
                hv.Curve((days, predicted.numpy().sum(1)), "day", "per day", label=f"fitted {name}").opts(
                    color=colour("", i), line_width=2
                )
            )
        self.cal_plot.object = hv.Overlay(curves).opts(
            responsive=True, height=380, legend_position="top_right", logy=False
        )
        nd = ", ".join(f"{k} ND {v['nd']:.2f}" for k, v in report.metrics.items())
        runs = len(next(iter(report.metrics.values()))["runs"]["nd"])
        self.cal_text.object = (
            f"{report.epochs} epochs in {report.wall_s:.0f} s; "
            f"loss {report.loss[0]:.3f} → {report.loss[-1]:.3f}; "
            f"{nd} (fitted: the mean of {runs} runs; city totals shown; ND over boroughs)."
        )
        self.cal_use.disabled = False

    def _use_fitted(self) -> None:
        if self._calibration is None:
            raise ParamError("calibrate first")
        report, texts = self._calibration
        self.run.apply_options(texts)
        self.run.fitted = report.parameters
        self._setup()

    # ------------------------------------------------------------------ export and about
    def _export_tab(self) -> pn.viewable.Viewable:
        self.csv_download = pn.widgets.FileDownload(
            callback=lambda: self._curves_file(".csv"), filename="populace-curves.csv", label="Curves as CSV"
        )
        self.parquet_download = pn.widgets.FileDownload(
            callback=lambda: self._curves_file(".parquet"),
            filename="populace-curves.parquet",
            label="Curves as Parquet",
        )
        self.png_download = pn.widgets.FileDownload(
            callback=self._map_png, filename="populace-map.png", label="Map as PNG"
        )
        return pn.Column(
            pn.pane.Markdown(
                "Every recorded series up to the current day (one column per series and entry), "
                "and the map as drawn now."
            ),
            self.csv_download,
            self.parquet_download,
            self.png_download,
        )

    def curves_result(self) -> Result:
        """The run's series so far as a :class:`~populace.simulate.Result`."""
        frame = self.run.frame
        series = {name: torch.from_numpy(frame.series(name)) for name in frame.names()} if frame.day else {}
        return Result(days=torch.arange(frame.day), series=series, labels=dict(frame.labels))

    def _curves_file(self, suffix: str) -> io.BytesIO:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"curves{suffix}"
            self.curves_result().save(path)
            return io.BytesIO(path.read_bytes())

    def _map_png(self) -> io.BytesIO:
        if self.image is None:
            raise ParamError("export: the map has not been drawn yet")
        return io.BytesIO(to_png(self.image))

    def _about_tab(self) -> pn.viewable.Viewable:
        self.about_text = pn.pane.Markdown("", sizing_mode="stretch_width")
        return pn.Column(self.about_text, sizing_mode="stretch_width", scroll=True)

    # ================================================================== controls
    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a UI action; a bad value or a failure shows in the alert instead of escaping."""
        try:
            action()
            self._show_error("")
        except (ParamError, UsageError, ValueError) as exc:
            self._show_error(str(exc))
        except Exception as exc:
            log.exception("explorer action failed")
            self._show_error(f"{type(exc).__name__}: {exc}")

    def _show_error(self, message: str) -> None:
        with pn.io.hold():  # one change on the page: the text and the alert's visibility together
            self.alert.object = message
            self.alert.visible = bool(message)

    def _setup(self) -> None:
        agents = _count(self.agents_input.value, "agents")
        self.run.agents = agents
        self.run.setup()

    def _on_scenario(self, event: param.parameterized.Event) -> None:
        def change() -> None:
            self.run.scenario = event.new
            self.agents_input.value = f"{self.run.agents:,}".replace(",", "_")
            self.days_input.value = self.run.days
            self.run.setup()

        self._guard(change)

    def _on_play(self, event: param.parameterized.Event) -> None:
        if self._syncing:
            return
        if event.new:
            self.run.play()
        else:
            self.run.pause()

    def _use_observed(self) -> None:
        scenario = self.run.scenario_class
        if scenario.default_start is None:
            raise ParamError(f"{scenario.name} has no observed data")
        self.run.apply_options(scenario().observed_options(scenario.default_start))
        self._setup()

    def _sync_options(self) -> None:
        """One control per option of the scenario, grouped by whether it applies live. Which options are
        live depends on the model built, so a set-up rebuilds the controls, but only when the grouping
        changed (building forty widgets is slow)."""
        run = self.run
        layout = (run.scenario, tuple(run.options), tuple(run.is_live(n) for n in run.options))
        if layout == self._options_layout:
            return
        self._options_layout = layout
        live, reset = [], []
        self._option_widgets = {}
        for name, option in run.options.items():
            widget = _option_widget(name, option)
            widget.param.watch(self._option_handler(name), "value")
            self._option_widgets[name] = widget
            (live if run.is_live(name) else reset).append(_option_view(widget, option))
        self.live_card.objects = live or [pn.pane.Markdown("*(set up the run first)*")]
        self.reset_card.objects = reset
        self.observed_button.visible = run.scenario_class.default_start is not None
        self.about_text.object = _about(run)

    def _option_handler(self, name: str) -> Callable[[param.parameterized.Event], None]:
        def changed(event: param.parameterized.Event) -> None:
            if self._syncing:
                return
            self._guard(lambda: self.run.set_option(name, event.new))

        return changed

    # ================================================================== refresh (per session)
    def refresh(self) -> None:
        """Bring this session's views up to date with the run (called every ``refresh_ms``)."""
        run, frame = self.run, self.run.frame
        self._syncing = True
        try:
            if self.play_toggle.value != run.playing:
                self.play_toggle.value = run.playing
            self.play_toggle.label = "❚❚ Pause" if run.playing else "▶ Play"
            if self.scenario_select.value != run.scenario:
                self.scenario_select.value = run.scenario
            for name, widget in self._option_widgets.items():
                value = run.options[name].value if name in run.options else None
                if (
                    value is not None
                    and widget.value != value
                    and not isinstance(widget, pn.widgets.TextInput)
                ):
                    widget.value = value
        finally:
            self._syncing = False
        held_back = not run.playing and self.curve_figure.days != frame.day  # days not sent while playing
        changed = frame.version != self._drawn or self._map_stale or held_back
        if frame.version != self._drawn:
            self._draw(frame)
        elif self._map_stale:
            self._paint_map()
        if held_back:
            self.curve_figure.update(self._lines())
        if changed:  # Bokeh models changed in place reach a notebook only when pushed (a server syncs them)
            push_notebook(self.map_pane, self.curve_pane)
        # after the drawing: when the page shows the day, it has that day's map and curves
        self.seed_text.object = f"seed **{run.seed}**"
        self.day_text.object = f"### Day {frame.day} of {run.days}"
        step = f" · last step {1000 * run.step_seconds:.0f} ms" if run.step_seconds else ""
        busy = run.busy or self._job.status
        self.status_text.object = (busy + "…" if busy else "ready") + step
        if run.error and not self.alert.visible:
            self._show_error(run.error)
        pending = sorted(run.pending)
        self.pending_text.object = (
            f"Press **Set up / reset** to apply: {', '.join(pending)}" if pending else ""
        )
        self.pending_text.visible = bool(pending)
        self._refresh_job()

    def _draw(self, frame: Frame) -> None:
        run = self.run
        if self._drawn < 0 or frame.day == 0:  # a new set-up
            self._sync_options()
            self.outcome_select.options = jobs.outcomes(run.model) if run.model is not None else []
            self.curve_select.options = [*DAY_VIEWS, *(n for n in frame.names() if "_by_" in n)]
            self._legend(frame)
            self._new_population()
            self._new_curves()
        self._drawn = frame.version
        self._paint_map()
        if not run.playing or time.perf_counter() - self._curves_at > CURVES_EVERY_S:
            self._curves_at = time.perf_counter()
            self.curve_figure.update(self._lines())
        self._show_area()
        self.run.shown(frame.version)

    def _legend(self, frame: Frame) -> None:
        items = [
            f'<span style="color:{colour(g, i)};font-size:18px">●</span>&nbsp;{g}&nbsp;&nbsp;'
            for i, g in enumerate(frame.group_names)
        ]
        note = "grey: homes (density)" if items else "this population has no stages to colour"
        self.legend.object = "".join(items) + f'<span style="color:#777">&nbsp;· {note}</span>'

    # ================================================================== jobs (per session)
    def _submit_job(self, what: str, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        job = self._job
        if job.running:
            raise ParamError(f"busy: {job.status}; wait for it to finish")
        job.start(what)

        def run() -> None:
            try:
                job.finish(work(), done)
            except Exception as exc:
                log.exception("%s failed", what)
                job.fail(f"{what} failed: {exc}")

        self._jobs.submit(run)

    def _refresh_job(self) -> None:
        job = self._job
        with job.lock:
            if job.version == self._job_seen:
                return
            self._job_seen = job.version
            result, done, error = job.result, job.done, job.error
            job.result = job.done = None
        if error:
            self._show_error(error)
        if done is not None:
            done(result)

    def close(self) -> None:
        self._jobs.shutdown(wait=False, cancel_futures=True)


class _JobState:
    """A session's background job: its status for the page, and its result handed to the session thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = False
        self.status = ""
        self.progress = 0.0
        self.version = 0
        self.result: Any = None
        self.done: Callable[[Any], None] | None = None
        self.error = ""

    def start(self, what: str) -> None:
        with self.lock:
            self.running, self.status, self.progress, self.error = True, what, 0.0, ""
            self.version += 1

    def finish(self, result: Any, done: Callable[[Any], None]) -> None:
        with self.lock:
            self.running, self.status, self.result, self.done = False, "", result, done
            self.version += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.running, self.status, self.error = False, "", message
            self.version += 1


# ====================================================================== helpers
_AGENTS_DOC = "population size: 100000, 1e6, 8.4M or 100k (a reset builds it; large sizes take a while)"


def _extensions() -> None:
    """Panel and HoloViews' Bokeh backend with inline resources (works offline), WebGL off (measured 3.7×
    slower frames on machines without a GPU, DESIGN.md §6)."""
    pn.extension(inline=True)
    if "bokeh" not in hv.Store.renderers:
        import holoviews.plotting.bokeh  # noqa: F401  (registers the backend)
    hv.Store.set_current_backend("bokeh")
    hv.renderer("bokeh").webgl = False


def _count(text: str, name: str) -> int:
    value = parse_count(str(text), name)
    if value > MAX_AGENTS:
        raise ParamError(f"{name}: at most {MAX_AGENTS:,} agents, got {value:,}")
    return value


def _option_widget(name: str, option: Param | Choice) -> pn.widgets.Widget:
    if isinstance(option, Choice):
        return pn.widgets.Select(
            label=name, options=list(option.options), value=option.value, width=290, description=option.doc
        )
    low, high = option.bounds
    end = high if high - low <= 1000 else max(low + 1.0, min(high, 2 * abs(option.value) or high))
    step = _nice_step((end - low) / 200)
    return pn.widgets.EditableFloatSlider(
        label=name, start=low, end=end, step=step, value=option.value, width=265
    )


def _option_view(widget: pn.widgets.Widget, option: Param | Choice) -> pn.viewable.Viewable:
    """The control with its doc, unit and bounds as a tooltip."""
    if isinstance(option, Choice):
        return widget
    low, high = option.bounds
    tip = pn.widgets.TooltipIcon(value=f"{option.doc} [{option.unit}; bounds {low:g} to {high:g}]", width=20)
    return pn.Row(widget, tip, margin=0)


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 0.01
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _is_test_or_cost(name: str) -> bool:
    return name.startswith(("tests_", "detected_", "cost_", "home_", "first_doses", "second_doses"))


def _about(run: LiveRun) -> str:
    cls = run.scenario_class
    doc = cls.__doc__ or ""
    module_doc = importlib.import_module(cls.__module__).__doc__ or ""
    rows = ["| option | value | unit | bounds | applies | about |", "|---|---|---|---|---|---|"]
    for name, option in run.options.items():
        applies = "live" if run.is_live(name) else "after reset"
        if isinstance(option, Param):
            bounds = f"{option.bounds[0]:g} – {option.bounds[1]:g}"
            rows.append(
                f"| {name} | {option.value:g} | {option.unit} | {bounds} | {applies} | {option.doc} |"
            )
        else:
            rows.append(
                f"| {name} | {option.value} | | {', '.join(option.options)} | {applies} | {option.doc} |"
            )
    return f"## {cls.name}\n\n{cls.summary}\n\n{doc}\n\n{module_doc}\n\n### Options\n\n" + "\n".join(rows)


def _outline_rings(agents: AgentMap) -> list[dict]:
    """The outer ring of every polygon of every area, with the area's region and residents (hover)."""
    if agents.outlines is None:
        return []
    rings = []
    index = {name: i for i, name in enumerate(agents.areas)}
    for area_id, area in zip(agents.outlines.ids, agents.outlines.polygons, strict=True):
        i = index.get(area_id)
        region = agents.regions[int(agents.area_region[i])] if i is not None else ""
        residents = int(agents.residents[i]) if i is not None else 0
        for polygon in area:
            ring = polygon[0].numpy()
            rings.append(
                {"x": ring[:, 0], "y": ring[:, 1], "area": area_id, "region": region, "residents": residents}
            )
    return rings
