"""The --jobs helper pool hands back every result, large or small, and never waits for
one that was lost.

Found by the sweep benchmark: the full check of the MLP 784-300-100-10 under ``--jobs 2``
hung for ever, idle. The helpers sent their results through the worker's event stream,
which sends an array of 64 KiB or more as a reference the supervisor's ``Receiver``
resolves; the pool read them with plain ``pickle.loads``, could not, and dropped the
message without a word. A chunk of more than 8,192 elements (0.1 s of cheap elements on
a fast machine) never came back, and its future was waited for without end.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradcheck_cli import pool as pool_module
from gradcheck_cli import stream
from gradcheck_cli.errors import WorkerDied
from gradcheck_cli.pool import HelperPool

#: Long enough for a helper's start on a loaded machine; a lost result waits for ever.
WAIT = 60.0


@pytest.fixture(scope="module")
def pool():
    made = HelperPool(1)
    yield made
    made.shutdown()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    elements=st.integers(1, 4 * stream.SHARED_BYTES // 8),
    dtype=st.sampled_from(["float64", "float32", "int64", "bool"]),
)
def test_results_of_any_size_come_back_whole(pool, elements, dtype):
    """A result array below, at and far above the stream's shared size, numeric or
    boolean, constant or not, comes back equal (np.arange pickles by reference)."""
    future = pool.submit(np.arange, elements, dtype=np.float64)
    got = future.result(timeout=WAIT)
    assert np.array_equal(got, np.arange(elements, dtype=np.float64))
    same = pool.submit(np.full, elements, 1, dtype=dtype).result(timeout=WAIT)
    assert same.shape == (elements,) and same.dtype == np.dtype(dtype)
    assert np.all(same == np.ones(1, dtype=dtype))


def test_the_same_large_result_twice_comes_back_twice(pool):
    """Two tasks returning equal large arrays: each result is whole in itself (nothing
    refers to an array the pool kept from an earlier message)."""
    n = 2 * stream.SHARED_BYTES // 8
    first = pool.submit(np.arange, n, dtype=np.float64)
    second = pool.submit(np.arange, n, dtype=np.float64)
    for future in (first, second):
        assert np.array_equal(future.result(timeout=WAIT), np.arange(n, dtype=np.float64))


def test_a_message_that_cannot_be_read_fails_its_task_instead_of_hanging(monkeypatch):
    """A helper's message the pool cannot unpickle: every task sent to that helper fails
    with WorkerDied, which says so, and the pool shuts down cleanly."""

    def broken(body):
        raise ValueError("not a message")

    monkeypatch.setattr(pool_module, "_load", broken)
    helpers = HelperPool(1)
    try:
        future = helpers.submit(np.arange, 10)
        with pytest.raises(WorkerDied, match="could not be read"):
            future.result(timeout=WAIT)
    finally:
        helpers.shutdown()
    with pytest.raises(RuntimeError):
        helpers.submit(np.arange, 10)
    assert isinstance(future.exception(timeout=0), WorkerDied)
