"""The worker's event stream to the supervisor: pickles that send each large array once.

A check's events carry its per-element arrays twice: each tensor's verdict as it
finishes (``checked``: kept, so that a worker that dies later still leaves a partial
report) and the whole report at the end, which holds the same verdicts, some with a
diagnosis or blame added since. For the 267,394 elements of an MLP 784-300-100-10 that
was 22 MB through a pipe, 0.1-0.2 s of a 1 s ``--fast`` run. Here:

- an array of at least ``SHARED_BYTES`` travels the first time it is sent, with a key;
  sent again, unchanged (the same object, the same CRC-32 of its bytes), it travels as
  the key, and the ``Receiver`` hands back the array it kept. An array changed in place
  since is sent again whole, under a new key;
- a C-contiguous array whose elements all hold the same bits (an unchecked tensor's
  all-NaN numeric values, its all-False masks) travels as one element and its shape,
  and is rebuilt bit for bit;
- every other contiguous array travels beside the pickle, written from its own memory
  and read into the message's (gradcheck_cli/messages.py).

Both ends keep the arrays of one stream (one worker's run) alive until it ends. The
stream's messages must be unpickled in the order they were pickled (one pipe, one
writer lock): a key refers to an earlier message.
"""

from __future__ import annotations

import io
import pickle
import sys
import zlib
from typing import Any

from . import messages

#: Arrays this large or larger are sent once per stream.
SHARED_BYTES = 1 << 16
#: Arrays with at least this many elements are looked at for a single repeated value.
FILLED_ELEMENTS = 1 << 10


class Sender:
    """Pickles one stream's messages (module docstring); ``dumps`` must be called in the
    order the messages are written."""

    def __init__(self) -> None:
        #: id(array) -> (array, key, crc) for every shared array sent so far
        self.sent: dict[int, tuple[Any, int, int]] = {}
        self.keys = 0

    def dumps(self, obj: Any) -> list[Any]:
        """The body of the message holding ``obj`` (gradcheck_cli/messages.py: the pickle
        and the arrays sent with it, unjoined, to be written before the arrays change);
        the arrays it sends for the first time count as sent only once the whole
        message is made (a message that fails to pickle is never written, and a later
        one must not refer to its arrays)."""
        out = io.BytesIO()
        buffers: list[pickle.PickleBuffer] = []
        pickler = _Pickler(out, self, buffers.append)
        pickler.dump(obj)
        self.sent.update(pickler.new)
        self.keys = pickler.keys
        return messages.body_of(out.getbuffer(), buffers)


class Receiver:
    """Unpickles one stream's messages, in the order they were sent."""

    def __init__(self) -> None:
        self.kept: dict[int, Any] = {}

    def loads(self, body: Any) -> Any:
        """The object of a message's ``body``; the arrays sent with it are views of it."""
        data, buffers = messages.split(body)
        unpickler = pickle.Unpickler(io.BytesIO(data), buffers=buffers)
        unpickler.persistent_load = self._load  # type: ignore[method-assign]
        return unpickler.load()

    def _load(self, pid: Any) -> Any:
        if pid[0] == "new":
            self.kept[pid[1]] = pid[2]
            return pid[2]
        return self.kept[pid[1]]


class _Pickler(pickle.Pickler):
    def __init__(self, out: io.BytesIO, sender: Sender, buffer_callback: Any):
        super().__init__(out, protocol=5, buffer_callback=buffer_callback)
        self.sent = sender.sent
        self.new: dict[int, tuple[Any, int, int]] = {}  # this message's first sendings
        self.keys = sender.keys
        self.inside: Any = None  # the array being saved inside its own ("new", ...) id

    def persistent_id(self, obj: Any) -> Any:
        if obj is self.inside:  # saved for real, once, inside its ("new", key, obj)
            self.inside = None
            return None
        if not _large_array(obj):
            return None
        crc = _crc(obj)
        seen = self.new.get(id(obj)) or self.sent.get(id(obj))
        if seen is not None and seen[0] is obj and seen[2] == crc:
            return ("old", seen[1])
        key, self.keys = self.keys, self.keys + 1
        self.new[id(obj)] = (obj, key, crc)
        self.inside = obj
        return ("new", key, obj)

    def reducer_override(self, obj: Any) -> Any:
        np = sys.modules.get("numpy")
        if np is None or type(obj) is not np.ndarray or obj.size < FILLED_ELEMENTS:
            return NotImplemented
        if not obj.flags.c_contiguous or obj.dtype.kind not in "biuf":
            return NotImplemented
        if obj.dtype.itemsize not in (1, 2, 4, 8):
            return NotImplemented
        bits = obj.reshape(-1).view(f"u{obj.dtype.itemsize}")
        if bits[-1] != bits[0] or not np.all(bits == bits[0]):
            return NotImplemented
        return _filled, (obj.shape, obj.dtype.str, obj.reshape(-1)[:1].tobytes())


def _large_array(obj: Any) -> bool:
    """A numeric numpy array of at least SHARED_BYTES (never one of objects, whose
    elements could change without its bytes changing)."""
    np = sys.modules.get("numpy")
    return (
        np is not None
        and type(obj) is np.ndarray
        and obj.dtype.kind in "biufc"
        and obj.nbytes >= SHARED_BYTES
    )


def _crc(a: Any) -> int:
    """CRC-32 of the array's bytes (a copy only when it is not contiguous)."""
    data = a if a.flags.c_contiguous else a.copy()
    return zlib.crc32(data.reshape(-1).view("u1"))


def _filled(shape: tuple[int, ...], dtype: str, element: bytes) -> Any:
    """A new C-contiguous array of ``shape`` whose every element is ``element``'s bits."""
    import numpy as np

    one = np.frombuffer(element, dtype=dtype)
    return np.broadcast_to(one, shape).copy()
