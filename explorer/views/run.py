"""The *Run* tab: :class:`RunView` — the Datashader map of every agent over the area outlines (zoom, pan,
tap an area for its counts), the curves (with observed data) and the tapped area's counts."""

from __future__ import annotations

import html
import math
import time
from typing import Any

import numpy as np
import panel as pn
import torch
from bokeh.events import RangesUpdate, Tap

from populace.glossary import term

from ..figures import CurveFigure, Line, MapFigure, Points
from ..live import STAGE_GROUPS, AgentMap, Frame
from ..render import Extent, MapPainter, View, colour, composite, palette
from .session import Session

__all__ = ["CURVES_EVERY_S", "DAY_VIEWS", "MAP_SIZE", "STRENGTH_NOTE", "RunView"]

MAP_SIZE = (460, 400)
TAP_PIXELS = 8
"""On a map without area outlines, a tap selects the area of the nearest home within this many pixels."""
CURVES_WIDTH = 450
CURVES_HEIGHT = 330
DAY_VIEWS = {
    "infected now (exposed, infectious, in hospital)": "infected",
    "every stage": "stage groups",
    "new cases, admissions, deaths a day": "daily events",
    "tests and vaccine doses": "tests",
    "costs ($, cumulative)": "costs",
}
"""The curve views by their words (the ``_by_`` series of a run follow, by their words too)."""
INFECTED_GROUPS = ("exposed", "infectious", "hospitalised")
"""Stage groups of the "infected now" view: infected and not yet recovered or dead."""
STRENGTH_NOTE = (
    "Each pixel takes the colour of its residents' most common stage past susceptible, as strong as the "
    "share of its residents past susceptible: <b>full colour: every resident of the pixel in that stage</b> "
    "(or a later one); faint: a few of them; no colour: all susceptible. Grey: homes (darker: more)."
)
"""The map legend's words on colour strength (:meth:`~..render.MapPainter.overlay`)."""
CURVES_EVERY_S = 0.2
"""While playing, the curves take the new days at most this often: each update re-ranges and re-lays out the
plot in the browser, which held the classroom at 18 days/s with every day sent and 29 without curves."""


