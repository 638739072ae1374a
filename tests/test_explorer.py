"""The explorer without a server: the run model (LiveRun), the views (Explorer) driven from Python, the
Datashader rendering, the jobs and the `populace explore` command's checks."""

from __future__ import annotations

import io
import threading
import time

import holoviews as hv
import numpy as np
import pandas as pd
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
from bokeh.events import RangesUpdate

from populace import ParamError, Simulation, risk
from populace.cli import main
from populace.explorer import Explorer, LiveRun, jobs
from populace.explorer.live import MAX_CHUNK
from populace.explorer.render import LEVELS, MapPainter, View, palette, shading, to_png
from populace.explorer.views.run import MAP_SIZE, RunView
from populace.layers.covid import Covid
from populace.scenarios.nyc_covid import Classroom, NycCovid

AGENTS = 20_000  # the classroom default: about 10 seeds (50 per 100k)


@pytest.fixture
def run():
    live = LiveRun("classroom", agents=AGENTS)
    live.wait()
    assert live.error == ""
    yield live
    live.close()


def test_setup_gives_day_zero_with_every_agent_on_the_map(run):
    frame = run.frame
    assert frame.day == 0
    assert frame.group_names == ("susceptible", "exposed", "infectious", "hospitalised", "recovered", "dead")
    assert frame.groups is not None
    assert frame.groups.shape == (AGENTS,)
    assert run.map is not None
    assert run.map.x.shape == (AGENTS,)
    assert run.map.outlines is not None
    assert run.map.outlines.n == 16
    assert int(run.map.residents.sum()) == AGENTS


def test_steps_publish_frames_whose_groups_match_the_series(run):
    run.step(12).result()
    frame = run.frame
    assert frame.day == 12
    assert frame.series("S").shape == (12,)
    counts = np.bincount(frame.groups, minlength=len(frame.group_names))
    assert counts.sum() == AGENTS
    assert counts[0] == frame.series("S")[-1]
    infectious = sum(frame.series(s)[-1] for s in ("P", "A", "M", "MH"))
    assert counts[frame.group_names.index("infectious")] == infectious


def test_same_seed_same_run_and_reset_starts_again(run):
    run.step(20).result()
    first = run.frame.series("new_infections").copy()
    run.reset().result()
    assert run.frame.day == 0
    run.step(20).result()
    assert np.array_equal(run.frame.series("new_infections"), first)
    direct = Simulation(Classroom().build(AGENTS, run.options, seed=0, device="cpu"), seed=0).run(20)
    assert np.array_equal(direct.series["new_infections"].numpy(), first)


def test_a_live_option_applies_from_the_next_day(run):
    run.step(10).result()
    base = LiveRun("classroom", agents=AGENTS)
    base.step(10).result()
    assert run.is_live("beta")
    assert run.set_option("beta", 0.2) is True
    covid = next(m for m in run.model.modules() if isinstance(m, Covid))
    assert float(covid.beta.detach()) == pytest.approx(0.2)
    run.step(15).result()
    base.step(15).result()
    same, changed = run.frame.series("new_infections"), base.frame.series("new_infections")
    assert np.array_equal(same[:10], changed[:10])  # the past is untouched
    assert same[10:].sum() > changed[10:].sum()  # four times the transmission from day 10
    base.close()


def test_options_that_need_a_reset_wait_for_it(run):
    assert not run.is_live("test_type")
    assert not run.is_live("mask_adoption")
    assert run.set_option("test_type", "antigen") is False
    assert run.pending == {"test_type"}
    run.set_option("test_type", "pcr")  # back to what the model was built with
    assert run.pending == set()
    run.set_option("vaccination", "on")
    run.reset().result()
    assert run.pending == set()
    assert "first_doses" in run.frame.names()


def test_bad_values_are_refused_and_named(run):
    with pytest.raises(ParamError, match=r"beta: 5 is outside the bounds \[0, 1\]"):
        run.set_option("beta", 5.0)
    with pytest.raises(ParamError, match="test_type: expected one of none, pcr, antigen"):
        run.set_option("test_type", "saliva")
    with pytest.raises(ParamError, match="no_such: not an option of classroom"):
        run.set_option("no_such", 1.0)
    assert run.options["beta"].value == 0.05


def test_play_stops_at_the_last_day(run):
    run.days = 15
    run.days_per_frame = 4
    run.play()
    run.wait()
    assert run.frame.day == 15
    assert not run.playing


