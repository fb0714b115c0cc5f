"""The rules the suite keeps about itself: a test that is not marked ``slow`` starts and signals no process
(tests/conftest.py applies :func:`helpers.processes_refused` to every such test)."""
import os
import subprocess
from pathlib import Path

import pytest

from helpers import processes_refused


def _run_as(path: Path, code: str) -> None:
    """Run ``code`` as if it were written in ``path`` (the check looks at the caller's file)."""
    exec(compile(code, str(path), "exec"), {"os": os, "subprocess": subprocess})


def test_a_test_that_is_not_slow_may_not_start_or_signal_a_process(tmp_path):
    test_file, library = tmp_path / "test_fake.py", tmp_path / "library.py"
    before = (os.kill, subprocess.Popen._execute_child)
    with processes_refused(test_file, "test_fake.py::test_x"):
        with pytest.raises(pytest.fail.Exception, match=r"^test_fake\.py::test_x starts or signals a process "
                                                        r"\(Popen\._execute_child\): mark it @pytest\.mark\.slow$"):
            _run_as(test_file, "subprocess.run(['true'])")  # refused before the process exists
        with pytest.raises(pytest.fail.Exception, match=r"\(os\.kill\)"):
            _run_as(test_file, "os.kill(os.getpid(), 0)")  # signal 0: a no-op if it were let through
        _run_as(library, "os.kill(os.getpid(), 0)")  # code outside the test (trpo_lab runs git) is let through
    assert (os.kill, subprocess.Popen._execute_child) == before  # restored on the way out


def test_conftest_applies_the_check_to_a_test_that_is_not_slow():
    assert os.kill.__module__ == "helpers" and subprocess.Popen._execute_child.__module__ == "helpers"
