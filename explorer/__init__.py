"""The Populace Explorer (``populace.explorer``): a Panel app and notebook widget where every agent is drawn
on a map and the epidemic curves respond to the intervention controls.

* :class:`LiveRun` — the run under live control (a ``param.Parameterized`` model, no UI code);
* :class:`Explorer` — its views (a ``pn.viewable.Viewer``): ``Explorer(scenario="classroom")`` displays in a
  notebook; ``populace explore`` serves it (:mod:`.command`, plugged into ``populace`` by entry point).
* :func:`extension` — Panel and BokehJS for a notebook, written once (:mod:`.notebook`);
* :mod:`.views` — the parts of its page (sidebar and tabs), each a ``Viewer`` on one session's state.

``core`` never imports this package; it needs the ``explorer`` extra (``pip install 'populace[explorer]'``).
The names below load on first use, so that ``populace`` can find the ``explore`` command without loading
Panel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import jobs
    from .app import Explorer
    from .live import AgentMap, Frame, LiveRun
    from .notebook import extension

__all__ = ["AgentMap", "Explorer", "Frame", "LiveRun", "extension", "jobs"]

_MODULE = {
    "AgentMap": ".live",
    "Explorer": ".app",
    "Frame": ".live",
    "LiveRun": ".live",
    "extension": ".notebook",
    "jobs": ".jobs",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_MODULE[name], __name__)
    value = module if name == "jobs" else getattr(module, name)
    globals()[name] = value
    return value
