"""Words an analyst reads: a label, a one-line explanation and a unit for every stage code, series name,
metric and option, from one place for the CLI (``populace scenarios NAME``), the API and the explorer.

Names are the models' own (``MH``, ``new_admissions_by_borough``, ``cost_tests_pcr``); the words follow the
layers' docstrings (``layers/covid.py`` stages, ``layers/testing.py`` series...). A name this module does not
know still gets words (its underscores as spaces), never an error.

>>> term("MH").label
'symptomatic, will be admitted'
>>> term("new_deaths_by_borough").label
'new deaths by borough'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "METRICS",
    "STAGES",
    "Term",
    "grouped_name",
    "option_groups",
    "option_label",
    "outcome",
    "plain",
    "term",
]


@dataclass(frozen=True)
class Term:
    """What a name means.

    Attributes:
        label: a few words to show in its place (a legend, an axis, a bar).
        about: one line saying what it counts or measures.
        unit: its unit (``"agents"``, ``"agents per day"``, ``"$ per day"``...), ``""`` when it has none.
    """

    label: str
    about: str
    unit: str = ""


STAGES: dict[str, Term] = {
    "S": Term("susceptible", "never infected: can catch the disease", "agents"),
    "E": Term("exposed", "infected, not yet infectious (the latent period)", "agents"),
    "I": Term("infectious", "infected and able to infect others", "agents"),
    "P": Term("presymptomatic", "infectious, symptoms still to come", "agents"),
    "A": Term("asymptomatic", "infectious, and will never have symptoms", "agents"),
    "M": Term("symptomatic, mild", "infectious with symptoms, will recover without hospital", "agents"),
    "MH": Term("symptomatic, will be admitted", "infectious with symptoms, heading for hospital", "agents"),
    "H": Term("in hospital", "admitted, will recover", "agents"),
    "HD": Term("in hospital, will die", "admitted, will die in hospital", "agents"),
    "R": Term("recovered", "no longer infectious, immune", "agents"),
    "D": Term("dead", "died of the disease (cumulative)", "agents"),
}
"""Disease stage codes (``layers/covid.py``, ``layers/seir.py``, ``layers/sirs.py`` ``Stage``)."""

METRICS: dict[str, Term] = {
    "ND": Term(
        "normalised deviation",
        "Σ|model − observed| ÷ Σ|observed| over 7-day averages: 0 is a perfect fit, 1 is as far off as a "
        "model that predicted nothing",
    ),
    "MAE": Term("mean absolute error", "mean |model − observed| per day and group, 7-day averages"),
    "Rt": Term(
        "reproduction number",
        "new infections each infectious agent causes at today's conditions (instantaneous, Fraser 2007)",
        "infections per infection",
    ),
}
"""Calibration metrics and derived quantities."""

_SERIES: dict[str, Term] = {
    "infectious": Term("infectious", "agents who can infect others today (all infectious stages)", "agents"),
    "hospitalised": Term("in hospital", "agents in hospital today", "agents"),
    "new_infections": Term("new infections", "agents infected today", "agents per day"),
    "new_symptomatic": Term("new symptomatic", "agents whose symptoms began today", "agents per day"),
    "new_admissions": Term("new admissions", "agents admitted to hospital today", "agents per day"),
    "new_deaths": Term("new deaths", "agents who died today", "agents per day"),
    "expected_deaths": Term(
        "expected deaths",
        "deaths to come from today's new symptomatic agents, in expectation (their chances summed)",
        "agents per day",
    ),
    "Rt": METRICS["Rt"],
    "work_attendance_low_income": Term(
        "low-income workers at work", "share of low-income on-site workers who went to work today", "share"
    ),
    "work_attendance_other": Term(
        "other workers at work", "share of other on-site workers who went to work today", "share"
    ),
    "isolating_symptomatic": Term(
        "symptomatic, staying home", "symptomatic agents who chose to isolate today", "agents"
    ),
    "p_work": Term(
        "chance of going to work", "each archetype's probability of going to work today", "probability"
    ),
    "cost_stimulus": Term("stimulus paid", "dollars of stimulus paid out today", "$ per day"),
    "cost_vaccination": Term("vaccination cost", "dollars spent on vaccine doses today", "$ per day"),
    "schools_closed": Term("schools closed", "1 while schools are closed, else 0", "on/off"),
    "workplaces_closed": Term("workplaces closed", "1 while the work closure is on, else 0", "on/off"),
    "mask_wearers": Term("mask wearers", "agents wearing a mask today", "agents"),
    "first_doses": Term("first doses", "first vaccine doses given today", "doses per day"),
    "second_doses": Term("second doses", "second vaccine doses given today", "doses per day"),
    "vaccinated": Term("vaccinated (one dose)", "agents with at least one dose", "agents"),
    "fully_vaccinated": Term("fully vaccinated", "agents with both doses", "agents"),
    "wild_pressure": Term("wild-bird pressure", "hazard of infection from wild birds, by state", "per day"),
    "farms_infected": Term("farms infected", "farms with infected flocks today", "farms"),
    "farms_depopulated": Term("farms depopulated", "farms culled so far", "farms"),
    "new_farm_infections": Term("new farm infections", "farms infected today", "farms per day"),
    "detections": Term("farm detections", "infected farms detected today", "farms per day"),
    "birds_culled": Term("birds culled", "birds culled today", "birds per day"),
}

_TESTS = {"pcr": "PCR", "antigen": "antigen"}
_PATTERNS: tuple[tuple[str, Term], ...] = (
    (r"tests_(\w+)", Term("{k} tests", "{k} tests taken today", "tests per day")),
    (r"detected_(\w+)", Term("{k} positives", "infections detected by {k} tests today", "agents per day")),
    (r"cost_tests_(\w+)", Term("{k} test cost", "dollars spent on {k} tests today", "$ per day")),
    (
        r"home_(\w+)",
        Term("home after {k} testing", "agents isolating or in quarantine after {k} testing", "agents"),
    ),
    (r"(\w+)_supply", Term("{k} supply", "{k} supply relative to normal", "relative to normal")),
    (r"(\w+)_price", Term("{k} price", "mean {k} price over the markets", "$")),
    (
        r"(\w+)_consumer_cost",
        Term("{k} consumer cost", "extra dollars consumers pay for {k} today", "$ per day"),
    ),
    (r"(\w+)_lost_value", Term("{k} lost value", "value of the {k} supply lost today", "$ per day")),
    (r"cost_(\w+)", Term("{k} cost", "dollars spent on {k} today", "$ per day")),
)
_UPPER = {"pcr": "PCR", "nyc": "NYC", "ifr": "IFR", "npi": "NPI", "rt": "Rt"}


def term(name: str) -> Term:
    """The words for ``name``: a stage code, a series (``new_deaths``, ``detected_pcr_by_age``, a prefixed
    one such as ``farm_S``), a metric (``ND``) or anything else (its underscores as spaces)."""
    if name in STAGES:
        return STAGES[name]
    if name in METRICS:
        return METRICS[name]
    if name in _SERIES:
        return _SERIES[name]
    base, by, group = name.partition("_by_")
    if by and base:
        inner = term(base)
        return Term(f"{inner.label} by {_words(group)}", f"{inner.about}, by {_words(group)}", inner.unit)
    for pattern, words in _PATTERNS:
        match = re.fullmatch(pattern, name)
        if match:
            k = _TESTS.get(match.group(1), _words(match.group(1)))
            return Term(words.label.format(k=k), words.about.format(k=k), words.unit)
    head, _, rest = name.partition("_")
    if rest and (rest in STAGES or rest in _SERIES):  # a layer's prefix (SEIR(prefix="farm_"))
        inner = term(rest)
        return Term(f"{_words(head)}: {inner.label}", inner.about, inner.unit)
    return Term(_words(name), "")


def outcome(name: str) -> Term:
    """The words for a sensitivity outcome (:class:`populace.sensitivity.Output`): ``total:new_deaths`` →
    "deaths (total over the run)" in agents, ``peak:hospitalised`` → "peak in hospital" in agents."""
    kind, _, series = name.partition(":")
    if not series:
        return term(name)
    words = term(series)
    unit = words.unit.removesuffix(" per day")
    if kind == "total":
        label = words.label.removeprefix("new ")
        return Term(f"{label} (total)", f"{words.about.replace(' today', '')}, summed over the run", unit)
    if kind == "peak":
        return Term(f"peak {words.label}", f"the highest daily value of: {words.about}", words.unit)
    return Term(f"{kind} {words.label}", words.about, words.unit)


def option_label(name: str) -> str:
    """An option's name in words: ``school_close`` → "school close", ``pcr_delay`` → "PCR delay"."""
    return _words(name)


