"""The explorer's views, one per part of the page, each a ``pn.viewable.Viewer`` on one :class:`Session`
(a browser session's view of the shared :class:`~..live.LiveRun`): the sidebar's :class:`Controls` and the
tabs :class:`RunView`, :class:`SensitivityView`, :class:`QuestionsView`, :class:`RiskView`,
:class:`CompareView`, :class:`CalibrateView`, :class:`ExportView` and :class:`AboutView`.
:class:`~..app.Explorer` composes them and polls the run."""

from .about import AboutView
from .calibrate import CalibrateView
from .compare import CompareView
from .controls import Controls
from .export import ExportView
from .questions import QuestionsView
from .risk import RiskView
from .run import RunView
from .sensitivity import SensitivityView
from .session import Session

__all__ = [
    "AboutView",
    "CalibrateView",
    "CompareView",
    "Controls",
    "ExportView",
    "QuestionsView",
    "RiskView",
    "RunView",
    "SensitivityView",
    "Session",
]