def test_play_draws_fewer_days_when_the_page_is_slow(run):
    """A page that takes 0.3 s to show each frame (twenty visitors on one server): frames carry several days
    so play keeps least_days_per_s; a fast page gets every day."""
    run.days = 60
    run.viewers = 1
    shown: list[int] = []

    def page() -> None:  # a page reporting each day it shows, 0.3 s after it is published
        while run.playing or not shown:
            time.sleep(0.3)
            shown.append(run.frame.day)
            run.page_shows(run.frame.day)

    run.page_shows(0)
    run.play()
    viewer = threading.Thread(target=page)
    viewer.start()
    time.sleep(2.0)
    run.pause()
    viewer.join()
    steps = np.diff(shown)
    assert steps.max() > 1  # frames of several days
    assert steps.max() <= MAX_CHUNK
    assert shown[-1] / (0.3 * len(shown)) >= 0.6 * run.least_days_per_s  # the pace, within the page's jitter
    assert run._next_chunk(1, simulated=0.003, frame=0.02) == 1  # a fast page: every day drawn
    assert run._next_chunk(1, simulated=0.15, frame=0.4) == 1  # a slow simulation: every day drawn
    assert run._next_chunk(1, simulated=0.003, frame=0.5) > 1
    run.agents = 8_400_000  # (not set up) a presenter's run draws every day
    assert run._next_chunk(1, simulated=0.003, frame=0.5) == 1
    run.agents = AGENTS
    run.least_days_per_s = 0
    assert run._next_chunk(5, simulated=0.015, frame=2.0) == run.days_per_frame


def test_pause_on_the_day_the_page_shows_undoes_a_frame_of_several_days(run):
    """A page showing day 10 presses Pause while the run simulates its next frame (5 days): the run goes back
    to day 10, and playing on from there gives the days an uninterrupted run gives."""
    straight = LiveRun("classroom", agents=AGENTS)
    straight.wait()
    straight.step(15).result()
    run.step(10).result()
    run.viewers = 1
    run.page_shows(10)
    run.days_per_frame = 5
    run.play()
    deadline = time.perf_counter() + 30
    while run.frame.day < 15 and time.perf_counter() < deadline:  # the frame is out, the page still at 10
        time.sleep(0.01)
    run.pause()
    run.wait()
    assert run.frame.day == 10
    assert len(run.frame.series("new_infections")) == 10
    run.step(5).result()
    for name in straight.frame.names():
        assert np.array_equal(run.frame.series(name), straight.frame.series(name)), name
    straight.close()


def test_the_map_is_not_drawn_while_another_tab_is_shown(run, monkeypatch):
    explorer = Explorer(run=run)
    explorer.refresh()
    painted: list[int] = []
    paint = RunView._paint_map
    monkeypatch.setattr(RunView, "_paint_map", lambda self: (painted.append(run.frame.day), paint(self)))
    explorer.tabs.active = 2  # Questions
    run.step(3).result()
    explorer.refresh()
    assert painted == []
    assert explorer.session.day == 3  # the day counter still follows
    explorer.tabs.active = 5  # Export: the map exported is the day's
    assert explorer.export._map_png().getvalue().startswith(b"\x89PNG")
    assert painted == [3]
    explorer.tabs.active = 0
    explorer.refresh()
    assert painted == [3, 3]
    explorer.close()


def test_a_failed_setup_is_reported_not_raised(run, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Classroom, "build", broken)
    run.setup()
    run.wait()
    assert "setting up classroom" in run.error
    assert "disk on fire" in run.error
    assert not run.playing
    assert run.busy == ""


def test_changing_scenario_resets_the_options(run):
    run.scenario = "bench-seir"
    assert "latent_mean" in run.options
    assert run.agents == 100_000
    run.agents = 2_000
    run.setup().result()
    assert run.error == ""
    assert run.map is None
    assert run.frame.group_names == ("susceptible", "exposed", "infectious", "recovered")


def test_threads_by_size_and_left_alone_by_default():
    def worker_threads(run: LiveRun) -> int:
        return run._worker.submit(torch.get_num_threads).result()

    untouched = LiveRun("classroom", agents=500)  # threads=None: torch's setting stays (a notebook's own)
    small = LiveRun("classroom", agents=500, threads=0)  # `populace explore`'s policy: one below 1M
    try:
        expected = worker_threads(untouched)
        assert worker_threads(small) == 1
        small.threads = 2
        small.step(1).result()
        assert worker_threads(small) == 2
        assert worker_threads(untouched) == expected
    finally:
        untouched.close()
        small.close()
        torch.set_num_threads(torch.get_num_threads())  # threads started later get this process's own again


