"""The instructor's path: `make present` serves a chapter notebook through Voilà on 127.0.0.1
with a token, shows no code, and its widget answers a slider.

Runs after the notebooks (their models are cached by then). The server is stopped by its PID.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from course_lib.instructor import ROOT

NOTEBOOK = "chapters/01_lipschitz/01_lipschitz_continuity.ipynb"
TOKEN = "course-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def presented():
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "course_lib.instructor.present", NOTEBOOK, f"--port={port}"],
        cwd=ROOT, env={**os.environ, "PRESENT_TOKEN": TOKEN}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                pytest.fail(f"make present exited with status {server.returncode}")
            try:
                urllib.request.urlopen(f"{url}/?token={TOKEN}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("Voila did not start within 60 s")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_server_wants_the_token(presented):
    for url in (f"{presented}/", f"{presented}/?token=wrong"):
        with urllib.request.urlopen(url, timeout=10) as response:  # redirected to a login form
            assert "/login" in response.geturl()
            assert "lipschitz" not in response.read().decode().lower()


def test_presented_notebook_hides_code_and_its_widget_answers(browser, presented, nudge_slider):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{presented}/?token={TOKEN}", wait_until="commit")  # Voila streams the cells
    page.wait_for_selector(".widget-output img", timeout=300_000)  # the kernel ran the notebook
    assert page.locator(".jp-InputArea-editor, .jp-CodeMirrorEditor").count() == 0  # no code
    assert page.locator("text=from course_lib import").count() == 0
    nudge_slider(page, timeout=20_000)
    page.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "say what to present"),
        (["no_such_chapter"], "no notebook or chapter named"),
        ([NOTEBOOK, "--port=PORT_IN_USE"], "is in use"),
    ],
)
def test_mistakes_end_with_one_line(args, message):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.replace("PORT_IN_USE", str(busy.getsockname()[1])) for a in args]
        done = subprocess.run(
            [sys.executable, "-m", "course_lib.instructor.present", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
