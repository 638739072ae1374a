"""The *Your risk* tab: :class:`RiskView` — "How can I lower my risk next week?" (:mod:`populace.risk`).

Two halves, as in ``populace risk``:

* **The forecast** (public, the same for everyone): one click re-runs the scenario with the run's current
  options, seed and the tab's size from day 0 to 7 days past the day shown, on the session's job thread
  (:func:`~..jobs.risk_forecast`), and keeps the mean force of infection in each setting by area and
  household size: a few hundred numbers.
* **Your week** (private): where you live, how many people share your home, how many days a week you go to
  each setting, whether you wear a mask. The answer — your chance of infection over the week as planned and
  under the usual changes (work from home, skip the gym and shops, wear a mask) — is computed from the
  forecast in this session as soon as a control changes (:func:`populace.risk.answer`, microseconds). The
  profile lives only in this tab's controls: it is not written to the run (which other sessions may share),
  to a job, a log or a file, and the forecast does not depend on it. With ``populace explore`` on your own
  computer the session is on your computer; on a shared server the controls' values reach the server's
  session for this page, like every control, and go no further.
"""

from __future__ import annotations

from typing import Any

import panel as pn

from populace import ParamError
from populace.risk import MAX_SIZE, Profile, RiskTable, answer

from .. import jobs
from .session import Session, count

__all__ = ["SETTING_WORDS", "RiskView"]

SETTING_WORDS = {
    "work": "Days a week at work",
    "school": "Days a week at school",
    "community": "Days a week out: gym, shops, transit, visits",
}
"""The day sliders' labels, by setting (others: "Days a week in SETTING")."""

PLANNED = {"work": 5, "school": 0, "community": 3}
"""The sliders' first positions (a commuter who goes out three times a week)."""


class RiskView(pn.viewable.Viewer):
    """The forecast button, the profile's controls and the answer (see module docs)."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        self.table: RiskTable | None = None
        self.rows: list[dict[str, Any]] = []
        """The answer shown: one row per choice (:func:`populace.risk.answer`)."""
        self.agents_input = pn.widgets.TextInput(label="Agents", value="20_000", width=110)
        self.button = pn.widgets.Button(label="Forecast next week", color="primary", width=200)
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.intro = pn.pane.Markdown(
            "### How can I lower my risk next week?\n"
            "First forecast the week after the day shown: the scenario with your current options, the "
            "same for everyone. Then say what your week looks like. Your answers stay in this page's "
            "session: they are not part of the forecast or the run, and are not saved or sent on.",
            sizing_mode="stretch_width",
        )
        self.forecast_text = pn.pane.Markdown("*No forecast yet.*", sizing_mode="stretch_width")
        self.area = pn.widgets.Select(label="Where you live", options=[], width=200, disabled=True)
        self.household = pn.widgets.IntInput(
            label=f"People in your home, you included ({MAX_SIZE} = {MAX_SIZE} or more)",
            value=3,
            start=1,
            end=MAX_SIZE,
            width=200,
            disabled=True,
        )
        self.mask = pn.widgets.Checkbox(label="I wear a mask outside my home", value=False, disabled=True)
        self.days: dict[str, pn.widgets.IntSlider] = {}
        self.day_sliders = pn.Column(sizing_mode="stretch_width")
        self.answer_pane = pn.pane.Markdown("", sizing_mode="stretch_width")
        for widget in (self.area, self.household, self.mask):
            widget.param.watch(lambda _: self._answer(), "value")
        self.button.on_click(lambda _: session.guard(self._start, self.alert))
        session.param.watch(lambda _: self._forget(), "scenario")
        self.layout = pn.Column(
            self.intro,
            pn.Row(self.agents_input, self.button),
            self.alert,
            self.forecast_text,
            pn.Row(
                pn.Column(self.area, self.household, self.day_sliders, self.mask, width=340),
                self.answer_pane,
            ),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    # ------------------------------------------------------------------ the forecast (public)
    def _start(self) -> None:
        run = self.session.run
        agents = count(str(self.agents_input.value), "risk agents")
        first_day = int(self.session.day)
        fitted = run.fitted
        with run.snapshot() as (scenario, options, _, _days, seed):

            def work() -> RiskTable:
                return jobs.risk_forecast(
                    scenario, options, agents=agents, seed=seed, first_day=first_day, fitted=fitted
                )

            self.session.submit("forecasting next week", work, self.show_forecast, self.alert)

    def show_forecast(self, table: RiskTable) -> None:
        """Take a new forecast: the controls follow its areas and settings, the answer is recomputed."""
        if not table.areas:
            raise ParamError("risk: the forecast has no areas")
        self.table = table
        self.forecast_text.object = (
            f"Forecast for days {table.first_day + 1}–{table.first_day + 7} of {table.scenario} "
            f"({table.agents:,} agents, seed {table.seed}); masks outside the home cut what the wearer "
            f"catches by {table.mask_efficacy:.0%}."
        )
        with pn.io.hold():
            area = self.area.value if self.area.value in table.areas else table.areas[0]
            self.area.options = list(table.areas)
            self.area.value = area
            kept = {name: slider.value for name, slider in self.days.items()}
            self.days = {}
            for name in table.force:
                slider = pn.widgets.IntSlider(
                    label=SETTING_WORDS.get(name, f"Days a week in {name}"),
                    start=0,
                    end=7,
                    value=kept.get(name, PLANNED.get(name, 0)),
                    width=300,
                )
                slider.param.watch(lambda _: self._answer(), "value")
                self.days[name] = slider
            self.day_sliders.objects = list(self.days.values())
            for widget in (self.area, self.household, self.mask):
                widget.disabled = False
        self._answer()

    def _forget(self) -> None:
        """A new scenario: its forecast is not this one's."""
        self.table = None
        self.rows = []
        self.forecast_text.object = "*No forecast yet.*"
        self.answer_pane.object = ""
        self.day_sliders.objects = []
        self.days = {}
        for widget in (self.area, self.household, self.mask):
            widget.disabled = True

    # ------------------------------------------------------------------ your week (private, here only)
    def profile(self) -> Profile:
        """The week the controls describe."""
        return Profile(
            str(self.area.value),
            int(self.household.value or 1),
            {name: float(slider.value or 0) for name, slider in self.days.items()},
            bool(self.mask.value),
        )

    def _answer(self) -> None:
        if self.table is None or self.area.value not in self.table.areas:
            return
        self.rows = answer(self.table, self.profile())
        lines = ["| Your week | Chance of catching it | Change |", "|---|---:|---:|"]
        for row in self.rows:
            change = "" if row["choice"] == "as planned" else f"{row['change'] * 100:+.2f} points"
            lines.append(f"| {row['choice']} | {row['probability'] * 100:.2f}% | {change} |")
        best = min(self.rows, key=lambda r: r["probability"])
        advice = (
            "Nothing on the list lowers it: your risk is at home."
            if best["choice"] == "as planned"
            else f"Lowest: **{best['choice']}**."
        )
        self.answer_pane.object = "\n".join(lines) + f"\n\n{advice}"
