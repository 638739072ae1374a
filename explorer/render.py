"""Drawing every agent (no UI code; the views wrap the images).

Each agent's pixel is computed once per view (the homes do not move; one compiled pass with Datashader's
arithmetic), so a frame's count of each stage group per pixel is one ``np.bincount`` over the agents past
susceptible, over the occupied pixels only: 0.3-0.9 ms for the classroom against 3.6-4.8 ms through
Datashader's pandas and xarray layers, and 40-170 ms against 60-200 ms at 8.4M (the same pixels; a new view's
binning 160 ms at 8.4M, as Datashader's was). Homes (everyone) are drawn in greys from the same counts,
histogram-equalised by Datashader's shading; this layer and the residents per pixel change only with the
extent, so :class:`MapPainter` keeps them. Over it, each pixel with agents past the first group (susceptible)
takes the colour of its most common such group, as opaque as the *share* of the pixel's residents past
susceptible (:data:`LEVELS` steps): full colour means every resident of the pixel is past susceptible, one
infected agent among a hundred is faint, so the coloured share of the map tracks the share of agents infected
(:func:`shading`). That overlay is a ``uint8`` index per pixel into a small :func:`palette`, so a frame sends
a quarter of an RGBA image's bytes and the browser colours it; :func:`composite` blends the two layers into
one RGBA image (PNG export). Measured on this 2-core machine (benchmarks/README.md): Datashader's own
categorical shading took 52 ms for a 620 × 560 frame.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import datashader as ds
import datashader.transfer_functions as tf
import numba
import numpy as np
import xarray as xr
from PIL import Image

__all__ = [
    "COLOURS",
    "LEVELS",
    "Extent",
    "MapPainter",
    "View",
    "colour",
    "composite",
    "palette",
    "shading",
    "to_png",
]

COLOURS = {
    "susceptible": "#9a9a9a",
    "exposed": "#f0a202",
    "infectious": "#d7263d",
    "hospitalised": "#7b2cbf",
    "recovered": "#2b9348",
    "dead": "#111111",
}
_OTHER = ("#1f77b4", "#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#8c564b")
LEVELS = 16
"""Opacity steps of the overlay, one per sixteenth of a pixel's residents: the map has 1 + 16 × (groups − 1)
colours (:func:`palette`), so up to 16 groups fit the one byte a pixel is sent as."""


def colour(group: str, index: int = 0) -> str:
    """The colour of a stage group on the map and in the curves."""
    return COLOURS.get(group, _OTHER[index % len(_OTHER)])


Extent = tuple[float, float, float, float]
"""``(x0, x1, y0, y1)``: the part of the plane a map image covers."""


@dataclass(frozen=True)
class View:
    """What a map image shows: ``extent`` at ``width`` × ``height`` pixels."""

    extent: Extent
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(
                f"width, height: expected a positive canvas size, got {self.width} x {self.height}"
            )

    def canvas(self) -> ds.Canvas:
        x0, x1, y0, y1 = self.extent
        return ds.Canvas(plot_width=self.width, plot_height=self.height, x_range=(x0, x1), y_range=(y0, y1))


class MapPainter:
    """Paints the agents at ``(x, y)`` (``float32[agents]``, fixed) for any stage groups, extent and size.

    A map is two layers: :meth:`homes` (``uint8[height, width, 4]`` RGBA, changes only with the extent) and
    :meth:`overlay` (``uint8[height, width]`` indices into :func:`palette`, one per frame); :meth:`paint`
    composites them. First rows at the top.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self._homes: dict[View, tuple[np.ndarray, np.ndarray]] = {}  # RGBA (top first), residents
        # (first row at the bottom, as Datashader aggregates)
        self._last: _Bins | None = None

    def paint(self, groups: np.ndarray | None, group_names: tuple[str, ...], view: View) -> np.ndarray:
        """The map as one RGBA image; ``groups``: ``uint8[agents]``, each agent's group (index into
        ``group_names``), or ``None``."""
        return composite(self.homes(view), self.overlay(groups, group_names, view), group_names)

    def homes(self, view: View) -> np.ndarray:
        """Greys by the density of homes (kept per view; read-only)."""
        return self._layer(view)[0]

    def residents(self, view: View) -> np.ndarray:
        """``int64[height, width]``: the agents living in each pixel, first row at the top (kept per view;
        read-only)."""
        return self._layer(view)[1][::-1]

    def _layer(self, view: View) -> tuple[np.ndarray, np.ndarray]:
        if view not in self._homes:
            bins = self._bins(view)
            residents = np.zeros(view.width * view.height, dtype=np.int64)
            residents[bins.pixels] = bins.residents
            residents = residents.reshape(view.height, view.width)  # first row at the bottom
            # Datashader's shading of its own count of the homes (the same counts: uint32, 0 = no one)
            density = xr.DataArray(residents.astype(np.uint32), dims=("y", "x"))
            shaded = tf.shade(density, cmap=["#ececec", "#a0a0a0"], how="eq_hist")
            data = np.ascontiguousarray(shaded.data[::-1])
            if len(self._homes) >= 32:  # zooming visits many extents; keep the memory bounded
                self._homes.clear()
            rgba = data.view(np.uint8).reshape(*data.shape, 4)
            rgba.flags.writeable = residents.flags.writeable = False
            self._homes[view] = (rgba, residents)
        return self._homes[view]

    def _bins(self, view: View) -> _Bins:
        """Which pixel of ``view`` each agent lives in (kept for the last view only: 8 bytes an agent)."""
        if self._last is None or self._last.view != view:
            self._last = _Bins.of(self.x, self.y, view)
        return self._last

    def overlay(self, groups: np.ndarray | None, group_names: tuple[str, ...], view: View) -> np.ndarray:
        """Each pixel's colour index in :func:`palette`: 0 where no agent is past the first group
        (susceptible), else its most common such group at one of :data:`LEVELS` opacities by the share of
        the pixel's residents past susceptible (rounded to the nearest sixteenth, at least the faintest)."""
        out = np.zeros((view.height, view.width), dtype=np.uint8)
        if groups is None or len(group_names) < 2:
            return out
        bins = self._bins(view)
        n_groups, n_bins = len(group_names), len(bins.pixels) + 1  # the last bin: outside the view
        affected = np.flatnonzero(groups)  # most agents are susceptible: count only the others
        key = bins.of_agent[affected] * n_groups + groups[affected]
        flat = np.bincount(key, minlength=n_bins * n_groups).reshape(n_bins, n_groups)[:-1]
        total = flat[:, 1].copy()
        for g in range(2, n_groups):  # column by column: a reduction over a short last axis is slow
            total += flat[:, g]
        lit = np.flatnonzero(total)  # most pixels have no one past the first group: work on the others
        if lit.size == 0:
            return out
        group = flat[lit, 1:].argmax(axis=1)
        share = total[lit] / bins.residents[lit]  # a pixel's agents past susceptible are its residents
        level = np.clip(np.rint(share * LEVELS), 1, LEVELS).astype(np.int64)
        out.reshape(-1)[bins.pixels[lit]] = 1 + group * LEVELS + (level - 1)
        return out[::-1]