# ---------------------------------------------------------------------- rendering
def test_painting_colours_the_affected_and_re_aggregates_at_a_new_extent():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 100, (2, 50_000)).astype(np.float32)
    groups = np.zeros(50_000, dtype=np.uint8)
    groups[x > 50] = 2  # the right half is infectious
    groups[(x > 50) & (y > 90)] = 1  # and the top of it exposed
    names = ("susceptible", "exposed", "infectious")
    painter = MapPainter(x, y)
    image = painter.paint(groups, names, View((0, 100, 0, 100), 40, 20))
    assert image.shape == (20, 40, 4)
    assert image.dtype == np.uint8
    left, right = image[:, :15, :3].astype(int), image[2:, 25:, :3].astype(int)
    assert (np.abs(left[..., 0] - left[..., 1]) < 12).all()  # grey homes
    assert (right[..., 0] > right[..., 1] + 60).all()  # red below y = 90
    top = image[0, 25:, :3].astype(int)  # the first row is the top (y near 100): exposed, orange
    assert ((top[:, 0] > 200) & (top[:, 1] > 120) & (top[:, 2] < 100)).all()
    zoomed = painter.paint(groups, names, View((0, 40, 0, 100), 40, 20))
    assert (np.abs(zoomed[..., 0].astype(int) - zoomed[..., 1]) < 12).all()  # all of it left of x = 50
    index = painter.overlay(groups, names, View((0, 100, 0, 100), 40, 20))
    assert (index[:, :15] == 0).all()  # no colour over the susceptible half: the browser shows the homes
    assert ((index[2:, 25:] > LEVELS) & (index[2:, 25:] <= 2 * LEVELS)).all()  # infectious, some opacity
    assert len(palette(names)) == 1 + 2 * LEVELS
    few = np.zeros_like(groups)
    few[:3] = (1, 2, 2)  # three agents past susceptible: only they are aggregated
    lit = painter.overlay(few, names, View((0, 100, 0, 100), 40, 20))
    rows, cols = 19 - (y[:3] / 5).astype(int), (x[:3] / 2.5).astype(int)  # the first row is the top
    assert np.count_nonzero(lit) == len({(r, c) for r, c in zip(rows, cols, strict=True)})
    assert lit[rows[0], cols[0]] in range(1, LEVELS + 1)  # exposed
    assert all(LEVELS < lit[r, c] <= 2 * LEVELS for r, c in zip(rows[1:], cols[1:], strict=True))
    homes = painter.paint(None, (), View((0, 1, 0, 1), 8, 8))
    assert to_png(homes).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="width, height"):
        painter.paint(None, (), View((0, 1, 0, 1), 0, 8))


def test_the_maps_counts_bin_agents_as_datashader_does():
    """The frame's own binning (each agent's pixel kept per view) against Datashader's, on the edges too."""
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-5, 105, (2, 30_000)).astype(np.float32)  # some outside the view
    x[:4], y[:4] = (0, 100, 0, 100), (0, 0, 100, 100)  # the corners: the upper edges fall in the last pixel
    groups = rng.integers(0, 3, 30_000).astype(np.uint8)
    view = View((0.0, 100.0, 0.0, 100.0), 37, 23)
    counts = view.canvas().points(pd.DataFrame({"x": x, "y": y}), "x", "y").values[::-1]
    painter = MapPainter(x, y)
    assert np.array_equal(painter.residents(view), counts)
    past = groups > 0
    lit = view.canvas().points(pd.DataFrame({"x": x[past], "y": y[past]}), "x", "y").values[::-1] > 0
    assert np.array_equal(painter.overlay(groups, ("s", "e", "i"), view) > 0, lit)


