"""`make gpu-check`: run every notebook in the full profile on a CUDA GPU and write a table.

The instructors' check before a lecture on a GPU machine: each notebook is executed top to bottom
in a fresh kernel (``COURSE_PROFILE=full`` unless ``--profile`` says otherwise), and the table in
``_build/gpu-check.md`` gives its wall time, peak GPU memory, how many check cells passed, and the
first failure if any. The exit status is 1 when a notebook failed. Models come from the zoo cache
(`make warm` first, or they train during the run) and the full profile reads the torchvision
datasets from ``datasets/cache`` (downloaded on the first run).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from . import ROOT, UsageError, notebooks, run

PEAK_CELL = (
    "import torch as _t\n"
    "print('GPU_PEAK_BYTES', _t.cuda.max_memory_allocated() if _t.cuda.is_available() else 0)"
)


def run_notebook(path: Path, timeout: int) -> dict:
    """Execute one notebook; returns its row of the table."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    client = nbclient.NotebookClient(
        nb, timeout=timeout, resources={"metadata": {"path": path.parent}}
    )
    start, failure = time.perf_counter(), ""
    try:
        client.execute()
    except Exception as err:  # a failed cell: report it, go on with the next notebook
        failure = (
            str(err).strip().splitlines()[-1][:160] if str(err).strip() else type(err).__name__
        )
    wall = time.perf_counter() - start
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    lines = "".join(texts).splitlines()
    peaks = [int(line.split()[1]) for line in lines if line.startswith("GPU_PEAK_BYTES")]
    return {
        "notebook": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name,
        "wall_s": wall,
        "peak_mib": peaks[0] / 2**20 if peaks else float("nan"),
        "checks": sum(line.lstrip().startswith("✓") for line in lines),
        "failure": failure,
    }


def table(rows: list[dict], profile: str) -> str:
    head = [
        f"# gpu-check ({profile} profile)",
        "",
        "| notebook | wall time (s) | peak GPU memory (MiB) | checks passed | verdict |",
        "|---|---|---|---|---|",
    ]
    body = [
        f"| {r['notebook']} | {r['wall_s']:.1f} | {r['peak_mib']:.0f} | {r['checks']} | "
        f"{'FAILED: ' + r['failure'].replace('|', '/') if r['failure'] else 'passed'} |"
        for r in rows
    ]
    total = sum(r["wall_s"] for r in rows)
    return "\n".join([*head, *body, "", f"total wall time: {total:.0f} s"]) + "\n"


def main(argv: list[str]) -> int:
    import torch

    parser = argparse.ArgumentParser(prog="make gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="a notebook or chapter (default: all)")
    parser.add_argument("--profile", default="full", choices=("quick", "full"))
    parser.add_argument("--out", default=str(ROOT / "_build" / "gpu-check.md"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.profile == "full" and not torch.cuda.is_available():
        raise UsageError(
            "the full profile needs a CUDA GPU; to try the script on a CPU: "
            "make gpu-check PROFILE=quick NB=01_lipschitz"
        )
    paths = notebooks(args.target)
    os.environ["COURSE_PROFILE"] = args.profile  # inherited by every kernel
    rows = []
    for path in paths:
        rows.append(run_notebook(path, args.timeout))
        r = rows[-1]
        print(f"{r['notebook']}: {r['wall_s']:.1f} s, {r['checks']} checks, "
              f"{'FAILED' if r['failure'] else 'passed'}", flush=True)  # fmt: skip
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table(rows, args.profile))
    except OSError as err:
        raise UsageError(f"cannot write {out} ({err.strerror}): pass --out PATH") from None
    print(table(rows, args.profile) + f"written to {out}")
    return 1 if any(r["failure"] for r in rows) else 0


if __name__ == "__main__":
    run(main)
