"""Warnings about a valid config that probably does not mean what it says.

Each is one line naming the key, with the file and line (``net.yaml:9: layers[1]
(pool1): ...``), carried to the run's output and the JSON report's ``warnings``.

- a layer with sliding windows (a ``geometry``: conv2d, maxpool2d, avgpool2d, a plugin
  that declares one) whose windows never read some rows or columns of its input: those
  pixels cannot change the loss and their gradient is 0 (max pooling 2x2 over 5x5
  drops the last row and column).
"""

from __future__ import annotations

from ..errors import ConfigIssue
from ..problem import LayerSpec


def unread_window_warnings(specs: list[LayerSpec], file: str) -> list[str]:
    """A warning for every windowed layer that leaves input rows or columns unread;
    specs: every layer of a valid config, in order (``layers[k]`` is specs[k])."""
    found = []
    for k, spec in enumerate(specs):
        g = getattr(spec.layer, "geometry", None)
        if g is None or len(spec.in_shape) != 3:
            continue
        try:
            size = (int(g.kh), int(g.kw), int(g.sh), int(g.sw), int(g.ph), int(g.pw))
        except (AttributeError, TypeError, ValueError):
            continue  # a plugin's geometry of its own kind
        _, h, w = spec.in_shape
        rows = unread(h, size[0], size[2], size[4])
        cols = unread(w, size[1], size[3], size[5])
        if not rows and not cols:
            continue
        told = " and ".join(
            f"{what if len(lost) == 1 else what + 's'} {_spans(lost)}"
            for what, lost in (("row", rows), ("column", cols))
            if lost
        )
        kernel = f"{size[0]}x{size[1]}" if size[0] != size[1] else str(size[0])
        stride = f"{size[2]}x{size[3]}" if size[2] != size[3] else str(size[2])
        message = (
            f"{spec.type} with kernel {kernel}, stride {stride}"
            + (f", padding ({size[4]}, {size[5]})" if size[4] or size[5] else "")
            + f" over a {h}x{w} input never reads input {told}: they cannot change the "
            "loss and their gradient is 0; pad the input or choose a kernel and stride "
            "that cover it, if that is not on purpose"
        )
        found.append(str(ConfigIssue(file, spec.line, f"layers[{k}] ({spec.name})", message)))
    return found


def unread(size: int, kernel: int, stride: int, pad: int) -> list[int]:
    """The input positions (0-based) along one axis that no window reads.

    >>> unread(5, 2, 2, 0), unread(6, 2, 2, 0), unread(5, 1, 2, 0), unread(5, 2, 2, 1)
    ([4], [], [1, 3], [])
    """
    out = (size + 2 * pad - kernel) // stride + 1
    read = set()
    for i in range(out):
        start = i * stride - pad
        read.update(range(max(start, 0), min(start + kernel, size)))
    return [p for p in range(size) if p not in read]


def _spans(positions: list[int]) -> str:
    """``4``, ``3-4``, ``1, 3``: positions as runs."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
