"""``populace explore``: serve the explorer with Panel (Bokeh server).

A run of up to :data:`PER_VISITOR_AGENTS` agents is *per visitor*: each browser session builds its own
:class:`~.live.LiveRun` (own seed, options, day and play state, from the scenario's defaults) when it opens,
and closes it (its worker thread) when the session is destroyed. A larger run is built once per server
process and shared by every session ("presenter" mode: the page says so, and every visitor can drive it).
Either way one run is built before the first page is served: it caches the population on disk (a
visitor's run loads it from there) and compiles the first Datashader aggregation.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import panel as pn
from bokeh.settings import settings as bokeh_settings

from populace.cli import UsageError
from populace.memory import reuse_freed_memory

from .app import Explorer, _extensions
from .live import LiveRun
from .render import MapPainter, View

__all__ = ["DEFAULT_AGENTS", "PER_VISITOR_AGENTS", "serve"]

PER_VISITOR_AGENTS = 200_000
"""Runs up to this many agents are built per browser session; larger ones are one run shared by all. The
classroom (20,000 agents) costs ~0.4 s to set up and ~3 ms a simulated day on this 2-core machine; at this
size a run holds ~10× that (benchmarks/README.md: concurrent visitors)."""

DEFAULT_AGENTS = {"nyc-covid": 1_000_000, "nz-covid": 1_000_000}
"""Default sizes of ``populace explore`` where they differ from the scenario's own: NYC at 1M agents is
interactive on a 2-core laptop (measured in benchmarks/bench_explorer.py); ``--agents 8.4M`` is the city.
New Zealand at 1M: at the scenario's 100,000 the ten infections per 100k seeded in Auckland are three or
four agents, and with seed 0 they died out within six weeks; at 1M (about 35 seeded) the outbreak grows, and
the run sets up in 2.7 s and simulates 60 days in 1.1 s (this machine, one thread, load average 2.3)."""


def serve(
    scenario: str,
    *,
    agents: int | None,
    port: int,
    address: str,
    show: bool,
    threads: int = 0,
    ready: Any = None,
    shared: bool | None = None,
) -> None:
    """Build the run, warm the map, and serve until interrupted (``ready``: a callable given the server;
    ``threads``: :attr:`LiveRun.threads`, 0 picks by size; ``shared``: one run for every visitor, default
    above :data:`PER_VISITOR_AGENTS` agents)."""
    _extensions(inline=False)
    # BokehJS, Panel's scripts and their stylesheets from this server, never from a CDN: a room without
    # internet gets the same page, and the page logs no failed loads
    bokeh_settings.resources = "server"
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
    if shared is None:
        shared = run.agents > PER_VISITOR_AGENTS
    if shared:

        def page() -> Explorer:
            return Explorer(run=run, shared=True, inline=False)
    else:
        run.close()  # it cached the population and compiled the map; each visitor builds their own
        size = run.agents

        def page() -> Explorer:
            own = LiveRun(scenario, agents=size, threads=threads, agents_limit=max(size, PER_VISITOR_AGENTS))
            # the page is built from the set-up run (~0.05 s for the classroom: its population comes from
            # the disk cache): option controls rebuilt while a page loads did not reach the browser
            own.wait()
            return Explorer(run=own, owns_run=True, inline=False)

    print(
        f"populace explore: {run.scenario} with {run.agents:,} agents ready in "
        f"{time.perf_counter() - t0:.1f} s; "
        + ("one run shared by all visitors; " if shared else "a run per visitor; ")
        + f"serving on http://{address}:{port}/",
        file=sys.stderr,
        flush=True,
    )
    try:
        server = pn.serve(
            {"/": page},
            port=port,
            address=address,
            websocket_origin=[f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"],
            show=False,
            title="Populace Explorer",
            start=False,
            # a closed tab's session stops refreshing (and its own run closes) within ~11 s, not Bokeh's
            # default ~30 s: dead sessions' polling starved the live pages' updates in tests. Not sooner:
            # the lifetime also runs from the page's HTML to its websocket, and a session dropped before
            # the page connected was made again without the page's resources (its styles pointed at a
            # CDN: failed loads in the console, measured with a 1 s lifetime on this shared machine)
            check_unused_sessions_milliseconds=1000,
            unused_session_lifetime_milliseconds=10_000,
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
    reuse_freed_memory()  # the runs' days reuse freed memory (populace.memory)
    serve(
        args.scenario,
        shared=True if args.shared else None,
        agents=args.agents,
        port=args.port,
        address=args.address,
        show=not args.no_browser,
        threads=args.threads,
    )
    return 0
