"""Commands for instructors (run through the Makefile): present a notebook live without its code
(:mod:`.present`, `make present`), train and cache every model before a lecture (:mod:`.warm`,
`make warm`), and run the course in the full profile on a GPU (:mod:`.gpu_check`,
`make gpu-check`).

Each command is a ``main(argv) -> int`` whose mistakes (unknown notebook, missing cache, port in
use, no GPU) end with one line saying what to do, never a traceback.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = ROOT / "chapters"


class UsageError(Exception):
    """A mistake of the person running the command: printed as one line, exit status 2."""


def notebooks(target: str | None = None) -> list[Path]:
    """The notebooks named by ``target``: a notebook path, a chapter folder (path or name such as
    ``01_lipschitz``), or every notebook of the course when ``target`` is empty."""
    everything = sorted(p for p in CHAPTERS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not target:
        return everything
    for candidate in (Path(target), ROOT / target, CHAPTERS / target):
        if candidate.is_file() and candidate.suffix == ".ipynb":
            return [candidate.resolve()]
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return sorted(p.resolve() for p in candidate.glob("*.ipynb"))
    stems = [p.stem for p in everything]
    hits = [p for p in everything if target in p.stem]
    if len(hits) == 1:
        return hits
    names = ", ".join(sorted({p.parent.name for p in everything}))
    raise UsageError(
        f"no notebook or chapter named {target!r} (chapters: {names}; notebooks: "
        f"{', '.join(stems[:3])}, ...)"
    )


def zoo_names(notebook: Path) -> list[str]:
    """The model names a notebook loads with a literal ``zoo.load("name")``."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    return sorted(set(re.findall(r"zoo\.load\(\s*[\"']([\w.\-]+)[\"']", code)))


def run(main, argv: list[str] | None = None) -> None:
    """Run a command's ``main``: a :class:`UsageError` is one line on stderr and exit status 2."""
    try:
        sys.exit(main(sys.argv[1:] if argv is None else argv))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
