"""Populace: Large Population Models in PyTorch — tensorised, differentiable agent-based simulation.

The public API; everything else is an implementation detail.
"""

from .aggregation import Aggregation, ExactSums
from .contacts import AgeMixing, Contacts, DistanceKernel, EdgeNetwork, Places
from .distributed import RankFailed, Shard, launch
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
    "ExactSums",
    "GradMode",
    "Gumbel",
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
    "RankFailed",
    "Result",
    "Scenario",
    "Sellke",
    "SellkeThreshold",
    "Shard",
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
    "launch",
    "parse_sets",
    "register_param",
    "register_params",
    "simulate",
]
