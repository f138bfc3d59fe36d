"""How the tests reach the *installed* gradcheck, never the source tree by accident.

Subprocess tests run the ``gradcheck`` console script that ``pip install`` put beside
the interpreter. A console script puts its own folder, not the working directory, on
``sys.path``, so it imports the installed ``gradcheck_cli`` even when the working
directory is this repository (``python -m gradcheck_cli`` from the repository root
would import the source folder instead).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def _console_script() -> str:
    beside = Path(sys.executable).with_name("gradcheck")
    if beside.exists():
        return str(beside)
    found = shutil.which("gradcheck")
    if found is None:
        raise RuntimeError(
            "the gradcheck command is not installed; run `pip install .` (or "
            '`pip install ".[test]"`) in this environment before the tests'
        )
    return found


#: argv prefix of the installed command: ``[*GRADCHECK, "run", "net.yaml"]``.
GRADCHECK: list[str] = [_console_script()]
