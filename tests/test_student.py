"""``make student``'s tool: a stub keeps the signature and docstring of its solution, and a
mistake on the command line ends in one line."""

import pytest

from course_lib.exercises.student import main as student_main
from course_lib.exercises.student import stub_source


def test_stub_source_keeps_signature_and_docstring():
    stub = stub_source('import math\n\n\ndef f(a, b=2):\n    """Doc."""\n    return a + b\n')
    assert stub.startswith('def f(a, b=2):\n    """Doc."""\n')
    with pytest.raises(NotImplementedError, match="your code here"):
        ns: dict = {}
        exec(stub, ns)
        ns["f"](1)


def test_student_copy_bad_input_is_one_line(tmp_path, capsys):
    assert student_main([str(tmp_path), str(tmp_path / "no_such.ipynb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such notebook" in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert student_main([str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
