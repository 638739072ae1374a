"""An :class:`Experiment`: what a run is made of — a scenario, its options, the number of agents, a seed, a
device and fitted values — and the one way to turn it into a model, a calibration or observed data.

The command line, the explorer's live run and its jobs (sensitivity, what-if, compare, calibrate) all build
their models here, so "build the scenario's model, then load the fitted values" is written once.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .distributed import Shard
from .model import Model
from .params import ParamError
from .scenario import Option, Scenario, find_scenario, parse_sets

if TYPE_CHECKING:
    from .calibrate import Calibration, Stream

__all__ = ["Experiment"]


@dataclass(frozen=True)
class Experiment:
    """A run's recipe.

    Attributes:
        scenario: the scenario class.
        options: its options (``Scenario.defaults()`` with overrides, e.g. from :func:`parse_sets`).
        agents: population size.
        seed: random seed of the population and the run.
        device: where the model lives.
        fitted: fitted values (dotted parameter name → number or nested list) loaded into every model built,
            e.g. a ``parameters.json`` from ``populace calibrate``; ``None`` for none.
        start: calendar date of day 0 for observed data and calibration (``None``: the scenario's default).
    """

    scenario: type[Scenario]
    options: Mapping[str, Option]
    agents: int
    seed: int = 0
    device: torch.device | str = "cpu"
    fitted: Mapping[str, Any] | None = None
    start: dt.date | None = None

    @classmethod
    def from_texts(
        cls,
        scenario: str | type[Scenario],
        sets: Sequence[str] = (),
        *,
        agents: int | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        params: str | os.PathLike[str] | None = None,
        observed: bool = False,
        start: dt.date | None = None,
    ) -> Experiment:
        """An experiment from text, as the command line gives it. The options are, in order of precedence:
        ``sets`` (``NAME=VALUE``), the ``params`` file's (a ``parameters.json``, whose fitted values are
        loaded too, and whose agents are the default), then, with ``observed``, the scenario's options for
        what happened from ``start`` (``Scenario.observed_options``). :class:`~populace.params.ParamError`
        names a bad value or a file fitted for another scenario."""
        from .calibrate import read_parameters

        scenario_cls = find_scenario(scenario) if isinstance(scenario, str) else scenario
        start = start or scenario_cls.default_start
        texts: list[str] = []
        if observed:
            if start is None:
                raise ParamError(f"{scenario_cls.name}: this scenario has no observed data (no start date)")
            texts += [f"{k}={v}" for k, v in scenario_cls().observed_options(start).items()]
        fitted = None
        if params is not None:
            content = read_parameters(params)
            if content.get("scenario") not in (None, scenario_cls.name):
                raise ParamError(
                    f"--params: {str(params)!r} was fitted for {content['scenario']}, not {scenario_cls.name}"
                )
            texts += [f"{k}={v}" for k, v in content.get("options", {}).items()]
            fitted = content["parameters"]
            agents = agents or content.get("agents")
        return cls(
            scenario_cls,
            parse_sets(scenario_cls, [*texts, *sets], start),
            agents or scenario_cls.default_agents,
            seed,
            device,
            fitted,
            start,
        )

    def model(self, shard: Shard | None = None) -> Model:
        """The scenario's model with the fitted values loaded (with ``shard``: this process's part of a
        population split over several, :mod:`populace.distributed`)."""
        from .calibrate import load_parameters

        if shard is not None and shard.spans and not self.scenario.shardable:
            raise ParamError(f"{self.scenario.name}: this scenario does not run on several processes yet")
        model = self.scenario().build(
            self.agents, dict(self.options), seed=self.seed, device=self.device, shard=shard
        )
        if self.fitted is not None:
            load_parameters(model, dict(self.fitted))
        return model

    @property
    def day_zero(self) -> dt.date | None:
        """The calendar date of day 0: ``start``, else the scenario's default (``None``: no observed data)."""
        return self.start or self.scenario.default_start

    def calibration(self, model: Model, *, days: int, streams: Sequence[str] | None = None) -> Calibration:
        """The scenario's calibration of ``model`` (built by :meth:`model`) to its observed data."""
        if self.day_zero is None:
            raise ParamError(f"{self.scenario.name}: this scenario has no observed data to calibrate against")
        return self.scenario().calibration(
            model, agents=self.agents, start=self.day_zero, days=days, streams=streams
        )

    def observed(self, model: Model, *, days: int) -> list[Stream]:
        """The scenario's observed data streams for ``days`` days from the start (none without a start)."""
        if self.day_zero is None:
            return []
        return self.scenario().observed(model, agents=self.agents, start=self.day_zero, days=days)
