"""Keep what nbval executes, so that the site is built from the test run's outputs.

`make notebooks` runs every notebook once with ``pytest --nbval-lax``; this plugin copies each
cell's outputs (as nbval received them from the kernel) into the notebook and, when every cell of
a notebook passed, writes it to ``_build/executed/<same path>.ipynb``. `make book-html` builds the
site from those copies without executing anything again, so each notebook runs once per
`make test`. A notebook with a failing cell gets no copy, and the site build then fails on the
missing page.

Widgets: nbval skips the kernel's comm messages, so this plugin also records the widget state
they carry (as nbclient does) and stores it in the copy's metadata; the site then shows every
widget as it was at the end of the run (a static page has no kernel to recompute anything, which
is why every widget of the course has a plotly twin whose sliders do work offline).
"""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import IPyNbFile

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "_build" / "executed"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_failed: set[str] = set()
_read_message = IPyNbFile.get_kernel_message


def _get_kernel_message(self: IPyNbFile, timeout=None, stream="iopub"):
    """nbval's reader of kernel messages, plus a record of every widget's latest state."""
    msg = _read_message(self, timeout=timeout, stream=stream)
    if msg["msg_type"] in ("comm_open", "comm_msg") and "state" in msg["content"]["data"]:
        data, comm_id = msg["content"]["data"], msg["content"]["comm_id"]
        widgets = self.__dict__.setdefault("widget_state", {})
        widget = widgets.setdefault(comm_id, {"state": {}, "buffers": {}})
        widget["state"].update(data["state"])
        for path, buffer in zip(data.get("buffer_paths", []), msg.get("buffers", []), strict=False):
            encoded = base64.b64encode(buffer).decode()
            widget["buffers"][tuple(path)] = {"data": encoded, "encoding": "base64", "path": path}
    return msg


IPyNbFile.get_kernel_message = _get_kernel_message


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "test_outputs")


def _widget_metadata(widgets: dict) -> dict:
    """The notebook metadata of ipywidgets' saved state (format of @jupyter-widgets/schema)."""
    state = {}
    for comm_id, widget in widgets.items():
        s = widget["state"]
        if "_model_name" not in s:
            continue
        state[comm_id] = {
            "model_name": s["_model_name"],
            "model_module": s.get("_model_module"),
            "model_module_version": s.get("_model_module_version"),
            "state": s,
        }
        if widget["buffers"]:
            state[comm_id]["buffers"] = list(widget["buffers"].values())
    return {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    yield
    if _is_nbval_cell(item):
        item.cell.outputs = list(item.test_outputs or [])
        item.cell.execution_count = item.cell_num + 1
        for output in item.cell.outputs:
            if output.get("output_type") == "execute_result":
                output["execution_count"] = item.cell.execution_count


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed and report.fspath.endswith(".ipynb"):
        _failed.add(str(Path(report.fspath).resolve()))


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After a notebook's last cell: write the executed copy if no cell failed."""
    if not _is_nbval_cell(item) or (nextitem is not None and nextitem.parent is item.parent):
        return
    source = Path(str(item.parent.fspath)).resolve()
    target = EXECUTED / source.relative_to(ROOT)
    target.unlink(missing_ok=True)
    if str(source) in _failed:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if getattr(item.parent, "widget_state", None):
        item.parent.nb.metadata["widgets"] = _widget_metadata(item.parent.widget_state)
    nbformat.write(item.parent.nb, target)
