"""What the worker's event stream costs: a check's tensors and its report through a pipe
from a forked process, as ``gradcheck run`` sends them (gradcheck_cli/stream.py and
gradcheck_cli/messages.py: arrays beside the pickle, read into the message's own memory),
against plain pickles through a 64 KiB pipe read 64 KiB at a time (before d976355).

    python benchmarks/events_pipe.py [--repeats 7] [--networks a,b] [--fast]

For each of the sweep's networks (benchmarks/sweep.py) it runs the check once in this
process, then sends each finished tensor and the report, the two ways, alternately, and
prints the median time from the first byte received to the report unpickled, with the
bytes each way. The arrays received are compared with the ones sent, bit for bit.
"""

from __future__ import annotations

import argparse
import os
import pickle
import select
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import EXTRA, NETWORKS, chosen_networks, write_network  # noqa: E402

import gradcheck_cli as gc  # noqa: E402
from gradcheck_cli import messages, pipes, stream  # noqa: E402
from gradcheck_cli.messages import HEADER  # noqa: E402

ARRAYS = ("analytic", "numeric", "abs_error", "rel_error", "checked_mask", "failed_mask")


def relay(sent: list, new: bool) -> tuple[float, int, object]:
    """(seconds from the first byte to the last message, bytes sent, the last message)."""
    r, w = os.pipe()
    if new:
        pipes.widen(w)
    pid = os.fork()
    if pid == 0:  # the sender
        os.close(r)
        sender = stream.Sender()
        for m in sent:
            if new:
                messages.write(w, sender.dumps(m))
            else:
                data = pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)
                _write_all(w, HEADER.pack(len(data)) + data)
        os._exit(0)
    os.close(w)
    inbox, buffer = messages.Inbox(stream.Receiver().loads), bytearray()
    got, first, total = [], None, 0
    while True:
        select.select([r], [], [], 0.05)
        if new:
            read = inbox.read(r)
            if read is None:
                break
            got += read
        else:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            total += len(chunk)
            buffer += chunk
            got += _frames(buffer)
        if first is None:
            first = time.perf_counter()
    seconds = time.perf_counter() - first
    os.waitpid(pid, 0)
    os.close(r)
    if len(got) != len(sent):
        raise SystemExit(f"{len(got)} of {len(sent)} messages arrived")
    if new:  # the bytes the stream's messages take, counted as the sender makes them
        sender = stream.Sender()
        total = sum(HEADER.size + sum(memoryview(b).nbytes for b in sender.dumps(m)) for m in sent)
    return seconds, total, got[-1][1]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _frames(buffer: bytearray) -> list:
    """The complete plain messages at the start of ``buffer``, taken off it."""
    out = []
    while len(buffer) >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer)
        if len(buffer) < HEADER.size + size:
            break
        out.append(pickle.loads(bytes(buffer[HEADER.size : HEADER.size + size])))
        del buffer[: HEADER.size + size]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--networks", default="all")
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for key in chosen_networks(parser, args.networks):
            folder = Path(tmp) / key
            folder.mkdir()
            config, _, _ = write_network({**NETWORKS, **EXTRA}[key], folder)
            report = gc.check(str(config), fast=args.fast, jobs=1)
            sent = [("checked", c) for c in report.checks] + [("report", report)]
            times: dict[bool, list[float]] = {False: [], True: []}
            sizes: dict[bool, int] = {}
            for _ in range(args.repeats):
                for new in (False, True):
                    seconds, sizes[new], last = relay(sent, new)
                    times[new].append(seconds)
                    for a, b in zip(report.checks, last.checks, strict=True):
                        for f in ARRAYS:
                            if getattr(a, f).tobytes() != getattr(b, f).tobytes():
                                raise SystemExit(f"{key}: {a.name}.{f} changed on the way")
            old, new = statistics.median(times[False]), statistics.median(times[True])
            print(
                f"{key:22s} plain {old:.3f} s ({sizes[False] / 1e6:.1f} MB)  "
                f"stream {new:.3f} s ({sizes[True] / 1e6:.1f} MB)  ratio {new / old:.2f}"
            )


if __name__ == "__main__":
    main()
