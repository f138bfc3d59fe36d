"""The HTML report in a real browser (issue 13, item 7): headless Chromium loads a
failing run's page from disk, runs it without a console message (no script error, no
Content Security Policy violation), shows every heatmap, and saves a screenshot.

Skipped, and reported as skipped, where no Chromium is installed (``.ci/run`` installs
the distribution's package where it can). ``GRADCHECK_SCREENSHOT=PATH`` keeps the
screenshot (``docs/img/html-report.png`` is made this way).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((path for name in BROWSERS if (path := shutil.which(name))), None)
WINDOW = (1100, 1400)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found: " + "/".join(BROWSERS))


def headless(page: Path, screenshot: Path) -> tuple[str, str]:
    """(the DOM after load, Chromium's log) of ``page``, with a screenshot taken."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(page.parent)},  # a profile of its own, in tmp
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def test_a_failing_report_renders_in_headless_chromium(failing_run, tmp_path):
    assert failing_run.exit_code == 1, failing_run.output
    page = tmp_path / "report.html"
    shutil.copyfile(failing_run.html, page)
    shot = tmp_path / "report.png"
    dom, log = headless(page, shot)
    # the inline script ran (allowed by its hash) and counted the heatmaps it found:
    # input has one failing slice, conv1.weight two
    body = re.search(r"<body[^>]*>", dom).group()
    assert 'data-rendered="3"' in body, body
    assert dom.count('<svg class="heatmap"') == 3
    assert "Layers: each backward checked alone" in dom and "WRONG" in dom
    assert "Backward pass, layer by layer" in dom
    # no console message at all: no script error, no blocked resource or script
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert not console, console
    # the screenshot: a PNG of the window's size, not an empty page
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == WINDOW
    assert len(data) > 20_000
    keep = os.environ.get("GRADCHECK_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
