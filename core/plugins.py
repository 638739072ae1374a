"""Plug-ins: classes that packages declare under an entry-point group (scenarios, population recipes),
so ``core`` finds them without importing them by name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

__all__ = ["did_you_mean", "find", "installed"]


def installed(group: str) -> dict[str, Any]:
    """The loaded entry points of ``group``, by name, sorted."""
    return dict(sorted((ep.name, ep.load()) for ep in entry_points(group=group)))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def find(group: str, name: str, what: str, error: type[LookupError] = LookupError) -> Any:
    """The entry point ``name`` of ``group``; ``error`` names ``what`` was asked for and what exists."""
    available = installed(group)
    if name in available:
        return available[name]
    raise error(
        f"unknown {what} {name!r}{did_you_mean(name, available)}; available: {', '.join(available) or 'none'}"
    )
