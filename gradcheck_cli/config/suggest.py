"""Did-you-mean hints for unknown keys, types and names."""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Iterable

from ..text import listing as shorten

#: Choices listed in a hint before "and N more".
LISTED = 30


def did_you_mean(word: object, choices: Iterable[str], *, listing: str = "valid") -> str:
    """A hint to append after "unknown ... 'word'": the close match, or the valid choices.

    >>> did_you_mean("kernal_size", ["kernel_size", "stride"])
    "; did you mean 'kernel_size'?"
    >>> did_you_mean("mse_loss", ["mse", "upstream"])
    "; did you mean 'mse'?"
    """
    options = sorted(set(choices))
    close = closest(word, options)
    if close is not None:
        return f"; did you mean {close!r}?"
    if not options:
        return ""
    return f"; {listing}: {shorten(options, LISTED)}"


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most likely misspells, or None (see :func:`did_you_mean`)."""
    if not isinstance(word, str):
        return None
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    if not close:  # a choice written with extra words: mse_loss, conv2d_layer
        parts = set(word.lower().replace("-", "_").split("_"))
        close = sorted((o for o in options if o.lower() in parts), key=len, reverse=True)
    return close[0] if close else None


def show(value: object, limit: int = 60) -> str:
    """A YAML value as the user would recognise it in a message (at most ``limit`` chars).

    Rendered lazily, so that a huge value (nested aliases expand exponentially) costs
    no more than the characters shown.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    parts: list[str] = []
    size = [0]

    def emit(text: str) -> bool:
        parts.append(text)
        size[0] += len(text)
        return size[0] <= limit

    def render(v: object) -> bool:  # False once the limit is reached
        if isinstance(v, dict):
            if not emit("{"):
                return False
            for k, (key, item) in enumerate(v.items()):
                if not (emit(", " if k else "") and emit(f"{_scalar(key)}: ") and render(item)):
                    return False
            return emit("}")
        if isinstance(v, (list, tuple)):
            if not emit("["):
                return False
            for k, item in enumerate(v):
                if not (emit(", " if k else "") and render(item)):
                    return False
            return emit("]")
        return emit(_scalar(v))

    with contextlib.suppress(RecursionError):
        render(value)
    text = "".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return json.dumps(value)  # NaN, Infinity as JSON spells them
    return repr(value)
