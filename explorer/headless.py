"""Driving the explorer in headless Chromium (Debian's ``chromium``, through Playwright): the launch flags
and JavaScript probes of the page's Bokeh document, shared by the browser tests and the explorer benchmark.
No UI code; Playwright is imported by the callers.

The plots live in shadow DOM, so the probes read the models through ``Bokeh.documents[0]``.
"""

from __future__ import annotations

import os

__all__ = ["CHROMIUM", "CURVES", "DAY", "FLAGS", "MAP"]

CHROMIUM = os.environ.get("POPULACE_CHROMIUM", "/usr/bin/chromium")
"""The browser: Debian's Chromium (``apt-get install -y chromium``), or ``$POPULACE_CHROMIUM``."""

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",  # a closed network refuses Chromium's own connections
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

MAP = """() => {
  let groups = null, homes = null;
  for (const m of Bokeh.documents[0].all_models) {
    if (m.type !== 'GlyphRenderer') continue;
    const d = m.data_source.data; const img = d.image && d.image[0]; let sum = 0;
    if (m.glyph.type === 'Image' && img.length > 1) {
      for (let i = 0; i < img.length; i++) sum = (sum + img[i] * (i % 1013 + 1)) % 1e15;
      groups = {sum: sum, n: img.length, x: d.x[0], dw: d.dw[0]};
    } else if (m.glyph.type === 'ImageRGBA' && img.length > 1) {
      for (let i = 0; i < img.length; i += 7) sum = (sum + img[i] * (i % 1013 + 1)) % 1e15;
      homes = sum;
    }
  }
  return groups && homes !== null ? {...groups, homes: homes} : null;
}"""
"""The map once drawn (else ``null``): a checksum of every pixel of its stage-group layer (``sum``, redrawn
every frame), its pixel count and extent, and a checksum of its homes layer (``homes``, redrawn when the
extent changes)."""

CURVES = """() => {
  const out = {};
  for (const m of Bokeh.documents[0].all_models) {
    if (m.type === 'GlyphRenderer' && m.glyph.type === 'Line') {
      const field = m.glyph.y.field; const y = (field && m.data_source.data[field]) || []; let s = 0;
      for (const v of y) s += v;
      out[m.name || m.id] = [y.length, s];
    }
  }
  return out;
}"""
"""Every line of every plot: ``{name: [points, sum of y]}``."""

DAY = """() => {
  for (const m of Bokeh.documents[0].all_models) {
    const t = m.text; if (typeof t === 'string') { const r = /Day (\\d+) of/.exec(t); if (r) return +r[1]; }
  }
  return -1;
}"""
"""The day counter's day (-1 before it shows)."""
