"""Did-you-mean hints for unknown keys, types and names."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable


def did_you_mean(word: object, choices: Iterable[str], *, listing: str = "valid") -> str:
    """A hint to append after "unknown ... 'word'": the close match, or the valid choices.

    >>> did_you_mean("kernal_size", ["kernel_size", "stride"])
    "; did you mean 'kernel_size'?"
    """
    options = sorted(set(choices))
    if isinstance(word, str):
        close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
        if not close:
            lowered = {o.lower(): o for o in options}
            close = [lowered[word.lower()]] if word.lower() in lowered else []
        if close:
            return f"; did you mean {close[0]!r}?"
    if not options:
        return ""
    return f"; {listing}: {', '.join(options)}"


def show(value: object) -> str:
    """A YAML value as the user would recognise it in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