@pytest.mark.parametrize("prevalence", [0.05, 0.40])
def test_the_maps_mean_shading_over_residents_tracks_prevalence(prevalence):
    """Colour strength follows the share of a pixel's residents past susceptible, so the shading weighted
    by residents is the share of agents past susceptible (the old map lit a pixel fully for one agent)."""
    rng = np.random.default_rng(1)
    n = 200_000
    x, y = rng.normal(50, 15, (2, n)).astype(np.float32)  # dense in the middle, sparse at the edges
    names = ("susceptible", "exposed", "infectious", "recovered")
    groups = np.where(rng.random(n) < prevalence, rng.integers(1, len(names), n), 0).astype(np.uint8)
    painter = MapPainter(x, y)
    view = View((0, 100, 0, 100), 120, 100)
    strength, residents = shading(painter.overlay(groups, names, view)), painter.residents(view)
    inside = (x >= 0) & (x <= 100) & (y >= 0) & (y <= 100)
    assert residents.sum() == inside.sum()
    shown = (strength * residents).sum() / residents.sum()
    actual = np.count_nonzero(groups[inside]) / inside.sum()
    assert shown == pytest.approx(actual, abs=0.05)
    assert shown == pytest.approx(prevalence, abs=0.05)


def test_one_infected_agent_among_many_is_faint_and_a_whole_pixel_is_full():
    x = np.full(400, 5.0, dtype=np.float32)
    y = np.full(400, 5.0, dtype=np.float32)
    x[200:] = 15.0  # two pixels of 200 residents each
    names = ("susceptible", "exposed", "infectious")
    groups = np.zeros(400, dtype=np.uint8)
    groups[0] = 2  # one infectious agent in the left pixel
    groups[200:] = 2  # everyone in the right pixel
    painter = MapPainter(x, y)
    view = View((0, 20, 0, 10), 2, 1)
    index = painter.overlay(groups, names, view)
    strength = shading(index)
    assert 0 < strength[0, 0] <= 1 / LEVELS  # drawn, but faint
    assert strength[0, 1] == 1.0  # full colour: every resident infectious
    alpha = [int(palette(names)[i][7:], 16) for i in index[0]]
    assert alpha[0] <= 255 // LEVELS + 1  # the browser's palette agrees
    assert alpha[1] == 255
    image = painter.paint(groups, names, view).astype(int)
    assert abs(image[0, 0, 0] - image[0, 0, 1]) < 20  # the faint pixel stays near the homes' grey
    assert image[0, 1, 0] > image[0, 1, 1] + 150  # the full one is red


# ---------------------------------------------------------------------- views driven from Python
@pytest.fixture
def explorer(run):
    view = Explorer(run=run)
    root = view.layout.get_root()  # render once, as a served page does
    view.refresh()
    yield view, root
    view.close()


def _map_bytes(view: Explorer) -> bytes:
    assert view.image is not None
    return view.image.tobytes()


def test_views_redraw_the_map_and_curves_after_steps(explorer):
    view, _ = explorer
    view.run_view.curve_select.value = "stage groups"
    before = _map_bytes(view)
    assert "Day 0 of" in view.day_text.value
    view.run.set_option("beta", 0.3)
    view.run.step(25).result()
    view.refresh()
    assert "Day 25 of" in view.day_text.value
    assert _map_bytes(view) != before
    data = view.curve_figure.source.data
    susceptible = data[f"y{view.curve_figure.labels.index('susceptible')}"]
    assert list(data["day"]) == list(range(25))  # streamed day by day, none twice
    assert np.array_equal(susceptible, view.run.frame.group_series()["susceptible"])
    assert susceptible[-1] < AGENTS
    view.run.step(3).result()
    view.refresh()
    assert list(view.curve_figure.source.data["day"]) == list(range(28))
    view.run.reset().result()
    view.refresh()
    assert len(view.curve_figure.source.data["day"]) == 0  # a reset replaces the rows


def test_the_map_legend_says_what_full_colour_means(explorer):
    view, _ = explorer
    legend = view.run_view.legend.object
    assert "full colour: every resident of the pixel in that stage" in legend
    assert "share of its residents" in legend
    assert all(group in legend for group in view.run.frame.group_names)


def test_option_controls_are_grouped_and_a_bad_value_shows_in_the_alert(explorer):
    view, _ = explorer
    assert "beta" in view._option_widgets
    assert "test_type" in view._option_widgets
    view._option_widgets["beta"].value = 7.0
    alert = view.controls.options_alert  # beside the option controls, not at the top of the sidebar
    assert alert.visible
    assert "beta: 7 is outside the bounds" in alert.object
    assert view.run.options["beta"].value == 0.05
    view.agents_input.value = "12abc"
    view.setup_button.clicks += 1
    assert "agents: expected a positive whole number" in view.alert.object


