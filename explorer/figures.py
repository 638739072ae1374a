"""The explorer's two live plots as plain Bokeh figures, updated in place.

A frame changes two things on the page: the map image and one more day of every curve. HoloViews
re-evaluated a DynamicMap, recomputed ranges and rebuilt glyph data for each frame, about 0.25 s per frame
on this 2-core machine whatever the population size (benchmarks/README.md). Here a new map replaces one
image column of a ``ColumnDataSource`` and a new day is *streamed* into the curves' source (only the new
rows travel to the browser), so a frame costs about the Datashader aggregation and the image transfer.

No simulation here: :class:`MapFigure` shows images painted by :class:`~.render.MapPainter` and
:class:`CurveFigure` shows whatever lines it is given.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from bokeh.models import (
    ColumnDataSource,
    CustomJSTickFormatter,
    DataRange1d,
    HoverTool,
    Legend,
    LegendItem,
    LinearColorMapper,
    NumeralTickFormatter,
    Range1d,
    TapTool,
)
from bokeh.plotting import figure

from .render import Extent

__all__ = ["CurveFigure", "Line", "MapFigure", "Points"]


class MapFigure:
    """The map under the area outlines (hover for an area's name, tap to select it): the homes as an RGBA
    image (sent when the extent changes) and over it the agents' stage groups as colour indices (sent every
    frame, coloured in the browser by :attr:`colours`).

    ``figure`` is the Bokeh figure; its ``RangesUpdate`` and ``Tap`` events are for the caller to wire.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.homes = ColumnDataSource(
            {"image": [np.zeros((1, 1), np.uint32)], "x": [0.0], "y": [0.0], "dw": [1.0], "dh": [1.0]}
        )
        self.groups = ColumnDataSource(
            {"image": [np.zeros((1, 1), np.uint8)], "x": [0.0], "y": [0.0], "dw": [1.0], "dh": [1.0]}
        )
        self.colours = LinearColorMapper(palette=["#00000000"], low=0, high=1, high_color="#00000000")
        self.outlines = ColumnDataSource({"xs": [], "ys": [], "area": [], "region": [], "residents": []})
        fig = figure(
            frame_width=width,
            frame_height=height,
            x_range=Range1d(0, 1),
            y_range=Range1d(0, 1),
            tools="pan,wheel_zoom,reset",
            active_scroll="wheel_zoom",
            toolbar_location="above",
            min_border=0,
            outline_line_color=None,
        )
        fig.axis.visible = False
        fig.grid.visible = False
        fig.image_rgba("image", x="x", y="y", dw="dw", dh="dh", source=self.homes)
        fig.image("image", x="x", y="y", dw="dw", dh="dh", source=self.groups, color_mapper=self.colours)
        patches = fig.patches(
            "xs",
            "ys",
            source=self.outlines,
            fill_alpha=0,
            line_color="#4a4a4a",
            line_width=0.6,
            selection_fill_alpha=0,
            selection_line_color="#0b5394",
            selection_line_width=2.5,
            nonselection_fill_alpha=0,
            nonselection_line_alpha=1,
            nonselection_line_color="#4a4a4a",
        )
        fig.add_tools(
            HoverTool(
                renderers=[patches],
                tooltips=[("area", "@area"), ("region", "@region"), ("residents", "@residents{0,0}")],
            ),
            TapTool(renderers=[patches]),
        )
        self.figure = fig

    def fit(self, extent: Extent) -> Extent:
        """Show ``extent`` whole, padded to the frame's aspect (equal scales); also what *reset* returns to.
        Returns the extent shown."""
        x0, x1, y0, y1 = extent
        w, h = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
        if w / h > self.width / self.height:
            pad = (w * self.height / self.width - h) / 2
            y0, y1 = y0 - pad, y1 + pad
        else:
            pad = (h * self.width / self.height - w) / 2
            x0, x1 = x0 - pad, x1 + pad
        for axis, (start, end) in ((self.figure.x_range, (x0, x1)), (self.figure.y_range, (y0, y1))):
            axis.update(start=start, end=end, reset_start=start, reset_end=end)
        return x0, x1, y0, y1

    def show_homes(self, rgba: np.ndarray, extent: Extent) -> None:
        """The homes layer: ``uint8[height, width, 4]``, first row at the top, covering ``extent``."""
        packed = np.ascontiguousarray(rgba[::-1]).view(np.uint32).reshape(rgba.shape[:2])
        self.homes.data = _placed(packed, extent)

    def show_groups(self, index: np.ndarray, extent: Extent, palette: list[str]) -> None:
        """The groups layer: ``uint8[height, width]`` indices into ``palette`` (``#rrggbbaa``), first row at
        the top, covering ``extent``."""
        if list(self.colours.palette) != palette:
            self.colours.update(palette=palette, high=len(palette))
        self.groups.data = _placed(np.ascontiguousarray(index[::-1]), extent)

    def set_outlines(self, rings: Sequence[dict]) -> None:
        """The areas: a ``{"x", "y", "area", "region", "residents"}`` per ring (an area may have several)."""
        self.outlines.selected.indices = []
        self.outlines.data = {
            "xs": [r["x"] for r in rings],
            "ys": [r["y"] for r in rings],
            "area": [r["area"] for r in rings],
            "region": [r["region"] for r in rings],
            "residents": [r["residents"] for r in rings],
        }


