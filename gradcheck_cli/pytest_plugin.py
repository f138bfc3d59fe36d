"""pytest plugin (entry point ``pytest11``): every gradcheck config a project names
becomes a test. Opt-in: nothing is collected unless the ini file asks::

    [tool.pytest.ini_options]
    gradcheck_paths = ["configs/*.yaml"]        # globs relative to the rootdir
    gradcheck_pattern = "gradcheck_*.yaml"      # or: file names to pick up while walking

``gradcheck_paths`` files are collected on a plain ``pytest`` run even when they lie
outside ``testpaths``; with explicit paths on the command line (``pytest tests/``) only
the configs under those paths are. ``gradcheck_pattern`` applies to the files pytest
visits anyway. Each config becomes one item named after its file stem, marked
``gradcheck``, so ``-k example_b`` and ``-m gradcheck`` / ``-m "not gradcheck"`` select.

The item runs ``gradcheck_cli.check(path)``; a failure's message starts with the
verdict (``Report.summary()``: the verdict line, the blamed layers, the failing tensors,
so that pytest's short test summary, ``-ra``, shows the verdict), then the report table
(plain text); an invalid config or NaN/Inf shows ``ERROR (exit 2): ConfigError: ...``
with gradcheck's message, without a traceback.
This module imports neither numpy nor gradcheck itself until a config runs.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path

import pytest

PATHS_INI = "gradcheck_paths"
PATTERN_INI = "gradcheck_pattern"
MARKER = "gradcheck"
_SELECTED = pytest.StashKey[frozenset]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        PATHS_INI,
        type="linelist",
        default=[],
        help="gradcheck: globs (relative to the rootdir) of configs to collect as tests",
    )
    parser.addini(
        PATTERN_INI,
        type="args",
        default=[],
        help="gradcheck: file-name patterns (e.g. gradcheck_*.yaml) of configs to collect",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: a gradcheck config collected by the gradcheck plugin"
    )
    selected = frozenset(_expand(config))
    config.stash[_SELECTED] = selected
    # pytest < 7.3 cannot tell given paths from testpaths: then only given paths count.
    sources = getattr(pytest.Config, "ArgsSource", None)
    implicit = sources is not None and config.args_source is not sources.ARGS
    if selected and implicit:
        # A plain `pytest` run: add the configs, wherever they are. normalize_collection_
        # arguments drops those already under testpaths, so nothing is collected twice.
        config.args.extend(sorted(str(p) for p in selected))


def _expand(config: pytest.Config) -> list[Path]:
    """The files the ``gradcheck_paths`` globs match, resolved."""
    root = config.rootpath
    found = []
    for pattern in config.getini(PATHS_INI):
        full = pattern if os.path.isabs(pattern) else str(root / pattern)
        found += [Path(p).resolve() for p in glob.glob(full, recursive=True) if Path(p).is_file()]
    return found


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    config = parent.config
    selected = config.stash.get(_SELECTED, frozenset())
    patterns = config.getini(PATTERN_INI)
    if not selected and not patterns:
        return None
    if file_path.resolve() in selected or any(fnmatch.fnmatch(file_path.name, p) for p in patterns):
        return GradcheckFile.from_parent(parent, path=file_path)
    return None


class GradcheckFile(pytest.File):
    """A config file: one item, named after the file stem."""

    def collect(self):
        yield GradcheckItem.from_parent(self, name=self.path.stem)


class GradcheckFailure(AssertionError):
    """A config whose gradients disagree, or that could not be checked."""


class GradcheckItem(pytest.Item):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_marker(MARKER)

    def runtest(self) -> None:
        import gradcheck_cli
        from gradcheck_cli.errors import GradcheckError

        try:
            report = gradcheck_cli.check(_shown(self.path))
        except GradcheckError as e:  # invalid config, plugin error, NaN/Inf
            code = int(getattr(e, "exit_code", 2))
            raise GradcheckFailure(f"ERROR (exit {code}): {type(e).__name__}: {e}") from None
        if not report.passed:
            raise GradcheckFailure(f"{report.summary()}\n\n{_plain_table(report)}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GradcheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"gradcheck {self.path.name}"


def _shown(path: Path) -> str:
    """The path relative to the working directory when below it: reports name it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _plain_table(report) -> str:
    """The report as ``gradcheck run`` prints it, without colour."""
    import io

    from rich.console import Console

    from gradcheck_cli.render.table import render_report

    buffer = io.StringIO()
    Console(file=buffer, color_system=None, width=120, highlight=False).print(render_report(report))
    return buffer.getvalue().rstrip()
