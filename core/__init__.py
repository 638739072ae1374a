"""Populace: Large Population Models in PyTorch — tensorised, differentiable agent-based simulation.

The public API; everything else is an implementation detail.
"""

from .contacts import AgeMixing, Contacts, EdgeNetwork, Places
from .model import Layer, LayerState, Link, Model, Phase, StepContext
from .params import Choice, Param, ParamError, register_param, register_params
from .population import Population, PopulationFileError, column
from .random import RandomStreams
from .samplers import (
    HardGumbel,
    LaterInfections,
    SellkeThreshold,
    SmoothedBernoulli,
    SmoothedBinomial,
    bernoulli,
    binomial,
    branch_weights,
)
from .scenario import Scenario, find_scenario, parse_sets, scenarios
from .simulate import Checkpointed, GradMode, Result, Simulation, simulate

__version__ = "0.1.0"

__all__ = [
    "AgeMixing",
    "Checkpointed",
    "Choice",
    "Contacts",
    "EdgeNetwork",
    "GradMode",
    "HardGumbel",
    "LaterInfections",
    "Layer",
    "LayerState",
    "Link",
    "Model",
    "Param",
    "ParamError",
    "Phase",
    "Places",
    "Population",
    "PopulationFileError",
    "RandomStreams",
    "Result",
    "Scenario",
    "SellkeThreshold",
    "Simulation",
    "SmoothedBernoulli",
    "SmoothedBinomial",
    "StepContext",
    "bernoulli",
    "binomial",
    "branch_weights",
    "column",
    "find_scenario",
    "parse_sets",
    "register_param",
    "register_params",
    "scenarios",
    "simulate",
]
