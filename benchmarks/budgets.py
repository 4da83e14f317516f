"""Measure the course's time budgets on this machine (reported, not asserted).

    python benchmarks/budgets.py [notebook ...]

* ``import course_lib; setup()`` in a fresh interpreter (median of 3);
* each notebook executed end to end (kernel start included) twice: *cold* with an empty model
  cache (``COURSE_CACHE`` pointed at a temporary folder, so every zoo model trains) and *warm*
  right after, with the cache filled;
* the widget callbacks' median, as printed by the notebooks' check cells.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def time_setup(repeats: int = 3) -> float:
    code = "import course_lib; course_lib.setup(quiet=True)"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_notebook(path: Path) -> tuple[float, list[str]]:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    elapsed = time.perf_counter() - start
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    widget_ms = re.findall(r"widget callback: median (\d+) ms", "".join(texts))
    return elapsed, widget_ms


def main(paths: list[str]) -> None:
    found = sorted((ROOT / "chapters").rglob("*.ipynb"))
    notebooks = [Path(p).resolve() for p in paths] or [
        p for p in found if ".ipynb_checkpoints" not in p.parts
    ]
    os.environ.setdefault("COURSE_PROFILE", "quick")
    print(f"import course_lib; setup(): {time_setup():.2f} s (median of 3, fresh interpreter)")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["COURSE_CACHE"] = cache  # the kernels inherit it: cold = nothing cached
        for path in notebooks:
            cold, _ = run_notebook(path)
            warm, widget_ms = run_notebook(path)
            print(
                f"{path.relative_to(ROOT)}: cold {cold:.1f} s, warm {warm:.1f} s, "
                f"widget callback medians {', '.join(widget_ms) or '-'} ms"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
