"""The HTML report without a browser (issue 13, item 7): the page parses with every
element closed, holds no external URL, escapes every string from a config or a plugin,
draws well-formed SVG heatmaps, and says what the terminal says; a saved JSON report
renders the same page again (``gradcheck report``)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _report_factory import failing_report, passing_report
from _report_strategies import HOSTILE, reports
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from gradcheck_cli.cli import cli
from gradcheck_cli.render import Format
from gradcheck_cli.render.html import render_html
from gradcheck_cli.render.html_page import SCRIPT
from gradcheck_cli.report import RunError
from gradcheck_cli.saved import BadReport, read_report
from gradcheck_cli.text import printable

REPO = Path(__file__).resolve().parent.parent
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
#: Attributes that name something to fetch or navigate to.
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "formaction", "poster", "data"}


class Page(HTMLParser):
    """The page as a tree check: every element closed in order, and what it holds."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.feed(text)
        self.close()
        if self.stack:
            self.problems.append(f"never closed: {self.stack}")

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        top = self.stack[-1] if self.stack else ""
        if top == "script":
            self.scripts.append(data)
        elif top == "style":
            self.styles.append(data)
        else:
            self.text.append(data)

    def all_text(self) -> str:
        return "".join(self.text)

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(
            t == tag and (cls is None or cls in (a.get("class") or "").split())
            for t, a in self.elements
        )


def assert_self_contained_and_safe(text: str) -> Page:
    page = Page(text)
    assert not page.problems, page.problems[:5]
    # one script, ours: nothing from a config became code
    assert page.count("script") == 1 and page.scripts == [SCRIPT]
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in URL_ATTRIBUTES:
                assert (value or "").startswith("#"), (tag, name, value)  # in-page links only
    assert not re.search(r"https?:|//[a-z]|url\(|@import", "".join(page.styles))
    assert not re.search(r"(?i)\b(https?|ftp|file|data):", text)  # no URL, not even a namespace
    assert not any("//" in v for _, a in page.elements for v in a.values() if v)
    csp = next(a for t, a in page.elements if t == "meta" and "http-equiv" in a)
    assert csp["content"].startswith("default-src 'none'")
    for svg in re.findall(r"<svg\b.*?</svg>", text, flags=re.S):
        ET.fromstring(svg)  # well-formed XML
    return page


def test_a_failing_report_page_is_self_contained_and_well_formed():
    page = assert_self_contained_and_safe(render_html(failing_report()))
    text = page.all_text()
    # the verdict first, then the exit code, the config, the settings
    first = next(t for t, _ in page.elements if t in ("h1", "h2"))
    assert first == "h1" and "FAIL: 2 of 3 tensors disagree" in text
    assert text.index("FAIL") < text.index("Gradients")
    assert "exit code1 (a gradient or an expectation disagrees)" in text
    assert "configs/bad.yaml (bad-net)" in text and "eps 1e-06" in text
    # blame, diagnosis, consequence, skipped, warnings
    assert "Blamed: conv1." in text and "looks like a transposed kernel" in text
    assert "FAIL (consequence of conv1)" in text and "skipped" in text
    assert "float32: tolerances scaled by 100" in text
    # heatmaps: one per failing 2-D slice (conv1.weight and input), kinks marked
    assert page.count("svg", "heatmap") == 2 and page.count("svg", "legend") == 2
    weight = re.search(r'<svg class="heatmap".*?</svg>', render_html(failing_report()), re.S)
    cells = ET.fromstring(weight.group())
    marks = [t.text for t in cells.iter("text") if t.get("class") == "mark"]
    assert marks.count("k") == 1 and marks.count("×") == 2  # one kink, two unchecked
    failed = [g for g in cells.iter("g") if g.get("class") == "failed"]
    assert len(failed) == 9  # the failed elements, outlined by the style


