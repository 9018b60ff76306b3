"""Ctrl-C while the command is still importing torch: one line and exit 130, no traceback."""

import subprocess
import sys
import textwrap

import pytest

# The child interrupts itself the moment the package starts importing torch: deterministic,
# unlike a signal sent after a sleep.
CHILD = textwrap.dedent(
    """
    import os, signal, sys

    class InterruptAtTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                sys.meta_path.remove(self)
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.argv[0] = sys.argv[1]
    sys.meta_path.insert(0, InterruptAtTorch())
    import mgdl_fast
    print("imported")
    """
)


def _run(argv0: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, argv0], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("argv0", ["/usr/local/bin/mgdl-fast", "mgdl-fast"])
def test_command_interrupted_while_importing_exits_130_in_one_line(argv0):
    done = _run(argv0)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "mgdl-fast: interrupted while starting\n"
    assert "imported" not in done.stdout


def test_a_program_importing_the_package_keeps_its_keyboard_interrupt():
    done = _run("my_script.py")
    assert done.returncode != 130 and "imported" not in done.stdout
    assert "KeyboardInterrupt" in done.stderr
