"""Benchmark: the explorer in a real browser (Debian Chromium + Playwright) against a Panel server in this
process, at NYC scale and at classroom scale.

    python benchmarks/bench_explorer.py [--cases nyc-covid:8.4M,classroom:20k] [--seconds 15]
                                        [--days-per-frame K] [--screenshots DIR]
    python benchmarks/bench_explorer.py --visitors N [--cases classroom:20k] [--seconds 15]
    python benchmarks/bench_explorer.py --sessions N [--cases classroom:20k] [--seconds 15] [--refresh-ms 25]

For each case it measures (with every day drawn unless ``--days-per-frame`` says otherwise):

* ``slider_to_map_s`` — move a live slider (β) in the page, press Step: seconds until the page holds the new
  map image (one simulated day, the Datashader redraw and the transfer); median of 5;
* ``play_days_per_s`` — press Play: days per second shown by the page's day counter over ``--seconds``,
  and ``play_frames_per_s``, distinct map images the page received per second;
* ``zoom_s`` — a wheel zoom on the map: seconds until the page holds the re-aggregated image; median of 3;
* in-process parts: ``step_s`` (a simulated day and its frame) and ``render_s`` (the Datashader image at
  620 × 560), medians.

``--visitors N`` instead serves each case the way ``populace explore`` serves a small run (a run per browser
session), opens N browser contexts, presses Play in all of them and reports the days per second each page's
day counter advanced (``visitor_days_per_s``; the N Chromium pages run on this machine too, so they take CPU
a workshop's visitors' own machines would give), and, without a browser, the days per second of N
LiveRun objects playing at once in this process (``inprocess_days_per_s``: the simulation alone).

``--sessions N`` measures what the server sustains without the browsers (a workshop's visitors each on their
own machine): N sessions, each with a run of its own and a Bokeh document, all playing; one thread does the
server's part, as the Bokeh server's event loop does (every session's periodic refresh each ``--refresh-ms``,
the map and curves drawn into its document, the patch serialised as the server sends it), and a page's part
is to report the day drawn, as the page's ``shown_day`` does. It reports each session's days per second
(``session_days_per_s``: the day counter), frames per second (days drawn), the bytes a session would send,
the process's CPU (cores) and the load average before and after; first, for ``--seconds`` / 2, the same runs
play with no session drawing them (``inprocess_days_per_s``: the simulations alone). Not counted: the
websocket writes and decoding the pages' replies.

Targets (issue 6): at 8.4M agents the map redraws in under 0.5 s after a slider change and a day plus its
redraw keeps up at least 2 days per second; at classroom size 20+ days per second. Prints one JSON object per
case and appends it to ``benchmarks/bench_explorer_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import panel as pn
import torch
from _record import append, machine

from populace.cli import parse_count
from populace.explorer import Explorer, LiveRun
from populace.explorer.app import _extensions
from populace.explorer.headless import CHROMIUM, DAY, FLAGS, MAP
from populace.explorer.render import MapPainter, View
from populace.memory import reuse_freed_memory

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "bench_explorer_results.json"
RECORD = """async (ms) => {
  const map = (__MAP__); const day = (__DAY__); const out = []; const t0 = performance.now();
  let last = null;
  while (performance.now() - t0 < ms) {
    const m = map().sum; const d = day();
    if (!last || m !== last[0] || d !== last[1]) {
      out.push([performance.now() - t0, d, m]); last = [m, d];
    }
    await new Promise(r => setTimeout(r, 10));
  }
  return out;
}""".replace("__MAP__", MAP).replace("__DAY__", DAY)
WAIT_CHANGE = """async ([before, ms]) => {
  const map = (__MAP__); const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const m = map(); if (m && m.sum !== before) return (performance.now() - t0) / 1000;
    await new Promise(r => setTimeout(r, 5));
  }
  return null;
}""".replace("__MAP__", MAP)


def measure(
    scenario: str, agents: int, seconds: float, port: int, screenshots: Path | None, days_per_frame: int
) -> dict:
    from playwright.sync_api import sync_playwright

    _extensions()
    t0 = time.perf_counter()
    run = LiveRun(scenario, agents=agents, threads=0)  # as `populace explore` does: one thread below 1M
    run.wait()
    if run.error:
        raise RuntimeError(run.error)
    setup_s = time.perf_counter() - t0
    sim_threads = run._worker.submit(torch.get_num_threads).result()  # the simulation's thread
    run.days = 10_000 // 10
    agents_map, frame = run.map, run.frame
    assert agents_map is not None
    painter, (x0, y0, x1, y1) = MapPainter(agents_map.x, agents_map.y), agents_map.extent
    render = []
    for _ in range(5):
        t = time.perf_counter()
        painter.paint(frame.groups, frame.group_names, View((x0, x1, y0, y1), 620, 560))
        render.append(time.perf_counter() - t)
    steps = []
    for _ in range(5):
        t = time.perf_counter()
        run.step(1).result()
        steps.append(time.perf_counter() - t)
    run.reset().result()
    run.days_per_frame = days_per_frame
    server = pn.serve({"/": lambda: Explorer(run=run)}, port=port, show=False, threaded=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(f"http://localhost:{port}/")
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=120_000)
            page.wait_for_function(f"() => ({MAP})() !== null", timeout=120_000)
            run.step(10).result()  # a few days in: every step changes the map
            page.wait_for_timeout(2000)
            # slider → Step → new map
            top = page.get_by_text("transmission per contact (β):", exact=True).first.bounding_box()["y"]
            handles = page.locator(".noUi-handle")
            boxes = [(handles.nth(i).bounding_box(), i) for i in range(handles.count())]
            handle = handles.nth(min((b["y"], i) for b, i in boxes if b and b["y"] > top)[1])
            latencies = []
            for k in range(5):
                box = handle.bounding_box()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.mouse.down()
                page.mouse.move(
                    box["x"] + box["width"] / 2 + (6 if k % 2 == 0 else -6), box["y"] + 5, steps=3
                )
                page.mouse.up()
                page.wait_for_timeout(300)
                before = page.evaluate(MAP)["sum"]
                page.get_by_role("button", name="Step").click()
                latencies.append(page.evaluate(WAIT_CHANGE, [before, 20_000]))
                page.wait_for_timeout(500)
            # play
            page.get_by_role("button", name="▶ Play").click()
            trace = page.evaluate(RECORD, seconds * 1000)
            page.get_by_role("button", name="❚❚ Pause").click()
            page.wait_for_timeout(1500)
            days = [d for _, d, _ in trace if d >= 0]
            span = (trace[-1][0] - trace[0][0]) / 1000 if len(trace) > 1 else float("nan")
            frames = len({m for _, _, m in trace})
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshots / f"explorer-{scenario}-{agents}.png"))
            # zoom
            zooms = []
            canvas = page.locator("canvas").first.bounding_box()
            for _ in range(3):
                before = page.evaluate(MAP)["sum"]
                page.mouse.move(canvas["x"] + canvas["width"] * 0.45, canvas["y"] + canvas["height"] * 0.5)
                page.mouse.wheel(0, -300)
                zooms.append(page.evaluate(WAIT_CHANGE, [before, 20_000]))
                page.wait_for_timeout(800)
            if screenshots is not None:
                page.screenshot(path=str(screenshots / f"explorer-{scenario}-{agents}-zoom.png"))
            browser.close()
    finally:
        server.stop()
        run.close()
    return {
        "scenario": scenario,
        "agents": agents,
        "days_per_frame": days_per_frame,
        "sim_threads": sim_threads,
        "setup_s": round(setup_s, 2),
        "step_s": round(statistics.median(steps), 4),
        "render_s": round(statistics.median(render), 4),
        "slider_to_map_s": round(statistics.median(x for x in latencies if x is not None), 3),
        "slider_to_map_all_s": latencies,
        "play_days_per_s": round((max(days) - min(days)) / span, 2) if days else None,
        "play_frames_per_s": round(frames / span, 2),
        "zoom_s": round(statistics.median(x for x in zooms if x is not None), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_visitors(scenario: str, agents: int, visitors: int, seconds: float, port: int) -> dict:
    """N visitors, each with a run of their own, all playing (see module docs)."""
    from playwright.sync_api import sync_playwright

    _extensions()
    runs: list[LiveRun] = []
    # in process: N runs playing at once, nothing drawn
    for _ in range(visitors):
        own = LiveRun(scenario, agents=agents, threads=0, days=3650)
        own.wait()
        runs.append(own)
    start = [own.frame.day for own in runs]
    t0 = time.perf_counter()
    for own in runs:
        own.play()
    time.sleep(seconds)
    elapsed = time.perf_counter() - t0
    inprocess = [(own.frame.day - d) / elapsed for own, d in zip(runs, start, strict=True)]
    for own in runs:
        own.close()
    setups: list[float] = []
    served: list[LiveRun] = []

    def page() -> Explorer:  # as `populace explore` serves a run of at most PER_VISITOR_AGENTS agents
        t = time.perf_counter()
        own = LiveRun(scenario, agents=agents, threads=0, days=3650)
        own.wait()
        setups.append(time.perf_counter() - t)
        served.append(own)
        return Explorer(run=own, owns_run=True)

    server = pn.serve({"/": page}, port=port, show=False, threaded=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            pages = []
            for _ in range(visitors):
                context = browser.new_context(viewport={"width": 1500, "height": 950})
                pg = context.new_page()
                pg.goto(f"http://localhost:{port}/")
                pg.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=120_000)
                pg.wait_for_function(f"() => ({MAP})() !== null", timeout=120_000)
                pages.append(pg)
            for pg in pages:
                pg.get_by_role("button", name="▶ Play").click()
            pages[-1].wait_for_timeout(2000)  # every run under way
            start = [pg.evaluate(DAY) for pg in pages]
            t0 = time.perf_counter()
            pages[-1].wait_for_timeout(seconds * 1000)
            end = [pg.evaluate(DAY) for pg in pages]
            elapsed = time.perf_counter() - t0
            browser.close()
    finally:
        server.stop()  # sessions are not destroyed by a stop: close their runs (still playing)
        for own in served:
            own.close()
    per_visitor = [(b - a) / elapsed for a, b in zip(start, end, strict=True)]
    return {
        "scenario": scenario,
        "agents": agents,
        "visitors": visitors,
        "seconds": seconds,
        "session_setup_s": round(statistics.median(setups), 3),
        "visitor_days_per_s": [round(x, 1) for x in per_visitor],
        "visitor_days_per_s_min": round(min(per_visitor), 1),
        "inprocess_days_per_s": [round(x, 1) for x in inprocess],
        "inprocess_days_per_s_min": round(min(inprocess), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_sessions(scenario: str, agents: int, sessions: int, seconds: float, refresh_ms: int) -> dict:
    """N sessions served as `populace explore` serves a small run (a run each), without a browser (see
    module docs): what the server itself sustains when each visitor's browser is on their own machine."""
    from bokeh.document import Document
    from bokeh.protocol import Protocol

    _extensions(inline=False)
    protocol = Protocol()
    served: list[tuple[Explorer, Document, list]] = []
    setups = []
    for _ in range(sessions):
        t = time.perf_counter()
        own = LiveRun(scenario, agents=agents, threads=0, days=3650)
        own.wait()
        setups.append(time.perf_counter() - t)
        explorer = Explorer(run=own, owns_run=True, inline=False, refresh_ms=refresh_ms)
        doc = Document()
        doc.add_root(explorer.layout.get_root(doc))
        events: list = []
        doc.on_change(events.append)
        own.viewers += 1  # as Explorer.__panel__ does for a page
        served.append((explorer, doc, events))
    # the simulations alone first: the same runs playing with no session drawing them
    for explorer, _, _ in served:
        explorer.run.viewers -= 1
        explorer.run.play()
    time.sleep(1.0)
    alone0, t_alone = [e.run.frame.day for e, _, _ in served], time.perf_counter()
    time.sleep(seconds / 2)
    alone = [
        (e.run.frame.day - d) / (time.perf_counter() - t_alone)
        for (e, _, _), d in zip(served, alone0, strict=True)
    ]
    for explorer, _, _ in served:
        explorer.run.pause()
        explorer.run.reset().result()  # day 0 again, as a new page sees it
        explorer.run.viewers += 1
    sent = [0] * sessions
    drawn: list[list[int]] = [[] for _ in range(sessions)]

    def poll(i: int) -> None:
        """One session's periodic callback, the patch the server would send, and the page's reply."""
        explorer, _, events = served[i]
        explorer.refresh()
        if events:
            message = protocol.create("PATCH-DOC", list(events))
            sent[i] += len(message.content_json) + sum(len(b.to_bytes()) for b in message.buffers)
            events.clear()
        day = explorer.session.day
        if not drawn[i] or drawn[i][-1] != day:
            drawn[i].append(day)
            explorer.on_shown_day(day)  # the page shows the day drawn (Controls.shown_day)

    for i in range(sessions):  # each page loaded: its first drawing (the set-up's curves, legend, outlines)
        poll(i)
    load_before = os.getloadavg()
    for explorer, _, _ in served:
        explorer.run.play()
    cpu0, t0 = time.process_time(), time.perf_counter()
    start: list[int] | None = None
    t_start = t0
    while time.perf_counter() - t0 < seconds + 2:
        tick = time.perf_counter()
        for i in range(sessions):
            poll(i)
        if start is None and tick - t0 > 2:  # every run under way
            start, t_start = [e.session.day for e, _, _ in served], tick
            frames0 = [len(d) for d in drawn]
            sent0 = list(sent)
        time.sleep(max(0.0, refresh_ms / 1000 - (time.perf_counter() - tick)))
    elapsed = time.perf_counter() - t_start
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0)
    end = [e.session.day for e, _, _ in served]
    for explorer, _, _ in served:
        explorer.close()
    assert start is not None
    per_session = [(b - a) / elapsed for a, b in zip(start, end, strict=True)]
    frames = [(len(d) - f) / elapsed for d, f in zip(drawn, frames0, strict=True)]
    return {
        "scenario": scenario,
        "agents": agents,
        "sessions": sessions,
        "seconds": seconds,
        "refresh_ms": refresh_ms,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "session_setup_s": round(statistics.median(setups), 3),
        "session_days_per_s": [round(x, 1) for x in per_session],
        "session_days_per_s_min": round(min(per_session), 1),
        "session_days_per_s_median": round(statistics.median(per_session), 1),
        "session_frames_per_s_median": round(statistics.median(frames), 1),
        "sent_kb_per_s_per_session": round(
            statistics.median((b - a) / elapsed / 1000 for a, b in zip(sent0, sent, strict=True)), 1
        ),
        "process_cpu_cores": round(cpu, 2),
        "inprocess_days_per_s_min": round(min(alone), 1),
        "inprocess_days_per_s_median": round(statistics.median(alone), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="nyc-covid:8.4M,classroom:20k")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--port", type=int, default=5123)
    parser.add_argument("--screenshots", type=Path)
    parser.add_argument("--days-per-frame", type=int, default=1, help="days simulated per redraw (default 1)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument(
        "--visitors", type=int, default=0, help="N visitors with a run each, all playing (module docs)"
    )
    parser.add_argument(
        "--sessions", type=int, default=0, help="N sessions with a run each, all playing, no browser (docs)"
    )
    parser.add_argument("--refresh-ms", type=int, default=25, help="a session's poll period (--sessions)")
    args = parser.parse_args()
    reused = reuse_freed_memory()  # as `populace explore` does
    for case in args.cases.split(","):
        scenario, _, size = case.partition(":")
        if args.sessions:
            measured = measure_sessions(
                scenario, parse_count(size, "--cases"), args.sessions, args.seconds, args.refresh_ms
            )
            result = {**machine(), "reuse_freed_memory": reused, **measured}
            print(json.dumps(result), flush=True)
            if not args.no_record:
                append(RESULTS, result)
            continue
        load_before = [round(x, 2) for x in os.getloadavg()]
        if args.visitors:
            measured = measure_visitors(
                scenario, parse_count(size, "--cases"), args.visitors, args.seconds, args.port
            )
            load = {"load_average_before": load_before, "load_average_after": _load()}
            result = {**machine(), "reuse_freed_memory": reused, **load, **measured}
            print(json.dumps(result), flush=True)
            if not args.no_record:
                append(RESULTS, result)
            continue
        measured = measure(
            scenario,
            parse_count(size, "--cases"),
            args.seconds,
            args.port,
            args.screenshots,
            args.days_per_frame,
        )
        load = {"load_average_before": load_before, "load_average_after": _load()}
        result = {**machine(), "reuse_freed_memory": reused, **load, **measured}
        print(json.dumps(result), flush=True)
        if not args.no_record:
            append(RESULTS, result)
    return 0


def _load() -> list[float]:
    """The load average now (1, 5, 15 minutes)."""
    return [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    sys.exit(main())
