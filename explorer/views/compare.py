"""The *Compare* tab: :class:`CompareView` — pin the current settings as A, then run A and the current
settings (B) with one seed and show both."""

from __future__ import annotations

import datetime as dt
from typing import Any

import holoviews as hv
import panel as pn

from populace import Choice, Param, ParamError
from populace.glossary import term

from .. import jobs
from ..render import colour
from .session import Session

__all__ = ["CompareView"]


class CompareView(pn.viewable.Viewer):
    """Two settings side by side (the comparison runs on the session's job thread)."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        self._pinned: dict[str, Param | Choice] | None = None
        self.pin_button = pn.widgets.Button(label="Pin the current settings as A", width=260)
        self.compare_button = pn.widgets.Button(
            label="Run A and the current settings (B)", color="primary", width=280
        )
        self.pin_text = pn.pane.Markdown("*Nothing pinned yet.*")
        self.compare_plot = pn.pane.HoloViews(hv.Curve([]), sizing_mode="stretch_width", height=360)
        self.compare_text = pn.pane.Markdown("")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        """Errors of this tab's buttons, under them."""
        self.pin_button.on_click(lambda _: self._pin())
        self.compare_button.on_click(lambda _: self.session.guard(self._start_compare, self.alert))
        self.layout = pn.Column(
            pn.Row(self.pin_button, self.compare_button),
            self.alert,
            self.pin_text,
            self.compare_plot,
            self.compare_text,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _pin(self) -> None:
        with self.session.run.snapshot() as (scenario, options, *_):
            self._pinned = options
            self.pin_text.object = f"A = the {scenario.name} settings pinned at {dt.datetime.now():%H:%M:%S}."

    def _start_compare(self) -> None:
        if self._pinned is None:
            raise ParamError("compare: pin a setting as A first")
        run = self.session.run
        pinned, fitted = self._pinned, run.fitted
        with run.snapshot() as (scenario, options, agents, days, seed):
            if set(pinned) != set(options):
                raise ParamError("compare: A was pinned on another scenario; pin again")
            self.session.submit(
                f"comparing two settings on {agents:,} agents",
                lambda: jobs.compare(
                    scenario, pinned, options, agents=agents, days=days, seed=seed, fitted=fitted
                ),
                self._show_comparison,
                self.alert,
            )

    def _show_comparison(self, c: jobs.Comparison) -> None:
        curves = []
        for i, name in enumerate(n for n in ("infectious", "hospitalised", "I") if n in c.a.series):
            for tag, result, dash in (("A", c.a, "dashed"), ("B", c.b, "solid")):
                values = result.series[name].numpy()
                curves.append(
                    hv.Curve(
                        (result.days.numpy(), values), "day", "agents", label=f"{term(name).label} {tag}"
                    ).opts(color=colour("", i), line_dash=dash, line_width=2)
                )
        self.compare_plot.object = hv.Overlay(curves).opts(
            responsive=True, height=360, legend_position="top_left"
        )
        rows = ["| total | A | B | B − A |", "|---|---:|---:|---:|"]
        for name, (a, b) in c.totals().items():
            rows.append(f"| {term(name).label} | {a:,.0f} | {b:,.0f} | {b - a:+,.0f} |")
        changed = (
            ", ".join(f"{k}: {a} → {b}" for k, (a, b) in c.differences.items()) or "none (same settings)"
        )
        self.compare_text.object = (
            f"Same seed, {c.agents:,} agents. Options that differ: {changed}.\n\n" + "\n".join(rows)
        )
