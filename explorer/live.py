"""A scenario run under live control: options, set-up, step, play/pause, and the frames the views draw.

:class:`LiveRun` holds no UI code (it is a ``param.Parameterized`` model, testable without a server). The
simulation runs on one worker thread: set-up, steps and play never block the caller, and every error is
kept in :attr:`LiveRun.error` instead of escaping into a UI thread. After each step the worker publishes an
immutable :class:`Frame` (the series so far and a snapshot of every agent's stage group); views poll
:attr:`LiveRun.frame` and redraw when its ``version`` changes, so one run can feed several browser sessions.

Options follow the scenario's specs. An option is *live* when the model reads its tensor every day: a new
value is written into that tensor and applies from the next simulated day. The others (choices, and
parameters read only when the state is drawn, :attr:`populace.model.Layer.setup_params`) need a reset.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import param
import torch

from populace import Choice, Param, ParamError, Scenario, Simulation
from populace.calibrate import Stream
from populace.experiment import Experiment
from populace.model import Model
from populace.scenario import find_scenario, scenarios
from populace.synth.geography import PolygonSet
from populace.synth.recipes import load_population

__all__ = ["MAX_CHUNK", "SMALL_RUN", "STAGE_GROUPS", "AgentMap", "Frame", "LiveRun"]

log = logging.getLogger(__name__)

STAGE_GROUPS = {
    "S": "susceptible",
    "E": "exposed",
    "I": "infectious",
    "P": "infectious",
    "A": "infectious",
    "M": "infectious",
    "MH": "infectious",
    "H": "hospitalised",
    "HD": "hospitalised",
    "R": "recovered",
    "D": "dead",
}
"""How the map groups a disease layer's stages (names not listed here are shown as they are)."""

MAX_AGENTS = 20_000_000
MAX_CHUNK = 7
"""At most this many days in a frame that :attr:`LiveRun.least_days_per_s` lengthens (a week: the map
still shows the epidemic move)."""
SMALL_RUN = 1_000_000
"""Below this many agents a run simulates on one torch thread when :attr:`LiveRun.threads` is 0: small
tensors gain little from a second thread, and the server and the browser need the core. Measured on this
2-core machine with Chromium on the page, days simulated per second by the server (benchmarks/README.md):
classroom (20k) 22 on one thread, 15 on two; NYC at 8.4M 3.1 on two threads, 2.5 on one."""


