"""The *About* tab: :class:`AboutView` — the scenario's description and a table of its options."""

from __future__ import annotations

import importlib
from typing import Any

import panel as pn

from populace import Param, Scenario
from populace.glossary import option_groups, plain, term

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
    """The scenario in words: its summary and docs (the model's docs only for the scenario that defines
    it: the classroom reuses nyc-covid's model, whose module docs speak of NYC), its options by theme, and
    what its stages and series mean (:mod:`populace.glossary`)."""
    cls = run.scenario_class
    docs = [plain(cls.__doc__ or "")]
    defined_here = not any(
        issubclass(base, Scenario) and base is not Scenario and base.__module__ == cls.__module__
        for base in cls.__mro__[1:]
    )
    if defined_here:
        docs.append(plain(importlib.import_module(cls.__module__).__doc__ or ""))
    out = [f"## {cls.name}", cls.summary, *docs, "### Options"]
    for group, labels in option_groups(cls.option_groups, list(run.options)).items():
        rows = [
            f"**{group}**",
            "",
            "| option | value | unit | range | applies | about |",
            "|---|---|---|---|---|---|",
        ]
        for name, label in labels.items():
            option = run.options[name]
            applies = "live" if run.is_live(name) else "after a reset"
            if isinstance(option, Param):
                bounds = f"{option.bounds[0]:g} – {option.bounds[1]:g}"
                value, unit = f"{option.value:g}", option.unit
            else:
                bounds, value, unit = ", ".join(option.options), str(option.value), ""
            rows.append(
                f"| {label} (`{name}`) | {value} | {unit} | {bounds} | {applies} | {plain(option.doc)} |"
            )
        out.append("\n".join(rows))
    frame = run.frame
    if frame.stage_names:
        rows = ["| code | stage | meaning |", "|---|---|---|"]
        rows += [f"| {code} | {term(code).label} | {term(code).about} |" for code in frame.stage_names]
        out += ["### Disease stages", "\n".join(rows)]
    if frame.names():
        rows = ["| series | meaning | unit |", "|---|---|---|"]
        rows += [f"| {term(n).label} (`{n}`) | {term(n).about} | {term(n).unit} |" for n in frame.names()]
        out += ["### Series", "\n".join(rows)]
    return "\n\n".join(d for d in out if d.strip())
