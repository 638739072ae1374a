"""The explorer in a notebook: Panel's extension with BokehJS written once, and one copy of each stylesheet.

An executed notebook keeps every output, so what Panel writes into it stays there (measured with
``notebooks/explorer.ipynb``, the classroom explorer: 7.7 MB before these two, 15.5 MB before the explorer
stopped loading Panel a second time):

* **BokehJS twice.** Panel's load output carries its 3.0 MB of scripts (BokehJS, its widgets, tables and
  WebGL parts, and Panel's own) under two mime types in one bundle: ``application/javascript`` for the
  classic notebook and VS Code, and ``application/vnd.holoviews_load.v0+json`` for the pyviz renderer that
  JupyterLab and Notebook 7 use instead. A frontend runs one of them; the file keeps both. :func:`extension`
  writes only the one this kernel's frontend runs (Panel's ``comms`` setting tells: ``"default"``, the
  pyviz renderer; ``"vscode"``, ``"colab"`` or ``"ipywidgets"``, the plain script).
* **Each stylesheet once per model.** With inline resources Panel turns each model's links to its
  stylesheets into a new inline copy per model: the explorer's 570 models carried 1.1 MB of the same few
  stylesheets. :func:`share_stylesheets` (a preprocessing hook of the explorer's layout) gives every model
  the same inline stylesheet object per text, which Bokeh writes once and refers to by id.
"""

from __future__ import annotations

from typing import Any

import panel as pn
from bokeh.models import ImportedStyleSheet, InlineStyleSheet, UIElement

__all__ = ["LOAD_MIME", "extension", "share_stylesheets"]

LOAD_MIME = "application/vnd.holoviews_load.v0+json"
"""The mime type of Panel's load output for the pyviz renderer (JupyterLab, Notebook 7)."""
SCRIPT_MIME = "application/javascript"


def extension(inline: bool = True) -> None:
    """Load Panel and BokehJS for the explorer, once (a notebook's first cell:
    ``populace.explorer.extension()``; :class:`~.app.Explorer` calls it when nothing is loaded yet).

    ``inline``: the scripts and stylesheets in the notebook itself (it works offline and a saved copy shows
    the explorer as it was drawn); ``False`` points them at the server or a CDN. Panel's load outputs are
    written with one copy of the scripts (module docs); without a kernel (a script, a server) this is
    ``pn.extension``."""
    from panel.config import panel_extension

    if panel_extension._loaded:  # a notebook that ran pn.extension() has BokehJS: not a second copy
        pn.config.inline = inline
        return
    publisher = _display_publisher()
    if publisher is None:
        pn.extension(inline=inline)
        return
    hook = _OneCopy()
    publisher.register_hook(hook)
    try:
        pn.extension(inline=inline)
    finally:
        publisher.unregister_hook(hook)


class _OneCopy:
    """A display hook of the kernel: a bundle with the same script under both load mime types keeps only
    the one this frontend runs (module docs)."""

    def __call__(self, msg: dict[str, Any]) -> dict[str, Any]:
        data = msg.get("content", {}).get("data", {})
        if LOAD_MIME in data and SCRIPT_MIME in data:
            drop = SCRIPT_MIME if pn.config.comms == "default" else LOAD_MIME
            msg["content"]["data"] = {k: v for k, v in data.items() if k != drop}
        return msg


def _display_publisher() -> Any:
    """The running kernel's display publisher where it takes hooks (ipykernel), else ``None``."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    publisher = getattr(shell, "display_pub", None)
    return publisher if hasattr(publisher, "register_hook") else None


def share_stylesheets(viewable: Any, root: Any, *_: Any) -> None:
    """A Panel preprocessing hook (``hooks=[share_stylesheets]``): every model under ``root`` refers to one
    inline stylesheet object per stylesheet text, and links to Panel's own stylesheets become that inline
    object (what Panel's notebook rendering would make of them, a new copy per model). Runs on the first
    render and on every later change of the layout (cards drawn when opened)."""
    from panel.io.notebook import replace_inline_css

    if not pn.config.inline:
        return
    by_text: dict[str, InlineStyleSheet] = {}
    by_url: dict[str, Any] = {}
    for model in root.select({"type": UIElement}):
        sheets, changed = [], False
        for sheet in model.stylesheets:
            one = sheet
            if isinstance(sheet, ImportedStyleSheet):
                if sheet.url not in by_url:
                    by_url[sheet.url] = replace_inline_css(sheet)
                one = by_url[sheet.url]
            if isinstance(one, InlineStyleSheet):
                one = by_text.setdefault(one.css, one)
            sheets.append(one)
            changed = changed or one is not sheet
        if changed:
            model.stylesheets = sheets
