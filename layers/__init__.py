"""Reusable model components (``populace.layers``)."""

from .seir import SEIR, SEIRState, Stage

__all__ = ["SEIR", "SEIRState", "Stage"]
