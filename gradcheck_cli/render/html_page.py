"""The HTML report's page (``render/html.py`` declares the format): one self-contained
page for ``--html PATH`` and ``gradcheck report``.

What a CI job uploads as an artifact and a student opens to look instead of read, in
this order: the verdict first (with the exit code, the config, the settings, the
timing), the error that ended the run, the per-tensor table, the layer blame with
diagnoses and purity problems, each failing tensor with its error heatmaps (inline
SVG, ``render/svg.py``) and worst elements, the expectations with per-element diffs,
the warnings, and, when the report has an ``explain`` section (a small network), the
backward pass layer by layer (``render/html_explain.py``). ``render/html_blocks.py``
holds the escaping, tables and grids of numbers they share.

Self-contained: the styles are inline, the heatmaps are SVG in the page, there are no
external URLs at all (no fonts, images or scripts fetched), and a Content Security
Policy forbids any: the page needs no network to be viewed. One tiny inline script
(allowed by its hash) marks the page as rendered, ``data-rendered`` on ``<body>``,
which the browser test reads. Every string from the config or a plugin (names,
messages, diagnoses) is escaped, after ``text.printable`` has made control characters
visible. Pure: a Report in, a string out.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..how_checked import HowChecked
from .elements import ELEMENT_ROWS, format_error, format_shape, format_value, worst_elements
from .html_blocks import esc, matrix, num, number, table
from .html_explain import explain_section
from .svg import heatmaps, legend

if TYPE_CHECKING:
    from ..report import ExpectationResult, LayerVerdict, Report, TensorCheck

#: Per-element differences listed for a failing expectation.
DIFF_ROWS = 20
#: Arrays of an expectation shown whole up to this many elements.
SMALL_ARRAY = 64
#: Failing tensors drawn as heatmaps (the others are in the table).
MAX_HEATMAP_TENSORS = 8

SCRIPT = (
    "document.body.setAttribute('data-rendered', "
    "String(document.querySelectorAll('svg.heatmap').length));"
)

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0}
body{color:#1b1b1b;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:0 20px 40px}
header.verdict{padding:14px 20px;color:#fff}
header.pass{background:#2e7d32}header.fail{background:#b71c1c}
header.unsure{background:#9a6700}header.error{background:#4a148c}
header h1{margin:0;font-size:26px}header p{margin:4px 0 0;font-size:15px}
h2{border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.num{text-align:right;font-family:ui-monospace,Menlo,Consolas,monospace;white-space:nowrap}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace}
.st-pass{color:#1b5e20;font-weight:600}.st-fail{color:#b71c1c;font-weight:600}
.st-unsure{color:#8a5a00;font-weight:600}.st-dim{color:#777}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:10px 0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.box{background:#fff;border:1px solid #ddd;border-radius:4px;padding:8px 14px;margin:10px 0}
.errorbox{border-left:6px solid #4a148c}
.note{color:#555;font-size:13px;margin:2px 0 8px}
.maps{display:flex;flex-wrap:wrap;gap:18px}
figure{margin:0}figcaption{font-size:13px;font-family:ui-monospace,Menlo,Consolas,monospace}
svg text{font:10px ui-monospace,Menlo,Consolas,monospace;fill:#333}
svg .failed rect{stroke:#111;stroke-width:1.5}svg .passed rect,svg .unchecked rect{stroke:#fff}
svg text.mark{font-weight:700;fill:#000}svg text.axis{fill:#777}
.pair{display:flex;flex-wrap:wrap;gap:24px}.pair>div{max-width:100%}
.scroll{overflow-x:auto;max-width:100%}
table.matrix td{text-align:right;font-family:ui-monospace,Menlo,Consolas,monospace;padding:1px 6px}
td.hit{background:#fff3c4;font-weight:600}
nav a{margin-right:12px}
footer{color:#777;font-size:12px;margin-top:30px}
"""


