"""The *Questions* tab: :class:`QuestionsView` — the scenario's named what-ifs (:attr:`Scenario.questions`:
for nyc-covid PCR vs antigen testing, a $500 stimulus to low-income households, delaying the second dose)
run side by side over several seeds with one click, each as curves with bands over seeds and a paragraph
reading the result (:func:`~..jobs.reading`)."""

from __future__ import annotations

from typing import Any

import holoviews as hv
import numpy as np
import panel as pn

from populace import ParamError

from .. import jobs
from ..render import colour
from .session import Session, count

__all__ = ["QuestionsView"]

PANEL_WIDTH = 300


class QuestionsView(pn.viewable.Viewer):
    """One click runs every question of the scenario on the session's job thread."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        self.agents_input = pn.widgets.TextInput(label="Agents", value="20_000", width=110)
        self.seeds_input = pn.widgets.IntInput(label="Seeds", value=3, start=1, end=20, width=80)
        self.button = pn.widgets.Button(label="Answer every question", color="primary", width=220)
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.intro = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.answers = pn.FlexBox(sizing_mode="stretch_width")
        self.button.on_click(lambda _: session.guard(self._start, self.alert))
        session.param.watch(lambda _: self._show_questions(), "scenario")
        self._show_questions()
        self.layout = pn.Column(
            self.intro,
            pn.Row(self.agents_input, self.seeds_input, self.button),
            self.alert,
            self.answers,
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def _show_questions(self) -> None:
        scenario = self.session.run.scenario_class
        questions = scenario.questions
        self.button.disabled = not questions
        if not questions:
            self.intro.object = f"*{scenario.name} names no questions.*"
            self.answers.objects = []
            return
        listed = "\n".join(f"* **{q.title}** {q.a[0]} or {q.b[0]}" for q in questions)
        self.intro.object = (
            f"The questions {scenario.name} was built to answer, each as two settings over your current "
            f"options, run with the same seeds (days: the run's).\n\n{listed}"
        )
        self.answers.objects = []

    def _start(self) -> None:
        run = self.session.run
        agents = count(self.agents_input.value, "questions agents")
        seeds = tuple(range(int(self.seeds_input.value)))
        questions = run.scenario_class.questions
        if not questions:
            raise ParamError(f"questions: {run.scenario} names none")
        job = self.session.job
        fitted = run.fitted
        with run.snapshot() as (scenario, options, _, days, _seed):
            runs = 2 * len(seeds) * len(questions)

            def work() -> list[jobs.Answer]:
                out = []
                for i, question in enumerate(questions):

                    def progress(done: int, total: int, i: int = i) -> None:
                        job.progress = (i * total + done) / runs
                        job.status = f"answering questions: run {i * total + done} of {runs}"

                    out.append(
                        jobs.answer(
                            scenario,
                            options,
                            question,
                            agents=agents,
                            days=days,
                            seeds=seeds,
                            fitted=fitted,
                            on_run=progress,
                        )
                    )
                return out

            self.session.submit(f"answering {len(questions)} questions", work, self._show, self.alert)

    def _show(self, answers: list[jobs.Answer]) -> None:
        self.answers.objects = [_answer_view(answer) for answer in answers]


def _answer_view(answer: jobs.Answer) -> pn.viewable.Viewable:
    """The question's new infections a day in both arms (mean over seeds, band lowest–highest) and the
    reading."""
    name = "new_infections"
    plots = []
    for i, arm in enumerate(answer.names):
        values = answer.series[arm].get(name)
        if values is None:
            continue
        days = np.arange(values.shape[1])
        tint = colour("", i)
        plots.append(
            hv.Area((days, values.min(0), values.max(0)), "day", ["low", "high"], label=arm).opts(
                color=tint, alpha=0.25, line_alpha=0
            )
        )
        plots.append(hv.Curve((days, values.mean(0)), "day", "infections a day", label=arm).opts(color=tint))
    figure = hv.Overlay(plots).opts(
        width=PANEL_WIDTH,
        height=240,
        legend_position="bottom",
        legend_cols=1,
        ylabel="infections a day",
        title="new infections a day (band: over seeds)",
        fontsize={"title": 9},
        toolbar=None,
    )
    return pn.Column(
        pn.pane.Markdown(f"#### {answer.question.title}", margin=(0, 5)),
        pn.pane.HoloViews(figure, width=PANEL_WIDTH + 10),
        pn.pane.Markdown(jobs.reading(answer), width=PANEL_WIDTH, styles={"font-size": "12px"}),
        width=PANEL_WIDTH + 20,
    )
