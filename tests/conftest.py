import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import settings

#: The property tests draw the same examples on every run (``derandomize``), so that a
#: clean clone's CI and the README's ``pytest`` give one answer. GRADCHECK_FRESH_DRAWS=1
#: draws afresh, as the hunts and the slow run (``-m slow``, which always does) are for:
#: fresh draws of the edge classes still find inconclusive verdicts there (the notes).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("fresh", derandomize=False)
settings.load_profile("fresh" if os.environ.get("GRADCHECK_FRESH_DRAWS") == "1" else "repeatable")

sys.path.insert(0, str(Path(__file__).parent))

# The tests read gradcheck's output at the width it picks for a pipe: a COLUMNS exported
# by the user's shell (or set by a test runner's worker) must not change what they see.
os.environ.pop("COLUMNS", None)

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def registry_kept() -> Iterator[None]:
    """Plugins register their types in the process-wide registry, their modules in
    sys.modules, and may add to sys.path: undo all three on the way out."""
    from gradcheck_cli import layers, losses, protocol  # noqa: F401 - the built-ins first

    # registered before the snapshot: restoring one taken without them would unregister
    # the built-ins for good (their modules stay imported)
    registries = (protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS)
    saved = [dict(r) for r in registries]
    modules, path = set(sys.modules), list(sys.path)
    try:
        yield
    finally:
        for registry, before in zip(registries, saved, strict=True):
            registry.clear()
            registry.update(before)
        for name in set(sys.modules) - modules:
            if name.startswith("gradcheck_plugin_"):
                del sys.modules[name]
        sys.path[:] = path


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """``registry_kept`` around one test."""
    with registry_kept():
        yield


@pytest.fixture(scope="session")
def failing_run(tmp_path_factory) -> SimpleNamespace:
    """One failing ``gradcheck run`` (tests/mutants/conv_noflip.yaml: a conv whose dx
    forgets the kernel flip), made once for the tests that read its output and reports:
    ``output`` (plain, COLUMNS=80), ``exit_code``, ``json`` and ``html`` paths. The
    config is named relative to the repository, as a user in a clone would."""
    from click.testing import CliRunner

    from gradcheck_cli.cli import cli

    folder = tmp_path_factory.mktemp("failing_run")
    config = "tests/mutants/conv_noflip.yaml"
    args = ["run", config, "--json", str(folder / "r.json"), "--html", str(folder / "r.html")]
    before = os.getcwd()
    os.chdir(REPO)
    try:
        result = CliRunner().invoke(cli, args, env={"COLUMNS": "80", "NO_COLOR": "1"})
    finally:
        os.chdir(before)
    return SimpleNamespace(
        output=result.output,
        exit_code=result.exit_code,
        json=folder / "r.json",
        html=folder / "r.html",
        config=config,
    )
