"""Scenarios: ready-made models, discovered through the ``populace.scenarios`` entry-point group.

``core`` never imports a scenario: packages declare theirs in ``pyproject.toml``::

    [project.entry-points."populace.scenarios"]
    bench-seir = "populace.scenarios.bench_seir:BenchSEIR"
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch

from .model import Model
from .params import Choice, Param, ParamError
from .plugins import did_you_mean, find, installed

__all__ = ["Option", "Scenario", "ScenarioError", "find_scenario", "parse_sets", "scenarios"]

Option = Param | Choice
GROUP = "populace.scenarios"


class ScenarioError(LookupError):
    """An unknown scenario name."""


class Scenario(abc.ABC):
    """A model builder with user-facing options (``--set NAME=VALUE`` on the command line)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    default_agents: ClassVar[int]
    default_days: ClassVar[int]

    @classmethod
    @abc.abstractmethod
    def options(cls) -> dict[str, Option]:
        """The options and their defaults."""

    @abc.abstractmethod
    def build(
        self, agents: int, options: Mapping[str, Option], *, seed: int, device: torch.device | str
    ) -> Model:
        """The model for ``agents`` agents; ``seed`` drives the random population."""


def scenarios() -> dict[str, type[Scenario]]:
    """Installed scenarios by name."""
    return installed(GROUP)


def find_scenario(name: str) -> type[Scenario]:
    scenario: type[Scenario] = find(GROUP, name, "scenario", ScenarioError)
    return scenario


def parse_sets(scenario: type[Scenario], sets: Sequence[str]) -> dict[str, Option]:
    """The scenario's options with ``NAME=VALUE`` overrides applied; :class:`ParamError` names the culprit."""
    options = scenario.options()
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
        options[name] = options[name].parse(text.strip(), f"--set {name}")
    return options
