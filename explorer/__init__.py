"""The Populace Explorer (``populace.explorer``): a Panel app and notebook widget where every agent is drawn
on a map and the epidemic curves respond to the intervention controls.

* :class:`LiveRun` — the run under live control (a ``param.Parameterized`` model, no UI code);
* :class:`Explorer` — its views (a ``pn.viewable.Viewer``): ``Explorer(scenario="classroom")`` displays in a
  notebook; ``populace explore`` serves it.
* :mod:`.views` — the parts of its page (sidebar and tabs), each a ``Viewer`` on one session's state.

``core`` never imports this package; it needs the ``explorer`` extra (``pip install 'populace[explorer]'``).
"""

from . import jobs
from .app import Explorer
from .live import AgentMap, Frame, LiveRun

__all__ = ["AgentMap", "Explorer", "Frame", "LiveRun", "jobs"]