def test_failing_expectations_show_per_element_differences():
    older = failing_report()
    for e in older.expectations:  # a report saved before expectations had mismatches
        e.mismatches = []
    page = Page(render_html(older))
    text = page.all_text()
    assert "Elements that differ, largest difference first:" in text
    assert "[1]22.55.00e-01" in text  # index [1]: expected 2, actual 2.5, |difference| 0.5
    report = failing_report()
    report.expectations[0].mismatches = [  # as the report of an expectation has them
        {"index": [1], "expected": 2.0, "actual": 2.5, "tolerance": 1e-6}
    ]
    text = Page(render_html(report)).all_text()
    assert "indexexpectedactualtolerance" in text and "[1]22.51e-06" in text


def test_an_error_report_shows_the_error_with_its_place():
    report = passing_report()
    report.checks, report.layers, report.expectations = [], [], []
    report.error = RunError(
        "config", "net.yaml:7: layers[1].stride: must be >= 1", "net.yaml", 7, "layers[1].stride"
    )
    page = assert_self_contained_and_safe(render_html(report))
    text = page.all_text()
    assert text.startswith("gradcheck: ERROR") or "ERROR" in text.split("Error")[0]
    assert "exit code2 (the command line or the config is invalid)" in text
    assert "net.yaml:7: layers[1].stride: must be >= 1" in text and "net.yaml:7" in text


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=reports(names=HOSTILE, words=HOSTILE, endings=True))
def test_every_string_from_a_config_or_plugin_is_escaped(report):
    page = assert_self_contained_and_safe(render_html(report))
    text = page.all_text()
    shown = [report.name, *(c.name for c in report.checks), *(v.name for v in report.layers)]
    shown += [p.message for v in report.layers for p in v.problems] + report.warnings
    shown += [c.diagnosis for c in report.checks if c.diagnosis]
    for item in shown:  # as text, visible, never as markup
        assert printable(item, keep_newlines=True) in text


def test_the_backward_pass_of_a_small_network_is_in_the_page(tmp_path):
    config = REPO / "configs" / "example_b_network.yaml"
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["run", str(config), "--html", str(out), "-q"])
    assert result.exit_code == 0, result.output
    page = assert_self_contained_and_safe(out.read_text())
    text = page.all_text()
    assert "Backward pass, layer by layer" in text
    for layer in ("conv1", "pool1", "sig1", "fc"):
        assert f"{layer}(" in text.replace(" ", "")
    # max pooling: four windows, each routed to one input element
    routes = re.findall(r"(\d)\[(\d), (\d)\](\d)–(\d)(\d)–(\d)\[(\d), (\d)\]", text)
    assert len(routes) == 4
    for _ch, _a, _b, r0, r1, c0, c1, sr, sc in routes:
        assert int(r0) <= int(sr) <= int(r1) and int(c0) <= int(sc) <= int(c1)
    assert page.count("svg", "heatmap") == 0  # it passed


# --- saved reports ------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=reports(names=HOSTILE, words=HOSTILE, endings=True))
def test_a_saved_report_reads_back_to_the_same_report(report):
    data = json.loads(report.to_json())
    back = read_report(data, "r.json")
    assert json.loads(back.to_json()) == data
    assert render_html(back) == render_html(report)


def test_a_saved_report_that_is_not_one_is_refused_with_the_key(tmp_path):
    data = json.loads(failing_report().to_json())
    cases = {
        "schema": ({**data, "schema": "other/2"}, "schema: is 'other/2'"),
        "shape": (
            {**data, "checks": [{**data["checks"][0], "shape": [9]}, *data["checks"][1:]]},
            "checks[0].analytic: has shape (3, 4), not (9,)",
        ),
        "index": (
            {
                **data,
                "checks": [{**data["checks"][0], "failed_elements": [[7, 0]]}, *data["checks"][1:]],
            },
            "checks[0].failed_elements[0]: is not an index into (3, 4)",
        ),
        "missing": ({k: v for k, v in data.items() if k != "checks"}, "checks: missing"),
    }
    for what, (broken, message) in cases.items():
        with pytest.raises(BadReport) as caught:
            read_report(broken, "r.json")
        assert f"r.json: {message}" in str(caught.value), what


