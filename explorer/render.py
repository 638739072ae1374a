"""Drawing every agent with Datashader (no UI code; the views wrap the images).

One aggregation per frame counts the agents of each stage group per pixel. Homes (everyone) are drawn in
greys, histogram-equalised; this layer changes only with the extent, so :class:`MapPainter` keeps it. Over
it, each pixel with agents past the first group (susceptible) takes the colour of its most common such
group, more opaque the more of them there are (log scale). Measured on this 2-core machine (benchmarks/
README.md): Datashader's own categorical shading took 52 ms for a 620 × 560 frame, this colouring about 5.
"""

from __future__ import annotations

import io

import datashader as ds
import datashader.transfer_functions as tf
import numpy as np
import pandas as pd
from PIL import Image

__all__ = ["COLOURS", "MapPainter", "colour", "to_png"]

COLOURS = {
    "susceptible": "#9a9a9a",
    "exposed": "#f0a202",
    "infectious": "#d7263d",
    "hospitalised": "#7b2cbf",
    "recovered": "#2b9348",
    "dead": "#111111",
}
_OTHER = ("#1f77b4", "#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#8c564b")
MIN_ALPHA = 150


def colour(group: str, index: int = 0) -> str:
    """The colour of a stage group on the map and in the curves."""
    return COLOURS.get(group, _OTHER[index % len(_OTHER)])


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


class MapPainter:
    """Paints the agents at ``(x, y)`` (``float32[agents]``, fixed) for any stage groups, extent and size.

    Returns ``uint8[height, width, 4]`` RGBA, first row at the top.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        self._homes: dict[tuple, np.ndarray] = {}

    def paint(
        self,
        groups: np.ndarray | None,
        group_names: tuple[str, ...],
        *,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        width: int,
        height: int,
    ) -> np.ndarray:
        """The image; ``groups``: ``uint8[agents]``, each agent's group (index into ``group_names``), or
        ``None``."""
        if width < 1 or height < 1:
            raise ValueError(f"width, height: expected a positive canvas size, got {width} x {height}")
        canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=x_range, y_range=y_range)
        key = (tuple(x_range), tuple(y_range), width, height)
        if groups is None or len(group_names) < 2:
            return self._homes_layer(key, canvas)[::-1].copy()
        frame = pd.DataFrame(
            {"x": self.x, "y": self.y, "group": pd.Categorical.from_codes(groups, list(group_names))},
            copy=False,
        )
        counts = canvas.points(frame, "x", "y", ds.by("group", ds.count())).values  # [rows, cols, groups]
        image = self._homes_layer(key, canvas).copy()
        affected = counts[:, :, 1:]
        total = affected.sum(axis=2)
        if total.max() == 0:
            return image[::-1]
        palette = np.array([_rgb(colour(g, i + 1)) for i, g in enumerate(group_names[1:])], dtype=np.float32)
        rgb = palette[affected.argmax(axis=2)]  # the most common group of each pixel
        strength = np.log1p(total) / np.log1p(total.max())
        alpha = np.where(total > 0, (MIN_ALPHA + (255 - MIN_ALPHA) * strength) / 255, 0.0)[..., None]
        image[..., :3] = (image[..., :3] * (1 - alpha) + rgb * alpha).astype(np.uint8)
        image[..., 3] = np.maximum(image[..., 3], (alpha[..., 0] * 255).astype(np.uint8))
        return image[::-1]

    def _homes_layer(self, key: tuple, canvas: ds.Canvas) -> np.ndarray:
        """Greys by the density of homes, bottom row first (kept per extent and size; read-only)."""
        if key not in self._homes:
            density = canvas.points(pd.DataFrame({"x": self.x, "y": self.y}, copy=False), "x", "y")
            shaded = tf.shade(density, cmap=["#ececec", "#a0a0a0"], how="eq_hist")
            data = np.ascontiguousarray(shaded.data)
            if len(self._homes) >= 32:  # zooming visits many extents; keep the memory bounded
                self._homes.clear()
            self._homes[key] = data.view(np.uint8).reshape(*data.shape, 4)
        return self._homes[key]


def to_png(rgba: np.ndarray) -> bytes:
    """``uint8[height, width, 4]`` as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(out, format="PNG")
    return out.getvalue()
