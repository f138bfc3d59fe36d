"""Text from outside gradcheck (a config, a file name, a plugin's message) made safe to
show, in every output.

A layer name, a config title, a key or an exception message may hold control characters:
an escape sequence that recolours the terminal, moves the cursor or hides the lines
above it, a carriage return that overwrites a verdict, a NUL byte, or a Unicode
bidirectional override that shows text in another order than it is read. ``printable``
writes each of them as a visible escape (``\\x1b``, ``\\u202e``), the way Python's
``repr`` does. The console (``cli/io.py``), the JUnit XML and the error messages all pass
what they show through it; JSON escapes control characters by itself.

>>> printable("conv\\x1b[2Jx")
'conv\\\\x1b[2Jx'
>>> printable("two\\nlines", keep_newlines=True)
'two\\nlines'
"""

from __future__ import annotations

import re

#: C0 controls but newline, DEL and C1 controls, Unicode bidirectional controls, lone
#: surrogates (they cannot be encoded) and the two non-characters XML refuses.
_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff\ufffe\uffff]"
)
_UNSAFE_OR_NEWLINE = re.compile(_UNSAFE.pattern.replace("\x0b", "\x0a\x0b", 1))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as an escape; newlines kept when
    ``keep_newlines`` (text of several lines), escaped otherwise (one line, one item)."""
    pattern = _UNSAFE if keep_newlines else _UNSAFE_OR_NEWLINE
    return pattern.sub(_escape, text) if pattern.search(text) else text


def listing(items: list[str], limit: int = 10, *, sep: str = ", ") -> str:
    """At most ``limit`` items, then ``and N more``: a message never grows with the data.

    >>> listing([f"a{k}" for k in range(25)], 3)
    'a0, a1, a2 and 22 more'
    """
    shown = sep.join(items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest:,} more" if rest > 0 else shown