def test_tapping_an_area_shows_its_counts(explorer):
    view, _ = explorer
    agents = view.run.map
    a = int(agents.area[0])
    inside = agents.area == a
    view._on_tap(x=float(agents.x[inside][0]), y=float(agents.y[inside][0]))
    assert f"**{agents.areas[a]}**" in view.area_text.object
    assert f"{int(inside.sum()):,} residents" in view.area_text.object


def test_nz_covid_maps_new_zealand_and_offers_the_policies(tmp_path, monkeypatch):
    """New Zealand has no SA2 outlines: the map spans the country (not the globe: the Chatham Islands at
    176.55° W sit east of 180°), a tap names the SA2 of the nearest home, and the roll-out policy is a
    choice in plain words."""
    monkeypatch.setenv("POPULACE_CACHE", str(tmp_path))
    view = Explorer(scenario="nz-covid", agents=20_000)
    try:
        view.run.wait()
        view.layout.get_root()
        view.refresh()
        agents = view.run.map
        assert agents.outlines is None
        x0, y0, x1, y1 = agents.extent
        assert x0 > 18.4e6  # 165° E
        assert x1 < 20.5e6  # 184° E
        assert y0 > -6.1e6  # 48° S
        assert y1 < -4.0e6  # 34° S
        assert np.count_nonzero(view.image[..., 3]) > 1_000  # homes drawn
        i = int(np.flatnonzero(agents.area == agents.areas.index("130400"))[0])  # an Auckland SA2
        view._on_tap(x=float(agents.x[i]), y=float(agents.y[i]))  # on a home
        assert "**Ponsonby West (130400)** (Auckland), day 0:" in view.area_text.object
        view._on_tap(x=x0 + 1_000.0, y=y1 - 1_000.0)  # the Tasman Sea, far from any home
        assert "Tap an area" in view.area_text.object
        policy = view._option_widgets["policy"]
        assert policy.label.startswith("who gets the next first doses")  # "(after a reset)"
        assert {"as it was", "oldest first", "equity first"} <= set(policy.options)
        assert view.controls.option_cards.objects[0].title == "Roll-out"  # the first card, open
        view.run.days = 20
        view.compare._pin()
        policy.value = "oldest first"  # as a visitor picks it
        assert view.run.options["policy"].value == "oldest first"
        view.compare._start_compare()
        deadline = time.monotonic() + 60
        while not view.compare.compare_text.object and time.monotonic() < deadline:
            time.sleep(0.05)
            view.session.poll_job()
        assert "Options that differ: policy: as it was → oldest first." in view.compare.compare_text.object
    finally:
        view.close()


def test_exports_are_real_files(explorer):
    view, _ = explorer
    view.run.step(5).result()
    view.refresh()
    table = pcsv.read_csv(io.BytesIO(view._curves_file(".csv").getvalue()))
    assert table.column("day").to_pylist() == [0, 1, 2, 3, 4]
    parquet = pq.read_table(view._curves_file(".parquet"))
    assert (
        parquet.column("new_deaths_by_borough.north-west").to_pylist()
        == table.column("new_deaths_by_borough.north-west").to_pylist()
    )
    assert view._map_png().getvalue().startswith(b"\x89PNG")


def test_a_zoom_re_aggregates_the_map_at_the_new_extent(explorer):
    view, _ = explorer
    full, source = view.image.copy(), view.map_figure.groups
    x0, y0 = source.data["x"][0], source.data["y"][0]
    x1, y1 = x0 + source.data["dw"][0], y0 + source.data["dh"][0]
    half = ((x0 + x1) / 2, x1, (y0 + y1) / 2, y1)  # the top-right quarter
    view._on_ranges(RangesUpdate(view.map_figure.figure, x0=half[0], x1=half[1], y0=half[2], y1=half[3]))
    view.refresh()
    assert (source.data["x"][0], source.data["dw"][0]) == pytest.approx((half[0], (x1 - x0) / 2))
    assert (source.data["y"][0], source.data["dh"][0]) == pytest.approx((half[2], (y1 - y0) / 2))
    assert not np.array_equal(full, view.image)
    homes, index, names = view._layers
    assert np.array_equal(source.data["image"][0], index[::-1])  # Bokeh draws the first row at the bottom
    rgba = view.map_figure.homes.data["image"][0]
    assert np.array_equal(rgba.view(np.uint8).reshape(*rgba.shape, 4), homes[::-1])
    assert view.map_figure.homes.data["x"][0] == pytest.approx(half[0])
    assert list(view.map_figure.colours.palette) == palette(names)


