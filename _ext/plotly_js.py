"""Sphinx extension of the course site: serve plotly.js from the site itself.

Notebook outputs carry each figure as a ``<div>`` plus a ``Plotly.newPlot`` call and no copy of
plotly.js (see ``course_lib.config``). This extension copies the plotly.js of the installed
``plotly`` package into ``_static`` and loads it on every page, before require.js (which the
ipywidgets pages load at priority 500 and which would otherwise capture plotly as an AMD module).
"""

import shutil
from pathlib import Path

import plotly


def _copy_plotly_js(app, exception):
    if exception is None and app.builder.format == "html":
        source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        shutil.copyfile(source, Path(app.outdir) / "_static" / "plotly.min.js")


def setup(app):
    app.add_js_file("plotly.min.js", priority=100)
    app.connect("build-finished", _copy_plotly_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
