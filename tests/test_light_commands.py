"""``gradcheck --help``, ``--version`` and every command's ``--help`` answer without
importing numpy (issue 14, item 5): they only read click's declarations, and numpy's
import is most of a tenth of a second."""

from __future__ import annotations

import json
import subprocess
import sys

#: Runs each command line in turn in one fresh process, and prints, for each, which of
#: the heavy modules had been imported by then (the first to import one is to blame).
PROBE = """
import contextlib, io, json, sys
from gradcheck_cli.cli import cli
lines = [["--version"], ["--help"], *[[name, "--help"] for name in sorted(cli.commands)]]
seen = []
for args in lines:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli.main(args=args, prog_name="gradcheck", standalone_mode=False)
    heavy = [m for m in ("numpy", "rich", "yaml") if m in sys.modules]
    seen.append({"args": args, "code": code, "heavy": heavy, "out": len(out.getvalue())})
print(json.dumps(seen))
"""


def test_help_and_version_do_not_import_numpy():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert {"run", "explain", "layers", "schema", "init"} <= {s["args"][0] for s in seen}
    for step in seen:
        assert step["code"] == 0 and step["out"] > 0, step  # it did answer
        assert "numpy" not in step["heavy"], f"gradcheck {' '.join(step['args'])} imports numpy"
