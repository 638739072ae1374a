"""The *About* tab: :class:`AboutView` — the scenario's description and a table of its options."""

from __future__ import annotations

import importlib
from typing import Any

import panel as pn

from populace import Param

from ..live import LiveRun
from .session import Session

__all__ = ["AboutView"]


class AboutView(pn.viewable.Viewer):
    """The scenario's docs and options (redrawn when the option controls are, ``Session.options``)."""

    def __init__(self, session: Session, **params: Any) -> None:
        super().__init__(**params)
        self.session = session
        run = session.run
        self.about_text = pn.pane.Markdown(
            pn.bind(lambda _: _about(run), self.session.param.options), sizing_mode="stretch_width"
        )
        self.layout = pn.Column(self.about_text, sizing_mode="stretch_width", scroll=True)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout


def _about(run: LiveRun) -> str:
    cls = run.scenario_class
    doc = cls.__doc__ or ""
    module_doc = importlib.import_module(cls.__module__).__doc__ or ""
    rows = ["| option | value | unit | bounds | applies | about |", "|---|---|---|---|---|---|"]
    for name, option in run.options.items():
        applies = "live" if run.is_live(name) else "after reset"
        if isinstance(option, Param):
            bounds = f"{option.bounds[0]:g} – {option.bounds[1]:g}"
            rows.append(
                f"| {name} | {option.value:g} | {option.unit} | {bounds} | {applies} | {option.doc} |"
            )
        else:
            rows.append(
                f"| {name} | {option.value} | | {', '.join(option.options)} | {applies} | {option.doc} |"
            )
    return f"## {cls.name}\n\n{cls.summary}\n\n{doc}\n\n{module_doc}\n\n### Options\n\n" + "\n".join(rows)
