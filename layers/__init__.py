"""Reusable model components (``populace.layers``)."""

from .farms import Farms, FarmState, FarmStatus, PoultryFarms
from .graph import Edges, PriceResponse, PriceState, SupplyGraph, SupplyState
from .ode import ODE, ODEState, VectorField, dopri5, rk4
from .seir import SEIR, SEIRState, Stage

__all__ = [
    "ODE",
    "SEIR",
    "Edges",
    "FarmState",
    "FarmStatus",
    "Farms",
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
