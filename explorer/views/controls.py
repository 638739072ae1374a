"""The sidebar: :class:`Controls` — scenario, size, seed, set-up/reset, step, play/pause, speed, days per
redraw, the day counter, the status and error lines, and one control per scenario option, grouped into
live ones and ones that need a reset."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from populace import Choice, Param, ParamError

from .session import Session, agents_text

__all__ = ["SIDEBAR_WIDTH", "Controls"]

SIDEBAR_WIDTH = 340
_AGENTS_DOC = "population size: 100000, 1e6, 8.4M or 100k (a reset builds it; large sizes take a while)"


class Controls(pn.viewable.Viewer):
    """The sidebar of one session (see module docs)."""

    def __init__(self, session: Session, *, shared: bool = False, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        run = session.run
        self.scenario_select = pn.widgets.Select.from_param(
            session.param.scenario, label="Scenario", width=300
        )
        self.agents_input = pn.widgets.TextInput.from_param(
            session.param.agents, label="Agents", width=140, description=_AGENTS_DOC
        )
        self.seed_text = pn.pane.Markdown(
            pn.bind(lambda seed: f"seed **{seed}**", session.param.seed), width=140, margin=(18, 5, 0, 5)
        )
        self.setup_button = pn.widgets.Button(label="Set up / reset", color="primary", width=140)
        self.seed_button = pn.widgets.Button(label="New seed", width=140)
        self.defaults_button = pn.widgets.Button(
            label="Restore defaults",
            width=140,
            description="the scenario's default options, size, seed and speed; then a set-up",
        )
        self.shared_text = pn.pane.Alert(
            f"**One run shared by all visitors.** Everyone on this page watches the same run of "
            f"{run.agents:,} agents, and any visitor drives it: a reset, a slider or Play here changes it "
            f"for everyone.",
            alert_type="info",
            width=300,
            visible=shared,
        )
        self.step_button = pn.widgets.Button(label="Step", width=90)
        self.play_toggle = pn.widgets.Toggle.from_param(
            session.param.playing,
            label=pn.bind(lambda playing: "❚❚ Pause" if playing else "▶ Play", session.param.playing),
            color="success",
            width=90,
        )
        self.days_input = pn.widgets.IntInput(label="Days", value=run.days, start=1, end=3650, width=90)
        self.speed_slider = pn.widgets.FloatSlider(
            label="Speed (days/s, 0 = fastest)", start=0, end=50, step=0.5, value=run.speed, width=300
        )
        self.frame_slider = pn.widgets.IntSlider(
            label="Days per redraw", start=1, end=30, value=run.days_per_frame, width=300
        )
        # the day and the status change every frame: set by watchers (below), which add ~0.03 ms per change
        # where pn.bind adds ~0.3 ms
        self.day_text = pn.pane.Markdown(
            _day(session.day, session.days), width=300, css_classes=["populace-day"]
        )
        self.status_text = pn.pane.Markdown(
            _status(session.busy, session.step_seconds), width=300, styles={"color": "#555"}
        )
        self.alert = pn.pane.Alert(
            session.param.error,
            visible=pn.bind(bool, session.param.error),
            alert_type="danger",
            width=300,
        )
        self.pending_text = pn.pane.Alert(
            pn.bind(_pending, session.param.pending),
            visible=pn.bind(bool, session.param.pending),
            alert_type="warning",
            width=300,
        )
        self.observed_button = pn.widgets.Button(
            label="Use what happened (orders, start)", width=300, visible=False
        )
        self.live_card = pn.Card(title="Live: apply from the next day", width=320, collapsed=False)
        self.reset_card = pn.Card(title="Apply after a reset", width=320, collapsed=True)
        self._option_widgets: dict[str, pn.widgets.Widget] = {}

        guard = session.guard
        session.param.watch(self._on_scenario, "scenario")
        session.param.watch(self._on_play, "playing")
        session.param.watch(lambda _: self._sync_options(), "options")
        session.param.watch(self._show_day, ["day", "days"])
        session.param.watch(self._show_status, ["busy", "step_seconds"])
        self.setup_button.on_click(lambda _: guard(session.setup_run))
        self.seed_button.on_click(lambda _: guard(run.new_seed))
        self.defaults_button.on_click(lambda _: guard(self._restore_defaults))
        self.step_button.on_click(lambda _: guard(run.step))
        self.days_input.param.watch(lambda e: guard(lambda: setattr(run, "days", e.new)), "value")
        self.speed_slider.param.watch(lambda e: setattr(run, "speed", e.new), "value_throttled")
        self.frame_slider.param.watch(lambda e: setattr(run, "days_per_frame", e.new), "value_throttled")
        self.observed_button.on_click(lambda _: guard(self._use_observed))
        self.layout = pn.Column(
            pn.pane.Markdown("## Populace Explorer", margin=(0, 5)),
            self.shared_text,
            self.scenario_select,
            pn.Row(self.agents_input, self.seed_text),
            pn.Row(self.setup_button, self.seed_button),
            pn.Row(self.defaults_button),
            pn.Row(self.step_button, self.play_toggle, self.days_input),
            self.speed_slider,
            self.frame_slider,
            self.day_text,
            self.status_text,
            self.alert,
            self.pending_text,
            self.observed_button,
            self.live_card,
            self.reset_card,
            width=SIDEBAR_WIDTH,
            scroll=True,
            sizing_mode="stretch_height",
        )
        self._sync_options()

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _show_day(self, *_: param.parameterized.Event) -> None:
        self.day_text.object = _day(self.session.day, self.session.days)

    def _show_status(self, *_: param.parameterized.Event) -> None:
        self.status_text.object = _status(self.session.busy, self.session.step_seconds)

    def _on_scenario(self, event: param.parameterized.Event) -> None:
        session, run = self.session, self.session.run

        def change() -> None:
            run.scenario = event.new
            session.agents = agents_text(run.agents)
            self.days_input.value = run.days
            run.setup()

        session.guard(change)

    def _on_play(self, event: param.parameterized.Event) -> None:
        if self.session.syncing:
            return
        if event.new:
            self.session.run.play()
        else:
            self.session.run.pause()

    def _restore_defaults(self) -> None:
        """The run's defaults (:meth:`LiveRun.restore_defaults`), shown in the controls not bound to it."""
        session, run = self.session, self.session.run
        run.restore_defaults()
        session.agents = agents_text(run.agents)
        self.days_input.value = run.days
        self.speed_slider.value = run.speed
        self.frame_slider.value = run.days_per_frame

    def _use_observed(self) -> None:
        run = self.session.run
        scenario = run.scenario_class
        if scenario.default_start is None:
            raise ParamError(f"{scenario.name} has no observed data")
        run.apply_options(scenario().observed_options(scenario.default_start))
        self.session.setup_run()

    # ------------------------------------------------------------------ option controls
    def _sync_options(self) -> None:
        """One control per option of the scenario, grouped by whether it applies live (``session.options``:
        which options are live depends on the model built, so a set-up that changes the grouping rebuilds
        the controls; building forty widgets is slow)."""
        run = self.session.run
        live, reset = [], []
        self._option_widgets = {}
        for name, option in run.options.items():
            widget = _option_widget(name, option)
            widget.param.watch(self._option_handler(name), "value")
            self._option_widgets[name] = widget
            (live if run.is_live(name) else reset).append(_option_view(widget, option))
        self.live_card.objects = live or [pn.pane.Markdown("*(set up the run first)*")]
        self.reset_card.objects = reset
        self.observed_button.visible = run.scenario_class.default_start is not None

    def _option_handler(self, name: str) -> Callable[[param.parameterized.Event], None]:
        def changed(event: param.parameterized.Event) -> None:
            if self.session.syncing:
                return
            self.session.guard(lambda: self.session.run.set_option(name, event.new))

        return changed

    def show_options(self) -> None:
        """The option controls show the run's values (options are not parameters: the polling loop calls
        this while :attr:`Session.syncing`). Text inputs keep what the user types."""
        options = self.session.run.options
        for name, widget in self._option_widgets.items():
            value = options[name].value if name in options else None
            if value is not None and widget.value != value and not isinstance(widget, pn.widgets.TextInput):
                widget.value = value