def render_html(report: Report) -> str:
    """The whole page (module docstring), ending with a newline."""
    from .table import verdict_line

    verdict = verdict_line(report).plain
    word = verdict.split(":", 1)[0]
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    sections = [
        _error(report),
        _gradients(report),
        _layers(report),
        _failures(report),
        _expectations(report),
        _warnings(report),
        explain_section(report.explain),
    ]
    body = "".join(s for s in sections if s)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gradcheck: {esc(word)} — {esc(report.config)}</title>"
        f"<style>{STYLE}</style></head>"
        f'<body data-exit-code="{int(report.exit_code)}">'
        f"{_header(report, verdict, word)}<main>{_facts(report)}{_nav(sections)}{body}"
        f"<footer>gradcheck {esc(__version__)} · report schema gradcheck-report/1</footer>"
        f"</main><script>{SCRIPT}</script></body></html>\n"
    )


# --- the summary ----------------------------------------------------------------------


def _header(report: Report, verdict: str, word: str) -> str:
    kind = (
        "pass"
        if report.exit_code == 0
        else "error"
        if report.error is not None or report.interrupted
        else "fail"
        if report.failed
        else "unsure"
    )
    return (
        f'<header class="verdict {kind}" id="verdict"><h1>{esc(word)}</h1>'
        f"<p>{esc(verdict)}</p></header>"
    )


def _facts(report: Report) -> str:
    facts = [
        ("exit code", f"{int(report.exit_code)} ({_exit_meaning(int(report.exit_code))})"),
        ("config", report.config + (f" ({report.name})" if report.name else "")),
        ("loss", number(report.loss)),
        ("settings", _settings(report.settings) or "—"),
        ("time", f"{report.total_s:.3f} s, {report.forward_passes:,} forward passes"),
    ]
    if report.interrupted:
        facts.append(("interrupted", "yes: the report is partial"))
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return f'<dl class="facts" id="summary">{rows}</dl>'


def _exit_meaning(code: int) -> str:
    from ..exit_codes import ExitCode

    meanings = {
        0: "every checked gradient and expectation agrees",
        1: "a gradient or an expectation disagrees",
        2: "the command line or the config is invalid",
        3: "the check could not be carried out",
        4: "internal error",
    }
    try:
        return meanings.get(code) or ExitCode(code).name.lower().replace("_", " ")
    except ValueError:
        return "?"


def _settings(settings: dict[str, Any]) -> str:
    """``eps 1e-06 · method central · seed 0``: a flag by its name when on, values that
    are unset (None, False, empty) left out, as the terminal's settings line does."""
    shown = []
    for key, value in settings.items():
        value = getattr(value, "value", value)
        if value is True:
            shown.append(str(key))
        elif value not in (None, False, (), [], ""):
            if isinstance(value, list | tuple):
                value = ", ".join(map(str, value))
            shown.append(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}")
    return " · ".join(shown)


def _nav(sections: Sequence[str]) -> str:
    names = [
        ("error", "Error"),
        ("gradients", "Gradients"),
        ("layers", "Layers"),
        ("failures", "Failing tensors"),
        ("expectations", "Expectations"),
        ("warnings", "Warnings"),
        ("explain", "Backward pass"),
    ]
    links = [
        f'<a href="#{key}">{label}</a>'
        for (key, label), s in zip(names, sections, strict=True)
        if s
    ]
    return f"<nav>{''.join(links)}</nav>" if links else ""


def _error(report: Report) -> str:
    e = report.error
    if e is None:
        return ""
    where = ":".join(str(x) for x in (e.file, e.line) if x not in (None, ""))
    facts = [("kind", e.kind), ("where", where or "—"), ("key", e.key or "—")]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return (
        '<section id="error"><h2>Error</h2><div class="box errorbox">'
        f'<pre class="mono">{esc(e.message)}</pre><dl class="facts">{rows}</dl></div></section>'
    )


# --- tensors ----------------------------------------------------------------------------


