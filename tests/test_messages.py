"""Messages between gradcheck's processes (gradcheck_cli/messages.py): whatever is sent
comes back equal, every array bit for bit, through a real pipe however the pipe cuts it;
arrays come back as aligned, writable views of the message, not copies; a message that
cannot be read is handed to ``unreadable`` and the next one still arrives; a header no
gradcheck process writes ends the stream."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck_cli import messages, pipes, stream


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(["f8", "f4", "i8", "u1", "?", "c16"]))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=90))
    a = draw(hnp.arrays(dtype, shape))
    how = draw(st.sampled_from(["c", "f", "strided"]))
    if how == "f":
        return np.asfortranarray(a)
    if how == "strided" and a.ndim >= 1:
        return a[::2]
    return a


def through_a_pipe(bodies: list, load, *, widen: bool) -> list:
    """Each body written by a thread onto a pipe and read back by an Inbox."""
    r, w = os.pipe()
    if widen:
        pipes.widen(w)

    def write() -> None:
        for body in bodies:
            messages.write(w, body)
        os.close(w)

    writer = threading.Thread(target=write)
    writer.start()
    inbox, got = messages.Inbox(load), []
    try:
        while True:
            read = inbox.read(r)
            if read is None:
                break
            got += read
    finally:
        writer.join()
        os.close(r)
    return got


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(arrays(), max_size=5), min_size=1, max_size=4), st.booleans())
def test_every_message_comes_back_whole_however_the_pipe_cuts_it(batches, widen):
    sent = [("result", (k, batch, {"n": k, "text": "é" * k})) for k, batch in enumerate(batches)]
    got = through_a_pipe([messages.dumps(m) for m in sent], messages.loads, widen=widen)
    assert len(got) == len(sent)
    for (kind, (k, batch, extra)), (kind2, (k2, batch2, extra2)) in zip(sent, got, strict=True):
        assert (kind, k, extra) == (kind2, k2, extra2)
        for a, b in zip(batch, batch2, strict=True):
            assert same_bits(a, b)


def test_large_arrays_come_back_as_aligned_writable_views_of_the_message():
    a = np.random.default_rng(0).standard_normal((300, 784))
    masks = np.random.default_rng(1).random(235_200) < 0.5
    body = messages.dumps({"a": a, "masks": masks, "small": np.arange(3)})
    assert sum(memoryview(p).nbytes for p in body) < a.nbytes + masks.nbytes + 4096
    (got,) = through_a_pipe([body], messages.loads, widen=True)
    for key, sent in (("a", a), ("masks", masks)):
        b = got[key]
        assert same_bits(b, sent)
        assert b.flags.writeable and b.flags.aligned and b.ctypes.data % 8 == 0
    got["a"][0, 0] = 5.0  # writable: the report's arrays may be changed where they land
    assert got["a"][0, 0] == 5.0
    # views of the body they were read into, not copies of it
    whole = bytearray(messages.joined(body))
    again = messages.loads(whole)
    memory = np.frombuffer(whole, dtype=np.uint8)
    assert np.shares_memory(again["a"], memory) and np.shares_memory(again["masks"], memory)
    assert not np.shares_memory(again["a"], a)


def test_a_stream_of_tensor_checks_comes_back_bit_for_bit():
    """The worker's events: a Sender's bodies through a pipe to a Receiver's Inbox."""
    a = np.random.default_rng(2).standard_normal(100_000)
    sender, receiver = stream.Sender(), stream.Receiver()
    bodies = [sender.dumps(("checked", a)), sender.dumps(("report", [a, a]))]
    first, second = through_a_pipe(bodies, receiver.loads, widen=False)
    assert same_bits(first[1], a)
    assert second[1][0] is first[1] and second[1][1] is first[1]


def test_an_unreadable_message_is_handed_over_and_the_next_one_arrives():
    lost = []
    r, w = os.pipe()
    try:
        messages.write(w, [b"not a laid-out body"])
        messages.write(w, messages.dumps("next"))
        inbox, got = messages.Inbox(unreadable=lost.append), []
        while len(got) < 1:
            got += inbox.read(r)
        assert got == ["next"] and len(lost) == 1
    finally:
        os.close(r)
        os.close(w)


def test_a_header_no_gradcheck_process_writes_ends_the_stream():
    lost = []
    r, w = os.pipe()
    try:
        os.write(w, b"hello, w")  # a plugin writing text onto the pipe
        inbox = messages.Inbox(unreadable=lost.append)
        assert inbox.read(r) is None
        assert len(lost) == 1 and "announced" in str(lost[0])
    finally:
        os.close(r)
        os.close(w)


def test_read_blocks_for_one_whole_message_and_stops_at_the_end():
    r, w = os.pipe()
    messages.write(w, messages.dumps(("job", np.arange(5.0))))
    messages.write(w, messages.dumps("second"))
    os.close(w)
    try:
        kind, a = messages.read(r)
        assert kind == "job" and same_bits(a, np.arange(5.0))
        assert messages.read(r) == "second"
        with pytest.raises(EOFError):
            messages.read(r)
    finally:
        os.close(r)
