"""One message between gradcheck's processes, on a pipe: a pickle whose large arrays
travel beside it, written from their own memory and read into the memory they keep.

A check's tensors cross two pipes: each helper's chunk verdicts to the worker (``--jobs``)
and each finished tensor and the report to the supervisor, 10 MB for the 235,200
elements of an MLP's first weight. Pickled the usual way, each array was copied into the
pickle, the pickle into a framed message, the pipe's pieces into a growing buffer, the
message out of it and each array out of the message: five copies, each into memory not
touched before, whose page faults cost more than the copying on a virtual machine
(10 MB: 9 ms per copy measured here). Here, with pickle protocol 5:

- the writer pickles with a ``buffer_callback``: a contiguous numpy array's bytes stay
  out of the pickle, and ``write`` hands the header, the pickle and those buffers to the
  system in one ``writev``, straight from the arrays;
- the reader learns a message's size from its header, allocates its body once and reads
  into it (``Inbox``); the arrays unpickled are views of that body (aligned, writable),
  not copies.

A message is ``HEADER`` (the body's size), then the body: ``LAYOUT`` (the number of
buffers and the pickle's size), each buffer's size (8 bytes each), the pickle, and the
buffers, each of these last two starting at a multiple of ALIGN bytes into the body.

It imports nothing of gradcheck's, so that every process can import it first.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Sequence
from typing import Any

#: A message's header: its body's size.
HEADER = struct.Struct("!Q")
#: The body's start: how many out-of-band buffers follow the pickle, and its size.
LAYOUT = struct.Struct("!IQ")
#: The pickle and every buffer start at a multiple of this many bytes into the body, so
#: that the arrays read back over the body are aligned.
ALIGN = 64
#: A header announcing a larger body is not one gradcheck wrote (a plugin wrote onto the
#: pipe): nothing after it can be trusted.
MOST = 1 << 40
#: Buffers handed to one ``writev`` (the system's limit is at least 1024).
_PARTS = 512


def body_of(data: bytes, buffers: Sequence[Any] = ()) -> list[Any]:
    """The parts of a message's body (module docstring): the pickle ``data`` and its
    out-of-band ``buffers`` (``pickle.PickleBuffer`` or bytes-like), unjoined."""
    views = [_raw(b) for b in buffers]
    layout = LAYOUT.pack(len(views), len(data))
    sizes = struct.pack(f"!{len(views)}Q", *(v.nbytes for v in views))
    parts: list[Any] = [layout + sizes]
    offset = len(parts[0])
    for piece in (memoryview(data), *views):
        pad = -offset % ALIGN
        if pad:
            parts.append(bytes(pad))
        parts.append(piece)
        offset += pad + piece.nbytes
    return parts


def split(body: Any) -> tuple[memoryview, list[memoryview]]:
    """The pickle and the buffers of a message's ``body``: views of it, never copies.
    ValueError when it is not laid out as ``body_of`` lays one out."""
    view = memoryview(body).cast("B")
    count, size = LAYOUT.unpack_from(view)
    sizes = struct.unpack_from(f"!{count}Q", view, LAYOUT.size)
    offset = LAYOUT.size + 8 * count
    pieces = []
    for n in (size, *sizes):
        offset += -offset % ALIGN
        pieces.append(view[offset : offset + n])
        offset += n
    if offset != len(view):
        raise ValueError(f"a message body of {len(view)} bytes laid out for {offset}")
    return pieces[0], pieces[1:]


def dumps(obj: Any) -> list[Any]:
    """The body of a plain message holding ``obj`` (``loads`` reads it back)."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return body_of(data, buffers)


def loads(body: Any) -> Any:
    """The object of a plain message's body; its arrays are views of ``body``."""
    data, buffers = split(body)
    return pickle.loads(data, buffers=buffers)


def joined(parts: Sequence[Any]) -> bytes:
    """A body's parts as one bytes object (tests, and small messages)."""
    return b"".join(parts)


def write(fd: int, parts: Sequence[Any]) -> None:
    """Write a message of the body ``parts`` to ``fd``: its header, then the parts, all of
    it, however many pieces the pipe takes it in."""
    views = [memoryview(p).cast("B") for p in parts]
    size = sum(v.nbytes for v in views)
    views = [memoryview(HEADER.pack(size)), *(v for v in views if v.nbytes)]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first : first + _PARTS])
        while written:
            n = views[first].nbytes
            if written < n:
                views[first] = views[first][written:]
                break
            written -= n
            first += 1


def read(fd: int, load: Callable[[Any], Any] = loads) -> Any:
    """One whole message from ``fd``, blocking until it is there (EOFError at the end of
    the pipe)."""
    inbox = Inbox(load)
    while True:
        got = inbox.read(fd)
        if got is None:
            raise EOFError("the pipe closed")
        if got:
            return got[0]


class Inbox:
    """The messages arriving on one pipe, each read into a body of its own (module
    docstring). ``load`` turns a body into its object: ``loads``, or a stream's
    ``Receiver.loads`` (gradcheck_cli/stream.py). A body ``load`` cannot read (a plugin
    wrote onto the pipe) is dropped and handed to ``unreadable`` when given: a reader
    waiting for an answer must not wait for one that was lost. A header announcing more
    than MOST bytes ends the stream: what follows cannot be framed."""

    def __init__(
        self,
        load: Callable[[Any], Any] = loads,
        unreadable: Callable[[Exception], None] | None = None,
    ):
        self.load = load
        self.unreadable = unreadable
        self.header = bytearray()
        self.body: bytearray | None = None
        self.filled = 0

    def read(self, fd: int) -> list[Any] | None:
        """Read once from ``fd`` (which ``select`` found readable, or block): the messages
        this read completed (none or one), or None at the end of the stream."""
        if self.body is None:
            chunk = os.read(fd, HEADER.size - len(self.header))
            if not chunk:
                return None
            self.header += chunk
            if len(self.header) < HEADER.size:
                return []
            (size,) = HEADER.unpack(self.header)
            self.header.clear()
            if size > MOST:
                if self.unreadable is not None:
                    self.unreadable(ValueError(f"a message of {size} bytes announced"))
                return None
            self.body, self.filled = bytearray(size), 0
            if size:
                return []
        else:
            got = os.readv(fd, [memoryview(self.body)[self.filled :]])
            if not got:
                return None
            self.filled += got
            if self.filled < len(self.body):
                return []
        body, self.body = self.body, None
        try:
            return [self.load(body)]
        except Exception as exc:
            if self.unreadable is not None:
                self.unreadable(exc)
            return []


def _raw(buffer: Any) -> memoryview:
    """A buffer's bytes, as a flat view (a PickleBuffer's ``raw``)."""
    if isinstance(buffer, pickle.PickleBuffer):
        return buffer.raw()
    return memoryview(buffer).cast("B")
