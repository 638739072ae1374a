"""Scenarios: ready-made models, discovered through the ``populace.scenarios`` entry-point group.

``core`` never imports a scenario: packages declare theirs in ``pyproject.toml``::

    [project.entry-points."populace.scenarios"]
    bench-seir = "populace.scenarios.bench_seir:BenchSEIR"
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import torch

from .distributed import Shard
from .model import Model
from .params import Choice, Param, ParamError
from .plugins import did_you_mean, find, installed

if TYPE_CHECKING:
    from .calibrate import Calibration, Stream
    from .optimize import Lever, Objective
    from .synth.recipes import PopulationRecipe

__all__ = [
    "Option",
    "Question",
    "Scenario",
    "ScenarioError",
    "find_scenario",
    "parse_sets",
    "scenarios",
    "tiny_options",
]

Option = Param | Choice
GROUP = "populace.scenarios"


class ScenarioError(LookupError):
    """An unknown scenario name."""


@dataclass(frozen=True)
class Question:
    """A what-if the scenario was built to answer: two settings (``--set`` texts over the user's options),
    each with a name, compared over several seeds (the explorer's *Questions* tab).

    Attributes:
        title: the question in words (``"PCR or antigen testing?"``).
        a, b: ``(name, {option: text})`` of each arm.
        about: one line on what the arms differ in and why it matters.
    """

    title: str
    a: tuple[str, Mapping[str, str]]
    b: tuple[str, Mapping[str, str]]
    about: str = ""


class Scenario(abc.ABC):
    """A model builder with user-facing options (``--set NAME=VALUE`` on the command line)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    default_agents: ClassVar[int]
    default_days: ClassVar[int]
    default_outputs: ClassVar[tuple[str, ...]] = ()
    """Outcomes of ``populace sensitivity`` when ``--outputs`` is not given (:mod:`populace.sensitivity`)."""
    default_start: ClassVar[dt.date | None] = None
    """Calendar date of day 0 for calibration against observed data (``None``: no observed data)."""
    shardable: ClassVar[bool] = False
    """Whether :meth:`build` can build one process's part of a population split over several
    (:mod:`populace.distributed`)."""
    option_groups: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    """The options by theme for a reader (the explorer's control groups, ``populace scenarios NAME``):
    ``{group: {option: plain name}}``. Options left out are shown under "Other", their names in words."""
    questions: ClassVar[tuple[Question, ...]] = ()
    """The scenario's named what-ifs, each two settings to compare over seeds."""
    tiny_sets: ClassVar[tuple[str, ...]] = ()
    """``NAME=VALUE`` overrides for tiny runs (tens of thousands of agents: the every-scenario test and the
    golden baselines), for a scenario whose real seeding would give such a run no epidemic at all."""

    @classmethod
    @abc.abstractmethod
    def options(cls) -> dict[str, Option]:
        """The options and their defaults."""

    @abc.abstractmethod
    def build(
        self,
        agents: int,
        options: Mapping[str, Option],
        *,
        seed: int,
        device: torch.device | str,
        shard: Shard | None = None,
    ) -> Model:
        """The model for ``agents`` agents; ``seed`` drives the random population. With a ``shard`` over
        several processes (only if :attr:`shardable`), the model of this process's agents: the scenario
        divides the shard (:meth:`~populace.distributed.Shard.divide`) where households begin."""

    @classmethod
    def defaults(cls) -> dict[str, Option]:
        """:meth:`options`, each tagged with its name (``Param.option``), so the model tensors built from an
        option can be found from the model's specs."""
        return {name: replace(o, option=name) for name, o in cls.options().items()}

    @classmethod
    def levers(cls) -> dict[str, Lever]:
        """Decisions ``populace optimize`` can learn for this scenario (:mod:`populace.optimize`); none by
        default."""
        return {}

    @classmethod
    def objectives(cls) -> dict[str, Objective]:
        """Outcomes ``populace optimize`` can minimise, by name; none by default."""
        return {}

    def recipe(self, options: Mapping[str, Option]) -> PopulationRecipe | None:
        """The population recipe :meth:`build` draws its agents from with ``options`` (their homes, areas and
        outlines are what the explorer maps), or ``None`` for a population without places on a map."""
        return None

    def observed(self, model: Model, *, agents: int, start: dt.date, days: int) -> list[Stream]:
        """The observed data streams that :meth:`calibration` fits (model ``series``, observed values,
        ``scale`` from model counts to observed ones), for showing beside a run; none by default."""
        return []

    def observed_options(self, start: dt.date) -> dict[str, str]:
        """Option values (``--set`` texts) that reproduce what happened from ``start`` (orders in force, a
        starting point for the fit); applied before the user's ``--set`` by ``populace calibrate``."""
        return {}

    def calibration(
        self, model: Model, *, agents: int, start: dt.date, days: int, streams: Sequence[str] | None
    ) -> Calibration:
        """A :class:`~populace.calibrate.Calibration` of ``model`` (built by :meth:`build` with ``agents``)
        to this scenario's observed data from ``start``; ``streams=None`` takes the default streams."""
        raise ScenarioError(f"{self.name}: this scenario has no observed data to calibrate against")


def scenarios() -> dict[str, type[Scenario]]:
    """Installed scenarios by name."""
    return installed(GROUP)


def find_scenario(name: str) -> type[Scenario]:
    scenario: type[Scenario] = find(GROUP, name, "scenario", ScenarioError)
    return scenario


def tiny_options(scenario: type[Scenario]) -> dict[str, Option]:
    """The options of a tiny test run: the defaults with :attr:`Scenario.tiny_sets` applied."""
    return parse_sets(scenario, scenario.tiny_sets)


def parse_sets(
    scenario: type[Scenario], sets: Sequence[str], start: dt.date | None = None
) -> dict[str, Option]:
    """The scenario's options with ``NAME=VALUE`` overrides applied; :class:`ParamError` names the culprit.
    A day index may be given as a date ``YYYY-MM-DD``, counted from ``start`` (default: the scenario's
    ``default_start``, its day 0)."""
    start = start or scenario.default_start
    options = scenario.defaults()
    for item in sets:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"--set: expected NAME=VALUE, got {item!r}")
        if name not in options:
            hint = did_you_mean(name, options)
            raise ParamError(
                f"--set {name}: unknown parameter of {scenario.name}{hint}; known: {', '.join(options)}"
            )
        options[name] = options[name].parse(text.strip(), f"--set {name}", start)
    return options
