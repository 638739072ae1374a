"""The sidebar: :class:`Controls` — scenario, size, seed, set-up/reset, step, play/pause, the day counter,
the status and error lines, playback speed, and one control per scenario option with its plain name, grouped
by theme (the scenario's ``option_groups``: disease, closures, masks, testing...). Options that need a reset
say so in their label; day options are a day input with a "never" choice."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import panel as pn
import param

from populace import Choice, Param, ParamError
from populace.glossary import option_groups, plain

from .session import Session, agents_text

__all__ = ["SIDEBAR_WIDTH", "Controls"]

SIDEBAR_WIDTH = 300
WIDGET_WIDTH = 250
NEVER = 10_000.0
"""A day option at this value (its upper bound) means the event never happens (``layers/npi.py`` ``END``)."""
_AGENTS_DOC = "population size: 100000, 1e6, 8.4M or 100k (a reset builds it; large sizes take a while)"


class Controls(pn.viewable.Viewer):
    """The sidebar of one session (see module docs)."""

    def __init__(self, session: Session, *, shared: bool = False, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        run = session.run
        self.scenario_select = pn.widgets.Select.from_param(
            session.param.scenario, label="Scenario", width=270
        )
        self.agents_input = pn.widgets.TextInput.from_param(
            session.param.agents, label="Agents", width=130, description=_AGENTS_DOC
        )
        self.seed_text = pn.pane.Markdown(
            pn.bind(lambda seed: f"seed **{seed}**", session.param.seed), width=130, margin=(18, 5, 0, 5)
        )
        self.setup_button = pn.widgets.Button(label="Set up / reset", color="primary", width=130)
        self.seed_button = pn.widgets.Button(label="New seed", width=130)
        self.defaults_button = pn.widgets.Button(
            label="Restore defaults",
            width=130,
            description="the scenario's default options, size, seed and speed; then a set-up",
        )
        self.shared_text = pn.pane.Alert(
            f"**One run shared by all visitors.** Everyone on this page watches the same run of "
            f"{run.agents:,} agents, and any visitor drives it: a reset, a slider or Play here changes it "
            f"for everyone.",
            alert_type="info",
            width=270,
            visible=shared,
        )
        self.step_button = pn.widgets.Button(label="Step", width=80)
        self.play_toggle = pn.widgets.Toggle.from_param(
            session.param.playing,
            label=pn.bind(lambda playing: "❚❚ Pause" if playing else "▶ Play", session.param.playing),
            color="success",
            width=80,
        )
        self.days_input = pn.widgets.IntInput(
            label="Days", value=run.days, start=1, end=3650, width=80, margin=(-14, 5, 5, 5)
        )
        self.speed_slider = pn.widgets.FloatSlider(
            label="Speed (days/s, 0 = fastest)",
            start=0,
            end=50,
            step=0.5,
            value=run.speed,
            width=WIDGET_WIDTH,
        )
        self.frame_slider = pn.widgets.IntSlider(
            label="Days per redraw", start=1, end=30, value=run.days_per_frame, width=WIDGET_WIDTH
        )
        # the day and the status change every frame: plain texts set by watchers (below). A Markdown pane
        # took 1.2 ms a change (its text rendered and its styles made again), a StaticText 0.2 ms: with 20
        # sessions drawing 10 frames a second, 0.4 s of every second
        self.day_text = pn.widgets.StaticText(
            value=_day(session.day, session.days),
            width=270,
            margin=(0, 5),
            styles={"font-size": "1.17em", "font-weight": "bold"},
        )
        self.status_text = pn.widgets.StaticText(
            value=_status(session.busy, session.step_seconds),
            width=270,
            styles={"color": "#555"},
            margin=(0, 5),
        )
        self.alert = pn.pane.Alert(
            session.param.error,
            visible=pn.bind(bool, session.param.error),
            alert_type="danger",
            width=270,
        )
        self.pending_text = pn.pane.Alert(
            pn.bind(_pending, session.param.pending),
            visible=pn.bind(bool, session.param.pending),
            alert_type="warning",
            width=270,
        )
        self.observed_button = pn.widgets.Button(
            label="Use what happened (orders, start)",
            width=270,
            visible=False,
            description="the orders in force and the start of the observed data: sets closures, beta and "
            "the fatality scale, then a reset",
        )
        self.drawn_day = pn.widgets.IntInput(value=-1, visible=False)
        """The day drawn, sent with the day counter (:meth:`_show_day`)."""
        self.shown_day = pn.widgets.IntInput(value=-1, visible=False)
        """The day the browser shows while playing: the page copies :attr:`drawn_day` here when it arrives,
        so that a playing run waits for the browser, not only for the server's drawing, and Pause stops on
        the day pressed instead of days later (:meth:`Explorer.on_shown_day`)."""
        # only while the page plays: once Pause is clicked the page stops reporting, so the run stops on
        # the day the page showed (or the one under way) however long the click takes to reach the server
        self.drawn_day.jscallback(
            value="if (play.active) { shown.value = cb_obj.value; }",
            args={"shown": self.shown_day, "play": self.play_toggle},
        )
        self.options_alert = pn.pane.Alert("", alert_type="danger", width=270, visible=False)
        """Errors of the option controls, shown above them."""
        self.playback_card = pn.Card(
            self.speed_slider, self.frame_slider, title="Playback", width=280, collapsed=True
        )
        self.option_cards = pn.Column(margin=0)
        self._option_widgets: dict[str, Any] = {}

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
            pn.pane.Markdown("### Populace Explorer", margin=(0, 5)),
            self.shared_text,
            self.scenario_select,
            pn.Row(self.agents_input, self.seed_text),
            pn.Row(self.setup_button, self.seed_button),
            pn.Row(self.defaults_button),
            pn.Row(self.step_button, self.play_toggle, self.days_input),
            self.day_text,
            self.drawn_day,
            self.shown_day,
            self.status_text,
            self.alert,
            self.pending_text,
            self.observed_button,
            self.playback_card,
            pn.pane.Markdown("**Options** (hover ? for what each means)", margin=(5, 5, 0, 5)),
            self.options_alert,
            self.option_cards,
            width=SIDEBAR_WIDTH,
            scroll=True,
            sizing_mode="stretch_height",
        )
        self._sync_options()

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _show_day(self, *_: param.parameterized.Event) -> None:
        self.day_text.value = _day(self.session.day, self.session.days)
        self.drawn_day.value = self.session.day

    def _show_status(self, *_: param.parameterized.Event) -> None:
        self.status_text.value = _status(self.session.busy, self.session.step_seconds)

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
        """One control per option of the scenario, with its plain name, in one card per theme (the
        scenario's ``option_groups``); an option that needs a reset says so. Which options are live depends
        on the model built, so a set-up that changes that rebuilds the controls (``session.options``)."""
        run = self.session.run
        scenario = run.scenario_class
        start = scenario.default_start
        self._option_widgets = {}
        cards = []
        for i, (group, labels) in enumerate(option_groups(scenario.option_groups, list(run.options)).items()):
            views = []
            for name, label in labels.items():
                option = run.options[name]
                live = run.is_live(name) or run.model is None
                widget = _option_widget(label if live else f"{label} (after a reset)", option, start)
                widget.param.watch(self._option_handler(name), "value")
                self._option_widgets[name] = widget
                views.append(_option_view(widget, option))
            cards.append(_lazy_card(group, views, collapsed=i > 0))
        self.option_cards.objects = cards
        self.observed_button.visible = start is not None

    def _option_handler(self, name: str) -> Callable[[param.parameterized.Event], None]:
        def changed(event: param.parameterized.Event) -> None:
            if self.session.syncing:
                return
            self.session.guard(lambda: self.session.run.set_option(name, event.new), self.options_alert)

        return changed

    def show_options(self) -> None:
        """The option controls show the run's values (options are not parameters: the polling loop calls
        this while :attr:`Session.syncing`). Text inputs keep what the user types."""
        options = self.session.run.options
        for name, widget in self._option_widgets.items():
            value = options[name].value if name in options else None
            if value is not None and widget.value != value:
                widget.value = value


def _day(day: int, days: int) -> str:
    return f"Day {day} of {days}"


def _status(busy: str, step_seconds: float) -> str:
    step = f" · last step {1000 * step_seconds:.0f} ms" if step_seconds else ""
    return (busy + "…" if busy else "ready") + step


def _pending(pending: list[str]) -> str:
    return f"Press **Set up / reset** to apply: {', '.join(pending)}" if pending else ""


def _lazy_card(title: str, views: list[pn.viewable.Viewable], *, collapsed: bool) -> pn.Card:
    """A card whose controls reach the page when it is first opened: forty controls drawn at once cost
    their models and styles in every page and notebook (1,322 inline stylesheets, 3 MB, in a saved
    notebook), and most cards stay closed."""
    card = pn.Card(*([] if collapsed else views), title=title, width=280, collapsed=collapsed, margin=(2, 5))
    if collapsed:

        def fill(event: param.parameterized.Event) -> None:
            if not event.new and not card.objects:
                card.objects = views

        card.param.watch(fill, "collapsed")
    return card


def _option_widget(label: str, option: Param | Choice, start: dt.date | None) -> Any:
    if isinstance(option, Choice):
        return pn.widgets.Select(
            label=label, options=list(option.options), value=option.value, width=WIDGET_WIDTH
        )
    low, high = option.bounds
    if option.unit == "day":
        return DayInput(name=label, value=option.value, low=low, high=high, start=start)
    end = high if high - low <= 1000 else max(low + 1.0, min(high, 2 * abs(option.value) or high))
    step = _nice_step((end - low) / 200)
    return pn.widgets.EditableFloatSlider(
        label=label, start=low, end=end, step=step, value=option.value, width=WIDGET_WIDTH - 20
    )


def _option_view(widget: Any, option: Param | Choice) -> pn.viewable.Viewable:
    """The control with its doc (and unit and bounds) as a tooltip."""
    if isinstance(option, Choice):
        tip = plain(option.doc)
    else:
        low, high = option.bounds
        never = " (never)" if option.unit == "day" and high >= NEVER else ""
        tip = f"{plain(option.doc)} [{option.unit}; {low:g} to {high:g}{never}]"
    return pn.Row(widget, pn.widgets.TooltipIcon(value=tip, width=20), margin=0)


class DayInput(pn.viewable.Viewer):
    """A day option: a whole day of the run, with the date it falls on when the scenario has a start date,
    and a "never" box where the option's upper bound means never (:data:`NEVER`). ``value`` is the option's
    value (the upper bound when never)."""

    value = param.Number(default=NEVER)

    def __init__(
        self, *, name: str, value: float, low: float, high: float, start: dt.date | None, **params: Any
    ) -> None:
        super().__init__(value=value, **params)
        self.high, self.start = high, start
        self.never = high >= NEVER and value >= high
        self.day = pn.widgets.IntInput(
            label=name,
            value=int(low if self.never else value),
            start=int(low),
            end=int(min(high, 3650)),
            width=120,
            disabled=self.never,
        )
        self.never_box = pn.widgets.Checkbox(
            label="never", value=self.never, width=60, margin=(28, 5, 0, 5), visible=high >= NEVER
        )
        self.date_text = pn.pane.Markdown(self._date(), width=70, margin=(24, 0, 0, 0))
        self.day.param.watch(lambda _: self._from_inputs(), "value")
        self.never_box.param.watch(lambda _: self._from_inputs(), "value")
        self.param.watch(lambda _: self._to_inputs(), "value")
        self.layout = pn.Row(self.day, self.never_box, self.date_text, margin=0, width=WIDGET_WIDTH)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _date(self) -> str:
        if self.never_box.value or self.start is None or self.day.value is None:
            return ""
        return f"{self.start + dt.timedelta(days=int(self.day.value)):%d %b %Y}"

    def _from_inputs(self) -> None:
        never = bool(self.never_box.value)
        self.day.disabled = never
        self.date_text.object = self._date()
        self.value = self.high if never else float(self.day.value or 0)

    def _to_inputs(self) -> None:
        never = self.high >= NEVER and self.value >= self.high
        if never != self.never_box.value:
            self.never_box.value = never
        if not never and self.day.value != int(self.value):
            self.day.value = int(self.value)


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 0.01
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