def _words(name: str) -> str:
    return " ".join(_UPPER.get(w, w) for w in name.split("_"))


def grouped_name(groups: Mapping[str, Mapping[str, str]], option: str) -> str:
    """The plain name a scenario's ``option_groups`` give ``option``; ``""`` where they leave it out."""
    return next((labels[option] for labels in groups.values() if option in labels), "")


def option_groups(groups: Mapping[str, Mapping[str, str]], names: list[str]) -> dict[str, dict[str, str]]:
    """``names`` (a scenario's options) by theme with plain names: the scenario's ``option_groups`` in
    their order, then "Other" for the options they leave out (their names in words)."""
    out: dict[str, dict[str, str]] = {}
    for group, labels in groups.items():
        chosen = {name: label for name, label in labels.items() if name in names}
        if chosen:
            out[group] = chosen
    grouped = {name for labels in out.values() for name in labels}
    rest = {name: option_label(name) for name in names if name not in grouped}
    if rest:
        out["Other"] = rest
    return out


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj):`~?([^`]+)`")


def plain(text: str) -> str:
    """Docstring text for a reader: Sphinx roles as their last name (``:class:`~.x.Importation``` →
    ``Importation``), double backquotes as single, and no pointers to the project's issues."""
    text = _ROLE.sub(lambda m: "`" + m.group(1).rsplit(".", 1)[-1].rstrip("()") + "`", text)
    text = text.replace("``", "`")
    return re.sub(r"\s*\((?:see )?issues? \d+[^)]*\)", "", text)