@dataclass(frozen=True)
class AgentMap:
    """Where the agents live (read-only numpy views of the population's columns).

    Attributes:
        x, y: ``float32[agents]`` homes in Web Mercator metres.
        area: ``int16[agents]`` home area (index into ``areas``).
        areas, regions: names; ``area_region``: ``int64[areas]``.
        outlines: the areas' outlines, ``None`` where the population has none.
        residents: ``int64[areas]`` agents per area.
        area_names: names for a reader where ``areas`` are codes (``Geography.area_names``), else empty.
    """

    x: np.ndarray
    y: np.ndarray
    area: np.ndarray
    areas: tuple[str, ...]
    regions: tuple[str, ...]
    area_region: np.ndarray
    outlines: PolygonSet | None
    residents: np.ndarray
    area_names: tuple[str, ...] = ()

    def area_title(self, a: int) -> str:
        """Area ``a`` in words: its name and code where the areas are codes (``Ponsonby West (130400)``),
        else its name."""
        name = self.area_names[a] if a < len(self.area_names) else ""
        return f"{name} ({self.areas[a]})" if name else self.areas[a]

    def nearest_area(self, x: float, y: float, within: float) -> int | None:
        """The home area of the agent living nearest ``(x, y)``, or ``None`` when no one lives within
        ``within`` (map metres; a tap on a map without outlines: the sea, or an empty valley)."""
        if len(self.x) == 0:
            return None
        d2 = np.square(self.x - np.float32(x)) + np.square(self.y - np.float32(y))
        i = int(np.argmin(d2))
        return int(self.area[i]) if float(d2[i]) <= within * within else None

    @functools.cached_property
    def extent(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` around every home, with a 2% margin (computed once: every map frame
        reads it, and the homes do not move)."""
        x0, x1, y0, y1 = (float(v) for v in (self.x.min(), self.x.max(), self.y.min(), self.y.max()))
        mx, my = 0.02 * (x1 - x0 or 1.0), 0.02 * (y1 - y0 or 1.0)
        return x0 - mx, y0 - my, x1 + mx, y1 + my


@dataclass(frozen=True)
class Frame:
    """What the views draw after a step (immutable; the worker publishes a new one each time).

    Attributes:
        version: increases with every published frame (and every set-up).
        day: days simulated so far.
        groups: ``uint8[agents]`` each agent's stage group (index into ``group_names``), or ``None``
            when the model has no per-agent stages.
        stage_names: the staged layer's stages (grouped by :data:`STAGE_GROUPS`); empty without one.
        history: ``{series: [value per day]}``; only the first ``day`` entries belong to this frame.
        labels: entry names of vector series.
    """

    version: int
    day: int
    groups: np.ndarray | None
    group_names: tuple[str, ...]
    stage_names: tuple[str, ...]
    history: Mapping[str, list[np.ndarray]]
    labels: Mapping[str, tuple[str, ...]]

    def series(self, name: str) -> np.ndarray:
        """``[day]`` or ``[day, k]``: the values of ``name`` up to this frame's day."""
        rows = self.history[name][: self.day]
        if not rows:
            k = len(self.labels.get(name, ()))
            return np.zeros((0, k)) if k else np.zeros(0)
        return np.stack(rows)

    def names(self) -> tuple[str, ...]:
        return tuple(self.history)

    def group_series(self) -> dict[str, np.ndarray]:
        """``{group: float64[day]}``: agents per stage group (the map's groups), from the per-stage series."""
        group_names, lut = _stage_groups(self.stage_names)
        out: dict[str, np.ndarray] = {}
        for stage, group in zip(self.stage_names, lut, strict=True):
            if stage in self.history:
                name, values = group_names[group], self.series(stage).astype(np.float64)
                out[name] = out[name] + values if name in out else values
        return out


_EMPTY = Frame(0, 0, None, (), (), {}, {})


class LiveRun(param.Parameterized):
    """One scenario run controlled live (see module docs).

    Args:
        scenario: scenario name (``populace scenarios``).
        agents: population size (default: the scenario's).
        device: where the simulation runs.
        setup: build the model right away (on the worker thread).
        agents_limit: set-ups of more agents are refused (``populace explore`` gives each visitor a run of
            their own up to this size); a scenario change caps its default size at it.
    """

    scenario = param.Selector(default="classroom", objects=[], doc="the scenario to explore")
    agents = param.Integer(default=20_000, bounds=(1, MAX_AGENTS), doc="agents in the population")
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), doc="base seed of the random streams")
    days = param.Integer(default=120, bounds=(1, 3650), doc="play stops after this many days")
    speed = param.Number(
        default=0.0, bounds=(0.0, 1000.0), doc="at most this many days per second while playing (0: no limit)"
    )
    days_per_frame = param.Integer(default=1, bounds=(1, 365), doc="days simulated between redraws")
    least_days_per_s = param.Number(
        default=10.0,
        bounds=(0.0, None),
        doc="while playing, frames carry more days than days_per_frame where drawing every one of them "
        "would play fewer days a second than this (many visitors, a slow page; runs under SMALL_RUN agents "
        "only); 0: never",
    )
    playing = param.Boolean(default=False, doc="the run advances on its own")
    threads = param.Integer(
        default=None,
        allow_None=True,
        bounds=(0, None),
        doc="torch threads while the run works: None leaves torch's setting (a notebook's own), 0 picks by "
        "size (one below SMALL_RUN agents, else torch's setting when the run was made), N exactly N",
    )
    busy = param.String(default="", doc="the long work under way, if any")
    error = param.String(default="", doc="the last error, for the user (empty: none)")

    def __init__(
        self,
        scenario: str = "classroom",
        *,
        agents: int | None = None,
        device: torch.device | str = "cpu",
        setup: bool = True,
        agents_limit: int | None = None,
        **params: Any,
    ) -> None:
        names = sorted(scenarios())
        self.param.scenario.objects = names
        if scenario not in names:
            raise ParamError(f"scenario: expected one of {', '.join(names)}, got {scenario!r}")
        cls = find_scenario(scenario)
        self.agents_limit = agents_limit
        super().__init__(
            scenario=scenario,
            agents=agents or self._capped(cls.default_agents),
            days=params.pop("days", cls.default_days),
            **params,
        )
        self._defaults = {
            name: getattr(self, name)
            for name in ("scenario", "agents", "seed", "days", "speed", "days_per_frame")
        }
        """What :meth:`restore_defaults` goes back to (the values this run was made with)."""
        self.closed = False
        """:meth:`close` was called: the worker thread is shut down."""
        self.device = torch.device(device)
        self.options: dict[str, Param | Choice] = cls.defaults()
        self.pending: set[str] = set()
        """Options changed since the last set-up that need a reset to apply."""
        self.fitted: dict[str, Any] | None = None
        """Model tensors by dotted name (from a calibration) loaded after every set-up."""
        self.model: Model | None = None
        self.map: AgentMap | None = None
        self._map_of: tuple[str, int, int] | None = None  # (recipe, agents, seed) of the map
        self.frame: Frame = _EMPTY
        self.observed: list[Stream] = []
        """The scenario's observed streams from its start date (:meth:`Scenario.observed`), for overlays."""
        self.step_seconds = 0.0
        """Wall time of the last step (simulation and frame), for the benchmarks and the status line."""
        self._sim: Simulation | None = None
        self._live: dict[str, list[torch.Tensor]] = {}
        self._built: dict[str, Param | Choice] = {}
        self._lock = threading.RLock()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="populace-run")
        self._last: Future[None] | None = None
        self.viewers = 0
        """Sessions drawing this run: while there are any, play waits for each frame to be drawn (every day
        shown, and the simulation thread leaves the drawing threads time to run)."""
        self._shown = threading.Event()  # wakes a play loop waiting for a view
        self._shown_version = -1
        self._page_day: int | None = None  # the day a browser reports showing (None: no browser reports)
        self.page_wait_s = 2.0
        """How long play waits for a view to show a frame (longer once a browser reports what it shows)."""
        self.page_lead = 0
        """Days play may run ahead of what a reporting page shows. 0: Pause stops on the day the page
        showed when pressed (or the one under way), at a round trip per day: the classroom played 6.2 days/s
        against 11.6 with 1 and 10.8 without reports (load average 9 on 2 cores, bench_explorer.py); with 1
        the page's Pause overshot by 3 days."""
        self._torch_threads = torch.get_num_threads()
        self.param.watch(self._scenario_changed, "scenario")
        if setup:
            self.setup()

    # ------------------------------------------------------------------ options
    def _scenario_changed(self, event: param.parameterized.Event) -> None:
        cls = find_scenario(event.new)
        self.pause()
        with self._lock:
            self.options = cls.defaults()
            self.fitted = None
        self.param.update(agents=self._capped(cls.default_agents), days=cls.default_days)

    def _capped(self, agents: int) -> int:
        return agents if self.agents_limit is None else min(agents, self.agents_limit)

    def restore_defaults(self) -> Future[None]:
        """The current scenario's default options (no fitted values), and the size, seed, days and speed
        this run was made with (the scenario's own where the scenario has changed since); then a set-up."""
        self.pause()
        cls = self.scenario_class
        same = self.scenario == self._defaults["scenario"]
        with self._lock:
            self.options = cls.defaults()
            self.fitted = None
        self.param.update(
            agents=self._defaults["agents"] if same else self._capped(cls.default_agents),
            days=self._defaults["days"] if same else cls.default_days,
            seed=self._defaults["seed"],
            speed=self._defaults["speed"],
            days_per_frame=self._defaults["days_per_frame"],
        )
        return self.setup()

    @property
    def scenario_class(self) -> type[Scenario]:
        return find_scenario(self.scenario)

    def is_live(self, name: str) -> bool:
        """Whether option ``name`` applies from the next day (else it needs a reset)."""
        return name in self._live

    def set_option(self, name: str, value: float | str) -> bool:
        """Validate and set option ``name``; returns whether it applied live. A bad value raises
        :class:`ParamError` naming the option and its bounds, and changes nothing."""
        if name not in self.options:
            raise ParamError(f"{name}: not an option of {self.scenario}; known: {', '.join(self.options)}")
        option = self.options[name]
        if isinstance(option, Param):
            new: Param | Choice = dataclasses.replace(option, value=option.validate(value, name))  # type: ignore[arg-type]
        else:
            new = dataclasses.replace(option, value=option.validate(str(value), name))
        with self._lock:
            self.options[name] = new
            if name in self._live:
                with torch.no_grad():
                    for tensor in self._live[name]:
                        tensor.fill_(float(new.value))
                return True
            built = self._built.get(name)
            if built is not None and built.value == new.value:
                self.pending.discard(name)
            else:
                self.pending.add(name)
        return False

    def apply_options(self, values: Mapping[str, str]) -> None:
        """Set several options from texts (e.g. :meth:`Scenario.observed_options`); all are checked first."""
        parsed = {name: self.options[name].parse(text, name) for name, text in values.items()}
        for name, option in parsed.items():
            self.set_option(name, option.value)

    # ------------------------------------------------------------------ work on the worker thread
    def _submit(self, work: Callable[[], None], what: str) -> Future[None]:
        def job() -> None:
            self.busy = what
            try:
                self._use_threads()
                work()
                self.error = ""
            except Exception as exc:  # shown in the app; the traceback goes to the log
                log.exception("%s failed", what)
                self.error = f"{what} failed: {exc}"
                self.playing = False
            finally:
                self.busy = ""

        self._last = self._worker.submit(job)
        return self._last

    def _use_threads(self) -> None:
        """Set torch's threads for this run's worker (:attr:`threads`); threads started later in the
        process inherit the setting, threads already running keep theirs."""
        if self.threads is None:
            return
        n = self.threads or (1 if self.agents < SMALL_RUN else self._torch_threads)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the work submitted so far is done (tests, benchmarks, notebooks)."""
        done = self._worker.submit(lambda: None)
        done.result(timeout)

    def setup(self) -> Future[None]:
        """(Re)build the population, model and simulation with the current options and seed; day 0. More
        agents than :attr:`agents_limit` raise :class:`ParamError` (nothing is submitted)."""
        if self.agents_limit is not None and self.agents > self.agents_limit:
            raise ParamError(
                f"agents: at most {self.agents_limit:,} in a run of your own here, got {self.agents:,} "
                f"(a larger run is served to all visitors as one shared run: populace explore --agents N)"
            )
        self.playing = False
        return self._submit(self._setup, f"setting up {self.scenario} with {self.agents:,} agents")

    reset = setup

    def new_seed(self) -> Future[None]:
        """Draw another seed and set up again."""
        self.seed = int(np.random.default_rng().integers(0, 2**31 - 1))
        return self.setup()

    def step(self, days: int | None = None) -> Future[None]:
        """Advance ``days`` days (default :attr:`days_per_frame`) and publish a frame."""
        n = days or self.days_per_frame
        return self._submit(lambda: self._advance(n), f"simulating {n} day{'s' if n > 1 else ''}")

    def play(self) -> None:
        """Advance until :meth:`pause`, the last day (:attr:`days`) or an error."""
        if self.playing:
            return
        self.playing = True
        self._submit(self._play, "playing")

    def pause(self) -> None:
        self.playing = False

    def close(self) -> None:
        """Stop playing and the worker thread (waits for the day under way)."""
        self.playing = False
        self.closed = True
        self._shown.set()  # a play loop waiting for a view to draw stops waiting
        self._worker.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ the worker's side
    def _setup(self) -> None:
        cls = self.scenario_class
        agents = int(self.agents)
        with self._lock:
            options = dict(self.options)
            experiment = Experiment(cls, options, agents, int(self.seed), self.device, self.fitted)
            model = experiment.model()
            sim = Simulation(model, seed=int(self.seed), device=self.device)
            self._live = _live_tensors(model, options)
            self._built = options
            self.pending = set()
            self.model, self._sim = model, sim
            self.observed = experiment.observed(model, days=int(self.days))
            recipe = cls().recipe(options)
            where = None if recipe is None else (recipe.name, agents, int(self.seed))
            if where != self._map_of:  # a reset of the same population keeps its map
                self.map = _agent_map(recipe, agents, int(self.seed)) if recipe is not None else None
                self._map_of = where
            self._history: dict[str, list[np.ndarray]] = {name: [] for name in model.observables()}
            if self._page_day is not None:
                self._page_day = -1  # day 0 again: the page's last day no longer says how far it is
            self._publish(sim, model)

    def _advance(self, days: int, playing: bool = False) -> None:
        """Simulate ``days`` days and publish their frame; ``playing``: stop after the day under way once
        :meth:`pause` is called (a frame of several days ends where Pause found it)."""
        with self._lock:
            sim, model = self._sim, self.model
            if sim is None or model is None:
                raise RuntimeError("set up the run first")
            t0 = time.perf_counter()
            for _, values in sim.stream(days):
                for name, value in values.items():
                    self._history[name].append(value.cpu().numpy())
                if playing and not self.playing:
                    break
            self._publish(sim, model)
            self.step_seconds = time.perf_counter() - t0

    def shown(self, version: int) -> None:
        """A view drew frame ``version`` (see :attr:`viewers`)."""
        self._shown_version = max(self._shown_version, version)
        self._shown.set()

    def page_shows(self, day: int) -> None:
        """A browser page shows ``day`` (it reports only while it plays): from then on play keeps at most
        :attr:`page_lead` days ahead of the page."""
        self._page_day = day
        self._shown.set()

    def _caught_up(self, chunk: int) -> bool:
        if self._page_day is not None:
            return self._page_day >= self.frame.day - self.page_lead * chunk
        return self._shown_version >= self.frame.version

    def _play(self) -> None:
        chunk = self.days_per_frame
        while self.playing and self.frame.day < self.days:
            t0 = time.perf_counter()
            days = min(chunk, self.days - self.frame.day)
            # a frame of several days starts from a copy of the state, so that a Pause pressed while the
            # page still shows the day before it undoes the frame's days: Pause stops on the day pressed
            mark = self._mark() if days > 1 and self._page_day is not None else None
            self._advance(days, playing=True)
            simulated = time.perf_counter() - t0
            if self.viewers > 0:  # until a view shows the frame, or a page the frame before it
                deadline = time.perf_counter() + self.page_wait_s
                while self.playing and not self._caught_up(chunk) and time.perf_counter() < deadline:
                    self._shown.wait(timeout=0.05)
                    self._shown.clear()
                if mark is not None and not self.playing and self._page_day == mark[0] < self.frame.day:
                    self._rewind(*mark)
                    break
                chunk = self._next_chunk(days, simulated, time.perf_counter() - t0)
            if self.speed > 0:
                time.sleep(max(0.0, chunk / self.speed - (time.perf_counter() - t0)))
        self.playing = False

    def _mark(self) -> tuple[int, list[Any]]:
        """The day and a copy of the simulation's state (a classroom's: 2.3 ms)."""
        with self._lock:
            assert self._sim is not None
            return self._sim.day, copy.deepcopy(self._sim.states)

    def _rewind(self, day: int, states: list[Any]) -> None:
        """Back to ``day`` with ``states`` (from :meth:`_mark`): the days after it are undone and their
        frame replaced. The draws are keyed by day and agent, so the days simulated again are the same."""
        with self._lock:
            sim, model = self._sim, self.model
            assert sim is not None
            assert model is not None
            sim.states, sim.day = states, day
            for values in self._history.values():
                del values[day:]
            self._publish(sim, model)

    def _next_chunk(self, days: int, simulated: float, frame: float) -> int:
        """Days the next frame carries: :attr:`days_per_frame`, or more where drawing each day is what
        keeps play under :attr:`least_days_per_s`. A frame costs the drawing and the page's round trip
        (``frame - simulated`` seconds) plus ``simulated / days`` a day: solved for the days that keep the
        pace, at most :data:`MAX_CHUNK`. Only runs under :data:`SMALL_RUN` agents (a visitor's own run)
        skip frames: a large run (NYC at 8.4M, 0.1 s a day, the presenter's) draws every day, and so does
        any run whose simulation alone is slower than the pace."""
        pace = self.least_days_per_s
        if pace <= 0 or self.speed > 0 or self.agents >= SMALL_RUN:
            return self.days_per_frame
        day, drawing = simulated / days, max(0.0, frame - simulated)
        room = 1.0 - pace * day  # the share of a second left for drawing at this pace
        if room <= 0:
            return self.days_per_frame
        need = math.ceil(pace * drawing / room - 1e-9)
        return max(self.days_per_frame, min(need, MAX_CHUNK))

    def _publish(self, sim: Simulation, model: Model) -> None:
        staged = model.staged_layer()
        groups, names, stages = None, (), ()
        if staged is not None:
            layer = model.ordered_layers()[staged]
            stages = layer.stage_names
            names, lut = _stage_groups(stages)
            groups = lut[layer.stage(sim.states[staged]).cpu().numpy()]  # a new array: a snapshot
        self.frame = Frame(
            version=self.frame.version + 1,
            day=sim.day,
            groups=groups,
            group_names=names,
            stage_names=stages,
            history=self._history,
            labels=model.labels(),
        )

    # ------------------------------------------------------------------ helpers for jobs
    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[type[Scenario], dict[str, Param | Choice], int, int, int]]:
        """``(scenario class, options, agents, days, seed)`` as they are now."""
        with self._lock:
            yield self.scenario_class, dict(self.options), int(self.agents), int(self.days), int(self.seed)


def _live_tensors(model: Model, options: Mapping[str, Param | Choice]) -> dict[str, list[torch.Tensor]]:
    """Option name → the model tensors built from it (specs tagged with the option, ``Scenario.defaults``)
    that the model reads every day."""
    by_option: dict[str, list[torch.Tensor]] = {}
    for module in model.modules():
        setup = getattr(type(module), "setup_params", frozenset())
        for attr, spec in getattr(module, "param_specs", {}).items():
            tensor = getattr(module, attr, None)  # some specs only document a value read at set-up
            if spec.option and attr not in setup and isinstance(tensor, torch.Tensor):
                by_option.setdefault(spec.option, []).append(tensor)
    return {name: by_option[name] for name in options if name in by_option}


def _stage_groups(stage_names: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """Group names (in order of first appearance) and ``uint8[stages]`` stage → group."""
    groups = [STAGE_GROUPS.get(s, s) for s in stage_names]
    names = tuple(dict.fromkeys(groups))
    return names, np.array([names.index(g) for g in groups], dtype=np.uint8)


def _agent_map(recipe: Any, agents: int, seed: int) -> AgentMap:
    people = load_population(recipe, agents, seed).people
    geography = recipe.geography()
    outlines = recipe.outlines()
    area = people.area.numpy()
    return AgentMap(
        x=people.x.numpy(),
        y=people.y.numpy(),
        area=area,
        areas=geography.areas,
        regions=geography.regions,
        area_region=geography.area_region.numpy(),
        outlines=outlines,
        residents=np.bincount(area.astype(np.int64), minlength=len(geography.areas)),
        area_names=geography.area_names,
    )
