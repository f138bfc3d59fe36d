"""Perturbed copies carried as what they change, not as whole batches.

A numeric check pushes P perturbed copies of a value through the nodes downstream of the
perturbed tensor. The plain way carries every copy as the whole batch, (P*N, *shape)
(``Full``), although a copy usually differs from the base forward pass in a small part:

- ``Rows``: only the examples a perturbation reaches. A perturbed input element reaches
  one example; its copy is that one row, and the other examples keep their cached
  losses. Row r of ``data`` is a copy of base example ``rows[r]``; every copy has
  ``per_copy`` rows (R = P * per_copy), in copy order.
- ``Local``: rows that differ from their base rows at K positions each (a pixel's
  neighbourhood after a convolution, one unit after a dense weight moved), carried as
  those positions and values (a row with fewer changes than the others is padded by
  repeating its first position and value) while the layers on the way support it
  (``Layer.forward_local``); a layer that mixes everything (softmax, a batch statistic)
  turns it back into ``Rows`` or ``Full``.

Rows and Full give the same numbers bit for bit: the layers that run on rows are row
consistent (``batch_independent``), and the examples a copy does not reach keep the
base pass's losses. Local computes the changed outputs from the changed inputs alone,
which agrees with the whole forward up to rounding (tests/test_local.py); a row's values
never depend on the rows computed with it, so no result depends on how the copies are
chunked, timed or spread over workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Rows:
    """P copies as the rows they reach: data (R, *shape), row r a copy of example
    rows[r] (R,), per_copy rows per copy."""

    rows: np.ndarray
    data: np.ndarray
    per_copy: int


@dataclass
class Local:
    """P copies as rows that differ from their base rows at a few positions: index and
    values (R, K), flat positions in one example and the row's values there."""

    rows: np.ndarray
    index: np.ndarray
    values: np.ndarray
    per_copy: int

    def is_whole(self, base: np.ndarray) -> bool:
        """Every row lists every position of the value, in order (rows a layer computed
        whole): ``dense`` is then the values themselves."""
        return self.index.shape[1] == base[0].size and _in_order(self.index)

    def dense(self, base: np.ndarray) -> Rows:
        """The whole rows: the base rows with the changed values put in."""
        r = len(self.rows)
        size = base[0].size
        if self.index.shape[1] == size and _in_order(self.index):  # every position, in order
            return Rows(self.rows, self.values.reshape(r, *base.shape[1:]), self.per_copy)
        data = base[self.rows].reshape(r, -1).copy()
        data[np.arange(r)[:, None], self.index] = self.values
        return Rows(self.rows, data.reshape(r, *base.shape[1:]), self.per_copy)


def _in_order(index: np.ndarray) -> bool:
    """Every row's positions are 0, 1, 2, ... (as a dense layer's outputs are)."""
    first = index[0]
    if not np.array_equal(first, np.arange(len(first))):
        return False
    return index.strides[0] == 0 or bool((index == first).all())


Value = np.ndarray | Rows | Local


def copies(v: Value, n: int) -> int:
    """How many copies a value holds (n: the batch size, for Full)."""
    if isinstance(v, Rows | Local):
        return len(v.rows) // v.per_copy
    return len(v) // n


def as_rows(v: Value, base: np.ndarray) -> Rows:
    return v.dense(base) if isinstance(v, Local) else v  # type: ignore[return-value]


def full(v: Value, base: np.ndarray) -> np.ndarray:
    """(P*N, *shape): every example of every copy; examples a copy does not reach are
    the base rows."""
    if not isinstance(v, Rows | Local):
        return v
    rows = as_rows(v, base)
    n = base.shape[0]
    p = len(rows.rows) // rows.per_copy
    out = np.broadcast_to(base, (p, *base.shape)).copy()
    copy = np.repeat(np.arange(p), rows.per_copy)
    out[copy, rows.rows] = rows.data
    return out.reshape(p * n, *base.shape[1:])


def sparse(rows: Rows, base: np.ndarray) -> Local:
    """``rows`` as Local: each row as the positions where it differs from its base row
    (a row's representation depends on that row alone)."""
    r = len(rows.rows)
    data = rows.data.reshape(r, -1)
    changed = data != base[rows.rows].reshape(r, -1)
    counts = changed.sum(axis=1)
    k = max(int(counts.max(initial=0)), 1)
    if k == 1:  # one change a row at most (a dense weight moved): no sort needed
        index = changed.argmax(axis=1)[:, None]
        return Local(rows.rows, index, np.take_along_axis(data, index, axis=1), rows.per_copy)
    # the changed positions of each row in order; rows with fewer repeat their first
    # (writing a value twice where it already is changes nothing)
    row, pos = np.nonzero(changed)
    index = np.zeros((r, k), dtype=np.intp)
    slot = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    index[row, slot] = pos
    short = np.arange(k)[None, :] >= counts[:, None]
    index = np.where(short, index[:, :1], index)
    return Local(rows.rows, index, np.take_along_axis(data, index, axis=1), rows.per_copy)


def changed_copies(v: Value, base: np.ndarray, n: int) -> np.ndarray:
    """(P,) bool: the copies that differ from the base somewhere (bit for bit)."""
    p = copies(v, n)
    if isinstance(v, Local):
        r = len(v.rows)
        at = base.reshape(base.shape[0], -1)[v.rows[:, None], v.index]
        row = (v.values != at).any(axis=1)
    elif isinstance(v, Rows):
        r = len(v.rows)
        row = (v.data.reshape(r, -1) != base[v.rows].reshape(r, -1)).any(axis=1)
    else:
        return (v.reshape(p, -1) != base.reshape(1, -1)).any(axis=1)
    return row.reshape(p, -1).any(axis=1)


def keep(v: Value, alive: np.ndarray, n: int) -> Value:
    """Only the copies where ``alive`` (P,) is True."""
    if isinstance(v, Rows):
        m = np.repeat(alive, v.per_copy)
        return Rows(v.rows[m], v.data[m], v.per_copy)
    if isinstance(v, Local):
        m = np.repeat(alive, v.per_copy)
        return Local(v.rows[m], v.index[m], v.values[m], v.per_copy)
    p = len(alive)
    return v.reshape(p, -1)[alive].reshape(-1, *v.shape[1:])
