"""The distribution: the wheel holds only the package, and the tests use what is installed."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from installed import GRADCHECK

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel ``pip wheel .`` builds from this checkout (no network: the build runs in
    this environment, whose setuptools the test extra pins)."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("gradcheck_cli-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_only_the_package_with_its_data(wheel):
    names = wheel.namelist()
    tops = {n.split("/")[0] for n in names}
    meta = {t for t in tops if t.endswith(".dist-info")}
    assert tops - meta == {"gradcheck_cli"}, sorted(tops)
    assert "gradcheck_cli/py.typed" in names
    assert "gradcheck_cli/templates/starter.yaml" in names
    assert "gradcheck_cli/cli/__init__.py" in names
    for folder in ("tests/", "configs/", "docs/", "benchmarks/"):
        assert not any(n.startswith(folder) or f"/{folder}" in n for n in names), folder


def test_the_wheel_declares_the_command_and_the_pytest_plugin(wheel):
    (entry,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry).decode()
    assert "gradcheck = gradcheck_cli.launch:main" in text
    assert "gradcheck = gradcheck_cli.pytest_plugin" in text


def _editable() -> bool:
    """Whether an installed gradcheck-cli is an editable install. Every distribution of
    the name is looked at: building a wheel leaves gradcheck_cli.egg-info in the
    checkout, which the working folder on sys.path would otherwise answer for."""
    for dist in importlib.metadata.distributions(name="gradcheck-cli"):
        url = dist.read_text("direct_url.json")
        if url and json.loads(url).get("dir_info", {}).get("editable", False):
            return True
    return False


def test_the_installed_command_works_from_any_folder(tmp_path):
    (tmp_path / "net.yaml").write_text(
        "input: [1.0, -2.0]\nlayers: [{type: tanh}]\nloss: {type: mse, target: [0, 0]}\n"
    )
    done = subprocess.run(
        [*GRADCHECK, "run", "net.yaml", "-q"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout


def test_the_tests_import_the_installed_package_not_the_source_tree():
    """A plain `pip install .` puts the package in site-packages; the subprocess tests
    then exercise that copy. (An editable install points at this checkout on purpose.)"""
    where = subprocess.run(
        [sys.executable, "-I", "-c", "import gradcheck_cli; print(gradcheck_cli.__file__)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.strip()
    if _editable():
        pytest.skip("editable install: the package is this checkout by design")
    # the README's quick start makes its venv inside the clone: site-packages may sit
    # below ROOT, but never the source folder itself
    assert not Path(where).resolve().is_relative_to(ROOT / "gradcheck_cli"), where
    assert "site-packages" in Path(where).parts, where
