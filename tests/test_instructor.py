"""The instructors' commands: gpu-check (run on a CPU in the quick profile), warm, and their
one-line answers to mistakes."""

import subprocess
import sys

import nbformat
import pytest

from course_lib.instructor import ROOT, UsageError, gpu_check, notebooks, zoo_names


def _notebook(tmp_path, name, code):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from course_lib import setup; setup()"),
        nbformat.v4.new_code_cell(code),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_gpu_check_runs_end_to_end_on_a_cpu(tmp_path):
    good = _notebook(
        tmp_path, "good.ipynb",
        "from course_lib.checks import expect\nimport os\n"
        "expect(os.environ['COURSE_PROFILE'] == 'quick', 'profile')\nexpect(1 + 1 == 2, 'sum')",
    )  # fmt: skip
    bad = _notebook(tmp_path, "bad.ipynb", "from course_lib.checks import expect\nexpect(0, 'x')")
    out = tmp_path / "table.md"
    status = {}
    for nb in (good, bad):
        status[nb.name] = gpu_check.main([str(nb), "--profile", "quick", "--out", str(out)])
        text = out.read_text()
        assert (
            "| notebook | wall time (s) | peak GPU memory (MiB) | checks passed | verdict |" in text
        )
    assert status == {"good.ipynb": 0, "bad.ipynb": 1}
    assert "| bad.ipynb |" in text and "FAILED: " in text and "check failed: x" in text


def test_gpu_check_counts_the_checks_that_passed(tmp_path):
    nb = _notebook(tmp_path, "two.ipynb", "from course_lib.checks import expect\n"
                   "expect(True, 'a')\nexpect(True, 'b')")  # fmt: skip
    row = gpu_check.run_notebook(nb, timeout=120)
    assert row["checks"] == 2 and row["failure"] == "" and row["wall_s"] > 0


def test_gpu_check_says_what_it_needs_without_a_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(UsageError, match="needs a CUDA GPU.*PROFILE=quick"):
        gpu_check.main(["--profile", "full"])


def test_notebooks_are_found_by_path_chapter_or_name():
    assert len(notebooks()) >= 6
    assert notebooks("01_lipschitz") == sorted((ROOT / "chapters" / "01_lipschitz").glob("*.ipynb"))
    assert notebooks("lipschitz_continuity")[0].name == "01_lipschitz_continuity.ipynb"
    with pytest.raises(UsageError, match="no notebook or chapter named"):
        notebooks("nothing_like_this")


def test_zoo_names_reads_literal_loads(tmp_path):
    nb = _notebook(tmp_path, "z.ipynb", 'zoo.load("mnist_cnn")\nzoo.load(f"mnist_{s}")')
    assert zoo_names(nb) == ["mnist_cnn"]


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("warm", ["--only", "no_model_has_this_name"], "no model name contains"),
        ("gpu_check", ["no_such_notebook", "--profile", "quick"], "no notebook or chapter"),
    ],
)
def test_mistakes_end_with_one_line(module, args, message):
    done = subprocess.run(
        [sys.executable, "-m", f"course_lib.instructor.{module}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
