"""The explorer's app: :class:`Explorer`, a ``pn.viewable.Viewer`` over a :class:`~.live.LiveRun`.

Layout: a sidebar (:class:`~.views.Controls`: scenario, size, seed, set-up/reset, step, play/pause, the day
counter, errors, playback speed, and one control per scenario option with its plain name, grouped by theme)
and tabs, one view each (:mod:`.views`): *Run* (the Datashader map of every agent over the area outlines,
the curves, the tapped area's counts), *Sensitivity* (bars of the change in an outcome for +10% of each
parameter and a gradient "what if" beside the re-simulated value), *Questions* (the scenario's named
what-ifs over seeds), *Your risk* ("How can I lower my risk next week?": a visitor's chance of infection
under their planned week and alternatives, computed in their session from a public forecast), *Compare*
(two settings side by side), *Calibrate* (fit to observed data with progress), *Export* (curves as
CSV/Parquet, map as PNG) and *About*.

Each browser session (or notebook cell) polls the run every ``refresh_ms`` and redraws when a new frame is
out; the poll writes what the session shows into its :class:`~.views.Session`, whose parameters the views'
widgets are bound to. Slow work (set-up, simulation, jobs) runs on worker threads, so the page never blocks
on it.
"""

from __future__ import annotations

from typing import Any

import holoviews as hv
import panel as pn
from panel.io.notebook import push_notebook

from .live import LiveRun
from .notebook import extension, share_stylesheets
from .views import (
    AboutView,
    CalibrateView,
    CompareView,
    Controls,
    ExportView,
    QuestionsView,
    RiskView,
    RunView,
    SensitivityView,
    Session,
)
from .views.session import options_layout

__all__ = ["PAGE_WAIT_S", "Explorer"]

PAGE_WAIT_S = 30.0
"""How long a playing run waits for a page that reports its day (then goes on without it: a page closed
mid-frame). A page stops reporting when Pause is clicked, so the run stops there however long the click
takes to reach a busy server (measured: with a 2 s wait it overshot by 12 days at load average 10)."""


def _forward(view: str, name: str) -> Any:
    """``Explorer.<name>`` reads ``Explorer.<view>.<name>`` (what scripts and tests reached on the app before
    it was split into views)."""
    return property(lambda self: getattr(getattr(self, view), name), doc=f"``{view}.{name}``")