def run_cli(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"NO_COLOR": "1", **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def test_report_command_renders_the_saved_report_again(failing_run, tmp_path):
    assert failing_run.exit_code == 1
    again = run_cli(
        "report", failing_run.json, "--html", tmp_path / "b.html", env={"COLUMNS": "80"}
    )
    assert again.exit_code == 0  # rendered; the verdict is the report's, shown
    assert failing_run.html.read_text() == (tmp_path / "b.html").read_text()
    assert failing_run.output == again.output  # the same table and verdict line
    html_to_stdout = run_cli("report", failing_run.json, "--html", "-")
    assert html_to_stdout.stdout.startswith("<!DOCTYPE html>")
    assert "FAIL: 2 of 7 tensors disagree" in html_to_stdout.stderr
    options = run_cli("report", "--help").output
    assert "--html PATH" in options and "--json PATH" not in options and "--junit" not in options


def test_report_command_refuses_what_is_not_a_report_and_says_so_in_the_html(tmp_path):
    (tmp_path / "r.html").write_text("stale")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "gradcheck-report/1",\n "config": }')
    result = run_cli("report", bad, "--html", tmp_path / "r.html")
    assert result.exit_code == 2
    assert f"{bad}:2: not valid JSON" in result.stderr
    page = Page((tmp_path / "r.html").read_text())
    assert "not valid JSON" in page.all_text() and "ERROR" in page.all_text()
    # the saved report itself is never replaced
    assert run_cli("report", bad, "--html", bad).exit_code == 2
    assert bad.read_text().startswith('{"schema"')
    # a refused command line leaves its error in the page too
    for args, said in (
        (["report", tmp_path / "missing.json"], "does not exist"),
        (["report", bad, "-q", "-v"], "cannot be combined"),
    ):
        (tmp_path / "r.html").write_text("stale")
        assert run_cli(*args, "--html", tmp_path / "r.html").exit_code == 2
        assert said in Page((tmp_path / "r.html").read_text()).all_text()


def test_html_paths_that_are_not_regular_files_are_written_in_place(tmp_path):
    config = REPO / "configs" / "example_a.yaml"
    target = tmp_path / "real.html"
    target.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def read():
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        result = run_cli("run", config, "--html", fifo, "--json", link, "-q")
    finally:
        with contextlib.suppress(OSError):  # never left waiting
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=5)
    assert result.exit_code == 0, result.output
    assert got and got[0].startswith(b"<!DOCTYPE html>")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and link.is_symlink()
    assert json.loads(target.read_text())["passed"] is True


def test_the_html_format_is_one_member_with_its_own_spec():
    spec = Format.HTML.spec
    assert spec.option == "--html" and spec.from_saved_report
    assert "no network" in spec.help
    assert Format.HTML.render(passing_report()).startswith("<!DOCTYPE html>")
    assert read_report(json.loads(passing_report().to_json())).loss == 0.125


def test_a_run_that_cannot_be_carried_out_leaves_its_error_in_every_report(tmp_path):
    """Exit 3 through the command line (an overflow in a forward): the JUnit holds an
    ``<error>`` case, the JSON the error, the HTML an Error section; none says passed."""
    config = tmp_path / "nan.yaml"
    config.write_text(
        "input: [1.0e200, 2.0]\nlayers:\n"
        "  - {type: dense, name: fc, out_features: 1, weight: [[1.0e200, 1.0]], bias: [0.0]}\n"
        "loss: {type: mse, target: [0.0]}\n"
    )
    paths = {ext: tmp_path / f"r.{ext}" for ext in ("xml", "json", "html")}
    result = run_cli(
        "run", config, "--junit", paths["xml"], "--json", paths["json"], "--html", paths["html"]
    )
    assert result.exit_code == 3, result.output
    (error,) = ET.parse(paths["xml"]).getroot().iter("error")
    assert error.get("type") == "numerical" and "'fc'" in error.get("message")
    report = json.loads(paths["json"].read_text())
    assert report["passed"] is False and report["exit_code"] == 3
    assert report["error"]["kind"] == "numerical" and report["error"]["file"] == str(config)
    page = assert_self_contained_and_safe(paths["html"].read_text())
    assert "Error" in page.all_text() and "contains NaN or Inf" in page.all_text()
    assert 'data-exit-code="3"' in paths["html"].read_text()
