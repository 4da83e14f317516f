"""Students' copies of the notebooks: every solution cell replaced by a stub.

``python -m course_lib.exercises.student OUTDIR [NOTEBOOK_OR_FOLDER ...]`` (``make student``)
copies every notebook under ``chapters/`` (or the ones named) to ``OUTDIR``, keeping the paths
below ``chapters/``. A code cell tagged ``solution`` becomes a stub: each function it defines
keeps its signature and docstring, and its body is ``raise NotImplementedError("your code
here")``. Where the notebook already shows that stub in the code cell just above (tagged
``stub``), the solution cell is dropped instead, so the student fills in one cell. Bad input
ends with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = ROOT / "chapters"
SOLUTION, STUB = "solution", "stub"


def stub_source(solution: str) -> str:
    """The stub of a solution cell's source: every top-level function keeps its signature and
    docstring; its body becomes ``raise NotImplementedError("your code here")``."""
    tree = ast.parse(solution)
    lines = solution.splitlines()
    stubs = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        body_start = node.body[0]
        has_doc = isinstance(body_start, ast.Expr) and isinstance(
            getattr(body_start, "value", None), ast.Constant
        )
        head_end = (body_start.end_lineno if has_doc else body_start.lineno - 1) or node.lineno
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        head = "\n".join(lines[start - 1 : head_end])
        indent = " " * (body_start.col_offset)
        stubs.append(
            f'{head}\n{indent}# your code here\n{indent}raise NotImplementedError("your code here")'
        )
    if not stubs:
        raise ValueError("a solution cell must define at least one function")
    return "\n\n\n".join(stubs)


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def student_copy(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """The notebook without solutions, and how many solution cells it had."""
    cells, replaced = [], 0
    for cell in nb.cells:
        if cell.cell_type != "code" or SOLUTION not in _tags(cell):
            cells.append(cell)
            continue
        replaced += 1
        stub = stub_source(cell.source)
        previous = next((c for c in reversed(cells) if c.cell_type == "code"), None)
        if previous is not None and STUB in _tags(previous):
            continue  # the notebook already shows the stub just above: drop the solution
        cells.append(nbformat.v4.new_code_cell(stub, metadata={"tags": [STUB]}))
    copy = nbformat.from_dict(dict(nb))
    copy.cells = cells
    return copy, replaced


def _notebooks(sources: list[Path]) -> list[Path]:
    found = []
    for source in sources:
        if source.is_dir():
            found += sorted(
                p for p in source.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
            )
        elif source.suffix == ".ipynb" and source.is_file():
            found.append(source)
        else:
            what = "not a notebook (.ipynb)" if source.exists() else "no such notebook or folder"
            raise ValueError(f"{source}: {what}; name notebooks or folders, e.g. chapters/")
    return found


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line instead of argparse's usage block."""
        self.exit(2, f"make student: {message} (usage: {USAGE})\n")


USAGE = "python -m course_lib.exercises.student OUTDIR [NOTEBOOK_OR_FOLDER ...]"


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="course_lib.exercises.student", description=__doc__.splitlines()[0])
    parser.add_argument(
        "outdir",
        type=Path,
        metavar="OUTDIR",
        help="where to write the copies (e.g. _build/student)",
    )
    parser.add_argument(
        "sources",
        type=Path,
        nargs="*",
        default=[],
        metavar="NOTEBOOK_OR_FOLDER",
        help="notebooks or folders (default: chapters/)",
    )
    args = parser.parse_args(argv)
    try:
        sources = [s.resolve() for s in args.sources] or [CHAPTERS]
        notebooks = _notebooks(sources)
        if not notebooks:
            raise ValueError(f"no notebook found in {', '.join(map(str, sources))}")
        for path in notebooks:
            nb, replaced = student_copy(nbformat.read(path, as_version=4))
            rel = path.relative_to(CHAPTERS) if path.is_relative_to(CHAPTERS) else Path(path.name)
            target = args.outdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
            note = f"{replaced} solution(s) replaced by stubs" if replaced else "no solutions"
            print(f"wrote {target} ({note})")
    except (OSError, ValueError, SyntaxError) as e:
        if isinstance(e, OSError):
            message = (
                f"cannot write {e.filename or args.outdir}: {e.strerror or e}; "
                "choose a writable OUTDIR, e.g. _build/student"
            )
        else:
            message = str(e)
        print(f"make student: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