# ---------------------------------------------------------------------- jobs
def test_levers_and_what_if_agree_in_sign_with_the_gradient():
    options = Classroom.defaults()
    args = dict(agents=AGENTS, days=40, seed=0, outcome="total:new_infections", seeds=2)
    calls: list[tuple[int, int]] = []
    levers = jobs.levers(Classroom, options, on_seed=lambda *a: calls.append(a), **args)  # type: ignore[arg-type]
    assert calls == [(1, 2), (2, 2)]  # progress after each seed
    by_option = {lever.option: lever for lever in levers.levers}
    beta = by_option["beta"]
    assert beta.gradient > 0
    assert np.isfinite(beta.gradient)
    assert levers.seeds == (0, 1)
    assert beta.gradient == pytest.approx(sum(beta.gradients) / 2)
    again = jobs.what_if(Classroom, options, option="beta", value=beta.value, **args)  # type: ignore[arg-type]
    assert again == pytest.approx(levers.values)  # the same seeds: the same runs
    assert levers.value == pytest.approx(sum(levers.values) / 2)
    higher = jobs.what_if(Classroom, options, option="beta", value=beta.value * 1.2, **args)  # type: ignore[arg-type]
    assert sum(higher) / 2 > levers.value


def test_sensitivity_bars_carry_a_band_from_the_seeds():
    """The band across a bar is the mean effect ± 2 standard errors of the per-seed effects, which are
    drawn as dots; the what-if prediction carries the same band times the change (no server needed)."""
    from bokeh.models import Whisker

    from populace.explorer.views.sensitivity import _resimulated, lever_plot

    hv.extension("bokeh")
    beta = jobs.Lever("covid.beta", "beta", 0.05, 1000.0, 0.005, "β", "", (900.0, 1100.0, 950.0, 1050.0))
    flat = jobs.Lever("covid.x", None, 1.0, -20.0, 0.1, "x", "", (-20.0, -20.0, -20.0, -20.0))
    levers = jobs.Levers("total:new_infections", 100.0, (beta, flat), 1.0, 1000, (0, 1, 2, 3), (99.0,) * 4)
    effects = [g * 0.005 for g in beta.gradients]
    mean = sum(effects) / 4
    se = (sum((e - mean) ** 2 for e in effects) / 3 / 4) ** 0.5
    assert beta.band == pytest.approx((mean - 2 * se, mean + 2 * se))
    assert beta.band[1] - beta.band[0] > 0.5  # a band, not a point
    assert flat.band == pytest.approx((-2.0, -2.0))  # seeds that agree: no width
    figure = hv.render(lever_plot(levers), backend="bokeh")
    (whisker,) = figure.select(type=Whisker)
    data = whisker.source.data
    band = {b: (lo, hi) for b, lo, hi in zip(data["base"], data["lower"], data["upper"], strict=True)}
    assert band["β (+0.005)"] == pytest.approx(beta.band)
    dots = next(r for r in figure.renderers if type(r.glyph).__name__ == "Scatter").data_source.data
    drawn = [e for lab, e in zip(dots["lever"], dots["effect"], strict=True) if lab == "β (+0.005)"]
    assert sorted(drawn) == pytest.approx(sorted(effects))
    predicted, low, high = levers.predicted(beta, 0.06)
    assert predicted == pytest.approx(100.0 + 1000.0 * 0.01)
    assert (high - low) / 2 == pytest.approx(2 * se / 0.005 * 0.01)
    # re-simulating the same 4 seeds: the change seed by seed (11, 12, 9, 13), ± 2 standard errors (1.7)
    assert "a change of +11.2 ± 1.7" in _resimulated(levers, (110.0, 111.0, 108.0, 112.0))


def test_compare_runs_two_settings_with_one_seed():
    a = Classroom.defaults()
    b = dict(a)
    b["school_close"] = b["school_close"].parse("0", "school_close")
    b["work_close"] = b["work_close"].parse("0", "work_close")
    c = jobs.compare(Classroom, a, b, agents=AGENTS, days=60, seed=0)
    assert set(c.differences) == {"school_close", "work_close"}
    infections = c.totals()["new_infections"]
    assert infections[1] < infections[0]