def _gradients(report: Report) -> str:
    if not report.checks and not report.skipped:
        return ""
    from .table import checked_cell

    diagnosed = any(c.diagnosis for c in report.checks)
    headers = ["tensor", "shape", "checked", "kinks", "inconclusive", "max abs err"]
    headers += ["max rel err", "status"] + (["diagnosis"] if diagnosed else [])
    rows = []
    for k, c in enumerate(report.checks):
        checked = c.checked > 0
        name = esc(c.name)
        if not c.passed:
            name = f'<a href="#tensor-{k}">{name}</a>'
        rows.append(
            [
                f'<span class="mono">{name}</span>',
                num(format_shape(c.shape)),
                num(checked_cell(c)),
                num(c.kinks),
                num(c.inconclusive),
                num(format_error(c.max_abs_error) if checked else "—"),
                num(format_error(c.max_rel_error) if checked else "—"),
                _status(c),
                *([esc(c.diagnosis or "")] if diagnosed else []),
            ]
        )
    for name in report.skipped:
        blank = [""] * (6 + diagnosed)
        rows.append([esc(name), *blank[:6], '<span class="st-dim">skipped</span>', *blank[6:]])
    return f'<section id="gradients"><h2>Gradients</h2>{table(headers, rows)}</section>'


def _status(c: TensorCheck) -> str:
    if c.passed:
        return _PASS
    if c.unreached:
        return '<span class="st-unsure">NOT CHECKED</span>'
    if not c.failed and c.taylor_passed is None and c.corrupted_by is None:
        return '<span class="st-unsure">INCONCLUSIVE</span>'
    text = "FAIL" + (f" (consequence of {c.consequence_of})" if c.consequence_of else "")
    return f'<span class="st-fail">{esc(text)}</span>'


def _failures(report: Report) -> str:
    failing = [(k, c) for k, c in enumerate(report.checks) if not c.passed]
    if not failing:
        return ""
    parts = ['<section id="failures"><h2>Failing tensors</h2>']
    for n, (k, c) in enumerate(failing):
        parts.append(f'<article id="tensor-{k}"><h3 class="mono">{esc(c.name)} ')
        parts.append(f"{esc(format_shape(c.shape))}</h3>")
        said = []
        if c.failed:
            said.append(f"{c.failed} of {c.checked} checked elements fail")
        if c.inconclusive:
            said.append(f"{c.inconclusive} inconclusive")
        if c.mode is HowChecked.TAYLOR:
            order = "exact" if c.taylor_order is None else f"{c.taylor_order:.2f}"
            said.append(f"Taylor test: observed order {order} (right: 2, wrong: 1)")
        if c.consequence_of:
            said.append(f"consequence of layer {c.consequence_of}'s wrong backward")
        if c.corrupted_by:
            said.append(f"corrupted by the impurity of layer {c.corrupted_by}")
        parts.append(f"<p>{esc('; '.join(said))}</p>")
        if c.diagnosis:
            parts.append(f'<p class="box"><b>Diagnosis:</b> {esc(c.diagnosis)}</p>')
        maps = heatmaps(c, esc) if n < MAX_HEATMAP_TENSORS else []
        if maps:  # the picture first, then the numbers
            figures = "".join(
                f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"
                if caption
                else f'<p class="note">{esc(svg)}</p>'
                for caption, svg in maps
            )
            parts.append(f'<h4>Relative error by element</h4><div class="maps">{figures}</div>')
            parts.append(legend())
        if c.checked:
            parts.append(_element_table(c))
        parts.append("</article>")
    parts.append("</section>")
    return "".join(parts)


def _element_table(c: TensorCheck) -> str:
    rows = [
        [
            num(str(r.index)),
            num(format_value(r.analytic)),
            num(format_value(r.numeric)),
            num(format_error(r.abs_error)),
            num(format_error(r.bound)),
            num(format_error(r.rel_error)),
            f'<span class="{"st-fail" if r.failed else ""}">{esc(r.note)}</span>',
        ]
        for r in worst_elements(c, ELEMENT_ROWS)
    ]
    headers = ["index", "analytic", "numeric", "abs err", "bound", "rel err", "note"]
    more = c.analytic.size - len(rows)
    note = f'<p class="note">… {more:,} more elements</p>' if more > 0 else ""
    return '<p class="note">Worst elements first:</p>' + table(headers, rows) + note


# --- layers, expectations, warnings -----------------------------------------------------


