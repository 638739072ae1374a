"""The *Run* tab: :class:`RunView` — the Datashader map of every agent over the area outlines (zoom, pan,
tap an area for its counts), the curves (with observed data) and the tapped area's counts."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import panel as pn
import torch
from bokeh.events import RangesUpdate, Tap

from ..figures import CurveFigure, Line, MapFigure, Points
from ..live import AgentMap, Frame
from ..render import Extent, MapPainter, View, colour, composite, palette
from .session import Session

__all__ = ["CURVES_EVERY_S", "DAY_VIEWS", "MAP_SIZE", "STRENGTH_NOTE", "RunView"]

MAP_SIZE = (620, 560)
CURVES_WIDTH = 450
DAY_VIEWS = ("stage groups", "daily events", "tests and costs")
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
        self.map_figure = MapFigure(width, height)
        self.map_figure.figure.on_event(RangesUpdate, self._on_ranges)
        self.map_figure.figure.on_event(Tap, lambda event: self._on_tap(event.x, event.y))
        self.map_pane = pn.pane.Bokeh(self.map_figure.figure, width=width + 20, height=height + 40)
        self.legend = pn.pane.HTML("", width=width)
        self.curve_select = pn.widgets.Select(label="Curves", options=list(DAY_VIEWS), width=260)
        self.observed_toggle = pn.widgets.Checkbox(label="observed data", value=True, width=140)
        self.curve_select.param.watch(lambda _: self._new_curves(), "value")
        self.observed_toggle.param.watch(lambda _: self._new_curves(), "value")
        self.curve_figure = self._curve_figure()
        self.curve_pane = pn.pane.Bokeh(self.curve_figure.figure, width=CURVES_WIDTH + 10, height=340)
        self.area_text = pn.pane.Markdown("*Tap an area on the map for its counts.*", width=520)
        self.session.param.watch(lambda _: self._new_setup(self.session.frame), "setup")
        self.layout = pn.Row(
            pn.Column(self.map_pane, self.legend),
            pn.Column(
                pn.Row(self.curve_select, self.observed_toggle),
                self.curve_pane,
                self.area_text,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    # ------------------------------------------------------------------ per refresh
    def refresh(self, frame: Frame, new: bool) -> bool:
        """Draw ``frame`` if it is ``new``, else a map left stale by a zoom, and the days the curves held
        back while playing; returns whether any plot changed."""
        # days not sent while playing
        held_back = not self.run.playing and self.curve_figure.days != frame.day
        changed = new or self._map_stale or held_back
        if new:
            self._draw()
        elif self._map_stale:
            self._paint_map()
        if held_back:
            self.curve_figure.update(self._lines())
        return changed

    def _draw(self) -> None:
        self._paint_map()
        if not self.run.playing or time.perf_counter() - self._curves_at > CURVES_EVERY_S:
            self._curves_at = time.perf_counter()
            self.curve_figure.update(self._lines())
        self._show_area()

    def _new_setup(self, frame: Frame) -> None:
        """A set-up: its curves, its legend, and the whole area with its outlines (zoom and tap start
        over)."""
        self.curve_select.options = [*DAY_VIEWS, *(n for n in frame.names() if "_by_" in n)]
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
        """The map as last drawn, ``uint8[height, width, 4]`` (exported as PNG)."""
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
            f'<span style="color:{colour(g, i)};font-size:18px">●</span>&nbsp;{g}&nbsp;&nbsp;'
            for i, g in enumerate(frame.group_names)
        ]
        if not items:
            note = "grey: homes (density) · this population has no stages to colour"
            self.legend.object = f'<span style="color:#777">{note}</span>'
            return
        self.legend.object = "".join(items) + f'<div style="color:#555;font-size:12px">{STRENGTH_NOTE}</div>'

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

    # ------------------------------------------------------------------ curves
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


def _is_test_or_cost(name: str) -> bool:
    return name.startswith(("tests_", "detected_", "cost_", "home_", "first_doses", "second_doses"))


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