def _placed(image: np.ndarray, extent: Extent) -> dict[str, list]:
    """An image source's columns (Bokeh draws the first row at the bottom)."""
    x0, x1, y0, y1 = extent
    return {"image": [image], "x": [x0], "y": [y0], "dw": [x1 - x0], "dh": [y1 - y0]}


@dataclass(frozen=True)
class Line:
    """A curve: its values by day (``[day]``, day 0 first) and colour."""

    label: str
    values: np.ndarray
    colour: str


@dataclass(frozen=True)
class Points:
    """Observed data drawn as dots (fixed while the run goes on)."""

    label: str
    days: np.ndarray
    values: np.ndarray
    colour: str
    alpha: float = 1.0


class CurveFigure:
    """Lines by day that grow as the run goes on: :meth:`update` streams only the days not yet shown.

    The set of lines is fixed (a legend that stays put, below the plot, off the data); a different set needs
    a new figure. The axes are drawn from the start over the run's ``days`` (no empty box before day 1);
    with ``start`` (the date of day 0) the x axis reads calendar dates. ``log``: a log y axis (zeros are
    not drawn on it).
    """

    def __init__(
        self,
        lines: Sequence[Line],
        points: Sequence[Points],
        *,
        ylabel: str,
        width: int,
        height: int,
        days: int = 1,
        start: dt.date | None = None,
        log: bool = False,
    ) -> None:
        self.labels = tuple(line.label for line in lines)
        self.log = log
        self.source = ColumnDataSource(self._columns(lines, 0))
        fig = figure(
            width=width,
            height=height,
            x_axis_label=f"date (day 0: {start:%d %b %Y})" if start is not None else "day",
            y_axis_label=ylabel,
            x_range=Range1d(0, max(days, 1), bounds=None),
            y_range=DataRange1d(start=None if log else 0, only_visible=True),
            y_axis_type="log" if log else "linear",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            toolbar_location="above",
            min_border_right=12,
        )
        legend = Legend(
            location="center",
            orientation="horizontal",
            click_policy="hide",
            label_text_font_size="9pt",
            nrows=max(1, math.ceil((len(lines) + len(points)) / 3)),
            spacing=2,
            padding=2,
            margin=2,
        )
        fig.add_layout(legend, "below")
        for i, line in enumerate(lines):
            renderer = fig.line(
                "day", f"y{i}", source=self.source, color=line.colour, line_width=2, name=line.label
            )
            legend.items.append(LegendItem(label=line.label, renderers=[renderer]))
        for p in points:
            values = np.where(p.values > 0, p.values, np.nan) if log else p.values
            renderer = fig.scatter(p.days, values, size=3, color=p.colour, alpha=p.alpha, name=p.label)
            legend.items.append(LegendItem(label=p.label, renderers=[renderer]))
        legend.visible = bool(lines or points)
        # an invisible anchor from 0 (1 on a log axis) to 1 (10): the axes are drawn before the first day
        fig.scatter([0, 0], [1, 10] if log else [0, 1], alpha=0, size=0)
        if not log:
            fig.yaxis.formatter = NumeralTickFormatter(format="0.[0]a")  # 8.4m, not 8.400e+6
        if start is not None:
            day0 = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC).timestamp() * 1000
            fig.xaxis.formatter = CustomJSTickFormatter(
                args={"day0": day0},
                code="const d = new Date(day0 + Math.round(tick) * 864e5);"
                " return d.toLocaleDateString('en-GB', {day: 'numeric', month: 'short', timeZone: 'UTC'});",
            )
        fig.add_tools(HoverTool(tooltips=[("", "$name"), ("day", "$x{0}"), ("value", "$y{0,0.[0]}")]))
        self.figure = fig
        self.days = _days(lines)

    def _columns(self, lines: Sequence[Line], since: int) -> dict[str, np.ndarray]:
        days = _days(lines)
        out = {"day": np.arange(since, days, dtype=np.float64)}
        for i, line in enumerate(lines):
            values = np.asarray(line.values[since:], dtype=np.float64)
            out[f"y{i}"] = np.where(values > 0, values, np.nan) if self.log else values
        return out

    def set_days(self, days: int) -> None:
        """The x axis spans ``days`` (the run's length; more when the run went past it)."""
        end = max(days, self.days, 1)
        if self.figure.x_range.end != end:
            self.figure.x_range.update(end=end)

    def update(self, lines: Sequence[Line]) -> None:
        """Show ``lines`` (the same labels as at construction, values up to today): new days are streamed;
        fewer days than shown (a reset) replace the data."""
        labels = tuple(line.label for line in lines)
        if labels != self.labels:
            raise ValueError(f"lines: expected {self.labels}, got {labels}")
        days = _days(lines)
        if days < self.days:
            self.source.data = self._columns(lines, 0)
        elif days > self.days:
            self.source.stream(self._columns(lines, self.days))
        self.days = days
        if days > self.figure.x_range.end:
            self.figure.x_range.update(end=days)


def _days(lines: Sequence[Line]) -> int:
    """Days the lines cover (they all cover the same)."""
    return len(lines[0].values) if lines else 0
