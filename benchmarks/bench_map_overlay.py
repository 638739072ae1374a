"""Benchmark: the map's per-frame step in process, :meth:`MapPainter.overlay` (agents → one byte per pixel)
on the NYC population at 620 × 560, the explorer's map size.

    python benchmarks/bench_map_overlay.py [--agents 1M,8.4M] [--repeats 7]

Stage groups are drawn at random at a few shares past susceptible (below half, only those agents are
aggregated; from half on, every agent). Prints the median seconds per share and population; the homes layer
(kept per extent) is painted before timing, as the explorer does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from populace.cli import parse_count
from populace.explorer.live import _agent_map
from populace.explorer.render import MapPainter, View
from populace.scenarios.nyc_covid import NycCovid

NAMES = ("susceptible", "exposed", "infectious", "hospitalised", "recovered", "dead")
SHARES = (0.003, 0.023, 0.3, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", default="1M,8.4M")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for text in args.agents.split(","):
        agents = parse_count(text, "--agents")
        t0 = time.perf_counter()
        where = _agent_map(NycCovid().recipe(NycCovid.defaults()), agents, 0)
        load_s = time.perf_counter() - t0
        painter = MapPainter(where.x, where.y)
        x0, y0, x1, y1 = where.extent
        view = View((x0, x1, y0, y1), 620, 560)
        painter.homes(view)
        rng = np.random.default_rng(0)
        out: dict[str, object] = {"agents": agents, "load_s": round(load_s, 1)}
        for share in SHARES:
            past = rng.random(agents) < share
            groups = np.where(past, rng.integers(1, len(NAMES), agents), 0).astype(np.uint8)
            painter.overlay(groups, NAMES, view)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                painter.overlay(groups, NAMES, view)
                times.append(time.perf_counter() - t)
            out[f"overlay_s@{share:g}"] = round(statistics.median(times), 4)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
