"""Reusable model components (``populace.layers``)."""

from .farms import Farms, FarmState, FarmStatus, PoultryFarms
from .graph import Edges, PriceResponse, PriceState, SupplyGraph, SupplyState
from .infection import Infection, InfectionState, Move
from .ode import ODE, ODEState, VectorField, dopri5, rk4
from .seir import SEIR, SEIRState, Stage

__all__ = [
    "ODE",
    "SEIR",
    "Edges",
    "FarmState",
    "FarmStatus",
    "Farms",
    "Infection",
    "InfectionState",
    "Move",
    "ODEState",
    "PoultryFarms",
    "PriceResponse",
    "PriceState",
    "SEIRState",
    "Stage",
    "SupplyGraph",
    "SupplyState",
    "VectorField",
    "dopri5",
    "rk4",
]