def test_calibrate_job_reports_progress():
    seen = []
    report, texts = jobs.calibrate(
        NycCovid, agents=2_000, days=28, epochs=2, seed=0, on_epoch=lambda e, loss: seen.append((e, loss))
    )
    assert [e for e, _ in seen] == [0, 1]
    assert all(np.isfinite(loss) for _, loss in seen)
    assert "school_close" in texts
    assert set(report.predictions) == {"cases", "hosp", "deaths"}
    with pytest.raises(ValueError, match="no observed data"):
        jobs.calibrate(Classroom, agents=100, days=7, epochs=1, seed=0)


# ---------------------------------------------------------------------- command line
def test_explore_command_checks_its_arguments(capsys):
    assert main(["explore", "--scenario", "no-such"]) == 2
    assert "no-such" in capsys.readouterr().err
    assert main(["explore", "--agents", "many"]) == 2
    assert "--agents: expected a positive whole number" in capsys.readouterr().err
    assert main(["explore", "--port", "70000"]) == 2
    assert "port number" in capsys.readouterr().err


def test_device_is_passed_through():
    live = LiveRun("classroom", agents=500, device=torch.device("cpu"))
    live.wait()
    assert live.error == ""
    assert live._sim is not None
    assert live._sim.device.type == "cpu"
    live.close()


def test_explore_reports_a_port_in_use(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            ["explore", "--scenario", "classroom", "--agents", "500", "--port", str(port), "--no-browser"]
        )
    assert code == 2
    assert f"--port {port}" in capsys.readouterr().err


def _outline_rows(root) -> int:
    from bokeh.models import GlyphRenderer, Patches

    (renderer,) = [r for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, Patches)]
    return len(renderer.data_source.data["xs"])


def test_the_outlines_follow_a_new_population(explorer):
    view, root = explorer
    assert _outline_rows(root) == 16  # the classroom town's blocks
    view.run.scenario = "nyc-covid"
    view.run.agents = 2_000
    view.run.setup().result()
    view.refresh()
    assert _outline_rows(root) > 177  # NYC's MODZCTAs (some in several parts)


# ---------------------------------------------------------------------- a run per visitor
def test_closing_a_visitors_session_closes_its_run_and_worker():
    own = LiveRun("classroom", agents=3_000)
    view = Explorer(run=own, owns_run=True)
    own.wait()
    own.step(2).result()
    workers = list(own._worker._threads)
    assert workers
    assert all(t.is_alive() for t in workers)
    view._detach()  # what the session's on_session_destroyed callback calls
    assert own.closed
    for t in workers:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in workers)
    shared = LiveRun("classroom", agents=3_000)
    try:
        Explorer(run=shared)._detach()  # a viewer of a run it does not own leaves it running
        assert not shared.closed
        assert shared.step(1).result() is None
    finally:
        shared.close()


def test_restore_defaults_resets_options_size_seed_and_day(run):
    defaults = {name: option.value for name, option in run.options.items()}
    run.set_option("beta", 0.2)
    run.set_option("mask_adoption", 0.5)
    run.seed, run.days, run.speed = 7, 30, 5.0
    run.step(3).result()
    run.restore_defaults().result()
    assert {name: option.value for name, option in run.options.items()} == defaults
    assert (run.seed, run.agents, run.days, run.speed, run.frame.day) == (0, AGENTS, 120, 0.0, 0)
    assert run.pending == set()


def test_a_visitors_run_is_limited_in_size():
    own = LiveRun("classroom", agents=3_000, agents_limit=5_000, setup=False)
    try:
        own.agents = 6_000
        with pytest.raises(ParamError, match="at most 5,000"):
            own.setup()
        own.scenario = "nyc-covid"  # its default size is far above the limit
        assert own.agents == 5_000
    finally:
        own.close()


def test_only_a_shared_run_says_so_on_the_page(run):
    assert Explorer(run=run, shared=True).controls.shared_text.visible
    assert not Explorer(run=run).controls.shared_text.visible


