"""Run the check with a single BLAS thread.

A numeric check is thousands of small BLAS calls (one stacked gemv per row of a dense
layer, one small gemm per example of a convolution). OpenBLAS hands calls above a size
threshold to its worker threads, and on small calls the hand-off costs more than the
work: on 2 cores the LeNet-5 full check took 1.2 s with OpenBLAS's default 2 threads
and 0.7 s with one (measured before the other optimisations). So ``run_check`` limits
OpenBLAS to one thread for its duration and restores the previous count afterwards;
the user's own BLAS threading is untouched outside the check.

Only OpenBLAS on Linux (numpy's bundled BLAS in its wheels) is handled, through its
``*_set_num_threads`` entry point found among the libraries /proc/self/maps lists.
Elsewhere, with any other BLAS, or when the library cannot be found, this does nothing.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries loaded in this process (Linux: /proc/self/maps)."""
    import numpy  # noqa: F401  (makes sure numpy's BLAS is loaded)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


@functools.lru_cache(maxsize=1)
def _controls() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get, set) for the number of OpenBLAS threads, or None when unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at import: only the check needs it

    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.restype = ctypes.c_int, None
                    put.argtypes = [ctypes.c_int]
                    return get, put
    return None


_lock = threading.Lock()
_depth = [0]  # checks running now (nested or in other threads)
_previous = [1]  # the thread count to restore when the last one ends


def single_threaded(func: F) -> F:
    """Decorator: run ``func`` with one OpenBLAS thread, then restore the previous count.

    Re-entrant and thread-safe: the count is restored when the last running call ends.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        controls = _controls()
        if controls is None:
            return func(*args, **kwargs)
        get, put = controls
        with _lock:
            if _depth[0] == 0:
                _previous[0] = get()
                put(1)
            _depth[0] += 1
        try:
            return func(*args, **kwargs)
        finally:
            with _lock:
                _depth[0] -= 1
                if _depth[0] == 0:
                    put(_previous[0])

    return wrapper  # type: ignore[return-value]
