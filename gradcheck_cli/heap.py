"""glibc's malloc, told to keep the memory a check frees (gradcheck's own worker
processes only, never a caller's).

A check allocates and frees the same large temporaries thousands of times: a chunk of
perturbed copies and the activations it makes, numpy arrays of 0.1 to 16 MB. glibc serves
a block above its mmap threshold (128 KiB at start, raised as such blocks are freed) with
a fresh mmap, and hands the top of its heap back to the system once more than its trim
threshold (twice the mmap threshold) is free there: such an array then starts as
untouched pages, one page fault each. Measured in one process (``run_check`` with
``--jobs 1``, ``resource.getrusage`` around it, two runs each): the batch-8 CNN of
benchmarks/sweep.py took 194,000-196,000 minor faults, 0.47-0.53 s of system time and
5.8-6.1 s of CPU; with the thresholds below, 15,000-16,000 faults, 0.14-0.16 s and
4.8-4.9 s. Whole ``gradcheck run`` processes (medians of 5, interleaved with the commit
before): the batch-8 CNN 3.42 -> 2.94 s, the 784-300-100 MLP 1.63 -> 1.47 s, the other
sweep networks within noise; peak RSS 109 -> 155 MiB on the batch-8 CNN, within 5 MiB
on the others (tests/test_heap.py counts the faults of the pattern).

Up to TRIM_THRESHOLD of free memory stays at the heap's top instead of going back to the
system; a block larger than MMAP_THRESHOLD is still mapped and returned on its own.
Elsewhere than on glibc (macOS, musl) nothing changes.
"""

from __future__ import annotations

import sys

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap: glibc's largest on 64-bit systems.
MMAP_THRESHOLD = 32 << 20
#: At most this much free memory stays at the heap's top.
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (and what it forks from now
    on); True when both were taken. Call it only in a process gradcheck owns: it changes
    how the whole process allocates."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):  # no ctypes, no libc, not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first: setting either one turns
    # off glibc's dynamic adjustment of both
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
