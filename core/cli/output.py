"""What commands print besides their results: numbers as JSON keeps them, and the process's peak memory."""

from __future__ import annotations

import platform
import resource

__all__ = ["number", "peak_rss_mb"]


def number(value: float) -> float | int:
    """``value`` as an int when it is whole (``3`` rather than ``3.0`` in JSON and text)."""
    return int(value) if float(value).is_integer() else float(value)


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if platform.system() == "Darwin" else 1)
