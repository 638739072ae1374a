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
    """``" (did you mean 'x'?)"`` for the closest known name, or ``""``. Case is ignored (``NYC-COVID``
    finds ``nyc-covid``), and a name that begins only one known name (``nyc``) finds it."""
    by_lower: dict[str, str] = {}
    for k in known:
        by_lower.setdefault(k.lower(), k)
    lower = name.lower()
    starting = [k for k in by_lower if k.startswith(lower)] if lower else []
    if lower in by_lower:
        close = [lower]
    elif len(starting) == 1:
        close = starting
    else:
        close = difflib.get_close_matches(lower, list(by_lower), n=1)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def find(group: str, name: str, what: str, error: type[LookupError] = LookupError) -> Any:
    """The entry point ``name`` of ``group``; ``error`` names ``what`` was asked for and what exists."""
    available = installed(group)
    if name in available:
        return available[name]
    raise error(
        f"unknown {what} {name!r}{did_you_mean(name, available)}; available: {', '.join(available) or 'none'}"
    )
