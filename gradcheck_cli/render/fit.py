"""Tables that fit the width they are printed at without cutting a number.

rich shrinks a table that is too wide by truncating cells (``3.55e-…``) or wrapping a
column one word per line. ``Fitted`` lays a table out itself, at render time, for the
width it is given:

1. the table as built, when its natural width fits;
2. the same table with its wrapping columns narrowed, each never below its longest word
   (a prose column, a diagnosis, never below ``PROSE_WIDTH``), while every *atomic*
   column (declared ``no_wrap=True`` by its builder: numbers, shapes, indices, names)
   keeps each cell whole on one line; the headers of atomic columns may wrap
   (``max abs`` / ``err``);
3. the same with compact spacing: two spaces between columns instead of a border;
4. the builder's ``narrow`` alternative when there is one (the summary moves its
   diagnosis and "consequence of" notes under the table), itself fitted;
5. otherwise one record per row: the first cell, then ``header value`` pairs packed into
   lines, a pair never split between lines unless it is wider than the page.

Plain output (no colour: ``--no-color``, ``NO_COLOR``, output that is not a terminal;
see ``is_plain``) draws ASCII borders. Pure: nothing here prints.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

#: A prose column (a diagnosis) narrower than this reads one word per line: it is moved
#: under the table instead (or the table becomes records).
PROSE_WIDTH = 28
#: Indent of a record's pairs under its first cell.
RECORD_INDENT = 2
#: Between two pairs of a record.
PAIR_GAP = "   "
#: The borders of plain output.
PLAIN_BOX = box.ASCII2
#: Compact spacing: no column borders, a rule under the header (plain: ASCII).
COMPACT_BOX = box.Box("    \n    \n ── \n    \n    \n    \n    \n    \n")
PLAIN_COMPACT_BOX = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def is_plain(console: Console, options: ConsoleOptions) -> bool:
    """Whether output is plain: no colour (the CLI's consoles have no colour system then,
    ``cli/io.py``) or an encoding that is not Unicode. Plain output uses ASCII borders and
    symbols, and legends that need no colour."""
    return options.ascii_only or console.color_system is None or console.no_color


class Fitted:
    """A rich Table laid out for the width it is printed at (module docstring).

    table: as its builder made it; atomic columns are those with ``no_wrap=True``.
    narrow: renderables to show instead when the table cannot fit as it is (they are
    fitted in turn); prose: headers of columns that must not be narrowed below
    ``PROSE_WIDTH`` (nor below their own natural width when that is less).
    """

    def __init__(
        self,
        table: Table,
        *,
        narrow: Callable[[], Sequence[RenderableType]] | None = None,
        prose: Iterable[str] = (),
    ):
        self.table = table
        self.narrow = narrow
        self.prose = frozenset(prose)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        plain = is_plain(console, options)
        for compact in (False, True):
            table = _styled(self.table, plain, compact=compact)
            widths = column_widths(console, options, table, self.prose)
            if widths is not None:
                yield _with_widths(table, widths)
                return
        if self.narrow is not None:
            yield from self.narrow()
            return
        yield records(table, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)


def _styled(table: Table, plain: bool, *, compact: bool = False) -> Table:
    """A copy of ``table`` whose columns can be changed without touching the original;
    ``compact``: two spaces between columns, none at the edges, no borders."""
    styled = copy.copy(table)
    styled.columns = [copy.copy(c) for c in table.columns]
    if plain and styled.box is not None:
        styled.box = PLAIN_BOX
    if compact and styled.box is not None:
        styled.box = PLAIN_COMPACT_BOX if plain else COMPACT_BOX
        styled.padding = (0, 0, 0, 1)  # top, right, bottom, left: the divider and one space
        styled.pad_edge = False
    return styled


def column_widths(
    console: Console, options: ConsoleOptions, table: Table, prose: frozenset[str] = frozenset()
) -> list[int] | None:
    """Content widths (padding excluded) for every column of ``table`` such that it fits
    ``options.max_width`` with every atomic cell whole and every other column at least
    its longest word; None when there are none."""
    columns = table.columns
    if not columns:
        return []
    available = options.max_width - table._extra_width
    available -= sum(table._get_padding_width(i) for i in range(len(columns)))
    least, natural = [], []
    for column in columns:
        cells = [Measurement.get(console, options, c) for c in column.cells]
        header = Measurement.get(console, options, column.header)
        if column.no_wrap:
            whole = max([m.maximum for m in cells] + [header.minimum])
            least.append(whole)
            natural.append(max(whole, header.maximum))
            continue
        widest = max([m.maximum for m in cells] + [header.maximum])
        word = max([m.minimum for m in cells] + [header.minimum])
        if str(column.header) in prose:
            word = max(word, min(widest, PROSE_WIDTH))
        least.append(word)
        natural.append(widest)
    if sum(natural) <= available:
        return natural
    if sum(least) > available:
        return None
    widths = list(natural)
    excess = sum(widths) - available
    while excess > 0:  # narrow the widest column that can give, one cell at a time
        k = max((i for i in range(len(widths)) if widths[i] > least[i]), key=lambda i: widths[i])
        widths[k] -= 1
        excess -= 1
    return widths


def _with_widths(table: Table, widths: list[int]) -> Table:
    for column, width in zip(table.columns, widths, strict=True):
        column.width = width
        column.no_wrap = False  # an atomic column is as wide as its widest cell: only
        # its header may wrap
    return table


def records(table: Table, width: int) -> RenderableType:
    """``table`` as one record per row: the first cell, then ``header value`` pairs of
    the other non-empty cells, packed into lines of at most ``width`` cells."""
    headers = [_text(c.header).plain for c in table.columns]
    rows = list(zip(*(list(c.cells) for c in table.columns), strict=True))
    parts: list[RenderableType] = []
    if table.title:
        parts.append(_text(table.title, style="bold"))
    room = max(1, width - RECORD_INDENT)
    for row in rows:
        first, *rest = (_text(c) for c in row)
        parts.append(first)
        pairs = [
            Text.assemble((h + " ", "dim"), cell)
            for h, cell in zip(headers[1:], rest, strict=True)
            if cell.plain.strip()
        ]
        for line in _pack(pairs, room):
            parts.append(Text(" " * RECORD_INDENT).append_text(line))
    if table.caption:
        parts.append(_text(table.caption, style="dim"))
    return Group(*parts)


def _pack(pairs: list[Text], room: int) -> list[Text]:
    """Pairs joined by PAIR_GAP into lines of at most ``room`` cells; a pair of several
    lines, or wider than ``room``, stands alone (and wraps at its own spaces)."""
    lines: list[Text] = []
    line: Text | None = None
    for pair in pairs:
        alone = "\n" in pair.plain or pair.cell_len > room
        if line is not None and not alone and line.cell_len + len(PAIR_GAP) + pair.cell_len <= room:
            line.append(PAIR_GAP)
            line.append_text(pair)
            continue
        if line is not None:
            lines.append(line)
        line = pair.copy()
        if alone:
            lines.append(line)
            line = None
    if line is not None:
        lines.append(line)
    return lines


def _text(cell: object, style: str = "") -> Text:
    if isinstance(cell, Text):
        return cell
    return Text(str(cell) if cell is not None else "", style=style)
