"""What one browser session (or notebook cell) shows of a shared :class:`~..live.LiveRun`: :class:`Session`.

The run is shared by every session and changes on its worker thread; a session reads it only in the app's
polling loop, on the session's own thread, and keeps what it shows in :class:`Session`'s parameters. The
views' widgets are bound to those parameters (``from_param``, ``pn.bind``, watchers), so the loop writes
each value once and no view copies state into a widget by hand. The session also owns its background job
(sensitivities, comparisons, calibration: one at a time, on its own worker thread) and its error line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import panel as pn
import param

from populace import ParamError
from populace.cli import UsageError, parse_count

from ..live import MAX_AGENTS, Frame, LiveRun

__all__ = ["Session", "agents_text", "count"]

log = logging.getLogger(__name__)


class Session(param.Parameterized):
    """One session's state (see module docs); the polling loop updates it from :attr:`run`."""

    scenario = param.Selector(default=None, objects=[], doc="the run's scenario (the scenario control)")
    agents = param.String(default="", doc="the agents control's text, read at a set-up")
    playing = param.Boolean(default=False, doc="the run is playing (the play/pause control)")
    seed = param.Integer(default=0, doc="the run's seed")
    day = param.Integer(default=0, doc="the day drawn (set after the map and curves are)")
    days = param.Integer(default=0, doc="the run's last day")
    busy = param.String(default="", doc="the run's long work or this session's job, if any")
    step_seconds = param.Number(default=0.0, doc="wall time of the run's last step")
    pending = param.List(default=[], item_type=str, doc="options that need a reset to apply, sorted")
    error = param.String(default="", doc="the error shown (empty: none)")
    options = param.Parameter(
        default=None, doc="(scenario, option names, whether each is live): the option controls follow it"
    )
    setup = param.Event(doc="a new set-up reached this session (views rebuild what depends on the model)")

    def __init__(self, run: LiveRun, **params: Any) -> None:
        self.param.scenario.objects = list(run.param.scenario.objects)
        super().__init__(
            scenario=run.scenario,
            agents=agents_text(run.agents),
            playing=run.playing,
            seed=run.seed,
            days=run.days,
            options=options_layout(run),
            **params,
        )
        self.run = run
        self.frame: Frame = run.frame
        """The frame being drawn (set by the polling loop)."""
        self.syncing = False
        """True while the polling loop copies the run in: controls that drive the run ignore the echo."""
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix="populace-job")
        self._job = _JobState()
        self._job_seen = 0
        self._job_alert: pn.pane.Alert | None = None

    def show(self, **values: Any) -> None:
        """Set the parameters whose value differs (the polling loop calls this every tick: an update of
        unchanged parameters costs more than comparing them)."""
        changed = {name: value for name, value in values.items() if getattr(self, name) != value}
        if changed:
            self.param.update(changed)

    # ------------------------------------------------------------------ actions
    def guard(self, action: Callable[[], Any], alert: pn.pane.Alert | None = None) -> None:
        """Run a UI action; a bad value or a failure shows in ``alert`` (the one beside the control that
        caused it; default: the sidebar's, :attr:`error`) instead of escaping."""
        try:
            action()
            self.show_error("", alert)
        except (ParamError, UsageError, ValueError) as exc:
            self.show_error(str(exc), alert)
        except Exception as exc:
            log.exception("explorer action failed")
            self.show_error(f"{type(exc).__name__}: {exc}", alert)

    def show_error(self, message: str, alert: pn.pane.Alert | None = None) -> None:
        """Show ``message`` (empty: none) in ``alert``, or as :attr:`error` (the sidebar's alert)."""
        with pn.io.hold():  # one change on the page: the text and the alert's visibility together
            if alert is None:
                self.error = message
            else:
                alert.object = message
                alert.visible = bool(message)

    def setup_run(self) -> None:
        """Set the run up again with the agents control's size."""
        self.run.agents = count(self.agents, "agents")
        self.run.setup()

    # ------------------------------------------------------------------ the background job
    @property
    def job(self) -> _JobState:
        return self._job

    def submit(
        self,
        what: str,
        work: Callable[[], Any],
        done: Callable[[Any], None],
        alert: pn.pane.Alert | None = None,
    ) -> None:
        """Run ``work`` on the session's job thread; ``done(result)`` runs on the session's thread (in
        :meth:`poll_job`) and a failure shows in ``alert`` (default: the sidebar's)."""
        job = self._job
        if job.running:
            raise ParamError(f"busy: {job.status}; wait for it to finish")
        job.start(what)
        self._job_alert = alert

        def run() -> None:
            try:
                job.finish(work(), done)
            except Exception as exc:
                log.exception("%s failed", what)
                job.fail(f"{what} failed: {exc}")

        self._jobs.submit(run)

    def poll_job(self) -> None:
        """Hand a finished job's result to its view, or show its error (the polling loop calls this)."""
        job = self._job
        with job.lock:
            if job.version == self._job_seen:
                return
            self._job_seen = job.version
            result, done, error = job.result, job.done, job.error
            job.result = job.done = None
        if error:
            self.show_error(error, self._job_alert)
        if done is not None:
            done(result)

    def close(self) -> None:
        self._jobs.shutdown(wait=False, cancel_futures=True)


class _JobState:
    """A session's background job: its status for the page, and its result handed to the session thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = False
        self.status = ""
        self.progress = 0.0
        self.version = 0
        self.result: Any = None
        self.done: Callable[[Any], None] | None = None
        self.error = ""

    def start(self, what: str) -> None:
        with self.lock:
            self.running, self.status, self.progress, self.error = True, what, 0.0, ""
            self.version += 1

    def finish(self, result: Any, done: Callable[[Any], None]) -> None:
        with self.lock:
            self.running, self.status, self.result, self.done = False, "", result, done
            self.version += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.running, self.status, self.error = False, "", message
            self.version += 1


def options_layout(run: LiveRun) -> tuple[str, tuple[str, ...], tuple[bool, ...]]:
    """What the option controls are built from: the scenario, its options and which apply live."""
    return run.scenario, tuple(run.options), tuple(run.is_live(n) for n in run.options)


def agents_text(agents: int) -> str:
    return f"{agents:,}".replace(",", "_")


def count(text: str, name: str) -> int:
    """A population size typed in a control (``100k``, ``8.4M``...), at most :data:`MAX_AGENTS`."""
    value = parse_count(str(text), name)
    if value > MAX_AGENTS:
        raise ParamError(f"{name}: at most {MAX_AGENTS:,} agents, got {value:,}")
    return value
