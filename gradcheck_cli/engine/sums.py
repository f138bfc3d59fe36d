"""Sums of products, as ``explain`` writes a gradient out term by term (pure data).

A ``Sum`` is ``target = f1*g1 + f2*g2 + ...``: the products it lists, the nonzero ones
it leaves out (past a limit), and the zero ones counted by the factor that makes them 0
(``+ 12 terms with delta 0``), so that every term of the sum is accounted for. It holds
both the exact total of its products and what the layer's backward gave, so a wrong
backward shows as a sum that disagrees.

``Listing`` says how much is written out: tensors of at most ``limit`` entries term by
term, at most ``limit`` nonzero terms per sum (``--terms N``, ``--terms all``), and the
entries ``--entry`` picked, whatever the limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: Sums listed term by term only when a tensor has at most this many entries (and at
#: most this many nonzero terms listed per sum), unless ``--terms`` says otherwise.
MAX_SUMS = 16
MAX_TERMS = MAX_SUMS


@dataclass(frozen=True)
class Factor:
    """One factor of a product: its label (``d[0,2]``, ``o[0,2]``, ``W[1,3]``), its value,
    and what it is in words (``delta``, ``input``, ``weight``, ``padding``), which names
    the terms it makes 0."""

    label: str
    value: float
    kind: str = "factor"


@dataclass
class Sum:
    """``target = sum of products``; only nonzero products are kept in ``terms``.

    total: the sum of every product; value: what the layer's backward gave for target;
    omitted: nonzero products not listed (past the limit); zeros: the products that are
    0, counted by the kind of their first zero factor; count: products in the sum, zero
    or not (0: nothing contributes): len(terms) + omitted + sum(zeros) == count.
    """

    target: str
    terms: list[tuple[Factor, ...]]
    total: float
    value: float
    omitted: int = 0
    count: int = 0
    slack: float = 0.0  # rounding the layer's backward may carry (its dtype, its sizes)
    zeros: dict[str, int] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return abs(self.total - self.value) <= self.slack


@dataclass
class Accumulation:
    """How one gradient is assembled: a formula and, for small tensors or chosen
    entries, its sums. key: the tensor it computes, as ``--entry`` names it
    (``conv1.weight``, or a value: ``input``, ``pool1`` for ``pool1.delta``)."""

    title: str
    formula: str
    legend: str = ""
    sums: list[Sum] = field(default_factory=list)
    entries: int = 0  # how many sums the tensor has
    key: str = ""


@dataclass(frozen=True)
class Listing:
    """How much ``explain`` writes out term by term (module docstring).

    limit: None for everything; entries: tensor key -> flat positions chosen with
    ``--entry`` (in any shape of the tensor: C order is the same in each)."""

    limit: int | None = MAX_SUMS
    entries: Mapping[str, frozenset[int]] = field(default_factory=dict)

    def chosen(self, key: str, size: int) -> list[int]:
        """The flat positions of tensor ``key`` (``size`` entries) to write out."""
        if key in self.entries:
            return sorted(p for p in self.entries[key] if p < size)
        if self.limit is None or size <= self.limit:
            return list(range(size))
        return []

    def terms(self, key: str) -> int | None:
        """Nonzero terms listed per sum of tensor ``key`` (None: all). A chosen entry
        lists every one: that is what it was chosen for."""
        return None if key in self.entries else self.limit


def index_label(*ix: int) -> str:
    """``[0,2]``: an index as the sums write it."""
    return "[" + ",".join(str(v) for v in ix) + "]"


def make_sum(
    target: str,
    products: Iterable[tuple[Factor, ...]],
    value: np.generic | float,
    *,
    max_terms: int | None = MAX_TERMS,
    keep_zeros: bool = False,
) -> Sum:
    """A Sum of the given products: zeros counted by kind (kept as terms with
    ``keep_zeros``), at most ``max_terms`` nonzero ones listed.

    value: the layer's backward result, whose dtype bounds how far it may round away
    from the exact sum: a few units in the last place per term, relative to sum |term|.
    """
    products = list(products)
    values = [math.prod(f.value for f in t) for t in products]
    kept, zeros = [], {}
    for t, v in zip(products, values, strict=True):
        if v != 0 or keep_zeros:
            kept.append(t)
            continue
        kind = next((f.kind for f in t if f.value == 0), "factor")
        zeros[kind] = zeros.get(kind, 0) + 1
    listed = kept if max_terms is None else kept[:max_terms]
    dtype = value.dtype if isinstance(value, np.generic) else np.dtype(np.float64)
    eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 0.0
    scale = math.fsum(abs(v) for v in values)
    return Sum(
        target=target,
        terms=listed,
        total=float(math.fsum(values)),
        value=float(value),
        omitted=len(kept) - len(listed),
        count=len(products),
        slack=4 * (len(values) + 1) * eps * scale + np.finfo(np.float64).tiny,
        zeros=zeros,
    )
