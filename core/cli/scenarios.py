"""``populace scenarios``: the installed scenarios, one line each; ``populace scenarios NAME``: one scenario's
options by theme, its disease stages and its series, in words (:mod:`populace.glossary`)."""

from __future__ import annotations

import argparse

from ..glossary import option_groups, plain, term
from ..params import Param
from ..scenario import Scenario, ScenarioError, find_scenario, scenarios
from .arguments import UsageError
from .command import Command

__all__ = ["Scenarios", "describe"]

DESCRIBE_AGENTS = 5_000
"""Agents of the model built to list a scenario's stages and series (their names do not depend on size)."""


class Scenarios(Command):
    help = "list the installed scenarios, or describe one (its options, stages and series in words)"

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", nargs="?", help="a scenario to describe")

    def run(self, args: argparse.Namespace) -> int:
        if args.name is None:
            for name, cls in scenarios().items():
                print(f"{name:20s} {cls.summary}")
            return 0
        try:
            scenario = find_scenario(args.name)
        except ScenarioError as exc:
            raise UsageError(f"name: {exc}") from None
        print(describe(scenario))
        return 0


def describe(scenario: type[Scenario]) -> str:
    """The scenario's options by theme, then its stages and series, each with its words and unit."""
    lines = [f"{scenario.name}: {scenario.summary}", ""]
    options = scenario.options()
    for group, labels in option_groups(scenario.option_groups, list(options)).items():
        lines.append(f"{group}:")
        for name, label in labels.items():
            option = options[name]
            unit = f" [{option.unit}]" if isinstance(option, Param) else ""
            lines.append(f"  {name:28s} {label}{unit}: {plain(option.doc)}")
        lines.append("")
    model = scenario().build(
        min(scenario.default_agents, DESCRIBE_AGENTS), scenario.defaults(), seed=0, device="cpu"
    )
    staged = model.staged_layer()
    stages = model.ordered_layers()[staged].stage_names if staged is not None else ()
    if stages:
        lines.append("Stages:")
        lines += [f"  {code:28s} {term(code).label}: {term(code).about}" for code in stages]
        lines.append("")
    lines.append("Series:")
    for name in model.observables():
        words = term(name)
        unit = f" [{words.unit}]" if words.unit else ""
        lines.append(f"  {name:28s} {words.label}{unit}: {words.about}".rstrip(": "))
    return "\n".join(lines)