def _layers(report: Report) -> str:
    if not report.layers:
        return ""
    headers = ["layer", "type", "own backward", "max abs err", "max rel err", "kinks"]
    headers += ["what is wrong"]
    rows = [
        [
            f'<span class="mono">{esc(v.name)}</span>',
            esc(v.type),
            _layer_status(v),
            num(format_error(v.max_abs_error)),
            num(format_error(v.max_rel_error)),
            num(v.kinks),
            esc(v.diagnosis or ""),
        ]
        for v in report.layers
    ]
    problems = [
        f'<li><b class="mono">{esc(v.name)}</b>: <span class="{_severity(p.failure)}">'
        f"{esc(p.kind)}</span> ({'fails the check' if p.failure else 'warning'}): "
        f"{esc(p.message)}</li>"
        for v in report.layers
        for p in v.problems
    ]
    blamed = report.blamed_layers()
    said = (
        f"Blamed: {', '.join(blamed)}. Every failure below a blamed layer is its consequence."
        if blamed
        else "No layer's own backward is wrong."
    )
    listed = f"<h3>Purity problems</h3><ul>{''.join(problems)}</ul>" if problems else ""
    return (
        '<section id="layers"><h2>Layers: each backward checked alone</h2>'
        f"<p>{esc(said)}</p>{table(headers, rows)}{listed}</section>"
    )


def _severity(failure: bool) -> str:
    return "st-fail" if failure else "st-unsure"


def _layer_status(v: LayerVerdict) -> str:
    if v.passed:
        return '<span class="st-pass">ok</span>'
    if v.impure and v.own_backward_ok:
        return '<span class="st-fail">impure</span>'
    if not v.wrong:
        return '<span class="st-unsure">inconclusive</span>'
    return '<span class="st-fail">WRONG</span>'


def _expectations(report: Report) -> str:
    if not report.expectations:
        return ""
    rows = [
        [
            f'<span class="mono">{esc(e.name)}</span>',
            num(format_error(e.max_abs_error)),
            _PASS if e.passed else _FAIL,
        ]
        for e in report.expectations
    ]
    parts = [
        '<section id="expectations"><h2>Expectations</h2>',
        table(["expectation", "max abs err", "status"], rows),
    ]
    for e in report.expectations:
        if not e.passed:
            parts.append(_expectation_diff(e))
    parts.append("</section>")
    return "".join(parts)


def _expectation_diff(e: ExpectationResult) -> str:
    """A failing expectation element by element: its ``mismatches`` when the report has
    them (index, expected, actual, tolerance), else the largest differences."""
    parts = [f'<h3 class="mono">{esc(e.name)}</h3>']
    mismatches = getattr(e, "mismatches", None)
    expected = np.asarray(e.expected, dtype=float)
    actual = np.asarray(e.actual, dtype=float)
    if mismatches:
        rows = [
            [
                num(_field(m, "index")),
                num(number(_field(m, "expected"))),
                num(number(_field(m, "actual"))),
                num(number(_field(m, "tolerance"))),
            ]
            for m in mismatches[:DIFF_ROWS]
        ]
        parts.append(table(["index", "expected", "actual", "tolerance"], rows))
        if len(mismatches) > DIFF_ROWS:
            parts.append(f'<p class="note">… {len(mismatches) - DIFF_ROWS} more</p>')
    elif expected.shape == actual.shape:
        diff = np.abs(expected - actual)
        order = np.argsort(-np.nan_to_num(diff, nan=np.inf).ravel(), kind="stable")
        rows = []
        for flat in order[:DIFF_ROWS]:
            index = np.unravel_index(int(flat), expected.shape) if expected.ndim else ()
            i = tuple(int(x) for x in index)
            if diff[i] == 0:
                break
            rows.append(
                [
                    num(str(list(i))),
                    num(number(expected[i])),
                    num(number(actual[i])),
                    num(format_error(float(diff[i]))),
                ]
            )
        parts.append('<p class="note">Elements that differ, largest difference first:</p>')
        parts.append(table(["index", "expected", "actual", "|difference|"], rows))
    if max(expected.size, actual.size) <= SMALL_ARRAY:
        parts.append(
            f'<div class="pair"><div><b>expected</b>{matrix(expected)}</div>'
            f"<div><b>actual</b>{matrix(actual)}</div></div>"
        )
    return "".join(parts)


def _field(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else getattr(m, key, None)


_PASS = '<span class="st-pass">PASS</span>'
_FAIL = '<span class="st-fail">FAIL</span>'


def _warnings(report: Report) -> str:
    if not report.warnings:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in report.warnings)
    return f'<section id="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'