def _day(day: int, days: int) -> str:
    return f"### Day {day} of {days}"


def _status(busy: str, step_seconds: float) -> str:
    step = f" · last step {1000 * step_seconds:.0f} ms" if step_seconds else ""
    return (busy + "…" if busy else "ready") + step


def _pending(pending: list[str]) -> str:
    return f"Press **Set up / reset** to apply: {', '.join(pending)}" if pending else ""


def _option_widget(name: str, option: Param | Choice) -> pn.widgets.Widget:
    if isinstance(option, Choice):
        return pn.widgets.Select(
            label=name, options=list(option.options), value=option.value, width=290, description=option.doc
        )
    low, high = option.bounds
    end = high if high - low <= 1000 else max(low + 1.0, min(high, 2 * abs(option.value) or high))
    step = _nice_step((end - low) / 200)
    return pn.widgets.EditableFloatSlider(
        label=name, start=low, end=end, step=step, value=option.value, width=265
    )


def _option_view(widget: pn.widgets.Widget, option: Param | Choice) -> pn.viewable.Viewable:
    """The control with its doc, unit and bounds as a tooltip."""
    if isinstance(option, Choice):
        return widget
    low, high = option.bounds
    tip = pn.widgets.TooltipIcon(value=f"{option.doc} [{option.unit}; bounds {low:g} to {high:g}]", width=20)
    return pn.Row(widget, tip, margin=0)


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 0.01
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
