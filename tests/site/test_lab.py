"""The student's path: the primer runs in JupyterLab and its widget answers.

Starts JupyterLab on 127.0.0.1 (a free port, no token) over a temporary copy of the notebook, so
that autosave never writes outputs into the repository; Run All; then moves the epsilon slider
and waits for the widget's picture to change. The server is stopped by its PID.
"""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRIMER = ROOT / "chapters" / "00_primer" / "01_threat_models_and_attacks.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab")
    shutil.copy(PRIMER, folder / PRIMER.name)
    port = _free_port()
    jupyter = Path(sys.executable).with_name("jupyter")
    server = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={folder}",
         "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield f"{url}/lab/tree/{PRIMER.name}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_primer_runs_in_jupyterlab_and_its_widget_answers(browser, lab_url, nudge_slider):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(lab_url)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item:has-text('Run All Cells')")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='busy']", timeout=30_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=600_000)

    assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
    assert page.locator(".js-plotly-plot").count() >= 2  # plotly's MIME renderer in JupyterLab
    for _ in range(3):
        nudge_slider(page, timeout=10_000)
    page.close()
