"""Drawing every agent with Datashader: homes in grey, everyone who is no longer susceptible in the colour
of their stage group on top, at any extent and canvas size (no UI code; the views wrap the images)."""

from __future__ import annotations

import io

import datashader as ds
import datashader.transfer_functions as tf
import numpy as np
import pandas as pd

__all__ = ["COLOURS", "colour", "shade_agents", "to_png", "to_rgba"]

COLOURS = {
    "susceptible": "#9a9a9a",
    "exposed": "#f0a202",
    "infectious": "#d7263d",
    "hospitalised": "#7b2cbf",
    "recovered": "#2b9348",
    "dead": "#111111",
}
_OTHER = ("#1f77b4", "#ff7f0e", "#17becf", "#bcbd22", "#e377c2", "#8c564b")


def colour(group: str, index: int = 0) -> str:
    """The colour of a stage group on the map and in the curves."""
    return COLOURS.get(group, _OTHER[index % len(_OTHER)])


def shade_agents(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    group_names: tuple[str, ...],
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
) -> tf.Image:
    """An RGBA image of the agents at ``(x, y)`` in the given ranges: the density of homes in greys and,
    over it, the agents of every group but the first (susceptible) coloured by group (mixed by count
    where several share a pixel).

    Args:
        x, y: ``float32[agents]`` positions.
        groups: ``uint8[agents]`` group of each agent (index into ``group_names``), or ``None``.
    """
    if width < 1 or height < 1:
        raise ValueError(f"width, height: expected a positive canvas size, got {width} x {height}")
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=x_range, y_range=y_range)
    if groups is None or len(group_names) < 2:
        homes = canvas.points(pd.DataFrame({"x": x, "y": y}, copy=False), "x", "y", ds.count())
        return tf.shade(homes, cmap=["#e6e6e6", "#7a7a7a"], how="eq_hist")
    frame = pd.DataFrame(
        {"x": x, "y": y, "group": pd.Categorical.from_codes(groups, list(group_names))}, copy=False
    )
    counts = canvas.points(frame, "x", "y", ds.by("group", ds.count()))
    homes = tf.shade(counts.sum(dim="group"), cmap=["#ececec", "#a0a0a0"], how="eq_hist")
    affected = counts.isel(group=slice(1, None))
    if int(affected.sum()) == 0:
        return homes
    key = {name: colour(name, i) for i, name in enumerate(group_names)}
    coloured = tf.shade(affected, color_key=[key[g] for g in group_names[1:]], how="eq_hist", min_alpha=140)
    return tf.stack(homes, tf.dynspread(coloured, threshold=0.5, max_px=2))


def to_rgba(image: tf.Image) -> np.ndarray:
    """``uint8[height, width, 4]``, first row at the top (Datashader's first row is the bottom)."""
    data = np.ascontiguousarray(image.data)
    return data.view(np.uint8).reshape(*data.shape, 4)[::-1]


def to_png(image: tf.Image) -> bytes:
    """The image as PNG bytes."""
    out = io.BytesIO()
    image.to_pil().save(out, format="PNG")
    return out.getvalue()