def test_the_drawn_maps_mean_shading_tracks_prevalence_at_two_prevalences(explorer):
    """What the browser draws: the groups image sent to it coloured by the palette it is given (its alpha
    is the colour strength), weighted by the residents of each pixel, against the share of agents past
    susceptible in the run, early and late in a classroom epidemic."""
    view, _ = explorer
    view.run.set_option("beta", 0.2)
    figure, painter = view.run_view.map_figure, view.run_view._painter
    checked = []
    for target in (0.1, 0.5):
        while True:
            frame = view.run.frame
            past = 1 - float((frame.groups == 0).mean())
            if past >= target:
                break
            view.run.step(2).result()
            view.refresh()
        assert frame.day > 0
        image = figure.groups.data["image"][0][::-1]  # Bokeh's rows run bottom up
        alpha = np.array([int(c[7:9], 16) / 255 for c in figure.colours.palette])[image]
        x0, x1, y0, y1 = view.run_view._extent
        residents = painter.residents(View((x0, x1, y0, y1), *MAP_SIZE))
        shown = float((alpha * residents).sum() / residents.sum())
        assert shown == pytest.approx(past, abs=0.05), (frame.day, past, shown)
        checked.append(past)
    assert checked[1] - checked[0] > 0.3  # two different prevalences


def test_option_cards_by_theme_fill_when_opened(explorer):
    view, _ = explorer
    cards = {card.title: card for card in view.controls.option_cards.objects}
    assert list(cards)[:3] == ["Disease", "Closures", "Masks"]
    assert not cards["Disease"].collapsed
    assert cards["Disease"].objects  # open: its controls are on the page
    closures = cards["Closures"]
    assert closures.collapsed
    assert closures.objects == []  # closed: drawn when first opened
    closures.collapsed = False
    assert len(closures.objects) == 5
    school = view._option_widgets["school_close"]
    assert school.never_box.value  # 10000: never
    school.never_box.value = False
    school.day.value = 15
    assert view.run.options["school_close"].value == 15
    school.never_box.value = True
    assert view.run.options["school_close"].value == 10_000


def test_a_question_runs_both_arms_over_seeds_and_reads_the_result():
    question = Classroom.questions[0]  # PCR or antigen testing?
    answer = jobs.answer(Classroom, Classroom.defaults(), question, agents=AGENTS, days=40, seeds=(0, 1))
    a, b = answer.names
    assert (a, b) == ("PCR tests", "antigen tests")
    assert answer.series[a]["new_infections"].shape == (2, 40)
    assert not np.array_equal(answer.series[a]["new_infections"], answer.series[b]["new_infections"])
    text = jobs.reading(answer)
    assert "Over 2 seeds" in text
    assert f"with {b} against" in text
    assert "deaths" in text or "infections" in text


def test_the_questions_tab_answers_every_question(explorer):
    view, _ = explorer
    tab = view.questions
    assert not tab.button.disabled  # the classroom has nyc-covid's questions
    tab.agents_input.value = str(AGENTS)
    tab.seeds_input.value = 1
    view.run.days = 20
    tab.button.clicks += 1
    assert not tab.alert.visible
    deadline = time.monotonic() + 120
    while not tab.answers.objects and time.monotonic() < deadline:
        time.sleep(0.2)
        view.session.poll_job()
    assert len(tab.answers.objects) == len(Classroom.questions)


def test_the_risk_tab_answers_in_the_session_from_a_public_forecast(explorer):
    view, _ = explorer
    tab = view.risk
    assert tab.area.disabled
    assert not tab.rows
    view.run.step(15).result()
    view.refresh()
    tab.agents_input.value = str(AGENTS)
    tab.button.clicks += 1
    assert not tab.alert.visible
    deadline = time.monotonic() + 120
    while tab.table is None and time.monotonic() < deadline:
        time.sleep(0.2)
        view.session.poll_job()
    table = tab.table
    assert table is not None
    assert table.first_day == 15  # the week after the day shown
    assert tab.area.options == table.areas
    assert table.areas == ["north-west", "north-east", "south-west", "south-east"]  # the classroom town
    assert set(tab.days) == set(table.force)
    rows = {row["choice"]: row for row in tab.rows}
    planned = rows["as planned"]["probability"]
    assert 0 < planned < 1
    assert rows["work from home"]["probability"] < planned
    assert rows["wear a mask outside the home"]["probability"] < planned
    assert "work from home" in tab.answer_pane.object
    # the controls re-answer at once, here: no job starts, the forecast is the same table
    version = view.session.job.version
    tab.days["work"].value = 0
    assert tab.rows[0]["probability"] == pytest.approx(rows["work from home"]["probability"])
    tab.household.value = 1
    tab.days["community"].value = 0
    tab.days["school"].value = 0
    assert tab.rows[0]["probability"] == 0.0  # alone at home all week
    assert "your risk is at home" in tab.answer_pane.object
    assert view.session.job.version == version
    assert tab.table is table
    assert tab.rows == risk.answer(table, tab.profile())  # the same answer as `populace risk`
