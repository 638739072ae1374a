"""The *Export* tab: :class:`ExportView` — the curves as CSV or Parquet and the map as PNG."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import panel as pn
import torch

from populace import ParamError
from populace.simulate import Result

from ..render import to_png
from .run import RunView
from .session import Session

__all__ = ["ExportView"]


class ExportView(pn.viewable.Viewer):
    """Downloads of every recorded series up to the current day, and of the map as ``run_view`` drew it."""

    def __init__(self, session: Session, run_view: RunView, **params: Any) -> None:
        super().__init__(**params)
        self.session, self.run_view = session, run_view
        self.csv_download = pn.widgets.FileDownload(
            callback=lambda: self._curves_file(".csv"), filename="populace-curves.csv", label="Curves as CSV"
        )
        self.parquet_download = pn.widgets.FileDownload(
            callback=lambda: self._curves_file(".parquet"),
            filename="populace-curves.parquet",
            label="Curves as Parquet",
        )
        self.png_download = pn.widgets.FileDownload(
            callback=self._map_png, filename="populace-map.png", label="Map as PNG"
        )
        self.layout = pn.Column(
            pn.pane.Markdown(
                "Every recorded series up to the current day (one column per series and entry), "
                "and the map as drawn now."
            ),
            self.csv_download,
            self.parquet_download,
            self.png_download,
        )

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout

    def curves_result(self) -> Result:
        """The run's series so far as a :class:`~populace.simulate.Result`."""
        frame = self.session.run.frame
        series = {name: torch.from_numpy(frame.series(name)) for name in frame.names()} if frame.day else {}
        return Result(days=torch.arange(frame.day), series=series, labels=dict(frame.labels))

    def _curves_file(self, suffix: str) -> io.BytesIO:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"curves{suffix}"
            self.curves_result().save(path)
            return io.BytesIO(path.read_bytes())

    def _map_png(self) -> io.BytesIO:
        image = self.run_view.image
        if image is None:
            raise ParamError("export: the map has not been drawn yet")
        return io.BytesIO(to_png(image))
