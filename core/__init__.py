"""Populace: Large Population Models in PyTorch — tensorised, differentiable agent-based simulation.

The public API; everything else is an implementation detail.

Its names are imported on first use (PEP 562), so ``import populace`` alone does not import torch: the
``populace`` program decides, before torch is loaded, whether to relaunch itself under jemalloc
(:mod:`populace.program`, ~1 s of a command's start otherwise).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_PUBLIC: dict[str, tuple[str, ...]] = {
    "aggregation": ("Aggregation", "ExactSums"),
    "contacts": ("AgeMixing", "Contacts", "DistanceKernel", "EdgeNetwork", "Places"),
    "distributed": ("RankFailed", "Shard", "launch"),
    "estimators": ("Estimator", "Gumbel", "Sellke", "Smoothed"),
    "model": ("Layer", "LayerState", "Link", "Model", "Phase", "StepContext"),
    "params": ("Choice", "Param", "ParamError", "register_param", "register_params"),
    "population": ("Population", "PopulationFileError", "column"),
    "random": ("RandomStreams",),
    "samplers": (
        "HardGumbel",
        "LaterInfections",
        "SellkeThreshold",
        "SmoothedBernoulli",
        "SmoothedBinomial",
        "bernoulli",
        "binomial",
        "branch_weights",
    ),
    "scenario": ("Scenario", "find_scenario", "parse_sets"),
    "simulate": ("Checkpointed", "GradMode", "Result", "Simulation", "simulate"),
}
"""The public names, by the module defining them."""

_HOME = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_HOME)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        # importing a submodule binds it here by its name: ``populace.simulate`` stays the function (as when
        # the names were imported eagerly), the module being ``sys.modules["populace.simulate"]``
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'populace' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from .aggregation import Aggregation as Aggregation, ExactSums as ExactSums
    from .contacts import (
        AgeMixing as AgeMixing,
        Contacts as Contacts,
        DistanceKernel as DistanceKernel,
        EdgeNetwork as EdgeNetwork,
        Places as Places,
    )
    from .distributed import RankFailed as RankFailed, Shard as Shard, launch as launch
    from .estimators import (
        Estimator as Estimator,
        Gumbel as Gumbel,
        Sellke as Sellke,
        Smoothed as Smoothed,
    )
    from .model import (
        Layer as Layer,
        LayerState as LayerState,
        Link as Link,
        Model as Model,
        Phase as Phase,
        StepContext as StepContext,
    )
    from .params import (
        Choice as Choice,
        Param as Param,
        ParamError as ParamError,
        register_param as register_param,
        register_params as register_params,
    )
    from .population import (
        Population as Population,
        PopulationFileError as PopulationFileError,
        column as column,
    )
    from .random import RandomStreams as RandomStreams
    from .samplers import (
        HardGumbel as HardGumbel,
        LaterInfections as LaterInfections,
        SellkeThreshold as SellkeThreshold,
        SmoothedBernoulli as SmoothedBernoulli,
        SmoothedBinomial as SmoothedBinomial,
        bernoulli as bernoulli,
        binomial as binomial,
        branch_weights as branch_weights,
    )
    from .scenario import (
        Scenario as Scenario,
        find_scenario as find_scenario,
        parse_sets as parse_sets,
    )
    from .simulate import (
        Checkpointed as Checkpointed,
        GradMode as GradMode,
        Result as Result,
        Simulation as Simulation,
        simulate as simulate,
    )