@dataclass(frozen=True)
class _Bins:
    """The agents binned into the pixels of ``view`` as Datashader bins them (first row at the bottom; a
    point on the upper edge falls in the last pixel), over the *occupied* pixels only: the classroom's
    20,000 agents live in at most 20,000 of a map's 184,000 pixels, so a frame's count runs over those.

    Attributes:
        pixels: ``int64[occupied]`` the occupied pixels (row-major).
        residents: ``int64[occupied]`` agents living in each.
        of_agent: ``int64[agents]`` each agent's index into ``pixels``; ``occupied`` (one past the last)
            for an agent outside the view.
    """

    view: View
    pixels: np.ndarray
    residents: np.ndarray
    of_agent: np.ndarray

    @staticmethod
    def of(x: np.ndarray, y: np.ndarray, view: View) -> _Bins:
        x0, x1, y0, y1 = view.extent
        w, h = view.width, view.height
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        pixel = np.empty(len(x), dtype=np.int64)
        counts = np.zeros(w * h + 1, dtype=np.int64)
        _pixel_of(x, y, x0, x1, y0, y1, sx, -x0 * sx, sy, -y0 * sy, w, h, pixel, counts)
        pixels = np.flatnonzero(counts[: w * h])
        index = np.full(w * h + 1, len(pixels), dtype=np.int64)
        index[pixels] = np.arange(len(pixels))
        _gather(index, pixel)  # each agent's pixel becomes its index into the occupied pixels
        return _Bins(view, pixels, counts[pixels], pixel)


@numba.njit(cache=True, nogil=True)
def _pixel_of(x, y, x0, x1, y0, y1, sx, tx, sy, ty, w, h, out, counts):  # type: ignore[no-untyped-def]
    """Each point's pixel into ``out`` (row-major from the bottom row, ``w * h`` outside: Datashader's
    arithmetic, its ``_perform_extend_points``) and the points per pixel into ``counts``, in one pass
    (numpy took a dozen over the agents: 0.65 s at 8.4M)."""
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        pixel = w * h
        if x0 <= xi <= x1 and y0 <= yi <= y1:
            pixel = min(int(yi * sy + ty), h - 1) * w + min(int(xi * sx + tx), w - 1)
        out[i] = pixel
        counts[pixel] += 1


@numba.njit(cache=True, nogil=True)
def _gather(index, values):  # type: ignore[no-untyped-def]
    """``values[i] = index[values[i]]`` in place."""
    for i in range(values.shape[0]):
        values[i] = index[values[i]]


def palette(group_names: tuple[str, ...]) -> list[str]:
    """``#rrggbbaa`` colours of :meth:`MapPainter.overlay`'s indices: 0 transparent, then for each group
    past the first, :data:`LEVELS` opacities in proportion to the share of residents, 1/16 to opaque."""
    out = ["#00000000"]
    for i, group in enumerate(group_names[1:]):
        for level in range(1, LEVELS + 1):
            alpha = round(255 * level / LEVELS)
            out.append(f"{colour(group, i + 1)}{alpha:02x}")
    return out


def shading(index: np.ndarray) -> np.ndarray:
    """``float64`` like ``index``: each pixel's colour strength, 0 (none) to 1 (full colour, every resident
    past susceptible), from :meth:`MapPainter.overlay`'s indices (the opacity :func:`palette` gives them)."""
    level = np.where(index > 0, (index.astype(np.int64) - 1) % LEVELS + 1, 0)
    return level / LEVELS


def composite(homes: np.ndarray, overlay: np.ndarray, group_names: tuple[str, ...]) -> np.ndarray:
    """The overlay's colours over the homes layer (alpha blending), ``uint8[height, width, 4]``."""
    rgba = np.array(
        [[int(c[k : k + 2], 16) for k in (1, 3, 5, 7)] for c in palette(group_names)], dtype=np.float32
    )
    colours = rgba[overlay]
    alpha = colours[..., 3:] / 255
    image = homes.copy()
    image[..., :3] = (homes[..., :3] * (1 - alpha) + colours[..., :3] * alpha).astype(np.uint8)
    image[..., 3] = np.maximum(homes[..., 3], colours[..., 3].astype(np.uint8))
    return image


def to_png(rgba: np.ndarray) -> bytes:
    """``uint8[height, width, 4]`` as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(out, format="PNG")
    return out.getvalue()
