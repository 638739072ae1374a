"""``populace explore``: serve the explorer with Panel (Bokeh server).

One :class:`~.live.LiveRun` is built per server process before the first page is served (population,
model and the first Datashader aggregation, which compiles), and every browser session views it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import panel as pn

from populace.cli import UsageError
from populace.memory import reuse_freed_memory

from .app import Explorer, _extensions
from .live import LiveRun
from .render import MapPainter, View

__all__ = ["DEFAULT_AGENTS", "serve"]

DEFAULT_AGENTS = {"nyc-covid": 1_000_000}
"""Default sizes of ``populace explore`` where they differ from the scenario's own: NYC at 1M agents is
interactive on a 2-core laptop (measured in benchmarks/bench_explorer.py); ``--agents 8.4M`` is the city."""


def serve(
    scenario: str,
    *,
    agents: int | None,
    port: int,
    address: str,
    show: bool,
    threads: int = 0,
    ready: Any = None,
) -> None:
    """Build the run, warm the map, and serve until interrupted (``ready``: a callable given the server;
    ``threads``: :attr:`LiveRun.threads`, 0 picks by size)."""
    _extensions()
    t0 = time.perf_counter()
    run = LiveRun(scenario, agents=agents or DEFAULT_AGENTS.get(scenario), threads=threads)
    run.wait()
    if run.error:
        raise RuntimeError(run.error)
    if run.map is not None:  # the first Datashader aggregation in a process compiles (~1 s)
        x0, y0, x1, y1 = run.map.extent
        frame = run.frame
        view = View((x0, x1, y0, y1), 64, 64)
        MapPainter(run.map.x, run.map.y).paint(frame.groups, frame.group_names, view)
    print(
        f"populace explore: {run.scenario} with {run.agents:,} agents ready in "
        f"{time.perf_counter() - t0:.1f} s; "
        f"serving on http://{address}:{port}/",
        file=sys.stderr,
        flush=True,
    )
    try:
        server = pn.serve(
            {"/": lambda: Explorer(run=run)},
            port=port,
            address=address,
            websocket_origin=[f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"],
            show=False,
            title="Populace Explorer",
            start=False,
            # a closed tab's session stops refreshing within ~2 s, not Bokeh's default ~30 s: every
            # session polls the shared run, and dead ones starved the live page's updates in tests
            check_unused_sessions_milliseconds=1000,
            unused_session_lifetime_milliseconds=1000,
        )
    except OSError as exc:  # the port is taken, or the address is not this machine's
        run.close()
        raise UsageError(
            f"--port {port} / --address {address}: cannot listen: {exc.strerror or exc}"
        ) from None
    if ready is not None:
        ready(server)
    try:
        server.start()
        if show:
            server.io_loop.add_callback(server.show, "/")
        server.io_loop.start()
    finally:
        run.close()


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    reuse_freed_memory()  # this process serves one run: its days reuse freed memory (populace.memory)
    serve(
        args.scenario,
        agents=args.agents,
        port=args.port,
        address=args.address,
        show=not args.no_browser,
        threads=args.threads,
    )
    return 0
