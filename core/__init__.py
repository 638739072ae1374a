"""Populace: Large Population Models in PyTorch — tensorised, differentiable agent-based simulation.

The public API; everything else is an implementation detail.
"""

from .aggregation import Aggregation, LocalAggregation
from .contacts import AgeMixing, Contacts, DistanceKernel, EdgeNetwork, Places
from .estimators import Estimator, Gumbel, Sellke, Smoothed
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
from .scenario import Scenario, find_scenario, parse_sets
from .simulate import Checkpointed, GradMode, Result, Simulation, simulate

__version__ = "0.1.0"

__all__ = [
    "AgeMixing",
    "Aggregation",
    "Checkpointed",
    "Choice",
    "Contacts",
    "DistanceKernel",
    "EdgeNetwork",
    "Estimator",
    "GradMode",
    "Gumbel",
    "HardGumbel",
    "LaterInfections",
    "Layer",
    "LayerState",
    "Link",
    "LocalAggregation",
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
    "Sellke",
    "SellkeThreshold",
    "Simulation",
    "Smoothed",
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
    "simulate",
]
