"""Near the end of a ``--jobs`` check, a helper gets a chunk only while what the helpers
hold is at most their share of all the work left (engine/schedule.py ``_helper_room``):
otherwise this process ran out of work while a helper had just begun a long chunk, and
waited for it."""

from __future__ import annotations

import concurrent.futures
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck_cli.engine import schedule


class Recording:
    """Helpers that keep every chunk given to them, never judging one."""

    eager = False
    startup = 0.0

    def __init__(self, workers: int):
        self.workers = workers
        self.chunks: list[schedule.Chunk] = []

    def submit(self, chunk):
        self.chunks.append(chunk)
        return concurrent.futures.Future()


def a_schedule(sizes: dict[str, int], helpers) -> schedule._Schedule:
    plan = {name: np.arange(n) for name, n in sizes.items()}
    problem = SimpleNamespace(settings=SimpleNamespace(max_memory=1 << 30))
    objective = SimpleNamespace(analytic={name: np.zeros(n) for name, n in sizes.items()})
    s = schedule._Schedule(
        problem, objective, list(sizes), plan, None, None, None, helpers, 0.0, None
    )
    s.helping = True
    for share in s.shares:
        share.rho, share.scale = 0.0, 1.0
    return s


def test_no_limit_before_any_cost_is_measured():
    s = a_schedule({"a": 1000}, Recording(1))
    assert s._helper_room() is None


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_room_is_the_helpers_share_less_what_they_hold(workers):
    s = a_schedule({"a": 1000, "b": 100}, Recording(workers))
    s.shares[0].cost = 1e-3  # b not measured yet: taken at the cheapest cost seen
    left = 1.1
    assert s._helper_room() == pytest.approx(workers * left / (1 + workers))
    s.draining = time.monotonic()
    s.expected = {7: 0.8}
    held = 0.8
    share = workers * (left + held) / (1 + workers)
    assert s._helper_room() == pytest.approx(share - held, abs=1e-3)
    s.draining = time.monotonic() - 0.5  # they have worked half a second on it since
    held = max(0.0, 0.8 - workers * 0.5)
    share = workers * (left + held) / (1 + workers)
    assert s._helper_room() == pytest.approx(share - held, abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(
    workers=st.integers(1, 4),
    left=st.integers(0, 5000),
    cost=st.floats(1e-6, 1e-2),
    held=st.lists(st.floats(0.0, 2.0), max_size=8),
)
def test_a_helper_is_never_fed_beyond_its_share(workers, left, cost, held):
    """Whatever is left and held: the chunks fed fit the room (the helpers' share of
    all the work, less what they hold), and none is fed once the room is below a
    chunk's least."""
    helpers = Recording(workers)
    s = a_schedule({"a": max(left, 1)}, helpers)
    share = s.shares[0]
    share.cursor = max(left, 1) - left  # ``left`` elements not yet cut
    share.cost = cost
    share.last = 1 << 30  # no growth limit in the way
    s.draining = time.monotonic()
    s.expected = dict(enumerate(held))
    s.flying = {concurrent.futures.Future(): None for _ in held}
    room_before = s._helper_room()
    s._feed()
    given_seconds = sum(len(c.index) * cost for c in helpers.chunks)
    if room_before is not None and room_before < schedule.MIN_CHUNK_SECONDS:
        assert helpers.chunks == []
    total = left * cost + sum(held)
    room = max(0.0, workers * total / (1 + workers) - sum(held))
    assert given_seconds <= room + 1e-3