class Explorer(pn.viewable.Viewer):
    """The Populace Explorer for one scenario run (see module docs).

    ``Explorer(scenario="classroom")`` builds its own :class:`LiveRun`; ``Explorer(run=run)`` views a
    given run. ``populace explore`` gives each browser session a run of its own up to
    :data:`~.serve.PER_VISITOR_AGENTS` agents (``owns_run``: the run closes with the session), and above that
    one run shared by every session (``shared``: the page says so).

    Args:
        scenario, agents: passed to a new :class:`LiveRun` (ignored with ``run``).
        run: an existing run to view.
        owns_run: close the run when the session ends (default: when the explorer built it).
        shared: the run is shared by every visitor ("presenter" mode): the sidebar says so.
        refresh_ms: how often the session looks for a new frame.
        inline: BokehJS and Panel's scripts and styles in the page (a notebook, offline); ``populace
            explore`` serves them itself instead (``False``: inline mode points the styles at a CDN, which
            an offline room cannot reach).
    """

    def __init__(
        self,
        scenario: str = "classroom",
        *,
        agents: int | None = None,
        run: LiveRun | None = None,
        owns_run: bool | None = None,
        shared: bool = False,
        refresh_ms: int = 25,
        inline: bool = True,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        _extensions(inline)
        self.owns_run = run is None if owns_run is None else owns_run
        self.run = run if run is not None else LiveRun(scenario, agents=agents)
        self.refresh_ms = refresh_ms
        self._drawn = -1
        self._browser = False  # a browser reports the day it shows (Controls.shown_day)
        self.session = session = Session(self.run)
        self.controls = Controls(session=session, shared=shared)
        self.run_view = RunView(session=session)
        self.sensitivity = SensitivityView(session=session)
        self.compare = CompareView(session=session)
        self.questions = QuestionsView(session=session)
        self.risk = RiskView(session=session)
        self.calibrate = CalibrateView(session=session)
        self.export = ExportView(session=session, run_view=self.run_view)
        self.about = AboutView(session=session)
        self.tabs = pn.Tabs(
            ("Run", self.run_view),
            ("Sensitivity", self.sensitivity),
            ("Questions", self.questions),
            ("Your risk", self.risk),
            ("Compare", self.compare),
            ("Calibrate", self.calibrate),
            ("Export", self.export),
            ("About", self.about),
            dynamic=False,
        )
        self.controls.shown_day.param.watch(lambda e: self.on_shown_day(e.new), "value")
        # the Run tab's map and curves are drawn only while it is the tab shown
        self.tabs.param.watch(lambda e: setattr(self.run_view, "visible", e.new == 0), "active")
        # one copy of each stylesheet where they are inline (a notebook: explorer.notebook)
        self.layout = pn.Row(self.controls, self.tabs, sizing_mode="stretch_both", hooks=[share_stylesheets])

    def __panel__(self) -> pn.viewable.Viewable:
        if self.run.frame.version > 0:
            # the run's frame drawn into the first render: a saved notebook shows this map and these
            # curves (its embedded document) where it would show an empty map waiting for the first poll
            self.refresh()
        pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)
        self.run.viewers += 1
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _: self._detach())
        return self.layout

    def _detach(self) -> None:
        self.run.viewers = max(0, self.run.viewers - 1)
        self.close()

    # the views' parts reached through the app
    image = _forward("run_view", "image")
    map_figure = _forward("run_view", "map_figure")
    curve_figure = _forward("run_view", "curve_figure")
    area_text = _forward("run_view", "area_text")
    _layers = _forward("run_view", "_layers")
    _on_ranges = _forward("run_view", "_on_ranges")
    _on_tap = _forward("run_view", "_on_tap")
    agents_input = _forward("controls", "agents_input")
    setup_button = _forward("controls", "setup_button")
    day_text = _forward("controls", "day_text")
    alert = _forward("controls", "alert")
    _option_widgets = _forward("controls", "_option_widgets")
    curves_result = _forward("export", "curves_result")
    _curves_file = _forward("export", "_curves_file")
    _map_png = _forward("export", "_map_png")

    # ================================================================== refresh (per session)
    def refresh(self) -> None:
        """Bring this session's views up to date with the run (called every ``refresh_ms``)."""
        run, frame, session = self.run, self.run.frame, self.session
        session.syncing = True
        try:
            session.show(playing=run.playing)
            session.show(scenario=run.scenario)
            self.controls.show_options()
        finally:
            session.syncing = False
        new = frame.version != self._drawn
        if new:
            session.frame = frame
            if self._drawn < 0 or frame.day == 0:  # a new set-up
                session.options = options_layout(run)
                session.param.trigger("setup")
            self._drawn = frame.version
        changed = self.run_view.refresh(frame, new)
        if new and not self._browser:
            run.shown(frame.version)
        if changed:  # Bokeh models changed in place reach a notebook only when pushed (a server syncs them)
            push_notebook(self.run_view.map_pane, self.run_view.curve_pane)
        # after the drawing: when the page shows the day, it has that day's map and curves
        session.show(
            seed=run.seed,
            day=frame.day,
            days=run.days,
            busy=run.busy or session.job.status,
            step_seconds=run.step_seconds,
            pending=sorted(run.pending),
        )
        if run.error and not session.error:
            session.show_error(run.error)
        session.poll_job()

    def on_shown_day(self, day: int) -> None:
        """The browser shows ``day``: a playing run may go on (once a browser reports its day the run
        keeps at most a day ahead of the page, so Pause stops on the day pressed or the one after)."""
        if day < 0:
            return
        self._browser = True
        self.run.page_wait_s = PAGE_WAIT_S
        self.run.page_shows(day)

    def close(self) -> None:
        """Stop the session's job thread, and the run's worker where this session owns the run."""
        self.session.close()
        if self.owns_run:
            self.run.close()


# ====================================================================== helpers
def _extensions(inline: bool = True) -> None:
    """Panel and HoloViews' Bokeh backend with inline resources or the server's own (works offline either
    way), WebGL off (measured 3.7× slower frames on machines without a GPU, DESIGN.md §6)."""
    extension(inline)  # in a notebook: BokehJS written once (explorer.notebook)
    pn.config.inline = inline
    if "bokeh" not in hv.Store.renderers:
        import holoviews.plotting.bokeh  # noqa: F401  (registers the backend)
    hv.Store.set_current_backend("bokeh")
    hv.renderer("bokeh").webgl = False