class RunView(pn.viewable.Viewer):
    """The map and the curves of one session; the app's polling loop calls :meth:`refresh`."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        self.run = session.run
        width, height = MAP_SIZE
        self._layers: tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None = None
        self._shown_homes: np.ndarray | None = None
        self._painter: MapPainter | None = None
        self._curves_at = 0.0
        self._tapped: int | None = None
        self._extent: Extent | None = None  # what the map shows: set by zoom and pan, or the whole area
        self._map_stale = False
        self.visible = True
        """Whether the page shows this tab (the app sets it): a hidden map and curves are not drawn, a
        frame's most costly part (the map: 185 KB made, serialised and sent)."""
        self._missed = False  # a frame came while the tab was hidden
        self.map_figure = MapFigure(width, height)
        self.map_figure.figure.on_event(RangesUpdate, self._on_ranges)
        self.map_figure.figure.on_event(Tap, lambda event: self._on_tap(event.x, event.y))
        self.map_pane = pn.pane.Bokeh(self.map_figure.figure, width=width + 20, height=height + 40)
        self.legend = pn.pane.HTML("", width=width)
        self.curve_select = pn.widgets.Select(label="Curves", options=dict(DAY_VIEWS), width=250)
        self.log_toggle = pn.widgets.Checkbox(label="log scale", value=False, width=80, margin=(28, 5, 0, 5))
        self.observed_toggle = pn.widgets.Checkbox(
            label="observed", value=True, width=80, margin=(28, 5, 0, 5)
        )
        self.curve_select.param.watch(lambda _: self._new_curves(), "value")
        self.log_toggle.param.watch(lambda _: self._new_curves(), "value")
        self.observed_toggle.param.watch(lambda _: self._new_curves(), "value")
        self.curve_note = pn.pane.HTML("", width=CURVES_WIDTH, styles={"color": "#555", "font-size": "12px"})
        self.curve_figure = self._curve_figure()
        self.curve_pane = pn.pane.Bokeh(
            self.curve_figure.figure, width=CURVES_WIDTH + 10, height=CURVES_HEIGHT + 10
        )
        self.area_text = pn.pane.Markdown("*Tap an area on the map for its counts.*", width=CURVES_WIDTH)
        self.session.param.watch(lambda _: self._new_setup(self.session.frame), "setup")
        # the curves go beside the map where there is room (1280 px) and under it where there is not (a
        # notebook cell)
        self.layout = pn.FlexBox(
            pn.Column(self.map_pane, self.legend),
            pn.Column(
                pn.Row(self.curve_select, self.log_toggle, self.observed_toggle),
                self.curve_pane,
                self.curve_note,
                self.area_text,
                width=CURVES_WIDTH + 20,
            ),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    # ------------------------------------------------------------------ per refresh
    def refresh(self, frame: Frame, new: bool) -> bool:
        """Draw ``frame`` if it is ``new``, else a map left stale by a zoom, and the days the curves held
        back while playing; returns whether any plot changed. While the tab is not shown (:attr:`visible`)
        nothing is drawn: the frame waits until it is."""
        if not self.visible:
            self._missed = self._missed or new
            return False
        new, self._missed = new or self._missed, False
        # days not sent while playing
        held_back = not self.run.playing and self.curve_figure.days != frame.day and self._curves_ready()
        changed = new or self._map_stale or held_back
        if new:
            self._draw()
        elif self._map_stale:
            self._paint_map()
        if held_back:
            self.curve_figure.update(self._lines())
        return changed

    def _curves_ready(self) -> bool:
        """Whether the page has the curves' figure: a new one reaches the document on Panel's next tick,
        and days streamed into it before then name a source the browser does not know ("reference ...
        isn't known" in its console, measured with quick Steps after a reset)."""
        shown = [model for model, _ in self.curve_pane._models.values() if model.document is not None]
        return not shown or self.curve_figure.figure.document is not None  # no document: nothing to wait for

    def _draw(self) -> None:
        self._paint_map()
        if self._curves_ready() and (
            not self.run.playing or time.perf_counter() - self._curves_at > CURVES_EVERY_S
        ):
            self._curves_at = time.perf_counter()
            self.curve_figure.update(self._lines())
        self._show_area()

    def _new_setup(self, frame: Frame) -> None:
        """A set-up: its curves, its legend, and the whole area with its outlines (zoom and tap start
        over)."""
        vectors = {term(n).label: n for n in frame.names() if "_by_" in n or n in frame.labels}
        self.curve_select.options = {**DAY_VIEWS, **vectors}
        self._legend(frame)
        self._new_population()
        self._new_curves()

    # ------------------------------------------------------------------ map
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
        """The map of the day shown, ``uint8[height, width, 4]`` (exported as PNG; drawn now where the
        tab was hidden when the day came)."""
        if self._missed:
            self._paint_map()
        return composite(*self._layers) if self._layers is not None else None

    def _new_population(self) -> None:
        agents = self.run.map
        self._tapped = None
        if agents is None:
            self._extent = None
            self.map_figure.set_outlines([])
            return
        x0, y0, x1, y1 = agents.extent
        self._extent = self.map_figure.fit((x0, x1, y0, y1))
        self.map_figure.set_outlines(_outline_rings(agents))

    def _legend(self, frame: Frame) -> None:
        items = [
            f'<span title="{html.escape(_group_title(g, frame.stage_names))}">'
            f'<span style="color:{colour(g, i)};font-size:18px">●</span>&nbsp;{g}</span>&nbsp;&nbsp;'
            for i, g in enumerate(frame.group_names)
        ]
        if not items:
            note = "grey: homes (density) · this population has no stages to colour"
            self.legend.object = f'<span style="color:#777">{note}</span>'
            return
        groups = _group_words(frame.stage_names)
        self.legend.object = (
            "".join(items)
            + f'<div style="color:#555;font-size:12px">{groups}</div>'
            + f'<div style="color:#555;font-size:12px">{STRENGTH_NOTE}</div>'
        )

    def _on_tap(self, x: float | None, y: float | None) -> None:
        agents = self.run.map
        if agents is None or x is None or y is None:
            return
        if agents.outlines is None:  # no outlines (New Zealand's SA2): the area of the nearest home
            x0, x1 = self._extent[:2] if self._extent is not None else agents.extent[::2]
            self._tapped = agents.nearest_area(x, y, within=TAP_PIXELS * (x1 - x0) / MAP_SIZE[0])
            self._show_area()
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
            f"**{agents.area_title(a)}** ({agents.regions[int(agents.area_region[a])]}), day {frame.day}: "
            f"{int(members.sum()):,} residents"
        ]
        if frame.groups is not None and len(frame.groups) == len(members):
            counts = np.bincount(frame.groups[members], minlength=len(frame.group_names))
            lines.append(
                " · ".join(f"{g} {int(c):,}" for g, c in zip(frame.group_names, counts, strict=True))
            )
        self.area_text.object = "\n\n".join(lines)

    # ------------------------------------------------------------------ curves
    def _new_curves(self) -> None:
        """A new plot when the curves shown change (a new set of lines needs a new legend)."""
        self.curve_figure = self._curve_figure()
        self.curve_pane.object = self.curve_figure.figure
        observed = self.observed_toggle.value and bool(self._observed_points(self.curve_select.value))
        self.curve_note.object = _curve_note(self.curve_select.value, observed, self.run.fitted is not None)

    def _curve_figure(self) -> CurveFigure:
        view = self.curve_select.value
        lines = self._lines()
        if view in ("infected", "stage groups"):
            ylabel = "agents"
        elif view == "costs":
            ylabel = "$ (cumulative)"
        else:
            units = [term(self._series_of(line.label)).unit for line in lines]
            ylabel = " · ".join(dict.fromkeys(u for u in units if u)) or "value"
        return CurveFigure(
            lines,
            self._observed_points(view),
            ylabel=ylabel,
            width=CURVES_WIDTH,
            height=CURVES_HEIGHT,
            days=int(self.run.days),
            start=self.run.scenario_class.default_start,
            log=bool(self.log_toggle.value),
        )

    def _series_of(self, label: str) -> str:
        """The series a line's label stands for (the lines of the event and test views are series)."""
        frame = self.run.frame
        return next((n for n in frame.names() if term(n).label == label), label)

    def _lines(self) -> list[Line]:
        """The curves of the chosen view, from day 0 to the frame's day (the same lines every frame, empty
        at day 0: the legend stays put)."""
        frame = self.run.frame
        view = self.curve_select.value
        if view in ("stage groups", "infected"):
            return [
                Line(group, values, colour(group, i))
                for i, (group, values) in enumerate(frame.group_series().items())
                if view == "stage groups" or group in INFECTED_GROUPS
            ]
        if view == "daily events":
            names = [n for n in frame.names() if n.startswith("new_") and "_by_" not in n]
            return [Line(term(name).label, frame.series(name), colour("", i)) for i, name in enumerate(names)]
        if view in ("tests", "costs"):
            out = []
            for name in (
                n for n in frame.names() if _is_test(n) == (view == "tests") and _is_test_or_cost(n)
            ):
                values = frame.series(name)
                if values.ndim == 1:
                    cost = view == "costs"
                    out.append(
                        Line(term(name).label, np.cumsum(values) if cost else values, colour("", len(out)))
                    )
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
        for the daily-events view; labelled as observed, and as not fitted when the run is not."""
        if not self.observed_toggle.value or view not in ("daily events", *self.run.frame.history):
            return []
        fitted = "" if self.run.fitted is not None else ", run not fitted"
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
                event = term(stream.series.partition("_by_")[0]).label
                out.append(Points(f"observed {event}{fitted}", days, total, colour("", i + 3)))
            elif stream.series == view:
                for j, name in enumerate(stream.labels):
                    out.append(Points(f"observed {name}", days, observed[:, j], colour("", j), alpha=0.6))
        return out


def _curve_note(view: str, observed: bool, fitted: bool) -> str:
    """What the curves show, in a line under them."""
    notes = {
        "infected": "Agents infected and not yet recovered or dead, by stage group.",
        "stage groups": "Every agent is in one stage group each day; the groups add up to the population.",
        "daily events": "Events of each day (not cumulative).",
        "tests": "Tests taken, positives and doses given each day; agents at home after testing.",
        "costs": "Dollars spent since day 0 (cumulative).",
    }
    text = notes.get(view, term(view).about.capitalize() + "." if term(view).about else "")
    if observed:
        text += " Dots: observed data (scaled to this population)" + (
            "; the run is fitted to it."
            if fitted
            else "; this run is <b>not fitted</b> to it (Calibrate tab)."
        )
    return text


def _group_title(group: str, stages: tuple[str, ...]) -> str:
    """A stage group's stages in words (the legend's hover text)."""
    members = [s for s in stages if STAGE_GROUPS.get(s, s) == group]
    return "; ".join(f"{term(s).label} ({s}): {term(s).about}" for s in members)


def _group_words(stages: tuple[str, ...]) -> str:
    """The groups that gather several stages, with their stages in words and codes."""
    parts = []
    for group in dict.fromkeys(STAGE_GROUPS.get(s, s) for s in stages):
        members = [s for s in stages if STAGE_GROUPS.get(s, s) == group]
        if len(members) > 1:
            parts.append(f"<b>{group}</b>: " + ", ".join(f"{term(s).label} ({s})" for s in members))
    return " · ".join(parts)


def _is_test(name: str) -> bool:
    return not name.startswith("cost_") and not name.endswith(("_consumer_cost", "_lost_value"))


def _is_test_or_cost(name: str) -> bool:
    return name.startswith(("tests_", "detected_", "cost_", "home_", "first_doses", "second_doses")) or (
        name.endswith(("_consumer_cost", "_lost_value"))
    )


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
